//! The closed loop of reboot-instance: each reboot is verified `SELFHEAL_REBOOT_VERIFY_AFTER_SECONDS`
//! later, from the alarm as it is now and the instance's status checks ([`judge`]). Healed →
//! recorded with the time to heal. Not healed → the next rung of the escalation ladder
//! ([`next_rung`]), through the same guardrails; the last rung tells a person. Checks not
//! decided yet (initializing) → verified again later, within `SELFHEAL_REBOOT_MAX_FOLLOW_UPS`.

use chrono::Utc;

use serde_json::Value;

use selfheal_core::approval::gate::{Approved, Ask, Gated};
use selfheal_core::autonomy;
use selfheal_core::episode::{action_id, episode_id, follow_up, Verify, VERIFY_VERSION};
use selfheal_core::ports::instances::InstanceFacts;
use selfheal_core::{
    Alarm, AuditBuilder, AuditRecord, Guarded, HandlerError, Heal, Invocation, Target,
};

use super::{Deps, STOP_START_AUTONOMY_DEFAULT};
use crate::ladder::{judge, next_rung, Finding, Rung, StopStartTerms};
use crate::FUNCTION;

/// How soon after a stop its start is attempted, and how often a stop still in progress is
/// looked at again.
const STOP_CHECK_SECS: i64 = 60;

/// A stop that has not finished after this long is a person's to look at (the instance is
/// left as it is: stopping).
const STOP_DEADLINE_SECS: i64 = 900;

/// The phase of a stop-start whose stop was done: start the instance again.
const PHASE_START: &str = "start";

/// The reboot an alarm triggers: the episode's first action (rung 0 of the ladder).
pub(crate) struct FirstReboot<'a> {
    pub alarm: &'a Alarm,
    pub inv: &'a Invocation,
}

impl FirstReboot<'_> {
    /// When the episode started: the alarm's state change (never later than now).
    pub fn started_at(&self) -> i64 {
        let now = Utc::now().timestamp();
        self.alarm
            .time
            .map(|t| t.timestamp())
            .unwrap_or(now)
            .min(now)
    }

    /// Its verification; the episode starts at the alarm's state change (never later than now).
    pub fn verify(&self, id: &str, request_id: &str) -> Verify {
        let now = Utc::now().timestamp();
        let started_at = self.started_at();
        Verify {
            version: VERIFY_VERSION,
            function: FUNCTION.into(),
            action_id: action_id(FUNCTION, id, now, &format!("{request_id}#0")),
            episode_id: episode_id(FUNCTION, id, started_at),
            target: id.into(),
            alarm_name: self.alarm.name.clone(),
            acted_at: now,
            episode_started_at: started_at,
            attempt: 1,
            step: Some(0),
            rung: Some(Rung::Reboot.as_str().into()),
            phase: None,
            alarm_event: None,
        }
    }
}

impl Deps {
    /// After a reboot: its id and episode on the record, and its verification scheduled (the
    /// record says how that went).
    pub(super) async fn followed_up(&self, audit: AuditBuilder, next: Verify) -> AuditBuilder {
        let at = next.acted_at + self.settings.verify_after.as_secs() as i64;
        let note = follow_up(
            self.common.guard.ledger().as_ref(),
            self.follow_ups.as_deref(),
            &next,
            at,
        )
        .await;
        audit
            .action(&next.action_id, &next.episode_id)
            .detail("rung", &next.rung)
            .detail("follow_up", &note)
    }

