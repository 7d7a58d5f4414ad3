//! Where raw log lines (audit records, EMF documents) go. In Lambda everything goes to stdout
//! (CloudWatch Logs). When a function runs from the command line (`--event FILE`), stdout is
//! reserved for the audit records it prints, so logs and metrics go to stderr. The JSON
//! `tracing` subscriber itself is installed by crate `selfheal-lambda`.

use std::sync::atomic::{AtomicBool, Ordering};

static TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    Stderr,
}

/// Sends raw lines to `sink` from now on.
pub fn route(sink: Sink) {
    TO_STDERR.store(sink == Sink::Stderr, Ordering::SeqCst);
}

/// Writes one raw line (an EMF document) to the log sink.
pub fn emit_raw(line: &str) {
    // The print macros (rather than locked handles) keep test output captured.
    if TO_STDERR.load(Ordering::SeqCst) {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}
