//! What every function shares besides its own ports: its name, the guardrails and the
//! auditor; and the one guarded sequence every action goes through
//! ([`Common::act_guarded`]: check → reserve → act → record).

use std::future::Future;

use chrono::Utc;
use serde_json::Value;

use crate::alarm::{parse_alarms, Alarm};
use crate::approval::gate::{audit_detail, Ask, Autonomy, Gated};
use crate::audit::{AuditBuilder, AuditRecord, Auditor, Outcome};
use crate::autonomy::AutonomyDecision;
use crate::episode::{known, Verify, VERIFY_KEY};
use crate::guard::{Guardrails, Target, Verdict};
use crate::invocation::{HandlerError, Invocation};
use crate::ports::scheduler::FollowUps;

/// What every function needs besides its own AWS ports.
pub struct Common {
    pub function: &'static str,
    pub guard: Guardrails,
    pub audit: Auditor,
    /// Graduated autonomy (issue 17): used by the functions that call
    /// [`Common::autonomy_gate`]; a function that never calls it acts as before.
    pub autonomy: Autonomy,
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

    /// The autonomy gate (issue 17), right before the guardrails: may this action be taken
    /// now, at the level that applies to it? `Gated::Act` hands the audit back with
    /// `details.autonomy` (level, source, decision) for the caller to go on through
    /// [`Common::act_guarded`]; `Gated::Held` is recorded already:
    ///
    /// - a dry run (level `observe`, or the first occurrence at `first-dry-run`), notified;
    /// - an approval asked (level `approve`): tokens issued, the pending approval and
    ///   `ask.event` kept in the ledger, the notice with the approve and reject links sent;
    /// - refused: an approval for another target or action, a kill switch or execution
    ///   window that would refuse anyway (nobody is asked for nothing), or an approval that
    ///   cannot be asked (no key, no URL, ledger down: a person is told, nothing is done).
    ///
    /// With `ask.approval` (deciding again on a person's approval) the level is resolved
    /// again: at `observe` it does not act, at any other level it goes on, through the
    /// guardrails as always.
    pub async fn autonomy_gate(
        &self,
        inv: &Invocation,
        audit: AuditBuilder,
        ask: Ask<'_>,
    ) -> Gated {
        let now = Utc::now().timestamp();
        if let Some(a) = ask.approval {
            if a.claims.target != ask.target || a.claims.action != ask.action {
                let why = format!(
                    "approval {} is for {} on {}, not {} on {}: refused, nothing done",
                    a.claims.id, a.claims.action, a.claims.target, ask.action, ask.target
                );
                let rec = audit
                    .detail("approval", serde_json::json!({"id": a.claims.id}))
                    .checked("approval-mismatch", why);
                return Gated::Held(self.record(rec).await);
            }
        }
        let (resolved, decision) = self.autonomy.decide(self.function, &ask, now).await;
        let audit = audit.detail("autonomy", audit_detail(&resolved, &decision));
        let audit = match ask.approval {
            Some(a) => audit.detail(
                "approval",
                serde_json::json!({"id": a.claims.id, "episode": a.claims.episode}),
            ),
            None => audit,
        };
        match decision {
            AutonomyDecision::Act { .. } => Gated::Act(audit),
            AutonomyDecision::DryRun { reason } => {
                let rec = audit
                    .detail("notify", true)
                    .dry_run(format!("{} ({reason})", ask.would));
                Gated::Held(self.record(rec).await)
            }
            AutonomyDecision::AskApproval { reason } => {
                Gated::Held(self.ask_approval(inv, audit, &ask, &reason, now).await)
            }
        }
    }

