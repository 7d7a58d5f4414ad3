//! `selfheal-aws`: the AWS SDK adapters behind the core's ports, one module (and one cargo
//! feature) per service, plus SDK configuration and error classification. A function enables
//! only the features of the services it calls, so it compiles and links only those SDKs.

pub mod config;
pub mod error;
pub mod tags;

#[cfg(feature = "autoscaling")]
pub mod autoscaling;
#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
#[cfg(feature = "cloudwatch")]
pub mod cloudwatch_alarms;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "ec2")]
pub mod ec2;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "s3")]
pub mod s3_parking;
#[cfg(feature = "scheduler")]
pub mod scheduler;
#[cfg(feature = "sns")]
pub mod sns;
#[cfg(feature = "sqs")]
pub mod sqs;
#[cfg(feature = "ssm")]
pub mod ssm;

pub use config::{endpoint_overridden, sdk_config};
pub use error::from_sdk;

pub use aws_config;
/// The SDK crates, re-exported so that a function (and its tests) name one dependency.
#[cfg(feature = "autoscaling")]
pub use aws_sdk_autoscaling;
#[cfg(feature = "cloudwatch")]
pub use aws_sdk_cloudwatch;
#[cfg(feature = "dynamodb")]
pub use aws_sdk_dynamodb;
#[cfg(feature = "ec2")]
pub use aws_sdk_ec2;
#[cfg(feature = "s3")]
pub use aws_sdk_s3;
#[cfg(feature = "scheduler")]
pub use aws_sdk_scheduler;
#[cfg(feature = "sns")]
pub use aws_sdk_sns;
#[cfg(feature = "sqs")]
pub use aws_sdk_sqs;
#[cfg(feature = "ssm")]
pub use aws_sdk_ssm;
