//! The flow over in-memory ports: gate, guardrails, failures, the checks of issue 13.

use super::*;
use crate::fixtures::{alarm_time, flat, history_before, nightly, sample, SAMPLE_ARN};
use crate::FUNCTION;
use selfheal_core::alarm::AlarmState;
use selfheal_core::parse_alarms;
use selfheal_core::ports::instances::StatusChecks;
use selfheal_core::testing::{FakeAlarms, FakeHistory};
use selfheal_core::Outcome;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

mod follow_up;

/// A running, opted-in instance; describing or rebooting it fails when told to.
#[derive(Default)]
struct FakeInstances {
    reboots: Mutex<Vec<String>>,
    describe_fails: Option<AwsError>,
    reboot_fails: Option<AwsError>,
    /// The status checks reported (`None`: both ok).
    checks: Mutex<Option<StatusChecks>>,
    /// The instance's state (`None`: running); a stop makes it `stopped`, a start `running`.
    state: Mutex<Option<String>>,
    /// Stop and start calls, in order.
    stops_and_starts: Mutex<Vec<&'static str>>,
}

#[async_trait::async_trait]
impl Instances for FakeInstances {
    async fn facts(&self, id: &str) -> Result<Option<InstanceFacts>, AwsError> {
        if let Some(e) = &self.describe_fails {
            return Err(e.clone());
        }
        let state = self.state.lock().unwrap().clone();
        Ok(Some(InstanceFacts {
            id: id.into(),
            state: state.unwrap_or_else(|| "running".into()),
            tags: BTreeMap::from([("selfheal:managed".to_string(), "true".to_string())]),
            root_device_type: Some("ebs".into()),
        }))
    }
    async fn reboot(&self, id: &str) -> Result<(), AwsError> {
        if let Some(e) = &self.reboot_fails {
            return Err(e.clone());
        }
        self.reboots.lock().unwrap().push(id.into());
        Ok(())
    }
    async fn stop(&self, _id: &str) -> Result<(), AwsError> {
        self.stops_and_starts.lock().unwrap().push("stop");
        *self.state.lock().unwrap() = Some("stopped".into());
        Ok(())
    }
    async fn start(&self, _id: &str) -> Result<(), AwsError> {
        self.stops_and_starts.lock().unwrap().push("start");
        *self.state.lock().unwrap() = None;
        Ok(())
    }
    async fn status_checks(&self, _id: &str) -> Result<Option<StatusChecks>, AwsError> {
        let ok = || StatusChecks {
            instance: Some("ok".into()),
            system: Some("ok".into()),
        };
        Ok(Some(self.checks.lock().unwrap().clone().unwrap_or_else(ok)))
    }
}

