//! Pure decisions: what to do with one dead-lettered record, given plain facts.
//!
//! The record's idempotency key ([`ledger_key`]) names one *delivery generation* of a
//! transaction: `<lineage>#<replay count>#<transaction id>`, where the lineage is the SQS
//! message id of the message that started it (the producer's original, or a person's re-send
//! of a parked document) and is carried on every replay in the `replay-lineage` attribute. A
//! redelivery of the same dead-lettered message, or a second copy of the same replay, maps to
//! the same key (no double credit); a re-send by hand (replay count 0, or no lineage) starts a
//! new lineage and is never mistaken for work already done (issue 12 item 1).

use std::collections::{BTreeMap, HashSet};

use aws_lambda_events::event::sqs::SqsMessage;
use selfheal_core::ports::idempotency::State;
use selfheal_core::ports::queues::{AttributeValue, OutgoingMessage, MAX_MESSAGE_ATTRIBUTES};
use selfheal_core::{Decision, SkipCode};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::transaction::{self, SchemaError, Transaction};

/// Message attribute carrying how many times the transaction was replayed (SQS `Number`).
pub const REPLAY_COUNT_ATTRIBUTE: &str = "replay-count";
/// Message attribute carrying the transaction id, for the consumer's own idempotency check.
pub const IDEMPOTENCY_KEY_ATTRIBUTE: &str = "idempotency-key";
/// Message attribute carrying the delivery lineage a replay belongs to (see [`ledger_key`]).
/// Stamped by this function on every replay; a message sent by anyone else lacks it.
pub const LINEAGE_ATTRIBUTE: &str = "replay-lineage";
/// Longest lineage accepted from an attribute (it becomes part of a DynamoDB key); a longer or
/// odd one is ignored, and the message starts a lineage of its own.
pub const MAX_LINEAGE_LEN: usize = 128;
/// SQS's longest delay.
pub const MAX_DELAY_SECONDS: u32 = 900;

/// One dead-lettered record, read from the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub message_id: String,
    /// The body exactly as received (replayed byte for byte).
    pub body: Option<String>,
    /// Message attributes, preserved on replay.
    pub attributes: BTreeMap<String, AttributeValue>,
    /// `MessageGroupId` when the dead-letter queue is FIFO.
    pub group_id: Option<String>,
    /// `SentTimestamp` in epoch seconds: when the message was first enqueued (a standard
    /// queue's retention counts from there, even in the dead-letter queue). None when absent.
    pub sent_at: Option<i64>,
    /// The transaction and how many replays it had, or why the record is poison.
    pub parsed: Result<(Transaction, u32), SchemaError>,
    /// The delivery lineage this record belongs to (see [`ledger_key`]).
    pub lineage: String,
}

impl Incoming {
    pub fn transaction_id(&self) -> Option<&str> {
        match &self.parsed {
            Ok((t, _)) => Some(&t.transaction_id),
            Err(e) => e.transaction_id.as_deref(),
        }
    }

    pub fn replay_count(&self) -> Option<u32> {
        self.parsed.as_ref().ok().map(|(_, c)| *c)
    }
}

