//! `selfheal`: everything the self-healing functions share — alarm normalisation, the
//! guardrails pipeline, audit records, AWS configuration and the ports behind which AWS sits.

pub mod alarm;
pub mod audit;
pub mod aws;
pub mod decision;
pub mod groups;
pub mod guard;
pub mod instances;
pub mod runtime;
pub mod telemetry;

pub use alarm::{parse_alarms, Alarm, AlarmKind, AlarmParseError, AlarmShape, AlarmState};
pub use audit::{AuditRecord, Auditor, Outcome};
pub use aws::AwsError;
pub use decision::{Decision, SkipCode, SkipReason};
pub use guard::{Guardrails, Policy, Target, Verdict};
pub use runtime::{Common, Function, HandlerError, Invocation, Options, Response};
