//! Auto Scaling groups, as the functions need them: their size bounds, tags and in-progress
//! scaling activities, and a change of desired capacity.

use std::collections::BTreeMap;

/// Re-exported so that other implementations of [`Groups`] (test doubles, wrappers) need no
/// dependency of their own.
pub use async_trait::async_trait;
use serde::Serialize;

use crate::error::AwsError;

/// What we need to know about a group to decide about resizing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupFacts {
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired: u32,
    pub tags: BTreeMap<String, String>,
    /// Scaling activities that have not finished (neither successful, failed nor cancelled),
    /// as `id (status): description`.
    pub activities_in_progress: Vec<String>,
}

#[async_trait]
pub trait Groups: Send + Sync {
    /// The group's facts; `None` when it does not exist.
    async fn facts(&self, name: &str) -> Result<Option<GroupFacts>, AwsError>;
    /// Sets the group's desired capacity, immediately (the caller's ledger is the cooldown).
    async fn set_desired(&self, name: &str, desired: u32) -> Result<(), AwsError>;
}
