//! What a parked record looks like: a self-contained document a person can read and replay
//! by hand, named so that parking the same message twice overwrites rather than piles up.
//!
//! A document larger than the parking queue takes (issue 12 item 2) is written whole to the
//! spill location and a small [`pointer`] to it is parked instead; without a spill location
//! it is [`Placement::TooBig`] and the record stays in the dead-letter queue.

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
    let attributes_without = |skip: &[&str]| -> serde_json::Map<String, serde_json::Value> {
        s.msg
            .message_attributes
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .filter_map(|(k, v)| serde_json::to_value(v).ok().map(|v| (k.clone(), v)))
            .collect()
    };
    let resend_attributes = attributes_without(&[REPLAY_COUNT_ATTRIBUTE, LINEAGE_ATTRIBUTE]);
    // The lineage is left out of the message's attributes as well (it is kept in `source`):
    // a person who copies them verbatim, replay-count included, still starts a new lineage,
    // and the re-send cannot meet this park's own "done" record.
    let message_attributes = attributes_without(&[LINEAGE_ATTRIBUTE]);
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
            "lineage": s.inc.lineage,
        },
        "message": {
            "body": s.msg.body,
            "message_attributes": message_attributes,
        },
        "replay_by_hand": {
            "queue_url": cx.processing_queue_url,
            "message_group_id": s.inc.group_id,
            "replay_count": s.inc.replay_count(),
            "message_attributes": resend_attributes,
            "how": "send message.body with replay_by_hand.message_attributes to queue_url (in message_group_id when set): without replay-count and replay-lineage the transaction starts afresh, with the full replay allowance. Copying message.message_attributes instead is safe too (they carry no replay-lineage) but keeps the replay count: set replay-count to 0 for the full allowance.",
        },
    });
    ParkedDocument {
        name: format!("{}/{}", reason.as_str(), safe_name(&s.inc.message_id)),
        json: doc.to_string(),
    }
}

/// The SHA-256 of `bytes`, in lowercase hex (a spilled document's digest).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where a document goes, given its size and the parking location's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// It fits (or parking is S3, without a limit): parked as is.
    AsIs,
    /// Too large: written to the spill location, a pointer parked.
    Spill,
    /// Too large and nowhere to spill it: not parked.
    TooBig { bytes: usize, limit: usize },
}

/// `limit`: the parking queue's largest message (`None` for S3); `can_spill`: a spill
/// location is configured. The queue counts the body only (a parked document is sent
/// without message attributes).
pub fn placement(doc: &ParkedDocument, limit: Option<usize>, can_spill: bool) -> Placement {
    match limit {
        Some(limit) if doc.json.len() > limit => {
            if can_spill {
                Placement::Spill
            } else {
                Placement::TooBig {
                    bytes: doc.json.len(),
                    limit,
                }
            }
        }
        _ => Placement::AsIs,
    }
}

/// Longest `detail` copied into a pointer.
const POINTER_DETAIL_CHARS: usize = 512;

/// The small document parked in place of `full`, spilled whole to `uri`: what happened, to
/// which transaction and message, and where the whole document is, with its digest and size
/// so that a person can check it.
pub fn pointer(full: &ParkedDocument, uri: &str) -> ParkedDocument {
    let doc: serde_json::Value = serde_json::from_str(&full.json).unwrap_or_default();
    let detail: String = doc["detail"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(POINTER_DETAIL_CHARS)
        .collect();
    let pointer = json!({
        "reason": doc["reason"],
        "detail": detail,
        "parked_at": doc["parked_at"],
        "function": FUNCTION,
        "request_id": doc["request_id"],
        "transaction_id": doc["transaction_id"],
        "source": {
            "queue_arn": doc["source"]["queue_arn"],
            "message_id": doc["source"]["message_id"],
        },
        "spilled": {
            "uri": uri,
            "sha256": sha256_hex(full.json.as_bytes()),
            "bytes": full.json.len(),
            "why": "the whole document is larger than the parking queue takes (SELFHEAL_REPLAY_PARKING_MAX_BYTES)",
        },
        "replay_by_hand": {
            "how": "read the whole document at spilled.uri and follow its replay_by_hand",
        },
    });
    ParkedDocument {
        name: full.name.clone(),
        json: pointer.to_string(),
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

    fn doc(len: usize) -> ParkedDocument {
        let full = json!({"reason": "poison", "detail": "d".repeat(2000), "transaction_id": "tx-1",
                          "source": {"message_id": "m-1", "queue_arn": "arn"},
                          "message": {"body": "x".repeat(len)}});
        ParkedDocument {
            name: "poison/m-1".into(),
            json: full.to_string(),
        }
    }

    #[test]
    fn placement_by_size_and_spill() {
        let small = doc(10);
        let big = doc(300_000);
        assert_eq!(placement(&small, Some(262_144), false), Placement::AsIs);
        assert_eq!(placement(&big, None, false), Placement::AsIs, "S3 parking");
        assert_eq!(placement(&big, Some(262_144), true), Placement::Spill);
        assert_eq!(
            placement(&big, Some(262_144), false),
            Placement::TooBig {
                bytes: big.json.len(),
                limit: 262_144
            }
        );
    }

    #[test]
    fn a_pointer_is_small_and_names_the_whole() {
        let big = doc(300_000);
        let p = pointer(&big, "s3://b/spill/poison/m-1.json");
        assert_eq!(
            p.name, big.name,
            "same name: a repeated park still overwrites"
        );
        assert!(p.json.len() < 2048, "{}", p.json.len());
        let v: serde_json::Value = serde_json::from_str(&p.json).unwrap();
        assert_eq!(v["reason"], "poison");
        assert_eq!(v["transaction_id"], "tx-1");
        assert_eq!(v["source"]["message_id"], "m-1");
        assert_eq!(v["spilled"]["bytes"], big.json.len());
        assert_eq!(v["spilled"]["sha256"], sha256_hex(big.json.as_bytes()));
        assert_eq!(sha256_hex(b"").len(), 64);
    }

    #[test]
    fn names_are_safe() {
        assert_eq!(safe_name("a/b c"), "a_b_c");
        assert_eq!(safe_name(""), "unnamed");
    }
}
