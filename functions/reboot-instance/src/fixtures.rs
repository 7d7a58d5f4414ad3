//! Alarms, histories and the sample event the unit tests of several modules share.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use selfheal_core::alarm::parse_time;
use selfheal_core::anomaly::{self, Point};
use selfheal_core::{parse_alarms, Alarm};
use serde_json::{json, Value};

/// An EventBridge alarm named `a` (reason `cpu`) on one CPUUtilization metric.
pub fn alarm(state: &str, prev: &str, ns: &str, dims: Value) -> Alarm {
    let ev = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
        "detail": {"alarmName": "a", "state": {"value": state, "reason": "cpu"}, "previousState": {"value": prev},
                   "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": ns, "name": "CPUUtilization", "dimensions": dims}}}]}}});
    parse_alarms(&ev).unwrap().remove(0)
}

/// An EventBridge alarm `a` that entered ALARM reading one `AWS/EC2` metric per name, with
/// `dims` (or `dims[i]` when `dims` is an array) as the dimensions of each.
pub fn alarm_on(metrics: &[&str], dims: Value) -> Alarm {
    let metrics: Vec<Value> = metrics
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let d = dims.as_array().map_or(&dims, |a| &a[i]);
            json!({"id": format!("m{i}"), "metricStat": {"metric": {"namespace": "AWS/EC2", "name": name, "dimensions": d}}})
        })
        .collect();
    let ev = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
        "detail": {"alarmName": "a", "state": {"value": "ALARM", "reason": "checks"}, "previousState": {"value": "OK"},
                   "configuration": {"metrics": metrics}}});
    parse_alarms(&ev).unwrap().remove(0)
}

/// `GateSettings::default()` with the history `f(seconds before at)` every 5 minutes
/// for four weeks and a bit before `at`.
pub fn history_before(at: DateTime<Utc>, f: impl Fn(i64) -> f64) -> Vec<Point> {
    let t = at.timestamp();
    (1..=(29 * anomaly::DAY / 300))
        .map(|i| Point::new(t - i * 300, f(i * 300)))
        .collect()
}

/// Every day at this time the metric sits near 97 (a nightly batch); 30 otherwise.
pub fn nightly(d: i64) -> f64 {
    if d % anomaly::DAY < 1800 || d % anomaly::DAY > anomaly::DAY - 1800 {
        96.0 + (d / 300 % 3) as f64
    } else {
        30.0
    }
}

pub fn flat(d: i64) -> f64 {
    40.0 + (d / 300 % 5) as f64
}

/// The sample EventBridge alarm, its breaching datapoints 97.2 and 98.4, sent a minute ago
/// (the same instant for every call in a test run): events older than an hour are skipped.
pub fn sample() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/reboot-instance-eventbridge.json"
    );
    let ev = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    static SENT: OnceLock<String> = OnceLock::new();
    let sent = SENT.get_or_init(|| {
        (Utc::now() - chrono::Duration::minutes(1))
            .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
            .to_string()
    });
    at_time(&ev, sent)
}

/// The sample alarm's ARN.
pub const SAMPLE_ARN: &str = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-1-cpu-high";

/// Every timestamp in `v` (also inside JSON-in-a-string) replaced by `t`.
pub fn at_time(v: &Value, t: &str) -> Value {
    match v {
        Value::String(s) if parse_time(s).is_some() => Value::String(t.to_string()),
        Value::String(s) if s.starts_with('{') => match serde_json::from_str::<Value>(s) {
            Ok(inner) => Value::String(at_time(&inner, t).to_string()),
            Err(_) => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| at_time(x, t)).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, x)| (k.clone(), at_time(x, t))).collect())
        }
        other => other.clone(),
    }
}

/// When the sample alarm changed state.
pub fn alarm_time() -> DateTime<Utc> {
    parse_alarms(&sample()).unwrap()[0].time.unwrap()
}
