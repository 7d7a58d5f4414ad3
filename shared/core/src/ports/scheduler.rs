//! Follow-ups: a one-time call back into the function at a later time, carrying what to check
//! (EventBridge Scheduler in production). Every action schedules its own verification, so an
//! action that did not heal is noticed even though the alarm, still in ALARM, sends nothing new.

use async_trait::async_trait;
use serde::Serialize;

use crate::error::AwsError;

/// Scheduler's limit on a target's input (characters).
pub const MAX_PAYLOAD_CHARS: usize = 8192;

/// Scheduler's limit on a schedule's name, and the characters it allows.
pub const MAX_NAME_CHARS: usize = 64;

/// One call back: `payload` (a JSON event the function recognises) delivered to the function
/// itself at `at` (epoch seconds), once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowUp {
    /// Unique within the schedule group: `[0-9A-Za-z_.-]`, at most 64 characters.
    pub name: String,
    pub at: i64,
    pub payload: String,
}

impl FollowUp {
    /// Checks what Scheduler would refuse, before asking it (and before relying on an emulator
    /// that may be more lenient).
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > MAX_NAME_CHARS
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "schedule name {:?} is not 1-{MAX_NAME_CHARS} characters of [0-9A-Za-z_.-]",
                self.name
            ));
        }
        let chars = self.payload.chars().count();
        if chars > MAX_PAYLOAD_CHARS {
            return Err(format!(
                "follow-up payload is {chars} characters, more than Scheduler's {MAX_PAYLOAD_CHARS}"
            ));
        }
        Ok(())
    }
}

/// Schedules follow-ups of this function (one-time, deleted after they ran).
#[async_trait]
pub trait FollowUps: Send + Sync {
    async fn schedule(&self, follow_up: &FollowUp) -> Result<(), AwsError>;
    /// Removes a follow-up that is no longer wanted; one that does not exist is not an error.
    async fn delete(&self, name: &str) -> Result<(), AwsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes_scheduler_would_refuse_are_refused_first() {
        let ok = FollowUp {
            name: "scale-group-a1b2.3_x".into(),
            at: 0,
            payload: "{}".into(),
        };
        assert!(ok.validate().is_ok());
        for name in ["", "has space", "colon:x", &"a".repeat(65)] {
            let f = FollowUp {
                name: name.into(),
                ..ok.clone()
            };
            assert!(f.validate().is_err(), "{name:?}");
        }
        let big = FollowUp {
            payload: "x".repeat(MAX_PAYLOAD_CHARS + 1),
            ..ok
        };
        assert!(big.validate().unwrap_err().contains("8192"));
    }
}
