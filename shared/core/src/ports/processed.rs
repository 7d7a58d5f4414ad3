//! The consuming service's own record of what it already applied: a DynamoDB table keyed by
//! an id (for the loyalty service, the transaction id). Looked up in batches before work is
//! redone, so that something applied before it failed is not applied twice.

use std::collections::HashSet;

use async_trait::async_trait;

use crate::error::AwsError;

#[async_trait]
pub trait ProcessedLookup: Send + Sync {
    /// Which of `ids` the service has applied.
    async fn applied(&self, ids: &[String]) -> Result<HashSet<String>, AwsError>;
}
