//! `selfheal-lambda`: how a function binary runs. The Lambda runtime loop or one event from
//! the command line (`--event FILE [--dry-run]`), the cold-start bootstrap of the parts every
//! function shares (ledger, kill switch, notifier), and JSON telemetry.

pub mod approval;
pub mod bootstrap;
pub mod http;
pub mod runtime;
pub mod telemetry;

pub use bootstrap::{from_env, Boot};
pub use runtime::{start, Options};
