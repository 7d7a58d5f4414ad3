//! What an alarm asks for: which group, which direction, and the most one change may move it.
//! Pure, in two steps: [`request`] from the event and the settings alone (before any AWS
//! call), then [`plan`] once CloudWatch has said what the alarm is now ([`AlarmFacts`]).
//!
//! A wrong resize is worse than a missed one, so every doubt is a skip with its reason: an
//! event naming several groups, a stale event, an alarm that cleared, an alarm an Auto Scaling
//! policy owns, a direction the alarm's comparison does not give or contradicts
//! ([`crate::direction`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use selfheal_core::ports::alarms::{check_still_alarming, AlarmFacts};
use selfheal_core::{Alarm, AlarmState, SkipCode, SkipReason};

use crate::direction::direction_of;
use crate::settings::{Direction, ScaleRule, Settings};

/// The alarm dimension that names the group (as on `AWS/EC2` and `AWS/AutoScaling` metrics).
pub const GROUP_DIMENSION: &str = "AutoScalingGroupName";
/// Alarm tag naming the group when the alarm has no `AutoScalingGroupName` dimension.
pub const GROUP_TAG: &str = "selfheal:group";
/// Alarm tag giving the direction and, optionally, the max step: `out`, `in`, `out:2`.
pub const SCALE_TAG: &str = "selfheal:scale";
/// The name prefix of the alarms target tracking creates (and acts on) itself.
pub const TARGET_TRACKING_PREFIX: &str = "TargetTracking-";

/// Where a piece of the plan came from (for the audit record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Dimension,
    AlarmTag,
    Setting,
    /// The alarm's comparison operator: above its threshold → out, below → in.
    Comparison,
}

/// What the event and the settings ask for, before CloudWatch is asked about the alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub group: String,
    pub group_from: Source,
    /// A direction configured for this alarm (its `selfheal:scale` tag, `SELFHEAL_SCALE_RULES`).
    pub rule: Option<(ScaleRule, Source)>,
}

/// What the alarm asks for, before looking at the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub group: String,
    pub group_from: Source,
    pub direction: Direction,
    pub direction_from: Source,
    /// The comparison operator the direction was checked against (`None`: none known).
    pub comparison: Option<String>,
    pub max_step: u32,
}

