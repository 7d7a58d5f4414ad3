//! Structure-aware fuzzing of event parsers: start from valid event shapes (the samples in
//! `events/`), mutate fields, types and encodings, and check that the parser never panics and
//! that every rejection is a one-line reason.
//!
//! Deterministic (a seeded generator), dependency-free, and sized by `SELFHEAL_FUZZ_CASES`
//! (default [`DEFAULT_CASES`]): `make test` runs a few thousand cases per parser, `make soak`
//! a million.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{json, Map, Value};

/// Cases per parser when `SELFHEAL_FUZZ_CASES` is not set.
pub const DEFAULT_CASES: usize = 3_000;

/// Cases per parser for this run.
pub fn cases() -> usize {
    std::env::var("SELFHEAL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// A small, fast, seeded generator (SplitMix64): the same seed gives the same cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Strings that have broken parsers before: encodings, separators, huge and odd numbers,
/// dates, ARNs, JSON inside strings.
const NASTY: &[&str] = &[
    "",
    " ",
    "null",
    "ALARM",
    "OK",
    "INSUFFICIENT_DATA",
    "%",
    "%zz",
    "%E2%82",
    "a+b%2Bc",
    "../../etc/passwd",
    "é",
    "\u{0}",
    "\u{202e}rtl",
    "🦀🦀",
    "9999999999999999999999999",
    "-1",
    "1e309",
    "NaN",
    "2026-02-30T25:61:00Z",
    "1970-01-01T00:00:00Z",
    "2026-11-30T10:00:00.000+0000",
    "arn:aws:cloudwatch:eu-west-1:123:alarm:x",
    "arn:",
    "{\"AlarmName\":1}",
    "{\"Records\":[]}",
    "[]",
    "{",
    "i-0123456789abcdef0",
    "s3://b/k",
    "AWS/EC2",
    "GreaterThanThreshold",
];

fn nasty_string(rng: &mut Rng) -> String {
    let base = NASTY[rng.below(NASTY.len())];
    match rng.below(4) {
        0 => base.repeat(1 + rng.below(64)),
        1 => format!("{base}{}", NASTY[rng.below(NASTY.len())]),
        _ => base.to_string(),
    }
}

fn any_scalar(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => json!(rng.next_u64() as i64),
        3 => json!(-(rng.below(1000) as i64)),
        4 => json!(f64::from_bits(rng.next_u64() & 0x7FEF_FFFF_FFFF_FFFF)),
        5 => json!([]),
        6 => json!({}),
        _ => Value::String(nasty_string(rng)),
    }
}

/// Paths to every node of `v` (object keys and array indices).
fn paths(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(Step::Key(k.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(Step::Index(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn at<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in path {
        cur = match (s, cur) {
            (Step::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Step::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// One mutation of a valid event: a node replaced by another type, a key removed or added,
/// a string re-encoded (JSON inside strings, as SNS carries alarms, is parsed and mutated too),
/// an array emptied or repeated, a subtree duplicated elsewhere.
pub fn mutate(valid: &Value, rng: &mut Rng) -> Value {
    let mut v = valid.clone();
    for _ in 0..1 + rng.below(3) {
        let mut all = Vec::new();
        paths(&v, &mut Vec::new(), &mut all);
        let path = all[rng.below(all.len())].clone();
        let donor = {
            let p = all[rng.below(all.len())].clone();
            at(&mut v.clone(), &p).cloned().unwrap_or(Value::Null)
        };
        let Some(node) = at(&mut v, &path) else {
            continue;
        };
        match rng.below(9) {
            0 | 1 => *node = any_scalar(rng),
            2 => {
                if let Value::Object(m) = node {
                    let keys: Vec<String> = m.keys().cloned().collect();
                    if !keys.is_empty() {
                        m.remove(&keys[rng.below(keys.len())]);
                    }
                }
            }
            3 => {
                if let Value::Object(m) = node {
                    m.insert(nasty_string(rng), any_scalar(rng));
                }
            }
            4 => {
                if let Value::String(s) = node {
                    // JSON inside a string (an SNS message): mutate what it holds.
                    match serde_json::from_str::<Value>(s) {
                        Ok(inner) if inner.is_object() || inner.is_array() => {
                            *s = mutate(&inner, rng).to_string();
                        }
                        _ => *s = nasty_string(rng),
                    }
                }
            }
            5 => {
                if let Value::Array(a) = node {
                    if rng.chance(2) {
                        a.clear();
                    } else if let Some(first) = a.first().cloned() {
                        for _ in 0..rng.below(20) {
                            a.push(first.clone());
                        }
                    }
                }
            }
            6 => *node = donor,
            7 => {
                if let Value::String(s) = node {
                    let cut = s.char_indices().nth(rng.below(s.chars().count() + 1));
                    if let Some((i, _)) = cut {
                        s.truncate(i);
                    }
                }
            }
            _ => {
                let wrapped = std::mem::take(node);
                *node = if rng.chance(2) {
                    Value::Array(vec![wrapped])
                } else {
                    Value::Object(Map::from_iter([("x".to_string(), wrapped)]))
                };
            }
        }
    }
    v
}

/// What a fuzz run saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub cases: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub panics: Vec<String>,
    pub multiline_reasons: Vec<String>,
}

/// Runs `cases` mutations of the `seeds` through `parse` (which returns the rejection reason
/// on error). Collects panics and rejections whose reason is empty or spans several lines.
pub fn run<T, E: std::fmt::Display>(
    seeds: &[Value],
    cases: usize,
    seed: u64,
    parse: impl Fn(&Value) -> Result<T, E>,
) -> Report {
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    if seeds.is_empty() {
        return report;
    }
    for _ in 0..cases {
        let valid = &seeds[rng.below(seeds.len())];
        let input = mutate(valid, &mut rng);
        report.cases += 1;
        match catch_unwind(AssertUnwindSafe(|| {
            parse(&input).map_err(|e| e.to_string())
        })) {
            Ok(Ok(_)) => report.accepted += 1,
            Ok(Err(reason)) => {
                report.rejected += 1;
                if reason.trim().is_empty() || reason.contains('\n') {
                    report.multiline_reasons.push(reason);
                }
            }
            Err(_) => report.panics.push(input.to_string()),
        }
    }
    report
}

/// Asserts a clean run, printing the first offending inputs.
pub fn assert_clean(name: &str, report: &Report) {
    eprintln!(
        "fuzz {name}: {} cases, {} accepted, {} rejected, {} panics",
        report.cases,
        report.accepted,
        report.rejected,
        report.panics.len()
    );
    assert!(
        report.panics.is_empty(),
        "{name}: {} panics, first input: {}",
        report.panics.len(),
        report.panics[0]
    );
    assert!(
        report.multiline_reasons.is_empty(),
        "{name}: rejections must be one line: {:?}",
        &report.multiline_reasons[..report.multiline_reasons.len().min(3)]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_vary() {
        let v = json!({"a": [1, {"b": "c"}], "d": "{\"e\": 1}"});
        let mut r1 = Rng::new(1);
        let mut r2 = Rng::new(1);
        let a: Vec<Value> = (0..50).map(|_| mutate(&v, &mut r1)).collect();
        let b: Vec<Value> = (0..50).map(|_| mutate(&v, &mut r2)).collect();
        assert_eq!(a, b);
        assert!(a.iter().filter(|m| **m != v).count() > 40);
    }

    #[test]
    fn a_panicking_parser_is_caught() {
        let report = run(
            &[json!({"a": 1})],
            20,
            3,
            |v: &Value| -> Result<(), String> {
                if v.get("a").is_some_and(|a| !a.is_number()) {
                    panic!("boom");
                }
                Err("one line".into())
            },
        );
        assert!(!report.panics.is_empty());
    }
}
