//! reboot-instance: a CloudWatch alarm on an EC2 instance went into ALARM → reboot the
//! instance, if it exists, is running, opted in, and the guardrails allow it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use selfheal_aws::cloudwatch::CloudWatchHistory;
use selfheal_aws::ec2::Ec2Instances;
use selfheal_core::anomaly::{
    self, Assessment, Direction, GateMode, GateSettings, Judgement, Point,
};
use selfheal_core::guard::ConfigError;
use selfheal_core::ports::instances::{InstanceFacts, Instances};
use selfheal_core::ports::metrics::{gate_windows, MetricHistory, MetricQuery};
use selfheal_core::{
    Alarm, AlarmKind, AuditRecord, Common, Decision, Function, HandlerError, Invocation, Response,
    SkipCode, SkipReason, Target, Verdict,
};
use selfheal_lambda::Options;

pub const FUNCTION: &str = "reboot-instance";

/// Settings of this function beyond the shared guardrails.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `SELFHEAL_REBOOT_NAMESPACES`: alarm namespaces whose `InstanceId` dimension names an
    /// instance to reboot (default `AWS/EC2,CWAgent`).
    pub namespaces: Vec<String>,
    /// The anomaly gate: `SELFHEAL_ANOMALY_GATE` (`on` by default, `shadow`, `off`),
    /// `SELFHEAL_ANOMALY_SENSITIVITY` (robust z-score, default 3), `SELFHEAL_ANOMALY_DAYS`
    /// (7), `SELFHEAL_ANOMALY_WEEKS` (4). See docs/ai.md.
    pub gate: GateSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespaces: vec!["AWS/EC2".into(), "CWAgent".into()],
            gate: GateSettings::default(),
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let namespaces = match get("SELFHEAL_REBOOT_NAMESPACES") {
            Some(v) if !v.trim().is_empty() => v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            _ => Self::default().namespaces,
        };
        let gate = GateSettings::from_lookup(&get).map_err(|e| ConfigError::Invalid {
            name: e.name,
            value: e.value,
            expected: e.expected,
        })?;
        Ok(Self { namespaces, gate })
    }
}

/// How long the gate waits for the metric history: healing must not wait on CloudWatch.
pub const GATE_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Recent history read with the references (stands in for the breaching datapoints when the
/// alarm event carries none).
pub const GATE_RECENT_SECS: i64 = 3 * 3600;

/// What the anomaly gate did, for the audit record (`details.anomaly_gate`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateReport {
    pub mode: GateMode,
    /// True when the gate's judgement decided (mode `on` with enough history).
    pub applied: bool,
    /// Why the gate did or did not decide, for people.
    pub note: String,
    /// Score, baseline, threshold and the rest, when history was scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assessment: Option<Assessment>,
    /// The metric fetch error, when the history could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Datapoints of history read.
    pub history_points: usize,
}

/// The instant the gate judges: when the alarm changed state (not in the future).
pub fn gate_time(alarm: &Alarm, now: DateTime<Utc>) -> DateTime<Utc> {
    alarm.time.filter(|t| *t <= now).unwrap_or(now)
}

/// The direction the alarm looks in: from its comparison operator, else its reason text.
pub fn alarm_direction(alarm: &Alarm) -> Direction {
    if let Some(d) = alarm
        .evaluation
        .comparison
        .as_deref()
        .and_then(Direction::from_comparison)
    {
        return d;
    }
    let reason = alarm.reason.to_ascii_lowercase();
    if reason.contains("less than") && !reason.contains("greater than") {
        Direction::Below
    } else {
        Direction::Above
    }
}

