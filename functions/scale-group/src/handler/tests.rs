//! The handler, with in-memory groups, ledger and history.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use selfheal_core::anomaly::Point;
use selfheal_core::ports::alarms::{AlarmFacts, Alarms};
use selfheal_core::ports::groups::{GroupFacts, Groups};
use selfheal_core::testing::{FakeAlarms, FakeHistory, HistoryAnswer};
use selfheal_core::{
    parse_alarms, AlarmState, AuditRecord, AwsError, Function, HandlerError, Invocation, Outcome,
};

use super::Deps;
use crate::load::HISTORY_SECS;
use crate::settings::Settings;
use crate::test_support::{alarm_now, group};
use crate::FUNCTION;

mod follow_up;

pub(super) struct FakeGroups {
    pub(super) group: Mutex<GroupFacts>,
    pub(super) set: Mutex<Vec<u32>>,
    reads: AtomicUsize,
    /// Someone else sets the desired capacity to this right after the first read.
    moved_after_first_read: Mutex<Option<u32>>,
    /// Reads after the first fail (throttled).
    later_reads_fail: std::sync::atomic::AtomicBool,
}

#[selfheal_core::ports::groups::async_trait]
impl Groups for FakeGroups {
    async fn facts(&self, name: &str) -> Result<Option<GroupFacts>, AwsError> {
        let g = self.group.lock().unwrap().clone();
        let first = self.reads.load(Ordering::SeqCst) == 0;
        if !first && self.later_reads_fail.load(Ordering::SeqCst) {
            let mut e = AwsError::new("autoscaling:DescribeAutoScalingGroups", name, "throttled");
            e.retryable = true;
            return Err(e);
        }
        if self.reads.fetch_add(1, Ordering::SeqCst) == 0 {
            if let Some(to) = *self.moved_after_first_read.lock().unwrap() {
                self.group.lock().unwrap().desired = to;
            }
        }
        Ok((g.name == name).then_some(g))
    }
    async fn set_desired(&self, _name: &str, desired: u32) -> Result<(), AwsError> {
        self.set.lock().unwrap().push(desired);
        self.group.lock().unwrap().desired = desired;
        Ok(())
    }
}

fn fails() -> HistoryAnswer {
    HistoryAnswer::Fails(AwsError::new(
        "cloudwatch:GetMetricData",
        "selfheal_load",
        "throttled",
    ))
}

/// `days` of load at 1-minute steps (the test alarm's period), `f(step)`.
fn load(days: i64, f: impl Fn(i64) -> f64) -> HistoryAnswer {
    let t0 = 1_800_000_000 - days * 86_400;
    HistoryAnswer::Points(
        (0..days * 1440)
            .map(|i| Point::new(t0 + i * 60, f(i)))
            .collect(),
    )
}

/// Deterministic noise in [0, 1).
fn noise(i: i64) -> f64 {
    let x = (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

pub(super) fn deps(
    answer: HistoryAnswer,
    env: &[(&str, &str)],
    min: u32,
    max: u32,
    desired: u32,
) -> (Deps, Arc<FakeGroups>, Arc<FakeHistory>) {
    let lookup = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let (common, _) = selfheal_core::testing::common(FUNCTION, env);
    let mut g = group(min, max, desired);
    g.tags.insert("selfheal:managed".into(), "true".into());
    let groups = Arc::new(FakeGroups {
        group: Mutex::new(g),
        set: Mutex::new(Vec::new()),
        reads: AtomicUsize::new(0),
        moved_after_first_read: Mutex::new(None),
        later_reads_fail: Default::default(),
    });
    let history = Arc::new(FakeHistory::new(answer));
    let mut settings = Settings::from_lookup(lookup).unwrap();
    settings.history_timeout = std::time::Duration::from_millis(50);
    // The event carries the comparison; CloudWatch's answer here does not contradict it.
    let alarms = FakeAlarms::default().with(alarm_now("cpu", None, &[]));
    let d = Deps {
        common,
        groups: groups.clone(),
        alarms: Arc::new(alarms),
        history: history.clone(),
        follow_ups: None,
        settings,
    };
    (d, groups, history)
}

/// The test alarm on group `g`, stamped now: CPU 72 against 60 (the severity step adds 1 to
/// 2), fired above its threshold for `out`, below it for `in`.
pub(super) fn event(direction: &str, points: &[f64]) -> Value {
    let rd = json!({"threshold": 60.0, "recentDatapoints": points}).to_string();
    let (reason, comparison) = if direction == "in" {
        (
            "Threshold Crossed: datapoints were less than the threshold (60.0)",
            "LessThanThreshold",
        )
    } else {
        (
            "Threshold Crossed: datapoints were greater than the threshold (60.0)",
            "GreaterThanThreshold",
        )
    };
    let now = chrono::Utc::now().to_rfc3339();
    json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch", "time": now,
        "detail": {"alarmName": "cpu", "tags": {"selfheal:scale": direction},
                   "state": {"value": "ALARM", "reason": reason, "reasonData": rd, "timestamp": now},
                   "previousState": {"value": "OK"},
                   "configuration": {"comparisonOperator": comparison, "metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": {"AutoScalingGroupName": "g"}}, "period": 60, "stat": "Average"}}]}}})
}

