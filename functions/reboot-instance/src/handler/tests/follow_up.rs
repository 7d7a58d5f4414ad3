//! The closed loop with in-memory ports: a reboot is verified later; healed, or the next rung
//! of the ladder, the last of which tells a person.

use std::sync::Arc;

use selfheal_core::episode::VERIFY_KEY;
use selfheal_core::testing::{FakeAlarms, FakeFollowUps, RecordingNotifier};
use selfheal_core::{Auditor, Heal};

use super::*;

struct Loop {
    d: Deps,
    instances: Arc<FakeInstances>,
    alarms: Arc<FakeAlarms>,
    follow_ups: Arc<FakeFollowUps>,
    notices: Arc<RecordingNotifier>,
}

fn looped(env: &[(&str, &str)]) -> Loop {
    let (mut d, instances, _) = deps(Ok(history_before(alarm_time(), flat)), env);
    let alarms = Arc::new(sample_alarm());
    let follow_ups = Arc::new(FakeFollowUps::default());
    let notices = Arc::new(RecordingNotifier::default());
    d.alarms = alarms.clone();
    d.common.audit = Auditor::new(Some(notices.clone()));
    let d = d.with_follow_ups(follow_ups.clone());
    Loop {
        d,
        instances,
        alarms,
        follow_ups,
        notices,
    }
}

impl Loop {
    async fn run(&self, ev: Value) -> Vec<AuditRecord> {
        self.d
            .handle(ev, Invocation::local(Duration::from_secs(30)))
            .await
            .unwrap()
            .audits
    }

    /// The reboot the sample alarm triggers.
    async fn reboot(&self) -> AuditRecord {
        let recs = self.run(sample()).await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0].decision, Outcome::Acted, "{recs:?}");
        recs.into_iter().next().unwrap()
    }

    async fn follow_up(&self) -> AuditRecord {
        let ev = self.follow_ups.last_event().expect("a follow-up");
        let mut recs = self.run(ev).await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        recs.remove(0)
    }

    fn alarm_is(&self, state: AlarmState) {
        let mut m = self.alarms.alarms.lock().unwrap();
        m.get_mut("web-1-cpu-high").unwrap().state = state;
    }

    fn reboots(&self) -> usize {
        self.instances.reboots.lock().unwrap().len()
    }
}

#[tokio::test]
async fn a_reboot_that_healed_is_recorded_with_its_time_to_heal() {
    let l = looped(&[]);
    let first = l.reboot().await;
    assert_eq!(first.details["follow_up"]["status"], "scheduled");
    assert_eq!(first.details["rung"], "reboot");
    let scheduled = l.follow_ups.scheduled();
    assert_eq!(scheduled.len(), 1);
    assert_eq!(
        scheduled[0].at - first.at.timestamp(),
        600,
        "the default delay"
    );
    l.alarm_is(AlarmState::Ok);
    let rec = l.follow_up().await;
    assert_eq!(
        (rec.outcome, rec.code.as_str()),
        (Some(Heal::Healed), "healed"),
        "{rec:?}"
    );
    assert_eq!(rec.episode_id, first.episode_id);
    assert_eq!(rec.action_id, first.action_id);
    // The sample alarm's state change is the episode's start (in whole seconds).
    let since = (chrono::Utc::now() - alarm_time()).num_milliseconds() as u64;
    let ttl = rec.time_to_heal_ms.unwrap();
    assert!(
        ttl <= since + 1_000 && ttl + 60_000 > since,
        "{ttl} vs {since}"
    );
    assert_eq!(l.reboots(), 1);
    assert_eq!(l.follow_ups.scheduled().len(), 1);
}

