//! The flow for one event: for each alarm, the checks the event alone answers (one target,
//! fresh, asks for a reboot), the facts through the ports (read together), the decision, the
//! anomaly gate, then the guarded reboot; every outcome audited.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use selfheal_core::anomaly::Point;
use selfheal_core::ports::alarms::{check_still_alarming, AlarmFacts, Alarms};
use selfheal_core::ports::instances::{InstanceFacts, Instances};
use selfheal_core::ports::metrics::MetricHistory;
use selfheal_core::{
    Alarm, AuditBuilder, AuditRecord, AwsError, Common, Decision, Function, Guarded, HandlerError,
    Invocation, Response, SkipReason, Target,
};

use crate::decide::{decide, target, Reboot};
use crate::gate::{self, GateFetch, GateReport, GATE_FETCH_TIMEOUT};
use crate::request::{self, Request};
use crate::settings::Settings;
use crate::tag_cache::{TagCache, Tags};

/// The ports and settings the flow runs over: `main.rs` builds them from the environment,
/// tests from fakes or from adapters against the emulator.
pub struct Deps {
    pub common: Common,
    pub instances: Arc<dyn Instances>,
    /// The alarm metric's history, for the anomaly gate.
    pub history: Arc<dyn MetricHistory>,
    /// The alarm as CloudWatch has it now: still in ALARM? tagged for a reboot?
    pub alarms: Arc<dyn Alarms>,
    pub settings: Settings,
    /// Alarm tags read earlier (`SELFHEAL_ALARM_TAG_CACHE_SECONDS`), so an alarm that fires
    /// often costs one tag read per cache period, not one per event.
    alarm_tags: TagCache,
}

/// Why the flow stops before acting: a skip, or a read that failed (retried by Lambda when
/// `retryable`).
enum Stop {
    Skip(SkipReason),
    Failed {
        code: &'static str,
        error: AwsError,
        retryable: bool,
    },
}

impl From<SkipReason> for Stop {
    fn from(reason: SkipReason) -> Self {
        Stop::Skip(reason)
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

impl Deps {
    pub fn new(
        common: Common,
        instances: Arc<dyn Instances>,
        history: Arc<dyn MetricHistory>,
        alarms: Arc<dyn Alarms>,
        settings: Settings,
    ) -> Self {
        let alarm_tags = TagCache::new(settings.alarm_tag_cache);
        Self {
            common,
            instances,
            history,
            alarms,
            settings,
            alarm_tags,
        }
    }

    async fn handle_alarm(
        &self,
        alarm: &Alarm,
        inv: &Invocation,
    ) -> Result<AuditRecord, HandlerError> {
        let c = &self.common;
        let audit_of = |target: &str| {
            c.audit_for(inv, alarm.shape.as_str(), target)
                .details(alarm.audit_details())
        };
        let id = match target(alarm, &self.settings) {
            Ok(id) => id,
            Err(reason) => return Ok(c.record(audit_of(&alarm.name).skipped(&reason)).await),
        };
        let audit = audit_of(&id);
        // An event throttled or retried for hours describes a past that may be gone.
        if let Err(reason) = alarm.check_age(Utc::now(), self.settings.max_event_age) {
            return Ok(c.record(audit.skipped(&reason)).await);
        }
        let (facts, requested_by, current) = match self.read_facts(alarm, &id).await {
            Ok(read) => read,
            Err(Stop::Skip(reason)) => return Ok(c.record(audit.skipped(&reason)).await),
            Err(Stop::Failed {
                code,
                error,
                retryable,
            }) => return c.fail(audit, code, error.to_string(), retryable).await,
        };
        let audit = audit
            .detail("reboot_requested_by", &requested_by)
            .detail(
                "alarm_state_now",
                current.as_ref().map(|c| c.state.as_str()),
            )
            .detail("instance_state", facts.as_ref().map(|f| f.state.clone()));
        let (action, reason) = match decide(alarm, &id, facts.as_ref()) {
            Decision::Skip { reason } => return Ok(c.record(audit.skipped(&reason)).await),
            Decision::Act { action, reason } => (action, reason),
        };
        let (gate_skip, gate_report) = self.gate(alarm, &id).await;
        let audit = audit.detail("anomaly_gate", &gate_report);
        if let Some(reason) = gate_skip {
            return Ok(c.record(audit.skipped(&reason)).await);
        }
        self.reboot(audit, &action, &reason, facts.as_ref()).await
    }

    /// The instance, whether the alarm asks for a reboot, and the alarm as it is now. The
    /// reads are independent and go out together (DescribeInstances, DescribeAlarms, and
    /// ListTagsForResource when neither the event nor the cache answers the request), so the
    /// checks add no round trip before the reboot.
    async fn read_facts(
        &self,
        alarm: &Alarm,
        id: &str,
    ) -> Result<(Option<InstanceFacts>, String, Option<AlarmFacts>), Stop> {
        let known = match request::from_event(alarm, &self.settings) {
            Request::Asked(why) => Some(why),
            Request::AskTags => match alarm.arn.as_deref().and_then(|a| self.alarm_tags.get(a)) {
                // A cached "no" settles it without a call.
                Some(tags) => Some(request::from_tags(alarm, &tags, &self.settings)?),
                None => None,
            },
        };
        let tags_arn = alarm.arn.as_deref().filter(|_| known.is_none());
        let (facts, current, tags) = tokio::join!(
            self.instances.facts(id),
            self.alarms.current(&alarm.name),
            async {
                match tags_arn {
                    Some(arn) => Some(self.alarm_tags(arn).await),
                    None => None,
                }
            },
        );
        // An alarm that cannot be described now may have cleared: no action on a guess, and
        // a retry (bounded by the event age) asks again.
        let current = current.map_err(|error| Stop::Failed {
            code: "alarm-describe-failed",
            error,
            retryable: true,
        })?;
        let requested_by = match known {
            Some(why) => why,
            None => {
                let tags = match tags {
                    Some(read) => read,
                    // The event named no ARN: ask with the one CloudWatch reports (a round
                    // trip more, for an event shape that rarely lacks it).
                    None => self.tags_by_current_arn(current.as_ref()).await,
                };
                let tags = tags.map_err(|error| Stop::Failed {
                    code: "alarm-tags-failed",
                    retryable: error.retryable,
                    error,
                })?;
                request::from_tags(alarm, &tags, &self.settings)?
            }
        };
        check_still_alarming(&alarm.name, current.as_ref())?;
        let facts = facts.map_err(|error| Stop::Failed {
            code: "describe-failed",
            retryable: error.retryable,
            error,
        })?;
        Ok((facts, requested_by, current))
    }

    /// The alarm's tags by the ARN CloudWatch reports for it (none known: no tags).
    async fn tags_by_current_arn(&self, current: Option<&AlarmFacts>) -> Result<Tags, AwsError> {
        match current.and_then(|c| c.arn.as_deref()) {
            Some(arn) => self.alarm_tags(arn).await,
            None => Ok(Tags::new()),
        }
    }

    /// The alarm's tags, read through the cache.
    async fn alarm_tags(&self, arn: &str) -> Result<Tags, AwsError> {
        if let Some(tags) = self.alarm_tags.get(arn) {
            return Ok(tags);
        }
        let tags = self.alarms.tags(arn).await?;
        self.alarm_tags.put(arn, &tags);
        Ok(tags)
    }

    /// Consults the anomaly gate: reads the history (bounded in time) and judges. A read
    /// that fails or times out never blocks healing: the gate then steps aside.
    async fn gate(&self, alarm: &Alarm, id: &str) -> (Option<SkipReason>, GateReport) {
        let settings = &self.settings.gate;
        let fetch = match gate::plan(alarm, settings, Utc::now()) {
            Ok(f) => f,
            Err(why) => return (None, GateReport::stepped_aside(settings.mode, why)),
        };
        let fetched = self.fetch_history(&fetch).await;
        if let Err(e) = &fetched {
            tracing::warn!(alarm = %alarm.name, target = id, error = %e, "anomaly gate: history unavailable, acting without the gate");
        }
        gate::apply_gate(
            alarm,
            id,
            fetch.at,
            fetched.as_deref().map_err(String::as_str),
            settings,
        )
    }

    async fn fetch_history(&self, fetch: &GateFetch) -> Result<Vec<Point>, String> {
        let read = self.history.history(&fetch.query, &fetch.windows);
        match tokio::time::timeout(GATE_FETCH_TIMEOUT, read).await {
            Ok(Ok(points)) => Ok(points),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "cloudwatch:GetMetricData did not answer within {} s",
                GATE_FETCH_TIMEOUT.as_secs()
            )),
        }
    }

