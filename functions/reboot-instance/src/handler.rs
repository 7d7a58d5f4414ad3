//! The flow for one event: for each alarm, the checks the event alone answers (one target,
//! fresh, asks for a reboot), the facts through the ports (read together), the decision, the
//! anomaly gate, then the guarded reboot; every outcome audited.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use selfheal_core::anomaly::Point;
use selfheal_core::approval::gate::{Approved, Ask, Gated};
use selfheal_core::autonomy::{self, Level};
use selfheal_core::episode::{episode_id, verification_in, VERIFY_KEY};
use selfheal_core::ports::alarms::{check_still_alarming, AlarmFacts, Alarms};
use selfheal_core::ports::instances::{InstanceFacts, Instances};
use selfheal_core::ports::metrics::MetricHistory;
use selfheal_core::ports::scheduler::FollowUps;
use selfheal_core::{
    Alarm, AuditBuilder, AuditRecord, AwsError, Common, Decision, Function, Guarded, HandlerError,
    Invocation, Response, SkipReason, Target,
};

use crate::decide::{decide, needs_a_person, target, Reboot};
use crate::gate::{self, GateFetch, GateReport, GATE_FETCH_TIMEOUT};
use crate::request::{self, Request};
use crate::settings::Settings;
use crate::tag_cache::{TagCache, Tags};
use crate::FUNCTION;

/// The reboot's autonomy default: a dry run and a notice on the first occurrence on an
/// instance within the window, a reboot on a repeat (issue 17).
pub const REBOOT_AUTONOMY_DEFAULT: Level = Level::FirstDryRun;
/// The ladder's stop-start rung: a person approves it (issue 17).
pub const STOP_START_AUTONOMY_DEFAULT: Level = Level::Approve;

/// The ports and settings the flow runs over: `main.rs` builds them from the environment,
/// tests from fakes or from adapters against the emulator.
pub struct Deps {
    pub common: Common,
    pub instances: Arc<dyn Instances>,
    /// The alarm metric's history, for the anomaly gate.
    pub history: Arc<dyn MetricHistory>,
    /// The alarm as CloudWatch has it now: still in ALARM? tagged for a reboot?
    pub alarms: Arc<dyn Alarms>,
    pub settings: Settings,
    /// Where each reboot's verification is scheduled (`None`: no scheduler configured; the
    /// reboot is then audited as not followed up).
    pub follow_ups: Option<Arc<dyn FollowUps>>,
    /// Alarm tags read earlier (`SELFHEAL_ALARM_TAG_CACHE_SECONDS`), so an alarm that fires
    /// often costs one tag read per cache period, not one per event.
    alarm_tags: TagCache,
}

/// Why the flow stops before acting: a skip, or a read that failed (retried by Lambda when
/// `retryable`).
enum Stop {
    Skip(SkipReason),
    Failed {
        code: &'static str,
        error: AwsError,
        retryable: bool,
    },
}

/// What the reads before the decision found.
struct Facts {
    instance: Option<InstanceFacts>,
    /// Why the alarm asks for a reboot (its metrics, or its tag).
    requested_by: String,
    /// The alarm as CloudWatch has it now (in ALARM: checked).
    alarm_now: Option<AlarmFacts>,
    /// The gate's history, when it was read with the checks.
    history: Option<Result<Vec<Point>, String>>,
}

