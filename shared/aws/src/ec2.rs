//! EC2 behind the [`Instances`] port: DescribeInstances, RebootInstances, StopInstances,
//! StartInstances and DescribeInstanceStatus.

use async_trait::async_trait;
use selfheal_core::ports::instances::{InstanceFacts, Instances, StatusChecks};
use selfheal_core::AwsError;

use crate::error::from_sdk;
use crate::tags::tag_map;

pub struct Ec2Instances(pub aws_sdk_ec2::Client);

#[async_trait]
impl Instances for Ec2Instances {
    async fn facts(&self, id: &str) -> Result<Option<InstanceFacts>, AwsError> {
        let out = match self.0.describe_instances().instance_ids(id).send().await {
            Ok(out) => out,
            Err(e) => {
                let err = from_sdk("ec2:DescribeInstances", id, e);
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
            tags: tag_map(i.tags(), |t| t.key(), |t| t.value()),
            root_device_type: i.root_device_type().map(|d| d.as_str().to_string()),
        }))
    }

    async fn reboot(&self, id: &str) -> Result<(), AwsError> {
        self.0
            .reboot_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| from_sdk("ec2:RebootInstances", id, e))
    }

    async fn stop(&self, id: &str) -> Result<(), AwsError> {
        self.0
            .stop_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| from_sdk("ec2:StopInstances", id, e))
    }

    async fn start(&self, id: &str) -> Result<(), AwsError> {
        self.0
            .start_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| from_sdk("ec2:StartInstances", id, e))
    }

    async fn status_checks(&self, id: &str) -> Result<Option<StatusChecks>, AwsError> {
        let out = match self
            .0
            .describe_instance_status()
            .instance_ids(id)
            .include_all_instances(true)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let err = from_sdk("ec2:DescribeInstanceStatus", id, e);
                if err.is_code("InvalidInstanceID.NotFound")
                    || err.is_code("InvalidInstanceID.Malformed")
                {
                    return Ok(None);
                }
                return Err(err);
            }
        };
        let summary = |s: Option<&aws_sdk_ec2::types::InstanceStatusSummary>| {
            s.and_then(|s| s.status()).map(|s| s.as_str().to_string())
        };
        Ok(out
            .instance_statuses()
            .iter()
            .find(|s| s.instance_id() == Some(id))
            .map(|s| StatusChecks {
                instance: summary(s.instance_status()),
                system: summary(s.system_status()),
            }))
    }
}
