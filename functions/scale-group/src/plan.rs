//! What an alarm asks for before anyone looks at the group: which group, which direction, and
//! the most one change may move it. Pure, from the alarm and the settings.

use serde::Serialize;

use selfheal_core::{Alarm, AlarmState, SkipCode, SkipReason};

use crate::settings::{Direction, ScaleRule, Settings};

/// The alarm dimension that names the group (as on `AWS/EC2` and `AWS/AutoScaling` metrics).
pub const GROUP_DIMENSION: &str = "AutoScalingGroupName";
/// Alarm tag naming the group when the alarm has no `AutoScalingGroupName` dimension.
pub const GROUP_TAG: &str = "selfheal:group";
/// Alarm tag giving the direction and, optionally, the max step: `out`, `in`, `out:2`.
pub const SCALE_TAG: &str = "selfheal:scale";

/// Where a piece of the plan came from (for the audit record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Dimension,
    AlarmTag,
    Setting,
    Default,
}

/// What the alarm asks for, before looking at the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub group: String,
    pub group_from: Source,
    pub direction: Direction,
    pub direction_from: Source,
    pub max_step: u32,
}

/// Which group the alarm is about and what it asks for, or why it asks for nothing.
pub fn plan(alarm: &Alarm, settings: &Settings) -> Result<Plan, SkipReason> {
    if !alarm.entered_alarm() {
        return Err(not_a_transition(alarm));
    }
    let (group, group_from) = group_of(alarm, settings)?;
    let (rule, direction_from) = rule_of(alarm, settings)?;
    Ok(Plan {
        group,
        group_from,
        direction: rule.direction,
        direction_from,
        max_step: rule.max_step.unwrap_or(settings.max_step),
    })
}

fn not_a_transition(alarm: &Alarm) -> SkipReason {
    let from = alarm
        .previous_state
        .as_ref()
        .map(|s| s.as_str())
        .unwrap_or("unknown");
    let why = if alarm.state == AlarmState::Ok {
        "a recovery does not resize by itself; only a transition into ALARM acts (a \
         scale-in needs its own alarm, configured as `in`)"
    } else {
        "only a transition into ALARM acts"
    };
    SkipReason::new(
        SkipCode::NotAlarmTransition,
        format!("alarm {} went {from} → {}; {why}", alarm.name, alarm.state),
    )
}

/// The group, first match wins: the alarm's dimension, its tag, the settings.
fn group_of(alarm: &Alarm, settings: &Settings) -> Result<(String, Source), SkipReason> {
    let named = |v: Option<&String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(g) = named(alarm.dimensions.get(GROUP_DIMENSION)) {
        Ok((g, Source::Dimension))
    } else if let Some(g) = named(alarm.tags.get(GROUP_TAG)) {
        Ok((g, Source::AlarmTag))
    } else if let Some(g) = named(settings.groups.get(&alarm.name)) {
        Ok((g, Source::Setting))
    } else {
        Err(SkipReason::new(
            SkipCode::NoTarget,
            format!(
                "alarm {} names no Auto Scaling group: no {GROUP_DIMENSION} dimension, no \
                 {GROUP_TAG} tag, and not in SELFHEAL_SCALE_GROUPS",
                alarm.name
            ),
        ))
    }
}

/// The direction and max step, first match wins: the alarm's tag, the settings, scale out.
/// An unreadable tag is refused rather than guessed at.
fn rule_of(alarm: &Alarm, settings: &Settings) -> Result<(ScaleRule, Source), SkipReason> {
    if let Some(t) = alarm.tags.get(SCALE_TAG) {
        return match ScaleRule::parse(t) {
            Some(r) => Ok((r, Source::AlarmTag)),
            None => Err(SkipReason::new(
                SkipCode::NoTarget,
                format!(
                    "alarm {} has tag {SCALE_TAG}={t:?}; expected out, in, out:N or in:N — \
                     not guessing a direction",
                    alarm.name
                ),
            )),
        };
    }
    Ok(match settings.rules.get(&alarm.name) {
        Some(r) => (*r, Source::Setting),
        None => (
            ScaleRule {
                direction: Direction::Out,
                max_step: None,
            },
            Source::Default,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{alarm, settings};
    use serde_json::json;

    #[test]
    fn plan_table() {
        let s = settings(&[
            ("SELFHEAL_SCALE_GROUPS", "cpu-high=mapped"),
            ("SELFHEAL_SCALE_RULES", "cpu-high=in:2"),
        ])
        .unwrap();
        let dim = json!({"AutoScalingGroupName": "from-dim"});
        let none = json!({});
        let p = plan(
            &alarm("ALARM", "OK", dim.clone(), none.clone(), &[70.0]),
            &s,
        )
        .unwrap();
        assert_eq!(
            (
                p.group.as_str(),
                p.group_from,
                p.direction,
                p.direction_from,
                p.max_step
            ),
            (
                "from-dim",
                Source::Dimension,
                Direction::In,
                Source::Setting,
                2
            )
        );
        // The tag beats the setting, the dimension beats the tag.
        let tags = json!({"selfheal:group": "from-tag", "selfheal:scale": "out"});
        let p = plan(&alarm("ALARM", "OK", none.clone(), tags.clone(), &[]), &s).unwrap();
        assert_eq!(
            (p.group.as_str(), p.group_from, p.direction, p.max_step),
            ("from-tag", Source::AlarmTag, Direction::Out, 4)
        );
        let p = plan(&alarm("ALARM", "OK", dim.clone(), tags, &[]), &s).unwrap();
        assert_eq!(p.group, "from-dim");
        let p = plan(&alarm("ALARM", "OK", none.clone(), none.clone(), &[]), &s).unwrap();
        assert_eq!(
            (p.group.as_str(), p.group_from),
            ("mapped", Source::Setting)
        );
        // Default: scale out, settings' max step.
        let d = Settings::default();
        let p = plan(
            &alarm("ALARM", "INSUFFICIENT_DATA", dim.clone(), none.clone(), &[]),
            &d,
        )
        .unwrap();
        assert_eq!(
            (p.direction, p.direction_from, p.max_step),
            (Direction::Out, Source::Default, 4)
        );
        // Refusals.
        let cases = [
            (
                alarm("OK", "ALARM", dim.clone(), none.clone(), &[]),
                SkipCode::NotAlarmTransition,
            ),
            (
                alarm("ALARM", "ALARM", dim.clone(), none.clone(), &[]),
                SkipCode::NotAlarmTransition,
            ),
            (
                alarm("INSUFFICIENT_DATA", "OK", dim.clone(), none.clone(), &[]),
                SkipCode::NotAlarmTransition,
            ),
            (
                alarm("ALARM", "OK", none.clone(), none.clone(), &[]),
                SkipCode::NoTarget,
            ),
            (
                alarm(
                    "ALARM",
                    "OK",
                    json!({"AutoScalingGroupName": "  "}),
                    none.clone(),
                    &[],
                ),
                SkipCode::NoTarget,
            ),
            (
                alarm(
                    "ALARM",
                    "OK",
                    dim,
                    json!({"selfheal:scale": "sideways"}),
                    &[],
                ),
                SkipCode::NoTarget,
            ),
        ];
        for (a, want) in cases {
            assert_eq!(plan(&a, &d).map_err(|r| r.code).err(), Some(want), "{a:?}");
        }
        let ok = plan(&alarm("OK", "ALARM", json!({}), json!({}), &[]), &d).unwrap_err();
        assert!(ok.detail.contains("recovery does not resize"), "{ok}");
    }
}
