//! EC2 instances, as the functions need them: their facts, and a reboot.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::AwsError;

/// What we need to know about an instance to decide about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceFacts {
    pub id: String,
    /// EC2 state name: pending, running, stopping, stopped, shutting-down, terminated.
    pub state: String,
    pub tags: BTreeMap<String, String>,
}

#[async_trait]
pub trait Instances: Send + Sync {
    /// The instance's facts; `None` when it does not exist.
    async fn facts(&self, id: &str) -> Result<Option<InstanceFacts>, AwsError>;
    async fn reboot(&self, id: &str) -> Result<(), AwsError>;
}
