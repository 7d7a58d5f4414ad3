//! Issue 14 for replay-transactions: a batch that replayed transactions is followed up once;
//! its verification looks them up in the processed-transactions table. The emulator stores
//! schedules but never fires them: each test reads the stored schedule and runs the handler
//! with exactly its input.

use selfheal_core::Heal;

use super::*;

/// The function's ARN the follow-ups target (the emulator invokes nothing).
const SELF_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:replay-transactions";

/// A handler whose batches are followed up in `schedules`.
fn followed(w: &World, schedules: &Schedules, extra: &[(&str, &str)]) -> Handler {
    let mut h = w.deps(extra);
    h.ports.follow_ups = Some(schedules.follow_ups(SELF_ARN));
    h
}

/// `n` valid transactions with ids of `len` characters, and the DLQ event holding them.
fn batch(n: usize, len: usize) -> (Vec<String>, Value) {
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let id = unique(&format!("tx{i}-"));
            format!("{id}{}", "x".repeat(len.saturating_sub(id.len())))
        })
        .collect();
    let recs: Vec<Rec> = ids.iter().map(|id| rec(tx_body(id, 10))).collect();
    (ids, event(DLQ_ARN, &recs))
}

async fn verify(h: &Handler, ev: Value) -> Vec<AuditRecord> {
    h.handle(ev, inv()).await.expect("handled").audits
}

/// One batch of 120 transactions with long ids: the ids alone are over 20,000 characters, so
/// they could not ride in one follow-up (Scheduler takes 8,192). One schedule, carrying a
/// reference; looked at before they are applied (not yet, looked at again), then after (healed,
/// with the time to heal); nothing left scheduled.
#[tokio::test]
async fn a_batch_that_replayed_is_followed_up_once_and_healed_when_applied() {
    let w = World::new(false).await;
    let schedules = Schedules::new(&w.sdk).await;
    let h = followed(&w, &schedules, &[("SELFHEAL_REPLAY_MAX_PER_BATCH", "200")]);
    let (ids, ev) = batch(120, 180);
    let (failed, audits) = run(&h, &ev).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(w.replays().await.len(), 120);
    let action = audits[0].action_id.clone().expect("the replays' action id");
    assert!(
        audits
            .iter()
            .all(|a| a.action_id.as_deref() == Some(action.as_str())
                && a.details["follow_up"]["status"] == "scheduled"),
        "one action for the batch: {:?}",
        audits
            .iter()
            .map(|a| &a.details["follow_up"])
            .collect::<Vec<_>>()
    );

    // One schedule for the batch, well within Scheduler's input limit, naming no transaction.
    let names = schedules.names().await;
    assert_eq!(names.len(), 1, "{names:?}");
    let s = schedules.get(&names[0]).await;
    let input = s.target().and_then(|t| t.input()).expect("input");
    assert!(input.len() < 2_000, "{} characters", input.len());
    assert!(!input.contains(&ids[0]), "{input}");
    assert_eq!(
        s.action_after_completion().map(|a| a.as_str()),
        Some("DELETE")
    );
    // Due after the verification delay.
    let at = s.schedule_expression().unwrap_or_default().to_string();
    let due = chrono::NaiveDateTime::parse_from_str(&at, "at(%Y-%m-%dT%H:%M:%S)")
        .expect(&at)
        .and_utc()
        .timestamp();
    let now = chrono::Utc::now().timestamp();
    assert!((now + 290..=now + 310).contains(&due), "{at}");

    // Looked at before the consumer applied them: not yet, looked at again.
    w.mark_applied(&ids[..100]).await;
    let first = verify(&h, schedules.only_event().await).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        (first[0].outcome, first[0].code.as_str()),
        (Some(Heal::NotHealed), "not-applied-yet"),
        "{first:?}"
    );
    assert_eq!(first[0].details["missing_count"], 20);
    assert_eq!(first[0].action_id.as_deref(), Some(action.as_str()));
    let next = schedules.only_event().await;
    assert_eq!(next["selfheal-verify"]["attempt"], 2);
    assert_ne!(schedules.names().await, names, "the first schedule is gone");

    // Applied: healed, with the time to heal; nothing more scheduled, nothing notified.
    w.mark_applied(&ids[100..]).await;
    w.inbox.drain().await;
    let healed = verify(&h, next).await;
    assert_eq!(
        (healed[0].outcome, healed[0].code.as_str()),
        (Some(Heal::Healed), "healed"),
        "{healed:?}"
    );
    assert_eq!(healed[0].episode_id, audits[0].episode_id);
    assert!(healed[0].time_to_heal_ms.is_some());
    assert!(schedules.names().await.is_empty());
    assert!(w.inbox.drain().await.is_empty());
}

