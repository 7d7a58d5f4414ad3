//! Guardrails: one pipeline every action passes before it is taken.
//!
//! Order: kill switch → execution window → opt-in tag → dry run → correlated-failure breaker
//! → per-target cap and cooldown → per-group cap → the function's sliding-window budget →
//! reservation. The target's record and the function's fleet record are read together (one
//! round trip) and the reservation and the budget are written together, in one conditional
//! transaction (a second round trip), *before* the action: two concurrent invocations for the
//! same target cannot both act, and a storm cannot overrun the budget. An action that then
//! fails is released ([`Guardrails::release_failed`]): it no longer holds the cooldown, so a
//! retry may come, but it still counts toward the cap, so a fix that keeps failing reaches a
//! person.

pub mod fleet;
pub mod limits;
pub mod policy;
pub mod switch;
pub mod window;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use fleet::{check_fleet, FleetLimits};
pub use limits::{check_target, TargetLimits};
pub use policy::{ConfigError, OptInTag, Policy};
pub use switch::{KillSwitch, SwitchSource, SwitchState};

pub use crate::ports::ledger::{FleetRecord, Ledger, LedgerError, LedgerWrite, TargetRecord};
pub use window::ExecutionWindow;

use crate::decision::{SkipCode, SkipReason};

/// What the guardrails allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Go ahead; the action has been recorded in the ledger.
    Act,
    /// Everything would allow it, but dry run is on: change nothing.
    DryRun,
    /// Do not act, for this reason.
    Skip { reason: SkipReason },
}

/// The thing about to be acted on.
pub struct Target<'a, T> {
    /// Stable identifier, unique within the function (instance id, bucket/key, group name).
    pub id: &'a str,
    /// The resource's tags, for the opt-in check.
    pub tags: T,
}

/// How many times a lost race on the ledger is retried before giving up. The fleet record is
/// shared by every invocation of the function, so races are expected in a storm.
const LEDGER_RACE_RETRIES: u32 = 8;

/// Tags that name the group a target belongs to, for the per-group cap: the explicit one
/// first, then the Auto Scaling group EC2 puts on its instances.
pub const GROUP_TAGS: [&str; 2] = ["selfheal:group", "aws:autoscaling:groupName"];

/// What a granted action holds in the ledger, so a failed action can be released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub key: String,
    /// The record written (with the action).
    pub record: TargetRecord,
    pub at: i64,
    pub expires_at: i64,
}

pub struct Guardrails {
    policy: Policy,
    switch: KillSwitch,
    ledger: Arc<dyn Ledger>,
}