async fn handle(d: &Deps, ev: Value) -> AuditRecord {
    let r = d
        .handle(ev, Invocation::local(std::time::Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(r.audits.len(), 1);
    r.audits.into_iter().next().unwrap()
}

#[test]
fn every_sample_event_for_this_function_parses() {
    let samples = selfheal_core::samples::for_function(FUNCTION).unwrap();
    let mut verifications = 0;
    for (name, v) in &samples {
        // A follow-up (closed loop) is not an alarm: its own shape.
        if let Some(read) = selfheal_core::episode::verification_in(v) {
            let verify = read.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(verify.function, FUNCTION, "{name}");
            verifications += 1;
            continue;
        }
        let alarms = parse_alarms(v).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!alarms.is_empty(), "{name}");
    }
    assert_eq!(verifications, 1, "one sample verification");
    let seen = samples.len();
    assert!(seen >= 7, "expected samples for every shape, found {seen}");
}

#[tokio::test]
async fn a_trusted_forecast_sizes_the_step() {
    // A steady 700 instance-percent: 10 instances at 70 %; from 2, bounded to +4.
    let (d, groups, history) = deps(load(3, |_| 700.0), &[], 1, 20, 2);
    let rec = handle(&d, event("out", &[72.0])).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(*groups.set.lock().unwrap(), [6]);
    let s = &rec.details["sizing"];
    assert_eq!(s["used"], "forecast", "{s}");
    assert_eq!(s["setting"], "forecast");
    assert_eq!(s["fit_error"], 0.0);
    assert_eq!(s["fit_error_limit"], 0.15);
    assert_eq!(s["forecast"]["desired"], 10);
    assert_eq!(s["forecast"]["forecast"]["peak"], 700.0);
    assert_eq!(s["history_points"], 3 * 1440);
    assert_eq!(s["load_query"], "m1 * selfheal_in_service");
    assert_eq!(rec.details["step"]["method"], "forecast");
    assert!(
        rec.reason
            .contains("forecast 10 instances: step 8 bounded to 1..=4 = 4"),
        "{}",
        rec.reason
    );
    // One request: 7 days at the alarm's period, the load by metric math.
    assert_eq!(history.calls(), 1);
    let q = history.queries.lock().unwrap();
    let (query, windows) = &q[0];
    assert_eq!(query.returned, "selfheal_load");
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0].period, 60);
    assert_eq!(
        windows[0].end.timestamp() - windows[0].start.timestamp(),
        HISTORY_SECS + 60
    );
}

#[tokio::test]
async fn clamping_and_the_step_bound_still_hold_with_a_forecast() {
    // Forecast 10, max step 10 from the alarm tag, MaxSize 8: cut at MaxSize.
    let (d, groups, _) = deps(
        load(3, |_| 700.0),
        &[("SELFHEAL_SCALE_MAX_STEP", "10")],
        1,
        8,
        2,
    );
    let rec = handle(&d, event("out", &[72.0])).await;
    assert_eq!(*groups.set.lock().unwrap(), [8]);
    assert_eq!(rec.details["clamped_at"], "MaxSize");
    assert_eq!(rec.details["sizing"]["used"], "forecast");
}

#[tokio::test]
async fn a_scale_in_is_held_when_the_forecast_needs_the_capacity() {
    // 700 instance-percent needs 10; the group has 6: hold, do not remove.
    let (d, groups, _) = deps(load(3, |_| 700.0), &[], 1, 20, 6);
    let rec = handle(&d, event("in", &[9.0])).await;
    assert_eq!(rec.decision, Outcome::Skipped, "{rec:?}");
    assert_eq!(rec.code, "nothing-to-do", "{rec:?}");
    assert!(rec.reason.contains("holding capacity"), "{}", rec.reason);
    assert!(groups.set.lock().unwrap().is_empty());
    // A quiet load (140 = 2 instances): down to the forecast, bounded by the max step.
    let (d, groups, _) = deps(load(3, |_| 140.0), &[], 1, 20, 10);
    let rec = handle(&d, event("in", &[9.0])).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(*groups.set.lock().unwrap(), [6]);
}

