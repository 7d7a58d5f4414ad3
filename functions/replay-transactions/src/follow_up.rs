//! The closed loop of replay-transactions (issue 14): a batch that replayed transactions
//! schedules one verification, which looks for them in the processed-transactions table.
//!
//! After the batch: the list of replayed transactions goes to the ledger in the batch's own
//! settle call, then one follow-up (EventBridge Scheduler in production) is scheduled for
//! `SELFHEAL_REPLAY_VERIFY_AFTER_SECONDS` past the longest replay delay of the batch. It never
//! blocks the replays: they are sent and recorded before; a follow-up that cannot be
//! scheduled is audited and a person told. Without a processed-transactions table there is
//! nothing to verify against: no follow-up, and the records say so.
//!
//! The verification: admitted only for an action the ledger knows (else refused, audited);
//! reads the list, looks the transactions up in the processed table (`BatchGetItem`), and for
//! those not applied whether they came back to the dead-letter queue (the ledger); then
//! decides (`verify::check`): healed (with the time to heal), handed on, not applied yet
//! (looked at again, up to `SELFHEAL_REPLAY_VERIFY_MAX_CHECKS` looks), or escalated once with
//! the transaction ids still not applied.

use std::collections::HashSet;

use chrono::Utc;
use serde_json::Value;

use selfheal_core::episode::{
    action_id, episode_id, follow_up, FollowUpNote, Verify, VERIFY_VERSION,
};
use selfheal_core::ports::idempotency::{Settle, State};
use selfheal_core::{AuditBuilder, AuditRecord, HandlerError, Heal, Invocation};

use crate::batch::Batch;
use crate::handler::Handler;
use crate::verify::{self, check, list_key, shown, BatchRef, Check, Replayed};
use crate::FUNCTION;

/// What becomes of a batch's replays' verification, decided before the ledger write.
pub(crate) enum Planned {
    /// Nothing was replayed.
    Nothing,
    /// Replayed, but not followed up (the note says why).
    NotScheduled(Verify, String),
    /// The list is in this batch's ledger write; schedule `Verify` at `at` once it is stored.
    Schedule(Verify, i64),
}

/// The processing queue's name: the target of a batch's replays.
pub(crate) fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

fn escalated(audit: AuditBuilder, code: &str, why: String) -> AuditRecord {
    audit
        .detail("escalate", true)
        .heal(Heal::Escalated, None)
        .checked(code, why)
}

impl Handler {
    /// Plans the verification of the replays sent so far; when one will be scheduled, puts
    /// the list into the batch's ledger write (`b.done`).
    pub(crate) fn plan_follow_up(&self, b: &mut Batch<'_>, inv: &Invocation) -> Planned {
        if b.replayed.is_empty() {
            return Planned::Nothing;
        }
        let list: Vec<Replayed> = b.replayed.iter().map(|(_, r, _)| r.clone()).collect();
        let target = queue_name(&self.settings.processing_queue_url).to_string();
        let dlq = b.source_name();
        let batch = BatchRef::of(&list);
        let v = Verify {
            version: VERIFY_VERSION,
            function: FUNCTION.into(),
            action_id: action_id(FUNCTION, &target, b.ts, &inv.request_id),
            // The episode starts with the replay: time to heal is replay → applied.
            episode_id: episode_id(FUNCTION, &target, b.ts),
            target,
            alarm_name: dlq,
            acted_at: b.ts,
            episode_started_at: b.ts,
            attempt: 1,
            step: None,
            rung: None,
            phase: None,
            alarm_event: Some(batch.to_event()),
        };
        if self.ports.processed.is_none() {
            return Planned::NotScheduled(
                v,
                "no processed-transactions table is configured (SELFHEAL_REPLAY_PROCESSED_TABLE): \
                 nothing to verify the replays against"
                    .into(),
            );
        }
        if self.ports.follow_ups.is_none() {
            return Planned::NotScheduled(v, "no scheduler configured".into());
        }
        let longest_delay = b.replayed.iter().map(|(_, _, d)| *d).max().unwrap_or(0);
        let at = b.ts + i64::from(longest_delay) + self.verify_after();
        // Kept a day past the first look: every later look comes within it (settings).
        let expires_at = at + 86_400;
        for (chunk, detail) in verify::encode(&list).into_iter().enumerate() {
            b.done.push(Settle {
                key: list_key(&v.action_id, chunk),
                outcome: verify::LIST_OUTCOME.into(),
                detail,
                at: b.ts,
                expires_at,
            });
        }
        Planned::Schedule(v, at)
    }

