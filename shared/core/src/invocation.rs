//! One invocation: its context, what a handler returns, and why it may not complete.

use std::future::Future;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::audit::AuditRecord;

/// One invocation's context.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// When Lambda will stop the function (None when unknown).
    pub deadline: Option<SystemTime>,
}

impl Invocation {
    /// A context for tests and command-line runs: a made-up request id and a deadline
    /// `budget` from now.
    pub fn local(budget: Duration) -> Self {
        let now = SystemTime::now();
        let millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self {
            request_id: format!("local-{millis}"),
            deadline: Some(now + budget),
        }
    }

    /// Time left before the deadline (zero when it passed; `None` when unknown).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| {
            d.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        })
    }
}

/// What a handler produced: the response Lambda returns, and the audit records it wrote.
#[derive(Debug, Clone)]
pub struct Response {
    pub body: Value,
    pub audits: Vec<AuditRecord>,
}

impl Response {
    /// The usual response: the audit records themselves.
    pub fn from_audits(audits: Vec<AuditRecord>) -> Self {
        let body = serde_json::to_value(&audits).unwrap_or(Value::Null);
        Self { body, audits }
    }
}

/// Why a handler did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event is not one this function understands. In Lambda this is returned as an
    /// error so that the function's on-failure destination keeps the event: nothing is lost.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// A failure a later retry may fix (throttling, 5xx, timeouts): Lambda retries.
    #[error("retryable failure: {0}")]
    Retryable(String),
}

impl HandlerError {
    /// The error type Lambda reports for it.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "MalformedEvent",
            Self::Retryable(_) => "RetryableFailure",
        }
    }
}

/// A function: takes an event, returns its response and audit records.
pub trait Function: Send + Sync + 'static {
    fn handle(
        &self,
        event: Value,
        inv: Invocation,
    ) -> impl Future<Output = Result<Response, HandlerError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_invocation_has_time_left() {
        let inv = Invocation::local(Duration::from_secs(60));
        assert!(inv.remaining().unwrap() > Duration::from_secs(50));
    }
}
