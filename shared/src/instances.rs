//! EC2 instances, as the functions need them: their facts, and a reboot.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;

use crate::aws::AwsError;

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

pub struct Ec2Instances(pub aws_sdk_ec2::Client);

#[async_trait]
impl Instances for Ec2Instances {
    async fn facts(&self, id: &str) -> Result<Option<InstanceFacts>, AwsError> {
        let out = match self.0.describe_instances().instance_ids(id).send().await {
            Ok(out) => out,
            Err(e) => {
                let err = AwsError::from_sdk("ec2:DescribeInstances", id, e);
                // Unknown or malformed ids are answers, not failures.
                if err.is_code("InvalidInstanceID.NotFound")
                    || err.is_code("InvalidInstanceID.Malformed")
                {
                    return Ok(None);
                }
                return Err(err);
            }
        };
        let instance = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id));
        Ok(instance.map(|i| InstanceFacts {
            id: id.to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_else(|| "unknown".into()),
            tags: i
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_string(),
                        t.value().unwrap_or_default().to_string(),
                    ))
                })
                .collect(),
        }))
    }

    async fn reboot(&self, id: &str) -> Result<(), AwsError> {
        self.0
            .reboot_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk("ec2:RebootInstances", id, e))
    }
}
