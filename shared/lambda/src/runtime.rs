//! How a function binary runs: the Lambda runtime loop, or once from the command line with
//! `--event FILE [--dry-run]` (same handler, same guardrails, AWS endpoint from the
//! environment), printing its audit records as JSON lines.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use selfheal_core::telemetry::Sink;
use selfheal_core::{Function, HandlerError, Invocation};
use serde_json::Value;

use crate::telemetry;

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

/// Options from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--dry-run`: force dry run whatever the environment says.
    pub dry_run: bool,
}

fn diagnostic(e: HandlerError) -> Diagnostic {
    Diagnostic {
        error_type: e.error_type().into(),
        error_message: e.to_string(),
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
                    // The function's own ARN: where its follow-ups are sent back to.
                    selfheal_core::episode::set_invoked_function_arn(
                        &ev.context.invoked_function_arn,
                    );
                    let inv = Invocation {
                        request_id: ev.context.request_id.clone(),
                        deadline: Some(deadline_from_header(
                            ev.context.deadline,
                            SystemTime::now(),
                        )),
                    };
                    f.handle(ev.payload, inv)
                        .await
                        .map(|r| r.body)
                        .map_err(diagnostic)
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
}
