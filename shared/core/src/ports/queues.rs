//! SQS queues, as the functions need them: send messages in as few `SendMessageBatch` calls
//! as SQS's limits allow, and read a queue's tags (for the opt-in check).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::AwsError;

/// Entries per `SendMessageBatch` request (an SQS limit).
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Payload per `SendMessageBatch` request. SQS has allowed more since 2025, but 256 KiB is
/// the limit everywhere (and in the emulator); a single larger message is sent on its own.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Message attributes per message (an SQS limit).
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// One message attribute. SQS's list types are reserved and never delivered, so they are not
/// represented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    String {
        /// `String`, `Number`, or a custom type such as `String.uuid`.
        data_type: String,
        value: String,
    },
    Binary {
        data_type: String,
        value: Vec<u8>,
    },
}

impl AttributeValue {
    pub fn string(data_type: &str, value: impl Into<String>) -> Self {
        Self::String {
            data_type: data_type.into(),
            value: value.into(),
        }
    }

    /// Bytes SQS counts against the message size: name, type and value.
    pub fn size(&self) -> usize {
        match self {
            Self::String { data_type, value } => data_type.len() + value.len(),
            Self::Binary { data_type, value } => data_type.len() + value.len(),
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingMessage {
    pub body: String,
    pub attributes: BTreeMap<String, AttributeValue>,
    /// Per-message delay. SQS rejects it on FIFO queues: leave it `None` there.
    pub delay_seconds: Option<i32>,
    /// FIFO queues only.
    pub group_id: Option<String>,
    /// FIFO queues only.
    pub deduplication_id: Option<String>,
}

impl OutgoingMessage {
    /// Bytes SQS counts against the request size: body and attributes.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.size())
                .sum::<usize>()
    }
}

/// Whether a queue URL names a FIFO queue.
pub fn is_fifo(queue_url_or_arn: &str) -> bool {
    queue_url_or_arn.ends_with(".fifo")
}

/// Why one message was not sent: a fault of this message, or of the request that carried it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// SQS answered for this entry: a failed entry in the batch answer, or an entry that
    /// could not be built. Not retryable (a sender fault) means the message itself is refused.
    #[error("{0}")]
    Entry(AwsError),
    /// The request carrying the message failed (denied, no such queue, KMS, throttled,
    /// timed out), was not sent because an earlier request failed, or SQS did not say: it
    /// says nothing about this message, and SQS may even have stored it.
    #[error("{0}")]
    Request(AwsError),
}

impl SendError {
    pub fn error(&self) -> &AwsError {
        match self {
            Self::Entry(e) | Self::Request(e) => e,
        }
    }

    pub fn into_error(self) -> AwsError {
        match self {
            Self::Entry(e) | Self::Request(e) => e,
        }
    }
}

#[async_trait]
pub trait Queues: Send + Sync {
    /// Sends `messages` to the queue. One result per message, in order: the SQS message id,
    /// or why that message was not sent. When a whole request fails, every message in it,
    /// and in the requests after it (they are not sent), gets that error as
    /// [`SendError::Request`] (it does not say whether SQS stored them: a timeout may hide a
    /// success).
    async fn send(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
    ) -> Vec<Result<String, SendError>>;

    /// The queue's tags.
    async fn tags(&self, queue_url: &str) -> Result<BTreeMap<String, String>, AwsError>;
}

/// Splits message indices into requests within SQS's entry and size limits, keeping order.
pub fn chunk_for_batches(messages: &[OutgoingMessage]) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (i, m) in messages.iter().enumerate() {
        let size = m.size();
        if !current.is_empty()
            && (current.len() == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES)
        {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += size;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(size: usize) -> OutgoingMessage {
        OutgoingMessage {
            body: "x".repeat(size),
            ..Default::default()
        }
    }

    #[test]
    fn chunks_respect_entry_and_size_limits() {
        let ten: Vec<_> = (0..23).map(|_| msg(10)).collect();
        let sizes: Vec<usize> = chunk_for_batches(&ten).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 3]);
        let big = vec![msg(200 * 1024), msg(100 * 1024), msg(300 * 1024), msg(1)];
        assert_eq!(
            chunk_for_batches(&big),
            vec![vec![0], vec![1], vec![2], vec![3]]
        );
        assert!(chunk_for_batches(&[]).is_empty());
    }

    #[test]
    fn fifo_by_name() {
        assert!(is_fifo("https://sqs.eu-west-1.amazonaws.com/1/q.fifo"));
        assert!(!is_fifo("arn:aws:sqs:eu-west-1:1:q"));
    }
}
