//! Auto Scaling behind the [`Groups`] port.

use aws_sdk_autoscaling::types::ScalingActivityStatusCode;
use selfheal_core::ports::groups::{async_trait, GroupFacts, Groups};
use selfheal_core::AwsError;

use crate::error::from_sdk;
use crate::tags::tag_map;

/// How many recent activities are read to find unfinished ones. Activities are returned
/// newest first, and an unfinished one is always among the newest.
const RECENT_ACTIVITIES: i32 = 20;

pub struct AutoScalingGroups(pub aws_sdk_autoscaling::Client);

#[async_trait]
impl Groups for AutoScalingGroups {
    async fn facts(&self, name: &str) -> Result<Option<GroupFacts>, AwsError> {
        let out = self
            .0
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| from_sdk("autoscaling:DescribeAutoScalingGroups", name, e))?;
        // An unknown name is an empty answer, not an error.
        let Some(group) = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
        else {
            return Ok(None);
        };
        let size = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
        let activities = self
            .0
            .describe_scaling_activities()
            .auto_scaling_group_name(name)
            .max_records(RECENT_ACTIVITIES)
            .send()
            .await
            .map_err(|e| from_sdk("autoscaling:DescribeScalingActivities", name, e))?;
        let activities_in_progress = activities
            .activities()
            .iter()
            .filter(|a| {
                !matches!(
                    a.status_code(),
                    Some(
                        ScalingActivityStatusCode::Successful
                            | ScalingActivityStatusCode::Failed
                            | ScalingActivityStatusCode::Cancelled
                    )
                )
            })
            .map(|a| {
                format!(
                    "{} ({}): {}",
                    a.activity_id().unwrap_or("?"),
                    a.status_code().map(|s| s.as_str()).unwrap_or("unknown"),
                    a.description().unwrap_or_default()
                )
            })
            .collect();
        Ok(Some(GroupFacts {
            name: name.to_string(),
            min_size: size(group.min_size()),
            max_size: size(group.max_size()),
            desired: size(group.desired_capacity()),
            tags: tag_map(group.tags(), |t| t.key(), |t| t.value()),
            activities_in_progress,
        }))
    }

    async fn set_desired(&self, name: &str, desired: u32) -> Result<(), AwsError> {
        let capacity = i32::try_from(desired).map_err(|_| {
            AwsError::new(
                "autoscaling:SetDesiredCapacity",
                name,
                format!("desired capacity {desired} is out of range"),
            )
        })?;
        self.0
            .set_desired_capacity()
            .auto_scaling_group_name(name)
            .desired_capacity(capacity)
            // The group's own cooldown would silently drop the change; our ledger already
            // enforces the cooldown we want.
            .honor_cooldown(false)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| from_sdk("autoscaling:SetDesiredCapacity", name, e))
    }
}