impl Guardrails {
    pub fn new(policy: Policy, switch: KillSwitch, ledger: Arc<dyn Ledger>) -> Self {
        Self {
            policy,
            switch,
            ledger,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    pub fn dry_run(&self) -> bool {
        self.policy.dry_run
    }

    pub fn limits(&self) -> TargetLimits {
        TargetLimits {
            cooldown: self.policy.cooldown,
            cap: self.policy.target_cap,
            cap_window: self.policy.target_cap_window,
        }
    }

    pub fn fleet_limits(&self) -> FleetLimits {
        FleetLimits {
            per_hour: self.policy.max_actions_per_hour,
            per_group_per_hour: self.policy.max_actions_per_group_per_hour,
            breaker_targets: self.policy.breaker_targets,
            breaker_window: self.policy.breaker_window,
        }
    }

    fn fleet_key(&self) -> String {
        format!("{}#fleet", self.policy.function)
    }

    /// Checks what does not need the target's tags: the kill switch and the window.
    pub async fn preflight(&self, now: DateTime<Utc>) -> Option<SkipReason> {
        let switch = self.switch.state().await;
        if !switch.enabled {
            return Some(SkipReason::new(
                SkipCode::KillSwitch,
                format!(
                    "kill switch is off (from {:?}): auditing only",
                    switch.source
                )
                .to_lowercase(),
            ));
        }
        if let Some(w) = &self.policy.window {
            if !w.contains(now) {
                return Some(SkipReason::new(
                    SkipCode::OutsideWindow,
                    format!("{now} is outside the execution window"),
                ));
            }
        }
        None
    }

    /// Runs the whole pipeline for one target. `Verdict::Act` means the action is recorded
    /// and must now be taken.
    pub async fn check<'a, T>(
        &self,
        target: Target<'a, T>,
        now: DateTime<Utc>,
    ) -> Result<Verdict, LedgerError>
    where
        T: IntoIterator<Item = (&'a str, &'a str)>,
    {
        Ok(self.check_and_reserve(target, now).await?.0)
    }

    /// [`Guardrails::check`], and with `Verdict::Act` the reservation written.
    pub async fn check_and_reserve<'a, T>(
        &self,
        target: Target<'a, T>,
        now: DateTime<Utc>,
    ) -> Result<(Verdict, Option<Reservation>), LedgerError>
    where
        T: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let skip = |reason| Ok((Verdict::Skip { reason }, None));
        if let Some(reason) = self.preflight(now).await {
            return skip(reason);
        }
        let tags: Vec<(&str, &str)> = target.tags.into_iter().collect();
        if !self.policy.opt_in.matches(tags.iter().copied()) {
            return skip(SkipReason::new(
                SkipCode::NotOptedIn,
                format!(
                    "{} does not carry the opt-in tag {}",
                    target.id, self.policy.opt_in
                ),
            ));
        }
        let group = GROUP_TAGS
            .iter()
            .find_map(|g| tags.iter().find(|(k, _)| k == g).map(|(_, v)| *v))
            .filter(|g| !g.is_empty() && *g != target.id);
        let key = format!("{}#{}", self.policy.function, target.id);
        let ts = now.timestamp();
        // A lost race is retried at once: the read that follows shows the winner's write,
        // which usually refuses (cooldown) or admits with fresh numbers.
        for _ in 0..LEDGER_RACE_RETRIES {
            match self.attempt(&key, target.id, group, ts).await? {
                Attempt::Decided(v, r) => return Ok((v, r)),
                Attempt::LostRace => continue,
            }
        }
        skip(SkipReason::new(
            SkipCode::Cooldown,
            format!("{} is being acted on concurrently", target.id),
        ))
    }

    async fn attempt(
        &self,
        key: &str,
        target: &str,
        group: Option<&str>,
        ts: i64,
    ) -> Result<Attempt, LedgerError> {
        let fleet_key = self.fleet_key();
        let limits = self.limits();
        let fleet_limits = self.fleet_limits();
        let (record, stored) = self.ledger.read(key, &fleet_key).await?;
        let fleet = stored.pruned(ts, &fleet_limits);
        let registered = fleet.clone().with_alarm(target, ts);
        let fleet_expiry = ts + fleet_limits.horizon() + 3600;
        let fleet_write = |record: FleetRecord| LedgerWrite::Fleet {
            key: fleet_key.clone(),
            expected_version: stored.version,
            record: FleetRecord {
                version: stored.version + 1,
                ..record
            },
            expires_at: fleet_expiry,
        };
        let decided = |reason: SkipReason| Attempt::Decided(Verdict::Skip { reason }, None);
        if fleet::should_trip(&registered, &fleet_limits, ts) {
            let reason = fleet::tripped(&registered, &fleet_limits, ts);
            if self.policy.dry_run {
                return Ok(decided(reason));
            }
            let trip = FleetRecord {
                tripped_at: Some(ts),
                ..registered
            };
            // Only the invocation whose write trips it reports the trip (one notice).
            return Ok(if self.ledger.write_all(&[fleet_write(trip)]).await? {
                decided(reason)
            } else {
                Attempt::LostRace
            });
        }
        let refusal = check_fleet(&registered, &fleet_limits, group, ts)
            .and_then(|()| check_target(&record, &limits, ts));
        if let Err(reason) = refusal {
            // A refused target still counts for the breaker; write only when that changes.
            if !self.policy.dry_run
                && !fleet.knows_alarm(target, ts, &fleet_limits)
                && !self.ledger.write_all(&[fleet_write(registered)]).await?
            {
                return Ok(Attempt::LostRace);
            }
            return Ok(decided(reason));
        }
        if self.policy.dry_run {
            return Ok(Attempt::Decided(Verdict::DryRun, None));
        }
        let keep = limits.cap_window.max(limits.cooldown);
        let next = record.with_action(ts, keep);
        let expires_at = ts + keep.as_secs() as i64 + 3600;
        let writes = [
            LedgerWrite::Target {
                key: key.to_string(),
                record: next.clone(),
                expected_version: record.version,
                expires_at,
            },
            fleet_write(registered.with_action(target, group, ts)),
        ];
        if !self.ledger.write_all(&writes).await? {
            return Ok(Attempt::LostRace);
        }
        Ok(Attempt::Decided(
            Verdict::Act,
            Some(Reservation {
                key: key.to_string(),
                record: next,
                at: ts,
                expires_at,
            }),
        ))
    }

    /// Releases a reservation whose action stood down before changing anything (the facts
    /// re-read right before acting said no): neither the cooldown nor the cap keeps it.
    /// Conditional, like [`Guardrails::release_failed`].
    pub async fn release_unused(&self, r: &Reservation) -> Result<bool, LedgerError> {
        let next = r.record.without_action(r.at);
        self.ledger
            .put_target(&r.key, &next, r.record.version, r.expires_at)
            .await
    }

    /// Releases a reservation whose action failed (nothing changed): the target's record no
    /// longer holds the cooldown, but the attempt still counts toward the cap (and the
    /// function's budget). Conditional: a record another invocation wrote since is left alone.
    pub async fn release_failed(&self, r: &Reservation) -> Result<bool, LedgerError> {
        let next = r.record.with_failure(r.at);
        self.ledger
            .put_target(&r.key, &next, r.record.version, r.expires_at)
            .await
    }
}

