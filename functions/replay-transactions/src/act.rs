//! The steps that change things: claim every record about to be acted on (and the hourly
//! budget) in one transaction, send the replays and park what must be parked, then settle
//! the outcomes in the ledger. Every step works on the records still pending.

use std::collections::HashSet;
use std::time::Duration;

use selfheal_core::ports::idempotency::{ClaimResult, Settle};
use selfheal_core::ports::parking::ParkedDocument;
use selfheal_core::ports::queues::{OutgoingMessage, SendError};
use selfheal_core::{AwsError, Invocation, SkipCode, SkipReason};

use crate::batch::{Batch, Ending};
use crate::handler::Handler;
use crate::park::{self, ParkContext};
use crate::plan::{Action, ParkReason};
use crate::FUNCTION;

/// Time that must be left before the deadline to start sending: enough to send and record.
const ACT_RESERVE: Duration = Duration::from_secs(2);

impl Handler {
    /// Claims every pending record, and the hourly budget, in one ledger transaction. A
    /// record another invocation claimed, or one over the budget, returns to the queue.
    pub(crate) async fn claim(&self, b: &mut Batch<'_>, inv: &Invocation) {
        let claimed = b.pending();
        if claimed.is_empty() {
            return;
        }
        let claims = b.claims(&claimed, &inv.request_id, b.lease_until(inv.deadline));
        let budget = b.hourly_budget(self.settings.max_per_hour);
        let results = match self
            .ports
            .ledger
            .claim(&claims, budget.as_ref(), b.ts)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                for &i in &claimed {
                    if let Some(s) = b.slots.get_mut(i) {
                        s.end(Ending::Failed("claim-failed", e.to_string()), true);
                    }
                }
                return;
            }
        };
        for (&i, r) in claimed.iter().zip(results) {
            let Some(s) = b.slots.get_mut(i) else {
                continue;
            };
            match r {
                ClaimResult::Claimed => {}
                ClaimResult::Conflict => s.end(
                    Ending::Skipped(SkipReason::new(
                        SkipCode::ChangeInProgress,
                        "another invocation claimed this message first; it returns to the queue and is looked at again",
                    )),
                    true,
                ),
                ClaimResult::BudgetRefused => s.end(
                    Ending::Skipped(SkipReason::new(
                        SkipCode::BlastRadius,
                        format!(
                            "{} replays this hour at most (SELFHEAL_REPLAY_MAX_PER_HOUR); this one returns to the queue",
                            self.settings.max_per_hour
                        ),
                    )),
                    true,
                ),
            }
        }
    }

    /// Too close to the deadline to send and record: a claim must not outlive the
    /// invocation that acts on it. The claims are given back; the records return.
    pub(crate) fn give_back_if_late(&self, b: &mut Batch<'_>, inv: &Invocation) {
        if inv.remaining().is_none_or(|left| left >= ACT_RESERVE) {
            return;
        }
        for s in b.slots.iter_mut().filter(|s| s.pending.is_some()) {
            b.release.push(s.key.clone());
            s.end(
                Ending::Failed(
                    "deadline",
                    "too close to the Lambda deadline to replay safely; returns to the queue"
                        .into(),
                ),
                true,
            );
        }
    }

    /// Sends the pending replays (in SendMessageBatch requests) and parks the pending parks,
    /// at the same time; then settles both.
    pub(crate) async fn send(&self, b: &mut Batch<'_>, inv: &Invocation) {
        let (replay_idx, messages) = pending_replays(b);
        let (park_idx, docs) = self.park_docs(b, inv);
        let (sent, parked) = tokio::join!(self.send_replays(&messages), self.park(&docs));
        self.settle_replays(b, &replay_idx, sent);
        self.settle_parks(b, &park_idx, parked);
    }

    /// Parks the replays the processing queue refused for good (they were turned into
    /// parks while settling the replays).
    pub(crate) async fn park_refused(&self, b: &mut Batch<'_>, inv: &Invocation) {
        let (idx, docs) = self.park_docs(b, inv);
        if !docs.is_empty() {
            let parked = self.park(&docs).await;
            self.settle_parks(b, &idx, parked);
        }
    }

    /// Records the outcomes and gives back the claims of records not handled. A failure
    /// here is logged, not retried through the queue: the work is done, and a redelivery
    /// would find the claim and wait for its lease.
    pub(crate) async fn record(&self, b: &mut Batch<'_>) {
        if b.done.is_empty() && b.release.is_empty() {
            return;
        }
        if let Err(e) = self.ports.ledger.settle(&b.done, &b.release).await {
            tracing::error!(function = FUNCTION, error = %e, "ledger settle failed");
            let settled: HashSet<&String> =
                b.done.iter().map(|d| &d.key).chain(&b.release).collect();
            for s in b.slots.iter_mut() {
                if settled.contains(&s.key) {
                    s.detail("ledger_settle_error", e.to_string());
                }
            }
        }
    }

    async fn send_replays(&self, messages: &[OutgoingMessage]) -> Vec<Result<String, SendError>> {
        if messages.is_empty() {
            return Vec::new();
        }
        self.ports
            .queues
            .send(&self.settings.processing_queue_url, messages)
            .await
    }

    async fn park(&self, docs: &[ParkedDocument]) -> Vec<Result<String, AwsError>> {
        if docs.is_empty() {
            return Vec::new();
        }
        self.ports.parking.park(docs).await
    }

    /// A sent replay is done; one SQS refused for good for a fault of the message itself (a
    /// sender fault on its entry) becomes a park (cycling it through the dead-letter queue
    /// would not help); any other failure returns to the queue. A failed request (denied, no
    /// such queue, KMS) says nothing about its messages: they all return, and one notice
    /// covers them, not one per message.
    fn settle_replays(
        &self,
        b: &mut Batch<'_>,
        idx: &[usize],
        results: Vec<Result<String, SendError>>,
    ) {
        let queue = &self.settings.processing_queue_url;
        let request_failed = results
            .iter()
            .filter(|r| matches!(r, Err(SendError::Request(_))))
            .count();
        let mut notified = false;
        for (&i, res) in idx.iter().zip(results) {
            let Some(s) = b.slots.get_mut(i) else {
                continue;
            };
            let (delay, count, reason) = match &s.pending {
                Some((
                    Action::Replay {
                        message,
                        replay_count,
                        ..
                    },
                    reason,
                )) => (message.delay_seconds, *replay_count, reason.clone()),
                _ => (None, 0, String::new()),
            };
            match res {
                Ok(id) => {
                    s.detail("action", "replayed");
                    s.detail("sqs_message_id", &id);
                    s.detail("delay_seconds", delay);
                    b.done.push(Settle {
                        key: s.key.clone(),
                        outcome: "replayed".into(),
                        detail: format!("replay {count} sent to {queue} as message {id}"),
                        at: b.ts,
                        expires_at: b.expires_at,
                    });
                    s.end(
                        Ending::Acted(format!("replayed to {queue}: {reason}")),
                        false,
                    );
                }
                Err(SendError::Request(e)) => {
                    s.detail("retryable", e.retryable);
                    s.detail("request_failed", true);
                    b.release.push(s.key.clone());
                    s.end(Ending::Failed("replay-failed", e.to_string()), true);
                    if notified {
                        s.quiet();
                    } else {
                        s.detail("records_in_failed_requests", request_failed);
                        notified = true;
                    }
                }
                Err(SendError::Entry(e)) if !e.retryable => {
                    s.detail("replay_error", e.to_string());
                    s.pending = Some((
                        Action::Park {
                            reason: ParkReason::Unreplayable,
                            detail: e.to_string(),
                        },
                        format!("the processing queue refused the replay: {e}"),
                    ));
                }
                Err(SendError::Entry(e)) => {
                    s.detail("retryable", true);
                    b.release.push(s.key.clone());
                    s.end(Ending::Failed("replay-failed", e.to_string()), true);
                }
            }
        }
    }

    /// A parked record is done; one that could not be parked returns to the queue.
    fn settle_parks(
        &self,
        b: &mut Batch<'_>,
        idx: &[usize],
        results: Vec<Result<String, AwsError>>,
    ) {
        let location = self.ports.parking.location();
        for (&i, res) in idx.iter().zip(results) {
            let Some(s) = b.slots.get_mut(i) else {
                continue;
            };
            let (why, reason) = match &s.pending {
                Some((Action::Park { reason: why, .. }, r)) => (*why, r.clone()),
                _ => continue,
            };
            match res {
                Ok(at) => {
                    s.detail("action", "parked");
                    s.detail("park_reason", why.as_str());
                    s.detail("parked_at", &at);
                    b.done.push(Settle {
                        key: s.key.clone(),
                        outcome: "parked".into(),
                        detail: format!("{} at {at}", why.as_str()),
                        at: b.ts,
                        expires_at: b.expires_at,
                    });
                    s.end(
                        Ending::Acted(format!("parked ({}) at {location}: {reason}", why.as_str())),
                        false,
                    );
                }
                Err(e) => {
                    s.detail("retryable", e.retryable);
                    b.release.push(s.key.clone());
                    s.end(Ending::Failed("park-failed", e.to_string()), true);
                }
            }
        }
    }

    /// The parked document for every pending park, with the indices they belong to.
    fn park_docs(&self, b: &Batch<'_>, inv: &Invocation) -> (Vec<usize>, Vec<ParkedDocument>) {
        let cx = ParkContext {
            request_id: &inv.request_id,
            now: b.now,
            processing_queue_url: &self.settings.processing_queue_url,
        };
        b.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.pending {
                Some((Action::Park { reason, detail }, _)) => {
                    Some((i, park::document(s, *reason, detail, &cx)))
                }
                _ => None,
            })
            .unzip()
    }
}

/// The pending replays' messages, with the indices they belong to.
fn pending_replays(b: &Batch<'_>) -> (Vec<usize>, Vec<OutgoingMessage>) {
    b.slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.pending {
            Some((Action::Replay { message, .. }, _)) => Some((i, message.clone())),
            _ => None,
        })
        .unzip()
}
