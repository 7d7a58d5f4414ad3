//! The flow over the ports: one batch of dead-lettered records, step by step.
//!
//! Nothing is written before [`Handler::claim`]: the steps up to it (in `prepare.rs`) check
//! the guardrails, read the facts and decide; the steps from it on (in `act.rs`) claim, send,
//! park and settle. Every problem is a per-record failure with an audit: the record is
//! reported in `batchItemFailures` and returns to the dead-letter queue.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use serde_json::{json, Value};

use selfheal_core::audit::Auditor;
use selfheal_core::episode::{verification_in, VERIFY_KEY};
use selfheal_core::ports::idempotency::IdempotencyLedger;
use selfheal_core::ports::parking::ParkingStore;
use selfheal_core::ports::processed::ProcessedLookup;
use selfheal_core::ports::queues::{is_fifo, Queues};
use selfheal_core::ports::scheduler::FollowUps;
use selfheal_core::{AuditRecord, Common, Function, HandlerError, Invocation, Response};

use crate::batch::{self, Batch, Ending, Finish, Slot};
use crate::settings::Settings;

/// The AWS services this function talks to beyond the shared ones.
#[derive(Clone)]
pub struct Ports {
    /// The processing queue: replays go there, and its tags carry the opt-in.
    pub queues: Arc<dyn Queues>,
    pub parking: Arc<dyn ParkingStore>,
    /// Where a document too large for a parking queue is written whole (S3), when set.
    pub spill: Option<Arc<dyn ParkingStore>>,
    pub ledger: Arc<dyn IdempotencyLedger>,
    /// The loyalty service's processed-transactions table, when there is one.
    pub processed: Option<Arc<dyn ProcessedLookup>>,
    /// Where a batch's verification is scheduled (`None`: no scheduler configured; the
    /// replays are then audited as not followed up).
    pub follow_ups: Option<Arc<dyn FollowUps>>,
}

pub struct Handler {
    pub common: Common,
    pub settings: Settings,
    pub ports: Ports,
    /// Routine outcomes (replays) are logged and measured but not notified: draining a
    /// queue must not send a notice per message. Parks, failures and escalations go through
    /// `common.audit`, which notifies.
    pub(crate) quiet: Auditor,
    /// The processing queue's tags and when they were read (see `prepare.rs`).
    pub(crate) tags: Mutex<Option<(Instant, BTreeMap<String, String>)>>,
}

impl Handler {
    pub fn new(common: Common, settings: Settings, ports: Ports) -> Self {
        Self {
            common,
            settings,
            ports,
            quiet: Auditor::new(None),
            tags: Mutex::new(None),
        }
    }

    /// Handles one batch of dead-lettered records. Never fails as a whole.
    pub async fn handle_batch(&self, msgs: &[SqsMessage], inv: &Invocation) -> Response {
        let source = msgs
            .iter()
            .find_map(|m| m.event_source_arn.clone())
            .unwrap_or_default();
        let trigger = format!("sqs:{}", source.rsplit(':').next().unwrap_or("?"));
        let source_fifo = is_fifo(&source)
            || msgs
                .iter()
                .any(|m| m.attributes.contains_key("MessageGroupId"));
        let slots = Slot::open_all(msgs, |inc| {
            let target = inc
                .transaction_id()
                .map(str::to_string)
                .unwrap_or_else(|| format!("message:{}", inc.message_id));
            self.common
                .audit_for(inv, &trigger, &target)
                .details(json!({
                    "message_id": inc.message_id,
                    "replay_count": inc.replay_count(),
                    "group": inc.group_id,
                }))
        });
        let mut b = Batch::new(slots, Utc::now(), self.settings.record_ttl_seconds);
        self.run_steps(&mut b, inv).await;
        batch::resolve_followers(&mut b.slots);
        if source_fifo {
            batch::hold_back(&mut b.slots);
        }
        self.respond(b.slots, b.extra).await
    }

    /// The steps in order. A step that stops the batch has ended every open record.
    async fn run_steps(&self, b: &mut Batch<'_>, inv: &Invocation) {
        if self.guardrails(b).await.is_break() {
            return;
        }
        let Some(known) = self.read_facts(b).await else {
            return;
        };
        self.decide(b, &known);
        b.hold_back_if_fifo();
        if self.common.guard.dry_run() {
            self.dry_run(b);
            return;
        }
        // Graduated autonomy (issue 17), once per batch: may hold the batch back.
        self.autonomy(b, inv).await;
        b.hold_back_if_fifo();
        b.cap_replays(self.settings.max_per_batch);
        b.hold_back_if_fifo();
        self.claim(b, inv).await;
        b.hold_back_if_fifo();
        self.give_back_if_late(b, inv);
        self.send(b, inv).await;
        self.park_refused(b, inv).await;
        self.notice_once(b, inv).await;
        // The replays' verification: its list goes into the same ledger write.
        let planned = self.plan_follow_up(b, inv);
        let stored = self.record(b).await;
        self.follow_up(b, inv, planned, stored).await;
    }

