//! EventBridge Scheduler behind the [`FollowUps`] port: one-time schedules (`at(...)`, no
//! flexible window, deleted after they ran) that invoke the function itself with the
//! follow-up's payload.

use async_trait::async_trait;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
};
use chrono::DateTime;
use selfheal_core::episode::{invoked_function_arn, SchedulerSettings};
use selfheal_core::ports::scheduler::{FollowUp, FollowUps};
use selfheal_core::AwsError;

use crate::error::from_sdk;

pub struct SchedulerFollowUps {
    client: aws_sdk_scheduler::Client,
    settings: SchedulerSettings,
}

impl SchedulerFollowUps {
    pub fn new(client: aws_sdk_scheduler::Client, settings: SchedulerSettings) -> Self {
        Self { client, settings }
    }

    /// The function to call back: the setting, or the ARN Lambda invoked this one by.
    fn target_arn(&self) -> Result<String, AwsError> {
        self.settings
            .target_arn
            .clone()
            .or_else(|| invoked_function_arn().map(str::to_string))
            .ok_or_else(|| {
                AwsError::new(
                    "scheduler:CreateSchedule",
                    &self.settings.group,
                    "the function's own ARN is unknown (not invoked by Lambda yet, and \
                     SELFHEAL_FOLLOW_UP_TARGET_ARN is not set)",
                )
            })
    }

    fn resource(&self, name: &str) -> String {
        format!("{}/{name}", self.settings.group)
    }
}

/// Scheduler's one-time expression: `at(yyyy-mm-ddThh:mm:ss)`, read in the schedule's time
/// zone (UTC here).
pub fn at_expression(at: i64) -> Option<String> {
    DateTime::from_timestamp(at, 0).map(|t| format!("at({})", t.format("%Y-%m-%dT%H:%M:%S")))
}

#[async_trait]
impl FollowUps for SchedulerFollowUps {
    async fn schedule(&self, f: &FollowUp) -> Result<(), AwsError> {
        const OP: &str = "scheduler:CreateSchedule";
        let resource = self.resource(&f.name);
        let invalid = |msg: String| AwsError::new(OP, resource.clone(), msg);
        let expression =
            at_expression(f.at).ok_or_else(|| invalid(format!("time {} is out of range", f.at)))?;
        let target = Target::builder()
            .arn(self.target_arn()?)
            .role_arn(&self.settings.role_arn)
            .input(&f.payload)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let sent = self
            .client
            .create_schedule()
            .name(&f.name)
            .group_name(&self.settings.group)
            .schedule_expression(expression)
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(target)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = from_sdk(OP, resource, e);
                // The same name is the same action and attempt: a retried invocation already
                // scheduled it.
                if e.is_code("ConflictException") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn delete(&self, name: &str) -> Result<(), AwsError> {
        let out = self
            .client
            .delete_schedule()
            .name(name)
            .group_name(&self.settings.group)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = from_sdk("scheduler:DeleteSchedule", self.resource(name), e);
                if e.is_code("ResourceNotFoundException") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_time_expression_is_utc_seconds() {
        assert_eq!(
            at_expression(1_700_000_000).as_deref(),
            Some("at(2023-11-14T22:13:20)")
        );
    }
}
