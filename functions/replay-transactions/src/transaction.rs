//! The loyalty transaction message: what a body must hold to be replayed.
//!
//! ```json
//! {"transaction_id": "tx-1", "member_id": "m-42", "points": 150, "kind": "earn",
//!  "occurred_at": "2026-11-23T10:00:00Z", "...": "any other field, kept as is"}
//! ```
//!
//! * `transaction_id` — required, a non-empty string of at most 256 characters without control
//!   characters. It is the idempotency key everywhere.
//! * `member_id` — required, a non-empty string.
//! * `points` — required, a non-zero whole number (JSON integer, not `1.0`).
//! * `kind` — required, one of `earn`, `redeem`, `adjust`.
//! * `occurred_at` — optional; when present an RFC 3339 timestamp.
//! * Any other field is allowed and untouched: a replay sends the original body byte for byte.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// Longest transaction id accepted (it becomes part of DynamoDB keys).
pub const MAX_ID_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Earn,
    Redeem,
    Adjust,
}

/// A valid transaction (the fields this function reads; the body itself is kept verbatim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transaction {
    pub transaction_id: String,
    pub member_id: String,
    pub points: i64,
    pub kind: Kind,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Why a body is not a valid transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// The transaction id when one could be read (to find the parked record by it).
    pub transaction_id: Option<String>,
    pub problems: Vec<String>,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

fn valid_id(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= MAX_ID_LEN && !s.chars().any(char::is_control)
}

fn required_string(
    obj: &Map<String, Value>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    match obj.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            problems.push(format!("{name} is empty"));
            None
        }
        Some(other) => {
            problems.push(format!(
                "{name} must be a string, found {}",
                type_name(other)
            ));
            None
        }
        None => {
            problems.push(format!("{name} is missing"));
            None
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn points(obj: &Map<String, Value>, problems: &mut Vec<String>) -> Option<i64> {
    match obj.get("points") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => {
                problems.push("points must not be zero".into());
                None
            }
            Some(p) => Some(p),
            None => {
                problems.push(format!("points must be a whole number, found {n}"));
                None
            }
        },
        Some(other) => {
            problems.push(format!(
                "points must be a whole number, found {}",
                type_name(other)
            ));
            None
        }
        None => {
            problems.push("points is missing".into());
            None
        }
    }
}

fn kind(obj: &Map<String, Value>, problems: &mut Vec<String>) -> Option<Kind> {
    match obj.get("kind") {
        Some(Value::String(k)) => match k.as_str() {
            "earn" => Some(Kind::Earn),
            "redeem" => Some(Kind::Redeem),
            "adjust" => Some(Kind::Adjust),
            other => {
                problems.push(format!("kind {other:?} is not one of earn, redeem, adjust"));
                None
            }
        },
        Some(other) => {
            problems.push(format!("kind must be a string, found {}", type_name(other)));
            None
        }
        None => {
            problems.push("kind is missing".into());
            None
        }
    }
}

/// Optional: absent or null means the sender did not say.
fn occurred_at(obj: &Map<String, Value>, problems: &mut Vec<String>) -> Option<DateTime<Utc>> {
    match obj.get("occurred_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                problems.push(format!(
                    "occurred_at {s:?} is not an RFC 3339 timestamp: {e}"
                ));
                None
            }
        },
        Some(other) => {
            problems.push(format!(
                "occurred_at must be a string, found {}",
                type_name(other)
            ));
            None
        }
    }
}

