//! Where work that must not be retried automatically is put aside for a person: an S3 prefix
//! (one JSON object per record) or an SQS queue (one message per record). Each parked
//! document is named; parking the same name twice in S3 overwrites it, so a repeated park
//! leaves one object.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::error::AwsError;
use crate::ports::queues::{is_fifo, OutgoingMessage, Queues, SendError};

/// One document to park.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedDocument {
    /// Stable and unique per piece of work (for example the SQS message id): `[A-Za-z0-9._-]`.
    pub name: String,
    /// The document, JSON.
    pub json: String,
}

/// Where parked documents go, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParkingLocation {
    S3 { bucket: String, prefix: String },
    Queue { url: String },
}

impl ParkingLocation {
    /// `s3://bucket/prefix/` or an SQS queue URL (`https://...`, `http://...` for the emulator).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{s:?} names no bucket"));
            }
            let mut prefix = prefix.to_string();
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if s.starts_with("https://") || s.starts_with("http://") {
            return Ok(Self::Queue { url: s.to_string() });
        }
        Err(format!(
            "{s:?} is neither s3://bucket/prefix nor an SQS queue URL"
        ))
    }
}

impl std::fmt::Display for ParkingLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Queue { url } => f.write_str(url),
        }
    }
}

#[async_trait]
pub trait ParkingStore: Send + Sync {
    /// Where documents go (for audit records and people).
    fn location(&self) -> String;

    /// Parks each document. One result per document, in order: where it went (S3 key or
    /// message id), or why it could not be parked.
    async fn park(&self, docs: &[ParkedDocument]) -> Vec<Result<String, AwsError>>;
}

pub struct QueueParking {
    queues: Arc<dyn Queues>,
    url: String,
}

impl QueueParking {
    pub fn new(queues: Arc<dyn Queues>, url: impl Into<String>) -> Self {
        Self {
            queues,
            url: url.into(),
        }
    }
}

#[async_trait]
impl ParkingStore for QueueParking {
    fn location(&self) -> String {
        self.url.clone()
    }

    async fn park(&self, docs: &[ParkedDocument]) -> Vec<Result<String, AwsError>> {
        let fifo = is_fifo(&self.url);
        let messages: Vec<OutgoingMessage> = docs
            .iter()
            .map(|d| OutgoingMessage {
                body: d.json.clone(),
                group_id: fifo.then(|| "parked".to_string()),
                // The name is stable per piece of work: a repeated park within SQS's
                // five-minute window is dropped by a FIFO parking queue.
                deduplication_id: fifo.then(|| hex(&Sha256::digest(d.name.as_bytes()))),
                ..Default::default()
            })
            .collect();
        self.queues
            .send(&self.url, &messages)
            .await
            .into_iter()
            .map(|r| r.map_err(SendError::into_error))
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            ParkingLocation::parse("s3://b/parked").unwrap(),
            ParkingLocation::S3 {
                bucket: "b".into(),
                prefix: "parked/".into()
            }
        );
        assert_eq!(
            ParkingLocation::parse("s3://b").unwrap(),
            ParkingLocation::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert!(matches!(
            ParkingLocation::parse("https://sqs.eu-west-1.amazonaws.com/1/parked").unwrap(),
            ParkingLocation::Queue { .. }
        ));
        assert!(ParkingLocation::parse("s3:///x").is_err());
        assert!(ParkingLocation::parse("bucket/prefix").is_err());
    }
}
