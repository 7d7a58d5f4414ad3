//! Whether an alarm asks for a reboot, pure. A reboot is for an instance that is sick (its
//! status checks fail), not for one that is busy: a CPU alarm at peak must not reboot a
//! healthy server. An alarm asks when every metric it reads is on `SELFHEAL_REBOOT_METRICS`
//! (the status checks by default), or when it is tagged `selfheal:reboot=true` (in the event,
//! or as read from CloudWatch by the handler).

use std::collections::BTreeMap;

use selfheal_core::settings::bool_word;
use selfheal_core::{Alarm, SkipCode, SkipReason};

use crate::settings::{Settings, REBOOT_METRICS};

/// The alarm tag that opts an alarm in, whatever its metric.
pub const REBOOT_TAG: &str = "selfheal:reboot";

/// What the event alone says about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The alarm asks for a reboot, and why (for the audit record).
    Asked(String),
    /// Only the alarm's tags can tell.
    AskTags,
}

/// Every metric name the alarm reads (expressions have none).
pub fn metrics_read(alarm: &Alarm) -> Vec<&str> {
    let mut names: Vec<&str> = alarm
        .metrics
        .iter()
        .filter_map(|m| m.name.as_deref())
        .collect();
    if names.is_empty() {
        names.extend(alarm.metric_name.as_deref());
    }
    names.dedup();
    names
}

/// Whether the event shows the alarm asks for a reboot: by its metrics, or by the opt-in
/// tag when the event carries the alarm's tags.
pub fn from_event(alarm: &Alarm, settings: &Settings) -> Request {
    if tagged(&alarm.tags) {
        return Request::Asked(format!("alarm tagged {REBOOT_TAG}=true (in the event)"));
    }
    let metrics = metrics_read(alarm);
    if !metrics.is_empty()
        && metrics
            .iter()
            .all(|m| settings.reboot_metrics.iter().any(|r| r == m))
    {
        return Request::Asked(format!(
            "alarm reads {}, on {REBOOT_METRICS}",
            metrics.join(", ")
        ));
    }
    Request::AskTags
}

/// The answer from the alarm's tags (as read from CloudWatch), when the event left it open.
pub fn from_tags(
    alarm: &Alarm,
    tags: &BTreeMap<String, String>,
    settings: &Settings,
) -> Result<String, SkipReason> {
    if tagged(tags) {
        return Ok(format!("alarm tagged {REBOOT_TAG}=true"));
    }
    let metrics = metrics_read(alarm);
    let off: Vec<&str> = metrics
        .iter()
        .copied()
        .filter(|m| !settings.reboot_metrics.iter().any(|r| r == m))
        .collect();
    let reads = if metrics.is_empty() {
        "no named metric".to_string()
    } else {
        metrics.join(", ")
    };
    Err(SkipReason::new(
        SkipCode::NotRequested,
        format!(
            "alarm {} reads {reads}, not all on {REBOOT_METRICS} ({}), and is not tagged \
             {REBOOT_TAG}=true: a reboot is for an instance failing its status checks, not \
             a busy one. To have this alarm reboot its instance, tag the alarm \
             {REBOOT_TAG}=true{}",
            alarm.name,
            settings.reboot_metrics.join(", "),
            if off.is_empty() {
                String::new()
            } else {
                format!(" or add {} to {REBOOT_METRICS}", off.join(", "))
            }
        ),
    ))
}

fn tagged(tags: &BTreeMap<String, String>) -> bool {
    tags.get(REBOOT_TAG).and_then(|v| bool_word(v)) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::alarm_on;
    use serde_json::json;

    #[test]
    fn request_table() {
        let s = Settings::default();
        let i = json!({"InstanceId": "i-1"});
        let asked = |a: &Alarm| matches!(from_event(a, &s), Request::Asked(_));
        assert!(asked(&alarm_on(&["StatusCheckFailed"], i.clone())));
        assert!(asked(&alarm_on(
            &["StatusCheckFailed_Instance", "StatusCheckFailed_System"],
            i.clone()
        )));
        // Metric math: every metric read must be on the list.
        assert!(!asked(&alarm_on(
            &["StatusCheckFailed", "CPUUtilization"],
            i.clone()
        )));
        assert!(!asked(&alarm_on(&["CPUUtilization"], i.clone())));
        assert!(!asked(&alarm_on(&[], i.clone())), "no metric, no request");

        let mut cpu = alarm_on(&["CPUUtilization"], i);
        cpu.tags.insert(REBOOT_TAG.into(), "true".into());
        assert!(asked(&cpu), "tags in the event count without a call");
    }

    #[test]
    fn tags_opt_in_and_the_refusal_says_how() {
        let s = Settings::default();
        let cpu = alarm_on(&["CPUUtilization"], json!({"InstanceId": "i-1"}));
        let tags = |v: &str| BTreeMap::from([(REBOOT_TAG.to_string(), v.to_string())]);
        assert!(from_tags(&cpu, &tags("true"), &s).is_ok());
        for no in [tags("false"), tags("maybe"), BTreeMap::new()] {
            let r = from_tags(&cpu, &no, &s).unwrap_err();
            assert_eq!(r.code, SkipCode::NotRequested);
            assert!(
                r.detail.contains("tag the alarm selfheal:reboot=true")
                    && r.detail
                        .contains("add CPUUtilization to SELFHEAL_REBOOT_METRICS"),
                "{}",
                r.detail
            );
        }
    }
}