    /// Writes every record's audit and answers with the records that return to the queue.
    async fn respond(&self, slots: Vec<Slot<'_>>, extra: Vec<AuditRecord>) -> Response {
        let mut response = SqsBatchResponse::default();
        let mut audits = Vec::with_capacity(slots.len());
        for s in slots {
            let finish = s.finish.unwrap_or(Finish {
                // Unreachable by construction; a record nobody finished must not be deleted.
                ending: Ending::Failed("not-handled", "the record was not handled".into()),
                failed: true,
                loud: true,
            });
            let audit = s.audit.detail("reported_failed", finish.failed);
            let rec: AuditRecord = match finish.ending {
                Ending::Acted(r) => audit.acted(r),
                Ending::Skipped(r) => audit.skipped(&r),
                Ending::DryRun(w) => audit.dry_run(w),
                Ending::Failed(code, m) => audit.failed(code, m),
            };
            if finish.loud {
                self.common.audit.record(&rec).await;
            } else {
                self.quiet.record(&rec).await;
            }
            if finish.failed {
                response.add_failure(s.inc.message_id.clone());
            }
            audits.push(rec);
        }
        // Already recorded (notified) where they were made.
        audits.extend(extra);
        Response {
            body: serde_json::to_value(&response)
                .unwrap_or_else(|_| json!({"batchItemFailures": []})),
            audits,
        }
    }
}

impl Function for Handler {
    async fn handle(&self, event: Value, inv: Invocation) -> Result<Response, HandlerError> {
        if let Some(verify) = verification_in(&event) {
            return match verify {
                Ok(v) => Ok(Response::from_audits(self.verify(&v, &inv).await?)),
                Err(why) => Err(self.common.reject(&inv, VERIFY_KEY, why).await),
            };
        }
        let event: SqsEvent = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                return Err(self
                    .common
                    .reject(&inv, "sqs", format!("not an SQS event: {e}"))
                    .await)
            }
        };
        Ok(self.handle_batch(&event.records, &inv).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan;
    use crate::FUNCTION;

    #[test]
    fn every_sample_event_for_this_function_parses() {
        let samples = selfheal_core::samples::for_function(FUNCTION).unwrap();
        let mut seen = 0;
        let mut verifications = 0;
        for (name, v) in samples {
            if let Some(verify) = verification_in(&v) {
                let verify = verify.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(verify.function, FUNCTION, "{name}");
                crate::verify::BatchRef::from_event(verify.alarm_event.as_ref())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                verifications += 1;
                continue;
            }
            let ev: SqsEvent = serde_json::from_value(v).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!ev.records.is_empty(), "{name}");
            let valid = ev
                .records
                .iter()
                .filter(|m| plan::read_record(m).parsed.is_ok())
                .count();
            assert!(valid > 0, "{name}: has a valid transaction");
            seen += 1;
        }
        assert!(
            seen >= 2,
            "expected standard and FIFO samples, found {seen}"
        );
        assert_eq!(verifications, 1, "the sample verification");
    }

    /// Issue 13: structure-aware fuzzing of SQS events and the loyalty transactions in their
    /// bodies (from every sample): never a panic; a record that cannot be read becomes poison
    /// with a one-line reason. `SELFHEAL_FUZZ_CASES` sizes it.
    #[test]
    fn fuzzed_sqs_events_never_panic_and_reject_in_one_line() {
        use selfheal_core::testing::fuzz;
        let seeds: Vec<Value> = selfheal_core::samples::for_function(FUNCTION)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let report = fuzz::run(&seeds, fuzz::cases(), 19, |v| {
            let ev: SqsEvent =
                serde_json::from_value(v.clone()).map_err(|e| format!("not an SQS event: {e}"))?;
            let problems: Vec<String> = ev
                .records
                .iter()
                .filter_map(|m| plan::read_record(m).parsed.err().map(|e| e.to_string()))
                .collect();
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join(" | "))
            }
        });
        fuzz::assert_clean("sqs events", &report);
        assert!(report.accepted > 0 && report.rejected > 0, "{report:?}");
    }
}
