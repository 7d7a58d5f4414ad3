//! Alarms, histories and the sample event the unit tests of several modules share.

use chrono::{DateTime, Utc};
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

/// The sample EventBridge alarm, its breaching datapoints 97.2 and 98.4.
pub fn sample() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/reboot-instance-eventbridge.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// When the sample alarm changed state.
pub fn alarm_time() -> DateTime<Utc> {
    parse_alarms(&sample()).unwrap()[0].time.unwrap()
}
