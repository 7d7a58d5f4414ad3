//! The flow over the ports: [`request`] (from the event alone) → the group's facts
//! ([`Groups`]) and the alarm as it is now ([`Alarms`]), read together → [`plan`] → size the
//! step (for a change that can happen, the load history through [`MetricHistory`] and its
//! forecast) → [`decide`] → [`Common::act_guarded`] (re-read the group and the alarm together,
//! [`recheck`], `SetDesiredCapacity`, then a read-back) → audit.
//!
//! AWS calls for one alarm that resizes (in the order they go out; `‖` = concurrently):
//! `DescribeAutoScalingGroups → DescribeScalingActivities ‖ DescribeAlarms`, `GetMetricData`
//! (forecast sizing), the ledger, `DescribeAutoScalingGroups → DescribeScalingActivities ‖
//! DescribeAlarms`, `SetDesiredCapacity`, then the read-back.
//!
//! Closed loop ([`follow_up`]): a resize records its action and schedules its verification
//! (after the cooldown); the verification re-reads the alarm and, while it is still in ALARM,
//! decides again exactly as for a fresh alarm and takes the next bounded step, until the alarm
//! clears (healed), the group is at its bound or a guardrail refuses (escalated, a person is
//! told), or the episode's follow-ups run out.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use selfheal_core::anomaly::Point;
use selfheal_core::approval::gate::{Approved, Ask, Gated};
use selfheal_core::autonomy::{self, Level};
use selfheal_core::episode::{episode_id, verification_in, VERIFY_KEY};
use selfheal_core::forecast::forecast_capacity;
use selfheal_core::ports::alarms::{check_still_alarming, AlarmFacts, Alarms};
use selfheal_core::ports::groups::{GroupFacts, Groups};
use selfheal_core::ports::metrics::{MetricHistory, MetricQuery, Window};
use selfheal_core::ports::scheduler::FollowUps;
use selfheal_core::{
    Alarm, AuditBuilder, AuditRecord, Common, Decision, Function, Guarded, HandlerError, Heal,
    Invocation, Response, SkipCode, SkipReason, Target,
};

use follow_up::Episode;

use crate::decide::{capacity_exhausted, decide, recheck, Resize};
use crate::load::{forecast_settings, history_window, load_query};
use crate::plan::{needs_a_person, plan, request, Plan};
use crate::settings::{Settings, SizingMode};
use crate::severity::{breach, severity_step, Step};
use crate::sizing::{choose_step, ForecastInput, SizingReport};
use crate::FUNCTION;

/// A resize's autonomy default: a dry run and a notice on the first occurrence on a group
/// within the window, a resize on a repeat (issue 17). Follow-up steps of an episode whose
/// first resize was allowed are not asked again.
pub const SCALE_AUTONOMY_DEFAULT: Level = Level::FirstDryRun;

pub struct Deps {
    pub common: Common,
    pub groups: Arc<dyn Groups>,
    /// The alarm as CloudWatch has it now: still in ALARM? whose? which side?
    pub alarms: Arc<dyn Alarms>,
    /// The group's load history, for forecast sizing.
    pub history: Arc<dyn MetricHistory>,
    /// Where each resize's verification is scheduled (`None`: no scheduler configured; the
    /// action is then audited as not followed up).
    pub follow_ups: Option<Arc<dyn FollowUps>>,
    pub settings: Settings,
}

/// The forecast as obtained, the datapoints read, and what was read as the load.
type Obtained = (ForecastInput, usize, Option<String>);

impl Function for Deps {
    async fn handle(&self, event: Value, inv: Invocation) -> Result<Response, HandlerError> {
        // A person following an approval link: a page, never an error (issue 17).
        if selfheal_lambda::http::is_function_url(&event) {
            let inv = &inv;
            return Ok(selfheal_lambda::approval::handle(
                &self.common,
                &event,
                inv,
                |original, approved| async move {
                    self.handle_event(&original, inv, Some(&approved)).await
                },
            )
            .await);
        }
        Ok(Response::from_audits(
            self.handle_event(&event, &inv, None).await?,
        ))
    }
}

impl Deps {
    /// One event (an alarm, or a verification), or the alarm kept with an approval, decided
    /// again now with the person's `approval`.
    async fn handle_event(
        &self,
        event: &Value,
        inv: &Invocation,
        approval: Option<&Approved>,
    ) -> Result<Vec<AuditRecord>, HandlerError> {
        if let Some(verify) = verification_in(event) {
            return match verify {
                Ok(v) => {
                    let audits = self.verify(&v, inv).await?;
                    self.track(audits.first()).await;
                    Ok(audits)
                }
                Err(why) => Err(self.common.reject(inv, VERIFY_KEY, why).await),
            };
        }
        let mut audits = Vec::new();
        let episode = Episode::fresh(event);
        for mut alarm in self.common.alarms_or_reject(event, inv).await? {
            if approval.is_some() {
                // Decided as a fresh alarm now (hours may have passed): its age and the load
                // history's window are from now; its state is read again.
                alarm.time = Some(Utc::now());
            }
            let rec = self.decide_and_act(&alarm, inv, &episode, approval).await?;
            let failure = self.common.follow_up_failure(&rec, inv).await;
            let recs: Vec<AuditRecord> = std::iter::once(rec).chain(failure).collect();
            self.track(recs.first()).await;
            audits.extend(recs);
        }
        Ok(audits)
    }

