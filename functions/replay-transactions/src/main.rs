//! Wiring: the one place that names the AWS adapters behind replay-transactions' ports.

use std::process::ExitCode;
use std::sync::Arc;

use replay_transactions::{Handler, Ports, Settings, FUNCTION};
use selfheal_aws::dynamodb::{DynamoIdempotency, DynamoProcessed};
use selfheal_aws::s3_parking::S3Parking;
use selfheal_aws::scheduler::SchedulerFollowUps;
use selfheal_aws::sqs::SqsQueues;
use selfheal_aws::{aws_sdk_dynamodb, aws_sdk_scheduler, aws_sdk_sqs};
use selfheal_core::episode::SchedulerSettings;
use selfheal_core::ports::parking::{ParkingLocation, ParkingStore, QueueParking};
use selfheal_core::ports::processed::ProcessedLookup;
use selfheal_core::ports::queues::Queues;
use selfheal_core::ports::scheduler::FollowUps;
use selfheal_lambda::Boot;

#[tokio::main]
async fn main() -> ExitCode {
    selfheal_lambda::start(FUNCTION, |opts| async move {
        let Boot { common, sdk } = selfheal_lambda::from_env(FUNCTION, opts).await?;
        let settings = Settings::from_env()?;
        let scheduler = SchedulerSettings::from_env()?;
        let queues: Arc<dyn Queues> = Arc::new(SqsQueues(aws_sdk_sqs::Client::new(&sdk)));
        let parking: Arc<dyn ParkingStore> = match &settings.parking {
            ParkingLocation::S3 { bucket, prefix } => Arc::new(S3Parking::new(
                selfheal_aws::config::s3_client(&sdk),
                bucket,
                prefix,
            )),
            ParkingLocation::Queue { url } => Arc::new(QueueParking::new(queues.clone(), url)),
        };
        let spill = match &settings.spill {
            Some(ParkingLocation::S3 { bucket, prefix }) => Some(Arc::new(S3Parking::new(
                selfheal_aws::config::s3_client(&sdk),
                bucket,
                prefix,
            ))
                as Arc<dyn ParkingStore>),
            _ => None,
        };
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        // The shared bootstrap has already refused to start without a ledger table.
        let table = common
            .guard
            .policy()
            .ledger_table
            .clone()
            .unwrap_or_default();
        let ledger = Arc::new(DynamoIdempotency::new(ddb.clone(), table));
        let processed = settings.processed_table.as_ref().map(|t| {
            Arc::new(DynamoProcessed::new(ddb, t, &settings.processed_key))
                as Arc<dyn ProcessedLookup>
        });
        let follow_ups = scheduler.map(|s| {
            let client = aws_sdk_scheduler::Client::new(&sdk);
            Arc::new(SchedulerFollowUps::new(client, s)) as Arc<dyn FollowUps>
        });
        let ports = Ports {
            queues,
            parking,
            spill,
            ledger,
            processed,
            follow_ups,
        };
        Ok::<_, selfheal_core::ConfigError>(Handler::new(common, settings, ports))
    })
    .await
}