#[tokio::test]
async fn a_reboot_that_did_not_heal_tells_a_person_by_default() {
    let l = looped(&[]);
    l.reboot().await;
    let before = l.notices.sent().len();
    let rec = l.follow_up().await;
    assert_eq!(
        (rec.outcome, rec.code.as_str()),
        (Some(Heal::Escalated), "escalated"),
        "{rec:?}"
    );
    assert_eq!(rec.details["next_rung"], "notify");
    assert!(rec.reason.contains("still in ALARM"), "{}", rec.reason);
    assert_eq!(l.reboots(), 1, "nothing more done");
    assert_eq!(l.follow_ups.scheduled().len(), 1, "nothing more scheduled");
    let sent = l.notices.sent();
    assert_eq!(sent.len(), before + 1);
    assert!(sent[before].0.contains("ESCALATION"), "{sent:?}");
}

#[tokio::test]
async fn the_ladder_reboots_again_through_the_guardrails_then_tells_a_person() {
    let l = looped(&[
        ("SELFHEAL_REBOOT_LADDER", "reboot,reboot,notify"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ]);
    let first = l.reboot().await;
    let second = l.follow_up().await;
    assert_eq!(second.decision, Outcome::Acted, "{second:?}");
    assert_eq!(second.outcome, Some(Heal::NotHealed));
    assert_eq!(second.episode_id, first.episode_id);
    assert_ne!(second.action_id, first.action_id);
    assert_eq!(l.reboots(), 2);
    let v = &l.follow_ups.last_event().unwrap()[VERIFY_KEY];
    assert_eq!(
        (v["step"].as_u64(), v["attempt"].as_u64()),
        (Some(1), Some(2))
    );
    let last = l.follow_up().await;
    assert_eq!(last.outcome, Some(Heal::Escalated), "{last:?}");
    assert_eq!(l.reboots(), 2);
}

#[tokio::test]
async fn a_rung_the_guardrails_refuse_escalates() {
    // The default cooldown (900 s) outlasts the verification (600 s): the second reboot is
    // refused, and a person is told.
    let l = looped(&[("SELFHEAL_REBOOT_LADDER", "reboot,reboot,notify")]);
    l.reboot().await;
    let rec = l.follow_up().await;
    assert_eq!(
        (rec.code.as_str(), rec.outcome),
        ("cooldown", Some(Heal::Escalated)),
        "{rec:?}"
    );
    assert!(rec.notify_worthy());
    assert_eq!(l.reboots(), 1);
}

#[tokio::test]
async fn stop_start_is_refused_without_its_opt_in() {
    let l = looped(&[("SELFHEAL_REBOOT_LADDER", "reboot,stop-start,notify")]);
    l.reboot().await;
    let rec = l.follow_up().await;
    assert_eq!(rec.outcome, Some(Heal::Escalated), "{rec:?}");
    let skipped = &rec.details["rungs_skipped"];
    assert_eq!(skipped[0]["rung"], "stop-start", "{skipped}");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("SELFHEAL_REBOOT_ALLOW_STOP_START"),
        "{skipped}"
    );
    assert_eq!(l.reboots(), 1);
}

#[tokio::test]
async fn checks_still_initializing_are_verified_again() {
    let l = looped(&[]);
    l.reboot().await;
    l.alarm_is(AlarmState::Ok);
    *l.instances.checks.lock().unwrap() = Some(StatusChecks {
        instance: Some("initializing".into()),
        system: Some("ok".into()),
    });
    let rec = l.follow_up().await;
    assert_eq!(rec.outcome, Some(Heal::NotHealed), "{rec:?}");
    assert_eq!(rec.details["follow_up"]["attempt"], 2);
    *l.instances.checks.lock().unwrap() = None;
    let rec = l.follow_up().await;
    assert_eq!(rec.outcome, Some(Heal::Healed), "{rec:?}");
}

#[tokio::test]
async fn a_verification_of_an_unknown_reboot_is_refused() {
    let l = looped(&[]);
    l.reboot().await;
    let mut forged = l.follow_ups.last_event().unwrap();
    forged[VERIFY_KEY]["target"] = "i-0000000000000000".into();
    let recs = l.run(forged).await;
    assert_eq!(
        (recs[0].decision, recs[0].code.as_str()),
        (Outcome::Failed, "unknown-action")
    );
    assert_eq!(l.reboots(), 1);
}

