//! SNS behind the [`Notifier`] port: notices to people.

use async_trait::async_trait;
use selfheal_core::ports::notifier::Notifier;
use selfheal_core::AwsError;

use crate::error::from_sdk;

pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn notify(&self, subject: &str, message: &str) -> Result<(), AwsError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| from_sdk("sns:Publish", &self.topic_arn, e))
    }
}
