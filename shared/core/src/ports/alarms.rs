//! CloudWatch alarms as they are now (not as the event that mentioned them said they were):
//! their current state, the actions they trigger, and their tags. The alarm functions read
//! these right before acting, so an alarm that cleared, an alarm owned by an Auto Scaling
//! policy, or an alarm that does not ask for this remedy is never acted on.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alarm::AlarmState;
use crate::decision::{SkipCode, SkipReason};
use crate::error::AwsError;

/// What CloudWatch says about an alarm now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmFacts {
    pub name: String,
    pub arn: Option<String>,
    pub state: AlarmState,
    /// When the alarm last changed state.
    pub state_updated: Option<DateTime<Utc>>,
    /// ARNs the alarm notifies or triggers in ALARM (SNS topics, Lambda functions, Auto Scaling
    /// policies, ...).
    pub alarm_actions: Vec<String>,
    /// `GreaterThanThreshold`, `LessThanLowerThreshold`, ... (`None` for composite alarms).
    pub comparison: Option<String>,
}

impl AlarmFacts {
    /// Actions that are Auto Scaling policies: the alarm belongs to a scaling policy (target
    /// tracking, step or simple scaling), which already acts on it.
    pub fn scaling_policy_actions(&self) -> Vec<&str> {
        self.alarm_actions
            .iter()
            .map(String::as_str)
            .filter(|a| {
                a.starts_with("arn:")
                    && a.contains(":autoscaling:")
                    && a.contains(":scalingPolicy:")
            })
            .collect()
    }
}

/// Acts only on an alarm that is still in ALARM now: `current` is what CloudWatch says at the
/// moment of acting (`None`: the alarm no longer exists).
pub fn check_still_alarming(name: &str, current: Option<&AlarmFacts>) -> Result<(), SkipReason> {
    match current {
        Some(f) if f.state == AlarmState::Alarm => Ok(()),
        Some(f) => Err(SkipReason::new(
            SkipCode::AlarmCleared,
            format!("alarm {name} is {} now; nothing to heal", f.state),
        )),
        None => Err(SkipReason::new(
            SkipCode::AlarmCleared,
            format!("alarm {name} no longer exists"),
        )),
    }
}

#[async_trait]
pub trait Alarms: Send + Sync {
    /// The alarm's current facts; `None` when no alarm has that name.
    async fn current(&self, name: &str) -> Result<Option<AlarmFacts>, AwsError>;
    /// The alarm's tags (empty when it has none).
    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: AlarmState) -> AlarmFacts {
        AlarmFacts {
            name: "a".into(),
            arn: None,
            state,
            state_updated: None,
            alarm_actions: vec![],
            comparison: None,
        }
    }

    #[test]
    fn only_a_firing_alarm_is_acted_on() {
        assert!(check_still_alarming("a", Some(&facts(AlarmState::Alarm))).is_ok());
        for current in [
            Some(facts(AlarmState::Ok)),
            Some(facts(AlarmState::InsufficientData)),
            None,
        ] {
            let r = check_still_alarming("a", current.as_ref()).unwrap_err();
            assert_eq!(r.code, SkipCode::AlarmCleared);
        }
    }

    #[test]
    fn scaling_policy_actions_are_recognised() {
        let facts = AlarmFacts {
            name: "TargetTracking-web-AlarmLow-1".into(),
            arn: None,
            state: AlarmState::Alarm,
            state_updated: None,
            alarm_actions: vec![
                "arn:aws:autoscaling:eu-west-1:1:scalingPolicy:abc:autoScalingGroupName/web:policyName/tt".into(),
                "arn:aws:sns:eu-west-1:1:ops".into(),
            ],
            comparison: Some("LessThanThreshold".into()),
        };
        assert_eq!(facts.scaling_policy_actions().len(), 1);
    }
}
