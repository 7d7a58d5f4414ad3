//! The guardrails' memory: what was done to each target, and the per-period budgets. Records
//! are versioned; a write succeeds only if the version it read is still current (optimistic
//! concurrency via conditional writes).

use std::time::Duration;

use async_trait::async_trait;

use crate::error::AwsError;

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
