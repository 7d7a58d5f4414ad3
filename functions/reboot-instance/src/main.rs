//! The Lambda binary: the one place that names the AWS adapters.

use std::process::ExitCode;
use std::sync::Arc;

use reboot_instance::{Deps, Settings, FUNCTION};
use selfheal_aws::cloudwatch::CloudWatchHistory;
use selfheal_aws::cloudwatch_alarms::CloudWatchAlarms;
use selfheal_aws::ec2::Ec2Instances;
use selfheal_aws::scheduler::SchedulerFollowUps;
use selfheal_aws::{aws_sdk_cloudwatch, aws_sdk_ec2, aws_sdk_scheduler};
use selfheal_core::episode::SchedulerSettings;
use selfheal_lambda::Boot;

#[tokio::main]
async fn main() -> ExitCode {
    selfheal_lambda::start(FUNCTION, |opts| async move {
        // Own settings first: a bad value fails before any AWS call is made.
        let settings = Settings::from_env()?;
        let scheduler = SchedulerSettings::from_env()?;
        let Boot { common, sdk } = selfheal_lambda::from_env(FUNCTION, opts).await?;
        let deps = Deps::new(
            common,
            Arc::new(Ec2Instances(aws_sdk_ec2::Client::new(&sdk))),
            Arc::new(CloudWatchHistory::new(&sdk)),
            Arc::new(CloudWatchAlarms(aws_sdk_cloudwatch::Client::new(&sdk))),
            settings,
        );
        Ok::<_, selfheal_core::ConfigError>(match scheduler {
            Some(s) => deps.with_follow_ups(Arc::new(SchedulerFollowUps::new(
                aws_sdk_scheduler::Client::new(&sdk),
                s,
            ))),
            None => deps,
        })
    })
    .await
}