/// Which group the event is about and what is configured for it, or why nothing is done;
/// from the event alone, so these refusals cost no AWS call.
pub fn request(
    alarm: &Alarm,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Request, SkipReason> {
    if !alarm.entered_alarm() {
        return Err(not_a_transition(alarm));
    }
    alarm.check_age(now, settings.max_event_age)?;
    if alarm.name.starts_with(TARGET_TRACKING_PREFIX) {
        return Err(SkipReason::new(
            SkipCode::OwnedElsewhere,
            format!(
                "alarm {} belongs to a target tracking policy (its name starts with \
                 {TARGET_TRACKING_PREFIX}); the policy scales on it, a resize of ours would \
                 fight it",
                alarm.name
            ),
        ));
    }
    let (group, group_from) = group_of(alarm, settings)?;
    let rule = rule_of(alarm, settings)?;
    Ok(Request {
        group,
        group_from,
        rule,
    })
}

/// The plan once CloudWatch has said what the alarm is now (`current`; `None`: it no longer
/// exists): still in ALARM, not an Auto Scaling policy's, and a direction its comparison
/// gives or agrees with.
pub fn plan(
    request: Request,
    alarm: &Alarm,
    current: Option<&AlarmFacts>,
    settings: &Settings,
) -> Result<Plan, SkipReason> {
    check_still_alarming(&alarm.name, current)?;
    if let Some(f) = current {
        let policies = f.scaling_policy_actions();
        if !policies.is_empty() {
            return Err(SkipReason::new(
                SkipCode::OwnedElsewhere,
                format!(
                    "alarm {} triggers Auto Scaling polic{} {}; the policy acts on it, a \
                     resize of ours would stack on (or fight) it",
                    alarm.name,
                    if policies.len() == 1 { "y" } else { "ies" },
                    policies.join(", ")
                ),
            ));
        }
    }
    let (direction, direction_from, comparison) = direction_of(alarm, current, request.rule)?;
    Ok(Plan {
        group: request.group,
        group_from: request.group_from,
        direction,
        direction_from,
        comparison,
        max_step: request
            .rule
            .and_then(|(r, _)| r.max_step)
            .unwrap_or(settings.max_step),
    })
}

/// Refusals a person must hear about: the alarm is wired to this function, but the way it is
/// set up means it can never be acted on (it names several groups, its configured direction
/// contradicts it, nothing says which way). Expected refusals (a policy's alarm, a cleared
/// alarm, a stale event, a recovery) are only audited.
pub fn needs_a_person(reason: &SkipReason) -> bool {
    matches!(
        reason.code,
        SkipCode::SeveralTargets | SkipCode::Contradiction | SkipCode::NotRequested
    )
}

fn not_a_transition(alarm: &Alarm) -> SkipReason {
    let from = alarm
        .previous_state
        .as_ref()
        .map(|s| s.as_str())
        .unwrap_or("unknown");
    let why = if alarm.state == AlarmState::Ok {
        "a recovery does not resize by itself; only a transition into ALARM acts (a \
         scale-in needs its own alarm, below its threshold)"
    } else {
        "only a transition into ALARM acts"
    };
    SkipReason::new(
        SkipCode::NotAlarmTransition,
        format!("alarm {} went {from} → {}; {why}", alarm.name, alarm.state),
    )
}

/// The group, first match wins: the alarm's dimension (exactly one distinct value across
/// its metrics), its tag, the settings.
fn group_of(alarm: &Alarm, settings: &Settings) -> Result<(String, Source), SkipReason> {
    let named = |v: Option<&String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(g) = alarm.single_target(GROUP_DIMENSION)? {
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

/// The configured direction and max step, first match wins: the alarm's tag, the settings;
/// `None` when neither configures one. An unreadable tag is refused rather than guessed at.
fn rule_of(alarm: &Alarm, settings: &Settings) -> Result<Option<(ScaleRule, Source)>, SkipReason> {
    if let Some(t) = alarm.tags.get(SCALE_TAG) {
        return match ScaleRule::parse(t) {
            Some(r) => Ok(Some((r, Source::AlarmTag))),
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
    Ok(settings
        .rules
        .get(&alarm.name)
        .map(|r| (*r, Source::Setting)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{alarm, alarm_now, plan_with, settings};
    use selfheal_core::alarm::AlarmMetric;
    use serde_json::json;

    const ABOVE: Option<&str> = Some("GreaterThanThreshold");

    #[test]
    fn which_group() {
        let s = settings(&[("SELFHEAL_SCALE_GROUPS", "cpu-high=mapped")]).unwrap();
        let dim = json!({"AutoScalingGroupName": "from-dim"});
        let tags = json!({"selfheal:group": "from-tag"});
        let none = json!({});
        let p = plan_with(
            &alarm("ALARM", "OK", dim.clone(), tags.clone(), &[]),
            &s,
            ABOVE,
        );
        let p = p.unwrap();
        assert_eq!(
            (p.group.as_str(), p.group_from),
            ("from-dim", Source::Dimension)
        );
        let p = plan_with(&alarm("ALARM", "OK", none.clone(), tags, &[]), &s, ABOVE).unwrap();
        assert_eq!(
            (p.group.as_str(), p.group_from),
            ("from-tag", Source::AlarmTag)
        );
        let p = plan_with(
            &alarm("ALARM", "OK", none.clone(), none.clone(), &[]),
            &s,
            ABOVE,
        );
        assert_eq!(p.unwrap().group_from, Source::Setting);
        let d = Settings::default();
        for dims in [none, json!({"AutoScalingGroupName": "  "})] {
            let r = plan_with(&alarm("ALARM", "OK", dims, json!({}), &[]), &d, ABOVE);
            assert_eq!(r.unwrap_err().code, SkipCode::NoTarget);
        }
    }

    #[test]
    fn a_metric_math_alarm_over_two_groups_names_no_group() {
        let mut a = alarm(
            "ALARM",
            "OK",
            json!({"AutoScalingGroupName": "a"}),
            json!({}),
            &[],
        );
        let over = |g: &str| AlarmMetric {
            dimensions: [(GROUP_DIMENSION.to_string(), g.to_string())].into(),
            ..AlarmMetric::default()
        };
        a.metrics = vec![over("a"), over("b")];
        // Even a tag or a setting naming one of them does not pick it.
        a.tags.insert(GROUP_TAG.into(), "a".into());
        let r = plan_with(&a, &Settings::default(), ABOVE).unwrap_err();
        assert_eq!(r.code, SkipCode::SeveralTargets, "{r}");
        assert!(r.detail.contains("a, b"), "{r}");
        // The same group twice is one group.
        a.metrics = vec![over("a"), over("a")];
        assert_eq!(
            plan_with(&a, &Settings::default(), ABOVE).unwrap().group,
            "a"
        );
    }

    #[test]
    fn target_tracking_and_policy_alarms_are_owned_elsewhere() {
        let dim = json!({"AutoScalingGroupName": "g"});
        let d = Settings::default();
        let mut tt = alarm(
            "ALARM",
            "OK",
            dim.clone(),
            json!({"selfheal:scale": "in"}),
            &[10.0],
        );
        tt.name = "TargetTracking-web-AlarmLow-0b5e".into();
        let r = request(&tt, &d, Utc::now()).unwrap_err();
        assert_eq!(r.code, SkipCode::OwnedElsewhere, "{r}");
        let a = alarm("ALARM", "OK", dim, json!({}), &[90.0]);
        let policy = "arn:aws:autoscaling:us-east-1:1:scalingPolicy:x:autoScalingGroupName/g:policyName/step";
        let now = alarm_now(&a.name, ABOVE, &[policy, "arn:aws:sns:us-east-1:1:ops"]);
        let r = plan(request(&a, &d, Utc::now()).unwrap(), &a, Some(&now), &d).unwrap_err();
        assert_eq!(r.code, SkipCode::OwnedElsewhere, "{r}");
        assert!(r.detail.contains("policyName/step"), "{r}");
        // Expected whenever the policy's alarm fires: audited, nobody paged.
        assert!(!needs_a_person(&r));
    }

    #[test]
    fn only_a_fresh_transition_into_an_alarm_still_firing_acts() {
        let dim = json!({"AutoScalingGroupName": "g"});
        let d = Settings::default();
        let none = json!({});
        for (state, prev) in [
            ("OK", "ALARM"),
            ("ALARM", "ALARM"),
            ("INSUFFICIENT_DATA", "OK"),
        ] {
            let a = alarm(state, prev, dim.clone(), none.clone(), &[]);
            let r = plan_with(&a, &d, ABOVE).unwrap_err();
            assert_eq!(r.code, SkipCode::NotAlarmTransition, "{state}");
        }
        let ok = plan_with(
            &alarm("OK", "ALARM", dim.clone(), none.clone(), &[]),
            &d,
            ABOVE,
        );
        assert!(ok.unwrap_err().detail.contains("recovery does not resize"));
        // Stale: the state change is older than the maximum age.
        let mut a = alarm("ALARM", "OK", dim.clone(), none.clone(), &[]);
        a.time = Some(Utc::now() - chrono::Duration::hours(2));
        let r = request(&a, &d, Utc::now()).unwrap_err();
        assert_eq!(r.code, SkipCode::StaleEvent, "{r}");
        let wide = settings(&[("SELFHEAL_MAX_EVENT_AGE_SECONDS", "10800")]).unwrap();
        assert!(request(&a, &wide, Utc::now()).is_ok());
        // Cleared or gone by the time CloudWatch is asked.
        let a = alarm("ALARM", "OK", dim, none, &[]);
        let req = || request(&a, &d, Utc::now()).unwrap();
        let mut cleared = alarm_now(&a.name, ABOVE, &[]);
        cleared.state = AlarmState::Ok;
        for now in [Some(&cleared), None] {
            let r = plan(req(), &a, now, &d).unwrap_err();
            assert_eq!(r.code, SkipCode::AlarmCleared, "{r}");
        }
    }
}
