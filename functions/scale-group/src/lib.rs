//! scale-group: a CloudWatch alarm went into ALARM → resize its Auto Scaling group, by as much
//! as the breach is severe (or as its load forecast says), within the group's bounds and the
//! guardrails.
//!
//! Where things live:
//! * [`settings`]: this function's settings from the environment, and the scale rules.
//! * [`plan`]: which group, which direction, what max step (pure, from the alarm and what
//!   CloudWatch says about it now).
//! * [`direction`]: which way, from the alarm's comparison and the configured rule (pure).
//! * [`severity`]: the breach and the step its severity asks for (pure).
//! * [`load`]: what load history the forecast reads (pure).
//! * [`sizing`]: the forecast's step or the severity step, and why (pure).
//! * [`decide`]: resize or not, within bounds (pure).
//! * [`handler`]: the flow over the ports, through the guardrails.
//! * `main.rs`: the wiring, the one place that names AWS adapters.

pub mod decide;
pub mod direction;
pub mod handler;
pub mod load;
pub mod plan;
pub mod settings;
pub mod severity;
pub mod sizing;
#[cfg(test)]
mod test_support;

pub const FUNCTION: &str = "scale-group";

pub use handler::Deps;
pub use settings::Settings;
