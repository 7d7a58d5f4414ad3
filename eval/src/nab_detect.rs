//! The detectors scored on the labelled corpus. Each one is an alarm (3 of 3 consecutive
//! datapoints breaching, as a CloudWatch alarm with 3 evaluation periods) and acts on every
//! OK → ALARM transition. Every setting is fixed by a rule stated here, using at most the
//! probationary rows of the series (no labels):
//!
//! * **static**: thresholds just outside what the probation showed: above
//!   `max + 10 % of (max − min)` or below `min − 10 % of (max − min)` (an operator who sets
//!   the alarm so it would not have fired on the data they had).
//! * **static + gate**: the static alarm, and before acting `anomaly::assess` with the shipped
//!   default settings on the history before the alarm (the breaching datapoints, the
//!   alarm's direction). Acts unless the gate says "expected pattern"; with too little
//!   history it acts, as the product does.
//! * **seasonal band** (like CloudWatch anomaly detection, band width 2, its console default):
//!   outside mean ± 2 σ of the datapoints at the same time of day (±15 min) on the previous
//!   14 days; no band (no alarm) with fewer than 5 such datapoints.
//! * **last week**: more than 30 % away from the median of the datapoints at the same time
//!   last week (±15 min), and by more than 10 % of the probation's range (so a metric near
//!   zero does not alarm on every wobble); no alarm without last week's data.

use selfheal_core::anomaly::{assess, median, Direction, GateSettings, Judgement, Point, DAY, WEEK};

use crate::nab::Series;
use crate::nab_score::probationary_rows;

/// Consecutive breaching datapoints an alarm needs.
pub const DATAPOINTS: usize = 3;
/// Half-width of a same-time reference window.
pub const TOLERANCE: i64 = 15 * 60;
pub const BAND_DAYS: i64 = 14;
pub const BAND_WIDTH: f64 = 2.0;
pub const MIN_BAND_POINTS: usize = 5;
pub const LAST_WEEK_CHANGE: f64 = 0.30;
pub const STATIC_MARGIN: f64 = 0.10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detector {
    Static,
    StaticGate,
    Band,
    LastWeek,
}

impl Detector {
    pub const ALL: [Detector; 4] = [
        Detector::Static,
        Detector::StaticGate,
        Detector::Band,
        Detector::LastWeek,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Detector::Static => "static",
            Detector::StaticGate => "static + gate",
            Detector::Band => "seasonal band",
            Detector::LastWeek => "last week",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Detector::Static => "static",
            Detector::StaticGate => "static+gate",
            Detector::Band => "seasonal-band",
            Detector::LastWeek => "last-week",
        }
    }
}

/// One OK → ALARM transition and what the detector did with it.
#[derive(Debug, Clone)]
pub struct Alarm {
    pub row: usize,
    pub direction: Direction,
    pub acted: bool,
    /// The gate's judgement, score and baseline (static + gate only).
    pub gate: Option<(Judgement, Option<f64>, Option<f64>)>,
}

/// Static thresholds `(lower, upper)` from the probationary rows.
pub fn static_thresholds(s: &Series) -> (f64, f64) {
    let p = probationary_rows(s.len()).max(1).min(s.len());
    let head = s.values.get(..p).unwrap_or(&[]);
    let lo = head.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = head.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    let margin = probation_range(s).max(1e-9) * STATIC_MARGIN;
    (lo - margin, hi + margin)
}

/// `max − min` of the probationary rows (5 % of |max| for a flat probation).
fn probation_range(s: &Series) -> f64 {
    let p = probationary_rows(s.len()).max(1).min(s.len());
    let head = s.values.get(..p).unwrap_or(&[]);
    let lo = head.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = head.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let r = hi - lo;
    if r.is_finite() && r > 0.0 {
        r
    } else if hi.is_finite() {
        0.05 * hi.abs()
    } else {
        0.0
    }
}

/// Rows whose time lies within `TOLERANCE` of `at`.
fn rows_near(s: &Series, at: i64) -> std::ops::Range<usize> {
    let a = s.times.partition_point(|t| *t < at - TOLERANCE);
    let b = s.times.partition_point(|t| *t <= at + TOLERANCE);
    a..b.max(a)
}

