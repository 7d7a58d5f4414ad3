//! SSM Parameter Store behind the [`Parameters`] port (the kill switch).

use async_trait::async_trait;
use selfheal_core::ports::parameters::Parameters;
use selfheal_core::AwsError;

use crate::error::from_sdk;

pub struct SsmParameters(pub aws_sdk_ssm::Client);

#[async_trait]
impl Parameters for SsmParameters {
    async fn get(&self, name: &str) -> Result<Option<String>, AwsError> {
        match self.0.get_parameter().name(name).send().await {
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