#[tokio::test]
async fn a_high_fit_error_falls_back_to_the_severity_step() {
    let (d, groups, _) = deps(load(3, |i| 100.0 + 900.0 * noise(i)), &[], 1, 20, 2);
    let rec = handle(&d, event("out", &[72.0])).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    // The severity step: ceil(2 × 72/60) = 3.
    assert_eq!(*groups.set.lock().unwrap(), [3]);
    let s = &rec.details["sizing"];
    assert_eq!(s["used"], "severity", "{s}");
    assert_eq!(s["forecast"]["fallback"]["reason"], "fit-error-too-high");
    assert!(s["fit_error"].as_f64().unwrap() > 0.15, "{s}");
    assert!(
        s["why"].as_str().unwrap().contains("severity step instead"),
        "{s}"
    );
    assert_eq!(rec.details["step"]["method"], "severity");
}

#[tokio::test]
async fn too_little_history_falls_back_to_the_severity_step() {
    let (d, groups, _) = deps(load(1, |_| 700.0), &[], 1, 20, 2);
    let rec = handle(&d, event("out", &[72.0])).await;
    assert_eq!(*groups.set.lock().unwrap(), [3]);
    let s = &rec.details["sizing"];
    assert_eq!(s["used"], "severity", "{s}");
    assert_eq!(s["forecast"]["fallback"]["reason"], "too-little-history");
}

#[tokio::test]
async fn a_failed_or_slow_fetch_falls_back_to_the_severity_step() {
    for (answer, error) in [
        (fails(), "throttled"),
        (HistoryAnswer::Hangs, "did not answer within 50 ms"),
    ] {
        let (d, groups, _) = deps(answer, &[], 1, 20, 2);
        let rec = handle(&d, event("out", &[72.0])).await;
        assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
        assert_eq!(*groups.set.lock().unwrap(), [3]);
        let s = &rec.details["sizing"];
        assert_eq!(s["used"], "severity", "{s}");
        assert!(s["error"].as_str().unwrap().contains(error), "{s}");
        assert!(
            s["why"]
                .as_str()
                .unwrap()
                .contains("load history could not be read"),
            "{s}"
        );
    }
}

#[tokio::test]
async fn severity_setting_and_groups_that_cannot_change_read_no_history() {
    let (d, groups, history) = deps(
        load(3, |_| 700.0),
        &[("SELFHEAL_SCALE_SIZING", "severity")],
        1,
        20,
        2,
    );
    let rec = handle(&d, event("out", &[72.0])).await;
    assert_eq!(*groups.set.lock().unwrap(), [3]);
    assert_eq!(rec.details["sizing"]["used"], "severity");
    assert_eq!(history.calls(), 0);
    // At MaxSize: refused before any history is read.
    let (d, _, history) = deps(load(3, |_| 700.0), &[], 1, 2, 2);
    let rec = handle(&d, event("out", &[72.0])).await;
    assert_eq!(rec.code, "at-bound", "{rec:?}");
    assert_eq!(history.calls(), 0);
}

/// The alarm as CloudWatch answers: in ALARM at the first read, `then` from the second on.
struct AlarmThen {
    then: AlarmState,
    calls: AtomicUsize,
}

#[selfheal_core::ports::groups::async_trait]
impl Alarms for AlarmThen {
    async fn current(&self, name: &str) -> Result<Option<AlarmFacts>, AwsError> {
        let mut f = alarm_now(name, Some("GreaterThanThreshold"), &[]);
        if self.calls.fetch_add(1, Ordering::SeqCst) > 0 {
            f.state = self.then.clone();
        }
        Ok(Some(f))
    }
    async fn tags(
        &self,
        _arn: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, AwsError> {
        Ok(Default::default())
    }
}

#[tokio::test]
async fn an_alarm_that_clears_while_the_step_is_sized_is_not_acted_on() {
    let (mut d, groups, history) = deps(load(3, |_| 700.0), &[], 1, 20, 2);
    let alarms = Arc::new(AlarmThen {
        then: AlarmState::Ok,
        calls: AtomicUsize::new(0),
    });
    d.alarms = alarms.clone();
    let rec = handle(&d, event("out", &[72.0])).await;
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "alarm-cleared"),
        "{rec:?}"
    );
    assert!(groups.set.lock().unwrap().is_empty());
    // Read once to plan, once right before the change (after the history was read).
    assert_eq!(alarms.calls.load(Ordering::SeqCst), 2);
    assert_eq!(history.calls(), 1);
}

