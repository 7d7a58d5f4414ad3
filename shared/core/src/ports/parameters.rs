//! Named parameters an operator can change without a deploy (the kill switch).

use async_trait::async_trait;

use crate::error::AwsError;

/// Reads a named parameter (SSM Parameter Store in production).
#[async_trait]
pub trait Parameters: Send + Sync {
    /// The parameter's value; `None` when it does not exist.
    async fn get(&self, name: &str) -> Result<Option<String>, AwsError>;
}
