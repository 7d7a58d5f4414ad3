//! Graduated autonomy (issue 17) for a batch of dead-lettered records.
//!
//! The levels apply to one action, `replay` (draining the dead-letter queue into the
//! processing queue), on one target, the **processing queue** (its `selfheal:autonomy` tag,
//! then `SELFHEAL_AUTONOMY`, then the default `auto`), asked once per batch: a level per record
//! would mean a notice per message.
//!
//! - `auto`: acts as before.
//! - `first-dry-run` (through the shared gate): the first batch within the window is a dry run
//!   with a notice, and its records stay in the dead-letter queue; they come back with the
//!   queue's redelivery, which is a repeat inside the window, and are then handled.
//! - `observe`: nothing is replayed, parked or deleted: every record stays in the
//!   dead-letter queue, reported failed, and is audited as what would be done. The one
//!   exception is a record about to expire (an `expiring` park, or a poison or exhausted record
//!   of that age): SQS's retention would delete it, so it is parked (copied whole, then deleted
//!   from the queue) and notified. Never lose a record comes first.
//! - `approve`: not supported here (see docs/replay-transactions.md): held exactly as
//!   `observe`, and the record says so (`approval-unsupported`, escalated). No link is issued.
//!
//! A held batch is redelivered every visibility timeout for as long as it is held: its notice
//! goes out when one of its records is held for the first time within the autonomy window
//! (`SELFHEAL_AUTONOMY_WINDOW_SECONDS`, a day by default), not on every redelivery.

use serde_json::{json, Value};

use selfheal_core::approval::gate::{audit_detail, Ask, Gated};
use selfheal_core::autonomy::{self, AutonomyDecision, Facts, Level};
use selfheal_core::episode::episode_id;
use selfheal_core::ports::idempotency::{Claim, ClaimResult};
use selfheal_core::Invocation;

use crate::batch::{Batch, Ending};
use crate::follow_up::queue_name;
use crate::handler::Handler;
use crate::plan::{Action, ParkReason};
use crate::FUNCTION;

/// The action the levels apply to.
pub const ACTION: &str = "replay";

/// The level when neither the processing queue's tag nor `SELFHEAL_AUTONOMY` sets one.
pub const DEFAULT_LEVEL: Level = Level::Auto;

/// What holding a batch back still lets through: only what keeps a record from being lost,
/// a park of a record about to expire (`age` seconds in the queues, parked from
/// `park_at_age` on), whatever the park's reason: a poison or exhausted record is parked as
/// such before the age is looked at, and must not expire in the queue either.
pub fn proceeds_when_held(action: &Action, age: Option<i64>, park_at_age: u64) -> bool {
    let expiring = age.is_some_and(|a| a >= i64::try_from(park_at_age).unwrap_or(i64::MAX));
    match action {
        Action::Park {
            reason: ParkReason::Expiring,
            ..
        } => true,
        Action::Park { .. } => expiring,
        Action::Replay { .. } => false,
    }
}

/// The decision for the levels handled here rather than by the shared gate: `observe`, and
/// `approve` (unsupported). `None`: ask the shared gate.
pub fn held_here(level: Level, now: i64, window: i64) -> Option<AutonomyDecision> {
    match level {
        Level::Observe => Some(autonomy::gate(
            level,
            &Facts {
                last_seen: None,
                now,
                window,
                approval: None,
            },
        )),
        Level::Approve => Some(AutonomyDecision::DryRun {
            reason: "autonomy approve is not supported by replay-transactions (an approval per \
                     batch would be asked again on every redelivery, one per transaction would \
                     be a notice per message): held as observe; set the processing queue's \
                     selfheal:autonomy tag or SELFHEAL_AUTONOMY to observe, first-dry-run or auto"
                .into(),
        }),
        Level::FirstDryRun | Level::Auto => None,
    }
}

impl Handler {
    /// The autonomy gate, once per batch, before anything is claimed. A batch held back ends
    /// its records as dry runs (they stay in the dead-letter queue), except the parks that keep
    /// a record from being lost; the batch's record goes into `b.extra`.
    pub(crate) async fn autonomy(&self, b: &mut Batch<'_>, inv: &Invocation) {
        let pending = b.pending();
        let target = queue_name(&self.settings.processing_queue_url).to_string();
        let would = self.would(b, &pending);
        let episode = episode_id(FUNCTION, &target, b.ts);
        let event = json!({"records": b.slots.len(), "pending": pending.len()});
        let tag = b.autonomy_tag.clone();
        let ask = Ask {
            target: &target,
            action: ACTION,
            default: DEFAULT_LEVEL,
            target_tag: tag.as_deref(),
            alarm_tag: None,
            episode: &episode,
            event: &event,
            would: &would,
            approval: None,
        };
        let audit = self
            .common
            .audit_for(inv, &format!("sqs:{}", b.source_name()), &target)
            .detail("records", b.slots.len())
            .detail("pending", pending.len());
        let resolved = self.common.autonomy.resolve(&ask);
        let window = self.common.autonomy.settings.window;
        if let Some(decision) = held_here(resolved.level, b.ts, window) {
            let detail = audit_detail(&resolved, &decision);
            // Held even with nothing to replay or park: deleting a record already handled is
            // a change too. Told only when there is something a person would want done.
            let first = !pending.is_empty() && self.first_held(b, inv, window).await;
            let audit = audit.detail("autonomy", &detail);
            let rec = if resolved.level == Level::Approve {
                audit.detail("escalate", first).checked(
                    "approval-unsupported",
                    format!("{} ({})", would, decision.reason()),
                )
            } else {
                audit
                    .detail("notify", first)
                    .dry_run(format!("{would} ({})", decision.reason()))
            };
            self.hold(b, &detail);
            b.extra.push(self.common.record(rec).await);
            return;
        }
        if pending.is_empty() {
            return;
        }
        match self.common.autonomy_gate(inv, audit, ask).await {
            Gated::Act(audit) => {
                // The builder keeps its details to itself: read them off a record never kept.
                let detail = audit
                    .checked("autonomy", String::new())
                    .details
                    .get("autonomy")
                    .cloned()
                    .unwrap_or(Value::Null);
                for s in b.slots.iter_mut() {
                    s.detail("autonomy", &detail);
                }
            }
            Gated::Held(rec) => {
                let detail = rec.details.get("autonomy").cloned().unwrap_or(Value::Null);
                self.hold(b, &detail);
                b.extra.push(rec);
            }
        }
    }

