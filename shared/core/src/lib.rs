//! `selfheal-core`: every decision selfheal makes, and the ports it decides through.
//!
//! No AWS SDK, no Lambda runtime, no async runtime: alarm normalisation ([`alarm`]), decisions
//! ([`decision`]), the guardrails ([`guard`]) and the one guarded action sequence
//! ([`Common::act_guarded`]), audit records and EMF ([`audit`]), the anomaly gate and the
//! forecaster, checksums, settings helpers, and [`ports`]: one trait per thing the functions
//! need from AWS, with the plain types that cross it. Adapters live in `selfheal-aws`, the
//! runtime loop in `selfheal-lambda`.

pub mod alarm;
pub mod anomaly;
pub mod approval;
pub mod audit;
pub mod autonomy;
pub mod checksums;
pub mod common;
pub mod decision;
pub mod episode;
pub mod error;
pub mod forecast;
pub mod guard;
pub mod invocation;
pub mod ports;
pub mod samples;
pub mod settings;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use alarm::{parse_alarms, Alarm, AlarmKind, AlarmParseError, AlarmShape, AlarmState};
pub use audit::{AuditBuilder, AuditRecord, Auditor, Heal, Outcome};
pub use common::{Common, Failed, Guarded};
pub use decision::{Decision, SkipCode, SkipReason};
pub use error::AwsError;
pub use guard::{Guardrails, Policy, Target, Verdict};
pub use invocation::{Function, HandlerError, Invocation, Response};
pub use settings::ConfigError;
