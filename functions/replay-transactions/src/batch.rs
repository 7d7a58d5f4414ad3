//! One batch on its way through the handler: a [`Slot`] per record, and the pure rules that
//! act on the whole batch (duplicates within it, FIFO order, the per-batch cap, the claim's
//! lease and hourly budget). Nothing here calls AWS.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use selfheal_core::ports::idempotency::{Budget, Claim, Settle};
use selfheal_core::{AuditBuilder, AuditRecord, SkipCode, SkipReason};

use crate::plan::{self, Action, Incoming};
use crate::verify::Replayed;
use crate::FUNCTION;

/// Added to the Lambda deadline to make a claim's lease: covers clock skew between Lambda
/// hosts. After the lease, another invocation may take the record over.
pub const LEASE_MARGIN_SECONDS: i64 = 2;
/// The lease when the invocation has no deadline (the command line): SQS's longest delay.
const LEASE_WITHOUT_DEADLINE_SECONDS: i64 = 900;

/// How a record's handling ended.
#[derive(Debug, Clone)]
pub enum Ending {
    Acted(String),
    Skipped(SkipReason),
    DryRun(String),
    Failed(&'static str, String),
}

#[derive(Debug, Clone)]
pub struct Finish {
    pub ending: Ending,
    /// Reported in `batchItemFailures`: the record returns to the dead-letter queue.
    pub failed: bool,
    /// Notify-worthy outcomes go through `common.audit`; routine ones (replays) are only
    /// logged, so that draining a queue does not send a notice per message.
    pub loud: bool,
}

/// One record on its way through the batch.
pub struct Slot<'a> {
    pub msg: &'a SqsMessage,
    pub inc: Incoming,
    pub key: String,
    pub audit: AuditBuilder,
    /// An earlier record of this batch with the same ledger key: this one mirrors it.
    pub primary: Option<usize>,
    /// Decided, not yet done: the action and why.
    pub pending: Option<(Action, String)>,
    pub finish: Option<Finish>,
}

impl<'a> Slot<'a> {
    /// A slot per record; `audit_for(incoming)` starts each record's audit.
    pub fn open_all(
        msgs: &'a [SqsMessage],
        audit_for: impl Fn(&Incoming) -> AuditBuilder,
    ) -> Vec<Self> {
        let mut first_of_key: HashMap<String, usize> = HashMap::new();
        msgs.iter()
            .enumerate()
            .map(|(i, msg)| {
                let inc = plan::read_record(msg);
                let key = plan::ledger_key(FUNCTION, &inc);
                let audit = audit_for(&inc);
                let primary = first_of_key.get(&key).copied();
                first_of_key.entry(key.clone()).or_insert(i);
                Slot {
                    msg,
                    inc,
                    key,
                    audit,
                    primary,
                    pending: None,
                    finish: None,
                }
            })
            .collect()
    }

    /// Not finished, and not a follower of an earlier duplicate.
    pub fn open(&self) -> bool {
        self.finish.is_none() && self.primary.is_none()
    }

    pub fn replay_pending(&self) -> bool {
        matches!(self.pending, Some((Action::Replay { .. }, _)))
    }

    pub fn end(&mut self, ending: Ending, failed: bool) {
        let replayed = matches!(ending, Ending::Acted(_)) && self.replay_pending();
        let loud = !replayed;
        self.pending = None;
        self.finish = Some(Finish {
            ending,
            failed,
            loud,
        });
    }

    /// Logged and measured, not notified: another record's notice covers this one.
    pub fn quiet(&mut self) {
        if let Some(f) = &mut self.finish {
            f.loud = false;
        }
    }

    pub fn detail(&mut self, key: &str, value: impl serde::Serialize) {
        self.audit = self.audit.clone().detail(key, value);
    }
}

/// The batch and what its steps collect for the ledger.
pub struct Batch<'a> {
    pub slots: Vec<Slot<'a>>,
    pub now: DateTime<Utc>,
    /// `now` in epoch seconds, the ledger's clock.
    pub ts: i64,
    /// When the ledger forgets a handled record.
    pub expires_at: i64,
    /// Some record carries a message group: FIFO order applies between the steps.
    pub fifo: bool,
    /// Outcomes to record in the ledger at the end.
    pub done: Vec<Settle>,
    /// Claims to give back at the end (the record was not handled).
    pub release: Vec<String>,
    /// Records whose parked document was too large to park (told to a person once).
    pub too_big: Vec<usize>,
    /// The replays sent, for their verification: (slot, transaction, delay in seconds).
    pub replayed: Vec<(usize, Replayed, u32)>,
    /// Batch-level records (the autonomy gate's, a follow-up that could not be scheduled),
    /// after the records'.
    pub extra: Vec<AuditRecord>,
    /// The processing queue's `selfheal:autonomy` tag, read with its opt-in tag.
    pub autonomy_tag: Option<String>,
}

