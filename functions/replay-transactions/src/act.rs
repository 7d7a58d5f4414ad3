//! The steps that change things: claim every record about to be acted on (and the hourly
//! budget) in one transaction, send the replays and park what must be parked, then settle
//! the outcomes in the ledger. Every step works on the records still pending.

use std::collections::HashSet;
use std::time::Duration;

use selfheal_core::ports::idempotency::{Claim, ClaimResult, Settle};
use selfheal_core::ports::parking::{ParkedDocument, ParkingLocation};
use selfheal_core::ports::queues::{AttributeValue, OutgoingMessage, SendError};
use selfheal_core::{AwsError, Invocation, SkipCode, SkipReason};

use crate::batch::{Batch, Ending};
use crate::handler::Handler;
use crate::park::{self, ParkContext, Placement};
use crate::plan::{Action, ParkReason, LINEAGE_ATTRIBUTE};
use crate::verify::Replayed;
use crate::FUNCTION;

/// Time that must be left before the deadline to start sending: enough to send and record.
const ACT_RESERVE: Duration = Duration::from_secs(2);

/// Why a document was not parked.
#[derive(Debug, Clone)]
pub(crate) enum ParkFailure {
    /// The parking location (or the spill location) refused or did not answer.
    Aws(AwsError),
    /// Larger than the parking queue takes, and no spill location is set.
    TooBig { bytes: usize, limit: usize },
}

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
    /// Whether the ledger took every write.
    pub(crate) async fn record(&self, b: &mut Batch<'_>) -> bool {
        if b.done.is_empty() && b.release.is_empty() {
            return true;
        }
        let Err(e) = self.ports.ledger.settle(&b.done, &b.release).await else {
            return true;
        };
        tracing::error!(function = FUNCTION, error = %e, "ledger settle failed");
        let settled: HashSet<&String> = b.done.iter().map(|d| &d.key).chain(&b.release).collect();
        for s in b.slots.iter_mut() {
            if settled.contains(&s.key) {
                s.detail("ledger_settle_error", e.to_string());
            }
        }
        false
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

    /// Parks each document: as is when it fits the parking location; a document too large
    /// for the parking queue is first written whole to the spill location and a pointer to it
    /// is parked instead (issue 12 item 2). One result per document, in order.
    async fn park(&self, docs: &[ParkedDocument]) -> Vec<Result<String, ParkFailure>> {
        if docs.is_empty() {
            return Vec::new();
        }
        let limit = self.settings.parking_limit();
        let spill = self.ports.spill.as_ref();
        let mut results: Vec<Option<Result<String, ParkFailure>>> = vec![None; docs.len()];
        // (index, document to park, where the whole document was spilled)
        let mut outgoing: Vec<(usize, ParkedDocument, Option<String>)> = Vec::new();
        let mut to_spill: Vec<usize> = Vec::new();
        for (i, d) in docs.iter().enumerate() {
            match park::placement(d, limit, spill.is_some()) {
                Placement::AsIs => outgoing.push((i, d.clone(), None)),
                Placement::Spill => to_spill.push(i),
                Placement::TooBig { bytes, limit } => {
                    if let Some(r) = results.get_mut(i) {
                        *r = Some(Err(ParkFailure::TooBig { bytes, limit }));
                    }
                }
            }
        }
        if let (Some(spill), false) = (spill, to_spill.is_empty()) {
            let whole: Vec<ParkedDocument> = to_spill
                .iter()
                .filter_map(|&i| docs.get(i).cloned())
                .collect();
            let written = spill.park(&whole).await;
            for ((&i, d), w) in to_spill.iter().zip(&whole).zip(written) {
                match w {
                    Ok(key) => {
                        let uri = self.spill_uri(&key);
                        outgoing.push((i, park::pointer(d, &uri), Some(uri)));
                    }
                    Err(e) => {
                        if let Some(r) = results.get_mut(i) {
                            *r = Some(Err(ParkFailure::Aws(e)));
                        }
                    }
                }
            }
        }
        if !outgoing.is_empty() {
            let batch: Vec<ParkedDocument> = outgoing.iter().map(|(_, d, _)| d.clone()).collect();
            let parked = self.ports.parking.park(&batch).await;
            for ((i, _, spilled), p) in outgoing.into_iter().zip(parked) {
                if let Some(r) = results.get_mut(i) {
                    *r = Some(
                        p.map(|at| match spilled {
                            Some(uri) => format!("{at} (pointer; the whole document is at {uri})"),
                            None => at,
                        })
                        .map_err(ParkFailure::Aws),
                    );
                }
            }
        }
        let location = self.ports.parking.location();
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ParkFailure::Aws(AwsError::new(
                        "park",
                        location.clone(),
                        "the parking location reported nothing for this document",
                    )))
                })
            })
            .collect()
    }

    /// The S3 URI of a spilled document's key.
    fn spill_uri(&self, key: &str) -> String {
        match &self.settings.spill {
            Some(ParkingLocation::S3 { bucket, .. }) => format!("s3://{bucket}/{key}"),
            _ => key.to_string(),
        }
    }

    /// Tells a person once about each record whose document is too large to park: the first
    /// invocation to claim `<function>#notice#too-big#<message id>` in the ledger notifies,
    /// every later redelivery of the record (until the ledger forgets it) is only logged.
    /// When the ledger cannot say, the notice goes out again rather than never.
    pub(crate) async fn notice_once(&self, b: &mut Batch<'_>, inv: &Invocation) {
        let idx = std::mem::take(&mut b.too_big);
        if idx.is_empty() {
            return;
        }
        let claims: Vec<Claim> = idx
            .iter()
            .filter_map(|&i| b.slots.get(i))
            .map(|s| Claim {
                key: format!("{FUNCTION}#notice#too-big#{}", s.inc.message_id),
                owner: inv.request_id.clone(),
                lease_until: b.expires_at,
                expires_at: b.expires_at,
                uses_budget: false,
            })
            .collect();
        match self.ports.ledger.claim(&claims, None, b.ts).await {
            Ok(results) => {
                for (&i, r) in idx.iter().zip(results) {
                    if let (Some(s), false) = (b.slots.get_mut(i), r == ClaimResult::Claimed) {
                        s.detail("notified_before", true);
                        s.quiet();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(function = FUNCTION, error = %e, "could not check whether a too-big record was notified before; notifying");
            }
        }
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
            let (delay, count, reason, lineage, tx) = match &s.pending {
                Some((
                    Action::Replay {
                        message,
                        replay_count,
                        transaction_id,
                    },
                    reason,
                )) => (
                    message.delay_seconds,
                    *replay_count,
                    reason.clone(),
                    match message.attributes.get(LINEAGE_ATTRIBUTE) {
                        Some(AttributeValue::String { value, .. }) => Some(value.clone()),
                        _ => None,
                    },
                    transaction_id.clone(),
                ),
                _ => (None, 0, String::new(), None, String::new()),
            };
            match res {
                Ok(id) => {
                    // A replay without room for its lineage starts its own when it fails
                    // again: its SQS message id.
                    b.replayed.push((
                        i,
                        Replayed {
                            transaction_id: tx,
                            lineage: lineage.unwrap_or_else(|| id.clone()),
                            replay_count: count,
                        },
                        delay.and_then(|d| u32::try_from(d).ok()).unwrap_or(0),
                    ));
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
        results: Vec<Result<String, ParkFailure>>,
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
                Err(ParkFailure::Aws(e)) => {
                    s.detail("retryable", e.retryable);
                    b.release.push(s.key.clone());
                    s.end(Ending::Failed("park-failed", e.to_string()), true);
                }
                Err(ParkFailure::TooBig { bytes, limit }) => {
                    // Not deleted: a record that cannot be parked stays where it is, and a
                    // person is told (once, see `notice_once`).
                    s.detail("park_reason", why.as_str());
                    s.detail("document_bytes", bytes);
                    s.detail("parking_max_bytes", limit);
                    b.release.push(s.key.clone());
                    b.too_big.push(i);
                    s.end(
                        Ending::Failed(
                            "too-big-to-park",
                            format!(
                                "the parked document ({}) is {bytes} bytes, more than the parking queue takes ({limit}, SELFHEAL_REPLAY_PARKING_MAX_BYTES), and no spill location is set (SELFHEAL_REPLAY_SPILL): the record stays in the dead-letter queue; set a spill location, or take it out by hand",
                                why.as_str()
                            ),
                        ),
                        true,
                    );
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
