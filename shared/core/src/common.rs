//! What every function shares besides its own ports: its name, the guardrails and the
//! auditor; and the one guarded sequence every action goes through
//! ([`Common::act_guarded`]: check → reserve → act → record).

use std::future::Future;

use chrono::Utc;
use serde_json::Value;

use crate::alarm::{parse_alarms, Alarm};
use crate::audit::{AuditBuilder, AuditRecord, Auditor, Outcome};
use crate::episode::{known, Verify, VERIFY_KEY};
use crate::guard::{Guardrails, Target, Verdict};
use crate::invocation::{HandlerError, Invocation};
use crate::ports::scheduler::FollowUps;

/// What every function needs besides its own AWS ports.
pub struct Common {
    pub function: &'static str,
    pub guard: Guardrails,
    pub audit: Auditor,
}

/// An action the guardrails must allow before it is taken.
pub struct Guarded<'a, T> {
    /// The target and its tags (for the opt-in check and the ledger key).
    pub target: Target<'a, T>,
    /// What would be done, for the dry-run record ("reboot i-1: alarm ...").
    pub would: String,
    /// Mark records of a refusal (dry run, skip) as worth a person's attention: the problem
    /// stays even though nothing is done about it.
    pub escalate_refusal: bool,
}

/// A failed audited step: the record written, and whether a retry (by Lambda, or by the
/// caller) may fix it.
#[derive(Debug, Clone)]
pub struct Failed {
    pub record: AuditRecord,
    pub retryable: bool,
}

impl Failed {
    /// For a handler: a retryable failure goes back to Lambda as an error (it retries); any
    /// other is a successful, audited outcome.
    pub fn into_handler_result(self) -> Result<AuditRecord, HandlerError> {
        if self.retryable {
            Err(HandlerError::Retryable(self.record.reason))
        } else {
            Ok(self.record)
        }
    }
}

impl Common {
    /// Starts an audit record for this function.
    pub fn audit_for(&self, inv: &Invocation, trigger: &str, target: &str) -> AuditBuilder {
        AuditRecord::builder(self.function, &inv.request_id, trigger, target)
    }

    /// Logs, measures and notifies one record, and hands it back.
    pub async fn record(&self, rec: AuditRecord) -> AuditRecord {
        self.audit.record(&rec).await;
        rec
    }

    /// Audits a failure; hands it back to Lambda as an error when a retry can fix it (the
    /// record says which).
    pub async fn fail(
        &self,
        audit: AuditBuilder,
        code: &str,
        msg: String,
        retryable: bool,
    ) -> Result<AuditRecord, HandlerError> {
        self.failed(audit, code, msg, retryable)
            .await
            .into_handler_result()
    }

    /// Audits a failure and says whether a retry may fix it.
    pub async fn failed(
        &self,
        audit: AuditBuilder,
        code: &str,
        msg: String,
        retryable: bool,
    ) -> Failed {
        let record = self
            .record(audit.detail("retryable", retryable).failed(code, msg))
            .await;
        Failed { record, retryable }
    }

    /// Records an event this function cannot read, and returns the error to hand back.
    pub async fn reject(&self, inv: &Invocation, trigger: &str, detail: String) -> HandlerError {
        let rec = self
            .audit_for(inv, trigger, "-")
            .failed("malformed-event", detail.clone());
        self.audit.record(&rec).await;
        HandlerError::Malformed(detail)
    }

    /// Reads every alarm in an event (an SNS event may carry several). An event that is not an
    /// alarm is recorded as a failure and rejected.
    pub async fn alarms_or_reject(
        &self,
        event: &Value,
        inv: &Invocation,
    ) -> Result<Vec<Alarm>, HandlerError> {
        match parse_alarms(event) {
            Ok(a) => Ok(a),
            Err(e) => Err(self.reject(inv, "alarm", e.to_string()).await),
        }
    }