    async fn ask_approval(
        &self,
        inv: &Invocation,
        audit: AuditBuilder,
        ask: &Ask<'_>,
        reason: &str,
        now: i64,
    ) -> AuditRecord {
        if let Some(skip) = self.guard.preflight(Utc::now()).await {
            return self.record(audit.skipped(&skip)).await;
        }
        if self.guard.dry_run() {
            let rec = audit.dry_run(format!("ask a person to approve: {} ({reason})", ask.would));
            return self.record(rec).await;
        }
        match self
            .autonomy
            .ask(self.function, &inv.request_id, ask, now)
            .await
        {
            Ok(asked) => {
                let rec = audit
                    .detail(
                        "approval",
                        serde_json::json!({"id": asked.id, "expires_at": asked.expires_at,
                            "episode": ask.episode}),
                    )
                    .checked(
                        "approval-asked",
                        format!(
                            "{reason}: {}; approve or reject from the notice's links until {}",
                            ask.would, asked.expires_at
                        ),
                    );
                let rec = self.record(rec).await;
                self.autonomy.notify_asked(&rec, &asked).await;
                rec
            }
            Err(e) => {
                let why = format!(
                    "{} needs a person's approval, which cannot be asked now ({e}): nothing \
                     done, a person must look",
                    ask.would
                );
                let rec = audit
                    .detail("escalate", true)
                    .checked("approval-unavailable", why);
                self.record(rec).await
            }
        }
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

    mod autonomy_gate {
        use super::*;
        use crate::approval::gate::{pending_key, Approved, Ask, Autonomy, Gated};
        use crate::approval::{self, Choice, Key, Use};
        use crate::autonomy::Level;
        use crate::guard::Policy;
        use crate::testing::{MemoryIdempotency, MemoryParameters, RecordingNotifier};
        use serde_json::json;
        use std::sync::Arc;

        const KEY: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
        const URL: &str = "https://abc.lambda-url.eu-west-1.on.aws/";

        struct World {
            c: Common,
            notices: Arc<RecordingNotifier>,
            store: Arc<MemoryIdempotency>,
        }

        fn world(env: &[(&str, &str)], with_key: bool) -> World {
            let mut env = env.to_vec();
            env.push(("SELFHEAL_APPROVAL_KEY_PARAMETER", "/k"));
            env.push(("SELFHEAL_APPROVAL_URL_PARAMETER", "/u"));
            let (mut c, _) = testing::common("fn", &env);
            let notices = Arc::new(RecordingNotifier::default());
            let store = Arc::new(MemoryIdempotency::default());
            let params = MemoryParameters::default().with("/u", URL);
            let params = if with_key {
                params.with("/k", KEY)
            } else {
                params
            };
            c.autonomy = Autonomy::new(c.guard.policy().autonomy.clone())
                .with_store(store.clone())
                .with_parameters(Arc::new(params))
                .with_notifier(Some(notices.clone()));
            World { c, notices, store }
        }

        fn ask<'a>(event: &'a Value, approval: Option<&'a Approved>) -> Ask<'a> {
            Ask {
                target: "t-1",
                action: "reboot",
                default: Level::FirstDryRun,
                target_tag: None,
                alarm_tag: None,
                episode: "ep-1",
                event,
                would: "reboot t-1",
                approval,
            }
        }

        async fn run(w: &World, a: Ask<'_>) -> Gated {
            let inv = Invocation::local(std::time::Duration::from_secs(5));
            let audit = w.c.audit_for(&inv, "alarm", a.target);
            w.c.autonomy_gate(&inv, audit, a).await
        }

        fn held(g: Gated) -> AuditRecord {
            match g {
                Gated::Held(r) => r,
                Gated::Act(a) => panic!("expected held, got act: {a:?}"),
            }
        }

        fn acts(g: &Gated) -> bool {
            matches!(g, Gated::Act(_))
        }

        #[tokio::test]
        async fn each_level_does_what_it_says() {
            let ev = json!({"alarm": 1});
            let w = world(&[("SELFHEAL_AUTONOMY", "observe")], true);
            for _ in 0..2 {
                let rec = held(run(&w, ask(&ev, None)).await);
                assert_eq!(rec.decision, Outcome::DryRun);
                assert!(rec.notify_worthy(), "a held dry run tells a person");
                assert_eq!(rec.details["autonomy"]["level"], "observe");
            }
            let w = world(&[("SELFHEAL_AUTONOMY", "auto")], true);
            assert!(acts(&run(&w, ask(&ev, None)).await));
            // Unset: the action's default (first-dry-run here): dry run, then act.
            let w = world(&[("SELFHEAL_AUTONOMY", "")], true);
            let first = held(run(&w, ask(&ev, None)).await);
            assert_eq!(first.decision, Outcome::DryRun);
            assert_eq!(first.details["autonomy"]["source"], "default");
            assert!(
                acts(&run(&w, ask(&ev, None)).await),
                "a repeat in the window acts"
            );
            assert!(
                w.notices.sent().is_empty(),
                "the gate itself notifies only approvals"
            );
        }

        #[tokio::test]
        async fn approve_sends_two_signed_links_and_keeps_the_event() {
            let ev = json!({"alarm": "cpu"});
            let w = world(&[("SELFHEAL_AUTONOMY", "approve")], true);
            let rec = held(run(&w, ask(&ev, None)).await);
            assert_eq!(rec.code, "approval-asked");
            assert!(
                !rec.notify_worthy(),
                "the notice with links is the gate's own"
            );
            let log = crate::audit::log_line(&rec);
            let sent = w.notices.sent();
            assert_eq!(sent.len(), 1, "{sent:?}");
            assert!(sent[0].0.contains("asks approval"), "{}", sent[0].0);
            let body: Value = serde_json::from_str(&sent[0].1).unwrap();
            let key = Key::from_parameter(KEY).unwrap();
            let mut ids = Vec::new();
            for (field, choice) in [
                ("approve_url", Choice::Approve),
                ("reject_url", Choice::Reject),
            ] {
                let url = body[field].as_str().unwrap();
                assert!(url.starts_with(URL), "{url}");
                let token = url.split("t=").nth(1).unwrap();
                assert!(!log.contains(token), "tokens stay out of the logs");
                let now = chrono::Utc::now().timestamp();
                let claims = approval::verify(token, &key, now, "fn").unwrap();
                assert_eq!(
                    (claims.target.as_str(), claims.action.as_str()),
                    ("t-1", "reboot")
                );
                assert_eq!(claims.decision, choice);
                ids.push(claims.id.clone());
                if choice == Choice::Approve {
                    assert_eq!(
                        w.c.autonomy.pending_event(&claims).await.unwrap(),
                        Some(ev.clone())
                    );
                    assert!(w.store.get(&pending_key("fn", &claims.id)).is_some());
                    let now = chrono::Utc::now().timestamp();
                    assert_eq!(
                        w.c.autonomy.consume(&claims, "r1", now).await.unwrap(),
                        Use::Consumed
                    );
                    assert_eq!(
                        w.c.autonomy.consume(&claims, "r2", now).await.unwrap(),
                        Use::AlreadyUsed
                    );
                } else {
                    let now = chrono::Utc::now().timestamp();
                    assert_eq!(
                        w.c.autonomy.consume(&claims, "r3", now).await.unwrap(),
                        Use::AlreadyUsed,
                        "the twin link is used up too"
                    );
                }
            }
            assert_eq!(ids[0], ids[1]);
        }

        #[tokio::test]
        async fn an_approval_acts_unless_lowered_to_observe_or_for_another_target() {
            let ev = json!({});
            let w = world(&[("SELFHEAL_AUTONOMY", "approve")], true);
            let claims = |target: &str, action: &str| approval::Claims {
                v: 1,
                function: "fn".into(),
                target: target.into(),
                action: action.into(),
                episode: "ep-1".into(),
                id: "id-1".into(),
                decision: Choice::Approve,
                iat: 0,
                exp: i64::MAX,
            };
            let ok = Approved {
                claims: claims("t-1", "reboot"),
            };
            let g = run(&w, ask(&ev, Some(&ok))).await;
            assert!(acts(&g), "{g:?}");
            for other in [claims("t-2", "reboot"), claims("t-1", "stop-start")] {
                let a = Approved { claims: other };
                let rec = held(run(&w, ask(&ev, Some(&a))).await);
                assert_eq!(rec.code, "approval-mismatch", "{rec:?}");
            }
            let mut lowered = ask(&ev, Some(&ok));
            lowered.target_tag = Some("observe");
            let rec = held(run(&w, lowered).await);
            assert_eq!(rec.decision, Outcome::DryRun, "{rec:?}");
            assert!(w.notices.sent().is_empty());
        }

        #[tokio::test]
        async fn tags_override_the_setting_and_a_typo_is_observe() {
            let ev = json!({});
            let w = world(&[("SELFHEAL_AUTONOMY", "auto")], true);
            let mut a = ask(&ev, None);
            a.alarm_tag = Some("approve");
            assert_eq!(held(run(&w, a.clone()).await).code, "approval-asked");
            a.target_tag = Some("autp");
            let rec = held(run(&w, a).await);
            assert_eq!(rec.decision, Outcome::DryRun);
            assert_eq!(rec.details["autonomy"]["source"], "target-tag");
        }

        #[tokio::test]
        async fn a_per_action_setting_comes_before_the_functions_setting() {
            let ev = json!({});
            let w = world(
                &[
                    ("SELFHEAL_AUTONOMY", "auto"),
                    ("SELFHEAL_AUTONOMY_STOP_START", "approve"),
                ],
                true,
            );
            assert!(acts(&run(&w, ask(&ev, None)).await), "reboot: auto");
            let mut a = ask(&ev, None);
            a.action = "stop-start";
            let rec = held(run(&w, a).await);
            assert_eq!(rec.code, "approval-asked");
            assert_eq!(
                rec.details["autonomy"]["resolved"],
                "setting SELFHEAL_AUTONOMY_STOP_START=approve"
            );
            let bad = Policy::from_lookup("fn", |k| {
                (k == "SELFHEAL_AUTONOMY_SCALE").then(|| "sometimes".to_string())
            });
            assert!(bad.is_err(), "a bad per-action value fails the cold start");
        }

        #[tokio::test]
        async fn no_key_means_no_link_and_a_person_is_told() {
            let ev = json!({});
            let w = world(&[("SELFHEAL_AUTONOMY", "approve")], false);
            let rec = held(run(&w, ask(&ev, None)).await);
            assert_eq!(rec.code, "approval-unavailable");
            assert!(rec.notify_worthy());
            assert!(w.notices.sent().is_empty(), "never a link without a key");
            assert!(w.store.keys().is_empty(), "nothing pending");
        }

        #[tokio::test]
        async fn nobody_is_asked_when_the_kill_switch_or_dry_run_would_refuse() {
            let ev = json!({});
            for env in [("SELFHEAL_ENABLED", "false"), ("SELFHEAL_DRY_RUN", "true")] {
                let w = world(&[("SELFHEAL_AUTONOMY", "approve"), env], true);
                let rec = held(run(&w, ask(&ev, None)).await);
                assert_ne!(rec.code, "approval-asked", "{env:?}");
                assert!(w.notices.sent().is_empty(), "{env:?}");
            }
        }
    }

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
