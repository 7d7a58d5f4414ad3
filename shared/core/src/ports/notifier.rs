//! Notices to people: what was done, refused by a cap, or failed.

use async_trait::async_trait;

use crate::error::AwsError;

/// Sends notices to people (SNS in production).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, subject: &str, message: &str) -> Result<(), AwsError>;
}