/// Replays still not applied at the last look are escalated once, with their transaction
/// ids; nothing more is scheduled.
#[tokio::test]
async fn replays_not_applied_by_the_last_look_are_escalated_once_with_their_ids() {
    let w = World::new(false).await;
    let schedules = Schedules::new(&w.sdk).await;
    let h = followed(
        &w,
        &schedules,
        &[("SELFHEAL_REPLAY_VERIFY_MAX_CHECKS", "2")],
    );
    let (ids, ev) = batch(3, 0);
    run(&h, &ev).await;
    w.mark_applied(&ids[..1]).await;
    w.inbox.drain().await;
    let first = verify(&h, schedules.only_event().await).await;
    assert_eq!(first[0].outcome, Some(Heal::NotHealed), "{first:?}");
    let last = verify(&h, schedules.only_event().await).await;
    assert_eq!(
        (last[0].outcome, last[0].code.as_str()),
        (Some(Heal::Escalated), "not-applied"),
        "{last:?}"
    );
    assert!(schedules.names().await.is_empty(), "nothing more scheduled");
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 1, "one notice: {notices:?}");
    assert!(notices[0].0.contains("ESCALATION for"), "{notices:?}");
    let mut missing: Vec<String> = notices[0].1["details"]["missing"]
        .as_array()
        .expect("the ids")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    missing.sort();
    let mut want = ids[1..].to_vec();
    want.sort();
    assert_eq!(missing, want);
}

/// A replay that failed again came back to the dead-letter queue and was replayed again
/// (with its own verification): the first verification hands it on instead of escalating it.
#[tokio::test]
async fn a_replay_that_came_back_to_the_dlq_is_handed_on_not_escalated() {
    let w = World::new(false).await;
    let schedules = Schedules::new(&w.sdk).await;
    let h = followed(
        &w,
        &schedules,
        &[("SELFHEAL_REPLAY_VERIFY_MAX_CHECKS", "1")],
    );
    let (ids, ev) = batch(2, 0);
    run(&h, &ev).await;
    let first_verification = schedules.only_event().await;
    // The consumer applies one and fails the other, which SQS moves back to the DLQ (same
    // message, same attributes).
    w.mark_applied(&ids[..1]).await;
    let back: Vec<_> = take_all(&w.sqs, &w.processing)
        .await
        .into_iter()
        .filter(|m| m.body().is_some_and(|b| b.contains(&ids[1])))
        .collect();
    assert_eq!(back.len(), 1);
    let (failed, again) = run(&h, &lambda_event(&back, DLQ_ARN)).await;
    assert!(failed.is_empty(), "{again:?}");
    assert_eq!(again[0].details["action"], "replayed", "{again:?}");
    w.inbox.drain().await;
    let rec = verify(&h, first_verification).await;
    assert_eq!(
        (rec[0].outcome, rec[0].code.as_str()),
        (Some(Heal::NotHealed), "handed-on"),
        "{rec:?}"
    );
    assert_eq!(rec[0].details["handed_on"], json!([ids[1]]));
    assert!(w.inbox.drain().await.is_empty(), "no escalation");
    // The second replay's own verification is the one left.
    let left = schedules.only_event().await;
    assert_eq!(
        left["selfheal-verify"]["action_id"],
        again[0].action_id.clone().expect("action id").as_str()
    );
}

/// Without a processed-transactions table there is nothing to verify against: no follow-up,
/// and every replayed record says so.
#[tokio::test]
async fn without_a_processed_table_replays_are_not_followed_up_and_say_so() {
    let w = World::new(false).await;
    let schedules = Schedules::new(&w.sdk).await;
    let h = followed(&w, &schedules, &[("SELFHEAL_REPLAY_PROCESSED_TABLE", "")]);
    assert!(h.ports.processed.is_none());
    let (_, ev) = batch(2, 0);
    let (failed, audits) = run(&h, &ev).await;
    assert!(failed.is_empty());
    assert_eq!(w.replays().await.len(), 2);
    assert!(schedules.names().await.is_empty());
    for a in &audits {
        assert_eq!(a.details["follow_up"]["status"], "not-scheduled", "{a:?}");
        assert!(
            a.details["follow_up"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("SELFHEAL_REPLAY_PROCESSED_TABLE")),
            "{a:?}"
        );
    }
}

/// A schedule that cannot be created never blocks the replays: they are sent and deleted
/// from the DLQ; one record for the batch says the follow-up failed, and a person is told.
#[tokio::test]
async fn a_failed_schedule_creation_still_replays_and_is_audited_and_notified() {
    let w = World::new(false).await;
    let schedules = Schedules::new(&w.sdk).await;
    let mut h = w.deps(&[]);
    let missing = Schedules {
        group: unique("no-such-group"),
        ..schedules
    };
    h.ports.follow_ups = Some(missing.follow_ups(SELF_ARN));
    let (_, ev) = batch(3, 0);
    w.inbox.drain().await;
    let (failed, audits) = run(&h, &ev).await;
    assert!(failed.is_empty(), "the replays are not blocked: {audits:?}");
    assert_eq!(w.replays().await.len(), 3);
    assert_eq!(audits.len(), 4, "{audits:?}");
    assert!(audits[..3]
        .iter()
        .all(|a| a.details["follow_up"]["status"] == "failed"));
    assert_eq!(
        (audits[3].decision, audits[3].code.as_str()),
        (Outcome::Failed, "follow-up-failed")
    );
    let subjects: Vec<String> = w.inbox.drain().await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(subjects.len(), 1, "one notice for the batch: {subjects:?}");
    assert!(subjects[0].contains("FAILED on"), "{subjects:?}");
}

