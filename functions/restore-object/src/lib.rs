//! restore-object: verify S3 objects end to end against the most trustworthy expected digest
//! there is, and restore a corrupted one server-side from a copy verified to be good (the
//! replica, then earlier versions). With no good copy, the corrupted object is copied to a
//! quarantine location for forensics, left in place, and people are told. Nothing is ever
//! deleted.
//!
//! [`event`] reads the trigger shapes, [`settings`] the environment, [`expect`] picks the
//! expected digest, [`decide`] judges what was read, [`verify`] hashes an object as it
//! streams, [`sources`] finds a good copy, [`repair`] restores or quarantines, [`handler`]
//! runs the flow over the ports and [`scrub`] walks buckets with it. [`batch`] reads S3 Batch
//! Operations invocations and [`tasks`] answers them; [`report`] reads Compute checksum
//! completion reports and [`two_pass`] verifies only what they show to be in doubt. `main.rs` wires the AWS
//! adapters in.

pub mod batch;
pub mod decide;
pub mod event;
pub mod expect;
pub mod follow_up;
pub mod handler;
pub mod jobs;
pub mod repair;
pub mod report;
pub mod scrub;
pub mod settings;
pub mod sources;
pub mod tasks;
pub mod two_pass;
pub mod verify;

pub use decide::{decide, CopyKind, Fix, GoodCopy, Verified};
pub use handler::Deps;
pub use repair::{QUARANTINED_FROM, RESTORED_AT, RESTORED_FROM};
pub use scrub::Summary;
pub use settings::Settings;

pub const FUNCTION: &str = "restore-object";