    /// Handles one verification.
    pub(super) async fn verify(
        &self,
        v: &Verify,
        inv: &Invocation,
        event: &Value,
        approval: Option<&Approved>,
    ) -> Result<Vec<AuditRecord>, HandlerError> {
        let c = &self.common;
        let audit = match c
            .admit_verification(inv, v, self.follow_ups.as_deref())
            .await
        {
            Ok(audit) => audit,
            Err(done) => return done.map(|r| vec![r]),
        };
        if v.phase.as_deref() == Some(PHASE_START) {
            let rec = self.start_after_stop(audit, v).await?;
            let failure = c.follow_up_failure(&rec, inv).await;
            return Ok(std::iter::once(rec).chain(failure).collect());
        }
        let (alarm, instance, checks) = tokio::join!(
            self.alarms.current(&v.alarm_name),
            self.instances.facts(&v.target),
            self.instances.status_checks(&v.target),
        );
        let read = alarm.and_then(|a| Ok((a, instance?, checks?)));
        let (alarm, instance, checks) = match read {
            Ok(r) => r,
            Err(e) => {
                return c
                    .fail(audit, "verify-read-failed", e.to_string(), e.retryable)
                    .await
                    .map(|r| vec![r])
            }
        };
        let state = alarm.as_ref().map(|a| a.state.clone());
        let audit = audit
            .detail("alarm_state_now", state.as_ref().map(|s| s.as_str()))
            .detail("instance_state", instance.as_ref().map(|i| i.state.clone()))
            .detail("status_checks", &checks);
        let finding = judge(state.as_ref(), instance.as_ref(), checks.as_ref());
        let rec = match (finding, instance) {
            (Finding::Healed, _) => {
                let ms = v.time_to_heal_ms(Utc::now().timestamp_millis());
                audit.heal(Heal::Healed, Some(ms)).checked(
                    "healed",
                    format!(
                        "{} healed: alarm {} is OK and both status checks pass, {} s from \
                         the first alarm (rung {})",
                        v.target,
                        v.alarm_name,
                        ms / 1000,
                        v.rung.as_deref().unwrap_or("reboot")
                    ),
                )
            }
            (Finding::Escalate(why), _) | (Finding::NotHealed(why), None) => {
                escalated(audit, format!("{}: {why}; a person must look", v.target))
            }
            (_, Some(_)) if v.attempt >= self.settings.max_follow_ups => escalated(
                audit,
                format!(
                    "{} is not healed after {} verification(s) \
                     (SELFHEAL_REBOOT_MAX_FOLLOW_UPS={}): a person must look",
                    v.target, v.attempt, self.settings.max_follow_ups
                ),
            ),
            (Finding::NotYet(why), _) => {
                let next = Verify {
                    attempt: v.attempt + 1,
                    ..v.clone()
                };
                let at = Utc::now().timestamp() + self.settings.verify_after.as_secs() as i64;
                let note = follow_up(
                    c.guard.ledger().as_ref(),
                    self.follow_ups.as_deref(),
                    &next,
                    at,
                )
                .await;
                let outcome = if note.failed() {
                    Heal::Escalated
                } else {
                    Heal::NotHealed
                };
                audit
                    .detail("follow_up", &note)
                    .heal(outcome, None)
                    .checked(
                        "not-healed",
                        format!("{}: {why}; checked again later", v.target),
                    )
            }
            (Finding::NotHealed(why), Some(facts)) => {
                let asked = Asked { event, approval };
                let rec = self.climb(audit, v, &facts, &why, inv, asked).await?;
                let failure = c.follow_up_failure(&rec, inv).await;
                return Ok(std::iter::once(rec).chain(failure).collect());
            }
        };
        let rec = c.record(rec).await;
        let failure = c.follow_up_failure(&rec, inv).await;
        Ok(std::iter::once(rec).chain(failure).collect())
    }

