//! SDK configuration (built once per cold start) and the one error type every port returns.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

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

/// A failed AWS call: which operation, on which resource, and whether a retry may fix it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} on {resource} failed{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct AwsError {
    pub operation: &'static str,
    pub resource: String,
    pub code: Option<String>,
    pub message: String,
    /// Throttling, 5xx, timeouts and connection failures: worth another attempt later.
    pub retryable: bool,
}

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "EC2ThrottledException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

impl AwsError {
    pub fn new(
        operation: &'static str,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            resource: resource.into(),
            code: None,
            message: message.into(),
            retryable: false,
        }
    }

    pub fn from_sdk<E>(
        operation: &'static str,
        resource: impl Into<String>,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let resource = resource.into();
        let status = err.raw_response().map(|r| r.status().as_u16());
        match &err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                let code = e.code().map(str::to_string);
                let retryable = status.is_some_and(|s| s >= 500 || s == 429)
                    || code
                        .as_deref()
                        .is_some_and(|c| THROTTLING_CODES.contains(&c));
                Self {
                    operation,
                    resource,
                    message: e
                        .message()
                        .map(str::to_string)
                        .unwrap_or_else(|| e.to_string()),
                    code,
                    retryable,
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => Self {
                operation,
                resource,
                code: None,
                message: format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
                retryable: true,
            },
            _ => Self {
                operation,
                resource,
                code: None,
                message: format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
                retryable: false,
            },
        }
    }

    /// A batch call that still left keys unprocessed after the retries: retryable.
    pub fn unprocessed_keys(operation: &'static str, table: &str) -> Self {
        Self {
            operation,
            resource: table.to_string(),
            code: Some("UnprocessedKeys".into()),
            message: "keys still unprocessed after retries".into(),
            retryable: true,
        }
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}
