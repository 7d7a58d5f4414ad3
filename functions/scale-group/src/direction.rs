//! Which way to resize: the way the alarm's comparison says (above its threshold → out,
//! below → in), or a configured direction that agrees with it; never against it, never a
//! default. Pure.

use selfheal_core::ports::alarms::AlarmFacts;
use selfheal_core::{Alarm, SkipCode, SkipReason};

use crate::plan::{Source, SCALE_TAG};
use crate::settings::{Direction, ScaleRule};
use crate::severity::{breach, Side};

/// The side a comparison operator fires on; `None` for one that fires on either side (an
/// anomaly band's `LessThanLowerOrGreaterThanUpperThreshold`) or an unknown one.
pub fn side_of_comparison(comparison: &str) -> Option<Side> {
    match comparison {
        "GreaterThanThreshold" | "GreaterThanOrEqualToThreshold" | "GreaterThanUpperThreshold" => {
            Some(Side::Above)
        }
        "LessThanThreshold" | "LessThanOrEqualToThreshold" | "LessThanLowerThreshold" => {
            Some(Side::Below)
        }
        _ => None,
    }
}

/// Above its threshold the group is short of capacity: out. Below it, it has too much: in.
fn direction_for(side: Side) -> Direction {
    match side {
        Side::Above => Direction::Out,
        Side::Below => Direction::In,
    }
}

