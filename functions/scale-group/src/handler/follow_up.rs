//! The closed loop of scale-group: each resize is followed up after the cooldown. The
//! verification reads the alarm: OK → healed (with the time to heal); INSUFFICIENT_DATA →
//! not healed, checked again later; still ALARM → decided again exactly as a fresh alarm (same
//! plan, sizing and guardrails, fresh reads) and the next bounded step taken, until the alarm
//! clears, the group is at its bound or a guardrail refuses (escalated once: a person is told,
//! nothing more is scheduled), or the episode's follow-ups (`SELFHEAL_SCALE_MAX_FOLLOW_UPS`:
//! steps and re-checks after the first action) run out (escalated).

use chrono::Utc;
use serde_json::Value;

use selfheal_core::alarm::AlarmState;
use selfheal_core::episode::{
    action_id, episode_id, follow_up, mark_episode, open_episode, FollowUpNote, Verify, VERIFY_KEY,
    VERIFY_VERSION,
};
use selfheal_core::{
    parse_alarms, Alarm, AuditBuilder, AuditRecord, Common, HandlerError, Heal, Invocation,
    Outcome, SkipCode, SkipReason,
};

use super::{Acting, Deps};
use crate::FUNCTION;

/// The episode an alarm's handling belongs to: a fresh one for an alarm event, the verified
/// action's for a follow-up.
pub(crate) struct Episode<'a> {
    /// The alarm event the episode started from (a follow-up decides again from it).
    pub event: &'a Value,
    /// The verification being handled (`None`: a fresh alarm).
    pub verifying: Option<&'a Verify>,
}

impl<'a> Episode<'a> {
    pub fn fresh(event: &'a Value) -> Self {
        Self {
            event,
            verifying: None,
        }
    }

    /// The record's start, with the alarm's facts: a follow-up's names the action it verifies.
    pub fn audit(&self, c: &Common, inv: &Invocation, alarm: &Alarm, target: &str) -> AuditBuilder {
        let details = alarm.audit_details();
        match self.verifying {
            None => c
                .audit_for(inv, alarm.shape.as_str(), target)
                .details(details),
            Some(v) => c
                .audit_for(inv, VERIFY_KEY, target)
                .details(details)
                .action(&v.action_id, &v.episode_id)
                .detail("verifies", &v.action_id),
        }
    }

    /// When the episode started: the verified action's episode, or the alarm's state change
    /// (never later than now).
    fn started_at(&self, alarm: &Alarm, now: i64) -> i64 {
        match self.verifying {
            Some(v) => v.episode_started_at,
            None => alarm.time.map(|t| t.timestamp()).unwrap_or(now).min(now),
        }
    }
}

/// Which refusals of a follow-up's decision are worth another look later; every other
/// refusal ends the episode with a person told.
fn worth_another_look(code: &str) -> bool {
    code == SkipCode::NothingToDo.as_str() || code == SkipCode::ChangeInProgress.as_str()
}

fn mark(rec: &mut AuditRecord, outcome: Heal, time_to_heal_ms: Option<u64>) {
    rec.outcome = Some(outcome);
    rec.time_to_heal_ms = time_to_heal_ms;
    if let Value::Object(m) = &mut rec.details {
        if outcome == Heal::Escalated {
            m.insert("escalate".into(), Value::Bool(true));
        } else {
            m.remove("escalate");
        }
    }
}

fn note_detail(rec: &mut AuditRecord, note: &FollowUpNote) {
    if let Value::Object(m) = &mut rec.details {
        m.insert(
            "follow_up".into(),
            serde_json::to_value(note).unwrap_or(Value::Null),
        );
    }
}