/// The sample alarm as CloudWatch has it: in ALARM, tagged for a reboot (its metric,
/// CPUUtilization, is not on the default list).
fn sample_alarm() -> FakeAlarms {
    let alarms = FakeAlarms::default().with(AlarmFacts {
        name: "web-1-cpu-high".into(),
        arn: Some(SAMPLE_ARN.into()),
        state: AlarmState::Alarm,
        state_updated: None,
        alarm_actions: vec![],
        comparison: Some("GreaterThanThreshold".into()),
    });
    alarms.tags.lock().unwrap().insert(
        SAMPLE_ARN.into(),
        BTreeMap::from([("selfheal:reboot".to_string(), "true".to_string())]),
    );
    alarms
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
    let instances = Arc::new(FakeInstances::default());
    let history = Arc::new(FakeHistory::from_result(points));
    let d = Deps::new(
        common,
        instances.clone(),
        history.clone(),
        Arc::new(sample_alarm()),
        Settings::from_lookup(lookup).unwrap(),
    );
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
    assert_eq!(history.calls(), 1);
    // Recent hours plus 7 days and 3 more weeks, all ending after they start.
    let windows = history.windows();
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
    assert_eq!(history.calls(), 0);
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

fn retryable(operation: &'static str) -> AwsError {
    AwsError {
        retryable: true,
        ..AwsError::new(operation, "i-1", "throttled")
    }
}

#[tokio::test]
async fn a_failed_describe_is_audited_and_retried_when_retryable() {
    let (mut d, _, history) = deps(Ok(Vec::new()), &[]);
    d.instances = Arc::new(FakeInstances {
        describe_fails: Some(retryable("ec2:DescribeInstances")),
        ..FakeInstances::default()
    });
    let err = d
        .handle(
            sample(),
            Invocation::local(std::time::Duration::from_secs(30)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Retryable(_)), "{err}");
    assert_eq!(history.calls(), 0, "no gate without an instance");
}

#[tokio::test]
async fn a_reboot_with_no_answer_keeps_its_reservation_and_is_not_retried() {
    let (mut d, _, _) = deps(Ok(history_before(alarm_time(), flat)), &[]);
    d.instances = Arc::new(FakeInstances {
        reboot_fails: Some(retryable("ec2:RebootInstances")),
        ..FakeInstances::default()
    });
    let rec = handle_one(&d).await;
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Failed, "reboot-failed"),
        "{rec:?}"
    );
    assert_eq!(rec.details["instance_state"], "running");
    assert_eq!(
        rec.details["anomaly_gate"]["assessment"]["judgement"],
        "anomalous"
    );
}

/// Issue 13, item 7: a RebootInstances that AWS refused (throttled past the SDK's retries)
/// changed nothing, yet it kept its reservation: not retried, and the alarm, still in ALARM,
/// never fires again. It is released and handed back to Lambda for a retry now; the retry
/// is not refused by the cooldown.
#[tokio::test]
async fn a_reboot_aws_refused_is_released_and_retried() {
    let (mut d, _, _) = deps(Ok(history_before(alarm_time(), flat)), &[]);
    let mut throttled = retryable("ec2:RebootInstances");
    throttled.code = Some("RequestLimitExceeded".into());
    d.instances = Arc::new(FakeInstances {
        reboot_fails: Some(throttled),
        ..FakeInstances::default()
    });
    let first = d
        .handle(
            sample(),
            Invocation::local(std::time::Duration::from_secs(30)),
        )
        .await;
    assert!(
        matches!(first, Err(HandlerError::Retryable(_))),
        "handed back for a retry: {first:?}"
    );
    let ok = Arc::new(FakeInstances::default());
    d.instances = ok.clone();
    let retry = handle_one(&d).await;
    assert_eq!(retry.decision, Outcome::Acted, "{retry:?}");
    assert_eq!(ok.reboots.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_second_alarm_in_the_cooldown_reboots_nothing_more() {
    let (d, instances, _) = deps(Ok(history_before(alarm_time(), flat)), &[]);
    assert_eq!(handle_one(&d).await.decision, Outcome::Acted);
    let again = handle_one(&d).await;
    assert_eq!(
        (again.decision, again.code.as_str()),
        (Outcome::Skipped, "cooldown")
    );
    assert_eq!(instances.reboots.lock().unwrap().len(), 1);
}

// Issue 13 item 6: the alarm's state cannot be read right before acting.
#[tokio::test]
async fn an_alarm_that_cannot_be_described_is_retried_and_nothing_rebooted() {
    // The metric on the list: no tag read, the state read is the only CloudWatch call.
    let (mut d, instances, _) = deps(
        Ok(history_before(alarm_time(), flat)),
        &[("SELFHEAL_REBOOT_METRICS", "CPUUtilization")],
    );
    let alarms = sample_alarm();
    // Not retryable by the SDK's judgement (access denied, say): still no action on a
    // guess, and Lambda's retry asks again.
    *alarms.fail.lock().unwrap() = Some(AwsError::new(
        "cloudwatch:DescribeAlarms",
        "web-1-cpu-high",
        "access denied",
    ));
    d.alarms = Arc::new(alarms);
    let err = d
        .handle(sample(), Invocation::local(Duration::from_secs(30)))
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Retryable(_)), "{err}");
    assert!(instances.reboots.lock().unwrap().is_empty());
}

