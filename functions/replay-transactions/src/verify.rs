//! The closed loop of replay-transactions (issue 14), the pure part: which transactions a
//! batch replayed, how that list is kept in the ledger between the replay and its
//! verification, and what a verification concludes from the processed-transactions table.
//!
//! One batch that replayed costs one follow-up, however many transactions it replayed: the
//! list goes to the ledger (in items of [`LIST_CHUNK`] transactions, written in the batch's
//! own settle call), and the follow-up carries only a reference to it (the action id and the
//! number of items), far below Scheduler's 8,192-character input limit.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::plan::tx_key;
use crate::FUNCTION;

/// Transactions per ledger item of a list: a worst-case entry (a 256-character id of 4-byte
/// characters, a 128-character lineage) is about 1.2 KB, so an item stays far below
/// DynamoDB's 400 KB, and one `BatchGetItem` (100 keys) reads a list of 10,000.
pub const LIST_CHUNK: usize = 100;

/// Transaction ids named in one audit record (and so in one notice): SNS takes 256 KB.
pub const IDS_IN_A_RECORD: usize = 200;

/// The key, in the follow-up's `alarm_event`, of the reference to the batch's list.
pub const BATCH_REF_KEY: &str = "replay_batch";

/// The ledger item's outcome that marks a list.
pub const LIST_OUTCOME: &str = "verify-list";

/// One replayed transaction, as the verification needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    pub transaction_id: String,
    /// The lineage the replay will come back with if it fails again: its `replay-lineage`
    /// attribute, or (when it had no room for one) its own SQS message id.
    pub lineage: String,
    /// The replay count the replay carries.
    pub replay_count: u32,
}

impl Replayed {
    /// The ledger key the replay has if it comes back to the dead-letter queue: the function
    /// has then claimed or handled it again (replayed or parked it), under its own record.
    pub fn return_key(&self) -> String {
        tx_key(
            FUNCTION,
            &self.lineage,
            self.replay_count,
            &self.transaction_id,
        )
    }
}

/// What the follow-up carries (in `Verify::alarm_event`): how many transactions, in how many
/// ledger items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRef {
    pub transactions: usize,
    pub chunks: usize,
}

impl BatchRef {
    pub fn of(list: &[Replayed]) -> Self {
        Self {
            transactions: list.len(),
            chunks: list.len().div_ceil(LIST_CHUNK),
        }
    }

    pub fn to_event(self) -> Value {
        json!({ BATCH_REF_KEY: self })
    }

    /// Reads the reference from a follow-up's `alarm_event`.
    pub fn from_event(event: Option<&Value>) -> Result<Self, String> {
        let v = event
            .and_then(|e| e.get(BATCH_REF_KEY))
            .ok_or_else(|| format!("the verification carries no {BATCH_REF_KEY}"))?;
        let r: Self = serde_json::from_value(v.clone())
            .map_err(|e| format!("the verification's {BATCH_REF_KEY} cannot be read: {e}"))?;
        if r.chunks != r.transactions.div_ceil(LIST_CHUNK) || r.chunks > LIST_CHUNK {
            return Err(format!(
                "the verification's {BATCH_REF_KEY} does not add up: {} transactions in {} items",
                r.transactions, r.chunks
            ));
        }
        Ok(r)
    }
}

/// The ledger key of item `chunk` of the list of `action_id`.
pub fn list_key(action_id: &str, chunk: usize) -> String {
    format!("{FUNCTION}#verify#{action_id}#{chunk}")
}

/// The list as ledger items' details (JSON), in order.
pub fn encode(list: &[Replayed]) -> Vec<String> {
    list.chunks(LIST_CHUNK)
        .map(|c| serde_json::to_string(c).unwrap_or_else(|_| "[]".into()))
        .collect()
}

/// One ledger item's detail, read back.
pub fn decode(detail: &str) -> Result<Vec<Replayed>, String> {
    serde_json::from_str(detail).map_err(|e| format!("a list item cannot be read: {e}"))
}

/// What a verification concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Every replayed transaction is in the processed-transactions table.
    Healed,
    /// Every one not applied came back to the dead-letter queue and was handled again
    /// (replayed again, with its own verification, or parked): nothing is left for this one.
    HandedOn { handed_on: Vec<String> },
    /// Some are neither applied nor back: looked at again later.
    NotYet { missing: Vec<String> },
    /// Some are still neither applied nor back at the last look: a person is told.
    Escalate { missing: Vec<String> },
}

