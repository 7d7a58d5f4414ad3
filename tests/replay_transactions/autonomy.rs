//! Issue 17 for replay-transactions: the autonomy levels, once per batch, on the processing
//! queue. Whatever the level, no record is lost: a record held back stays in the dead-letter
//! queue (reported failed); only one about to expire is parked.

use super::*;

fn ids_of(recs: &[Rec]) -> Vec<String> {
    recs.iter().map(|r| r.id.clone()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The batch's own record (the gate's): after the records'.
fn batch_record(audits: &[AuditRecord]) -> &AuditRecord {
    audits.last().expect("records")
}

/// `observe`: nothing replayed, nothing parked, nothing deleted, except a record about to
/// expire (parked, so that SQS's retention does not delete it). One notice for the batch; its
/// redelivery is not notified again.
#[tokio::test]
async fn observe_replays_nothing_keeps_every_record_and_parks_only_one_about_to_expire() {
    let w = World::new(false).await;
    let h = w.deps(&[("SELFHEAL_AUTONOMY", "observe")]);
    let mut expiring = rec(tx_body(&unique("tx-old"), 5));
    expiring.sent_ms = Some(now_ms() - 13 * 86_400_000 - 3_600_000);
    let held = vec![
        rec(tx_body(&unique("tx-a"), 5)),
        rec(tx_body(&unique("tx-b"), 7)),
        rec("{not json".into()),
    ];
    let mut all: Vec<Rec> = held.iter().map(|r| rec(r.body.clone())).collect();
    for (r, h) in all.iter_mut().zip(&held) {
        r.id = h.id.clone();
    }
    let expiring_id = expiring.id.clone();
    all.push(expiring);
    w.inbox.drain().await;
    let (failed, audits) = run(&h, &event(DLQ_ARN, &all)).await;
    assert_eq!(sorted(failed), sorted(ids_of(&held)), "{audits:?}");
    assert!(w.replays().await.is_empty(), "nothing replayed");
    let parked = w.parked().await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["reason"], "expiring", "{:?}", parked[0]);
    let batch = batch_record(&audits);
    assert_eq!(batch.decision, Outcome::DryRun, "{batch:?}");
    assert_eq!(batch.details["autonomy"]["level"], "observe");
    assert!(audits[..3]
        .iter()
        .all(|a| a.decision == Outcome::DryRun && a.details["autonomy"]["level"] == "observe"));
    let expired = audits
        .iter()
        .find(|a| a.details["message_id"] == expiring_id.as_str())
        .expect("the expiring record's");
    assert_eq!(expired.details["action"], "parked", "{expired:?}");
    let subjects: Vec<String> = w.inbox.drain().await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(subjects.len(), 2, "the batch and the park: {subjects:?}");
    assert!(
        subjects.iter().any(|s| s.contains("would act on")),
        "{subjects:?}"
    );

    // Redelivered (the held records stayed): still nothing done, no second notice.
    let (failed, _) = run(&h, &event(DLQ_ARN, &held)).await;
    assert_eq!(failed.len(), 3);
    assert!(w.replays().await.is_empty());
    assert!(w.inbox.drain().await.is_empty(), "notified once");
}

/// `first-dry-run`: the first batch within the window is a dry run with a notice and stays;
/// its redelivery is a repeat and is replayed.
#[tokio::test]
async fn first_dry_run_holds_the_first_batch_then_replays_its_redelivery() {
    let w = World::new(false).await;
    let h = w.deps(&[("SELFHEAL_AUTONOMY", "first-dry-run")]);
    let recs = vec![
        rec(tx_body(&unique("tx-a"), 5)),
        rec(tx_body(&unique("tx-b"), 7)),
    ];
    let ev = event(DLQ_ARN, &recs);
    w.inbox.drain().await;
    let (failed, audits) = run(&h, &ev).await;
    assert_eq!(sorted(failed), sorted(ids_of(&recs)), "{audits:?}");
    assert!(w.replays().await.is_empty());
    let batch = batch_record(&audits);
    assert_eq!(
        (batch.decision, batch.details["autonomy"]["level"].as_str()),
        (Outcome::DryRun, Some("first-dry-run")),
        "{batch:?}"
    );
    assert_eq!(w.inbox.drain().await.len(), 1, "one notice");

    let (failed, audits) = run(&h, &ev).await;
    assert!(failed.is_empty(), "{audits:?}");
    assert_eq!(w.replays().await.len(), 2);
    assert!(audits
        .iter()
        .all(|a| a.details["autonomy"]["decision"] == "act"));
}

/// Unset, the level is `auto` (this function's default): replayed as before, and the records
/// say which level applied and where it came from.
#[tokio::test]
async fn auto_is_the_default_and_replays_as_before() {
    let w = World::new(false).await;
    let h = w.deps(&[("SELFHEAL_AUTONOMY", "")]);
    let recs = vec![rec(tx_body(&unique("tx-a"), 5))];
    let (failed, audits) = run(&h, &event(DLQ_ARN, &recs)).await;
    assert!(failed.is_empty(), "{audits:?}");
    assert_eq!(w.replays().await.len(), 1);
    assert_eq!(
        audits.len(),
        1,
        "no record of the gate's when it lets the batch act"
    );
    assert_eq!(audits[0].details["autonomy"]["level"], "auto");
    assert_eq!(audits[0].details["autonomy"]["source"], "default");
}