/// Ports that take `delay` per call and count how many calls are in flight at once.
struct Slow {
    instances: FakeInstances,
    alarms: FakeAlarms,
    history: FakeHistory,
    delay: Duration,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    calls: Mutex<Vec<&'static str>>,
}

impl Slow {
    async fn call<T>(&self, name: &'static str, f: impl std::future::Future<Output = T>) -> T {
        self.calls.lock().unwrap().push(name);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let out = f.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

#[async_trait::async_trait]
impl Instances for Slow {
    async fn facts(&self, id: &str) -> Result<Option<InstanceFacts>, AwsError> {
        self.call("DescribeInstances", self.instances.facts(id))
            .await
    }
    async fn reboot(&self, id: &str) -> Result<(), AwsError> {
        self.call("RebootInstances", self.instances.reboot(id))
            .await
    }
    async fn status_checks(&self, id: &str) -> Result<Option<StatusChecks>, AwsError> {
        self.call("DescribeInstanceStatus", self.instances.status_checks(id))
            .await
    }
    async fn stop(&self, id: &str) -> Result<(), AwsError> {
        self.call("StopInstances", self.instances.stop(id)).await
    }
    async fn start(&self, id: &str) -> Result<(), AwsError> {
        self.call("StartInstances", self.instances.start(id)).await
    }
}

#[async_trait::async_trait]
impl MetricHistory for Slow {
    async fn history(
        &self,
        query: &selfheal_core::ports::metrics::MetricQuery,
        windows: &[selfheal_core::ports::metrics::Window],
    ) -> Result<Vec<Point>, AwsError> {
        self.call("GetMetricData", self.history.history(query, windows))
            .await
    }
}

/// Slow ports over the sample alarm (in ALARM, tagged) and an abnormal history.
fn slow(d: &mut Deps) -> Arc<Slow> {
    let slow = Arc::new(Slow {
        instances: FakeInstances::default(),
        alarms: sample_alarm(),
        history: FakeHistory::from_result(Ok(history_before(alarm_time(), flat))),
        delay: Duration::from_millis(50),
        in_flight: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        calls: Mutex::new(Vec::new()),
    });
    d.instances = slow.clone();
    d.alarms = slow.clone();
    d.history = slow.clone();
    slow
}

#[async_trait::async_trait]
impl Alarms for Slow {
    async fn current(&self, name: &str) -> Result<Option<AlarmFacts>, AwsError> {
        self.call("DescribeAlarms", self.alarms.current(name)).await
    }
    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        self.call("ListTagsForResource", self.alarms.tags(arn))
            .await
    }
}

// Issue 13 item 4: the checks add no round trip: the reads before the reboot go out
// together, the reboot after them.
#[tokio::test]
async fn the_reads_before_a_reboot_go_out_together() {
    let (mut d, _, _) = deps(Ok(Vec::new()), &[("SELFHEAL_ANOMALY_GATE", "off")]);
    let slow = slow(&mut d);
    let rec = handle_one(&d).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(
        rec.details["reboot_requested_by"],
        "alarm tagged selfheal:reboot=true"
    );
    let mut calls = slow.calls.lock().unwrap().clone();
    assert_eq!(calls.pop(), Some("RebootInstances"));
    calls.sort();
    assert_eq!(
        calls,
        ["DescribeAlarms", "DescribeInstances", "ListTagsForResource"]
    );
    assert_eq!(
        slow.peak.load(Ordering::SeqCst),
        3,
        "the three reads were in flight at once"
    );

    // The tags are cached: the next event for the alarm reads two things, not three.
    slow.calls.lock().unwrap().clear();
    let again = d
        .handle(sample(), Invocation::local(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(again.audits[0].code, "cooldown");
    let calls = slow.calls.lock().unwrap().clone();
    assert!(!calls.contains(&"ListTagsForResource"), "{calls:?}");
}

// Issue 13 item 4: when the event already shows the alarm asks for a reboot (its metric is
// on the list), the gate's history is read with the checks: between the alarm's state read
// and the reboot stand only the guardrails (and the autonomy gate, whose alarm tags were read
// with the checks too).
#[tokio::test]
async fn a_requested_alarm_reads_its_history_with_the_checks() {
    let (mut d, _, _) = deps(
        Ok(Vec::new()),
        &[("SELFHEAL_REBOOT_METRICS", "CPUUtilization")],
    );
    let slow = slow(&mut d);
    let rec = handle_one(&d).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(rec.details["anomaly_gate"]["applied"], true, "{rec:?}");
    let mut calls = slow.calls.lock().unwrap().clone();
    assert_eq!(calls.pop(), Some("RebootInstances"));
    calls.sort();
    // The alarm's tags are read too (its selfheal:autonomy level, issue 17), with the rest.
    assert_eq!(
        calls,
        [
            "DescribeAlarms",
            "DescribeInstances",
            "GetMetricData",
            "ListTagsForResource"
        ]
    );
    assert_eq!(
        slow.peak.load(Ordering::SeqCst),
        4,
        "the four reads were in flight at once"
    );
}

// Issue 13 item 3: a capacity alarm without the opt-in tag is refused; the refusal is
// cached, so the alarm firing again costs no call at all.
#[tokio::test]
async fn an_untagged_cpu_alarm_is_refused_and_the_refusal_costs_no_call_next_time() {
    let (mut d, instances, history) = deps(Ok(history_before(alarm_time(), flat)), &[]);
    let alarms = Arc::new(sample_alarm());
    alarms.tags.lock().unwrap().clear();
    d.alarms = alarms.clone();
    for calls in [2, 2] {
        let rec = handle_one(&d).await;
        assert_eq!(
            (rec.decision, rec.code.as_str()),
            (Outcome::Skipped, "not-requested"),
            "{rec:?}"
        );
        assert!(rec.reason.contains("tag the alarm selfheal:reboot=true"));
        // DescribeAlarms and ListTagsForResource the first time, nothing the second.
        assert_eq!(alarms.calls(), calls);
    }
    assert!(instances.reboots.lock().unwrap().is_empty());
    assert_eq!(history.calls(), 0);
}

// An event that names no alarm ARN (EventBridge without `resources`): the tags are read by
// the ARN CloudWatch reports, one round trip later; the opt-in still decides.
#[tokio::test]
async fn an_event_without_the_alarm_arn_reads_the_tags_by_the_alarms_own() {
    let mut ev = sample();
    ev.as_object_mut().unwrap().remove("resources");
    assert_eq!(parse_alarms(&ev).unwrap()[0].arn, None);
    for (tagged, want) in [(true, Outcome::Acted), (false, Outcome::Skipped)] {
        let (mut d, instances, _) = deps(Ok(history_before(alarm_time(), flat)), &[]);
        let alarms = Arc::new(sample_alarm());
        if !tagged {
            alarms.tags.lock().unwrap().clear();
        }
        d.alarms = alarms.clone();
        let rec = d
            .handle(ev.clone(), Invocation::local(Duration::from_secs(30)))
            .await
            .unwrap()
            .audits
            .remove(0);
        assert_eq!(rec.decision, want, "{rec:?}");
        assert_eq!(
            alarms.calls(),
            2,
            "DescribeAlarms, then ListTagsForResource"
        );
        assert_eq!(instances.reboots.lock().unwrap().len(), usize::from(tagged));
    }
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
    assert!(seen >= 6, "expected samples for every shape, found {seen}");
}
