//! Auto Scaling groups, as the functions need them: their size bounds, tags and in-progress
//! scaling activities, and a change of desired capacity.

use std::collections::BTreeMap;

/// Re-exported so that other implementations of [`Groups`] (test doubles, wrappers) need no
/// dependency of their own.
pub use async_trait::async_trait;
use aws_sdk_autoscaling::types::ScalingActivityStatusCode;
use serde::Serialize;

use crate::aws::AwsError;

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
            .map_err(|e| AwsError::from_sdk("autoscaling:DescribeAutoScalingGroups", name, e))?;
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
            .map_err(|e| AwsError::from_sdk("autoscaling:DescribeScalingActivities", name, e))?;
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
            tags: group
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_string(),
                        t.value().unwrap_or_default().to_string(),
                    ))
                })
                .collect(),
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
            .map_err(|e| AwsError::from_sdk("autoscaling:SetDesiredCapacity", name, e))
    }
}