/// Which way row `i` breaches, for each detector's rule.
fn breaches(s: &Series, detector: Detector) -> Vec<Option<Direction>> {
    let n = s.len();
    match detector {
        Detector::Static | Detector::StaticGate => {
            let (lo, hi) = static_thresholds(s);
            s.values
                .iter()
                .map(|v| {
                    if *v > hi {
                        Some(Direction::Above)
                    } else if *v < lo {
                        Some(Direction::Below)
                    } else {
                        None
                    }
                })
                .collect()
        }
        Detector::Band => (0..n)
            .map(|i| {
                let t = s.times[i];
                let refs: Vec<f64> = (1..=BAND_DAYS)
                    .flat_map(|k| s.values[rows_near(s, t - k * DAY)].iter().copied())
                    .collect();
                if refs.len() < MIN_BAND_POINTS {
                    return None;
                }
                let mean = refs.iter().sum::<f64>() / refs.len() as f64;
                let var = refs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / refs.len() as f64;
                let width = BAND_WIDTH * var.sqrt().max(1e-9 * mean.abs()).max(1e-12);
                let v = s.values[i];
                if v > mean + width {
                    Some(Direction::Above)
                } else if v < mean - width {
                    Some(Direction::Below)
                } else {
                    None
                }
            })
            .collect(),
        Detector::LastWeek => {
            let floor = STATIC_MARGIN * probation_range(s);
            (0..n)
                .map(|i| {
                    let mut refs = s.values[rows_near(s, s.times[i] - WEEK)].to_vec();
                    let base = median(&mut refs)?;
                    let diff = s.values[i] - base;
                    if diff.abs() > (LAST_WEEK_CHANGE * base.abs()).max(floor) {
                        Some(if diff > 0.0 {
                            Direction::Above
                        } else {
                            Direction::Below
                        })
                    } else {
                        None
                    }
                })
                .collect()
        }
    }
}

/// Every OK → ALARM transition of `detector` on `s`, with its decision.
pub fn run(s: &Series, detector: Detector, gate: &GateSettings) -> Vec<Alarm> {
    let b = breaches(s, detector);
    let alarm_at = |i: usize, d: Direction| {
        i + 1 >= DATAPOINTS && (0..DATAPOINTS).all(|k| b[i - k] == Some(d))
    };
    let mut out = Vec::new();
    for i in 0..s.len() {
        for d in [Direction::Above, Direction::Below] {
            if !alarm_at(i, d) || (i > 0 && alarm_at(i - 1, d)) {
                continue;
            }
            let mut alarm = Alarm {
                row: i,
                direction: d,
                acted: true,
                gate: None,
            };
            if detector == Detector::StaticGate {
                let t = s.times[i];
                let from = s.times.partition_point(|x| *x < t - gate.lookback_secs());
                let history: Vec<Point> = (from..i)
                    .map(|j| Point::new(s.times[j], s.values[j]))
                    .collect();
                let breaching = &s.values[i + 1 - DATAPOINTS..=i];
                let a = assess(t, breaching, &history, d, gate);
                alarm.acted = a.judgement != Judgement::Expected;
                alarm.gate = Some((a.judgement, a.score, a.baseline));
            }
            out.push(alarm);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: Vec<f64>, step: i64) -> Series {
        Series {
            category: "c".into(),
            name: "s".into(),
            times: (0..values.len() as i64).map(|i| 1_400_000_000 + i * step).collect(),
            values,
            windows: vec![],
        }
    }

    #[test]
    fn static_alarm_needs_three_breaching_points_and_fires_once() {
        let mut v = vec![10.0; 100];
        v[0] = 20.0; // probation range 10..20 → upper threshold 21
        for x in &mut v[50..53] {
            *x = 30.0;
        }
        v[60] = 30.0; // a single point does not alarm
        for x in &mut v[70..80] {
            *x = 0.0; // below 9
        }
        let a = run(&series(v, 300), Detector::Static, &GateSettings::default());
        let rows: Vec<(usize, Direction)> = a.iter().map(|a| (a.row, a.direction)).collect();
        assert_eq!(rows, vec![(52, Direction::Above), (72, Direction::Below)]);
    }

    #[test]
    fn gate_acts_with_too_little_history_and_skips_a_daily_pattern() {
        // 5-minute data, 10 days: a daily 2-hour peak at 90 from day 1 on, 10 otherwise;
        // the probation (first 1.5 days) sees one peak at 50 only.
        let per_day = 288;
        let v: Vec<f64> = (0..10 * per_day)
            .map(|i| {
                let in_day = i % per_day;
                let peak = (100..124).contains(&in_day);
                match (i / per_day, peak) {
                    (0, true) => 50.0,
                    (_, true) => 90.0,
                    _ => 10.0 + (i % 3) as f64,
                }
            })
            .collect();
        let s = series(v, 300);
        let a = run(&s, Detector::StaticGate, &GateSettings::default());
        assert!(a.len() >= 8, "{}", a.len());
        // Day 1's peak: one day of history, 7 reference points: judged (and it is new).
        // Later days: the same peak every day → expected pattern, skipped.
        assert!(a.iter().skip(3).all(|x| !x.acted), "{a:?}");
        let first = &a[0];
        assert!(first.acted);
    }
}