/// Reads one SQS record. Never fails: what cannot be read makes the record poison.
pub fn read_record(msg: &SqsMessage) -> Incoming {
    let attributes: BTreeMap<String, AttributeValue> = msg
        .message_attributes
        .iter()
        .filter_map(|(k, a)| {
            let data_type = a.data_type.clone().unwrap_or_else(|| "String".into());
            if let Some(v) = &a.string_value {
                Some((k.clone(), AttributeValue::string(&data_type, v.clone())))
            } else {
                a.binary_value.as_ref().map(|b| {
                    (
                        k.clone(),
                        AttributeValue::Binary {
                            data_type,
                            value: b.0.clone(),
                        },
                    )
                })
            }
        })
        .collect();
    let parsed = match &msg.body {
        None => Err(SchemaError {
            transaction_id: None,
            problems: vec!["the message has no body".into()],
        }),
        Some(body) => transaction::parse(body).and_then(|t| {
            replay_count(&attributes)
                .map(|c| (t.clone(), c))
                .map_err(|p| SchemaError {
                    transaction_id: Some(t.transaction_id.clone()),
                    problems: vec![p],
                })
        }),
    };
    let message_id = msg.message_id.clone().unwrap_or_default();
    let lineage = lineage(&parsed, &attributes, &message_id);
    Incoming {
        message_id,
        body: msg.body.clone(),
        lineage,
        attributes,
        group_id: msg.attributes.get("MessageGroupId").cloned(),
        sent_at: msg
            .attributes
            .get("SentTimestamp")
            .and_then(|ms| ms.trim().parse::<i64>().ok())
            .map(|ms| ms / 1000),
        parsed,
    }
}

fn replay_count(attributes: &BTreeMap<String, AttributeValue>) -> Result<u32, String> {
    match attributes.get(REPLAY_COUNT_ATTRIBUTE) {
        None => Ok(0),
        Some(AttributeValue::String { value, .. }) => value.trim().parse::<u32>().map_err(|_| {
            format!("message attribute {REPLAY_COUNT_ATTRIBUTE}={value:?} is not a whole number")
        }),
        Some(AttributeValue::Binary { .. }) => Err(format!(
            "message attribute {REPLAY_COUNT_ATTRIBUTE} is binary, expected a number"
        )),
    }
}

/// The lineage of a record: the `replay-lineage` attribute of a message this function
/// replayed (replay count 1 or more), otherwise the record's own SQS message id (a message
/// someone else sent starts a lineage).
fn lineage(
    parsed: &Result<(Transaction, u32), SchemaError>,
    attributes: &BTreeMap<String, AttributeValue>,
    message_id: &str,
) -> String {
    let stamped = match (parsed, attributes.get(LINEAGE_ATTRIBUTE)) {
        (Ok((_, count)), Some(AttributeValue::String { value, .. })) if *count > 0 => {
            Some(value.as_str())
        }
        _ => None,
    };
    match stamped.filter(|v| valid_lineage(v)) {
        Some(v) => v.to_string(),
        None if message_id.is_empty() => "no-message-id".into(),
        None => message_id.to_string(),
    }
}

fn valid_lineage(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_LINEAGE_LEN
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// The idempotency key of a record in the ledger: what makes "this record was handled"
/// true for this record and for no other piece of work.
///
/// A valid transaction is keyed by its **delivery lineage**, the replay count it arrived with,
/// and its id: `<function>#idem#tx#<lineage>#<count>#<transaction id>`. A lineage starts with
/// a message this function did not replay (the producer's original, or a person's re-send
/// of a parked document: no `replay-lineage` attribute, or a replay count of 0): its lineage
/// is its own SQS message id, which SQS keeps when it moves the message to the dead-letter
/// queue and on every redelivery. Every replay carries the lineage on in the
/// `replay-lineage` attribute, and its count one higher. So:
///
/// * a second delivery of the same dead-lettered message maps to the same key (no second
///   replay), and so do two copies of one replay (a send whose answer was lost, sent again)
///   that both fail again: they share lineage and count;
/// * the same transaction dead-lettered again after a replay gets a new key (count + 1);
/// * a transaction re-sent by hand after it was parked starts a new lineage, whatever
///   attributes were copied, as long as its replay count is reset to 0 or its
///   `replay-lineage` dropped (the parked document says to): it never meets the records of
///   its earlier lineage, so it is not mistaken for work already done (issue 12 item 1).
///
/// The price: two distinct messages a producer sent for one transaction are two lineages,
/// each replayed once. The consumer's own check on the `idempotency-key` attribute (the
/// transaction id) and the processed-transactions lookup cover that case; a transaction
/// dropped as "already done" could not be covered by anything.
///
/// Poison is keyed by the SQS message id.
pub fn ledger_key(function: &str, incoming: &Incoming) -> String {
    match &incoming.parsed {
        Ok((t, count)) => tx_key(function, &incoming.lineage, *count, &t.transaction_id),
        Err(_) => format!("{function}#idem#msg#{}", incoming.message_id),
    }
}

/// The ledger key of a valid transaction of `lineage` arriving with `count` replays (see
/// [`ledger_key`]). A replay's verification (`verify.rs`) finds by it whether the replay came
/// back to the dead-letter queue.
pub fn tx_key(function: &str, lineage: &str, count: u32, transaction_id: &str) -> String {
    format!("{function}#idem#tx#{lineage}#{count}#{transaction_id}")
}

/// The knobs `decide` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Replays allowed per transaction; the next one parks it as exhausted.
    pub max_replays: u32,
    /// Delay before the first replay; doubled for every further one, capped at 900 s.
    pub base_delay_seconds: u32,
    /// The processing queue is FIFO (no per-message delay; group and deduplication ids).
    pub target_fifo: bool,
    /// A record at least this old (seconds since `SentTimestamp`) is parked as expiring
    /// instead of replayed: the dead-letter queue's retention would delete it soon.
    pub park_at_age_seconds: u64,
}