/// `approve` is not supported by this function: held exactly as observe (nothing replayed,
/// every record stays), escalated once with the reason, and no approval link is issued.
#[tokio::test]
async fn approve_is_refused_as_unsupported_and_holds_the_batch() {
    let w = World::new(false).await;
    let h = w.deps(&[("SELFHEAL_AUTONOMY", "approve")]);
    let recs = vec![
        rec(tx_body(&unique("tx-a"), 5)),
        rec(tx_body(&unique("tx-b"), 7)),
    ];
    let ev = event(DLQ_ARN, &recs);
    w.inbox.drain().await;
    let (failed, audits) = run(&h, &ev).await;
    assert_eq!(failed.len(), 2, "{audits:?}");
    assert!(w.replays().await.is_empty());
    let batch = batch_record(&audits);
    assert_eq!(batch.code, "approval-unsupported", "{batch:?}");
    assert!(batch.reason.contains("not supported"), "{batch:?}");
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].0.contains("ESCALATION"), "{notices:?}");
    assert!(notices[0].1.get("approve_url").is_none(), "no link issued");
    let (failed, _) = run(&h, &ev).await;
    assert_eq!(failed.len(), 2);
    assert!(w.replays().await.is_empty());
    assert!(w.inbox.drain().await.is_empty(), "escalated once");
}

/// The processing queue's `selfheal:autonomy` tag wins over the function's setting.
#[tokio::test]
async fn the_processing_queues_tag_overrides_the_setting() {
    let w = World::new(false).await;
    w.sqs
        .tag_queue()
        .queue_url(&w.processing)
        .tags("selfheal:autonomy", "observe")
        .send()
        .await
        .expect("tag");
    let h = w.deps(&[("SELFHEAL_AUTONOMY", "auto")]);
    let recs = vec![rec(tx_body(&unique("tx-a"), 5))];
    let (failed, audits) = run(&h, &event(DLQ_ARN, &recs)).await;
    assert_eq!(failed.len(), 1, "{audits:?}");
    assert!(w.replays().await.is_empty());
    let batch = batch_record(&audits);
    assert_eq!(batch.details["autonomy"]["level"], "observe");
    assert_eq!(batch.details["autonomy"]["source"], "target-tag");
}

/// `observe` must not let a record expire in the DLQ whatever would be done with it: a poison
/// or exhausted record about to expire is parked too (its park reason stays what it is).
#[tokio::test]
async fn observe_parks_a_poison_or_exhausted_record_about_to_expire() {
    let w = World::new(false).await;
    let h = w.deps(&[("SELFHEAL_AUTONOMY", "observe")]);
    let old = now_ms() - 13 * 86_400_000 - 3_600_000;
    let mut poison = rec("{not json".into());
    poison.sent_ms = Some(old);
    let mut exhausted = rec(tx_body(&unique("tx-x"), 5));
    exhausted.count = Some(3);
    exhausted.sent_ms = Some(old);
    let young = rec("{also not json".into());
    let young_id = young.id.clone();
    let (failed, audits) = run(&h, &event(DLQ_ARN, &[poison, exhausted, young])).await;
    assert_eq!(failed, vec![young_id], "{audits:?}");
    let mut reasons: Vec<String> = w
        .parked()
        .await
        .iter()
        .map(|d| d["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    reasons.sort();
    assert_eq!(reasons, vec!["exhausted", "poison"]);
    assert!(w.replays().await.is_empty());
}

/// A message delivered twice in one batch (SQS's at-least-once delivery) under `observe`: the
/// batch is notified once, and its redelivery not again.
#[tokio::test]
async fn observe_notifies_a_batch_with_a_duplicate_delivery_once() {
    let w = World::new(false).await;
    let h = w.deps(&[("SELFHEAL_AUTONOMY", "observe")]);
    let first = rec(tx_body(&unique("tx-a"), 5));
    let mut copy = rec(first.body.clone());
    copy.id = first.id.clone();
    let ev = event(DLQ_ARN, &[first, copy]);
    w.inbox.drain().await;
    let (failed, _) = run(&h, &ev).await;
    assert_eq!(failed.len(), 2);
    assert_eq!(w.inbox.drain().await.len(), 1, "notified once");
    run(&h, &ev).await;
    assert!(w.inbox.drain().await.is_empty(), "not again on redelivery");
    assert!(w.replays().await.is_empty());
}

/// `observe` deletes nothing, not even a record whose transaction is already applied (which
/// `auto` deletes as done): a batch with nothing to replay or park is held too, silently.
#[tokio::test]
async fn observe_deletes_nothing_not_even_an_already_applied_record() {
    let w = World::new(false).await;
    let h = w.deps(&[("SELFHEAL_AUTONOMY", "observe")]);
    let tx = unique("tx-done");
    w.mark_applied(std::slice::from_ref(&tx)).await;
    let r = rec(tx_body(&tx, 5));
    let id = r.id.clone();
    w.inbox.drain().await;
    let (failed, audits) = run(&h, &event(DLQ_ARN, &[r])).await;
    assert_eq!(failed, vec![id], "stays in the DLQ: {audits:?}");
    assert_eq!(audits[0].code, "already-done", "{audits:?}");
    assert_eq!(audits[0].details["autonomy"]["level"], "observe");
    assert!(w.inbox.drain().await.is_empty(), "nothing to tell");
}
