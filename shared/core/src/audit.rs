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

/// What a verification found: the action healed the target, did not (yet), or a person has
/// been told because nothing more will be done automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Heal {
    Healed,
    NotHealed,
    Escalated,
}

impl Heal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healed => "healed",
            Self::NotHealed => "not-healed",
            Self::Escalated => "escalated",
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
    /// The action this record took or verified (closed loop; absent when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// The episode: every action and verification on one target from its first alarm until
    /// it healed or a person was told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub episode_id: Option<String>,
    /// What a verification found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Heal>,
    /// From the episode's start (its first alarm) to the verification that found it healed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_heal_ms: Option<u64>,
}

impl AuditRecord {
    pub fn builder(function: &str, request_id: &str, trigger: &str, target: &str) -> AuditBuilder {
        AuditBuilder {
            function: function.into(),
            request_id: request_id.into(),
            trigger: trigger.into(),
            target: target.into(),
            details: json!({}),
            closed_loop: ClosedLoop::default(),
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
            // A dry run the autonomy gate held back tells a person what would have been done.
            Outcome::DryRun => self.details.get("notify").and_then(Value::as_bool) == Some(true),
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
    closed_loop: ClosedLoop,
}

/// The closed-loop fields of a record (see [`AuditRecord::action_id`]).
#[derive(Debug, Clone, Default)]
struct ClosedLoop {
    action_id: Option<String>,
    episode_id: Option<String>,
    outcome: Option<Heal>,
    time_to_heal_ms: Option<u64>,
}

impl AuditBuilder {
    /// The action this record takes or verifies, and its episode.
    pub fn action(mut self, action_id: &str, episode_id: &str) -> Self {
        self.closed_loop.action_id = Some(action_id.to_string());
        self.closed_loop.episode_id = Some(episode_id.to_string());
        self
    }

    /// What a verification found; `time_to_heal_ms` goes with [`Heal::Healed`].
    pub fn heal(mut self, outcome: Heal, time_to_heal_ms: Option<u64>) -> Self {
        self.closed_loop.outcome = Some(outcome);
        self.closed_loop.time_to_heal_ms = time_to_heal_ms;
        self
    }

    /// A verification that changed nothing (healed, re-checking later, or escalated):
    /// recorded as skipped with its own code. Marked `escalate` it reaches a person.
    pub fn checked(self, code: &str, reason: impl Into<String>) -> AuditRecord {
        self.finish(Outcome::Skipped, code, reason.into())
    }

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
            action_id: self.closed_loop.action_id,
            episode_id: self.closed_loop.episode_id,
            outcome: self.closed_loop.outcome,
            time_to_heal_ms: self.closed_loop.time_to_heal_ms,
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
/// `NotifyFailures`) by function, and by function and reason code; from verifications,
/// `Healed`, `NotHealed` (not healed yet, or escalated) and `TimeToHeal` (milliseconds, only
/// in a record that has it).
pub fn emf_line(rec: &AuditRecord, notify_failed: bool) -> String {
    let one = |o: Outcome| u32::from(rec.decision == o);
    let healed = u32::from(rec.outcome == Some(Heal::Healed));
    let not_healed = u32::from(matches!(
        rec.outcome,
        Some(Heal::NotHealed | Heal::Escalated)
    ));
    let mut doc = json!({
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
                    {"Name": "NotifyFailures", "Unit": "Count"},
                    {"Name": "Healed", "Unit": "Count"},
                    {"Name": "NotHealed", "Unit": "Count"}
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
        "Healed": healed,
        "NotHealed": not_healed,
    });
    if let Some(ms) = rec.time_to_heal_ms {
        // Declared only with a value: EMF rejects a declared metric without one.
        if let Some(Value::Array(metrics)) = doc.pointer_mut("/_aws/CloudWatchMetrics/0/Metrics") {
            metrics.push(json!({"Name": "TimeToHeal", "Unit": "Milliseconds"}));
        }
        if let Value::Object(m) = &mut doc {
            m.insert("TimeToHeal".into(), json!(ms));
        }
    }
    doc.to_string()
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
    fn closed_loop_fields_are_logged_and_measured_only_when_present() {
        let plain: Value = serde_json::from_str(&log_line(&base().acted("x"))).unwrap();
        for key in ["action_id", "episode_id", "outcome", "time_to_heal_ms"] {
            assert!(plain.get(key).is_none(), "{key} in {plain}");
        }
        let v: Value = serde_json::from_str(&emf_line(&base().acted("x"), false)).unwrap();
        assert_eq!(
            (v["Healed"].as_u64(), v["NotHealed"].as_u64()),
            (Some(0), Some(0))
        );
        assert!(v.get("TimeToHeal").is_none());
        let healed = base()
            .action("act-1", "ep-1")
            .heal(Heal::Healed, Some(61_000))
            .checked("healed", "alarm is OK");
        let line: Value = serde_json::from_str(&log_line(&healed)).unwrap();
        assert_eq!(line["action_id"], "act-1");
        assert_eq!(line["episode_id"], "ep-1");
        assert_eq!(line["outcome"], "healed");
        assert_eq!(line["time_to_heal_ms"], 61_000);
        assert_eq!(line["decision"], "skipped");
        assert!(!healed.notify_worthy());
        let emf: Value = serde_json::from_str(&emf_line(&healed, false)).unwrap();
        assert_eq!(emf["Healed"], 1);
        assert_eq!(emf["TimeToHeal"], 61_000);
        let names: Vec<&str> = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert!(names.contains(&"TimeToHeal"), "{names:?}");
        let escalated = base()
            .detail("escalate", true)
            .heal(Heal::Escalated, None)
            .checked("escalated", "at MaxSize");
        assert!(escalated.notify_worthy());
        let emf: Value = serde_json::from_str(&emf_line(&escalated, false)).unwrap();
        assert_eq!(
            (emf["Healed"].as_u64(), emf["NotHealed"].as_u64()),
            (Some(0), Some(1))
        );
    }

    #[test]
    fn subject_is_ascii_and_short() {
        let r = AuditRecord::builder("f", "r", "t", &"ü".repeat(200)).acted("x");
        let s = subject_line(&r);
        assert!(s.is_ascii() && s.len() <= 100);
    }
}
