//! The one error type every port returns: which AWS operation failed, on which resource, and
//! whether a retry may fix it. Adapters (crate `selfheal-aws`) build it from SDK errors.

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

/// Error codes that mean "slow down" or "try later", whatever the HTTP status says.
pub const THROTTLING_CODES: &[&str] = &[
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
