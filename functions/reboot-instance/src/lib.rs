//! reboot-instance: a CloudWatch alarm on an EC2 instance went into ALARM → reboot the
//! instance, if it exists, is running, opted in, and the guardrails allow it.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use selfheal::guard::ConfigError;
use selfheal::instances::{Ec2Instances, InstanceFacts, Instances};
use selfheal::runtime::alarms_or_reject;
use selfheal::{
    Alarm, AlarmKind, AuditRecord, Common, Decision, Function, HandlerError, Invocation, Options,
    Response, SkipCode, SkipReason, Target, Verdict,
};

pub const FUNCTION: &str = "reboot-instance";

/// Settings of this function beyond the shared guardrails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SELFHEAL_REBOOT_NAMESPACES`: alarm namespaces whose `InstanceId` dimension names an
    /// instance to reboot (default `AWS/EC2,CWAgent`).
    pub namespaces: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespaces: vec!["AWS/EC2".into(), "CWAgent".into()],
        }
    }
}

impl Settings {
    pub fn from_env() -> Self {
        match std::env::var("SELFHEAL_REBOOT_NAMESPACES") {
            Ok(v) if !v.trim().is_empty() => Self {
                namespaces: v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            },
            _ => Self::default(),
        }
    }
}

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
    match alarm.dimension("InstanceId") {
        Some(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => Err(SkipReason::new(
            SkipCode::NoTarget,
            format!("alarm {} has no InstanceId dimension", alarm.name),
        )),
    }
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

pub struct Deps {
    pub common: Common,
    pub instances: Arc<dyn Instances>,
    pub settings: Settings,
}

impl Deps {
    pub async fn from_env(opts: Options) -> Result<Self, ConfigError> {
        let common = Common::from_env(FUNCTION, opts).await?;
        let instances = Arc::new(Ec2Instances(aws_sdk_ec2::Client::new(&common.sdk)));
        Ok(Self {
            common,
            instances,
            settings: Settings::from_env(),
        })
    }

    async fn handle_alarm(
        &self,
        alarm: &Alarm,
        inv: &Invocation,
    ) -> Result<AuditRecord, HandlerError> {
        let c = &self.common;
        let details = json!({
            "alarm": alarm.name,
            "alarm_kind": alarm.kind,
            "transition": format!("{} → {}", alarm.previous_state.as_ref().map(|s| s.as_str()).unwrap_or("?"), alarm.state),
        });
        let id = match target(alarm, &self.settings) {
            Ok(id) => id,
            Err(reason) => {
                return Ok(self
                    .record(
                        c.audit_for(inv, alarm.shape.as_str(), &alarm.name)
                            .details(details)
                            .skipped(&reason),
                    )
                    .await)
            }
        };
        let audit = c.audit_for(inv, alarm.shape.as_str(), &id).details(details);
        let facts = match self.instances.facts(&id).await {
            Ok(f) => f,
            Err(e) => {
                return self
                    .fail(audit, "describe-failed", e.to_string(), e.retryable)
                    .await
            }
        };
        let audit = audit.detail("instance_state", facts.as_ref().map(|f| f.state.clone()));
        let (action, reason) = match decide(alarm, &id, facts.as_ref()) {
            Decision::Skip { reason } => return Ok(self.record(audit.skipped(&reason)).await),
            Decision::Act { action, reason } => (action, reason),
        };
        let tags = facts.as_ref().map(|f| &f.tags);
        let verdict = c
            .guard
            .check(
                Target {
                    id: &action.instance_id,
                    tags: tags
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                },
                Utc::now(),
            )
            .await;
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) => {
                return self
                    .fail(audit, "ledger-failed", e.to_string(), e.retryable())
                    .await
            }
        };
        if let Some(rec) = audit
            .clone()
            .from_verdict(&verdict, format!("reboot {}: {reason}", action.instance_id))
        {
            return Ok(self.record(rec).await);
        }
        debug_assert_eq!(verdict, Verdict::Act);
        match self.instances.reboot(&action.instance_id).await {
            Ok(()) => Ok(self
                .record(audit.acted(format!("rebooted {}: {reason}", action.instance_id)))
                .await),
            // Not returned for a Lambda retry even when retryable: the SDK already retried with
            // backoff, and the ledger holds the reservation, so a retry would only be refused
            // by the cooldown. The failure is audited and notified instead.
            Err(e) => Ok(self
                .record(audit.failed("reboot-failed", e.to_string()))
                .await),
        }
    }

    async fn record(&self, rec: AuditRecord) -> AuditRecord {
        self.common.audit.record(&rec).await;
        rec
    }

    /// Audits a failure; hands it back to Lambda for a retry when a retry can fix it.
    async fn fail(
        &self,
        audit: selfheal::audit::AuditBuilder,
        code: &str,
        msg: String,
        retryable: bool,
    ) -> Result<AuditRecord, HandlerError> {
        let rec = self
            .record(
                audit
                    .detail("retryable", retryable)
                    .failed(code, msg.clone()),
            )
            .await;
        if retryable {
            Err(HandlerError::Retryable(msg))
        } else {
            Ok(rec)
        }
    }
}

impl Function for Deps {
    async fn handle(&self, event: Value, inv: Invocation) -> Result<Response, HandlerError> {
        let mut audits = Vec::new();
        for alarm in alarms_or_reject(&self.common, &event, &inv).await? {
            audits.push(self.handle_alarm(&alarm, &inv).await?);
        }
        Ok(Response::from_audits(audits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal::parse_alarms;
    use std::collections::BTreeMap;

    fn alarm(state: &str, prev: &str, ns: &str, dims: Value) -> Alarm {
        let ev = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "detail": {"alarmName": "a", "state": {"value": state, "reason": "cpu"}, "previousState": {"value": prev},
                       "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": ns, "name": "CPUUtilization", "dimensions": dims}}}]}}});
        parse_alarms(&ev).unwrap().remove(0)
    }

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
        ];
        for (a, want) in cases {
            assert_eq!(target(&a, &s).map_err(|r| r.code), want, "{a:?}");
        }
    }

    #[test]
    fn decide_table() {
        let a = alarm("ALARM", "OK", "AWS/EC2", json!({"InstanceId": "i-1"}));
        let facts = |state: &str| InstanceFacts {
            id: "i-1".into(),
            state: state.into(),
            tags: BTreeMap::new(),
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

    #[test]
    fn every_sample_event_for_this_function_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with("reboot-instance-") {
                continue;
            }
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let alarms = parse_alarms(&v).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!alarms.is_empty(), "{name}");
            seen += 1;
        }
        assert!(seen >= 6, "expected samples for every shape, found {seen}");
    }
}
