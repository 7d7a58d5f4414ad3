//! SQS behind the [`Queues`] port: as few `SendMessageBatch` calls as SQS's limits allow.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use selfheal_core::ports::queues::{
    chunk_for_batches, AttributeValue, OutgoingMessage, Queues, SendError,
};
use selfheal_core::AwsError;

use crate::error::from_sdk;

fn to_sdk(v: &AttributeValue) -> Result<MessageAttributeValue, String> {
    let b = match v {
        AttributeValue::String { data_type, value } => MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value),
        AttributeValue::Binary { data_type, value } => MessageAttributeValue::builder()
            .data_type(data_type)
            .binary_value(Blob::new(value.clone())),
    };
    b.build().map_err(|e| e.to_string())
}

pub struct SqsQueues(pub aws_sdk_sqs::Client);

impl SqsQueues {
    /// Sends one request; the error of the request when it failed as a whole.
    async fn send_chunk(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
        chunk: &[usize],
        results: &mut [Option<Result<String, SendError>>],
    ) -> Option<AwsError> {
        let mut req = self.0.send_message_batch().queue_url(queue_url);
        let mut sent_any = false;
        for &i in chunk {
            let Some(m) = messages.get(i) else { continue };
            match entry(i, m) {
                Ok(e) => {
                    req = req.entries(e);
                    sent_any = true;
                }
                Err(detail) => {
                    if let Some(slot) = results.get_mut(i) {
                        *slot = Some(Err(SendError::Entry(AwsError::new(
                            "sqs:SendMessageBatch",
                            queue_url,
                            format!("message {i} cannot be built: {detail}"),
                        ))));
                    }
                }
            }
        }
        if !sent_any {
            return None;
        }
        match req.send().await {
            Ok(out) => {
                for ok in out.successful() {
                    if let Some(slot) = entry_index(ok.id()).and_then(|i| results.get_mut(i)) {
                        *slot = Some(Ok(ok.message_id().to_string()));
                    }
                }
                for failed in out.failed() {
                    if let Some(slot) = entry_index(failed.id()).and_then(|i| results.get_mut(i)) {
                        *slot = Some(Err(SendError::Entry(AwsError {
                            operation: "sqs:SendMessageBatch",
                            resource: queue_url.to_string(),
                            code: Some(failed.code().to_string()),
                            message: failed.message().unwrap_or_default().to_string(),
                            // A sender fault (bad attribute, too large) fails again; anything
                            // else is SQS's and may pass next time.
                            retryable: !failed.sender_fault(),
                        })));
                    }
                }
            }
            Err(e) => {
                // AccessDenied, QueueDoesNotExist, a KMS denial, throttling, a timeout: the
                // request's fault, not the messages'.
                let err = from_sdk("sqs:SendMessageBatch", queue_url, e);
                for &i in chunk {
                    if let Some(slot @ None) = results.get_mut(i) {
                        *slot = Some(Err(SendError::Request(err.clone())));
                    }
                }
                return Some(err);
            }
        }
        None
    }
}

fn entry(i: usize, m: &OutgoingMessage) -> Result<SendMessageBatchRequestEntry, String> {
    let attributes = m
        .attributes
        .iter()
        .map(|(k, v)| to_sdk(v).map(|v| (k.clone(), v)))
        .collect::<Result<HashMap<_, _>, _>>()?;
    SendMessageBatchRequestEntry::builder()
        .id(format!("m{i}"))
        .message_body(&m.body)
        .set_message_attributes((!attributes.is_empty()).then_some(attributes))
        .set_delay_seconds(m.delay_seconds)
        .set_message_group_id(m.group_id.clone())
        .set_message_deduplication_id(m.deduplication_id.clone())
        .build()
        .map_err(|e| e.to_string())
}

fn entry_index(id: &str) -> Option<usize> {
    id.strip_prefix('m')?.parse().ok()
}

#[async_trait]
impl Queues for SqsQueues {
    async fn send(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
    ) -> Vec<Result<String, SendError>> {
        let mut results: Vec<Option<Result<String, SendError>>> = vec![None; messages.len()];
        for chunk in chunk_for_batches(messages) {
            // A request that failed as a whole (denied, no such queue) would fail again for
            // the next one: stop, and report the rest unsent with that error.
            if let Some(err) = self
                .send_chunk(queue_url, messages, &chunk, &mut results)
                .await
            {
                for slot in results.iter_mut().filter(|r| r.is_none()) {
                    *slot = Some(Err(SendError::Request(err.clone())));
                }
                break;
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(SendError::Request(AwsError::new(
                        "sqs:SendMessageBatch",
                        queue_url,
                        "SQS reported neither success nor failure for this message",
                    )))
                })
            })
            .collect()
    }

    async fn tags(&self, queue_url: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let out = self
            .0
            .list_queue_tags()
            .queue_url(queue_url)
            .send()
            .await
            .map_err(|e| from_sdk("sqs:ListQueueTags", queue_url, e))?;
        Ok(out.tags.unwrap_or_default().into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_round_trip() {
        assert_eq!(entry_index("m7"), Some(7));
        assert_eq!(entry_index("x7"), None);
    }
}
