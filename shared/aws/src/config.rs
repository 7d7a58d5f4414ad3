//! SDK configuration, built once per cold start, and the one S3 client builder.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the SDK configuration once per cold start. `AWS_ENDPOINT_URL` (and the per-service
/// `AWS_ENDPOINT_URL_<SERVICE>`) are honoured by the SDK's own loader, which is how the local
/// emulator is reached. Standard retry mode (exponential backoff with jitter, 3 attempts) and
/// explicit timeouts keep a sick dependency from eating the whole Lambda timeout.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}

/// True when an endpoint override is configured (the local emulator): S3 then needs
/// path-style addressing, because `bucket.127.0.0.1` does not resolve.
pub fn endpoint_overridden(conf: &SdkConfig) -> bool {
    conf.endpoint_url().is_some()
}

/// The S3 client every function uses: path-style addressing against an emulator, and no SDK
/// response checksum validation (the functions hash bodies themselves, once).
#[cfg(feature = "s3")]
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    s3_client_in(sdk, None)
}

/// [`s3_client`] in another region than the configuration's (a bucket's own region: the SDK
/// does not follow S3's region redirects).
#[cfg(feature = "s3")]
pub fn s3_client_in(sdk: &SdkConfig, region: Option<String>) -> aws_sdk_s3::Client {
    let mut conf = aws_sdk_s3::config::Builder::from(sdk);
    if let Some(r) = region {
        conf = conf.region(aws_sdk_s3::config::Region::new(r));
    }
    let conf = conf
        .force_path_style(endpoint_overridden(sdk))
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// How long one server-side copy request (CopyObject up to the multipart threshold,
/// UploadPartCopy of one part, CompleteMultipartUpload) may take: S3 copies at its own pace,
/// minutes for gigabytes, so the 20 s / 60 s defaults above would cut a good copy short.
pub const COPY_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
pub const COPY_OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

/// The per-request override of the timeouts for copy calls.
#[cfg(feature = "s3")]
pub fn copy_timeouts() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(COPY_ATTEMPT_TIMEOUT)
            .operation_timeout(COPY_OPERATION_TIMEOUT)
            .build(),
    )
}