/// The gate's verdict on an alarm, from the fetched history (or the fetch error). Pure.
/// Returns the skip when the gate says "expected pattern", and the report either way.
pub fn apply_gate(
    alarm: &Alarm,
    id: &str,
    at: DateTime<Utc>,
    fetched: Result<&[Point], &str>,
    settings: &GateSettings,
) -> (Option<SkipReason>, GateReport) {
    let mut report = GateReport {
        mode: settings.mode,
        applied: false,
        note: String::new(),
        assessment: None,
        error: None,
        history_points: 0,
    };
    let history = match fetched {
        Ok(h) => h,
        Err(e) => {
            report.error = Some(e.to_string());
            report.note = "metric history could not be read: acting as without the gate".into();
            return (None, report);
        }
    };
    report.history_points = history.len();
    let a = anomaly::assess(
        at.timestamp(),
        &alarm.evaluation.recent_datapoints,
        history,
        alarm_direction(alarm),
        settings,
    );
    let skip = match (a.judgement, settings.mode) {
        (Judgement::TooLittleHistory, _) => {
            report.note = a.why.clone();
            None
        }
        (Judgement::Anomalous, GateMode::On) => {
            report.applied = true;
            report.note = format!("abnormal: {}", a.why);
            None
        }
        (Judgement::Expected, GateMode::On) => {
            report.applied = true;
            report.note = format!("expected pattern: {}", a.why);
            Some(SkipReason::new(
                SkipCode::ExpectedPattern,
                format!(
                    "alarm {} on {id} matches this metric's usual pattern at this time, not                      rebooting: {}",
                    alarm.name, a.why
                ),
            ))
        }
        (j, _) => {
            report.note = format!(
                "shadow mode: would have {}: {}",
                if j == Judgement::Expected {
                    "skipped"
                } else {
                    "acted"
                },
                a.why
            );
            None
        }
    };
    report.assessment = Some(a);
    (skip, report)
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
    /// The alarm metric's history, for the anomaly gate.
    pub history: Arc<dyn MetricHistory>,
    pub settings: Settings,
}

impl Deps {
    pub async fn from_env(opts: Options) -> Result<Self, ConfigError> {
        let settings = Settings::from_env()?;
        let selfheal_lambda::Boot { common, sdk } =
            selfheal_lambda::from_env(FUNCTION, opts).await?;
        let instances = Arc::new(Ec2Instances(selfheal_aws::aws_sdk_ec2::Client::new(&sdk)));
        let history = Arc::new(CloudWatchHistory::new(&sdk));
        Ok(Self {
            common,
            instances,
            history,
            settings,
        })
    }

    /// Consults the anomaly gate: fetches the history (bounded in time) and judges. A fetch
    /// that fails or times out never blocks healing: the gate then steps aside.
    async fn gate(&self, alarm: &Alarm, id: &str) -> (Option<SkipReason>, GateReport) {
        let settings = &self.settings.gate;
        let off = |note: String| GateReport {
            mode: settings.mode,
            applied: false,
            note,
            assessment: None,
            error: None,
            history_points: 0,
        };
        if settings.mode == GateMode::Off {
            return (None, off("gate off (SELFHEAL_ANOMALY_GATE=off)".into()));
        }
        let query = match MetricQuery::from_alarm(alarm) {
            Ok(q) => q,
            Err(why) => return (None, off(format!("gate not applied: {why}"))),
        };
        let at = gate_time(alarm, Utc::now());
        let windows = gate_windows(at, query.period, settings, GATE_RECENT_SECS);
        let fetched =
            match tokio::time::timeout(GATE_FETCH_TIMEOUT, self.history.history(&query, &windows))
                .await
            {
                Ok(Ok(points)) => Ok(points),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "cloudwatch:GetMetricData did not answer within {} s",
                    GATE_FETCH_TIMEOUT.as_secs()
                )),
            };
        if let Err(e) = &fetched {
            tracing::warn!(alarm = %alarm.name, target = id, error = %e, "anomaly gate: history unavailable, acting without the gate");
        }
        apply_gate(
            alarm,
            id,
            at,
            fetched.as_deref().map_err(String::as_str),
            settings,
        )
    }

    async fn handle_alarm(
        &self,
        alarm: &Alarm,
        inv: &Invocation,
    ) -> Result<AuditRecord, HandlerError> {
        let c = &self.common;
        let details = alarm.audit_details();
        let id = match target(alarm, &self.settings) {
            Ok(id) => id,
            Err(reason) => {
                return Ok(self
                    .common
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
                    .common
                    .fail(audit, "describe-failed", e.to_string(), e.retryable)
                    .await
            }
        };
        let audit = audit.detail("instance_state", facts.as_ref().map(|f| f.state.clone()));
        let (action, reason) = match decide(alarm, &id, facts.as_ref()) {
            Decision::Skip { reason } => {
                return Ok(self.common.record(audit.skipped(&reason)).await)
            }
            Decision::Act { action, reason } => (action, reason),
        };
        let (gate_skip, gate_report) = self.gate(alarm, &id).await;
        let audit = audit.detail("anomaly_gate", &gate_report);
        if let Some(reason) = gate_skip {
            return Ok(self.common.record(audit.skipped(&reason)).await);
        }
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
                    .common
                    .fail(audit, "ledger-failed", e.to_string(), e.retryable())
                    .await
            }
        };
        if let Some(rec) = audit
            .clone()
            .from_verdict(&verdict, format!("reboot {}: {reason}", action.instance_id))
        {
            return Ok(self.common.record(rec).await);
        }
        debug_assert_eq!(verdict, Verdict::Act);
        match self.instances.reboot(&action.instance_id).await {
            Ok(()) => Ok(self
                .common
                .record(audit.acted(format!("rebooted {}: {reason}", action.instance_id)))
                .await),
            // Not returned for a Lambda retry even when retryable: the SDK already retried with
            // backoff, and the ledger holds the reservation, so a retry would only be refused
            // by the cooldown. The failure is audited and notified instead.
            Err(e) => Ok(self
                .common
                .record(audit.failed("reboot-failed", e.to_string()))
                .await),
        }
    }
}

