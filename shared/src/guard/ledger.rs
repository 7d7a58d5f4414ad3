//! The ledger remembers what was done, so cooldowns and caps hold across invocations and
//! concurrent invocations cannot both act. Records are versioned; a write succeeds only if
//! the version it read is still current (optimistic concurrency via conditional writes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::aws::AwsError;
use crate::decision::{SkipCode, SkipReason};

/// What the ledger knows about one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetRecord {
    /// 0 when the target has no record yet.
    pub version: u64,
    /// Times (epoch seconds) of recent actions, oldest first.
    pub actions: Vec<i64>,
}

impl TargetRecord {
    pub fn last_action(&self) -> Option<i64> {
        self.actions.last().copied()
    }

    /// The record after one more action at `now`, with actions older than `keep` dropped.
    pub fn with_action(&self, now: i64, keep: Duration) -> TargetRecord {
        let cutoff = now - keep.as_secs() as i64;
        let mut actions: Vec<i64> = self
            .actions
            .iter()
            .copied()
            .filter(|t| *t > cutoff)
            .collect();
        actions.push(now);
        TargetRecord {
            version: self.version + 1,
            actions,
        }
    }
}

/// The limits the ledger enforces per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetLimits {
    pub cooldown: Duration,
    pub cap: u32,
    pub cap_window: Duration,
}

/// Pure check of a target's record against its limits at `now` (epoch seconds). The cap is
/// checked first: a target that keeps failing must reach a person, even inside a cooldown.
pub fn check_target(
    record: &TargetRecord,
    limits: &TargetLimits,
    now: i64,
) -> Result<(), SkipReason> {
    let window_start = now - limits.cap_window.as_secs() as i64;
    let in_window = record.actions.iter().filter(|t| **t > window_start).count() as u32;
    if in_window >= limits.cap {
        return Err(SkipReason::new(
            SkipCode::TargetCapReached,
            format!(
                "{in_window} actions in the last {}; cap is {} — escalating to a person instead of acting again",
                human(limits.cap_window),
                limits.cap
            ),
        ));
    }
    if let Some(last) = record.last_action() {
        let since = now - last;
        if since < limits.cooldown.as_secs() as i64 {
            return Err(SkipReason::new(
                SkipCode::Cooldown,
                format!(
                    "last action {}s ago; cooldown is {}",
                    since.max(0),
                    human(limits.cooldown)
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}min", s / 60)
    } else {
        format!("{s}s")
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger: {0}")]
    Aws(#[from] AwsError),
    #[error("ledger item {key} is malformed: {detail}")]
    Malformed { key: String, detail: String },
}

impl LedgerError {
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Aws(e) if e.retryable)
    }
}

/// Storage behind the guardrails. `key`s are namespaced by the caller.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The target's record; a default (version 0) record when there is none.
    async fn target(&self, key: &str) -> Result<TargetRecord, LedgerError>;

    /// Stores `next` if the stored version is still `expected_version` (0: no record yet).
    /// Returns `false` when another writer got there first. `expires_at` is the TTL (epoch s).
    async fn put_target(
        &self,
        key: &str,
        next: &TargetRecord,
        expected_version: u64,
        expires_at: i64,
    ) -> Result<bool, LedgerError>;

    /// Takes one unit from a counter capped at `cap`; `false` when the cap is reached.
    async fn take_budget(&self, key: &str, cap: u32, expires_at: i64) -> Result<bool, LedgerError>;

    /// Gives back a unit taken by `take_budget` (when the action it was for did not happen).
    async fn return_budget(&self, key: &str) -> Result<(), LedgerError>;
}

/// An in-memory ledger for unit tests and local experiments. Same semantics as DynamoDB's
/// conditional writes, under one mutex.
#[derive(Default)]
pub struct MemoryLedger {
    targets: Mutex<HashMap<String, TargetRecord>>,
    budgets: Mutex<HashMap<String, u32>>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn budget_used(&self, key: &str) -> u32 {
        self.budgets
            .lock()
            .map(|b| b.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

fn poisoned(key: &str) -> LedgerError {
    LedgerError::Malformed {
        key: key.to_string(),
        detail: "in-memory ledger lock poisoned".into(),
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn target(&self, key: &str) -> Result<TargetRecord, LedgerError> {
        let targets = self.targets.lock().map_err(|_| poisoned(key))?;
        Ok(targets.get(key).cloned().unwrap_or_default())
    }

    async fn put_target(
        &self,
        key: &str,
        next: &TargetRecord,
        expected_version: u64,
        _expires_at: i64,
    ) -> Result<bool, LedgerError> {
        let mut targets = self.targets.lock().map_err(|_| poisoned(key))?;
        let current = targets.get(key).map(|r| r.version).unwrap_or(0);
        if current != expected_version {
            return Ok(false);
        }
        targets.insert(key.to_string(), next.clone());
        Ok(true)
    }

    async fn take_budget(
        &self,
        key: &str,
        cap: u32,
        _expires_at: i64,
    ) -> Result<bool, LedgerError> {
        let mut budgets = self.budgets.lock().map_err(|_| poisoned(key))?;
        let used = budgets.entry(key.to_string()).or_insert(0);
        if *used >= cap {
            return Ok(false);
        }
        *used += 1;
        Ok(true)
    }

    async fn return_budget(&self, key: &str) -> Result<(), LedgerError> {
        let mut budgets = self.budgets.lock().map_err(|_| poisoned(key))?;
        if let Some(used) = budgets.get_mut(key) {
            *used = used.saturating_sub(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TargetLimits = TargetLimits {
        cooldown: Duration::from_secs(900),
        cap: 3,
        cap_window: Duration::from_secs(6 * 3600),
    };

    #[test]
    fn check_target_table() {
        let now = 100_000;
        let rec = |actions: &[i64]| TargetRecord {
            version: 1,
            actions: actions.to_vec(),
        };
        let cases: &[(&[i64], Option<SkipCode>)] = &[
            (&[], None),
            (&[now - 901], None),
            (&[now - 899], Some(SkipCode::Cooldown)),
            (
                &[now - 5000, now - 4000, now - 3000],
                Some(SkipCode::TargetCapReached),
            ),
            (&[now - 30000, now - 4000, now - 3000], None),
            (
                &[now - 3000, now - 2000, now - 10],
                Some(SkipCode::TargetCapReached),
            ),
        ];
        for (actions, want) in cases {
            let got = check_target(&rec(actions), &LIMITS, now)
                .err()
                .map(|r| r.code);
            assert_eq!(got, *want, "{actions:?}");
        }
    }

    #[test]
    fn with_action_prunes_old_entries() {
        let r = TargetRecord {
            version: 4,
            actions: vec![1, 50_000, 90_000],
        };
        let next = r.with_action(100_000, Duration::from_secs(6 * 3600));
        assert_eq!(next.version, 5);
        assert_eq!(next.actions, vec![90_000, 100_000]);
    }

    #[tokio::test]
    async fn memory_ledger_is_conditional() {
        let l = MemoryLedger::new();
        let r = TargetRecord::default().with_action(10, Duration::from_secs(60));
        assert!(l.put_target("k", &r, 0, 0).await.unwrap());
        assert!(
            !l.put_target("k", &r, 0, 0).await.unwrap(),
            "second writer with a stale version loses"
        );
        assert_eq!(l.target("k").await.unwrap(), r);
        assert!(l.take_budget("b", 1, 0).await.unwrap());
        assert!(!l.take_budget("b", 1, 0).await.unwrap());
        l.return_budget("b").await.unwrap();
        assert_eq!(l.budget_used("b"), 0);
    }
}
