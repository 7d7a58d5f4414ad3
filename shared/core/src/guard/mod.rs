//! Guardrails: one pipeline every action passes before it is taken.
//!
//! Order: kill switch → execution window → opt-in tag → dry run → per-target cap and
//! cooldown → per-function blast-radius budget → reservation of the target (conditional
//! write). The reservation is written *before* the action, so two concurrent invocations for
//! the same target cannot both act; an action that then fails still counts (a failing fix
//! must not be retried in a tight loop).

pub mod limits;
pub mod policy;
pub mod switch;
pub mod window;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use limits::{check_target, TargetLimits};
pub use policy::{ConfigError, OptInTag, Policy};
pub use switch::{KillSwitch, SwitchSource, SwitchState};

pub use crate::ports::ledger::{Ledger, LedgerError, TargetRecord};
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

/// How many times a lost race on the ledger is retried before giving up.
const LEDGER_RACE_RETRIES: usize = 3;

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
        if let Some(reason) = self.preflight(now).await {
            return Ok(Verdict::Skip { reason });
        }
        if !self.policy.opt_in.matches(target.tags.into_iter()) {
            return Ok(Verdict::Skip {
                reason: SkipReason::new(
                    SkipCode::NotOptedIn,
                    format!(
                        "{} does not carry the opt-in tag {}",
                        target.id, self.policy.opt_in
                    ),
                ),
            });
        }
        let key = format!("{}#{}", self.policy.function, target.id);
        let ts = now.timestamp();
        let limits = self.limits();
        if self.policy.dry_run {
            // Read-only: report what the ledger would say, write nothing.
            let record = self.ledger.target(&key).await?;
            return Ok(match check_target(&record, &limits, ts) {
                Ok(()) => Verdict::DryRun,
                Err(reason) => Verdict::Skip { reason },
            });
        }
        let budget_key = format!("{}#budget#{}", self.policy.function, now.format("%Y%m%d%H"));
        let mut budget_taken = false;
        for _ in 0..LEDGER_RACE_RETRIES {
            let record = self.ledger.target(&key).await?;
            if let Err(reason) = check_target(&record, &limits, ts) {
                if budget_taken {
                    self.ledger.return_budget(&budget_key).await?;
                }
                return Ok(Verdict::Skip { reason });
            }
            if !budget_taken {
                if !self
                    .ledger
                    .take_budget(&budget_key, self.policy.max_actions_per_hour, ts + 2 * 3600)
                    .await?
                {
                    return Ok(Verdict::Skip {
                        reason: SkipReason::new(
                            SkipCode::BlastRadius,
                            format!(
                                "{} already took {} actions this hour (cap)",
                                self.policy.function, self.policy.max_actions_per_hour
                            ),
                        ),
                    });
                }
                budget_taken = true;
            }
            let keep = limits.cap_window.max(limits.cooldown);
            let next = record.with_action(ts, keep);
            if self
                .ledger
                .put_target(
                    &key,
                    &next,
                    record.version,
                    ts + keep.as_secs() as i64 + 3600,
                )
                .await?
            {
                return Ok(Verdict::Act);
            }
            // Lost a race with a concurrent invocation: read again; it will usually show the
            // other invocation's action and refuse by cooldown.
        }
        if budget_taken {
            self.ledger.return_budget(&budget_key).await?;
        }
        Ok(Verdict::Skip {
            reason: SkipReason::new(
                SkipCode::Cooldown,
                format!("{} is being acted on concurrently", target.id),
            ),
        })
    }
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
            l.budget_used(&format!("fn#budget#{}", now().format("%Y%m%d%H"))),
            1,
            "losers returned their budget"
        );
    }
}