    /// Not healed: the next rung of the ladder (the rungs passed over in the record).
    async fn climb(
        &self,
        audit: AuditBuilder,
        v: &Verify,
        facts: &InstanceFacts,
        why: &str,
        inv: &Invocation,
        asked: Asked<'_>,
    ) -> Result<AuditRecord, HandlerError> {
        let c = &self.common;
        let after = v.step.unwrap_or(0) as usize;
        let stop_start = StopStartTerms {
            allowed: self.settings.allow_stop_start,
            can_follow_up: self.follow_ups.is_some(),
        };
        let (index, rung, skipped) = next_rung(&self.settings.ladder, after, facts, stop_start);
        let audit = audit
            .detail("next_rung", rung)
            .detail("rungs_skipped", &skipped);
        match rung {
            Rung::Notify => Ok(c
                .record(escalated(
                    audit,
                    format!(
                        "{} is not healed ({why}); the ladder's last rung: a person must look",
                        v.target
                    ),
                ))
                .await),
            Rung::StopStart => {
                // Graduated autonomy (issue 17): a stop-start is asked of a person by default.
                let target_tag = facts.tags.get(autonomy::TAG).cloned();
                let alarm_tag = match target_tag {
                    Some(_) => None,
                    None => match self
                        .alarm_autonomy_tag(&v.alarm_name, None, &Default::default())
                        .await
                    {
                        Ok(t) => t,
                        Err(e) => {
                            let audit = audit.detail("escalate", true);
                            return c
                                .fail(audit, "alarm-tags-failed", e.to_string(), e.retryable)
                                .await;
                        }
                    },
                };
                let would = format!("stop and start {}: {why}", v.target);
                let ask = Ask {
                    target: &v.target,
                    action: Rung::StopStart.as_str(),
                    default: STOP_START_AUTONOMY_DEFAULT,
                    target_tag: target_tag.as_deref(),
                    alarm_tag: alarm_tag.as_deref(),
                    episode: &v.episode_id,
                    event: asked.event,
                    would: &would,
                    approval: asked.approval,
                };
                let audit = match c
                    .autonomy_gate(inv, audit.heal(Heal::Escalated, None), ask)
                    .await
                {
                    Gated::Act(audit) => audit,
                    Gated::Held(rec) => return Ok(rec),
                };
                self.stop(audit, v, facts, why, index, inv).await
            }
            Rung::Reboot => {
                let id = v.target.as_str();
                let tags = facts.tags.iter().map(|(k, val)| (k.as_str(), val.as_str()));
                let guarded = Guarded {
                    target: Target { id, tags },
                    would: format!("reboot {id} again: {why}"),
                    // A guardrail that refuses a rung ends the episode: a person is told.
                    escalate_refusal: true,
                };
                let next = Verify {
                    action_id: action_id(
                        FUNCTION,
                        id,
                        Utc::now().timestamp(),
                        &format!("{}#{index}", inv.request_id),
                    ),
                    acted_at: Utc::now().timestamp(),
                    attempt: v.attempt + 1,
                    step: Some(index as u32),
                    rung: Some(rung.as_str().into()),
                    ..v.clone()
                };
                let instances = &self.instances;
                let done = c
                    .act_guarded(
                        audit.heal(Heal::Escalated, None),
                        guarded,
                        |audit| async move {
                            match instances.reboot(id).await {
                                Ok(()) => self
                                    .followed_up(audit.heal(Heal::NotHealed, None), next)
                                    .await
                                    .acted(format!("rebooted {id} again (rung {index}): {why}")),
                                Err(e) if e.code.is_some() => {
                                    audit.action_failed("reboot-failed", &e)
                                }
                                Err(e) => audit
                                    .detail("retryable", false)
                                    .failed("reboot-failed", e.to_string()),
                            }
                        },
                    )
                    .await;
                done.or_else(|failed| failed.into_handler_result())
            }
        }
    }

    /// The stop-start rung, first half: the start is scheduled, then the instance stopped
    /// (through the guardrails). No stop without its start scheduled first.
    async fn stop(
        &self,
        audit: AuditBuilder,
        v: &Verify,
        facts: &InstanceFacts,
        why: &str,
        index: usize,
        inv: &Invocation,
    ) -> Result<AuditRecord, HandlerError> {
        let c = &self.common;
        let id = v.target.as_str();
        let tags = facts.tags.iter().map(|(k, val)| (k.as_str(), val.as_str()));
        let guarded = Guarded {
            target: Target { id, tags },
            would: format!("stop and start {id}: {why}"),
            escalate_refusal: true,
        };
        let now = Utc::now().timestamp();
        let next = Verify {
            action_id: action_id(FUNCTION, id, now, &format!("{}#{index}", inv.request_id)),
            acted_at: now,
            attempt: v.attempt + 1,
            step: Some(index as u32),
            rung: Some(Rung::StopStart.as_str().into()),
            phase: Some(PHASE_START.into()),
            ..v.clone()
        };
        let done = c
            .act_guarded(
                audit.heal(Heal::Escalated, None),
                guarded,
                |audit| async move {
                    let note = follow_up(
                        c.guard.ledger().as_ref(),
                        self.follow_ups.as_deref(),
                        &next,
                        now + STOP_CHECK_SECS,
                    )
                    .await;
                    let audit = audit
                        .action(&next.action_id, &next.episode_id)
                        .detail("rung", &next.rung)
                        .detail("follow_up", &note);
                    if note.failed() {
                        return audit
                            .detail("action_failed", true)
                            .detail("retryable", false)
                            .failed(
                                "stop-start-not-scheduled",
                                format!(
                                    "{id} was not stopped: the start that must follow could not \
                                     be scheduled"
                                ),
                            );
                    }
                    match self.instances.stop(id).await {
                        Ok(()) => audit.heal(Heal::NotHealed, None).acted(format!(
                            "stopped {id} (rung {index}, stop-start): {why}; it is started \
                             again once stopped"
                        )),
                        Err(e) => {
                            // The start scheduled for this stop is not wanted any more.
                            if let Some(f) = &self.follow_ups {
                                if let Err(d) = f.delete(&next.follow_up_name()).await {
                                    tracing::warn!(function = FUNCTION, target = id, error = %d, "could not delete the start of a stop that failed");
                                }
                            }
                            if e.code.is_some() {
                                audit.action_failed("stop-failed", &e)
                            } else {
                                audit
                                    .detail("retryable", false)
                                    .failed("stop-failed", e.to_string())
                            }
                        }
                    }
                },
            )
            .await;
        done.or_else(|failed| failed.into_handler_result())
    }

