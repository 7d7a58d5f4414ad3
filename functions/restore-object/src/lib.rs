//! restore-object: verify S3 objects end to end against the most trustworthy expected digest
//! there is, and restore a corrupted one server-side from a copy verified to be good (the
//! replica, then earlier versions). With no good copy, the corrupted object is copied to a
//! quarantine location for forensics, left in place, and people are told. Nothing is ever
//! deleted.
//!
//! [`event`] reads the trigger shapes, [`settings`] the environment, [`expect`] picks the
//! expected digest, [`decide`] judges what was read, [`verify`] hashes an object as it
//! streams, [`sources`] finds a good copy, [`repair`] restores or quarantines, [`handler`]
//! runs the flow over the ports and [`scrub`] walks buckets with it. `main.rs` wires the AWS
//! adapters in.

pub mod decide;
pub mod event;
pub mod expect;
pub mod handler;
pub mod repair;
pub mod scrub;
pub mod settings;
pub mod sources;
pub mod verify;

pub use decide::{decide, CopyKind, Fix, GoodCopy, Verified};
pub use handler::Deps;
pub use repair::{QUARANTINED_FROM, RESTORED_AT, RESTORED_FROM};
pub use scrub::Summary;
pub use settings::Settings;

pub const FUNCTION: &str = "restore-object";
