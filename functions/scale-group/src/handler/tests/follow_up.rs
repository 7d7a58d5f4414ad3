//! The closed loop with in-memory ports: each resize schedules its verification; a
//! verification steps again while the alarm is in ALARM, until it clears or a person is told.

use std::sync::Arc;

use serde_json::Value;

use selfheal_core::alarm::AlarmState;
use selfheal_core::episode::VERIFY_KEY;
use selfheal_core::testing::{FakeAlarms, FakeFollowUps, HistoryAnswer, RecordingNotifier};
use selfheal_core::{AuditRecord, Auditor, AwsError, Function, Heal, Invocation, Outcome};

use super::{deps, event, FakeGroups};
use crate::handler::Deps;
use crate::test_support::alarm_now;

struct Loop {
    d: Deps,
    groups: Arc<FakeGroups>,
    alarms: Arc<FakeAlarms>,
    follow_ups: Arc<FakeFollowUps>,
    notices: Arc<RecordingNotifier>,
}

/// Severity sizing (72 against 60: +20 % per step), no cooldown, the group at `desired` of
/// 1..=`max`, the alarm in ALARM.
fn looped(env: &[(&str, &str)], max: u32, desired: u32) -> Loop {
    let mut all = vec![
        ("SELFHEAL_SCALE_SIZING", "severity"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ];
    all.extend_from_slice(env);
    let (mut d, groups, _) = deps(HistoryAnswer::Points(vec![]), &all, 1, max, desired);
    let alarms = Arc::new(FakeAlarms::default().with(alarm_now("cpu", None, &[])));
    let follow_ups = Arc::new(FakeFollowUps::default());
    let notices = Arc::new(RecordingNotifier::default());
    d.alarms = alarms.clone();
    d.follow_ups = Some(follow_ups.clone());
    d.common.audit = Auditor::new(Some(notices.clone()));
    Loop {
        d,
        groups,
        alarms,
        follow_ups,
        notices,
    }
}

impl Loop {
    async fn run(&self, ev: Value) -> Vec<AuditRecord> {
        self.d
            .handle(ev, Invocation::local(std::time::Duration::from_secs(30)))
            .await
            .unwrap()
            .audits
    }

    /// Runs the last scheduled follow-up, exactly as Scheduler would deliver it.
    async fn follow_up(&self) -> Vec<AuditRecord> {
        let ev = self
            .follow_ups
            .last_event()
            .expect("a follow-up was scheduled");
        self.run(ev).await
    }

    fn alarm_is(&self, state: AlarmState) {
        let mut m = self.alarms.alarms.lock().unwrap();
        m.get_mut("cpu").unwrap().state = state;
    }

    fn set(&self) -> Vec<u32> {
        self.groups.set.lock().unwrap().clone()
    }
}

fn one(mut recs: Vec<AuditRecord>) -> AuditRecord {
    assert_eq!(recs.len(), 1, "{recs:?}");
    recs.remove(0)
}

#[tokio::test]
async fn a_surge_that_outlasts_the_first_step_takes_further_steps_until_healed() {
    let l = looped(&[], 20, 2);
    let first = one(l.run(event("out", &[72.0])).await);
    assert_eq!(first.decision, Outcome::Acted, "{first:?}");
    assert_eq!(l.set(), [3]);
    assert_eq!(first.outcome, None, "the first action verifies nothing");
    let episode = first.episode_id.clone().unwrap();
    assert_eq!(
        first.details["follow_up"]["status"], "scheduled",
        "{first:?}"
    );
    let scheduled = l.follow_ups.scheduled();
    assert_eq!(scheduled.len(), 1);
    // Default: the cooldown (0 here) plus the margin, never inside the cooldown.
    assert_eq!(scheduled[0].at - first.at.timestamp(), 30);
    let v = &l.follow_ups.last_event().unwrap()[VERIFY_KEY];
    assert_eq!(v["action_id"], first.action_id.clone().unwrap().as_str());
    assert_eq!(
        (v["attempt"].as_u64(), v["step"].as_u64()),
        (Some(1), Some(1))
    );

    // Still in ALARM at the verification: decided again as a fresh alarm, the next step.
    let second = one(l.follow_up().await);
    assert_eq!(second.decision, Outcome::Acted, "{second:?}");
    assert_eq!(l.set(), [3, 4]);
    assert_eq!(second.outcome, Some(Heal::NotHealed));
    assert_eq!(second.episode_id.as_deref(), Some(episode.as_str()));
    assert_ne!(second.action_id, first.action_id);
    assert_eq!(
        second.details["verifies"],
        first.action_id.clone().unwrap().as_str()
    );
    assert_eq!(second.details["step_of_episode"], 2);
    assert_eq!(second.trigger, VERIFY_KEY);
    assert_eq!(l.follow_ups.scheduled().len(), 2);

    // The alarm clears: healed, with the time since the first alarm; nothing more scheduled.
    l.alarm_is(AlarmState::Ok);
    let healed = one(l.follow_up().await);
    assert_eq!(healed.outcome, Some(Heal::Healed), "{healed:?}");
    assert_eq!(healed.code, "healed");
    assert_eq!(healed.episode_id.as_deref(), Some(episode.as_str()));
    assert_eq!(healed.action_id, second.action_id);
    assert!(healed.time_to_heal_ms.is_some());
    assert_eq!(l.set(), [3, 4]);
    assert_eq!(l.follow_ups.scheduled().len(), 2);
    // Each verification deleted its own schedule.
    assert_eq!(l.follow_ups.deleted.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_group_at_its_bound_escalates_once_and_stops() {
    let l = looped(&[], 3, 2);
    one(l.run(event("out", &[72.0])).await);
    assert_eq!(l.set(), [3]);
    let before = l.notices.sent().len();
    let rec = one(l.follow_up().await);
    assert_eq!(rec.outcome, Some(Heal::Escalated), "{rec:?}");
    assert_eq!(rec.code, "at-bound");
    assert_eq!(l.set(), [3], "nothing more done");
    assert_eq!(l.follow_ups.scheduled().len(), 1, "nothing more scheduled");
    let sent = l.notices.sent();
    assert_eq!(sent.len(), before + 1, "a person is told once");
    assert!(sent[before].0.contains("ESCALATION"), "{sent:?}");
}

#[tokio::test]
async fn a_guardrail_refusal_during_a_follow_up_escalates_and_stops() {
    let l = looped(&[("SELFHEAL_TARGET_CAP", "1")], 20, 2);
    one(l.run(event("out", &[72.0])).await);
    let rec = one(l.follow_up().await);
    assert_eq!(rec.code, "target-cap-reached", "{rec:?}");
    assert_eq!(rec.outcome, Some(Heal::Escalated));
    assert_eq!(l.set(), [3]);
    assert_eq!(l.follow_ups.scheduled().len(), 1);
}

#[tokio::test]
async fn a_failed_schedule_creation_still_resizes_and_tells_a_person() {
    let l = looped(&[], 20, 2);
    *l.follow_ups.fail.lock().unwrap() = Some(AwsError::new(
        "scheduler:CreateSchedule",
        "selfheal/x",
        "AccessDenied",
    ));
    let recs = l.run(event("out", &[72.0])).await;
    assert_eq!(l.set(), [3], "the action is not blocked");
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0].decision, Outcome::Acted);
    assert_eq!(recs[0].details["follow_up"]["status"], "failed");
    assert_eq!(
        (recs[1].decision, recs[1].code.as_str()),
        (Outcome::Failed, "follow-up-failed")
    );
    assert_eq!(recs[1].action_id, recs[0].action_id);
    assert!(
        recs[1].reason.contains("AccessDenied"),
        "{}",
        recs[1].reason
    );
    let subjects: Vec<String> = l.notices.sent().into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        subjects,
        [
            "[selfheal] scale-group acted on g",
            "[selfheal] scale-group FAILED on g"
        ]
    );
}

