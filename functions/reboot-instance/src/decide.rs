//! Whether to reboot, and which instance: pure decisions over the alarm, this function's
//! settings and what EC2 says about the instance.

use selfheal_core::ports::instances::InstanceFacts;
use selfheal_core::{Alarm, AlarmKind, Decision, SkipCode, SkipReason};

use crate::settings::Settings;

/// The action: reboot this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reboot {
    pub instance_id: String,
}

/// Which instance the alarm is about, or why it names none we should touch.
pub fn target(alarm: &Alarm, settings: &Settings) -> Result<String, SkipReason> {
    if !alarm.entered_alarm() {
        let from = alarm
            .previous_state
            .as_ref()
            .map(|s| s.as_str())
            .unwrap_or("unknown");
        return Err(SkipReason::new(
            SkipCode::NotAlarmTransition,
            format!(
                "alarm {} went {from} → {}; only a transition into ALARM reboots",
                alarm.name, alarm.state
            ),
        ));
    }
    if alarm.kind == AlarmKind::Composite {
        return Err(SkipReason::new(
            SkipCode::NoTarget,
            format!("composite alarm {} names no instance (no dimensions); alarm the instance's own metric instead", alarm.name),
        ));
    }
    let namespaces: Vec<&str> = alarm.namespaces().collect();
    if !namespaces
        .iter()
        .any(|ns| settings.namespaces.iter().any(|s| s == ns))
    {
        return Err(SkipReason::new(
            SkipCode::WrongNamespace,
            format!(
                "alarm {} watches {:?}; this function handles {:?}",
                alarm.name, namespaces, settings.namespaces
            ),
        ));
    }
    // A metric-math alarm may read several instances: it cannot say which one is sick, and
    // rebooting the first could reboot the healthy one.
    alarm.single_target("InstanceId")?.ok_or_else(|| {
        SkipReason::new(
            SkipCode::NoTarget,
            format!("alarm {} has no InstanceId dimension", alarm.name),
        )
    })
}

/// Refusals a person must hear about: the alarm reads several instances, so it can never
/// reboot any, while one of them may be sick. The other refusals are expected (a capacity
/// alarm that does not ask for a reboot, a stale event, a cleared alarm, a stopped instance)
/// and only audited: every alarm on a shared topic reaches this function, and paging for
/// each would bury the notices that matter.
pub fn needs_a_person(reason: &SkipReason) -> bool {
    reason.code == SkipCode::SeveralTargets
}

/// Reboot or not, from the alarm and what EC2 says about the instance.
pub fn decide(alarm: &Alarm, id: &str, facts: Option<&InstanceFacts>) -> Decision<Reboot> {
    let Some(facts) = facts else {
        return Decision::skip(
            SkipCode::TargetNotFound,
            format!("instance {id} does not exist"),
        );
    };
    if facts.state != "running" {
        return Decision::skip(
            SkipCode::TargetNotEligible,
            format!("instance {id} is {}, not running", facts.state),
        );
    }
    let why = if alarm.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", alarm.reason)
    };
    Decision::act(
        Reboot {
            instance_id: id.to_string(),
        },
        format!("alarm {} entered ALARM{why}", alarm.name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{alarm, alarm_on};
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn target_table() {
        let s = Settings::default();
        let cases = [
            (
                alarm("ALARM", "OK", "AWS/EC2", json!({"InstanceId": "i-1"})),
                Ok("i-1".to_string()),
            ),
            (
                alarm(
                    "ALARM",
                    "INSUFFICIENT_DATA",
                    "CWAgent",
                    json!({"InstanceId": "i-2"}),
                ),
                Ok("i-2".into()),
            ),
            (
                alarm("OK", "ALARM", "AWS/EC2", json!({"InstanceId": "i-1"})),
                Err(SkipCode::NotAlarmTransition),
            ),
            (
                alarm(
                    "INSUFFICIENT_DATA",
                    "OK",
                    "AWS/EC2",
                    json!({"InstanceId": "i-1"}),
                ),
                Err(SkipCode::NotAlarmTransition),
            ),
            (
                alarm("ALARM", "ALARM", "AWS/EC2", json!({"InstanceId": "i-1"})),
                Err(SkipCode::NotAlarmTransition),
            ),
            (
                alarm(
                    "ALARM",
                    "OK",
                    "AWS/RDS",
                    json!({"DBInstanceIdentifier": "db"}),
                ),
                Err(SkipCode::WrongNamespace),
            ),
            (
                alarm(
                    "ALARM",
                    "OK",
                    "AWS/EC2",
                    json!({"AutoScalingGroupName": "g"}),
                ),
                Err(SkipCode::NoTarget),
            ),
            (
                alarm_on(
                    &["StatusCheckFailed", "StatusCheckFailed"],
                    json!([{"InstanceId": "i-a"}, {"InstanceId": "i-b"}]),
                ),
                Err(SkipCode::SeveralTargets),
            ),
            (
                alarm_on(
                    &["StatusCheckFailed_Instance", "StatusCheckFailed_System"],
                    json!([{"InstanceId": "i-a"}, {"InstanceId": " i-a "}]),
                ),
                Ok("i-a".into()),
            ),
        ];
        for (a, want) in cases {
            assert_eq!(target(&a, &s).map_err(|r| r.code), want, "{a:?}");
        }
    }

    #[test]
    fn only_an_alarm_over_several_instances_needs_a_person() {
        for (code, person) in [
            (SkipCode::SeveralTargets, true),
            (SkipCode::NotRequested, false),
            (SkipCode::StaleEvent, false),
            (SkipCode::AlarmCleared, false),
            (SkipCode::TargetNotEligible, false),
        ] {
            assert_eq!(
                needs_a_person(&SkipReason::new(code, "x")),
                person,
                "{code:?}"
            );
        }
    }

    #[test]
    fn decide_table() {
        let a = alarm("ALARM", "OK", "AWS/EC2", json!({"InstanceId": "i-1"}));
        let facts = |state: &str| InstanceFacts {
            id: "i-1".into(),
            state: state.into(),
            tags: BTreeMap::new(),
            root_device_type: Some("ebs".into()),
        };
        assert!(
            matches!(decide(&a, "i-1", None), Decision::Skip { reason } if reason.code == SkipCode::TargetNotFound)
        );
        for state in ["stopped", "terminated", "pending", "stopping"] {
            assert!(
                matches!(decide(&a, "i-1", Some(&facts(state))), Decision::Skip { reason } if reason.code == SkipCode::TargetNotEligible)
            );
        }
        match decide(&a, "i-1", Some(&facts("running"))) {
            Decision::Act { action, reason } => {
                assert_eq!(action.instance_id, "i-1");
                assert!(reason.contains("entered ALARM: cpu"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