    /// The reboot, through the guardrails (opt-in tag, kill switch, dry run, cooldown, caps).
    async fn reboot(
        &self,
        audit: AuditBuilder,
        action: &Reboot,
        reason: &str,
        facts: Option<&InstanceFacts>,
    ) -> Result<AuditRecord, HandlerError> {
        let id = action.instance_id.as_str();
        let tags = facts
            .into_iter()
            .flat_map(|f| &f.tags)
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let guarded = Guarded {
            target: Target { id, tags },
            would: format!("reboot {id}: {reason}"),
            escalate_refusal: false,
        };
        let instances = &self.instances;
        let done = self
            .common
            .act_guarded(audit, guarded, |audit| async move {
                match instances.reboot(id).await {
                    Ok(()) => audit.acted(format!("rebooted {id}: {reason}")),
                    // Not handed back for a Lambda retry even when retryable: the SDK already
                    // retried with backoff, and the ledger holds the reservation, so a retry
                    // would only be refused by the cooldown. Audited and notified instead.
                    Err(e) => audit.failed("reboot-failed", e.to_string()),
                }
            })
            .await;
        done.or_else(|failed| failed.into_handler_result())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{alarm_time, flat, history_before, nightly, sample, SAMPLE_ARN};
    use crate::FUNCTION;
    use selfheal_core::alarm::AlarmState;
    use selfheal_core::parse_alarms;
    use selfheal_core::testing::{FakeAlarms, FakeHistory};
    use selfheal_core::Outcome;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    /// A running, opted-in instance; describing or rebooting it fails when told to.
    #[derive(Default)]
    struct FakeInstances {
        reboots: Mutex<Vec<String>>,
        describe_fails: Option<AwsError>,
        reboot_fails: Option<AwsError>,
    }

    #[async_trait::async_trait]
    impl Instances for FakeInstances {
        async fn facts(&self, id: &str) -> Result<Option<InstanceFacts>, AwsError> {
            if let Some(e) = &self.describe_fails {
                return Err(e.clone());
            }
            Ok(Some(InstanceFacts {
                id: id.into(),
                state: "running".into(),
                tags: BTreeMap::from([("selfheal:managed".to_string(), "true".to_string())]),
            }))
        }
        async fn reboot(&self, id: &str) -> Result<(), AwsError> {
            if let Some(e) = &self.reboot_fails {
                return Err(e.clone());
            }
            self.reboots.lock().unwrap().push(id.into());
            Ok(())
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
    async fn a_failed_reboot_is_audited_not_retried() {
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
        let slow = Arc::new(Slow {
            instances: FakeInstances::default(),
            alarms: sample_alarm(),
            delay: Duration::from_millis(50),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            calls: Mutex::new(Vec::new()),
        });
        d.instances = slow.clone();
        d.alarms = slow.clone();
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
