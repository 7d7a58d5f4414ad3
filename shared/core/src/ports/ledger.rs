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
    /// Times of recent actions that failed (nothing changed): they count toward the cap, not
    /// the cooldown, so a retry can come soon but a fix that keeps failing reaches a person.
    pub failures: Vec<i64>,
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
        let failures = self
            .failures
            .iter()
            .copied()
            .filter(|t| *t > cutoff)
            .collect();
        TargetRecord {
            version: self.version + 1,
            actions,
            failures,
        }
    }

    /// The record without the action taken at `at` (the action stood down before changing
    /// anything).
    pub fn without_action(&self, at: i64) -> TargetRecord {
        let mut next = self.clone();
        if let Some(i) = next.actions.iter().rposition(|t| *t == at) {
            next.actions.remove(i);
        }
        next.version += 1;
        next
    }

    /// The record after the action taken at `at` failed.
    pub fn with_failure(&self, at: i64) -> TargetRecord {
        let mut next = self.clone();
        if let Some(i) = next.actions.iter().rposition(|t| *t == at) {
            next.actions.remove(i);
        }
        next.failures.push(at);
        next.version += 1;
        next
    }
}

/// One action in a function's sliding window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetAction {
    pub at: i64,
    pub target: String,
    pub group: Option<String>,
}

/// One target that alarmed (reached the guardrails) recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetAlarm {
    pub at: i64,
    pub target: String,
}

/// What the ledger knows about a whole function: its recent actions (the sliding-window
/// budget and the per-group cap), the targets that alarmed recently, and when the
/// correlated-failure breaker tripped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetRecord {
    /// 0 when there is no record yet.
    pub version: u64,
    pub actions: Vec<FleetAction>,
    pub alarmed: Vec<FleetAlarm>,
    pub tripped_at: Option<i64>,
}

/// One conditional write: it succeeds only if the stored version is still `expected_version`
/// (0: no record yet). `expires_at` is the item's TTL (epoch s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerWrite {
    Target {
        key: String,
        record: TargetRecord,
        expected_version: u64,
        expires_at: i64,
    },
    Fleet {
        key: String,
        record: FleetRecord,
        expected_version: u64,
        expires_at: i64,
    },
}

impl LedgerWrite {
    pub fn key(&self) -> &str {
        match self {
            Self::Target { key, .. } | Self::Fleet { key, .. } => key,
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

    /// The target's record and the function's fleet record, read together (strongly
    /// consistent); defaults (version 0) when absent.
    async fn read(
        &self,
        target_key: &str,
        fleet_key: &str,
    ) -> Result<(TargetRecord, FleetRecord), LedgerError>;

    /// Applies every write or none (one transaction). Returns `false` when any write's
    /// version condition failed (another writer got there first).
    async fn write_all(&self, writes: &[LedgerWrite]) -> Result<bool, LedgerError>;
}