impl Function for Deps {
    async fn handle(&self, event: Value, inv: Invocation) -> Result<Response, HandlerError> {
        let mut audits = Vec::new();
        for alarm in self.common.alarms_or_reject(&event, &inv).await? {
            audits.push(self.handle_alarm(&alarm, &inv).await?);
        }
        Ok(Response::from_audits(audits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::parse_alarms;
    use serde_json::json;
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

    /// `GateSettings::default()` with the history `f(seconds before at)` every 5 minutes
    /// for four weeks and a bit before `at`.
    fn history_before(at: DateTime<Utc>, f: impl Fn(i64) -> f64) -> Vec<Point> {
        let t = at.timestamp();
        (1..=(29 * anomaly::DAY / 300))
            .map(|i| Point::new(t - i * 300, f(i * 300)))
            .collect()
    }

    /// Every day at this time the metric sits near 97 (a nightly batch); 30 otherwise.
    fn nightly(d: i64) -> f64 {
        if d % anomaly::DAY < 1800 || d % anomaly::DAY > anomaly::DAY - 1800 {
            96.0 + (d / 300 % 3) as f64
        } else {
            30.0
        }
    }

    fn flat(d: i64) -> f64 {
        40.0 + (d / 300 % 5) as f64
    }

    #[test]
    fn apply_gate_table() {
        let a = alarm("ALARM", "OK", "AWS/EC2", json!({"InstanceId": "i-1"}));
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let on = GateSettings::default();
        let shadow = GateSettings {
            mode: GateMode::Shadow,
            ..GateSettings::default()
        };
        let nightly_h = history_before(at, nightly);
        let flat_h = history_before(at, flat);
        // (name, breaching, fetched, settings, skipped?, applied?, note contains)
        type Case<'a> = (
            &'a str,
            Vec<f64>,
            Result<&'a [Point], &'a str>,
            &'a GateSettings,
            bool,
            bool,
            &'a str,
        );
        let cases: [Case; 6] = [
            (
                "fetch failed",
                vec![98.0],
                Err("throttled"),
                &on,
                false,
                false,
                "could not be read",
            ),
            (
                "no history",
                vec![98.0],
                Ok(&[]),
                &on,
                false,
                false,
                "too little history",
            ),
            (
                "nightly batch",
                vec![97.0, 98.0],
                Ok(&nightly_h),
                &on,
                true,
                true,
                "expected pattern",
            ),
            (
                "incident",
                vec![97.0, 98.0],
                Ok(&flat_h),
                &on,
                false,
                true,
                "abnormal",
            ),
            (
                "shadow, nightly batch",
                vec![97.0, 98.0],
                Ok(&nightly_h),
                &shadow,
                false,
                false,
                "would have skipped",
            ),
            (
                "shadow, incident",
                vec![97.0, 98.0],
                Ok(&flat_h),
                &shadow,
                false,
                false,
                "would have acted",
            ),
        ];
        for (name, breaching, fetched, settings, skipped, applied, note) in cases {
            let mut a = a.clone();
            a.evaluation.recent_datapoints = breaching;
            let (skip, report) = apply_gate(&a, "i-1", at, fetched, settings);
            assert_eq!(skip.is_some(), skipped, "{name}: {report:?}");
            if let Some(r) = &skip {
                assert_eq!(r.code, SkipCode::ExpectedPattern);
                assert!(
                    r.detail.contains("baseline") && r.detail.contains("threshold"),
                    "{name}: {}",
                    r.detail
                );
            }
            assert_eq!(report.applied, applied, "{name}: {report:?}");
            assert!(report.note.contains(note), "{name}: {}", report.note);
            assert_eq!(report.error.is_some(), fetched.is_err(), "{name}");
        }
    }

    #[test]
    fn direction_from_comparison_or_reason() {
        let mut a = alarm("ALARM", "OK", "AWS/EC2", json!({"InstanceId": "i-1"}));
        assert_eq!(alarm_direction(&a), Direction::Above);
        a.evaluation.comparison = Some("LessThanThreshold".into());
        assert_eq!(alarm_direction(&a), Direction::Below);
        a.evaluation.comparison = None;
        a.reason = "1 datapoint [2.0] was less than the threshold (5.0)".into();
        assert_eq!(alarm_direction(&a), Direction::Below);
    }

    #[test]
    fn settings_from_lookup_reads_the_gate() {
        let s = Settings::from_lookup(|k| match k {
            "SELFHEAL_ANOMALY_GATE" => Some("off".into()),
            "SELFHEAL_ANOMALY_SENSITIVITY" => Some("4".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((s.gate.mode, s.gate.z_threshold), (GateMode::Off, 4.0));
        assert_eq!(
            Settings::from_lookup(|_| None).unwrap(),
            Settings::default()
        );
        let err =
            Settings::from_lookup(|k| (k == "SELFHEAL_ANOMALY_GATE").then(|| "sometimes".into()));
        assert!(matches!(
            err,
            Err(ConfigError::Invalid {
                name: "SELFHEAL_ANOMALY_GATE",
                ..
            })
        ));
    }

    // ---- the handler with in-memory ports ----------------------------------------------

    use selfheal_core::ports::metrics::Window;
    use selfheal_core::{AwsError, Outcome};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    struct FakeInstances {
        reboots: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Instances for FakeInstances {
        async fn facts(&self, id: &str) -> Result<Option<InstanceFacts>, AwsError> {
            Ok(Some(InstanceFacts {
                id: id.into(),
                state: "running".into(),
                tags: BTreeMap::from([("selfheal:managed".to_string(), "true".to_string())]),
            }))
        }
        async fn reboot(&self, id: &str) -> Result<(), AwsError> {
            self.reboots.lock().unwrap().push(id.into());
            Ok(())
        }
    }

    /// History from a function of "seconds before the window's alarm time", or an error.
    struct FakeHistory {
        points: Result<Vec<Point>, AwsError>,
        calls: AtomicUsize,
        windows: Mutex<Vec<Window>>,
    }

    #[async_trait::async_trait]
    impl MetricHistory for FakeHistory {
        async fn history(
            &self,
            _q: &MetricQuery,
            windows: &[Window],
        ) -> Result<Vec<Point>, AwsError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.windows.lock().unwrap().extend_from_slice(windows);
            self.points.clone()
        }
    }

    /// The sample EventBridge alarm, its breaching datapoints 97.2 and 98.4.
    fn sample() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/reboot-instance-eventbridge.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn deps(
        points: Result<Vec<Point>, AwsError>,
        env: &[(&str, &str)],
    ) -> (Deps, Arc<FakeInstances>, Arc<FakeHistory>) {
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let (common, _) = selfheal_core::testing::common(FUNCTION, env);
        let instances = Arc::new(FakeInstances {
            reboots: Mutex::new(Vec::new()),
        });
        let history = Arc::new(FakeHistory {
            points,
            calls: AtomicUsize::new(0),
            windows: Mutex::new(Vec::new()),
        });
        let d = Deps {
            common,
            instances: instances.clone(),
            history: history.clone(),
            settings: Settings::from_lookup(lookup).unwrap(),
        };
        (d, instances, history)
    }

    async fn handle_one(d: &Deps) -> AuditRecord {
        let r = d
            .handle(
                sample(),
                Invocation::local(std::time::Duration::from_secs(30)),
            )
            .await
            .unwrap();
        assert_eq!(r.audits.len(), 1);
        r.audits.into_iter().next().unwrap()
    }

    fn alarm_time() -> DateTime<Utc> {
        parse_alarms(&sample()).unwrap()[0].time.unwrap()
    }

    #[tokio::test]
    async fn expected_pattern_is_skipped_with_the_numbers_and_nothing_rebooted() {
        let (d, instances, history) = deps(Ok(history_before(alarm_time(), nightly)), &[]);
        let rec = handle_one(&d).await;
        assert_eq!(
            (rec.decision, rec.code.as_str()),
            (Outcome::Skipped, "expected-pattern"),
            "{rec:?}"
        );
        let g = &rec.details["anomaly_gate"];
        assert_eq!(g["applied"], true);
        let a = &g["assessment"];
        assert_eq!(a["judgement"], "expected");
        for key in ["score", "baseline", "threshold", "band_edge", "current"] {
            assert!(a[key].is_number(), "{key}: {g}");
        }
        assert!(instances.reboots.lock().unwrap().is_empty());
        assert_eq!(history.calls.load(Ordering::SeqCst), 1);
        // Recent hours plus 7 days and 3 more weeks, all ending after they start.
        let windows = history.windows.lock().unwrap();
        assert_eq!(windows.len(), 11);
        assert!(windows[0].end > alarm_time());
    }

    #[tokio::test]
    async fn abnormal_value_reboots_and_records_the_score() {
        let (d, instances, _) = deps(Ok(history_before(alarm_time(), flat)), &[]);
        let rec = handle_one(&d).await;
        assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
        assert_eq!(
            rec.details["anomaly_gate"]["assessment"]["judgement"],
            "anomalous"
        );
        assert!(
            rec.details["anomaly_gate"]["assessment"]["score"]
                .as_f64()
                .unwrap()
                >= 3.0
        );
        assert_eq!(instances.reboots.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn fetch_error_or_no_history_acts_as_without_the_gate() {
        let err = AwsError::new("cloudwatch:GetMetricData", "m1", "boom");
        for (points, note) in [
            (Err(err), "could not be read"),
            (Ok(Vec::new()), "too little history"),
        ] {
            let failed = points.is_err();
            let (d, instances, _) = deps(points, &[]);
            let rec = handle_one(&d).await;
            assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
            let g = &rec.details["anomaly_gate"];
            assert_eq!(g["applied"], false);
            assert!(g["note"].as_str().unwrap().contains(note), "{g}");
            assert_eq!(g["error"].is_string(), failed, "{g}");
            assert_eq!(instances.reboots.lock().unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn gate_off_fetches_nothing_and_shadow_acts() {
        let (d, instances, history) = deps(
            Ok(history_before(alarm_time(), nightly)),
            &[("SELFHEAL_ANOMALY_GATE", "off")],
        );
        assert_eq!(handle_one(&d).await.decision, Outcome::Acted);
        assert_eq!(history.calls.load(Ordering::SeqCst), 0);
        assert_eq!(instances.reboots.lock().unwrap().len(), 1);

        let (d, instances, _) = deps(
            Ok(history_before(alarm_time(), nightly)),
            &[("SELFHEAL_ANOMALY_GATE", "shadow")],
        );
        let rec = handle_one(&d).await;
        assert_eq!(rec.decision, Outcome::Acted);
        assert!(rec.details["anomaly_gate"]["note"]
            .as_str()
            .unwrap()
            .contains("would have skipped"));
        assert_eq!(instances.reboots.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn dry_run_with_an_abnormal_value_changes_nothing() {
        let (d, instances, _) = deps(
            Ok(history_before(alarm_time(), flat)),
            &[("SELFHEAL_DRY_RUN", "true")],
        );
        let rec = handle_one(&d).await;
        assert_eq!(rec.decision, Outcome::DryRun);
        assert_eq!(
            rec.details["anomaly_gate"]["assessment"]["judgement"],
            "anomalous"
        );
        assert!(instances.reboots.lock().unwrap().is_empty());
    }

    #[test]
    fn every_sample_event_for_this_function_parses() {
        let samples = selfheal_core::samples::for_function(FUNCTION).unwrap();
        for (name, v) in &samples {
            let alarms = parse_alarms(v).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!alarms.is_empty(), "{name}");
        }
        let seen = samples.len();
        assert!(seen >= 6, "expected samples for every shape, found {seen}");
    }
}
