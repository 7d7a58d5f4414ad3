//! reboot-instance: a CloudWatch alarm on an EC2 instance went into ALARM → reboot the
//! instance, if it exists, is running, opted in, and the guardrails allow it (and, when the
//! anomaly gate is on, the alarm is not the metric's usual pattern at this time).
//!
//! [`settings`] reads the environment, [`decide`] picks the instance and says whether to
//! reboot it, [`request`] says whether the alarm asks for a reboot at all (its metrics or its
//! `selfheal:reboot` tag, kept in [`tag_cache`]), [`gate`] turns the metric's history into the gate's verdict, and [`handler`]
//! runs the flow over the ports. `main.rs` wires the AWS adapters in.

pub mod decide;
pub mod gate;
pub mod handler;
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
