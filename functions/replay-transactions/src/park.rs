//! What a parked record looks like: a self-contained document a person can read and replay
//! by hand, named so that parking the same message twice overwrites rather than piles up.

use chrono::{DateTime, Utc};
use selfheal_core::ports::parking::ParkedDocument;
use serde_json::json;

use crate::batch::Slot;
use crate::plan::ParkReason;
use crate::FUNCTION;

/// Where and when a document is parked, and where a person would replay it to.
pub struct ParkContext<'a> {
    pub request_id: &'a str,
    pub now: DateTime<Utc>,
    pub processing_queue_url: &'a str,
}

/// The parked document for one record.
pub fn document(
    s: &Slot<'_>,
    reason: ParkReason,
    detail: &str,
    cx: &ParkContext<'_>,
) -> ParkedDocument {
    let doc = json!({
        "reason": reason.as_str(),
        "detail": detail,
        "parked_at": cx.now.to_rfc3339(),
        "function": FUNCTION,
        "request_id": cx.request_id,
        "transaction_id": s.inc.transaction_id(),
        "source": {
            "queue_arn": s.msg.event_source_arn,
            "message_id": s.msg.message_id,
            "attributes": s.msg.attributes,
        },
        "message": {
            "body": s.msg.body,
            "message_attributes": s.msg.message_attributes,
        },
        "replay_by_hand": {
            "queue_url": cx.processing_queue_url,
            "message_group_id": s.inc.group_id,
            "replay_count": s.inc.replay_count(),
            "how": "send message.body with message.message_attributes to queue_url; reset replay-count to 0 to grant the full replay allowance again",
        },
    });
    ParkedDocument {
        name: format!("{}/{}", reason.as_str(), safe_name(&s.inc.message_id)),
        json: doc.to_string(),
    }
}

/// A message id as an object name: anything but `[A-Za-z0-9._-]` becomes `_`.
pub fn safe_name(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "unnamed".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe() {
        assert_eq!(safe_name("a/b c"), "a_b_c");
        assert_eq!(safe_name(""), "unnamed");
    }
}
