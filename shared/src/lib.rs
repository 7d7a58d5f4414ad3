//! `selfheal`: everything the self-healing functions share — alarm normalisation, the
//! guardrails pipeline, audit records, AWS configuration and the ports behind which AWS sits.

pub mod alarm;
pub mod anomaly;
pub mod audit;
pub mod aws;
pub mod checksums;
pub mod cursors;
pub mod decision;
pub mod forecast;
pub mod groups;
pub mod guard;
pub mod idempotency;
pub mod instances;
pub mod metrics;
pub mod objects;
pub mod parking;
pub mod processed;
pub mod queues;
pub mod runtime;
pub mod samples;
pub mod telemetry;

pub use alarm::{parse_alarms, Alarm, AlarmKind, AlarmParseError, AlarmShape, AlarmState};
pub use audit::{AuditRecord, Auditor, Outcome};
pub use aws::AwsError;
pub use decision::{Decision, SkipCode, SkipReason};
pub use guard::{Guardrails, Policy, Target, Verdict};
pub use runtime::{Common, Function, HandlerError, Invocation, Options, Response};
