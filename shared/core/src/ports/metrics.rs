//! An alarm metric's history, as the anomaly gate and the forecaster need it: the datapoints
//! of the metric the alarm watches (single metric or metric math) in a few time windows —
//! the recent hours and the same time on previous days and weeks.
//!
//! One port ([`MetricHistory`]); its SDK implementation (CloudWatch `GetMetricData`) is in
//! crate `selfheal-aws`, tests use an in-memory one.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alarm::{Alarm, AlarmKind};
use crate::anomaly::{GateSettings, Point};
use crate::error::AwsError;

/// One entry of a `GetMetricData` request: a metric with a statistic, or an expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryEntry {
    pub id: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub dimensions: BTreeMap<String, String>,
    pub stat: Option<String>,
    pub expression: Option<String>,
}

/// What to fetch: the entries, which one's values are the alarm's metric, and its period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricQuery {
    pub entries: Vec<QueryEntry>,
    /// The entry whose values are returned.
    pub returned: String,
    /// The alarm's period, seconds.
    pub period: u32,
}

/// A time range and the period to read it at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub period: u32,
}

impl MetricQuery {
    /// The query for the metric an alarm watches, or why there is none to fetch.
    pub fn from_alarm(alarm: &Alarm) -> Result<Self, String> {
        match alarm.kind {
            AlarmKind::Composite => return Err("a composite alarm watches no metric".into()),
            AlarmKind::AnomalyDetection => {
                return Err(
                    "the alarm already compares with a CloudWatch anomaly-detection \
                            band; the gate adds nothing to it"
                        .into(),
                )
            }
            AlarmKind::Metric | AlarmKind::MetricMath => {}
        }
        let stat_default = alarm
            .evaluation
            .statistic
            .clone()
            .unwrap_or_else(|| "Average".into());
        let mut entries = Vec::new();
        for (i, m) in alarm.metrics.iter().enumerate() {
            let id = m.id.clone().unwrap_or_else(|| format!("m{}", i + 1));
            if !valid_id(&id) {
                return Err(format!("metric id {id:?} cannot be used in GetMetricData"));
            }
            if m.expression.is_none() && (m.namespace.is_none() || m.name.is_none()) {
                return Err(format!(
                    "metric {id} has neither an expression nor a namespace and name"
                ));
            }
            entries.push(QueryEntry {
                id,
                namespace: m.namespace.clone(),
                name: m.name.clone(),
                dimensions: m.dimensions.clone(),
                stat: m
                    .expression
                    .is_none()
                    .then(|| m.stat.clone().unwrap_or_else(|| stat_default.clone())),
                expression: m.expression.clone(),
            });
        }
        let returned = match entries.as_slice() {
            [] => return Err("the alarm names no metric".into()),
            [only] => only.id.clone(),
            _ => {
                let flagged: Vec<&str> = alarm
                    .metrics
                    .iter()
                    .zip(&entries)
                    .filter(|(m, _)| m.return_data == Some(true))
                    .map(|(_, e)| e.id.as_str())
                    .collect();
                match flagged.as_slice() {
                    [one] => one.to_string(),
                    _ => match entries.iter().find(|e| e.expression.is_some()) {
                        Some(e) => e.id.clone(),
                        None => {
                            return Err(
                                "cannot tell which of the alarm's metrics it evaluates".into()
                            )
                        }
                    },
                }
            }
        };
        let period = alarm
            .metrics
            .iter()
            .find_map(|m| m.period)
            .or(alarm.evaluation.period)
            .unwrap_or(60)
            .max(1);
        Ok(Self {
            entries,
            returned,
            period,
        })
    }
}

/// `GetMetricData` ids start with a lower-case letter and hold letters, digits and `_`.
fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The period at which CloudWatch still has data of this age: 1-minute data is kept 15 days,
/// 5-minute data 63 days, hourly data 455 days, high-resolution data 3 hours. Asking older
/// data at a finer period returns nothing.
pub fn period_for_age(age_secs: i64, period: u32) -> u32 {
    const DAY: i64 = 86_400;
    if age_secs > 63 * DAY {
        period.max(3600)
    } else if age_secs > 15 * DAY {
        period.max(300)
    } else if age_secs > 3 * 3600 {
        period.max(60)
    } else {
        period
    }
}

