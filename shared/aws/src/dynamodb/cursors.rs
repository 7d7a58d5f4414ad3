//! Scrub cursors in the ledger table behind the [`Cursors`] port: one item per cursor
//! (`pk = cursor#<name>`), expiring on its own if the job is abandoned.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use selfheal_core::ports::cursors::Cursors;
use selfheal_core::AwsError;

use super::{KEY_ATTRIBUTE, TTL_ATTRIBUTE};
use crate::error::from_sdk;

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
            .map_err(|e| from_sdk("dynamodb:GetItem", name, e))?;
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
                .map_err(|e| from_sdk("dynamodb:PutItem", name, e)),
            None => self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(KEY_ATTRIBUTE, pk(name))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| from_sdk("dynamodb:DeleteItem", name, e)),
        }
    }
}