/// Reads and validates a message body. Every problem is reported, not only the first.
pub fn parse(body: &str) -> Result<Transaction, SchemaError> {
    let value: Value = serde_json::from_str(body).map_err(|e| SchemaError {
        transaction_id: None,
        problems: vec![format!("body is not JSON: {e}")],
    })?;
    let Value::Object(obj) = value else {
        return Err(SchemaError {
            transaction_id: None,
            problems: vec![format!(
                "body must be a JSON object, found {}",
                type_name(&value)
            )],
        });
    };
    let mut problems = Vec::new();
    let transaction_id = required_string(&obj, "transaction_id", &mut problems);
    let transaction_id = match transaction_id {
        Some(id) if valid_id(&id) => Some(id),
        Some(_) => {
            problems.push(format!(
                "transaction_id must be at most {MAX_ID_LEN} characters without control characters"
            ));
            None
        }
        None => None,
    };
    let member_id = required_string(&obj, "member_id", &mut problems);
    let points = points(&obj, &mut problems);
    let kind = kind(&obj, &mut problems);
    let occurred_at = occurred_at(&obj, &mut problems);
    match (transaction_id, member_id, points, kind) {
        (Some(transaction_id), Some(member_id), Some(points), Some(kind))
            if problems.is_empty() =>
        {
            Ok(Transaction {
                transaction_id,
                member_id,
                points,
                kind,
                occurred_at,
            })
        }
        (transaction_id, ..) => Err(SchemaError {
            transaction_id,
            problems,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_bodies() {
        let t = parse(r#"{"transaction_id":"tx-1","member_id":"m","points":-20,"kind":"redeem","occurred_at":"2026-11-23T10:00:00+01:00","extra":{"x":1}}"#).unwrap();
        assert_eq!(t.transaction_id, "tx-1");
        assert_eq!(t.points, -20);
        assert_eq!(t.kind, Kind::Redeem);
        assert_eq!(
            t.occurred_at.unwrap().to_rfc3339(),
            "2026-11-23T09:00:00+00:00"
        );
        assert!(
            parse(r#"{"transaction_id":"t","member_id":"m","points":1,"kind":"adjust"}"#).is_ok()
        );
    }

    #[test]
    fn invalid_bodies_say_why() {
        let cases: &[(&str, &str)] = &[
            ("not json", "not JSON"),
            ("[1]", "must be a JSON object"),
            (
                r#"{"member_id":"m","points":1,"kind":"earn"}"#,
                "transaction_id is missing",
            ),
            (
                r#"{"transaction_id":"","member_id":"m","points":1,"kind":"earn"}"#,
                "transaction_id is empty",
            ),
            (
                r#"{"transaction_id":7,"member_id":"m","points":1,"kind":"earn"}"#,
                "transaction_id must be a string",
            ),
            (
                r#"{"transaction_id":"t","member_id":"m","points":0,"kind":"earn"}"#,
                "points must not be zero",
            ),
            (
                r#"{"transaction_id":"t","member_id":"m","points":1.5,"kind":"earn"}"#,
                "whole number",
            ),
            (
                r#"{"transaction_id":"t","member_id":"m","points":"5","kind":"earn"}"#,
                "whole number",
            ),
            (
                r#"{"transaction_id":"t","member_id":"m","points":5,"kind":"gift"}"#,
                "not one of earn",
            ),
            (
                r#"{"transaction_id":"t","points":5,"kind":"earn"}"#,
                "member_id is missing",
            ),
            (
                r#"{"transaction_id":"t","member_id":"m","points":5,"kind":"earn","occurred_at":"yesterday"}"#,
                "RFC 3339",
            ),
        ];
        for (body, want) in cases {
            let err = parse(body).unwrap_err();
            assert!(err.to_string().contains(want), "{body}: {err}");
        }
        let err = parse(r#"{"transaction_id":"tx-9","points":0}"#).unwrap_err();
        assert_eq!(err.transaction_id.as_deref(), Some("tx-9"));
        assert_eq!(err.problems.len(), 3, "{err}");
    }

    proptest! {
        #[test]
        fn never_panics(body in ".{0,200}") {
            let _ = parse(&body);
        }

        #[test]
        fn any_nonzero_points_with_any_extras_is_valid(points in any::<i64>().prop_filter("non-zero", |p| *p != 0), extra in "[a-z]{1,8}") {
            let body = serde_json::json!({"transaction_id": "t", "member_id": "m", "points": points, "kind": "earn", extra.clone(): [1, {"nested": true}]}).to_string();
            let t = parse(&body);
            prop_assert!(t.is_ok() || ["transaction_id", "member_id", "points", "kind", "occurred_at"].contains(&extra.as_str()));
        }
    }
}