#[tokio::test]
async fn without_a_scheduler_the_action_says_it_is_not_followed_up() {
    let mut l = looped(&[], 20, 2);
    l.d.follow_ups = None;
    let rec = one(l.run(event("out", &[72.0])).await);
    assert_eq!(rec.decision, Outcome::Acted);
    assert_eq!(rec.details["follow_up"]["status"], "not-scheduled");
    assert_eq!(
        rec.details["follow_up"]["reason"],
        "no scheduler configured"
    );
}

#[tokio::test]
async fn a_verification_of_an_action_the_ledger_does_not_know_is_refused() {
    let l = looped(&[], 20, 2);
    one(l.run(event("out", &[72.0])).await);
    let mut forged = l.follow_ups.last_event().unwrap();
    forged[VERIFY_KEY]["action_id"] = "act-0000000000000000".into();
    let rec = one(l.run(forged).await);
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Failed, "unknown-action")
    );
    assert_eq!(l.set(), [3], "never acted on");
    assert!(l.notices.sent().last().unwrap().0.contains("FAILED"));
    // A verification that cannot be read is rejected (kept by the on-failure destination).
    let bad = serde_json::json!({VERIFY_KEY: {"version": 1, "function": "scale-group"}});
    let r =
        l.d.handle(bad, Invocation::local(std::time::Duration::from_secs(5)))
            .await;
    assert!(r.is_err());
}

