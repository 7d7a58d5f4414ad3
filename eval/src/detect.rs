//! Alarm rules shared by the synthetic and the labelled-data evaluations. Every detector is an
//! alarm: a rule says which way each datapoint breaches; the alarm goes to ALARM when the last
//! `datapoints` datapoints all breach the same way (a CloudWatch alarm with that many
//! evaluation periods) and acts once per OK → ALARM transition. The gate, when on, is asked
//! at each transition with the history before it, as reboot-instance asks it.

use selfheal_core::anomaly::{
    assess, median, Direction, GateSettings, Judgement, Point, DAY, WEEK,
};

use crate::nab::Series;

/// Half-width of a same-time reference window (as the gate's).
pub const TOLERANCE: i64 = 15 * 60;
/// Days a seasonal band learns from (CloudWatch anomaly detection trains on up to two weeks).
pub const BAND_DAYS: i64 = 14;
/// Fewest same-time datapoints before a band exists.
pub const MIN_BAND_POINTS: usize = 5;

/// Which datapoints breach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Outside `[lower, upper]`.
    Static { lower: f64, upper: f64 },
    /// Outside mean ± `width` σ of the same time of day over the previous `BAND_DAYS` days.
    Band { width: f64 },
    /// More than `change` × |median at the same time last week| away from it, and more than
    /// `floor` (absolute).
    LastWeek { change: f64, floor: f64 },
}

/// Per-row references, computed once per series and shared by every setting of a rule.
pub struct References {
    /// Mean and σ of the same time of day over the previous days.
    band: Vec<Option<(f64, f64)>>,
    /// Median at the same time last week.
    last_week: Vec<Option<f64>>,
}

fn rows_near(s: &Series, at: i64) -> std::ops::Range<usize> {
    let a = s.times.partition_point(|t| *t < at - TOLERANCE);
    let b = s.times.partition_point(|t| *t <= at + TOLERANCE);
    a..b.max(a)
}

impl References {
    pub fn new(s: &Series) -> Self {
        let n = s.len();
        let mut band = Vec::with_capacity(n);
        let mut last_week = Vec::with_capacity(n);
        for &t in &s.times {
            let refs: Vec<f64> = (1..=BAND_DAYS)
                .flat_map(|k| s.values[rows_near(s, t - k * DAY)].iter().copied())
                .collect();
            band.push((refs.len() >= MIN_BAND_POINTS).then(|| {
                let mean = refs.iter().sum::<f64>() / refs.len() as f64;
                let var = refs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / refs.len() as f64;
                (mean, var.sqrt())
            }));
            let mut week = s.values[rows_near(s, t - WEEK)].to_vec();
            last_week.push(median(&mut week));
        }
        Self { band, last_week }
    }

    /// Which way each row breaches `rule`.
    pub fn breaches(&self, s: &Series, rule: Rule) -> Vec<Option<Direction>> {
        let side = |over: bool, under: bool| {
            if over {
                Some(Direction::Above)
            } else if under {
                Some(Direction::Below)
            } else {
                None
            }
        };
        s.values
            .iter()
            .enumerate()
            .map(|(i, &v)| match rule {
                Rule::Static { lower, upper } => side(v > upper, v < lower),
                Rule::Band { width } => {
                    let (mean, sd) = self.band.get(i).copied().flatten()?;
                    let w = width * sd.max(1e-9 * mean.abs()).max(1e-12);
                    side(v > mean + w, v < mean - w)
                }
                Rule::LastWeek { change, floor } => {
                    let base = self.last_week.get(i).copied().flatten()?;
                    let limit = (change * base.abs()).max(floor);
                    side(v - base > limit, base - v > limit)
                }
            })
            .collect()
    }
}

/// One OK → ALARM transition.
#[derive(Debug, Clone)]
pub struct Alarm {
    pub row: usize,
    pub direction: Direction,
    pub acted: bool,
    /// The gate's judgement and score, when the gate was asked.
    pub gate: Option<(Judgement, Option<f64>, Option<f64>)>,
}

/// OK → ALARM transitions for `datapoints` consecutive breaches in one direction.
pub fn alarms(breaches: &[Option<Direction>], datapoints: usize) -> Vec<Alarm> {
    let m = datapoints.max(1);
    let alarm_at =
        |i: usize, d: Direction| i + 1 >= m && (0..m).all(|k| breaches[i - k] == Some(d));
    let mut out = Vec::new();
    for i in 0..breaches.len() {
        for d in [Direction::Above, Direction::Below] {
            if alarm_at(i, d) && !(i > 0 && alarm_at(i - 1, d)) {
                out.push(Alarm {
                    row: i,
                    direction: d,
                    acted: true,
                    gate: None,
                });
            }
        }
    }
    out
}

