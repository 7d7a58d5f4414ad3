//! reboot-instance: a CloudWatch alarm on one EC2 instance went into ALARM → reboot the
//! instance, if the alarm asks for a reboot (a status-check metric, or the alarm's
//! `selfheal:reboot=true` tag), the event is fresh, the alarm is still in ALARM, the instance
//! exists, is running, is opted in, and the guardrails allow it (and, when the anomaly gate is
//! on, the alarm is not the metric's usual pattern at this time). An alarm that reads several
//! instances reboots none.
//!
//! [`settings`] reads the environment, [`decide`](mod@decide) picks the instance and says whether to
//! reboot it, [`request`] says whether the alarm asks for a reboot at all (its tags kept in
//! [`tag_cache`]), [`gate`] turns the metric's history into the gate's verdict, and
//! [`handler`] runs the flow over the ports; [`ladder`] says what follows a reboot that did not
//! heal (closed loop). `main.rs` wires the AWS adapters in.

pub mod decide;
pub mod gate;
pub mod handler;
pub mod ladder;
pub mod request;
pub mod settings;
pub mod tag_cache;

#[cfg(test)]
mod fixtures;

pub use decide::{decide, target, Reboot};
pub use gate::{
    alarm_direction, apply_gate, gate_time, GateReport, GATE_FETCH_TIMEOUT, GATE_RECENT_SECS,
};
pub use handler::Deps;
pub use settings::Settings;

pub const FUNCTION: &str = "reboot-instance";
