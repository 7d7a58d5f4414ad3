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

use selfheal_core::anomaly::GateSettings;

use crate::detect::{self, Alarm, References, Rule};

use crate::nab::Series;
use crate::nab_score::probationary_rows;

/// Consecutive breaching datapoints an alarm needs.
pub const DATAPOINTS: usize = 3;
pub const BAND_WIDTH: f64 = 2.0;
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

/// Every OK → ALARM transition of `detector` on `s`, with its decision.
pub fn run(s: &Series, refs: &References, detector: Detector, gate: &GateSettings) -> Vec<Alarm> {
    let rule = match detector {
        Detector::Static | Detector::StaticGate => {
            let (lower, upper) = static_thresholds(s);
            Rule::Static { lower, upper }
        }
        Detector::Band => Rule::Band { width: BAND_WIDTH },
        Detector::LastWeek => Rule::LastWeek {
            change: LAST_WEEK_CHANGE,
            floor: STATIC_MARGIN * probation_range(s),
        },
    };
    let mut alarms = detect::alarms(&refs.breaches(s, rule), DATAPOINTS);
    if detector == Detector::StaticGate {
        detect::gate(s, &mut alarms, DATAPOINTS, gate);
    }
    alarms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_thresholds_sit_just_outside_the_probation() {
        let mut values = vec![10.0; 100];
        values[0] = 20.0; // 15 probationary rows, range 10..20
        values[50] = 100.0;
        let s = Series {
            category: "c".into(),
            name: "s".into(),
            times: (0..100).map(|i| i * 300).collect(),
            values,
            windows: vec![],
        };
        assert_eq!(static_thresholds(&s), (9.0, 21.0));
        let flat = Series {
            values: vec![40.0; 100],
            ..s.clone()
        };
        let (lo, hi) = static_thresholds(&flat);
        assert!(
            (lo - 39.8).abs() < 1e-9 && (hi - 40.2).abs() < 1e-9,
            "{lo} {hi}"
        );
    }
}
