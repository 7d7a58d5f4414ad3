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