impl Deps {
    /// Handles one verification.
    pub(super) async fn verify(
        &self,
        v: &Verify,
        inv: &Invocation,
    ) -> Result<Vec<AuditRecord>, HandlerError> {
        let c = &self.common;
        let audit = match c
            .admit_verification(inv, v, self.follow_ups.as_deref())
            .await
        {
            Ok(audit) => audit,
            Err(done) => return done.map(|r| vec![r]),
        };
        let now = Utc::now();
        let current = match self.alarms.current(&v.alarm_name).await {
            Ok(f) => f,
            Err(e) => {
                return c
                    .fail(audit, "describe-alarm-failed", e.to_string(), e.retryable)
                    .await
                    .map(|r| vec![r])
            }
        };
        let state = current.as_ref().map(|f| f.state.clone());
        let audit = audit.detail("alarm_now", state.as_ref().map(|s| s.as_str()));
        let escalate = |audit: AuditBuilder, why: String| {
            audit
                .detail("escalate", true)
                .heal(Heal::Escalated, None)
                .checked("escalated", why)
        };
        let rec = match state {
            Some(AlarmState::Ok) => {
                let ms = v.time_to_heal_ms(now.timestamp_millis());
                audit.heal(Heal::Healed, Some(ms)).checked(
                    "healed",
                    format!(
                        "alarm {} is OK: {} healed after {} step(s), {} s from the first alarm",
                        v.alarm_name,
                        v.target,
                        v.step.unwrap_or(1),
                        ms / 1000
                    ),
                )
            }
            None => escalate(
                audit,
                format!(
                    "alarm {} no longer exists: whether {} healed cannot be told",
                    v.alarm_name, v.target
                ),
            ),
            Some(_) if v.attempt > self.settings.max_follow_ups => escalate(
                audit,
                format!(
                    "alarm {} is still not OK after {} follow-up(s) \
                     (SELFHEAL_SCALE_MAX_FOLLOW_UPS={}): a person must look at {}",
                    v.alarm_name,
                    v.attempt - 1,
                    self.settings.max_follow_ups,
                    v.target
                ),
            ),
            Some(AlarmState::Alarm) => match self.alarm_of(v) {
                Ok((alarm, event)) => {
                    let episode = Episode {
                        event: &event,
                        verifying: Some(v),
                    };
                    return self.handle_alarm(&alarm, inv, &episode).await;
                }
                Err(why) => escalate(audit, why),
            },
            Some(other) => {
                let mut rec = audit.heal(Heal::NotHealed, None).checked(
                    "not-healed",
                    format!(
                        "alarm {} is {other}: not healed yet, checked again later",
                        v.alarm_name
                    ),
                );
                let note = self.check_again(v).await;
                if note.failed() {
                    mark(&mut rec, Heal::Escalated, None);
                }
                note_detail(&mut rec, &note);
                rec
            }
        };
        let rec = c.record(rec).await;
        let failure = c.follow_up_failure(&rec, inv).await;
        Ok(std::iter::once(rec).chain(failure).collect())
    }

