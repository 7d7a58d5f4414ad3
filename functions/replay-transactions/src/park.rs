//! What a parked record looks like: a self-contained document a person can read and replay
//! by hand, named so that parking the same message twice overwrites rather than piles up.

use chrono::{DateTime, Utc};
use selfheal_core::ports::parking::ParkedDocument;
use serde_json::json;

use crate::batch::Slot;
use crate::plan::{ParkReason, LINEAGE_ATTRIBUTE, REPLAY_COUNT_ATTRIBUTE};
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
    // What to send by hand: the attributes without this function's bookkeeping, so that the
    // re-sent transaction starts a new lineage with the full replay allowance (issue 12 item 1;
    // see `plan::ledger_key`).
    let resend_attributes: serde_json::Map<String, serde_json::Value> = s
        .msg
        .message_attributes
        .iter()
        .filter(|(k, _)| k.as_str() != REPLAY_COUNT_ATTRIBUTE && k.as_str() != LINEAGE_ATTRIBUTE)
        .filter_map(|(k, v)| serde_json::to_value(v).ok().map(|v| (k.clone(), v)))
        .collect();
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
            "message_attributes": resend_attributes,
            "how": "send message.body with replay_by_hand.message_attributes to queue_url (in message_group_id when set): without replay-count and replay-lineage the transaction starts afresh, with the full replay allowance. Copying message.message_attributes instead is safe as long as replay-count is set to 0.",
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