/// Asks the gate at every alarm: the breaching datapoints, the history before the alarm
/// (as far back as the gate reads), the alarm's direction. Acts unless "expected pattern".
pub fn gate(s: &Series, alarms: &mut [Alarm], datapoints: usize, settings: &GateSettings) {
    for a in alarms.iter_mut() {
        let i = a.row;
        let t = s.times[i];
        let from = s
            .times
            .partition_point(|x| *x < t - settings.lookback_secs());
        let history: Vec<Point> = (from..i)
            .map(|j| Point::new(s.times[j], s.values[j]))
            .collect();
        let breaching = &s.values[(i + 1).saturating_sub(datapoints.max(1))..=i];
        let r = assess(t, breaching, &history, a.direction, settings);
        a.acted = r.judgement != Judgement::Expected;
        a.gate = Some((r.judgement, r.score, r.baseline));
    }
}

/// Re-decides gated alarms at another sensitivity: the score does not depend on it.
pub fn regate(alarms: &[Alarm], z: f64) -> Vec<Alarm> {
    alarms
        .iter()
        .map(|a| {
            let mut b = a.clone();
            if let Some((j, score, _)) = a.gate {
                b.acted = j == Judgement::TooLittleHistory || score.is_none_or(|s| s >= z);
            }
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn series(values: Vec<f64>, step: i64) -> Series {
        Series {
            category: "c".into(),
            name: "s".into(),
            times: (0..values.len() as i64)
                .map(|i| 1_400_000_000 + i * step)
                .collect(),
            values,
            windows: vec![],
        }
    }

    #[test]
    fn an_alarm_needs_consecutive_breaches_and_fires_once() {
        let mut v = vec![10.0; 100];
        for x in &mut v[50..53] {
            *x = 30.0;
        }
        v[60] = 30.0;
        for x in &mut v[70..80] {
            *x = 0.0;
        }
        let s = series(v, 300);
        let r = References::new(&s);
        let b = r.breaches(
            &s,
            Rule::Static {
                lower: 5.0,
                upper: 20.0,
            },
        );
        let rows: Vec<(usize, Direction)> =
            alarms(&b, 3).iter().map(|a| (a.row, a.direction)).collect();
        assert_eq!(rows, vec![(52, Direction::Above), (72, Direction::Below)]);
        assert_eq!(alarms(&b, 1).len(), 3);
    }

    #[test]
    fn gate_judges_a_new_peak_and_skips_it_once_it_is_a_daily_pattern() {
        // 5-minute data: a daily 2-hour peak at 90 from day 1 on (50 on day 0), 10 otherwise.
        let per_day = 288;
        let v: Vec<f64> = (0..10 * per_day)
            .map(
                |i| match (i / per_day, (100..124).contains(&(i % per_day))) {
                    (0, true) => 50.0,
                    (_, true) => 90.0,
                    _ => 10.0 + (i % 3) as f64,
                },
            )
            .collect();
        let s = series(v, 300);
        let b = References::new(&s).breaches(
            &s,
            Rule::Static {
                lower: 0.0,
                upper: 60.0,
            },
        );
        let mut a = alarms(&b, 3);
        assert_eq!(a.len(), 9);
        gate(&s, &mut a, 3, &GateSettings::default());
        // Day 1: against day 0's 50 the 90 is new: acted. From day 2 the median of the
        // previous days is 70 or more: an expected pattern.
        assert!(a[0].acted, "{:?}", a[0]);
        assert!(a.iter().skip(1).all(|x| !x.acted), "{a:?}");
        // At a sensitivity no score reaches, every judged alarm is skipped.
        assert!(regate(&a, 1e9).iter().all(|x| !x.acted));
    }

    #[test]
    fn too_little_history_acts() {
        let s = series(vec![10.0, 10.0, 90.0, 90.0, 90.0], 300);
        let b = References::new(&s).breaches(
            &s,
            Rule::Static {
                lower: 0.0,
                upper: 50.0,
            },
        );
        let mut a = alarms(&b, 3);
        gate(&s, &mut a, 3, &GateSettings::default());
        assert_eq!(a.len(), 1);
        assert!(a[0].acted);
        assert_eq!(a[0].gate.map(|g| g.0), Some(Judgement::TooLittleHistory));
    }

    #[test]
    fn band_and_last_week_need_their_history() {
        let per_day = 288;
        let v: Vec<f64> = (0..9 * per_day).map(|i| 50.0 + (i % 5) as f64).collect();
        let mut s = series(v, 300);
        s.values[8 * per_day + 10] = 500.0;
        let r = References::new(&s);
        let band = r.breaches(&s, Rule::Band { width: 3.0 });
        assert!(band[..per_day].iter().all(Option::is_none));
        assert_eq!(band[8 * per_day + 10], Some(Direction::Above));
        let week = r.breaches(
            &s,
            Rule::LastWeek {
                change: 0.3,
                floor: 0.0,
            },
        );
        assert!(week[..7 * per_day].iter().all(Option::is_none));
        assert_eq!(week[8 * per_day + 10], Some(Direction::Above));
        assert_eq!(week[8 * per_day + 11], None);
    }
}
