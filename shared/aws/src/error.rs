//! From SDK errors to the core's [`AwsError`]: the operation, the resource, the service's
//! error code, and whether a retry may fix it.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use selfheal_core::error::THROTTLING_CODES;
use selfheal_core::AwsError;

/// Classifies an SDK error: throttling codes, 5xx and 429 answers, timeouts and connection
/// failures are retryable; every other service error is not.
pub fn from_sdk<E>(
    operation: &'static str,
    resource: impl Into<String>,
    err: SdkError<E, HttpResponse>,
) -> AwsError
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
            AwsError {
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
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            AwsError {
                operation,
                resource,
                code: None,
                message: format!("{}", DisplayErrorContext(&err)),
                retryable: true,
            }
        }
        _ => AwsError {
            operation,
            resource,
            code: None,
            message: format!("{}", DisplayErrorContext(&err)),
            retryable: false,
        },
    }
}
