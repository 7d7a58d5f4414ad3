//! How a function binary runs: the Lambda runtime loop, or once from the command line with
//! `--event FILE [--dry-run]` (same handler, same guardrails, AWS endpoint from the
//! environment), printing its audit records as JSON lines.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

use crate::audit::{AuditRecord, Auditor, Notifier, SnsNotifier};
use crate::guard::dynamo::DynamoLedger;
use crate::guard::{
    ConfigError, Guardrails, KillSwitch, Ledger, Parameters, Policy, SsmParameters,
};
use crate::telemetry::{self, Sink};

/// One invocation's context.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// When Lambda will stop the function (None when unknown).
    pub deadline: Option<SystemTime>,
}

impl Invocation {
    /// A context for tests and command-line runs: a made-up request id and a deadline
    /// `budget` from now.
    pub fn local(budget: Duration) -> Self {
        let now = SystemTime::now();
        let millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self {
            request_id: format!("local-{millis}"),
            deadline: Some(now + budget),
        }
    }

    /// Time left before the deadline (zero when it passed; `None` when unknown).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| {
            d.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        })
    }
}

/// The `Lambda-Runtime-Deadline-Ms` header is an absolute time in epoch milliseconds. The
/// local runtime emulator (`cargo lambda watch`) sends the function timeout instead (e.g.
/// `600000`); a value before the year 2001 cannot be an absolute deadline, so it is read as
/// time left from now.
pub fn deadline_from_header(deadline_ms: u64, now: SystemTime) -> SystemTime {
    const YEAR_2001_MS: u64 = 978_307_200_000;
    if deadline_ms < YEAR_2001_MS {
        now + Duration::from_millis(deadline_ms)
    } else {
        SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms)
    }
}

/// What a handler produced: the response Lambda returns, and the audit records it wrote.
#[derive(Debug, Clone)]
pub struct Response {
    pub body: Value,
    pub audits: Vec<AuditRecord>,
}

impl Response {
    /// The usual response: the audit records themselves.
    pub fn from_audits(audits: Vec<AuditRecord>) -> Self {
        let body = serde_json::to_value(&audits).unwrap_or(Value::Null);
        Self { body, audits }
    }
}

/// Why a handler did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event is not one this function understands. In Lambda this is returned as an
    /// error so that the function's on-failure destination keeps the event: nothing is lost.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// A failure a later retry may fix (throttling, 5xx, timeouts): Lambda retries.
    #[error("retryable failure: {0}")]
    Retryable(String),
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match e {
            HandlerError::Malformed(_) => "MalformedEvent",
            HandlerError::Retryable(_) => "RetryableFailure",
        };
        Self {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// A function: takes an event, returns its response and audit records.
pub trait Function: Send + Sync + 'static {
    fn handle(
        &self,
        event: Value,
        inv: Invocation,
    ) -> impl Future<Output = Result<Response, HandlerError>> + Send;
}

/// Options from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--dry-run`: force dry run whatever the environment says.
    pub dry_run: bool,
}

/// What every function needs besides its own AWS ports.
pub struct Common {
    pub function: &'static str,
    pub sdk: SdkConfig,
    pub guard: Guardrails,
    pub audit: Auditor,
}

impl Common {
    /// Reads the policy from the environment and builds the SDK clients (once per cold start).
    pub async fn from_env(function: &'static str, opts: Options) -> Result<Self, ConfigError> {
        let mut policy = Policy::from_env(function)?;
        policy.dry_run |= opts.dry_run;
        let sdk = crate::aws::sdk_config().await;
        Self::new(function, policy, sdk)
    }

    /// Builds from an explicit policy and SDK configuration (tests, tools).
    pub fn new(
        function: &'static str,
        policy: Policy,
        sdk: SdkConfig,
    ) -> Result<Self, ConfigError> {
        let table = policy.ledger_table.clone().ok_or(ConfigError::Missing {
            name: "SELFHEAL_LEDGER_TABLE",
            why: "cooldowns, caps and idempotency records are kept there",
        })?;
        let ledger: Arc<dyn Ledger> = Arc::new(DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            table,
        ));
        let params = policy.kill_switch_parameter.clone().map(|name| {
            (
                Arc::new(SsmParameters(aws_sdk_ssm::Client::new(&sdk))) as Arc<dyn Parameters>,
                name,
            )
        });
        let switch = KillSwitch::new(params, policy.enabled_fallback);
        let notifier = policy.topic_arn.clone().map(|t| {
            Arc::new(SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), t)) as Arc<dyn Notifier>
        });
        Ok(Self {
            function,
            sdk,
            guard: Guardrails::new(policy, switch, ledger),
            audit: Auditor::new(notifier),
        })
    }

    /// Starts an audit record for this function.
    pub fn audit_for(
        &self,
        inv: &Invocation,
        trigger: &str,
        target: &str,
    ) -> crate::audit::AuditBuilder {
        AuditRecord::builder(self.function, &inv.request_id, trigger, target)
    }

    /// Logs, measures and notifies one record, and hands it back.
    pub async fn record(&self, rec: AuditRecord) -> AuditRecord {
        self.audit.record(&rec).await;
        rec
    }

    /// Audits a failure; hands it back to Lambda as an error when a retry can fix it (the
    /// record says which).
    pub async fn fail(
        &self,
        audit: crate::audit::AuditBuilder,
        code: &str,
        msg: String,
        retryable: bool,
    ) -> Result<AuditRecord, HandlerError> {
        let rec = self
            .record(
                audit
                    .detail("retryable", retryable)
                    .failed(code, msg.clone()),
            )
            .await;
        if retryable {
            Err(HandlerError::Retryable(msg))
        } else {
            Ok(rec)
        }
    }

    /// Records an event this function cannot read, and returns the error to hand back.
    pub async fn reject(&self, inv: &Invocation, trigger: &str, detail: String) -> HandlerError {
        let rec = self
            .audit_for(inv, trigger, "-")
            .failed("malformed-event", detail.clone());
        self.audit.record(&rec).await;
        HandlerError::Malformed(detail)
    }
}