    /// A fresh alarm on a group whose episode is open (a verification is coming) leaves the
    /// next step to that verification: two follow-up chains on one group would each take
    /// steps, and each refuse the other by the cooldown. `None`: act as usual (also when the
    /// episode cannot be read: the guardrails still stand).
    pub(super) async fn episode_in_progress(
        &self,
        group: &str,
        episode: &Episode<'_>,
    ) -> Option<SkipReason> {
        if episode.verifying.is_some() || self.follow_ups.is_none() {
            return None;
        }
        let ledger = self.common.guard.ledger();
        match open_episode(ledger.as_ref(), FUNCTION, group, Utc::now().timestamp()).await {
            Ok(Some(at)) => Some(SkipReason::new(
                SkipCode::ChangeInProgress,
                format!(
                    "an episode on {group} is in progress: its verification (due at {}) \
                     takes the next step",
                    chrono::DateTime::from_timestamp(at, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| at.to_string())
                ),
            )),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(function = FUNCTION, target = group, error = %e, "open episode unreadable; deciding as usual");
                None
            }
        }
    }

    /// Keeps the group's open episode current from the main record of an invocation: a
    /// verification scheduled → open until then; healed, escalated, or a follow-up that
    /// could not be scheduled → ended.
    pub(super) async fn track(&self, rec: Option<&AuditRecord>) {
        let Some(rec) = rec else { return };
        if self.follow_ups.is_none() {
            return;
        }
        let note = rec.details.get("follow_up");
        let status = note.and_then(|n| n.get("status")).and_then(Value::as_str);
        let verify_at = match status {
            Some("scheduled") => note.and_then(|n| n.get("at")).and_then(Value::as_i64),
            Some("failed") => None,
            _ if matches!(rec.outcome, Some(Heal::Healed | Heal::Escalated)) => None,
            _ => return,
        };
        let ledger = self.common.guard.ledger();
        if let Err(e) = mark_episode(ledger.as_ref(), FUNCTION, &rec.target, verify_at).await {
            tracing::warn!(function = FUNCTION, target = %rec.target, error = %e, "could not record the episode's state");
        }
    }

    /// The alarm of the episode, read again from the event it started from, as of now.
    fn alarm_of(&self, v: &Verify) -> Result<(Alarm, Value), String> {
        let event = v.alarm_event.clone().ok_or_else(|| {
            format!(
                "the verification carries no alarm event to decide again from: a person must \
                 look at {}",
                v.target
            )
        })?;
        let alarms = parse_alarms(&event).map_err(|e| {
            format!("the verification's alarm event cannot be read ({e}): a person must look")
        })?;
        let mut alarm = alarms
            .into_iter()
            .find(|a| a.name == v.alarm_name)
            .ok_or_else(|| {
                format!(
                    "the verification's alarm event does not carry alarm {}: a person must look",
                    v.alarm_name
                )
            })?;
        // Decided as a fresh alarm now: its age and the load history's window are from now.
        alarm.time = Some(Utc::now());
        Ok((alarm, event))
    }

    /// The same action verified again later (one more attempt of the episode).
    async fn check_again(&self, v: &Verify) -> FollowUpNote {
        let next = Verify {
            attempt: v.attempt + 1,
            ..v.clone()
        };
        let at = Utc::now().timestamp() + self.verify_after_secs();
        follow_up(
            self.common.guard.ledger().as_ref(),
            self.follow_ups.as_deref(),
            &next,
            at,
        )
        .await
    }

    fn verify_after_secs(&self) -> i64 {
        let cooldown = self.common.guard.policy().cooldown;
        self.settings.verify_after(cooldown).as_secs() as i64
    }

    /// Records a record of this episode: a follow-up's is classified first.
    pub(super) async fn finish(&self, rec: AuditRecord, episode: &Episode<'_>) -> AuditRecord {
        let rec = self.classify(rec, episode).await;
        self.common.record(rec).await
    }

    /// What a follow-up's decision means for the episode: the alarm cleared meanwhile →
    /// healed; a refusal worth another look → not healed, checked again; any other refusal or
    /// failure → escalated (a person is told, nothing more is scheduled). A fresh alarm's
    /// record is left as it is.
    pub(super) async fn classify(
        &self,
        mut rec: AuditRecord,
        episode: &Episode<'_>,
    ) -> AuditRecord {
        let Some(v) = episode.verifying else {
            return rec;
        };
        match rec.decision {
            Outcome::Acted => {}
            Outcome::DryRun => mark(&mut rec, Heal::NotHealed, None),
            // A retryable failure comes back (Lambda, then Scheduler, retries the event).
            Outcome::Failed if rec.details.get("retryable") == Some(&Value::Bool(true)) => {}
            Outcome::Failed => mark(&mut rec, Heal::Escalated, None),
            // The alarm was deleted meanwhile (`check_still_alarming` says so): whether the
            // group healed cannot be told.
            Outcome::Skipped
                if rec.code == SkipCode::AlarmCleared.as_str()
                    && rec.reason.ends_with("no longer exists") =>
            {
                mark(&mut rec, Heal::Escalated, None)
            }
            Outcome::Skipped if rec.code == SkipCode::AlarmCleared.as_str() => {
                let ms = v.time_to_heal_ms(Utc::now().timestamp_millis());
                mark(&mut rec, Heal::Healed, Some(ms));
            }
            Outcome::Skipped if worth_another_look(&rec.code) => {
                if v.attempt > self.settings.max_follow_ups {
                    mark(&mut rec, Heal::Escalated, None);
                } else {
                    let note = self.check_again(v).await;
                    let outcome = if note.failed() {
                        Heal::Escalated
                    } else {
                        Heal::NotHealed
                    };
                    mark(&mut rec, outcome, None);
                    note_detail(&mut rec, &note);
                }
            }
            Outcome::Skipped => mark(&mut rec, Heal::Escalated, None),
        }
        rec
    }

    /// After a resize: the action's id and episode on the record, and its verification
    /// scheduled (the record says how that went).
    pub(super) async fn followed_up(
        &self,
        audit: AuditBuilder,
        acting: &Acting<'_>,
        group: &str,
    ) -> AuditBuilder {
        let now = Utc::now().timestamp();
        let episode = acting.episode;
        let started_at = episode.started_at(acting.alarm, now);
        let previous = episode.verifying;
        let step = previous.and_then(|v| v.step).unwrap_or(0) + 1;
        // The step in the id too: two steps of one episode never share one.
        let request = format!("{}#{step}", acting.inv.request_id);
        let next = Verify {
            version: VERIFY_VERSION,
            function: FUNCTION.into(),
            action_id: action_id(FUNCTION, group, now, &request),
            episode_id: episode_id(FUNCTION, group, started_at),
            target: group.into(),
            alarm_name: acting.alarm.name.clone(),
            acted_at: now,
            episode_started_at: started_at,
            attempt: previous.map(|v| v.attempt + 1).unwrap_or(1),
            step: Some(step),
            rung: None,
            phase: None,
            alarm_event: Some(episode.event.clone()),
        };
        let note = follow_up(
            self.common.guard.ledger().as_ref(),
            self.follow_ups.as_deref(),
            &next,
            now + self.verify_after_secs(),
        )
        .await;
        let audit = audit
            .action(&next.action_id, &next.episode_id)
            .detail("step_of_episode", next.step)
            .detail("follow_up", &note);
        match previous {
            // A step of a follow-up: the episode is not healed yet (the alarm was in ALARM).
            Some(_) => audit.heal(Heal::NotHealed, None),
            None => audit,
        }
    }
}
