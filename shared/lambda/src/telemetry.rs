//! JSON logging. In Lambda everything goes to stdout (CloudWatch Logs). When a function runs
//! from the command line (`--event FILE`), stdout is reserved for the audit records it prints,
//! so logs and metrics go to stderr.

use selfheal_core::telemetry::{route, Sink};
use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once, and routes raw lines (audit, EMF) to the same sink.
/// `RUST_LOG` overrides the default level (`info`).
pub fn init(sink: Sink) {
    route(sink);
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