impl<'a> Batch<'a> {
    pub fn new(slots: Vec<Slot<'a>>, now: DateTime<Utc>, ttl_seconds: u64) -> Self {
        let ts = now.timestamp();
        let fifo = slots.iter().any(|s| s.inc.group_id.is_some());
        Self {
            slots,
            now,
            ts,
            expires_at: ts.saturating_add(i64::try_from(ttl_seconds).unwrap_or(i64::MAX)),
            fifo,
            done: Vec::new(),
            release: Vec::new(),
            too_big: Vec::new(),
            replayed: Vec::new(),
            extra: Vec::new(),
            autonomy_tag: None,
        }
    }

    /// The name of the queue the records came from (the dead-letter queue), from their ARN.
    pub fn source_name(&self) -> String {
        self.slots
            .iter()
            .find_map(|s| s.msg.event_source_arn.clone())
            .and_then(|arn| arn.rsplit(':').next().map(str::to_string))
            .unwrap_or_default()
    }

    /// Ends every open record the same way.
    pub fn end_open(&mut self, ending: impl Fn() -> Ending, failed: bool) {
        for s in self.slots.iter_mut().filter(|s| s.open()) {
            s.end(ending(), failed);
        }
    }

    /// Indices of the records with a pending action.
    pub fn pending(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots.get(i).is_some_and(|s| s.pending.is_some()))
            .collect()
    }

    /// Keeps FIFO order after a step that may have failed records.
    pub fn hold_back_if_fifo(&mut self) {
        if self.fifo {
            hold_back(&mut self.slots);
        }
    }

    /// Blast radius per batch: replays beyond `max` return to the queue.
    pub fn cap_replays(&mut self, max: u32) {
        let mut replays = 0u32;
        for s in self.slots.iter_mut().filter(|s| s.replay_pending()) {
            replays += 1;
            if replays > max {
                let reason = SkipReason::new(
                    SkipCode::BlastRadius,
                    format!(
                        "{max} replays per batch at most (SELFHEAL_REPLAY_MAX_PER_BATCH); this one returns to the queue"
                    ),
                );
                s.end(Ending::Skipped(reason), true);
            }
        }
    }

    /// A claim for every record at `idx`, held by `owner` until `lease_until`.
    pub fn claims(&self, idx: &[usize], owner: &str, lease_until: i64) -> Vec<Claim> {
        idx.iter()
            .filter_map(|&i| self.slots.get(i))
            .map(|s| Claim {
                key: s.key.clone(),
                owner: owner.to_string(),
                lease_until,
                expires_at: self.expires_at,
                uses_budget: s.replay_pending(),
            })
            .collect()
    }

    /// The clock hour's replay budget; none when `cap` is 0 (no hourly cap).
    pub fn hourly_budget(&self, cap: u32) -> Option<Budget> {
        (cap > 0).then(|| Budget {
            key: format!("{FUNCTION}#replay-budget#{}", self.now.format("%Y%m%d%H")),
            cap,
            expires_at: self.ts + 2 * 3600,
        })
    }

    /// A claim must not outlive the invocation that holds it; a little longer covers clock
    /// skew between hosts.
    pub fn lease_until(&self, deadline: Option<SystemTime>) -> i64 {
        deadline
            .map(epoch)
            .unwrap_or(self.ts + LEASE_WITHOUT_DEADLINE_SECONDS)
            .max(self.ts)
            + LEASE_MARGIN_SECONDS
    }
}

/// Epoch seconds, rounded up: a lease must not end before the deadline it covers.
pub fn epoch(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 + i64::from(d.subsec_nanos() > 0))
        .unwrap_or(0)
}