    /// What the batch would do, for people.
    fn would(&self, b: &Batch<'_>, pending: &[usize]) -> String {
        let replays = pending
            .iter()
            .filter(|&&i| b.slots.get(i).is_some_and(|s| s.replay_pending()))
            .count();
        format!(
            "replay {replays} and park {} of {} record(s) from {} to {}",
            pending.len() - replays,
            b.slots.len(),
            b.source_name(),
            queue_name(&self.settings.processing_queue_url)
        )
    }

    /// Ends every record held back as a dry run (reported failed: it stays in the dead-letter
    /// queue), except the parks that keep a record from being lost; records already decided
    /// (already handled, applied) stay too: deleting them is a change as well.
    fn hold(&self, b: &mut Batch<'_>, detail: &Value) {
        let park_at_age = self.settings.rules().park_at_age_seconds;
        let now = b.ts;
        for s in b.slots.iter_mut() {
            s.detail("autonomy", detail);
            let age = s.inc.sent_at.map(|t| now.saturating_sub(t));
            let proceeds = s
                .pending
                .as_ref()
                .is_some_and(|(a, _)| proceeds_when_held(a, age, park_at_age));
            if proceeds {
                s.detail(
                    "held_back_but_parked",
                    "about to expire: parked so it is not lost",
                );
                continue;
            }
            if let Some((action, reason)) = s.pending.take() {
                let would = match &action {
                    Action::Replay { .. } => {
                        format!("replay to {}: {reason}", self.settings.processing_queue_url)
                    }
                    Action::Park { reason: why, .. } => format!(
                        "park ({}) at {}: {reason}",
                        why.as_str(),
                        self.ports.parking.location()
                    ),
                };
                s.end(Ending::DryRun(would), true);
                s.quiet();
            }
            if let Some(f) = &mut s.finish {
                f.failed = true;
            }
        }
    }

    /// Whether a record of the batch is held for the first time within `window`: one claim
    /// per message (`<function>#notice#held#<message id>`, held for the window). When the
    /// ledger cannot say, yes (a notice again rather than never).
    async fn first_held(&self, b: &Batch<'_>, inv: &Invocation, window: i64) -> bool {
        let until = b.ts + window;
        // One claim per message: a message delivered twice in one batch would otherwise put
        // the same item twice in one transaction, which DynamoDB refuses.
        let ids: std::collections::BTreeSet<&str> =
            b.slots.iter().map(|s| s.inc.message_id.as_str()).collect();
        let claims: Vec<Claim> = ids
            .into_iter()
            .map(|id| Claim {
                key: format!("{FUNCTION}#notice#held#{id}"),
                owner: inv.request_id.clone(),
                lease_until: until,
                expires_at: until,
                uses_budget: false,
            })
            .collect();
        match self.ports.ledger.claim(&claims, None, b.ts).await {
            Ok(results) => results.contains(&ClaimResult::Claimed),
            Err(e) => {
                tracing::warn!(function = FUNCTION, error = %e, "could not tell whether the held records were notified before; notifying");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn only_a_park_of_a_record_about_to_expire_goes_ahead_when_held() {
        let park = |reason| Action::Park {
            reason,
            detail: String::new(),
        };
        assert!(proceeds_when_held(&park(ParkReason::Expiring), None, 100));
        for r in [
            ParkReason::Poison,
            ParkReason::Exhausted,
            ParkReason::Unreplayable,
        ] {
            assert!(!proceeds_when_held(&park(r), Some(99), 100), "{r:?}");
            assert!(!proceeds_when_held(&park(r), None, 100), "{r:?}");
            assert!(proceeds_when_held(&park(r), Some(100), 100), "{r:?}");
        }
        let replay = Action::Replay {
            transaction_id: "tx-1".into(),
            replay_count: 1,
            message: selfheal_core::ports::queues::OutgoingMessage {
                body: "{}".into(),
                attributes: Default::default(),
                delay_seconds: None,
                group_id: None,
                deduplication_id: None,
            },
        };
        assert!(!proceeds_when_held(&replay, Some(10_000), 100));
    }

    #[test]
    fn observe_and_approve_are_held_here_the_others_go_to_the_gate() {
        let now = Utc::now().timestamp();
        assert!(matches!(
            held_here(Level::Observe, now, 60),
            Some(AutonomyDecision::DryRun { .. })
        ));
        match held_here(Level::Approve, now, 60) {
            Some(AutonomyDecision::DryRun { reason }) => {
                assert!(reason.contains("not supported"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(held_here(Level::FirstDryRun, now, 60), None);
        assert_eq!(held_here(Level::Auto, now, 60), None);
    }
}