    /// Admits a verification (closed loop): checks that the ledger knows the action it
    /// verifies, then deletes its schedule (Scheduler deletes a one-time schedule after it ran;
    /// one run by hand, or a retry, finds it gone). The audit to go on with; or, for an action
    /// the ledger does not know, the refusal (audited and notified, nothing done), or the
    /// failure to read the ledger (retryable).
    pub async fn admit_verification(
        &self,
        inv: &Invocation,
        v: &Verify,
        follow_ups: Option<&dyn FollowUps>,
    ) -> Result<AuditBuilder, Result<AuditRecord, HandlerError>> {
        let audit = self
            .audit_for(inv, VERIFY_KEY, &v.target)
            .action(&v.action_id, &v.episode_id)
            .detail(
                "verification",
                serde_json::json!({"alarm": v.alarm_name, "attempt": v.attempt,
                    "step": v.step, "rung": v.rung, "acted_at": v.acted_at,
                    "episode_started_at": v.episode_started_at}),
            );
        match known(self.guard.ledger().as_ref(), self.function, v).await {
            Ok(true) => {
                // Only once admitted: a forged verification must not remove a real one.
                if let Some(f) = follow_ups {
                    if let Err(e) = f.delete(&v.follow_up_name()).await {
                        tracing::warn!(function = self.function, target = %v.target, error = %e, "could not delete the follow-up's schedule");
                    }
                }
                Ok(audit)
            }
            Ok(false) => {
                let why = format!(
                    "verification of action {} on {} (episode {}): the ledger knows no such \
                     action; refused, nothing done",
                    v.action_id, v.target, v.episode_id
                );
                let rec = audit.detail("escalate", true).failed("unknown-action", why);
                Err(Ok(self.record(rec).await))
            }
            Err(e) => Err(self.fail(audit, "ledger-failed", e, true).await),
        }
    }

    /// A person must hear when an action will not be verified: the record's follow-up
    /// (`details.follow_up`) failed. The failure record, when it did.
    pub async fn follow_up_failure(
        &self,
        rec: &AuditRecord,
        inv: &Invocation,
    ) -> Option<AuditRecord> {
        let note = rec.details.get("follow_up")?;
        if note.get("status").and_then(Value::as_str) != Some("failed") {
            return None;
        }
        let error = note
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let mut audit = self
            .audit_for(inv, VERIFY_KEY, &rec.target)
            .detail("follow_up", note)
            .detail("escalate", true);
        if let (Some(a), Some(e)) = (&rec.action_id, &rec.episode_id) {
            audit = audit.action(a, e);
        }
        let what = if rec.decision == Outcome::Acted {
            "acted on"
        } else {
            "checked"
        };
        let why = format!(
            "{what} {}, but its verification could not be scheduled ({error}): nothing will \
             check it; a person must look",
            rec.target
        );
        Some(self.record(audit.failed("follow-up-failed", why)).await)
    }