/// Reads every alarm in an event (an SNS event may carry several). An event that is not an
/// alarm is recorded as a failure and rejected.
pub async fn alarms_or_reject(
    common: &Common,
    event: &Value,
    inv: &Invocation,
) -> Result<Vec<crate::alarm::Alarm>, HandlerError> {
    match crate::alarm::parse_alarms(event) {
        Ok(a) => Ok(a),
        Err(e) => Err(common.reject(inv, "alarm", e.to_string()).await),
    }
}

const USAGE: &str = "usage: FUNCTION [--event FILE [--dry-run]]\n\
  without --event: run the AWS Lambda runtime loop\n\
  --event FILE:    handle the event in FILE once, print the audit records as JSON lines\n\
  --dry-run:       decide and audit, change nothing";

enum Mode {
    Lambda,
    Once { event: PathBuf, opts: Options },
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Mode, String> {
    let mut event = None;
    let mut dry_run = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--event" => event = Some(PathBuf::from(it.next().ok_or("--event needs a file")?)),
            "--dry-run" => dry_run = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match event {
        Some(event) => Ok(Mode::Once {
            event,
            opts: Options { dry_run },
        }),
        None if dry_run => {
            Err("--dry-run goes with --event (in Lambda, set SELFHEAL_DRY_RUN)".into())
        }
        None => Ok(Mode::Lambda),
    }
}

/// The whole of a function's `main`: build the dependencies once, then serve Lambda or
/// handle one event from a file.
pub async fn start<F, B, Fut, E>(function: &'static str, build: B) -> ExitCode
where
    F: Function,
    B: FnOnce(Options) -> Fut,
    Fut: Future<Output = Result<F, E>>,
    E: std::fmt::Display,
{
    let mode = match parse_args(std::env::args().skip(1)) {
        Ok(m) => m,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("{function}: {msg}");
            }
            eprintln!("{}", USAGE.replace("FUNCTION", function));
            return ExitCode::from(2);
        }
    };
    match mode {
        Mode::Lambda => {
            telemetry::init(Sink::Stdout);
            let f = match build(Options::default()).await {
                Ok(f) => Arc::new(f),
                Err(e) => {
                    tracing::error!(function, error = %e, "cannot start");
                    return ExitCode::FAILURE;
                }
            };
            let served = lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
                let f = f.clone();
                async move {
                    let inv = Invocation {
                        request_id: ev.context.request_id.clone(),
                        deadline: Some(deadline_from_header(
                            ev.context.deadline,
                            SystemTime::now(),
                        )),
                    };
                    f.handle(ev.payload, inv).await.map(|r| r.body)
                }
            }))
            .await;
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(function, error = %e, "runtime loop ended");
                    ExitCode::FAILURE
                }
            }
        }
        Mode::Once { event, opts } => {
            telemetry::init(Sink::Stderr);
            let payload = match std::fs::read_to_string(&event) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{function}: cannot read {}: {e}", event.display());
                    return ExitCode::from(2);
                }
            };
            let payload: Value = match serde_json::from_str(&payload) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{function}: {} is not JSON: {e}", event.display());
                    return ExitCode::from(2);
                }
            };
            let f = match build(opts).await {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("{function}: cannot start: {e}");
                    return ExitCode::from(2);
                }
            };
            // Lambda's longest timeout: long enough for a scrub to do a useful slice.
            let inv = Invocation::local(Duration::from_secs(900));
            match f.handle(payload, inv).await {
                Ok(resp) => {
                    for a in &resp.audits {
                        println!("{}", serde_json::to_string(a).unwrap_or_default());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{function}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Mode, String> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn argument_parsing() {
        assert!(matches!(args(&[]), Ok(Mode::Lambda)));
        assert!(matches!(
            args(&["--event", "e.json"]),
            Ok(Mode::Once {
                opts: Options { dry_run: false },
                ..
            })
        ));
        assert!(matches!(
            args(&["--dry-run", "--event", "e.json"]),
            Ok(Mode::Once {
                opts: Options { dry_run: true },
                ..
            })
        ));
        assert!(args(&["--dry-run"]).is_err());
        assert!(args(&["--event"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }

    #[test]
    fn deadline_header_absolute_or_relative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(
            deadline_from_header(1_795_000_030_000, now),
            now + Duration::from_secs(30)
        );
        assert_eq!(
            deadline_from_header(600_000, now),
            now + Duration::from_secs(600)
        );
    }

    #[test]
    fn local_invocation_has_time_left() {
        let inv = Invocation::local(Duration::from_secs(60));
        assert!(inv.remaining().unwrap() > Duration::from_secs(50));
    }
}
