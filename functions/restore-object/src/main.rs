//! The Lambda binary: the one place that names the AWS adapters.

use std::process::ExitCode;
use std::sync::Arc;

use restore_object::{Deps, Settings, FUNCTION};
use selfheal_aws::aws_sdk_dynamodb;
use selfheal_aws::aws_sdk_scheduler;
use selfheal_aws::dynamodb::DynamoCursors;
use selfheal_aws::s3::S3Objects;
use selfheal_aws::scheduler::SchedulerFollowUps;
use selfheal_core::episode::SchedulerSettings;
use selfheal_core::ports::scheduler::FollowUps;
use selfheal_lambda::Boot;

#[tokio::main]
async fn main() -> ExitCode {
    selfheal_lambda::start(FUNCTION, |opts| async move {
        // Own settings first: a bad value fails before any AWS call is made.
        let settings = Settings::from_env()?;
        let scheduler = SchedulerSettings::from_env()?;
        let Boot { common, sdk } = selfheal_lambda::from_env(FUNCTION, opts).await?;
        // The shared bootstrap has already refused to start without a ledger table.
        let table = common
            .guard
            .policy()
            .ledger_table
            .clone()
            .unwrap_or_default();
        Ok::<_, selfheal_core::ConfigError>(Deps {
            common,
            objects: Arc::new(S3Objects::from_conf(&sdk)),
            cursors: Arc::new(DynamoCursors::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table,
            )),
            settings,
            follow_ups: scheduler.map(|s| {
                let client = aws_sdk_scheduler::Client::new(&sdk);
                Arc::new(SchedulerFollowUps::new(client, s)) as Arc<dyn FollowUps>
            }),
        })
    })
    .await
}
