//! The steps before anything is written: the guardrails that hold for the whole batch, the
//! facts (ledger, processed-transactions table), the decision per record, and the dry run.
//! A record that is not handled is reported failed, so it stays in the dead-letter queue:
//! nothing is deleted unhandled.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use selfheal_core::ports::idempotency::State;
use selfheal_core::{AwsError, Decision, SkipCode, SkipReason};

use crate::batch::{Batch, Ending};
use crate::handler::Handler;
use crate::plan::{self, Action, Facts};

/// How long the processing queue's tags (the opt-in) are cached.
const TAG_CACHE: Duration = Duration::from_secs(60);

/// What the ports know about the batch's records.
pub struct Known {
    /// Ledger state per key.
    pub ledger: HashMap<String, State>,
    /// Transaction ids the loyalty service has already applied.
    pub applied: HashSet<String>,
}

impl Known {
    fn done(&self, key: &str) -> bool {
        matches!(self.ledger.get(key), Some(State::Done { .. }))
    }
}

impl Handler {
    /// Kill switch, window and opt-in: they hold for the whole batch.
    pub(crate) async fn guardrails(&self, b: &mut Batch<'_>) -> ControlFlow<()> {
        let guard = &self.common.guard;
        if let Some(reason) = guard.preflight(b.now).await {
            b.end_open(|| Ending::Skipped(reason.clone()), true);
            return ControlFlow::Break(());
        }
        match self.opted_in(b).await {
            Ok(true) => ControlFlow::Continue(()),
            Ok(false) => {
                let reason = SkipReason::new(
                    SkipCode::NotOptedIn,
                    format!(
                        "processing queue {} does not carry the opt-in tag {}",
                        self.settings.processing_queue_url,
                        guard.policy().opt_in
                    ),
                );
                b.end_open(|| Ending::Skipped(reason.clone()), true);
                ControlFlow::Break(())
            }
            Err(e) => {
                b.end_open(|| Ending::Failed("tags-failed", e.to_string()), true);
                ControlFlow::Break(())
            }
        }
    }

    /// Whether the processing queue carries the opt-in tag (cached for a minute); its
    /// autonomy tag goes to the batch (the target of the autonomy gate, see `gate.rs`).
    async fn opted_in(&self, b: &mut Batch<'_>) -> Result<bool, AwsError> {
        let cached = self
            .tags
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .filter(|(at, _)| at.elapsed() < TAG_CACHE)
            .map(|(_, t)| t);
        let tags = match cached {
            Some(t) => t,
            None => {
                let t = self
                    .ports
                    .queues
                    .tags(&self.settings.processing_queue_url)
                    .await?;
                if let Ok(mut c) = self.tags.lock() {
                    *c = Some((Instant::now(), t.clone()));
                }
                t
            }
        };
        b.autonomy_tag = tags.get(selfheal_core::autonomy::TAG).cloned();
        Ok(self
            .common
            .guard
            .policy()
            .opt_in
            .matches(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }

    /// The ledger, then the processed-transactions table for what the ledger does not have
    /// as done. `None` when the ledger cannot be read (every open record has ended).
    pub(crate) async fn read_facts(&self, b: &mut Batch<'_>) -> Option<Known> {
        let keys: Vec<String> = b
            .slots
            .iter()
            .filter(|s| s.open())
            .map(|s| s.key.clone())
            .collect();
        let ledger = match self.ports.ledger.entries(&keys).await {
            Ok(l) => l,
            Err(e) => {
                b.end_open(|| Ending::Failed("ledger-read-failed", e.to_string()), true);
                return None;
            }
        };
        let mut known = Known {
            ledger,
            applied: HashSet::new(),
        };
        let candidates: Vec<String> = b
            .slots
            .iter()
            .filter(|s| s.open() && !known.done(&s.key))
            .filter_map(|s| {
                s.inc
                    .parsed
                    .as_ref()
                    .ok()
                    .map(|(t, _)| t.transaction_id.clone())
            })
            .collect();
        let Some(processed) = self.ports.processed.as_ref() else {
            return Some(known);
        };
        if candidates.is_empty() {
            return Some(known);
        }
        match processed.applied(&candidates).await {
            Ok(a) => known.applied = a,
            Err(e) => {
                // Without the lookup a replay could credit twice: those records wait.
                for s in b.slots.iter_mut().filter(|s| s.open()) {
                    if s.inc.parsed.is_ok() && !known.done(&s.key) {
                        s.end(
                            Ending::Failed("processed-lookup-failed", e.to_string()),
                            true,
                        );
                    }
                }
            }
        }
        Some(known)
    }

    /// The pure decision, record by record: skipped records end here, the others wait for
    /// their action.
    pub(crate) fn decide(&self, b: &mut Batch<'_>, known: &Known) {
        let rules = self.settings.rules();
        let now = b.ts;
        for s in b.slots.iter_mut().filter(|s| s.open()) {
            let facts = Facts {
                ledger: known.ledger.get(&s.key).cloned(),
                applied: s
                    .inc
                    .transaction_id()
                    .is_some_and(|t| s.inc.parsed.is_ok() && known.applied.contains(t)),
                now,
            };
            match plan::decide(&s.inc, &facts, &rules) {
                Decision::Skip { reason } => {
                    // A record someone else is handling goes back to the queue; one already
                    // handled or applied is done.
                    let failed = reason.code == SkipCode::ChangeInProgress;
                    s.end(Ending::Skipped(reason), failed);
                }
                Decision::Act { action, reason } => s.pending = Some((action, reason)),
            }
        }
    }

    /// Records what would be done. Deleting a message from the dead-letter queue is a
    /// change, so every record, finished or not, is reported failed and stays.
    pub(crate) fn dry_run(&self, b: &mut Batch<'_>) {
        for s in b.slots.iter_mut() {
            if let Some((action, reason)) = s.pending.take() {
                let would = match &action {
                    Action::Replay { message, .. } => {
                        s.detail("delay_seconds", message.delay_seconds);
                        format!("replay to {}: {reason}", self.settings.processing_queue_url)
                    }
                    Action::Park { reason: why, .. } => format!(
                        "park ({}) at {}: {reason}",
                        why.as_str(),
                        self.ports.parking.location()
                    ),
                };
                s.end(Ending::DryRun(would), true);
            }
            if let Some(f) = &mut s.finish {
                f.failed = true;
            }
        }
    }
}