/// The verification's decision over plain facts: `applied` (transaction ids in the processed
/// table), `returned` (return keys the ledger holds), and how many looks this was of how many.
pub fn check(
    list: &[Replayed],
    applied: &HashSet<String>,
    returned: &HashSet<String>,
    attempt: u32,
    max_checks: u32,
) -> Check {
    let mut missing = Vec::new();
    let mut handed_on = Vec::new();
    for r in list {
        if applied.contains(&r.transaction_id) {
            continue;
        }
        if returned.contains(&r.return_key()) {
            handed_on.push(r.transaction_id.clone());
        } else {
            missing.push(r.transaction_id.clone());
        }
    }
    match (missing.is_empty(), handed_on.is_empty()) {
        (true, true) => Check::Healed,
        (true, false) => Check::HandedOn { handed_on },
        (false, _) if attempt >= max_checks => Check::Escalate { missing },
        (false, _) => Check::NotYet { missing },
    }
}

/// The first [`IDS_IN_A_RECORD`] ids, for a record (the count goes beside them).
pub fn shown(ids: &[String]) -> &[String] {
    ids.get(..IDS_IN_A_RECORD).unwrap_or(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replayed(n: usize) -> Vec<Replayed> {
        (0..n)
            .map(|i| Replayed {
                transaction_id: format!("tx-{i}"),
                lineage: format!("msg-{i}"),
                replay_count: 1,
            })
            .collect()
    }

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_list_round_trips_through_ledger_items_and_a_reference() {
        for n in [1, 99, 100, 101, 250] {
            let list = replayed(n);
            let items = encode(&list);
            let r = BatchRef::of(&list);
            assert_eq!(items.len(), r.chunks, "{n}");
            let back: Vec<Replayed> = items.iter().flat_map(|d| decode(d).unwrap()).collect();
            assert_eq!(back, list);
            assert_eq!(BatchRef::from_event(Some(&r.to_event())), Ok(r));
        }
        assert!(BatchRef::from_event(None).is_err());
        let forged = json!({BATCH_REF_KEY: {"transactions": 5, "chunks": 3}});
        assert!(BatchRef::from_event(Some(&forged)).is_err());
        assert!(decode("{").is_err());
        assert_eq!(list_key("act-1", 2), "replay-transactions#verify#act-1#2");
    }

    #[test]
    fn a_worst_case_list_item_stays_far_below_dynamodbs_item_limit() {
        let list: Vec<Replayed> = (0..LIST_CHUNK)
            .map(|i| Replayed {
                transaction_id: format!("{i}{}", "\u{10348}".repeat(255)),
                lineage: "l".repeat(128),
                replay_count: u32::MAX,
            })
            .collect();
        let items = encode(&list);
        assert_eq!(items.len(), 1);
        assert!(items[0].len() < 200_000, "{}", items[0].len());
    }

    #[test]
    fn the_return_key_is_the_ledger_key_of_the_replay_coming_back() {
        let r = Replayed {
            transaction_id: "tx-1".into(),
            lineage: "m-1".into(),
            replay_count: 2,
        };
        assert_eq!(r.return_key(), "replay-transactions#idem#tx#m-1#2#tx-1");
    }

    #[test]
    fn verification_outcomes() {
        let list = replayed(3);
        let back = |i: usize| list[i].return_key();
        let none = HashSet::new();
        let all = set(&["tx-0", "tx-1", "tx-2"]);
        // (applied, returned, attempt, max) -> outcome
        let cases = [
            (all.clone(), none.clone(), 1, 3, Check::Healed),
            (all.clone(), none.clone(), 3, 3, Check::Healed),
            (
                set(&["tx-0"]),
                none.clone(),
                1,
                3,
                Check::NotYet {
                    missing: vec!["tx-1".into(), "tx-2".into()],
                },
            ),
            (
                set(&["tx-0"]),
                none.clone(),
                3,
                3,
                Check::Escalate {
                    missing: vec!["tx-1".into(), "tx-2".into()],
                },
            ),
            (
                set(&["tx-0", "tx-2"]),
                HashSet::from([back(1)]),
                1,
                3,
                Check::HandedOn {
                    handed_on: vec!["tx-1".into()],
                },
            ),
            (
                set(&["tx-0"]),
                HashSet::from([back(1)]),
                2,
                2,
                Check::Escalate {
                    missing: vec!["tx-2".into()],
                },
            ),
            // Applied wins over returned (applied by the later replay, say).
            (all, HashSet::from([back(0)]), 1, 3, Check::Healed),
        ];
        for (applied, returned, attempt, max, want) in cases {
            assert_eq!(
                check(&list, &applied, &returned, attempt, max),
                want,
                "{applied:?} {returned:?} {attempt}/{max}"
            );
        }
    }

    #[test]
    fn at_most_a_few_hundred_ids_in_a_record() {
        let ids: Vec<String> = (0..500).map(|i| i.to_string()).collect();
        assert_eq!(shown(&ids).len(), IDS_IN_A_RECORD);
        assert_eq!(shown(&ids[..3]).len(), 3);
    }
}
