//! How far past its threshold the alarm's metric is ([`breach`], from the alarm's own numbers)
//! and the step that severity asks for ([`severity_step`]): the sizing that needs no history,
//! and the floor and fallback of forecast sizing. Pure.

use serde::Serialize;

use selfheal_core::Alarm;

use crate::settings::Direction;

/// On which side of the threshold the alarm fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Above,
    Below,
}

/// How far past its threshold the alarm's metric is, from the alarm's own numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    /// The mean of the recent datapoints (their order differs between alarm shapes; the mean
    /// does not care, and it damps a single spike).
    pub metric: f64,
    pub datapoints: Vec<f64>,
    pub threshold: f64,
    pub side: Side,
    /// Where the side came from: the comparison operator, the reason text, or the values.
    pub side_from: &'static str,
}

/// The breach in an alarm's reason data, if it carries enough numbers.
pub fn breach(alarm: &Alarm) -> Option<Breach> {
    let e = &alarm.evaluation;
    let datapoints: Vec<f64> = e
        .recent_datapoints
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let metric = mean(&datapoints)?;
    let (side, side_from) = side_of(alarm, metric);
    let threshold = match (e.threshold, side) {
        (Some(t), _) => t,
        (None, Side::Above) => mean(&e.recent_upper_thresholds)?,
        (None, Side::Below) => mean(&e.recent_lower_thresholds)?,
    };
    threshold.is_finite().then_some(Breach {
        metric,
        datapoints,
        threshold,
        side,
        side_from,
    })
}

/// The side from the comparison operator, else the reason text, else the values.
fn side_of(alarm: &Alarm, metric: f64) -> (Side, &'static str) {
    let e = &alarm.evaluation;
    let comparison = e.comparison.as_deref().unwrap_or_default();
    let reason = alarm.reason.to_ascii_lowercase();
    if comparison.contains("GreaterThan") && !comparison.contains("Lower") {
        (Side::Above, "comparison")
    } else if comparison.contains("LessThan") && !comparison.contains("Upper") {
        (Side::Below, "comparison")
    } else if reason.contains("greater than") && !reason.contains("less than") {
        (Side::Above, "reason")
    } else if reason.contains("less than") && !reason.contains("greater than") {
        (Side::Below, "reason")
    } else {
        // An anomaly band alarm fires on either side: the side the metric is on is the one.
        let upper = mean(&e.recent_upper_thresholds);
        let side = match (e.threshold, upper) {
            (Some(t), _) | (None, Some(t)) if metric >= t => Side::Above,
            _ => Side::Below,
        };
        (side, "values")
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
}

/// How many instances to add or remove, and the arithmetic behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The sizing method: `severity` or `forecast`.
    pub method: &'static str,
    /// Instances to add or remove: at most the max step; at least 1, except 0 when the
    /// forecast holds a scale-in (see [`crate::sizing::choose_step`]).
    pub size: u32,
    pub max_step: u32,
    /// The desired capacity the method proposed before bounding the step (when it has one).
    pub proposed: Option<u64>,
    pub breach: Option<Breach>,
    /// The arithmetic, for people.
    pub arithmetic: String,
}