/// A verification naming an action the ledger does not know is refused and audited; nothing
/// is looked up, and the real follow-up stays.
#[tokio::test]
async fn a_verification_for_an_action_the_ledger_does_not_know_is_refused() {
    let w = World::new(false).await;
    let schedules = Schedules::new(&w.sdk).await;
    let h = followed(&w, &schedules, &[]);
    let (_, ev) = batch(2, 0);
    run(&h, &ev).await;
    let mut forged = schedules.only_event().await;
    forged["selfheal-verify"]["action_id"] = json!("act-0123456789abcdef");
    w.inbox.drain().await;
    let rec = verify(&h, forged).await;
    assert_eq!(
        (rec[0].decision, rec[0].code.as_str()),
        (Outcome::Failed, "unknown-action"),
        "{rec:?}"
    );
    assert_eq!(schedules.names().await.len(), 1, "the real follow-up stays");
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].1["code"], "unknown-action");
}

fn count(ops: &[String], op: &str) -> usize {
    ops.iter().filter(|o| *o == op).count()
}

/// What the closed loop costs, measured on the emulator's request log: a batch that replayed
/// adds one TransactWriteItems (the action's entry) and one CreateSchedule (the list rides in
/// the batch's own BatchWriteItem); a look that finds some not applied costs GetItem,
/// DeleteSchedule, three BatchGetItem (list, processed table, returned replays),
/// TransactWriteItems and CreateSchedule; a look that finds all applied, GetItem,
/// DeleteSchedule and two BatchGetItem.
#[tokio::test]
async fn a_batch_and_its_verification_cost_these_calls() {
    let w = World::new(false).await;
    let schedules = Schedules::new(&w.sdk).await;
    let h = followed(&w, &schedules, &[]);
    let queue = w
        .processing
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let needles = [
        w.ledger.as_str(),
        w.processed.as_str(),
        queue.as_str(),
        schedules.group.as_str(),
    ];
    let (ids, ev) = batch(3, 0);
    let before = operations(&needles).len();
    run(&h, &ev).await;
    let ops = operations(&needles)[before..].to_vec();
    eprintln!("AWS calls for one batch of 3 replays: {ops:?}");
    assert_eq!(count(&ops, "SendMessageBatch"), 1, "{ops:?}");
    assert_eq!(
        count(&ops, "BatchWriteItem"),
        1,
        "the list rides along: {ops:?}"
    );
    // The claim, then the action's entry (a conditional write in a transaction).
    assert_eq!(count(&ops, "TransactWriteItems"), 2, "{ops:?}");
    assert_eq!(count(&ops, "CreateSchedule"), 1, "{ops:?}");

    w.mark_applied(&ids[..2]).await;
    let due = schedules.only_event().await;
    let before = operations(&needles).len();
    let first = verify(&h, due).await;
    assert_eq!(first[0].code, "not-applied-yet", "{first:?}");
    let ops = operations(&needles)[before..].to_vec();
    eprintln!("AWS calls for a look that finds one of 3 not applied: {ops:?}");
    for (op, n) in [
        ("GetItem", 1),
        ("DeleteSchedule", 1),
        ("BatchGetItem", 3),
        ("TransactWriteItems", 1),
        ("CreateSchedule", 1),
    ] {
        assert_eq!(count(&ops, op), n, "{op}: {ops:?}");
    }
    assert_eq!(ops.len(), 7, "{ops:?}");

    w.mark_applied(&ids[2..]).await;
    let due = schedules.only_event().await;
    let before = operations(&needles).len();
    let healed = verify(&h, due).await;
    assert_eq!(healed[0].code, "healed", "{healed:?}");
    let ops = operations(&needles)[before..].to_vec();
    eprintln!("AWS calls for a look that finds all 3 applied: {ops:?}");
    assert_eq!(count(&ops, "BatchGetItem"), 2, "{ops:?}");
    assert_eq!(ops.len(), 4, "{ops:?}");
}

/// A look that finds replays not applied yet but cannot schedule the next look (here the
/// scheduler is no longer configured) escalates: otherwise nothing would ever look again and
/// nobody would hear of them.
#[tokio::test]
async fn a_look_that_cannot_be_followed_by_another_escalates() {
    let w = World::new(false).await;
    let schedules = Schedules::new(&w.sdk).await;
    let h = followed(&w, &schedules, &[]);
    let (_, ev) = batch(2, 0);
    run(&h, &ev).await;
    let due = schedules.only_event().await;
    let unscheduled = w.deps(&[]);
    assert!(unscheduled.ports.follow_ups.is_none());
    w.inbox.drain().await;
    let rec = verify(&unscheduled, due).await;
    assert_eq!(
        (rec[0].outcome, rec[0].code.as_str()),
        (Some(Heal::Escalated), "not-applied-yet"),
        "{rec:?}"
    );
    assert_eq!(rec[0].details["missing_count"], 2);
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 1, "{notices:?}");
}
