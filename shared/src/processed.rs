//! The consuming service's own record of what it already applied: a DynamoDB table keyed by
//! an id (for the loyalty service, the transaction id). Looked up in batches before work is
//! redone, so that something applied before it failed is not applied twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;

use crate::aws::AwsError;

#[async_trait]
pub trait ProcessedLookup: Send + Sync {
    /// Which of `ids` the service has applied.
    async fn applied(&self, ids: &[String]) -> Result<HashSet<String>, AwsError>;
}

/// Keys per `BatchGetItem` request (a DynamoDB limit).
const KEYS_PER_GET: usize = 100;
const ROUNDS: u32 = 5;

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
        let mut unique: Vec<&String> = ids.iter().collect();
        unique.sort();
        unique.dedup();
        let mut found = HashSet::new();
        for chunk in unique.chunks(KEYS_PER_GET) {
            let mut req = KeysAndAttributes::builder()
                // Only the key comes back: the items may be large and are none of our business.
                .projection_expression("#k")
                .expression_attribute_names("#k", &self.key_attribute)
                .consistent_read(true);
            for id in chunk {
                req = req.keys(HashMap::from([(
                    self.key_attribute.clone(),
                    AttributeValue::S((*id).clone()),
                )]));
            }
            let mut pending =
                Some(req.build().map_err(|e| {
                    AwsError::new("dynamodb:BatchGetItem", &self.table, e.to_string())
                })?);
            for round in 0..=ROUNDS {
                let Some(req) = pending.take() else { break };
                if round > 0 {
                    tokio::time::sleep(Duration::from_millis(25 << round)).await;
                }
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("dynamodb:BatchGetItem", &self.table, e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if let Some(AttributeValue::S(id)) = item.get(&self.key_attribute) {
                        found.insert(id.clone());
                    }
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
            }
            if pending.is_some() {
                return Err(AwsError::unprocessed_keys(
                    "dynamodb:BatchGetItem",
                    &self.table,
                ));
            }
        }
        Ok(found)
    }
}
