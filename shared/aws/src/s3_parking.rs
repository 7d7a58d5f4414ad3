//! Parking in an S3 prefix behind the [`ParkingStore`] port: one JSON object per document.

use async_trait::async_trait;
use selfheal_core::ports::parking::{ParkedDocument, ParkingStore};
use selfheal_core::AwsError;

use crate::error::from_sdk;

pub struct S3Parking {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Parking {
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}.json", self.prefix)
    }
}

#[async_trait]
impl ParkingStore for S3Parking {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    async fn park(&self, docs: &[ParkedDocument]) -> Vec<Result<String, AwsError>> {
        // S3 has no batch put: the puts run concurrently.
        futures::future::join_all(docs.iter().map(|d| async move {
            let key = self.key(&d.name);
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/json")
                .body(d.json.clone().into_bytes().into())
                .send()
                .await
                .map(|_| key.clone())
                .map_err(|e| from_sdk("s3:PutObject", format!("{}/{key}", self.bucket), e))
        }))
        .await
    }
}
