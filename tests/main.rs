//! Integration tests: every function through its real handler against the local AWS emulator
//! (moto), asserting on the emulated resources afterwards. One test binary: `support` builds
//! the emulator's SDK configuration and the resources every function shares; each module
//! holds one function's scenarios and its `World`.
//!
//! Run with `make test` (or `make integration`), which starts and stops the emulator.

mod support;

mod guardrails;
mod reboot_instance;
mod replay_transactions;
mod restore_object;
mod scale_group;
