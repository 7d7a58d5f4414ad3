//! Every decision leaves a trace: one JSON log line, CloudWatch Embedded Metric Format (EMF)
//! metrics, and — when something was done, refused by a cap, or failed — an SNS notice.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::decision::{SkipCode, SkipReason};
use crate::guard::Verdict;
use crate::ports::notifier::Notifier;
use crate::telemetry;

/// What happened, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Acted,
    DryRun,
    Skipped,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acted => "acted",
            Self::DryRun => "dry-run",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// One decision, as logged, measured and notified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub function: String,
    pub request_id: String,
    /// What triggered the function (alarm shape, S3 event, SQS, scrub, ...).
    pub trigger: String,
    /// The resource decided about (instance id, bucket/key, group, transaction id).
    pub target: String,
    pub decision: Outcome,
    /// Stable code: the skip code, `acted`, `dry-run`, or a failure code.
    pub code: String,
    pub reason: String,
    /// Function-specific facts behind the decision (digests, arithmetic, states).
    pub details: Value,
    pub at: DateTime<Utc>,
}

impl AuditRecord {
    pub fn builder(function: &str, request_id: &str, trigger: &str, target: &str) -> AuditBuilder {
        AuditBuilder {
            function: function.into(),
            request_id: request_id.into(),
            trigger: trigger.into(),
            target: target.into(),
            details: json!({}),
        }
    }

    /// True when the action failed without changing anything (see
    /// [`AuditBuilder::action_failed`]).
    pub fn action_failed(&self) -> bool {
        self.decision == Outcome::Failed
            && self.details.get("action_failed").and_then(Value::as_bool) == Some(true)
    }

    /// Should an operator hear about it?
    pub fn notify_worthy(&self) -> bool {
        match self.decision {
            Outcome::Acted | Outcome::Failed => true,
            Outcome::DryRun => false,
            Outcome::Skipped => {
                SkipCode::ESCALATING.iter().any(|c| self.code == c.as_str())
                    || self.details.get("escalate").and_then(Value::as_bool) == Some(true)
            }
        }
    }
}

/// Builds a record once the outcome is known.
#[derive(Debug, Clone)]
pub struct AuditBuilder {
    function: String,
    request_id: String,
    trigger: String,
    target: String,
    details: Value,
}

impl AuditBuilder {
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Adds one detail (details must be a JSON object).
    pub fn detail(mut self, key: &str, value: impl Serialize) -> Self {
        if let Value::Object(m) = &mut self.details {
            m.insert(
                key.to_string(),
                serde_json::to_value(value).unwrap_or(Value::Null),
            );
        }
        self
    }

    fn finish(self, decision: Outcome, code: &str, reason: String) -> AuditRecord {
        AuditRecord {
            function: self.function,
            request_id: self.request_id,
            trigger: self.trigger,
            target: self.target,
            decision,
            code: code.to_string(),
            reason,
            details: self.details,
            at: Utc::now(),
        }
    }

    pub fn acted(self, reason: impl Into<String>) -> AuditRecord {
        self.finish(Outcome::Acted, "acted", reason.into())
    }

    pub fn dry_run(self, reason: impl Into<String>) -> AuditRecord {
        self.finish(
            Outcome::DryRun,
            "dry-run",
            format!("dry run: would act: {}", reason.into()),
        )
    }

    pub fn skipped(self, reason: &SkipReason) -> AuditRecord {
        self.finish(
            Outcome::Skipped,
            reason.code.as_str(),
            reason.detail.clone(),
        )
    }

    pub fn failed(self, code: &str, reason: impl Into<String>) -> AuditRecord {
        self.finish(Outcome::Failed, code, reason.into())
    }

    /// The action was attempted and failed without changing anything (the AWS call was
    /// refused or never reached the service): `Common::act_guarded` releases its reservation
    /// and hands it back for a retry when `error` is retryable.
    pub fn action_failed(self, code: &str, error: &crate::error::AwsError) -> AuditRecord {
        self.detail("action_failed", true)
            .detail("retryable", error.retryable)
            .failed(code, error.to_string())
    }

    /// The record for a guardrail verdict other than `Act` (which the caller completes after
    /// acting): dry run or skip.
    pub fn from_verdict(self, verdict: &Verdict, would: impl Into<String>) -> Option<AuditRecord> {
        match verdict {
            Verdict::Act => None,
            Verdict::DryRun => Some(self.dry_run(would)),
            Verdict::Skip { reason } => Some(self.skipped(reason)),
        }
    }
}

/// Writes audit records to the log, the metrics and (when worth it) the notifier.
#[derive(Clone)]
pub struct Auditor {
    notifier: Option<Arc<dyn Notifier>>,
}

/// Metric namespace of the EMF metrics.
pub const METRIC_NAMESPACE: &str = "selfheal";

impl Auditor {
    pub fn new(notifier: Option<Arc<dyn Notifier>>) -> Self {
        Self { notifier }
    }

