//! The parts every function builds the same way once per cold start: the SDK configuration,
//! the guardrails' ledger (DynamoDB), the kill switch (SSM) and the notifier (SNS).

use std::sync::Arc;

use selfheal_aws::aws_config::SdkConfig;
use selfheal_aws::aws_sdk_dynamodb;
use selfheal_aws::aws_sdk_sns;
use selfheal_aws::aws_sdk_ssm;
use selfheal_aws::dynamodb::{DynamoIdempotency, DynamoLedger};
use selfheal_aws::sns::SnsNotifier;
use selfheal_aws::ssm::SsmParameters;
use selfheal_core::approval::gate::Autonomy;
use selfheal_core::guard::{KillSwitch, Ledger};
use selfheal_core::ports::notifier::Notifier;
use selfheal_core::ports::parameters::Parameters;
use selfheal_core::{Auditor, Common, ConfigError, Guardrails, Policy};

use crate::runtime::Options;

/// What a cold start builds for every function: the shared parts, and the SDK configuration
/// the function builds its own adapters from.
pub struct Boot {
    pub common: Common,
    pub sdk: SdkConfig,
}

/// Reads the policy from the environment (the command line's `--dry-run` forces dry run) and
/// builds the shared parts.
pub async fn from_env(function: &'static str, opts: Options) -> Result<Boot, ConfigError> {
    let mut policy = Policy::from_env(function)?;
    policy.dry_run |= opts.dry_run;
    let sdk = selfheal_aws::sdk_config().await;
    let common = common(function, policy, &sdk)?;
    Ok(Boot { common, sdk })
}

/// The shared parts from an explicit policy and SDK configuration (tests, tools).
pub fn common(
    function: &'static str,
    policy: Policy,
    sdk: &SdkConfig,
) -> Result<Common, ConfigError> {
    let table = policy.ledger_table.clone().ok_or(ConfigError::Missing {
        name: "SELFHEAL_LEDGER_TABLE",
        why: "cooldowns, caps and idempotency records are kept there",
    })?;
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let ledger: Arc<dyn Ledger> = Arc::new(DynamoLedger::new(ddb.clone(), table.clone()));
    let ssm: Arc<dyn Parameters> = Arc::new(SsmParameters(aws_sdk_ssm::Client::new(sdk)));
    let params = policy
        .kill_switch_parameter
        .clone()
        .map(|name| (ssm.clone(), name));
    let switch = KillSwitch::new(params, policy.enabled_fallback)
        .with_max_staleness(policy.kill_switch_max_stale);
    let notifier = policy
        .topic_arn
        .clone()
        .map(|t| Arc::new(SnsNotifier::new(aws_sdk_sns::Client::new(sdk), t)) as Arc<dyn Notifier>);
    // Graduated autonomy: "seen" records, pending approvals and single-use claims in the
    // same table; the key and the URL through SSM; the approval notice through SNS.
    let autonomy = Autonomy::new(policy.autonomy.clone())
        .with_store(Arc::new(DynamoIdempotency::new(ddb, table)))
        .with_parameters(ssm)
        .with_notifier(notifier.clone());
    Ok(Common {
        function,
        guard: Guardrails::new(policy, switch, ledger),
        audit: Auditor::new(notifier),
        autonomy,
    })
}