/// Sizes the change like target tracking does: the capacity that would bring the metric back
/// to the threshold if load spread evenly, `ceil(desired × metric / threshold)` for an alarm
/// above its threshold (`threshold / metric` below it); scaling in divides instead. The change
/// is then bounded to `1..=max_step`. Without usable numbers the step is 1.
pub fn severity_step(
    breach: Option<&Breach>,
    desired: u32,
    direction: Direction,
    max_step: u32,
) -> Step {
    let max_step = max_step.max(1);
    let fallback = |why: String| Step {
        method: "severity",
        size: 1,
        max_step,
        proposed: None,
        breach: breach.cloned(),
        arithmetic: format!("{why}: step 1"),
    };
    let Some(b) = breach else {
        return fallback("the alarm carries no datapoints and threshold".into());
    };
    let Some(severity) = severity_of(b) else {
        return fallback(format!(
            "metric {} vs threshold {} cannot be compared proportionally",
            num(b.metric),
            num(b.threshold)
        ));
    };
    let d = f64::from(desired);
    // A hair below the exact value before rounding up: 10 × 99/90 is 11.000000000000002 in
    // floating point, and must give 11, not 12.
    const EPSILON: f64 = 1e-9;
    let (proposed, raw, formula) = match direction {
        Direction::Out => {
            let p = (d * severity - EPSILON).ceil().max(0.0);
            (p, p - d, format!("ceil({desired} × {})", num(severity)))
        }
        Direction::In => {
            let p = (d / severity - EPSILON).ceil().max(0.0);
            (p, d - p, format!("ceil({desired} / {})", num(severity)))
        }
    };
    let size = if raw.is_nan() {
        1
    } else {
        raw.clamp(1.0, f64::from(max_step)) as u32
    };
    let proposed_n = proposed.is_finite().then_some(proposed as u64);
    let shown = proposed_n.map_or("∞".to_string(), |p| p.to_string());
    let ratio = match b.side {
        Side::Above => format!("{} / {}", num(b.metric), num(b.threshold)),
        Side::Below => format!("{} / {}", num(b.threshold), num(b.metric)),
    };
    let side = match b.side {
        Side::Above => "above",
        Side::Below => "below",
    };
    Step {
        method: "severity",
        size,
        max_step,
        proposed: proposed_n,
        breach: Some(b.clone()),
        arithmetic: format!(
            "metric {} (mean of {:?}) {side} threshold {}: severity {ratio} = {}; {formula} = \
             {shown}; step {} bounded to 1..={max_step} = {size}",
            num(b.metric),
            b.datapoints,
            num(b.threshold),
            num(severity),
            if raw.is_finite() {
                num(raw)
            } else {
                "∞".into()
            },
        ),
    }
}

/// How many times the threshold the metric is (the other way round below it); `None` when
/// the numbers cannot be compared proportionally.
fn severity_of(b: &Breach) -> Option<f64> {
    match b.side {
        Side::Above if b.threshold > 0.0 && b.metric >= 0.0 => Some(b.metric / b.threshold),
        Side::Below if b.threshold > 0.0 && b.metric > 0.0 => Some(b.threshold / b.metric),
        // A metric at zero below a positive threshold (no traffic at all) is as severe as it
        // gets: the max step.
        Side::Below if b.threshold > 0.0 && b.metric == 0.0 => Some(f64::INFINITY),
        _ => None,
    }
}