    /// Schedules the planned verification (the list is stored when `stored`), and notes on
    /// every replayed record its action, episode and how the follow-up went. A follow-up that
    /// failed adds one record for the batch, notified.
    pub(crate) async fn follow_up(
        &self,
        b: &mut Batch<'_>,
        inv: &Invocation,
        planned: Planned,
        stored: bool,
    ) {
        let (v, note) = match planned {
            Planned::Nothing => return,
            Planned::NotScheduled(v, reason) => (v, FollowUpNote::NotScheduled { reason }),
            Planned::Schedule(v, _) if !stored => {
                let note = FollowUpNote::Failed {
                    name: v.follow_up_name(),
                    error: "the list of replayed transactions could not be stored in the ledger"
                        .into(),
                };
                (v, note)
            }
            Planned::Schedule(v, at) => {
                let note = follow_up(
                    self.common.guard.ledger().as_ref(),
                    self.ports.follow_ups.as_deref(),
                    &v,
                    at,
                )
                .await;
                (v, note)
            }
        };
        for &(i, _, _) in &b.replayed {
            if let Some(s) = b.slots.get_mut(i) {
                s.audit = s.audit.clone().action(&v.action_id, &v.episode_id);
                s.detail("follow_up", &note);
            }
        }
        if !note.failed() {
            return;
        }
        let replayed = b.replayed.len();
        let batch = self
            .common
            .audit_for(inv, &format!("sqs:{}", v.alarm_name), &v.target)
            .action(&v.action_id, &v.episode_id)
            .detail("follow_up", &note)
            .detail("replayed", replayed)
            .acted(format!(
                "replayed {replayed} transaction(s) to {}",
                v.target
            ));
        if let Some(rec) = self.common.follow_up_failure(&batch, inv).await {
            b.extra.push(rec);
        }
    }

    fn verify_after(&self) -> i64 {
        i64::try_from(self.settings.verify_after_seconds).unwrap_or(i64::MAX)
    }

    /// Handles one verification of a batch's replays.
    pub(crate) async fn verify(
        &self,
        v: &Verify,
        inv: &Invocation,
    ) -> Result<Vec<AuditRecord>, HandlerError> {
        let c = &self.common;
        let audit = match c
            .admit_verification(inv, v, self.ports.follow_ups.as_deref())
            .await
        {
            Ok(audit) => audit,
            Err(done) => return done.map(|r| vec![r]),
        };
        let rec = match self.look(v, audit).await {
            Ok(rec) => rec,
            Err((audit, code, e)) => {
                return c
                    .fail(audit, code, e.to_string(), e.retryable)
                    .await
                    .map(|r| vec![r])
            }
        };
        let rec = c.record(rec).await;
        let failure = c.follow_up_failure(&rec, inv).await;
        Ok(std::iter::once(rec).chain(failure).collect())
    }

    /// The verification's record; or a read that failed (retried: Lambda, then Scheduler,
    /// deliver the event again).
    async fn look(
        &self,
        v: &Verify,
        audit: AuditBuilder,
    ) -> Result<AuditRecord, (AuditBuilder, &'static str, selfheal_core::AwsError)> {
        let batch = match BatchRef::from_event(v.alarm_event.as_ref()) {
            Ok(b) => b,
            Err(why) => {
                let why = format!(
                    "{why}: which transactions to look for cannot be told; a person must look"
                );
                return Ok(escalated(audit, "escalated", why));
            }
        };
        let audit = audit.detail("transactions", batch.transactions);
        let Some(processed) = self.ports.processed.as_ref() else {
            let why = format!(
                "no processed-transactions table is configured now \
                 (SELFHEAL_REPLAY_PROCESSED_TABLE): whether the {} replayed transaction(s) \
                 were applied cannot be told; a person must look",
                batch.transactions
            );
            return Ok(escalated(audit, "escalated", why));
        };
        let list = match self.list(v, batch).await {
            Ok(Ok(list)) => list,
            Ok(Err(why)) => return Ok(escalated(audit, "escalated", why)),
            Err(e) => return Err((audit, "ledger-read-failed", e)),
        };
        let ids: Vec<String> = list.iter().map(|r| r.transaction_id.clone()).collect();
        let applied = match processed.applied(&ids).await {
            Ok(a) => a,
            Err(e) => return Err((audit, "processed-lookup-failed", e)),
        };
        let returned = self.returned(&list, &applied).await;
        let decided = check(
            &list,
            &applied,
            &returned,
            v.attempt,
            self.settings.verify_max_checks,
        );
        Ok(self.conclude(v, audit, list.len(), decided).await)
    }

    /// The batch's list from the ledger; `Ok(Err)` when it is not there as it should be.
    async fn list(
        &self,
        v: &Verify,
        batch: BatchRef,
    ) -> Result<Result<Vec<Replayed>, String>, selfheal_core::AwsError> {
        let keys: Vec<String> = (0..batch.chunks)
            .map(|i| list_key(&v.action_id, i))
            .collect();
        let entries = self.ports.ledger.entries(&keys).await?;
        let mut list = Vec::with_capacity(batch.transactions);
        for key in &keys {
            let item = match entries.get(key) {
                Some(State::Done {
                    outcome, detail, ..
                }) if outcome == verify::LIST_OUTCOME => verify::decode(detail),
                _ => Err(format!("ledger item {key} is missing")),
            };
            match item {
                Ok(mut part) => list.append(&mut part),
                Err(why) => {
                    return Ok(Err(format!(
                        "the list of the {} replayed transaction(s) cannot be read ({why}): \
                         whether they were applied cannot be told; a person must look",
                        batch.transactions
                    )))
                }
            }
        }
        if list.len() != batch.transactions {
            return Ok(Err(format!(
                "the ledger lists {} replayed transaction(s), the verification {}: a person \
                 must look",
                list.len(),
                batch.transactions
            )));
        }
        Ok(Ok(list))
    }

