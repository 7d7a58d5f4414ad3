//! DynamoDB adapters (the guardrails' ledger, idempotency records, scrub cursors, the
//! consumer's processed table) and the item helpers they share.

pub mod cursors;
pub mod idempotency;
pub mod ledger;
pub mod processed;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use selfheal_core::AwsError;

use crate::error::from_sdk;

pub use cursors::DynamoCursors;
pub use idempotency::DynamoIdempotency;
pub use ledger::DynamoLedger;
pub use processed::DynamoProcessed;

/// Partition key attribute of the ledger table.
pub const KEY_ATTRIBUTE: &str = "pk";
/// TTL attribute of the ledger table (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// Keys per `BatchGetItem` request (a DynamoDB limit).
const KEYS_PER_GET: usize = 100;
/// Rounds of retrying unprocessed keys (and, for callers, a transaction that lost a race).
pub(crate) const ROUNDS: u32 = 5;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The per-item cancellation codes of a `TransactWriteItems` that DynamoDB cancelled
/// (`ConditionalCheckFailed`, `TransactionConflict`, `None`, ...), in request order; `None`
/// when the error is not a cancellation.
pub(crate) fn cancellation_reasons(
    err: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> Option<Vec<Option<String>>> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(tc)) => Some(
            tc.cancellation_reasons()
                .iter()
                .map(|r| r.code().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

pub(crate) async fn backoff(round: u32) {
    tokio::time::sleep(Duration::from_millis(25 << round.min(6))).await;
}

pub(crate) type Item = HashMap<String, AttributeValue>;

/// Reads the items whose string key `key_attribute` is one of `ids` (strongly consistent), in
/// `BatchGetItem` requests of at most 100 keys, retrying unprocessed keys with backoff. Keys
/// still unprocessed after the retries are a retryable error. `projection` limits the
/// attributes read (`None`: whole items).
pub(crate) async fn batch_get(
    client: &Client,
    table: &str,
    key_attribute: &str,
    ids: &[String],
    projection: Option<&str>,
) -> Result<Vec<Item>, AwsError> {
    let mut unique: Vec<&String> = ids.iter().collect();
    unique.sort();
    unique.dedup();
    let mut found = Vec::new();
    for chunk in unique.chunks(KEYS_PER_GET) {
        let mut request = KeysAndAttributes::builder().consistent_read(true);
        if let Some(p) = projection {
            request = request
                .projection_expression("#k")
                .expression_attribute_names("#k", p);
        }
        for id in chunk {
            request = request.keys(HashMap::from([(key_attribute.to_string(), s(*id))]));
        }
        let mut pending = Some(
            request
                .build()
                .map_err(|e| AwsError::new("dynamodb:BatchGetItem", table, e.to_string()))?,
        );
        for round in 0..=ROUNDS {
            let Some(req) = pending.take() else { break };
            if round > 0 {
                backoff(round).await;
            }
            let out = client
                .batch_get_item()
                .request_items(table, req)
                .send()
                .await
                .map_err(|e| from_sdk("dynamodb:BatchGetItem", table, e))?;
            found.extend(
                out.responses
                    .unwrap_or_default()
                    .remove(table)
                    .unwrap_or_default(),
            );
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys().is_empty());
        }
        if pending.is_some() {
            return Err(AwsError::unprocessed_keys("dynamodb:BatchGetItem", table));
        }
    }
    Ok(found)
}