/// The direction: the configured one when the alarm's comparison agrees with it (or cannot
/// say), else the comparison's. Never against the comparison, never a default.
pub fn direction_of(
    alarm: &Alarm,
    current: Option<&AlarmFacts>,
    rule: Option<(ScaleRule, Source)>,
) -> Result<(Direction, Source, Option<String>), SkipReason> {
    let name = &alarm.name;
    let said = alarm.evaluation.comparison.as_deref();
    let now = current.and_then(|f| f.comparison.as_deref());
    let side = |c: Option<&str>| c.and_then(side_of_comparison);
    if let (Some(s), Some(n)) = (side(said), side(now)) {
        if s != n {
            return Err(SkipReason::new(
                SkipCode::Contradiction,
                format!(
                    "alarm {name}: the event says {}, CloudWatch now says {} (reconfigured \
                     since?); not guessing which side it fired on",
                    said.unwrap_or_default(),
                    now.unwrap_or_default()
                ),
            ));
        }
    }
    // What CloudWatch says now is the alarm's definition; the event's copy is the fallback.
    let comparison = now.or(said).map(str::to_string);
    let shown = comparison.as_deref().unwrap_or("unknown");
    let known = side(comparison.as_deref());
    // A two-sided (band) alarm: only the datapoints say which side it left the band on; used
    // to refuse a rule that contradicts them, never to choose a direction on their own.
    let checked = known.or_else(|| {
        comparison
            .as_deref()
            .filter(|c| c.contains("LowerOrGreaterThanUpper"))
            .and_then(|_| breach(alarm))
            .filter(|b| b.side_from != "comparison")
            .map(|b| b.side)
    });
    match (rule, checked) {
        (Some((r, from)), Some(s)) if direction_for(s) != r.direction => Err(SkipReason::new(
            SkipCode::Contradiction,
            format!(
                "alarm {name} is configured to scale {} ({}) but fires {} its threshold ({shown}), \
                 which asks to scale {}; not acting against the alarm",
                r.direction.as_str(),
                source_name(from),
                if s == Side::Above { "above" } else { "below" },
                direction_for(s).as_str()
            ),
        )),
        (Some((r, from)), _) => Ok((r.direction, from, comparison)),
        (None, Some(s)) if known.is_some() => {
            Ok((direction_for(s), Source::Comparison, comparison))
        }
        (None, _) => Err(SkipReason::new(
            SkipCode::NotRequested,
            format!(
                "alarm {name} has comparison {shown}, which does not say whether the group has \
                 too little or too much capacity, and no direction is configured ({SCALE_TAG} \
                 tag or SELFHEAL_SCALE_RULES); not guessing one"
            ),
        )),
    }
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::AlarmTag => "tag selfheal:scale",
        Source::Setting => "SELFHEAL_SCALE_RULES",
        Source::Dimension => "dimension",
        Source::Comparison => "comparison",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use crate::test_support::{alarm, plan_with, settings};
    use serde_json::json;

    const ABOVE: Option<&str> = Some("GreaterThanThreshold");
    const BELOW: Option<&str> = Some("LessThanThreshold");

    #[test]
    fn direction_follows_the_comparison_and_never_contradicts_it() {
        use Direction::{In, Out};
        let dim = json!({"AutoScalingGroupName": "g"});
        let rules = settings(&[("SELFHEAL_SCALE_RULES", "cpu-high=in:2")]).unwrap();
        let d = Settings::default();
        let tag = |t: &str| json!({"selfheal:scale": t});
        let none = json!({});
        // (tags, settings, comparison now) → (direction, source, max step) or the refusal
        type Want = Result<(Direction, Source, u32), SkipCode>;
        let cases: Vec<(serde_json::Value, &Settings, Option<&str>, Want)> = vec![
            (none.clone(), &d, ABOVE, Ok((Out, Source::Comparison, 4))),
            (
                none.clone(),
                &d,
                Some("GreaterThanOrEqualToThreshold"),
                Ok((Out, Source::Comparison, 4)),
            ),
            (none.clone(), &d, BELOW, Ok((In, Source::Comparison, 4))),
            (
                none.clone(),
                &d,
                Some("LessThanLowerThreshold"),
                Ok((In, Source::Comparison, 4)),
            ),
            // No comparison known, nothing configured: never a default direction.
            (none.clone(), &d, None, Err(SkipCode::NotRequested)),
            (
                none.clone(),
                &d,
                Some("LessThanLowerOrGreaterThanUpperThreshold"),
                Err(SkipCode::NotRequested),
            ),
            // Configured and agreeing; configured where the comparison cannot say.
            (none.clone(), &rules, BELOW, Ok((In, Source::Setting, 2))),
            (tag("out:3"), &d, ABOVE, Ok((Out, Source::AlarmTag, 3))),
            (tag("in"), &d, None, Ok((In, Source::AlarmTag, 4))),
            // Configured against the comparison.
            (none.clone(), &rules, ABOVE, Err(SkipCode::Contradiction)),
            (tag("out"), &d, BELOW, Err(SkipCode::Contradiction)),
            (tag("sideways"), &d, ABOVE, Err(SkipCode::NoTarget)),
        ];
        for (tags, s, comparison, want) in cases {
            let a = alarm("ALARM", "OK", dim.clone(), tags.clone(), &[70.0]);
            let got = plan_with(&a, s, comparison)
                .map(|p| (p.direction, p.direction_from, p.max_step))
                .map_err(|r| r.code);
            assert_eq!(got, want, "{tags} {comparison:?}");
        }
        // The event's comparison counts when CloudWatch gives none; the two must agree.
        let mut a = alarm("ALARM", "OK", dim.clone(), none.clone(), &[70.0]);
        a.evaluation.comparison = BELOW.map(str::to_string);
        assert_eq!(plan_with(&a, &d, None).unwrap().direction, In);
        let r = plan_with(&a, &d, ABOVE).unwrap_err();
        assert_eq!(r.code, SkipCode::Contradiction, "{r}");
        // A band alarm whose datapoints are below the band contradicts a configured `out`.
        let mut band = alarm("ALARM", "OK", dim, tag("out"), &[5.0]);
        band.reason = "Thresholds Crossed: outside the band".into();
        band.evaluation.threshold = None;
        band.evaluation.recent_upper_thresholds = vec![60.0];
        band.evaluation.recent_lower_thresholds = vec![20.0];
        let r = plan_with(&band, &d, Some("LessThanLowerOrGreaterThanUpperThreshold"));
        assert_eq!(r.unwrap_err().code, SkipCode::Contradiction);
    }
}
