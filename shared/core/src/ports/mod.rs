//! The ports: one narrow trait per thing the functions need from AWS, named for what it does
//! for us, with the plain types that cross it. Each has one SDK adapter in crate
//! `selfheal-aws`; the `testing` feature has in-memory ones where tests need them.

pub mod alarms;
pub mod cursors;
pub mod groups;
pub mod idempotency;
pub mod instances;
pub mod ledger;
pub mod metrics;
pub mod notifier;
pub mod objects;
pub mod parameters;
pub mod parking;
pub mod processed;
pub mod queues;
pub mod scheduler;
