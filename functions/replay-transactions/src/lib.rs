//! replay-transactions: drains the loyalty service's dead-letter queue. Each dead-lettered
//! transaction is replayed to the processing queue, skipped (already applied, already
//! handled), or parked for a person (poison, exhausted) — so that none is lost and none is
//! credited twice. Triggered by an SQS event source mapping with `ReportBatchItemFailures`;
//! answers with `batchItemFailures` so only the records that could not be handled return to
//! the dead-letter queue.
//!
//! Per batch: guardrails (kill switch, window, opt-in tag on the processing queue, dry run)
//! → one `BatchGetItem` on the idempotency ledger → one `BatchGetItem` on the
//! processed-transactions table → pure `plan::decide` per record → per-batch and hourly caps
//! → one `TransactWriteItems` claiming every record (and the hourly budget) → one
//! `SendMessageBatch` per 10 replays, parks in parallel → one `BatchWriteItem` recording the
//! outcomes (and, when a batch replayed, the list its verification will look for) → one
//! follow-up per batch that replayed (issue 14: `follow_up`, `verify`). See
//! docs/replay-transactions.md for the guarantees.
//!
//! Where things live: `transaction` (the message schema) and `plan` (what to do with one
//! record) are the pure decisions; `batch` is the batch's state and the pure rules over the
//! whole batch; `park` the parked document; `settings` the environment; `handler` the flow,
//! with the steps before any write in `prepare` and the writing steps in `act`. Adapters
//! are named only in `main.rs`.

mod act;
mod batch;
mod follow_up;
pub mod gate;
pub mod handler;
pub mod park;
pub mod plan;
mod prepare;
pub mod settings;
pub mod transaction;
pub mod verify;

pub use handler::{Handler, Ports};
pub use settings::Settings;

pub const FUNCTION: &str = "replay-transactions";

/// The ports are `#[async_trait]` traits; re-exported so that integration tests can wrap them
/// (fault injection, call counting) without a dependency of their own.
#[doc(hidden)]
pub use async_trait::async_trait;