/// A record with the same key as an earlier one in this batch (a duplicate delivered in
/// the same batch) mirrors it: done when the first is done, failed when it failed.
pub fn resolve_followers(slots: &mut [Slot<'_>]) {
    for i in 0..slots.len() {
        let Some(p) = slots.get(i).and_then(|s| s.primary) else {
            continue;
        };
        let primary = slots.get(p).and_then(|s| s.finish.clone());
        let primary_id = slots
            .get(p)
            .map(|s| s.inc.message_id.clone())
            .unwrap_or_default();
        let Some(s) = slots.get_mut(i) else { continue };
        let (ending, failed) = match primary {
            Some(Finish { failed: false, .. }) => (
                Ending::Skipped(SkipReason::new(
                    SkipCode::AlreadyDone,
                    format!("duplicate of message {primary_id} in this batch, which was handled"),
                )),
                false,
            ),
            _ => (
                Ending::Skipped(SkipReason::new(
                    SkipCode::ChangeInProgress,
                    format!("duplicate of message {primary_id} in this batch, which was not handled; it returns to the queue"),
                )),
                true,
            ),
        };
        s.detail("duplicate_of", primary_id);
        s.end(ending, failed);
    }
}

/// FIFO order: once a record of a message group fails, later records of that group fail too.
/// One not acted on yet is held back; one already acted on stays recorded as acted (the
/// ledger remembers it, so its redelivery is skipped) but is reported failed.
pub fn hold_back(slots: &mut [Slot<'_>]) {
    let groups: Vec<Option<String>> = slots.iter().map(|s| s.inc.group_id.clone()).collect();
    let failed: Vec<bool> = slots
        .iter()
        .map(|s| s.finish.as_ref().is_some_and(|f| f.failed))
        .collect();
    let refs: Vec<Option<&str>> = groups.iter().map(|g| g.as_deref()).collect();
    for i in plan::held_back(&refs, &failed) {
        let Some(s) = slots.get_mut(i) else { continue };
        let group = s.inc.group_id.clone().unwrap_or_default();
        s.detail("held_back", true);
        match &mut s.finish {
            Some(f) => f.failed = true,
            None if s.pending.is_some() || s.primary.is_none() => s.end(
                Ending::Skipped(SkipReason::new(
                    SkipCode::HeldBack,
                    format!("an earlier record of message group {group} in this batch was not handled; this one waits for it"),
                )),
                true,
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use selfheal_core::{AuditRecord, Decision};

    use super::*;
    use crate::plan::{Facts, Rules};

    fn message(id: &str, tx: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(format!(
            r#"{{"transaction_id":"{tx}","member_id":"m-1","points":5,"kind":"earn"}}"#
        ));
        m
    }

    /// A batch in which every open record was decided as it would be with an empty ledger.
    fn decided(msgs: &[SqsMessage]) -> Batch<'_> {
        let slots = Slot::open_all(msgs, |inc| {
            AuditRecord::builder(FUNCTION, "req-1", "sqs:dlq", &inc.message_id)
        });
        let mut b = Batch::new(slots, Utc::now(), 60);
        let rules = Rules {
            max_replays: 3,
            base_delay_seconds: 0,
            target_fifo: false,
            park_at_age_seconds: u64::MAX,
        };
        let facts = Facts {
            ledger: None,
            applied: false,
            now: b.ts,
        };
        for s in b.slots.iter_mut().filter(|s| s.open()) {
            if let Decision::Act { action, reason } = plan::decide(&s.inc, &facts, &rules) {
                s.pending = Some((action, reason));
            }
        }
        b
    }

    #[test]
    fn replays_beyond_the_batch_cap_return_to_the_queue() {
        let msgs: Vec<_> = (0..3)
            .map(|i| message(&format!("m{i}"), &format!("tx-{i}")))
            .collect();
        let mut b = decided(&msgs);
        b.cap_replays(2);
        assert_eq!(b.pending(), vec![0, 1]);
        let capped = b.slots[2].finish.as_ref().expect("capped");
        assert!(capped.failed && capped.loud);
        assert!(matches!(&capped.ending, Ending::Skipped(r) if r.code == SkipCode::BlastRadius));
        let claims = b.claims(&b.pending(), "req-1", 42);
        assert!(claims.iter().all(|c| c.uses_budget && c.lease_until == 42));
        assert_eq!(claims[0].expires_at, b.ts + 60);
    }

    #[test]
    fn a_duplicate_in_the_batch_mirrors_its_first() {
        // Two copies of one replay: distinct messages, same lineage and replay count.
        let copy = |id: &str| -> SqsMessage {
            let mut m = message(id, "tx-1");
            m.message_attributes = serde_json::from_value(serde_json::json!({
                "replay-count": {"stringValue": "1", "dataType": "Number"},
                "replay-lineage": {"stringValue": "l-1", "dataType": "String"},
            }))
            .unwrap();
            m
        };
        let msgs = [copy("m0"), copy("m1")];
        let mut b = decided(&msgs);
        assert_eq!(b.slots[1].primary, Some(0));
        assert_eq!(b.pending(), vec![0], "only the first is acted on");
        b.slots[0].end(Ending::Acted("replayed".into()), false);
        resolve_followers(&mut b.slots);
        let f = b.slots[1].finish.as_ref().expect("mirrored");
        assert!(!f.failed);
        assert!(matches!(&f.ending, Ending::Skipped(r) if r.code == SkipCode::AlreadyDone));

        let mut b = decided(&msgs);
        b.slots[0].end(Ending::Failed("replay-failed", "boom".into()), true);
        resolve_followers(&mut b.slots);
        assert!(b.slots[1].finish.as_ref().is_some_and(|f| f.failed));
    }

    #[test]
    fn lease_covers_the_deadline_and_the_budget_is_per_hour() {
        let msgs = [message("m0", "tx-1")];
        let b = decided(&msgs);
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_secs(b.ts as u64 + 30);
        assert_eq!(
            b.lease_until(Some(deadline)),
            b.ts + 30 + LEASE_MARGIN_SECONDS
        );
        assert_eq!(
            b.lease_until(None),
            b.ts + LEASE_WITHOUT_DEADLINE_SECONDS + LEASE_MARGIN_SECONDS
        );
        assert!(b.hourly_budget(0).is_none());
        let budget = b.hourly_budget(7).expect("budget");
        assert_eq!(budget.cap, 7);
        assert!(budget.key.starts_with("replay-transactions#replay-budget#"));
    }

    #[test]
    fn lease_epoch_rounds_up() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(epoch(t), 2);
        assert_eq!(epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(3)), 3);
    }
}