    /// The alarm's record, and a failure record when its follow-up could not be scheduled.
    async fn handle_alarm(
        &self,
        alarm: &Alarm,
        inv: &Invocation,
        episode: &Episode<'_>,
    ) -> Result<Vec<AuditRecord>, HandlerError> {
        let rec = self.decide_and_act(alarm, inv, episode, None).await?;
        let failure = self.common.follow_up_failure(&rec, inv).await;
        Ok(std::iter::once(rec).chain(failure).collect())
    }

    /// The alarm's `selfheal:autonomy` tag: from the event, else CloudWatch's tags of the alarm
    /// (by the ARN CloudWatch reports; none known: no tag).
    async fn alarm_autonomy_tag(
        &self,
        alarm: &Alarm,
        current: Option<&AlarmFacts>,
    ) -> Result<Option<String>, selfheal_core::AwsError> {
        // An event that carries the alarm's tags carries all of them.
        if !alarm.tags.is_empty() {
            return Ok(alarm.tags.get(autonomy::TAG).cloned());
        }
        match alarm
            .arn
            .as_deref()
            .or(current.and_then(|c| c.arn.as_deref()))
        {
            Some(arn) => Ok(self.alarms.tags(arn).await?.get(autonomy::TAG).cloned()),
            None => Ok(None),
        }
    }

    async fn decide_and_act(
        &self,
        alarm: &Alarm,
        inv: &Invocation,
        episode: &Episode<'_>,
        approval: Option<&Approved>,
    ) -> Result<AuditRecord, HandlerError> {
        let c = &self.common;
        let request = match request(alarm, &self.settings, Utc::now()) {
            Ok(r) => r,
            Err(reason) => {
                let audit = episode.audit(c, inv, alarm, &alarm.name);
                let audit = escalated_if_needed(audit, &reason);
                return Ok(self.finish(audit.skipped(&reason), episode).await);
            }
        };
        let audit = episode.audit(c, inv, alarm, &request.group);
        // Independent reads, so they go out together: the slower one sets the pace.
        let (facts, current, open) = tokio::join!(
            self.groups.facts(&request.group),
            self.alarms.current(&alarm.name),
            self.episode_in_progress(&request.group, episode)
        );
        if let Some(reason) = open {
            return Ok(self.finish(audit.skipped(&reason), episode).await);
        }
        let current = match current {
            Ok(c) => c,
            Err(e) => {
                return c
                    .fail(audit, "describe-alarm-failed", e.to_string(), e.retryable)
                    .await
            }
        };
        let audit = audit.detail(
            "alarm_now",
            current.as_ref().map(|f| {
                serde_json::json!({"state": f.state.as_str(), "comparison": f.comparison,
                                   "actions": f.alarm_actions})
            }),
        );
        let plan = match plan(request, alarm, current.as_ref(), &self.settings) {
            Ok(p) => p,
            Err(reason) => {
                let audit = escalated_if_needed(audit, &reason);
                return Ok(self.finish(audit.skipped(&reason), episode).await);
            }
        };
        let audit = audit.detail("plan", &plan);
        let facts = match facts {
            Ok(Some(f)) => f,
            Ok(None) => {
                let reason = SkipReason::new(
                    SkipCode::TargetNotFound,
                    format!("Auto Scaling group {} does not exist", plan.group),
                );
                return Ok(self.finish(audit.skipped(&reason), episode).await);
            }
            Err(e) => {
                return c
                    .fail(audit, "describe-failed", e.to_string(), e.retryable)
                    .await
            }
        };
        let audit = audit
            .detail("min_size", facts.min_size)
            .detail("max_size", facts.max_size)
            .detail("desired_before", facts.desired)
            .detail("activities_in_progress", &facts.activities_in_progress);
        let managed = c.guard.policy().opt_in.matches(tags(&facts));
        let (step, sizing) = self.size(alarm, &plan, &facts, managed).await;
        let audit = audit.detail("sizing", &sizing).detail("step", &step);
        match decide(&plan, &facts, managed, &step) {
            Decision::Skip { reason } => {
                let audit = if capacity_exhausted(&plan, &reason) {
                    audit
                        .detail("capacity_exhausted", true)
                        .detail("escalate", true)
                } else {
                    audit
                };
                Ok(self.finish(audit.skipped(&reason), episode).await)
            }
            Decision::Act { action, reason } => {
                let acting = Acting {
                    alarm,
                    inv,
                    episode,
                };
                if episode.verifying.is_some() {
                    return self.resize(audit, &acting, &facts, action, reason).await;
                }
                // Graduated autonomy (issue 17) on the episode's first resize.
                let target_tag = facts.tags.get(autonomy::TAG).cloned();
                let alarm_tag = match target_tag {
                    Some(_) => None,
                    None => match self.alarm_autonomy_tag(alarm, current.as_ref()).await {
                        Ok(t) => t,
                        Err(e) => {
                            return c
                                .fail(audit, "alarm-tags-failed", e.to_string(), e.retryable)
                                .await
                        }
                    },
                };
                let now = Utc::now().timestamp();
                let started = alarm.time.map(|t| t.timestamp()).unwrap_or(now).min(now);
                let episode_id = episode_id(FUNCTION, &action.group, started);
                let ask = Ask {
                    target: &action.group,
                    action: "scale",
                    default: SCALE_AUTONOMY_DEFAULT,
                    target_tag: target_tag.as_deref(),
                    alarm_tag: alarm_tag.as_deref(),
                    episode: &episode_id,
                    event: episode.event,
                    would: &reason,
                    approval,
                };
                match c.autonomy_gate(inv, audit, ask).await {
                    Gated::Act(audit) => self.resize(audit, &acting, &facts, action, reason).await,
                    Gated::Held(rec) => Ok(rec),
                }
            }
        }
    }