    /// The stop-start rung, second half: the instance is started once it is stopped, then
    /// verified like a reboot. The start is not a new action (the guardrails granted the
    /// stop-start): an instance selfheal stopped is never left stopped on purpose.
    async fn start_after_stop(
        &self,
        audit: AuditBuilder,
        v: &Verify,
    ) -> Result<AuditRecord, HandlerError> {
        let c = &self.common;
        let id = v.target.as_str();
        let facts = match self.instances.facts(id).await {
            Ok(f) => f,
            Err(e) => {
                let audit = audit.detail("escalate", true);
                return c
                    .fail(audit, "describe-failed", e.to_string(), e.retryable)
                    .await;
            }
        };
        let state = facts.as_ref().map(|f| f.state.clone());
        let audit = audit.detail("instance_state", &state);
        let now = Utc::now().timestamp();
        let schedule = |phase: Option<&str>, at: i64| {
            let next = Verify {
                attempt: v.attempt + 1,
                phase: phase.map(str::to_string),
                ..v.clone()
            };
            async move {
                follow_up(
                    c.guard.ledger().as_ref(),
                    self.follow_ups.as_deref(),
                    &next,
                    at,
                )
                .await
            }
        };
        let verify_at = now + self.settings.verify_after.as_secs() as i64;
        let rec = match state.as_deref() {
            Some("stopped") => match self.instances.start(id).await {
                Ok(()) => {
                    let note = schedule(None, verify_at).await;
                    audit
                        .detail("follow_up", &note)
                        .heal(Heal::NotHealed, None)
                        .acted(format!("started {id} again after its stop (stop-start)"))
                }
                Err(e) => {
                    let why = format!(
                        "{id} was stopped by selfheal (stop-start) and could not be started: \
                         {e}; a person must start it"
                    );
                    let audit = audit.detail("escalate", true).heal(Heal::Escalated, None);
                    return c.fail(audit, "start-failed", why, e.retryable).await;
                }
            },
            Some("stopping") if now - v.acted_at < STOP_DEADLINE_SECS => {
                let note = schedule(Some(PHASE_START), now + STOP_CHECK_SECS).await;
                audit
                    .detail("follow_up", &note)
                    .heal(Heal::NotHealed, None)
                    .checked(
                        "stopping",
                        format!("{id} is still stopping; it is started once stopped"),
                    )
            }
            // Started by someone else, or the stop never took: verified as usual.
            Some("running" | "pending") => {
                let note = schedule(None, verify_at).await;
                audit
                    .detail("follow_up", &note)
                    .heal(Heal::NotHealed, None)
                    .checked(
                        "not-healed",
                        format!("{id} is running again without our start; verified later"),
                    )
            }
            other => escalated(
                audit,
                format!(
                    "{id} is {} during a stop-start: a person must look (start it if it \
                     should run)",
                    other.unwrap_or("gone")
                ),
            ),
        };
        Ok(c.record(rec).await)
    }
}

/// The event a verification came in, and a person's approval when it is decided again.
pub(super) struct Asked<'a> {
    event: &'a Value,
    approval: Option<&'a Approved>,
}

/// Nothing more will be done automatically: a person is told.
fn escalated(audit: AuditBuilder, why: String) -> AuditRecord {
    audit
        .detail("escalate", true)
        .heal(Heal::Escalated, None)
        .checked("escalated", why)
}
