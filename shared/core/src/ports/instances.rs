//! EC2 instances, as the functions need them: their facts, a reboot (and, for the escalation
//! ladder, a stop and a start), and their status checks.

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
    /// `ebs` or `instance-store` (`None`: not reported). Only an EBS-backed instance keeps its
    /// root volume across a stop.
    pub root_device_type: Option<String>,
}

/// EC2's status checks of an instance: `ok`, `impaired`, `initializing`,
/// `insufficient-data`, `not-applicable` (`None`: not reported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusChecks {
    pub instance: Option<String>,
    pub system: Option<String>,
}

impl StatusChecks {
    /// Both checks pass.
    pub fn ok(&self) -> bool {
        self.instance.as_deref() == Some("ok") && self.system.as_deref() == Some("ok")
    }

    /// A check fails now (as opposed to not known yet).
    pub fn impaired(&self) -> bool {
        self.instance.as_deref() == Some("impaired") || self.system.as_deref() == Some("impaired")
    }
}

#[async_trait]
pub trait Instances: Send + Sync {
    /// The instance's facts; `None` when it does not exist.
    async fn facts(&self, id: &str) -> Result<Option<InstanceFacts>, AwsError>;
    async fn reboot(&self, id: &str) -> Result<(), AwsError>;
    /// Stops the instance (the escalation ladder's stop-start rung; opt-in).
    async fn stop(&self, id: &str) -> Result<(), AwsError>;
    /// Starts a stopped instance (the second half of a stop-start).
    async fn start(&self, id: &str) -> Result<(), AwsError>;
    /// The instance's status checks (closed loop: did the reboot heal it?); `None` when EC2
    /// reports no status for it (it does not exist, or is not running).
    async fn status_checks(&self, id: &str) -> Result<Option<StatusChecks>, AwsError>;
}
