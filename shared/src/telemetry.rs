//! JSON logging. In Lambda everything goes to stdout (CloudWatch Logs). When a function runs
//! from the command line (`--event FILE`), stdout is reserved for the audit records it prints,
//! so logs and metrics go to stderr.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

static TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    Stderr,
}

/// Installs the JSON subscriber once. `RUST_LOG` overrides the default level (`info`).
pub fn init(sink: Sink) {
    TO_STDERR.store(sink == Sink::Stderr, Ordering::SeqCst);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn,hyper=warn")
    });
    let builder = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter);
    let res = match sink {
        Sink::Stdout => builder.with_writer(std::io::stdout).try_init(),
        Sink::Stderr => builder.with_writer(std::io::stderr).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(res);
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
