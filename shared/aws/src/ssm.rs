//! SSM Parameter Store behind the [`Parameters`] port (the kill switch, the approval key).

use async_trait::async_trait;
use selfheal_core::ports::parameters::Parameters;
use selfheal_core::AwsError;

use crate::error::from_sdk;

pub struct SsmParameters(pub aws_sdk_ssm::Client);

#[async_trait]
impl Parameters for SsmParameters {
    async fn get(&self, name: &str) -> Result<Option<String>, AwsError> {
        // With decryption: the approval signing key is a SecureString (issue 17). For a plain
        // String parameter (the kill switch) the flag changes nothing.
        match self
            .0
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(out) => Ok(out.parameter.and_then(|p| p.value)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found()) =>
            {
                Ok(None)
            }
            Err(e) => Err(from_sdk("ssm:GetParameter", name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_ssm::config::{Credentials, Region};
    use aws_smithy_runtime_api::box_error::BoxError;
    use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
    use aws_smithy_runtime_api::client::interceptors::Intercept;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::config_bag::ConfigBag;

    use super::*;

    /// Keeps the body of the request about to be sent, and stops it there (nothing leaves the
    /// process).
    #[derive(Debug, Clone, Default)]
    struct Capture(Arc<Mutex<Option<String>>>);

    impl Intercept for Capture {
        fn name(&self) -> &'static str {
            "capture"
        }

        fn read_before_transmit(
            &self,
            ctx: &BeforeTransmitInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            let body = ctx
                .request()
                .body()
                .bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            if let Ok(mut slot) = self.0.lock() {
                *slot = body;
            }
            Err("captured, not sent".into())
        }
    }

    /// The approval key is a SecureString: read without decryption, SSM returns ciphertext
    /// (moto: `kms:<key id>:<value>`) that would be taken for the key itself.
    #[tokio::test]
    async fn parameters_are_read_with_decryption() {
        let capture = Capture::default();
        let conf = aws_sdk_ssm::Config::builder()
            .behavior_version_latest()
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("id", "secret", None, None, "test"))
            .interceptor(capture.clone())
            .build();
        let params = SsmParameters(aws_sdk_ssm::Client::from_conf(conf));
        assert!(params.get("/selfheal/approval-key").await.is_err());
        let body = capture.0.lock().unwrap().clone().unwrap_or_default();
        assert!(
            body.contains("\"WithDecryption\":true"),
            "request body: {body}"
        );
    }
}