#[tokio::test]
async fn insufficient_data_is_checked_again_until_the_follow_ups_run_out() {
    let l = looped(&[("SELFHEAL_SCALE_MAX_FOLLOW_UPS", "2")], 20, 2);
    one(l.run(event("out", &[72.0])).await);
    // Follow-up 1: no data yet, checked again.
    l.alarm_is(AlarmState::InsufficientData);
    let rec = one(l.follow_up().await);
    assert_eq!(rec.outcome, Some(Heal::NotHealed), "{rec:?}");
    assert_eq!(rec.details["follow_up"]["attempt"], 2);
    let again = l.follow_ups.last_event().unwrap();
    assert_eq!(again[VERIFY_KEY]["attempt"], 2);
    // Follow-up 2: in ALARM, the next step.
    l.alarm_is(AlarmState::Alarm);
    let rec = one(l.follow_up().await);
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(l.set(), [3, 4]);
    // The episode's two follow-ups are used up: the next verification tells a person.
    let rec = one(l.follow_up().await);
    assert_eq!(rec.outcome, Some(Heal::Escalated), "{rec:?}");
    assert!(
        rec.reason.contains("after 2 follow-up(s)") && rec.reason.contains("MAX_FOLLOW_UPS=2"),
        "{}",
        rec.reason
    );
    assert_eq!(l.set(), [3, 4]);
    assert_eq!(l.follow_ups.scheduled().len(), 3);
}

#[tokio::test]
async fn a_forged_verification_never_removes_a_real_follow_up() {
    let l = looped(&[], 20, 2);
    one(l.run(event("out", &[72.0])).await);
    // The real follow-up's name (function, action id, attempt), other times: not known.
    let mut forged = l.follow_ups.last_event().unwrap();
    forged[VERIFY_KEY]["acted_at"] = 1.into();
    let rec = one(l.run(forged).await);
    assert_eq!(rec.code, "unknown-action", "{rec:?}");
    assert!(
        l.follow_ups.deleted.lock().unwrap().is_empty(),
        "the real schedule must stay"
    );
}

#[tokio::test]
async fn a_fresh_alarm_during_an_episode_leaves_the_next_step_to_its_verification() {
    let l = looped(&[], 20, 2);
    let first = one(l.run(event("out", &[72.0])).await);
    // The alarm fires again (OK → ALARM) before the verification: no second chain.
    let again = one(l.run(event("out", &[72.0])).await);
    assert_eq!(
        (again.decision, again.code.as_str()),
        (Outcome::Skipped, "change-in-progress"),
        "{again:?}"
    );
    assert!(again.reason.contains("verification"), "{}", again.reason);
    assert_eq!(l.set(), [3]);
    assert_eq!(l.follow_ups.scheduled().len(), 1);
    // The verification takes the step; once healed, a new alarm starts a new episode.
    one(l.follow_up().await);
    assert_eq!(l.set(), [3, 4]);
    l.alarm_is(AlarmState::Ok);
    one(l.follow_up().await);
    l.alarm_is(AlarmState::Alarm);
    let fresh = one(l.run(event("out", &[72.0])).await);
    assert_eq!(fresh.decision, Outcome::Acted, "{fresh:?}");
    // A new episode: its first step (episode ids derive from the alarm's second, which the
    // test events share).
    assert_eq!(fresh.details["step_of_episode"], 1);
    assert!(fresh.details.get("verifies").is_none());
    assert_ne!(fresh.action_id, first.action_id);
    assert_eq!(l.set(), [3, 4, 5]);
}