/// What is known about a record besides its contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The ledger's record for its key.
    pub ledger: Option<State>,
    /// The loyalty service's processed-transactions table holds it.
    pub applied: bool,
    /// Epoch seconds.
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParkReason {
    /// Not a valid transaction: retrying cannot help.
    Poison,
    /// Replayed the maximum number of times and failed again.
    Exhausted,
    /// Valid, but SQS would refuse the replay (for example too many message attributes).
    Unreplayable,
    /// Still not handled when the dead-letter queue's retention is about to delete it.
    Expiring,
}

impl ParkReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poison => "poison",
            Self::Exhausted => "exhausted",
            Self::Unreplayable => "unreplayable",
            Self::Expiring => "expiring",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this message to the processing queue.
    Replay {
        transaction_id: String,
        /// The replay count the message carries.
        replay_count: u32,
        message: OutgoingMessage,
    },
    /// Put the record aside for a person.
    Park { reason: ParkReason, detail: String },
}

/// Exponential backoff: `base * 2^replays_so_far`, capped at SQS's 900 s.
pub fn backoff_seconds(base: u32, replays_so_far: u32) -> u32 {
    let factor = 1u64 << replays_so_far.min(20);
    (u64::from(base) * factor).min(u64::from(MAX_DELAY_SECONDS)) as u32
}