enum Attempt {
    Decided(Verdict, Option<Reservation>),
    LostRace,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryLedger;
    use std::collections::HashMap;

    fn guard(pairs: &[(&str, &str)], ledger: Arc<MemoryLedger>) -> Guardrails {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let policy = Policy::from_lookup("fn", |k| m.get(k).cloned()).unwrap();
        let switch = KillSwitch::new(None, policy.enabled_fallback);
        Guardrails::new(policy, switch, ledger)
    }

    const TAGGED: [(&str, &str); 1] = [("selfheal:managed", "true")];

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn code(v: Verdict) -> Option<SkipCode> {
        match v {
            Verdict::Skip { reason } => Some(reason.code),
            _ => None,
        }
    }

    #[tokio::test]
    async fn pipeline_order() {
        let l = Arc::new(MemoryLedger::new());
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
            Option<SkipCode>,
        );
        let cases: &[Case] = &[
            (
                &[("SELFHEAL_ENABLED", "false")],
                &TAGGED,
                Some(SkipCode::KillSwitch),
            ),
            (
                &[("SELFHEAL_EXECUTION_WINDOW", "Sat,Sun")],
                &TAGGED,
                Some(SkipCode::OutsideWindow),
            ),
            (
                &[],
                &[("selfheal:managed", "false")],
                Some(SkipCode::NotOptedIn),
            ),
            (&[("SELFHEAL_DRY_RUN", "true")], &TAGGED, None),
        ];
        for (env, tags, want) in cases {
            let g = guard(env, l.clone());
            let v = g
                .check(
                    Target {
                        id: "t",
                        tags: tags.iter().copied(),
                    },
                    now(),
                )
                .await
                .unwrap();
            assert_eq!(code(v.clone()), *want, "{env:?}");
            if want.is_none() {
                assert_eq!(v, Verdict::DryRun);
            }
        }
        // Nothing above wrote to the ledger.
        assert_eq!(l.target("fn#t").await.unwrap(), TargetRecord::default());
    }

    #[tokio::test]
    async fn cooldown_then_cap() {
        let l = Arc::new(MemoryLedger::new());
        let g = guard(
            &[
                ("SELFHEAL_COOLDOWN_SECONDS", "60"),
                ("SELFHEAL_TARGET_CAP", "2"),
            ],
            l.clone(),
        );
        let at = |mins: i64| now() + chrono::Duration::minutes(mins);
        let check = |m| {
            g.check(
                Target {
                    id: "t",
                    tags: TAGGED.iter().copied(),
                },
                at(m),
            )
        };
        assert_eq!(check(0).await.unwrap(), Verdict::Act);
        assert_eq!(code(check(0).await.unwrap()), Some(SkipCode::Cooldown));
        assert_eq!(check(2).await.unwrap(), Verdict::Act);
        let v = check(4).await.unwrap();
        assert_eq!(code(v), Some(SkipCode::TargetCapReached));
        assert!(SkipCode::TargetCapReached.needs_escalation());
    }

    #[tokio::test]
    async fn blast_radius_caps_the_function() {
        let l = Arc::new(MemoryLedger::new());
        let g = guard(&[("SELFHEAL_MAX_ACTIONS_PER_HOUR", "2")], l.clone());
        let mut verdicts = Vec::new();
        for id in ["a", "b", "c"] {
            verdicts.push(code(
                g.check(
                    Target {
                        id,
                        tags: TAGGED.iter().copied(),
                    },
                    now(),
                )
                .await
                .unwrap(),
            ));
        }
        assert_eq!(verdicts, vec![None, None, Some(SkipCode::BlastRadius)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_act_once() {
        let l = Arc::new(MemoryLedger::new());
        let g = Arc::new(guard(&[], l.clone()));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move {
                    g.check(
                        Target {
                            id: "same",
                            tags: TAGGED.iter().copied(),
                        },
                        now(),
                    )
                    .await
                    .unwrap()
                })
            })
            .collect();
        let mut acts = 0;
        for t in tasks {
            if t.await.unwrap() == Verdict::Act {
                acts += 1;
            }
        }
        assert_eq!(acts, 1);
        assert_eq!(
            l.fleet("fn#fleet").actions.len(),
            1,
            "one action in the function's window"
        );
    }

    fn code_str(v: &Verdict) -> Option<&'static str> {
        match v {
            Verdict::Skip { reason } => Some(reason.code.as_str()),
            _ => None,
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-23T{h:02}:{m:02}:00Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Issue 13, item 8: the blast-radius budget was a clock hour, so 2 actions at 10:59 and 2
    /// more at 11:00 all passed a cap of 2 per hour.
    #[tokio::test]
    async fn the_budget_is_a_sliding_hour_not_a_clock_hour() {
        let l = Arc::new(MemoryLedger::new());
        let g = guard(&[("SELFHEAL_MAX_ACTIONS_PER_HOUR", "2")], l.clone());
        let mut verdicts = Vec::new();
        for (id, when) in [
            ("a", at(10, 59)),
            ("b", at(10, 59)),
            ("c", at(11, 0)),
            ("d", at(11, 0)),
        ] {
            let v = g
                .check(
                    Target {
                        id,
                        tags: TAGGED.iter().copied(),
                    },
                    when,
                )
                .await
                .unwrap();
            verdicts.push(code_str(&v));
        }
        assert_eq!(
            verdicts,
            vec![None, None, Some("blast-radius"), Some("blast-radius")]
        );
        let v = g
            .check(
                Target {
                    id: "e",
                    tags: TAGGED.iter().copied(),
                },
                at(12, 0),
            )
            .await
            .unwrap();
        assert_eq!(
            code_str(&v),
            None,
            "an hour later the window has slid past them"
        );
    }

    /// Issue 13, item 8: 20 reboots an hour can be a whole fleet; one group gets its own cap.
    #[tokio::test]
    async fn one_group_cannot_take_the_whole_budget() {
        let l = Arc::new(MemoryLedger::new());
        let g = guard(
            &[("SELFHEAL_MAX_ACTIONS_PER_GROUP_PER_HOUR", "2")],
            l.clone(),
        );
        let web = [
            ("selfheal:managed", "true"),
            ("aws:autoscaling:groupName", "web"),
        ];
        let mut verdicts = Vec::new();
        for id in ["i-1", "i-2", "i-3"] {
            let v = g
                .check(
                    Target {
                        id,
                        tags: web.iter().copied(),
                    },
                    now(),
                )
                .await
                .unwrap();
            verdicts.push(code_str(&v));
        }
        assert_eq!(verdicts, vec![None, None, Some("group-cap")]);
        let other = g
            .check(
                Target {
                    id: "i-4",
                    tags: TAGGED.iter().copied(),
                },
                now(),
            )
            .await
            .unwrap();
        assert_eq!(code_str(&other), None, "another group still has room");
    }

    /// Issue 13, item 8: when many distinct targets alarm at once, a shared dependency is the
    /// likely cause; acting on each would only add damage. The breaker trips once (one
    /// escalation), then refuses quietly until its window has passed.
    #[tokio::test]
    async fn many_distinct_targets_alarming_at_once_trip_the_breaker_once() {
        let l = Arc::new(MemoryLedger::new());
        let g = guard(
            &[
                ("SELFHEAL_BREAKER_TARGETS", "3"),
                ("SELFHEAL_BREAKER_WINDOW_SECONDS", "600"),
            ],
            l.clone(),
        );
        let mut verdicts = Vec::new();
        for (i, id) in ["a", "b", "c", "d", "a"].iter().enumerate() {
            let v = g
                .check(
                    Target {
                        id,
                        tags: TAGGED.iter().copied(),
                    },
                    now() + chrono::Duration::seconds(i as i64),
                )
                .await
                .unwrap();
            verdicts.push(code_str(&v));
        }
        assert_eq!(
            verdicts,
            vec![
                None,
                None,
                Some("breaker-tripped"),
                Some("breaker-open"),
                Some("breaker-open")
            ]
        );
        let later = g
            .check(
                Target {
                    id: "e",
                    tags: TAGGED.iter().copied(),
                },
                now() + chrono::Duration::seconds(700),
            )
            .await
            .unwrap();
        assert_eq!(code_str(&later), None, "closed after its window");
    }
}