/// A number for people: whole numbers without decimals, others to two places.
pub(crate) fn num(x: f64) -> String {
    if x.is_infinite() {
        "∞".into()
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{alarm, alarm_of, breach_of};
    use selfheal_core::parse_alarms;
    use serde_json::json;

    #[test]
    fn breach_from_every_shape() {
        for (name, metric, threshold, side, from) in [
            (
                "scale-group-eventbridge.json",
                72.0,
                60.0,
                Side::Above,
                "reason",
            ),
            (
                "scale-group-lambda-action.json",
                72.0,
                60.0,
                Side::Above,
                "reason",
            ),
            (
                "scale-group-sns.json",
                72.0,
                60.0,
                Side::Above,
                "comparison",
            ),
            (
                "scale-group-eventbridge-severe.json",
                150.0,
                60.0,
                Side::Above,
                "reason",
            ),
            (
                "scale-group-scale-in.json",
                9.0,
                20.0,
                Side::Below,
                "reason",
            ),
        ] {
            let b = breach(&alarm_of(name)).unwrap_or_else(|| panic!("{name}: no breach"));
            assert_eq!(
                (b.metric, b.threshold, b.side, b.side_from),
                (metric, threshold, side, from),
                "{name}"
            );
        }
    }

    #[test]
    fn breach_of_an_anomaly_band_uses_the_band() {
        let rd = json!({"recentDatapoints": [300.0], "recentUpperThresholds": [200.0], "recentLowerThresholds": [50.0]}).to_string();
        let ev = json!({"detail-type": "CloudWatch Alarm State Change",
            "detail": {"alarmName": "ad", "state": {"value": "ALARM", "reason": "Thresholds Crossed", "reasonData": rd},
                       "configuration": {"metrics": [{"id": "ad1", "expression": "ANOMALY_DETECTION_BAND(m1, 2)"}]}}});
        let b = breach(&parse_alarms(&ev).unwrap()[0]).unwrap();
        assert_eq!((b.metric, b.threshold, b.side), (300.0, 200.0, Side::Above));
        // No datapoints → no breach.
        assert!(breach(&alarm("ALARM", "OK", json!({}), json!({}), &[])).is_none());
    }

    #[test]
    fn severity_step_table() {
        use Direction::{In, Out};
        use Side::{Above, Below};
        // (metric, threshold, side, desired, direction, max_step) → (size, proposed)
        type Case = (f64, f64, Side, u32, Direction, u32, u32, Option<u64>);
        let cases: &[Case] = &[
            // small breach: 2 × 72/60 = 2.4 → 3
            (72.0, 60.0, Above, 2, Out, 4, 1, Some(3)),
            // large breach: 2 × 150/60 = 5 → 5
            (150.0, 60.0, Above, 2, Out, 4, 3, Some(5)),
            // larger than the max step: 4 × 2.5 = 10 → +6, bounded to 4
            (150.0, 60.0, Above, 4, Out, 4, 4, Some(10)),
            // floating point: 10 × 99/90 is 11.000000000000002 → 11, not 12
            (99.0, 90.0, Above, 10, Out, 4, 1, Some(11)),
            // at (or under) the threshold still moves by one
            (60.0, 60.0, Above, 3, Out, 4, 1, Some(3)),
            // empty group: ceil(0 × s) = 0 → at least 1
            (120.0, 60.0, Above, 0, Out, 4, 1, Some(0)),
            // below-threshold alarm scaling out (e.g. healthy hosts too low): 4 × 10/5 = 8
            (5.0, 10.0, Below, 4, Out, 8, 4, Some(8)),
            // scale in: 6 / (20/9) = 2.7 → 3, i.e. remove 3
            (9.0, 20.0, Below, 6, In, 4, 3, Some(3)),
            // scale in, bounded
            (2.0, 20.0, Below, 10, In, 4, 4, Some(1)),
            // scale in on no traffic at all: as severe as it gets
            (0.0, 20.0, Below, 10, In, 4, 4, Some(0)),
        ];
        for &(metric, threshold, side, desired, dir, max_step, size, proposed) in cases {
            let b = breach_of(metric, threshold, side);
            let s = severity_step(Some(&b), desired, dir, max_step);
            assert_eq!(
                (s.size, s.proposed),
                (size, proposed),
                "{metric} vs {threshold} {side:?}, desired {desired} {dir:?}: {}",
                s.arithmetic
            );
            assert!(s.arithmetic.contains("bounded to 1..="), "{}", s.arithmetic);
        }
        // No numbers, or numbers that cannot be compared proportionally: step 1.
        let s = severity_step(None, 5, Out, 4);
        assert_eq!((s.size, s.proposed), (1, None));
        let s = severity_step(Some(&breach_of(5.0, 0.0, Above)), 5, Out, 4);
        assert_eq!(s.size, 1);
        assert!(
            s.arithmetic.contains("cannot be compared"),
            "{}",
            s.arithmetic
        );
        let s = severity_step(Some(&breach_of(-5.0, 10.0, Above)), 5, Out, 4);
        assert_eq!(s.size, 1);
    }

    #[test]
    fn severity_arithmetic_reads_well() {
        let b = breach_of(150.0, 60.0, Side::Above);
        let s = severity_step(Some(&b), 2, Direction::Out, 4);
        assert_eq!(
            s.arithmetic,
            "metric 150 (mean of [150.0]) above threshold 60: severity 150 / 60 = 2.50; \
             ceil(2 × 2.50) = 5; step 3 bounded to 1..=4 = 3"
        );
    }
}