/// FIFO deduplication id: the same transaction at the same replay count of the same lineage
/// always gets the same id, so a second send inside SQS's five-minute window is dropped by
/// SQS; a re-send by hand (a new lineage) is not.
pub fn deduplication_id(transaction_id: &str, replay_count: u32, lineage: &str) -> String {
    let digest = Sha256::digest(format!("{transaction_id}\n{replay_count}\n{lineage}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What to do with one record.
pub fn decide(incoming: &Incoming, facts: &Facts, rules: &Rules) -> Decision<Action> {
    if let Some(skip) = handled_or_claimed(facts) {
        return skip;
    }
    let (tx, count) = match &incoming.parsed {
        Err(e) => {
            return Decision::act(
                Action::Park {
                    reason: ParkReason::Poison,
                    detail: e.to_string(),
                },
                format!("not a valid transaction: {e}"),
            )
        }
        Ok((tx, count)) => (tx, *count),
    };
    if facts.applied {
        return Decision::skip(
            SkipCode::AlreadyDone,
            format!(
                "transaction {} is in the processed-transactions table: it was applied before it failed",
                tx.transaction_id
            ),
        );
    }
    if count >= rules.max_replays {
        let detail = format!(
            "replayed {count} times (limit {}) and failed again",
            rules.max_replays
        );
        return Decision::act(
            Action::Park {
                reason: ParkReason::Exhausted,
                detail: detail.clone(),
            },
            detail,
        );
    }
    if let Some(age) = incoming.sent_at.map(|t| facts.now.saturating_sub(t)) {
        if age >= i64::try_from(rules.park_at_age_seconds).unwrap_or(i64::MAX) {
            let detail = format!(
                "{age} s in the dead-letter queue and still not handled; the retention would delete it (parked from {} s of age on)",
                rules.park_at_age_seconds
            );
            return Decision::act(
                Action::Park {
                    reason: ParkReason::Expiring,
                    detail: detail.clone(),
                },
                detail,
            );
        }
    }
    replay(incoming, tx, count, rules)
}

/// What the ledger alone decides: a message already handled, or one whose claim another
/// invocation still holds, is skipped.
fn handled_or_claimed(facts: &Facts) -> Option<Decision<Action>> {
    match &facts.ledger {
        Some(State::Done {
            outcome, detail, ..
        }) => Some(Decision::skip(
            SkipCode::AlreadyDone,
            format!("this message was already handled: {outcome} ({detail})"),
        )),
        Some(State::InProgress { lease_until, owner }) if *lease_until > facts.now => {
            Some(Decision::skip(
                SkipCode::ChangeInProgress,
                format!(
                    "invocation {owner} is handling this message (claim held until {lease_until}); it returns to the queue and is looked at again"
                ),
            ))
        }
        _ => None,
    }
}

/// The replay of a valid transaction with `count` replays so far; parked as unreplayable
/// when the attributes it must carry would not fit.
fn replay(incoming: &Incoming, tx: &Transaction, count: u32, rules: &Rules) -> Decision<Action> {
    let mut attributes = incoming.attributes.clone();
    attributes.insert(
        REPLAY_COUNT_ATTRIBUTE.into(),
        AttributeValue::string("Number", (count + 1).to_string()),
    );
    attributes.insert(
        IDEMPOTENCY_KEY_ATTRIBUTE.into(),
        AttributeValue::string("String", tx.transaction_id.clone()),
    );
    if attributes.len() > MAX_MESSAGE_ATTRIBUTES {
        let detail = format!(
            "the message has {} attributes; with {REPLAY_COUNT_ATTRIBUTE} and {IDEMPOTENCY_KEY_ATTRIBUTE} it would have {}, over SQS's {MAX_MESSAGE_ATTRIBUTES}",
            incoming.attributes.len(),
            attributes.len()
        );
        return Decision::act(
            Action::Park {
                reason: ParkReason::Unreplayable,
                detail: detail.clone(),
            },
            detail,
        );
    }
    // The lineage only narrows duplicates: when the message has no room left for it, the
    // replay goes without, and its next failure starts a lineage of its own.
    if attributes.contains_key(LINEAGE_ATTRIBUTE) || attributes.len() < MAX_MESSAGE_ATTRIBUTES {
        attributes.insert(
            LINEAGE_ATTRIBUTE.into(),
            AttributeValue::string("String", incoming.lineage.clone()),
        );
    }
    let next = count + 1;
    let (delay, group, dedup, how) = if rules.target_fifo {
        let group = incoming
            .group_id
            .clone()
            .unwrap_or_else(|| tx.member_id.clone());
        let how = format!("group {group}, no per-message delay (FIFO)");
        (
            None,
            Some(group),
            Some(deduplication_id(
                &tx.transaction_id,
                next,
                &incoming.lineage,
            )),
            how,
        )
    } else {
        let d = backoff_seconds(rules.base_delay_seconds, count);
        (Some(d as i32), None, None, format!("delay {d}s"))
    };
    Decision::act(
        Action::Replay {
            transaction_id: tx.transaction_id.clone(),
            replay_count: next,
            message: OutgoingMessage {
                body: incoming.body.clone().unwrap_or_default(),
                attributes,
                delay_seconds: delay,
                group_id: group,
                deduplication_id: dedup,
            },
        },
        format!("replay {next} of {}, {how}", rules.max_replays),
    )
}

/// For an ordered (FIFO) source: given which records failed, in batch order, also fail every
/// later record of a group in which an earlier record failed. Returns the indices newly held
/// back.
pub fn held_back(groups: &[Option<&str>], failed: &[bool]) -> Vec<usize> {
    let mut blocked: HashSet<&str> = HashSet::new();
    let mut newly = Vec::new();
    for (i, (g, f)) in groups.iter().zip(failed).enumerate() {
        let Some(g) = g else { continue };
        if blocked.contains(g) {
            if !f {
                newly.push(i);
            }
        } else if *f {
            blocked.insert(g);
        }
    }
    newly
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(body: &str, attrs: serde_json::Value) -> Incoming {
        let msg: SqsMessage = serde_json::from_value(json!({
            "messageId": "m-1", "body": body, "attributes": {"MessageGroupId": "g"},
            "messageAttributes": attrs,
        }))
        .unwrap();
        read_record(&msg)
    }

    const GOOD: &str =
        r#"{"transaction_id":"tx-1","member_id":"m-1","points":10,"kind":"earn","note":"kept"}"#;

    fn rules(fifo: bool) -> Rules {
        Rules {
            max_replays: 3,
            base_delay_seconds: 30,
            target_fifo: fifo,
            park_at_age_seconds: 1000,
        }
    }

    fn count_attr(n: &str) -> serde_json::Value {
        json!({"replay-count": {"stringValue": n, "dataType": "Number"}})
    }

    /// Issue 12 item 4: judged by `SentTimestamp` (ms); exhausted and poison keep their reason.
    #[test]
    fn a_record_near_the_retention_is_parked_as_expiring() {
        let aged = |sent_ms: &str, body: &str, attrs: serde_json::Value| {
            let msg: SqsMessage = serde_json::from_value(json!({
                "messageId": "m-1", "body": body, "attributes": {"SentTimestamp": sent_ms},
                "messageAttributes": attrs,
            }))
            .unwrap();
            read_record(&msg)
        };
        let facts = Facts {
            ledger: None,
            applied: false,
            now: 5_000,
        };
        let kind = |inc: &Incoming| match decide(inc, &facts, &rules(false)) {
            Decision::Act {
                action: Action::Park { reason, .. },
                ..
            } => reason.as_str(),
            Decision::Act { .. } => "replay",
            Decision::Skip { .. } => "skip",
        };
        // rules(): parked from 1000 s of age on.
        assert_eq!(kind(&aged("4000000", GOOD, json!({}))), "expiring");
        assert_eq!(kind(&aged("4001000", GOOD, json!({}))), "replay");
        assert_eq!(kind(&aged("not-a-time", GOOD, json!({}))), "replay");
        assert_eq!(kind(&aged("0", GOOD, count_attr("3"))), "exhausted");
        assert_eq!(kind(&aged("0", "{oops", json!({}))), "poison");
        let applied = Facts {
            applied: true,
            ..facts.clone()
        };
        assert!(matches!(
            decide(&aged("0", GOOD, json!({})), &applied, &rules(false)),
            Decision::Skip { .. }
        ));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let got: Vec<u32> = (0..8).map(|n| backoff_seconds(30, n)).collect();
        assert_eq!(got, vec![30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(backoff_seconds(0, 3), 0);
        assert_eq!(backoff_seconds(u32::MAX, u32::MAX), 900);
    }

    #[test]
    fn decide_table() {
        let now = 1_000;
        let done = Some(State::Done {
            outcome: "replayed".into(),
            detail: "x".into(),
            at: 1,
        });
        let live = Some(State::InProgress {
            lease_until: now + 5,
            owner: "r".into(),
        });
        let expired = Some(State::InProgress {
            lease_until: now - 1,
            owner: "r".into(),
        });
        let many: serde_json::Value = (0..9)
            .map(|i| {
                (
                    format!("a{i}"),
                    json!({"stringValue": "v", "dataType": "String"}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        type Want = Result<&'static str, SkipCode>;
        let cases: Vec<(Incoming, Option<State>, bool, Want)> = vec![
            (record(GOOD, json!({})), None, false, Ok("replay")),
            (
                record(GOOD, json!({})),
                expired.clone(),
                false,
                Ok("replay"),
            ),
            (
                record(GOOD, json!({})),
                done.clone(),
                false,
                Err(SkipCode::AlreadyDone),
            ),
            (
                record(GOOD, json!({})),
                live.clone(),
                false,
                Err(SkipCode::ChangeInProgress),
            ),
            (
                record(GOOD, json!({})),
                None,
                true,
                Err(SkipCode::AlreadyDone),
            ),
            (record("{oops", json!({})), None, false, Ok("poison")),
            (
                record("{oops", json!({})),
                done,
                false,
                Err(SkipCode::AlreadyDone),
            ),
            (record(GOOD, count_attr("2")), None, false, Ok("replay")),
            (record(GOOD, count_attr("3")), None, false, Ok("exhausted")),
            (
                record(GOOD, count_attr("3")),
                None,
                true,
                Err(SkipCode::AlreadyDone),
            ),
            (record(GOOD, count_attr("x")), None, false, Ok("poison")),
            (record(GOOD, many), None, false, Ok("unreplayable")),
        ];
        for (i, (inc, ledger, applied, want)) in cases.into_iter().enumerate() {
            let facts = Facts {
                ledger,
                applied,
                now,
            };
            let got = match decide(&inc, &facts, &rules(false)) {
                Decision::Skip { reason } => Err(reason.code),
                Decision::Act {
                    action: Action::Replay { .. },
                    ..
                } => Ok("replay"),
                Decision::Act {
                    action: Action::Park { reason, .. },
                    ..
                } => Ok(reason.as_str()),
            };
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn replay_keeps_body_and_attributes_and_counts() {
        let inc = record(
            GOOD,
            json!({"trace": {"stringValue": "abc", "dataType": "String"},
                   "blob": {"binaryValue": "AAEC", "dataType": "Binary"},
                   "replay-count": {"stringValue": "1", "dataType": "Number"}}),
        );
        let Decision::Act {
            action:
                Action::Replay {
                    message,
                    replay_count,
                    ..
                },
            ..
        } = decide(&inc, &Facts::default(), &rules(false))
        else {
            panic!("expected a replay")
        };
        assert_eq!(message.body, GOOD, "byte for byte");
        assert_eq!(replay_count, 2);
        assert_eq!(message.delay_seconds, Some(60));
        assert_eq!(message.group_id, None);
        assert_eq!(
            message.attributes["trace"],
            AttributeValue::string("String", "abc")
        );
        assert_eq!(
            message.attributes["blob"],
            AttributeValue::Binary {
                data_type: "Binary".into(),
                value: vec![0, 1, 2]
            }
        );
        assert_eq!(
            message.attributes[REPLAY_COUNT_ATTRIBUTE],
            AttributeValue::string("Number", "2")
        );
        assert_eq!(
            message.attributes[IDEMPOTENCY_KEY_ATTRIBUTE],
            AttributeValue::string("String", "tx-1")
        );
    }

    #[test]
    fn fifo_replay_has_group_and_stable_dedup_id_and_no_delay() {
        let inc = record(GOOD, json!({}));
        let Decision::Act {
            action: Action::Replay { message, .. },
            ..
        } = decide(&inc, &Facts::default(), &rules(true))
        else {
            panic!("expected a replay")
        };
        assert_eq!(message.delay_seconds, None);
        assert_eq!(message.group_id.as_deref(), Some("g"));
        assert_eq!(
            message.deduplication_id,
            Some(deduplication_id("tx-1", 1, "m-1"))
        );
        assert_ne!(
            deduplication_id("tx-1", 1, "m-1"),
            deduplication_id("tx-1", 2, "m-1")
        );
        assert_ne!(
            deduplication_id("tx-1", 1, "m-1"),
            deduplication_id("tx-1", 1, "m-2")
        );
        assert_eq!(deduplication_id("tx-1", 1, "m-1").len(), 64);
    }

    #[test]
    fn keys_separate_stages_and_poison() {
        let a = record(GOOD, json!({}));
        let b = record(GOOD, count_attr("1"));
        let p = record("nope", json!({}));
        assert_eq!(ledger_key("f", &a), "f#idem#tx#m-1#0#tx-1");
        assert_eq!(ledger_key("f", &b), "f#idem#tx#m-1#1#tx-1");
        assert_eq!(ledger_key("f", &p), "f#idem#msg#m-1");
    }

    /// Issue 12 item 1: a replay carries its lineage on; a message with a replay count of 0,
    /// or without the attribute, starts its own (keyed by its message id), whatever else it
    /// carries; an odd lineage value is not trusted.
    #[test]
    fn lineage_is_carried_by_replays_and_restarted_by_a_resend() {
        let lin = |count: &str, lineage: &str| {
            json!({"replay-count": {"stringValue": count, "dataType": "Number"},
                   "replay-lineage": {"stringValue": lineage, "dataType": "String"}})
        };
        let replayed = record(GOOD, lin("2", "origin-1"));
        assert_eq!(replayed.lineage, "origin-1");
        assert_eq!(ledger_key("f", &replayed), "f#idem#tx#origin-1#2#tx-1");
        // A re-send by hand with every attribute copied and the count reset to 0.
        assert_eq!(record(GOOD, lin("0", "origin-1")).lineage, "m-1");
        // ... or with the count kept and the lineage dropped.
        assert_eq!(record(GOOD, count_attr("3")).lineage, "m-1");
        assert_eq!(record(GOOD, lin("1", "bad value")).lineage, "m-1");
        assert_eq!(record(GOOD, lin("1", &"x".repeat(129))).lineage, "m-1");

        let Decision::Act {
            action: Action::Replay { message, .. },
            ..
        } = decide(&replayed, &Facts::default(), &rules(false))
        else {
            panic!("expected a replay")
        };
        assert_eq!(
            message.attributes[LINEAGE_ATTRIBUTE],
            AttributeValue::string("String", "origin-1")
        );
        let fresh = record(GOOD, json!({}));
        let Decision::Act {
            action: Action::Replay { message, .. },
            ..
        } = decide(&fresh, &Facts::default(), &rules(false))
        else {
            panic!("expected a replay")
        };
        assert_eq!(
            message.attributes[LINEAGE_ATTRIBUTE],
            AttributeValue::string("String", "m-1"),
            "the original starts the lineage with its message id"
        );
    }

    /// Eight attributes of its own: replay-count and idempotency-key fit, the lineage does
    /// not; the replay goes without it rather than being parked.
    #[test]
    fn lineage_gives_way_when_attributes_are_full() {
        let eight: serde_json::Value = (0..8)
            .map(|i| {
                (
                    format!("a{i}"),
                    json!({"stringValue": "v", "dataType": "String"}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        let Decision::Act {
            action: Action::Replay { message, .. },
            ..
        } = decide(&record(GOOD, eight), &Facts::default(), &rules(false))
        else {
            panic!("expected a replay")
        };
        assert_eq!(message.attributes.len(), MAX_MESSAGE_ATTRIBUTES);
        assert!(!message.attributes.contains_key(LINEAGE_ATTRIBUTE));
    }

    #[test]
    fn held_back_follows_the_first_failure_of_a_group() {
        let groups = [Some("a"), Some("b"), Some("a"), Some("a"), None, Some("b")];
        let failed = [false, true, true, false, false, false];
        assert_eq!(held_back(&groups, &failed), vec![3, 5]);
        assert!(held_back(&[None, None], &[true, false]).is_empty());
    }
}
