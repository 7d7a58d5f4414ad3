//! The consuming service's processed table behind the [`ProcessedLookup`] port.

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use selfheal_core::ports::processed::ProcessedLookup;
use selfheal_core::AwsError;

use super::batch_get;

/// A table whose partition key (`key_attribute`, a string) is the id.
pub struct DynamoProcessed {
    client: Client,
    table: String,
    key_attribute: String,
}

impl DynamoProcessed {
    pub fn new(client: Client, table: impl Into<String>, key_attribute: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            key_attribute: key_attribute.into(),
        }
    }
}

#[async_trait]
impl ProcessedLookup for DynamoProcessed {
    async fn applied(&self, ids: &[String]) -> Result<HashSet<String>, AwsError> {
        // Only the key comes back: the items may be large and are none of our business.
        let items = batch_get(
            &self.client,
            &self.table,
            &self.key_attribute,
            ids,
            Some(&self.key_attribute),
        )
        .await?;
        Ok(items
            .into_iter()
            .filter_map(|item| match item.get(&self.key_attribute) {
                Some(AttributeValue::S(id)) => Some(id.clone()),
                _ => None,
            })
            .collect())
    }
}
