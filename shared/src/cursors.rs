//! Where a long, resumable job (an S3 scrub) stopped, so the next scheduled invocation goes
//! on from there. Kept as one item per cursor in the ledger table (`pk = cursor#<name>`),
//! expiring on its own if the job is abandoned.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::AwsError;
use crate::guard::dynamo::{KEY_ATTRIBUTE, TTL_ATTRIBUTE};

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

const POSITION: &str = "position";

pub struct DynamoCursors {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoCursors {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn pk(name: &str) -> AttributeValue {
    AttributeValue::S(format!("cursor#{name}"))
}

#[async_trait]
impl Cursors for DynamoCursors {
    async fn get(&self, name: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, pk(name))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", name, e))?;
        Ok(out
            .item()
            .and_then(|i| i.get(POSITION))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }

    async fn put(
        &self,
        name: &str,
        position: Option<&str>,
        expires_at: i64,
    ) -> Result<(), AwsError> {
        match position {
            Some(p) => self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY_ATTRIBUTE, pk(name))
                .item(POSITION, AttributeValue::S(p.to_string()))
                .item(TTL_ATTRIBUTE, AttributeValue::N(expires_at.to_string()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk("dynamodb:PutItem", name, e)),
            None => self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(KEY_ATTRIBUTE, pk(name))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk("dynamodb:DeleteItem", name, e)),
        }
    }
}
