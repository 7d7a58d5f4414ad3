//! The wiring: settings from the environment and the AWS adapters behind the ports.

use std::process::ExitCode;
use std::sync::Arc;

use selfheal_aws::autoscaling::AutoScalingGroups;
use selfheal_aws::aws_sdk_autoscaling;
use selfheal_aws::aws_sdk_cloudwatch;
use selfheal_aws::aws_sdk_scheduler;
use selfheal_aws::cloudwatch::CloudWatchHistory;
use selfheal_aws::cloudwatch_alarms::CloudWatchAlarms;
use selfheal_aws::scheduler::SchedulerFollowUps;
use selfheal_core::episode::SchedulerSettings;
use selfheal_core::ports::scheduler::FollowUps;
use selfheal_core::ConfigError;
use selfheal_lambda::Boot;

use scale_group::{Deps, Settings, FUNCTION};

#[tokio::main]
async fn main() -> ExitCode {
    selfheal_lambda::start(FUNCTION, |opts| async move {
        let settings = Settings::from_env()?;
        let scheduler = SchedulerSettings::from_env()?;
        let Boot { common, sdk } = selfheal_lambda::from_env(FUNCTION, opts).await?;
        Ok::<_, ConfigError>(Deps {
            common,
            groups: Arc::new(AutoScalingGroups(aws_sdk_autoscaling::Client::new(&sdk))),
            alarms: Arc::new(CloudWatchAlarms(aws_sdk_cloudwatch::Client::new(&sdk))),
            history: Arc::new(CloudWatchHistory::new(&sdk)),
            follow_ups: scheduler.map(|s| {
                let client = aws_sdk_scheduler::Client::new(&sdk);
                Arc::new(SchedulerFollowUps::new(client, s)) as Arc<dyn FollowUps>
            }),
            settings,
        })
    })
    .await
}