impl From<SkipReason> for Stop {
    fn from(reason: SkipReason) -> Self {
        Stop::Skip(reason)
    }
}

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
    pub fn new(
        common: Common,
        instances: Arc<dyn Instances>,
        history: Arc<dyn MetricHistory>,
        alarms: Arc<dyn Alarms>,
        settings: Settings,
    ) -> Self {
        let alarm_tags = TagCache::new(settings.alarm_tag_cache);
        Self {
            common,
            instances,
            history,
            alarms,
            settings,
            follow_ups: None,
            alarm_tags,
        }
    }

    /// One event (an alarm, or a verification), or the event kept with an approval, decided
    /// again now with the person's `approval`.
    async fn handle_event(
        &self,
        event: &Value,
        inv: &Invocation,
        approval: Option<&Approved>,
    ) -> Result<Vec<AuditRecord>, HandlerError> {
        if let Some(verify) = verification_in(event) {
            return match verify {
                Ok(v) => self.verify(&v, inv, event, approval).await,
                Err(why) => Err(self.common.reject(inv, VERIFY_KEY, why).await),
            };
        }
        let mut audits = Vec::new();
        for alarm in self.common.alarms_or_reject(event, inv).await? {
            let rec = self.handle_alarm(&alarm, inv, event, approval).await?;
            let failure = self.common.follow_up_failure(&rec, inv).await;
            audits.push(rec);
            audits.extend(failure);
        }
        Ok(audits)
    }

    /// The alarm's `selfheal:autonomy` tag: from the event, the cache, or CloudWatch (only
    /// asked when the instance has no such tag of its own: the most specific one wins).
    pub(crate) async fn alarm_autonomy_tag(
        &self,
        alarm_name: &str,
        arn: Option<&str>,
        tags_in_event: &Tags,
    ) -> Result<Option<String>, AwsError> {
        // An event that carries the alarm's tags carries all of them.
        if !tags_in_event.is_empty() {
            return Ok(tags_in_event.get(autonomy::TAG).cloned());
        }
        let arn = match arn {
            Some(a) => a.to_string(),
            None => match self.alarms.current(alarm_name).await?.and_then(|c| c.arn) {
                Some(a) => a,
                None => return Ok(None),
            },
        };
        Ok(self.alarm_tags(&arn).await?.get(autonomy::TAG).cloned())
    }

    /// Reboots are followed up through `follow_ups`.
    pub fn with_follow_ups(mut self, follow_ups: Arc<dyn FollowUps>) -> Self {
        self.follow_ups = Some(follow_ups);
        self
    }

    async fn handle_alarm(
        &self,
        alarm: &Alarm,
        inv: &Invocation,
        event: &Value,
        approval: Option<&Approved>,
    ) -> Result<AuditRecord, HandlerError> {
        let c = &self.common;
        let audit_of = |target: &str| {
            c.audit_for(inv, alarm.shape.as_str(), target)
                .details(alarm.audit_details())
        };
        let id = match target(alarm, &self.settings) {
            Ok(id) => id,
            Err(reason) => {
                let audit = audit_of(&alarm.name);
                // The record is notified when it carries `escalate`.
                let audit = if needs_a_person(&reason) {
                    audit.detail("escalate", true)
                } else {
                    audit
                };
                return Ok(c.record(audit.skipped(&reason)).await);
            }
        };
        let audit = audit_of(&id);
        // An event throttled or retried for hours describes a past that may be gone. An
        // approved one is hours old by design: its state is read again below, now.
        if approval.is_none() {
            if let Err(reason) = alarm.check_age(Utc::now(), self.settings.max_event_age) {
                return Ok(c.record(audit.skipped(&reason)).await);
            }
        }
        // The gate's history is one more independent read: planned here, fetched with the
        // checks when the event already shows the alarm asks for a reboot.
        let plan = gate::plan(alarm, &self.settings.gate, Utc::now());
        let Facts {
            instance: facts,
            requested_by,
            alarm_now: current,
            history,
        } = match self.read_facts(alarm, &id, plan.as_ref().ok()).await {
            Ok(read) => read,
            Err(Stop::Skip(reason)) => return Ok(c.record(audit.skipped(&reason)).await),
            Err(Stop::Failed {
                code,
                error,
                retryable,
            }) => return c.fail(audit, code, error.to_string(), retryable).await,
        };
        let audit = audit
            .detail("reboot_requested_by", &requested_by)
            .detail(
                "alarm_state_now",
                current.as_ref().map(|c| c.state.as_str()),
            )
            .detail("instance_state", facts.as_ref().map(|f| f.state.clone()));
        let (action, reason) = match decide(alarm, &id, facts.as_ref()) {
            Decision::Skip { reason } => return Ok(c.record(audit.skipped(&reason)).await),
            Decision::Act { action, reason } => (action, reason),
        };
        let (gate_skip, gate_report) = self.gate(alarm, &id, plan, history).await;
        let audit = audit.detail("anomaly_gate", &gate_report);
        if let Some(reason) = gate_skip {
            return Ok(c.record(audit.skipped(&reason)).await);
        }
        let first = FirstReboot { alarm, inv };
        // Graduated autonomy (issue 17): observe, first-dry-run, approve or auto.
        let target_tag = facts
            .as_ref()
            .and_then(|f| f.tags.get(autonomy::TAG))
            .cloned();
        let alarm_tag = match target_tag {
            Some(_) => None,
            None => match self
                .alarm_autonomy_tag(
                    &alarm.name,
                    alarm
                        .arn
                        .as_deref()
                        .or(current.as_ref().and_then(|c| c.arn.as_deref())),
                    &alarm.tags,
                )
                .await
            {
                Ok(t) => t,
                Err(e) => {
                    return c
                        .fail(audit, "alarm-tags-failed", e.to_string(), e.retryable)
                        .await
                }
            },
        };
        let episode = episode_id(FUNCTION, &id, first.started_at());
        let would = format!("reboot {id}: {reason}");
        let ask = Ask {
            target: &id,
            action: "reboot",
            default: REBOOT_AUTONOMY_DEFAULT,
            target_tag: target_tag.as_deref(),
            alarm_tag: alarm_tag.as_deref(),
            episode: &episode,
            event,
            would: &would,
            approval,
        };
        let audit = match c.autonomy_gate(inv, audit, ask).await {
            Gated::Act(audit) => audit,
            Gated::Held(rec) => return Ok(rec),
        };
        self.reboot(audit, &action, &reason, facts.as_ref(), &first)
            .await
    }

    /// The instance, whether the alarm asks for a reboot, the alarm as it is now, and the
    /// gate's history. The reads are independent and go out together (DescribeInstances,
    /// DescribeAlarms, ListTagsForResource when neither the event nor the cache answers the
    /// request, GetMetricData when it does), so the checks add no round trip before the
    /// reboot, and only the ledger stands between the alarm's state read and the reboot.
    async fn read_facts(
        &self,
        alarm: &Alarm,
        id: &str,
        gate: Option<&GateFetch>,
    ) -> Result<Facts, Stop> {
        let known = match request::from_event(alarm, &self.settings) {
            Request::Asked(why) => Some(why),
            Request::AskTags => match alarm.arn.as_deref().and_then(|a| self.alarm_tags.get(a)) {
                // A cached "no" settles it without a call.
                Some(tags) => Some(request::from_tags(alarm, &tags, &self.settings)?),
                None => None,
            },
        };
        // The alarm's tags also hold its autonomy level (issue 17): read with the other checks
        // (so they cost no round trip before the reboot) unless the event or the cache has
        // them; a failed read here only matters to the request check, the level's read is
        // tried again before acting.
        let tags_arn = alarm.arn.as_deref().filter(|a| {
            known.is_none() || (alarm.tags.is_empty() && self.alarm_tags.get(a).is_none())
        });
        // An alarm that may not ask for a reboot (a CPU alarm at peak, say) costs no history
        // read until its tags say it does.
        let prefetch = gate.filter(|_| known.is_some());
        let (facts, current, tags, history) = tokio::join!(
            self.instances.facts(id),
            self.alarms.current(&alarm.name),
            async {
                match tags_arn {
                    Some(arn) => Some(self.alarm_tags(arn).await),
                    None => None,
                }
            },
            async {
                match prefetch {
                    Some(fetch) => Some(self.fetch_history(fetch).await),
                    None => None,
                }
            },
        );
        // An alarm that cannot be described now may have cleared: no action on a guess, and
        // a retry (bounded by the event age) asks again.
        let current = current.map_err(|error| Stop::Failed {
            code: "alarm-describe-failed",
            error,
            retryable: true,
        })?;
        let requested_by = match known {
            Some(why) => why,
            None => {
                let tags = match tags {
                    Some(read) => read,
                    // The event named no ARN: ask with the one CloudWatch reports (a round
                    // trip more, for an event shape that rarely lacks it).
                    None => self.tags_by_current_arn(current.as_ref()).await,
                };
                let tags = tags.map_err(|error| Stop::Failed {
                    code: "alarm-tags-failed",
                    retryable: error.retryable,
                    error,
                })?;
                request::from_tags(alarm, &tags, &self.settings)?
            }
        };
        check_still_alarming(&alarm.name, current.as_ref())?;
        let facts = facts.map_err(|error| Stop::Failed {
            code: "describe-failed",
            retryable: error.retryable,
            error,
        })?;
        Ok(Facts {
            instance: facts,
            requested_by,
            alarm_now: current,
            history,
        })
    }

    /// The alarm's tags by the ARN CloudWatch reports for it (none known: no tags).
    async fn tags_by_current_arn(&self, current: Option<&AlarmFacts>) -> Result<Tags, AwsError> {
        match current.and_then(|c| c.arn.as_deref()) {
            Some(arn) => self.alarm_tags(arn).await,
            None => Ok(Tags::new()),
        }
    }

    /// The alarm's tags, read through the cache.
    async fn alarm_tags(&self, arn: &str) -> Result<Tags, AwsError> {
        if let Some(tags) = self.alarm_tags.get(arn) {
            return Ok(tags);
        }
        let tags = self.alarms.tags(arn).await?;
        self.alarm_tags.put(arn, &tags);
        Ok(tags)
    }

    /// Consults the anomaly gate: judges the history read with the checks, or reads it now
    /// (bounded in time). A read that fails or times out never blocks healing: the gate then
    /// steps aside.
    async fn gate(
        &self,
        alarm: &Alarm,
        id: &str,
        plan: Result<GateFetch, String>,
        prefetched: Option<Result<Vec<Point>, String>>,
    ) -> (Option<SkipReason>, GateReport) {
        let settings = &self.settings.gate;
        let fetch = match plan {
            Ok(f) => f,
            Err(why) => return (None, GateReport::stepped_aside(settings.mode, why)),
        };
        let fetched = match prefetched {
            Some(read) => read,
            None => self.fetch_history(&fetch).await,
        };
        if let Err(e) = &fetched {
            tracing::warn!(alarm = %alarm.name, target = id, error = %e, "anomaly gate: history unavailable, acting without the gate");
        }
        gate::apply_gate(
            alarm,
            id,
            fetch.at,
            fetched.as_deref().map_err(String::as_str),
            settings,
        )
    }

    async fn fetch_history(&self, fetch: &GateFetch) -> Result<Vec<Point>, String> {
        let read = self.history.history(&fetch.query, &fetch.windows);
        match tokio::time::timeout(GATE_FETCH_TIMEOUT, read).await {
            Ok(Ok(points)) => Ok(points),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "cloudwatch:GetMetricData did not answer within {} s",
                GATE_FETCH_TIMEOUT.as_secs()
            )),
        }
    }

    /// The reboot, through the guardrails (opt-in tag, kill switch, dry run, cooldown, caps).
    async fn reboot(
        &self,
        audit: AuditBuilder,
        action: &Reboot,
        reason: &str,
        facts: Option<&InstanceFacts>,
        first: &FirstReboot<'_>,
    ) -> Result<AuditRecord, HandlerError> {
        let id = action.instance_id.as_str();
        let tags = facts
            .into_iter()
            .flat_map(|f| &f.tags)
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let guarded = Guarded {
            target: Target { id, tags },
            would: format!("reboot {id}: {reason}"),
            escalate_refusal: false,
        };
        let instances = &self.instances;
        let done = self
            .common
            .act_guarded(audit, guarded, |audit| async move {
                match instances.reboot(id).await {
                    Ok(()) => self
                        .followed_up(audit, first.verify(id, &first.inv.request_id))
                        .await
                        .acted(format!("rebooted {id}: {reason}")),
                    // AWS answered with an error (throttled, refused): nothing was rebooted, so
                    // the reservation is released and Lambda retries, up to the cap.
                    Err(e) if e.code.is_some() => audit.action_failed("reboot-failed", &e),
                    // No answer (a timeout, a dropped connection): the reboot may have
                    // happened, so it keeps its reservation and a person is told instead.
                    Err(e) => audit
                        .detail("retryable", false)
                        .failed("reboot-failed", e.to_string()),
                }
            })
            .await;
        done.or_else(|failed| failed.into_handler_result())
    }
}

mod follow_up;
#[cfg(test)]
mod tests;

use follow_up::FirstReboot;