    /// The return keys, of the replays not applied, that the ledger holds: those came back
    /// to the dead-letter queue and were handled again. When the ledger cannot say, none
    /// (they count as not applied: a person hears of them rather than never).
    async fn returned(&self, list: &[Replayed], applied: &HashSet<String>) -> HashSet<String> {
        let keys: Vec<String> = list
            .iter()
            .filter(|r| !applied.contains(&r.transaction_id))
            .map(Replayed::return_key)
            .collect();
        if keys.is_empty() {
            return HashSet::new();
        }
        match self.ports.ledger.entries(&keys).await {
            Ok(found) => found.into_keys().collect(),
            Err(e) => {
                tracing::warn!(function = FUNCTION, error = %e, "could not tell whether the replays not applied came back; counted as not applied");
                HashSet::new()
            }
        }
    }

    /// The record of what the verification found; a further look scheduled when not yet.
    async fn conclude(
        &self,
        v: &Verify,
        audit: AuditBuilder,
        n: usize,
        decided: Check,
    ) -> AuditRecord {
        let now = Utc::now();
        let listed = |audit: AuditBuilder, key: &str, ids: &[String]| {
            audit
                .detail(key, shown(ids))
                .detail(&format!("{key}_count"), ids.len())
        };
        match decided {
            Check::Healed => {
                let ms = v.time_to_heal_ms(now.timestamp_millis());
                audit.heal(Heal::Healed, Some(ms)).checked(
                    "healed",
                    format!(
                        "all {n} replayed transaction(s) are in the processed-transactions \
                         table, {} s after the replay (look {})",
                        ms / 1000,
                        v.attempt
                    ),
                )
            }
            Check::HandedOn { handed_on } => listed(audit, "handed_on", &handed_on)
                .heal(Heal::NotHealed, None)
                .checked(
                    "handed-on",
                    format!(
                        "{} of {n} replayed transaction(s) are applied; the other {} failed \
                         again and came back to the dead-letter queue, where they were handled \
                         again (replayed with their own verification, or parked): nothing more \
                         to look at here",
                        n - handed_on.len(),
                        handed_on.len()
                    ),
                ),
            Check::NotYet { missing } => {
                let missing_len = missing.len();
                let mut rec = listed(audit, "missing", &missing)
                    .heal(Heal::NotHealed, None)
                    .checked(
                        "not-applied-yet",
                        format!(
                            "{} of {n} replayed transaction(s) are not in the \
                             processed-transactions table yet (look {} of {}): looked at again \
                             later",
                            missing.len(),
                            v.attempt,
                            self.settings.verify_max_checks
                        ),
                    );
                let next = Verify {
                    attempt: v.attempt + 1,
                    ..v.clone()
                };
                let at = now.timestamp() + self.verify_after();
                let note = follow_up(
                    self.common.guard.ledger().as_ref(),
                    self.ports.follow_ups.as_deref(),
                    &next,
                    at,
                )
                .await;
                // Not scheduled, for whatever reason: nothing would look again, so a person
                // hears of them now (a failure also gets its `follow-up-failed` record).
                let again = matches!(note, FollowUpNote::Scheduled { .. });
                if let Value::Object(m) = &mut rec.details {
                    m.insert(
                        "follow_up".into(),
                        serde_json::to_value(&note).unwrap_or(Value::Null),
                    );
                    if !again {
                        m.insert("escalate".into(), Value::Bool(true));
                    }
                }
                if !again {
                    rec.outcome = Some(Heal::Escalated);
                    rec.reason = format!(
                        "{} of {n} replayed transaction(s) are not in the processed-transactions \
                         table yet (look {}), and no further look could be scheduled: a person \
                         must look",
                        missing_len, v.attempt
                    );
                }
                rec
            }
            Check::Escalate { missing } => {
                let more = if missing.len() > verify::IDS_IN_A_RECORD {
                    format!(
                        " (the first {} are listed; all are in the ledger under {}#*)",
                        verify::IDS_IN_A_RECORD,
                        list_key(&v.action_id, 0).trim_end_matches("#0")
                    )
                } else {
                    String::new()
                };
                let why = format!(
                    "{} of {n} replayed transaction(s) are still not in the \
                     processed-transactions table after {} look(s), {} s after the replay, \
                     and did not come back to the dead-letter queue: a person must look{more}",
                    missing.len(),
                    v.attempt,
                    now.timestamp() - v.acted_at
                );
                escalated(listed(audit, "missing", &missing), "not-applied", why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::queue_name;

    #[test]
    fn the_target_is_the_processing_queues_name() {
        assert_eq!(
            queue_name("https://sqs.eu-west-1.amazonaws.com/1/loyalty"),
            "loyalty"
        );
        assert_eq!(queue_name("http://localhost:5000/1/q.fifo/"), "q.fifo");
    }
}
