//! Where a long, resumable job (an S3 scrub) stopped, so the next scheduled invocation goes
//! on from there. The DynamoDB adapter keeps one item per cursor in the ledger table
//! (`pk = cursor#<name>`), expiring on its own if the job is abandoned.

use async_trait::async_trait;

use crate::error::AwsError;

#[async_trait]
pub trait Cursors: Send + Sync {
    async fn get(&self, name: &str) -> Result<Option<String>, AwsError>;
    /// Stores the position; `None` clears it (the job finished: next time starts over).
    async fn put(
        &self,
        name: &str,
        position: Option<&str>,
        expires_at: i64,
    ) -> Result<(), AwsError>;
}