    /// The step and how it was sized. The forecast changes only how far the group moves,
    /// never whether it can: decide with the severity step first, and read the history only
    /// when a change is possible.
    async fn size(
        &self,
        alarm: &Alarm,
        plan: &Plan,
        facts: &GroupFacts,
        managed: bool,
    ) -> (Step, SizingReport) {
        let breach = breach(alarm);
        let severity = severity_step(
            breach.as_ref(),
            facts.desired,
            plan.direction,
            plan.max_step,
        );
        if let Decision::Skip { .. } = decide(plan, facts, managed, &severity) {
            let why = "the group cannot change; no history read".to_string();
            return (severity, SizingReport::severity(self.settings.sizing, why));
        }
        let (input, points, shown) = self.forecast(alarm, plan, facts.desired).await;
        let (step, mut report) = choose_step(
            breach.as_ref(),
            facts.desired,
            plan.direction,
            plan.max_step,
            self.settings.sizing,
            &input,
        );
        report.history_points = points;
        report.load_query = shown;
        (step, report)
    }

    /// The forecast for the group's load, from its history (read within
    /// `settings.history_timeout`); a fetch that fails or times out never blocks scaling: the
    /// severity step then sizes the change.
    async fn forecast(&self, alarm: &Alarm, plan: &Plan, desired: u32) -> Obtained {
        let not_made = |why: String, error: Option<String>| ForecastInput::NotMade { why, error };
        if self.settings.sizing == SizingMode::Severity {
            let why = "SELFHEAL_SCALE_SIZING=severity".into();
            return (not_made(why, None), 0, None);
        }
        let query = match load_query(alarm, &plan.group) {
            Ok(q) => q,
            Err(why) => return (not_made(format!("no forecast: {why}"), None), 0, None),
        };
        let shown = query
            .entries
            .iter()
            .find(|e| e.id == query.returned)
            .and_then(|e| e.expression.clone());
        // An alarm stamped in the future (clock skew) must not move the window past now.
        let at = alarm
            .time
            .filter(|t| *t <= Utc::now())
            .unwrap_or_else(Utc::now);
        let window = history_window(at, query.period);
        let points = match self.fetch_history(&query, window).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(alarm = %alarm.name, target = %plan.group, error = %e, "load history unavailable: severity step");
                let why = "no forecast: the load history could not be read".to_string();
                return (not_made(why, Some(e)), 0, shown);
            }
        };
        let sizing = forecast_capacity(
            &points,
            desired,
            self.settings.target_utilisation,
            &forecast_settings(window.period),
        );
        (ForecastInput::Made(sizing), points.len(), shown)
    }

    /// The load history, or why it could not be had in time.
    async fn fetch_history(
        &self,
        query: &MetricQuery,
        window: Window,
    ) -> Result<Vec<Point>, String> {
        let timeout = self.settings.history_timeout;
        match tokio::time::timeout(timeout, self.history.history(query, &[window])).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "cloudwatch:GetMetricData did not answer within {} ms",
                timeout.as_millis()
            )),
        }
    }

    /// Through the guardrails: re-read the group and the alarm (together), set the desired
    /// capacity only if both are still as planned, then read it back for the record.
    async fn resize(
        &self,
        audit: AuditBuilder,
        acting: &Acting<'_>,
        facts: &GroupFacts,
        action: Resize,
        reason: String,
    ) -> Result<AuditRecord, HandlerError> {
        let alarm = &acting.alarm.name;
        let audit = audit
            .detail("desired_requested", action.to)
            .detail("clamped_at", action.clamped_at);
        let follow_up = acting.episode.verifying.is_some();
        let guarded = Guarded {
            target: Target {
                id: &action.group,
                tags: tags(facts),
            },
            would: reason.clone(),
            // A guardrail that refuses a follow-up's step ends the episode: a person is told.
            escalate_refusal: follow_up,
        };
        let audit = if follow_up {
            audit.heal(Heal::Escalated, None)
        } else {
            audit
        };
        let acted = self
            .common
            .act_guarded(audit, guarded, |audit| async {
                let audit = match self.still_as_planned(audit, alarm, &action).await {
                    Ok(audit) => audit,
                    Err(record) => return self.classify(record, acting.episode).await,
                };
                if let Err(e) = self.groups.set_desired(&action.group, action.to).await {
                    // Not `action_failed`: the reservation stands and no retry is asked for.
                    // The change may have been applied although the call failed (a timeout),
                    // and a retry would plan from the new size and move the group again. The
                    // failure is notified; a person decides.
                    return audit
                        .detail("retryable", e.retryable)
                        .failed("scale-failed", e.to_string());
                }
                let audit = self.read_back(audit, &action).await;
                self.followed_up(audit, acting, &action.group)
                    .await
                    .acted(reason)
            })
            .await;
        acted.or_else(|failed| failed.into_handler_result())
    }

    /// Right before the change: seconds have passed since the first reads (forecast, ledger),
    /// so the alarm must still be in ALARM and the group where it was. The audit to act with,
    /// or the record of why nothing is done.
    async fn still_as_planned(
        &self,
        audit: AuditBuilder,
        alarm: &str,
        action: &Resize,
    ) -> Result<AuditBuilder, AuditRecord> {
        let (group, current) =
            tokio::join!(self.groups.facts(&action.group), self.alarms.current(alarm));
        // Nothing was changed: marked `action_failed`, so that the guarded act releases the
        // reservation and hands a retryable error back for Lambda to retry.
        let current = current.map_err(|e| {
            audit
                .clone()
                .detail("action_failed", true)
                .detail("retryable", e.retryable)
                .failed("describe-alarm-failed", e.to_string())
        })?;
        check_still_alarming(alarm, current.as_ref())
            .map_err(|reason| audit.clone().skipped(&reason))?;
        let now = match group {
            Ok(Some(g)) => g,
            Ok(None) => {
                let reason = SkipReason::new(
                    SkipCode::TargetNotFound,
                    format!(
                        "Auto Scaling group {} vanished before the change",
                        action.group
                    ),
                );
                return Err(audit.skipped(&reason));
            }
            Err(e) => {
                return Err(audit
                    .detail("action_failed", true)
                    .detail("retryable", e.retryable)
                    .failed("describe-failed", e.to_string()))
            }
        };
        let audit = audit.detail("desired_now", now.desired);
        let managed = self.common.guard.policy().opt_in.matches(tags(&now));
        match recheck(action, &now, managed) {
            Ok(()) => Ok(audit),
            Err(reason) => Err(audit.skipped(&reason)),
        }
    }

    /// What the group says after the change; the change stands whatever the read-back says.
    async fn read_back(&self, audit: AuditBuilder, action: &Resize) -> AuditBuilder {
        match self.groups.facts(&action.group).await {
            Ok(Some(after)) => audit
                .detail("desired_after", after.desired)
                .detail("read_back_matches", after.desired == action.to),
            Ok(None) => audit
                .detail("desired_after", Value::Null)
                .detail("read_back_error", "group vanished after the change"),
            Err(e) => audit
                .detail("desired_after", Value::Null)
                .detail("read_back_error", e.to_string()),
        }
    }
}

/// What a resize needs to know to be followed up: the alarm, the invocation, the episode.
struct Acting<'a> {
    alarm: &'a Alarm,
    inv: &'a Invocation,
    episode: &'a Episode<'a>,
}

/// Marks a refusal a person must hear about (the record is then notified).
fn escalated_if_needed(audit: AuditBuilder, reason: &SkipReason) -> AuditBuilder {
    if needs_a_person(reason) {
        audit.detail("escalate", true)
    } else {
        audit
    }
}

/// The group's tags, for the opt-in check and the guardrails.
fn tags(facts: &GroupFacts) -> impl Iterator<Item = (&str, &str)> {
    facts.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

mod follow_up;
#[cfg(test)]
mod tests;