#[tokio::test]
async fn scale_out_never_shrinks_a_group_someone_grew_meanwhile() {
    // Planned 2 → 6 by the forecast; someone sets 9 right after our first read.
    let (d, groups, _) = deps(load(3, |_| 700.0), &[], 1, 20, 2);
    *groups.moved_after_first_read.lock().unwrap() = Some(9);
    let rec = handle(&d, event("out", &[72.0])).await;
    assert!(groups.set.lock().unwrap().is_empty(), "{rec:?}");
    assert_eq!(groups.group.lock().unwrap().desired, 9);
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "change-in-progress"),
        "{rec:?}"
    );
    assert!(rec.reason.contains("would shrink it"), "{}", rec.reason);
    assert_eq!(rec.details["desired_now"], 9);
    assert_eq!(rec.details["desired_requested"], 6);
}

#[tokio::test]
async fn scale_in_never_grows_a_group_someone_shrank_meanwhile() {
    // Planned 10 → 6 by the forecast (140 = 2 instances, max step 4); someone sets 3.
    let (d, groups, _) = deps(load(3, |_| 140.0), &[], 1, 20, 10);
    *groups.moved_after_first_read.lock().unwrap() = Some(3);
    let rec = handle(&d, event("in", &[9.0])).await;
    assert!(groups.set.lock().unwrap().is_empty(), "{rec:?}");
    assert_eq!(groups.group.lock().unwrap().desired, 3);
    assert_eq!(rec.code, "change-in-progress", "{rec:?}");
    assert!(rec.reason.contains("would grow it"), "{}", rec.reason);
}

#[tokio::test]
async fn no_known_comparison_and_no_rule_changes_nothing() {
    let (d, groups, history) = deps(load(3, |_| 700.0), &[], 1, 20, 2);
    let mut ev = event("out", &[72.0]);
    ev["detail"]["tags"] = json!({});
    ev["detail"]["configuration"]
        .as_object_mut()
        .unwrap()
        .remove("comparisonOperator");
    let rec = handle(&d, ev).await;
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "not-requested"),
        "{rec:?}"
    );
    assert!(groups.set.lock().unwrap().is_empty());
    assert_eq!(history.calls(), 0);
}

/// How many calls are in flight at once, at most.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    async fn during<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let out = f.await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

struct Slow<T>(Arc<T>, Arc<Gauge>);

#[selfheal_core::ports::groups::async_trait]
impl Groups for Slow<FakeGroups> {
    async fn facts(&self, name: &str) -> Result<Option<GroupFacts>, AwsError> {
        self.1.during(self.0.facts(name)).await
    }
    async fn set_desired(&self, name: &str, desired: u32) -> Result<(), AwsError> {
        self.1.during(self.0.set_desired(name, desired)).await
    }
}

#[selfheal_core::ports::groups::async_trait]
impl Alarms for Slow<FakeAlarms> {
    async fn current(&self, name: &str) -> Result<Option<AlarmFacts>, AwsError> {
        self.1.during(self.0.current(name)).await
    }
    async fn tags(
        &self,
        arn: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, AwsError> {
        self.1.during(self.0.tags(arn)).await
    }
}

#[tokio::test]
async fn the_group_and_the_alarm_are_read_together() {
    let (mut d, groups, _) = deps(load(3, |_| 700.0), &[], 1, 20, 2);
    let gauge = Arc::new(Gauge::default());
    let alarms = Arc::new(FakeAlarms::default().with(alarm_now("cpu", None, &[])));
    d.groups = Arc::new(Slow(groups.clone(), gauge.clone()));
    d.alarms = Arc::new(Slow(alarms.clone(), gauge.clone()));
    let rec = handle(&d, event("out", &[72.0])).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(*groups.set.lock().unwrap(), [6]);
    // Each round (to plan, right before the change) has both reads in flight at once.
    assert_eq!(gauge.max.load(Ordering::SeqCst), 2);
    // Group: plan, re-check, read-back; alarm: plan, re-check.
    assert_eq!(groups.reads.load(Ordering::SeqCst), 3);
    assert_eq!(alarms.calls(), 2);
}

#[tokio::test]
async fn a_failed_re_read_changes_nothing_and_asks_for_a_retry() {
    let (d, groups, _) = deps(load(3, |_| 700.0), &[], 1, 20, 2);
    groups.later_reads_fail.store(true, Ordering::SeqCst);
    let r = d
        .handle(
            event("out", &[72.0]),
            Invocation::local(std::time::Duration::from_secs(30)),
        )
        .await;
    assert!(groups.set.lock().unwrap().is_empty());
    // Nothing changed: the reservation is released (the record says so) and Lambda retries.
    match r {
        Err(HandlerError::Retryable(why)) => assert!(why.contains("throttled"), "{why}"),
        other => panic!("expected a retryable error: {other:?}"),
    }
}