#[tokio::test]
async fn an_allowed_stop_start_stops_then_starts_then_verifies() {
    let l = looped(&[
        ("SELFHEAL_REBOOT_LADDER", "reboot,stop-start,notify"),
        ("SELFHEAL_REBOOT_ALLOW_STOP_START", "true"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ]);
    let first = l.reboot().await;
    // Still in ALARM: the stop-start rung. The start is scheduled before the stop.
    let stopped = l.follow_up().await;
    assert_eq!(stopped.decision, Outcome::Acted, "{stopped:?}");
    assert_eq!(stopped.details["rung"], "stop-start");
    assert_eq!(stopped.outcome, Some(Heal::NotHealed));
    assert_eq!(stopped.episode_id, first.episode_id);
    assert_eq!(*l.instances.stops_and_starts.lock().unwrap(), ["stop"]);
    let next = l.follow_ups.scheduled();
    let start = next.last().unwrap();
    assert_eq!(
        start.at - stopped.at.timestamp(),
        60,
        "started a minute later"
    );
    assert_eq!(
        l.follow_ups.last_event().unwrap()[VERIFY_KEY]["phase"],
        "start"
    );
    // Stopped: started again, and verified like a reboot.
    let started = l.follow_up().await;
    assert_eq!(started.decision, Outcome::Acted, "{started:?}");
    assert_eq!(
        *l.instances.stops_and_starts.lock().unwrap(),
        ["stop", "start"]
    );
    let v = l.follow_ups.last_event().unwrap();
    assert!(v[VERIFY_KEY].get("phase").is_none(), "{v}");
    assert_eq!(v[VERIFY_KEY]["rung"], "stop-start");
    // Healed this time.
    l.alarm_is(AlarmState::Ok);
    let healed = l.follow_up().await;
    assert_eq!(healed.outcome, Some(Heal::Healed), "{healed:?}");
    assert!(
        healed.reason.contains("rung stop-start"),
        "{}",
        healed.reason
    );
    assert_eq!(l.reboots(), 1);
}

#[tokio::test]
async fn a_stop_start_is_never_taken_without_a_scheduler_to_start_again() {
    let mut l = looped(&[
        ("SELFHEAL_REBOOT_LADDER", "reboot,stop-start,notify"),
        ("SELFHEAL_REBOOT_ALLOW_STOP_START", "true"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ]);
    l.reboot().await;
    let ev = l.follow_ups.last_event().unwrap();
    l.d.follow_ups = None;
    let mut recs = l.run(ev).await;
    let rec = recs.remove(0);
    assert_eq!(rec.outcome, Some(Heal::Escalated), "{rec:?}");
    assert!(
        rec.details["rungs_skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no scheduler"),
        "{rec:?}"
    );
    assert!(l.instances.stops_and_starts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_stop_still_in_progress_is_looked_at_again_before_the_start() {
    let l = looped(&[
        ("SELFHEAL_REBOOT_LADDER", "reboot,stop-start,notify"),
        ("SELFHEAL_REBOOT_ALLOW_STOP_START", "true"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ]);
    l.reboot().await;
    l.follow_up().await;
    *l.instances.state.lock().unwrap() = Some("stopping".into());
    let rec = l.follow_up().await;
    assert_eq!(rec.code, "stopping", "{rec:?}");
    assert_eq!(*l.instances.stops_and_starts.lock().unwrap(), ["stop"]);
    let again = l.follow_ups.last_event().unwrap();
    assert_eq!(again[VERIFY_KEY]["phase"], "start");
    *l.instances.state.lock().unwrap() = Some("stopped".into());
    let started = l.follow_up().await;
    assert_eq!(started.decision, Outcome::Acted, "{started:?}");
    assert_eq!(
        *l.instances.stops_and_starts.lock().unwrap(),
        ["stop", "start"]
    );
}