    /// The one way an action is taken: the guardrails check (and, when they allow it,
    /// reserve) the target; a refusal or a dry run is recorded as such; otherwise `act` runs
    /// and the record it returns (acted or failed, with what it learned) is recorded. A ledger
    /// that cannot be read or written is a failure, retryable when the ledger's error is.
    ///
    /// An action that failed without changing anything (a record built with
    /// [`AuditBuilder::action_failed`]) releases its reservation, so the cooldown does not
    /// block a retry while the attempt still counts toward the cap, and comes back as
    /// `Err(Failed)`, retryable when the AWS error was: Lambda then retries the event, and a
    /// fix that keeps failing reaches a person at the cap.
    pub async fn act_guarded<'a, T, F, Fut>(
        &self,
        audit: AuditBuilder,
        action: Guarded<'a, T>,
        act: F,
    ) -> Result<AuditRecord, Failed>
    where
        T: IntoIterator<Item = (&'a str, &'a str)>,
        F: FnOnce(AuditBuilder) -> Fut,
        Fut: Future<Output = AuditRecord>,
    {
        let (verdict, reservation) = match self
            .guard
            .check_and_reserve(action.target, Utc::now())
            .await
        {
            Ok(v) => v,
            Err(e) => {
                return Err(self
                    .failed(audit, "ledger-failed", e.to_string(), e.retryable())
                    .await)
            }
        };
        let refusal = if action.escalate_refusal {
            audit.clone().detail("escalate", true)
        } else {
            audit.clone()
        };
        if let Some(rec) = refusal.from_verdict(&verdict, action.would) {
            return Ok(self.record(rec).await);
        }
        debug_assert_eq!(verdict, Verdict::Act);
        let rec = act(audit).await;
        if rec.decision == Outcome::Skipped {
            // The action stood down (a re-check right before acting said no): nothing was
            // done, so nothing stays reserved.
            if let Some(r) = &reservation {
                if let Err(e) = self.guard.release_unused(r).await {
                    tracing::error!(function = self.function, target = %rec.target, error = %e, "could not release the reservation of an action that stood down");
                }
            }
            return Ok(self.record(rec).await);
        }
        if !rec.action_failed() {
            return Ok(self.record(rec).await);
        }
        let released = match &reservation {
            Some(r) => match self.guard.release_failed(r).await {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(function = self.function, target = %rec.target, error = %e, "could not release the reservation of a failed action; its cooldown stands");
                    false
                }
            },
            None => false,
        };
        let retryable = rec.details.get("retryable") == Some(&Value::Bool(true));
        let mut rec = rec;
        if let Value::Object(m) = &mut rec.details {
            m.insert("reservation_released".into(), Value::Bool(released));
        }
        Err(Failed {
            record: self.record(rec).await,
            retryable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::SkipCode;
    use crate::testing;

    const TAGGED: [(&str, &str); 1] = [("selfheal:managed", "true")];

    fn guarded(would: &str) -> Guarded<'static, [(&'static str, &'static str); 1]> {
        Guarded {
            target: Target {
                id: "t-1",
                tags: TAGGED,
            },
            would: would.into(),
            escalate_refusal: false,
        }
    }

    #[tokio::test]
    async fn acts_once_then_cooldown_refuses_without_acting() {
        let (c, _) = testing::common("fn", &[]);
        let inv = Invocation::local(std::time::Duration::from_secs(5));
        let mut acted = 0;
        let first = c
            .act_guarded(c.audit_for(&inv, "t", "t-1"), guarded("x"), |a| {
                acted += 1;
                async move { a.acted("done") }
            })
            .await
            .unwrap();
        assert_eq!(first.decision, Outcome::Acted);
        let second = c
            .act_guarded(c.audit_for(&inv, "t", "t-1"), guarded("x"), |a| {
                acted += 1;
                async move { a.acted("done") }
            })
            .await
            .unwrap();
        assert_eq!(second.code, SkipCode::Cooldown.as_str());
        assert_eq!(acted, 1);
    }

    #[tokio::test]
    async fn dry_run_records_what_would_be_done() {
        let (c, _) = testing::common("fn", &[("SELFHEAL_DRY_RUN", "true")]);
        let inv = Invocation::local(std::time::Duration::from_secs(5));
        let mut g = guarded("reboot t-1");
        g.escalate_refusal = true;
        let rec = c
            .act_guarded(c.audit_for(&inv, "t", "t-1"), g, |_| async {
                unreachable!("dry run never acts")
            })
            .await
            .unwrap();
        assert_eq!(rec.decision, Outcome::DryRun);
        assert!(rec.reason.contains("reboot t-1"));
        assert_eq!(rec.details["escalate"], true);
    }

    /// Issue 13, item 7: an action that still fails after the SDK's retries used to keep its
    /// reservation: recorded, not retried, and the cooldown refused the next try, while the
    /// alarm (still in ALARM) never fires again. Now it is released, handed back for a retry,
    /// and counts toward the cap.
    #[tokio::test]
    async fn a_failed_action_is_released_retried_and_counts_toward_the_cap() {
        let (c, _) = testing::common("fn", &[("SELFHEAL_TARGET_CAP", "2")]);
        let inv = Invocation::local(std::time::Duration::from_secs(5));
        let throttled = |a: AuditBuilder| async move {
            a.detail("action_failed", true)
                .detail("retryable", true)
                .failed("x-failed", "throttled")
        };
        let first = c
            .act_guarded(c.audit_for(&inv, "t", "t-1"), guarded("x"), throttled)
            .await;
        let first = first.expect_err("a failed action is handed back");
        assert!(first.retryable, "throttling is worth a retry");
        let second = c
            .act_guarded(c.audit_for(&inv, "t", "t-1"), guarded("x"), throttled)
            .await;
        assert!(second.is_err(), "the retry was not refused by the cooldown");
        let third = c
            .act_guarded(c.audit_for(&inv, "t", "t-1"), guarded("x"), |a| async {
                a.acted("done")
            })
            .await
            .unwrap();
        assert_eq!(third.code, SkipCode::TargetCapReached.as_str());
    }

    /// An action that stands down inside the closure (its re-check said no) holds nothing:
    /// the next event may act, and the stand-down does not count toward the cap.
    #[tokio::test]
    async fn an_action_that_stands_down_keeps_no_reservation() {
        let (c, _) = testing::common("fn", &[("SELFHEAL_TARGET_CAP", "1")]);
        let inv = Invocation::local(std::time::Duration::from_secs(5));
        let stood_down = c
            .act_guarded(c.audit_for(&inv, "t", "t-1"), guarded("x"), |a| async {
                a.skipped(&crate::decision::SkipReason::new(
                    SkipCode::ChangeInProgress,
                    "moved meanwhile",
                ))
            })
            .await
            .unwrap();
        assert_eq!(stood_down.code, SkipCode::ChangeInProgress.as_str());
        let next = c
            .act_guarded(c.audit_for(&inv, "t", "t-1"), guarded("x"), |a| async {
                a.acted("done")
            })
            .await
            .unwrap();
        assert_eq!(next.decision, Outcome::Acted, "{next:?}");
    }
}