/// The windows the anomaly gate reads around `at`: the last `recent_secs`, and the reference
/// windows on previous days and weeks, each at a period CloudWatch still keeps.
pub fn gate_windows(
    at: DateTime<Utc>,
    period: u32,
    settings: &GateSettings,
    recent_secs: i64,
) -> Vec<Window> {
    let t = at.timestamp();
    let to_time = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or(at);
    let mut out = vec![Window {
        start: to_time(t - recent_secs.max(i64::from(period))),
        // The end is exclusive in GetMetricData: one period past `at` includes its datapoint.
        end: to_time(t + i64::from(period)),
        period,
    }];
    for (start, end) in settings.reference_windows(t) {
        out.push(Window {
            start: to_time(start),
            end: to_time(end + 1),
            period: period_for_age(t - start, period),
        });
    }
    out
}

#[async_trait]
pub trait MetricHistory: Send + Sync {
    /// The datapoints of `query`'s returned entry in every window, sorted by time.
    async fn history(
        &self,
        query: &MetricQuery,
        windows: &[Window],
    ) -> Result<Vec<Point>, AwsError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_alarms;
    use serde_json::json;

    fn alarm(metrics: serde_json::Value) -> Alarm {
        let ev = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "detail": {"alarmName": "a", "state": {"value": "ALARM"}, "previousState": {"value": "OK"},
                       "configuration": {"metrics": metrics}}});
        parse_alarms(&ev).unwrap().remove(0)
    }

    #[test]
    fn query_from_alarm_table() {
        let single = alarm(
            json!([{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": {"InstanceId": "i-1"}}, "period": 300, "stat": "Maximum"}}]),
        );
        let q = MetricQuery::from_alarm(&single).unwrap();
        assert_eq!((q.returned.as_str(), q.period), ("m1", 300));
        assert_eq!(q.entries[0].stat.as_deref(), Some("Maximum"));

        let math = alarm(json!([
            {"id": "e1", "expression": "m1+m2", "returnData": true},
            {"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "A"}, "period": 60, "stat": "Sum"}, "returnData": false},
            {"id": "m2", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "B"}, "period": 60, "stat": "Sum"}, "returnData": false}]));
        let q = MetricQuery::from_alarm(&math).unwrap();
        assert_eq!(
            (q.returned.as_str(), q.entries.len(), q.period),
            ("e1", 3, 60)
        );
        assert_eq!(q.entries[0].stat, None);

        let band = alarm(json!([
            {"id": "ad1", "expression": "ANOMALY_DETECTION_BAND(m1, 2)"},
            {"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "A"}, "period": 60, "stat": "Average"}}]));
        assert!(MetricQuery::from_alarm(&band)
            .unwrap_err()
            .contains("anomaly-detection"));

        let bad_id = alarm(
            json!([{"id": "M1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "A"}, "period": 60}}]),
        );
        assert!(MetricQuery::from_alarm(&bad_id).is_err());
    }

    #[test]
    fn period_for_age_table() {
        for (age, period, want) in [
            (3600, 10, 10),
            (4 * 3600, 10, 60),
            (86_400, 60, 60),
            (16 * 86_400, 60, 300),
            (16 * 86_400, 600, 600),
            (70 * 86_400, 60, 3600),
        ] {
            assert_eq!(period_for_age(age, period), want, "{age} {period}");
        }
    }

    #[test]
    fn gate_windows_cover_recent_hours_and_references() {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let w = gate_windows(at, 60, &GateSettings::default(), 3 * 3600);
        assert_eq!(w.len(), 11);
        assert_eq!(w[0].start.timestamp(), 1_800_000_000 - 3 * 3600);
        assert_eq!(w[0].end.timestamp(), 1_800_000_060);
        assert_eq!(w[1].period, 60);
        // Four weeks ago is past 15 days: 5-minute data.
        assert_eq!(w[10].period, 300);
        assert!(w.iter().all(|x| x.start < x.end));
    }
}