    /// Logs, measures and notifies one record. Notification failures are logged and counted,
    /// never raised: the decision already happened and a retry would repeat it.
    pub async fn record(&self, rec: &AuditRecord) {
        telemetry::emit_raw(&log_line(rec));
        let mut notify_failed = false;
        if rec.notify_worthy() {
            if let Some(n) = &self.notifier {
                let subject = subject_line(rec);
                let body = serde_json::to_string_pretty(rec).unwrap_or_else(|_| rec.reason.clone());
                if let Err(e) = n.notify(&subject, &body).await {
                    notify_failed = true;
                    tracing::error!(function = %rec.function, target = %rec.target, error = %e, "notification failed");
                }
            }
        }
        telemetry::emit_raw(&emf_line(rec, notify_failed));
    }
}

/// The audit log line: the record's fields at the top level (details as a nested object, so
/// Logs Insights can filter on `details.*`), plus `level` and `message` like every log line.
pub fn log_line(rec: &AuditRecord) -> String {
    let mut v = serde_json::to_value(rec).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert(
            "timestamp".into(),
            json!(rec.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        m.insert(
            "level".into(),
            json!(if rec.decision == Outcome::Failed {
                "ERROR"
            } else {
                "INFO"
            }),
        );
        m.insert("message".into(), json!("audit"));
    }
    v.to_string()
}

/// SNS subjects are ASCII, at most 100 characters.
pub fn subject_line(rec: &AuditRecord) -> String {
    let what = match rec.decision {
        Outcome::Acted => "acted on",
        Outcome::Failed => "FAILED on",
        Outcome::DryRun => "would act on",
        Outcome::Skipped => "ESCALATION for",
    };
    let s: String = format!("[selfheal] {} {} {}", rec.function, what, rec.target)
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    s.chars().take(100).collect()
}

/// One EMF document: metrics `Actions`, `DryRuns`, `Skips`, `Failures` (and
/// `NotifyFailures`) by function, and by function and reason code.
pub fn emf_line(rec: &AuditRecord, notify_failed: bool) -> String {
    let one = |o: Outcome| u32::from(rec.decision == o);
    json!({
        "_aws": {
            "Timestamp": rec.at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["function"], ["function", "reason"]],
                "Metrics": [
                    {"Name": "Actions", "Unit": "Count"},
                    {"Name": "DryRuns", "Unit": "Count"},
                    {"Name": "Skips", "Unit": "Count"},
                    {"Name": "Failures", "Unit": "Count"},
                    {"Name": "NotifyFailures", "Unit": "Count"}
                ]
            }]
        },
        "function": rec.function,
        "reason": rec.code,
        "Actions": one(Outcome::Acted),
        "DryRuns": one(Outcome::DryRun),
        "Skips": one(Outcome::Skipped),
        "Failures": one(Outcome::Failed),
        "NotifyFailures": u32::from(notify_failed),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RecordingNotifier;

    fn base() -> AuditBuilder {
        AuditRecord::builder("reboot-instance", "req-1", "eventbridge", "i-1")
    }

    #[tokio::test]
    async fn notifies_only_what_matters() {
        let rec = Arc::new(RecordingNotifier::default());
        let a = Auditor::new(Some(rec.clone()));
        a.record(&base().acted("rebooted")).await;
        a.record(&base().skipped(&SkipReason::new(SkipCode::Cooldown, "recent")))
            .await;
        a.record(&base().skipped(&SkipReason::new(SkipCode::TargetCapReached, "cap")))
            .await;
        a.record(&base().dry_run("reboot")).await;
        a.record(&base().failed("aws-error", "boom")).await;
        let sent = rec.sent();
        let subjects: Vec<&str> = sent.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            subjects,
            vec![
                "[selfheal] reboot-instance acted on i-1",
                "[selfheal] reboot-instance ESCALATION for i-1",
                "[selfheal] reboot-instance FAILED on i-1"
            ]
        );
        let body: Value = serde_json::from_str(&sent[0].1).unwrap();
        assert_eq!(body["decision"], "acted");
    }

    #[test]
    fn log_line_carries_the_required_fields() {
        let r = base().detail("alarm", "a").acted("rebooted");
        let v: Value = serde_json::from_str(&log_line(&r)).unwrap();
        for key in [
            "function",
            "target",
            "decision",
            "reason",
            "request_id",
            "timestamp",
            "level",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["details"]["alarm"], "a");
        assert_eq!(v["message"], "audit");
    }

    #[test]
    fn emf_shape() {
        let r = base().skipped(&SkipReason::new(SkipCode::Cooldown, "x"));
        let v: Value = serde_json::from_str(&emf_line(&r, false)).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "selfheal");
        assert_eq!(v["Skips"], 1);
        assert_eq!(v["Actions"], 0);
        assert_eq!(v["reason"], "cooldown");
    }

    #[test]
    fn subject_is_ascii_and_short() {
        let r = AuditRecord::builder("f", "r", "t", &"ü".repeat(200)).acted("x");
        let s = subject_line(&r);
        assert!(s.is_ascii() && s.len() <= 100);
    }
}
