//! Idempotency records in the ledger table: "this piece of work is being done" (a claim with
//! a lease) and "this piece of work was done" (with its outcome). Keys are namespaced by the
//! caller (`<function>#idem#...`); items share the ledger's `pk` key and `expires_at` TTL.
//!
//! Claims are conditional writes — an item is claimed only when it is absent or its lease ran
//! out — made in `TransactWriteItems` requests so that claiming a batch costs one call. An
//! optional budget counter is updated in the same transaction, so a blast-radius cap costs no
//! extra call either.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::error::AwsError;

/// What the ledger says about one piece of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Claimed by `owner` (a request id) until `lease_until` (epoch seconds).
    InProgress { lease_until: i64, owner: String },
    /// Done at `at` (epoch seconds) with this outcome.
    Done {
        outcome: String,
        detail: String,
        at: i64,
    },
}

/// A claim to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: String,
    pub owner: String,
    pub lease_until: i64,
    /// TTL of the item (epoch seconds).
    pub expires_at: i64,
    /// Counts against the budget passed to `claim`.
    pub uses_budget: bool,
}

/// A counter capped per period (`key` names the period), taken in the same transaction as
/// the claims that use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub key: String,
    pub cap: u32,
    pub expires_at: i64,
}

/// How one claim went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimResult {
    Claimed,
    /// Someone else holds a live claim, or the work is done.
    Conflict,
    /// The budget had no room for it.
    BudgetRefused,
}

/// A finished piece of work to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    pub key: String,
    pub outcome: String,
    pub detail: String,
    pub at: i64,
    pub expires_at: i64,
}

#[async_trait]
pub trait IdempotencyLedger: Send + Sync {
    /// The state of each key that has a record (strongly consistent reads).
    async fn entries(&self, keys: &[String]) -> Result<HashMap<String, State>, AwsError>;

    /// Claims each key unless it is held by a live claim or done; `now` decides whether a
    /// lease ran out. One result per claim, in order.
    async fn claim(
        &self,
        claims: &[Claim],
        budget: Option<&Budget>,
        now: i64,
    ) -> Result<Vec<ClaimResult>, AwsError>;

    /// Records finished work (`done`, unconditional: the caller holds the claim) and drops
    /// claims whose work did not happen (`release`), in as few calls as possible.
    async fn settle(&self, done: &[Settle], release: &[String]) -> Result<(), AwsError>;
}
