//! What load history the forecast reads, and how the forecaster is set for it: the query
//! ([`load_query`]), the window ([`history_window`]) and the forecaster's settings at the
//! window's period ([`forecast_settings`]). Pure; the handler does the reading.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use selfheal_core::forecast::ForecastSettings;
use selfheal_core::ports::metrics::{period_for_age, MetricQuery, QueryEntry, Window};
use selfheal_core::Alarm;

use crate::plan::GROUP_DIMENSION;

/// Load history read for the forecast (what the evaluation harness replays: 7 days).
pub const HISTORY_SECS: i64 = 7 * 86_400;

/// The id of the in-service instance count and of the load in [`load_query`]'s request.
const IN_SERVICE_ID: &str = "selfheal_in_service";
const LOAD_ID: &str = "selfheal_load";

/// The group's load, whatever its size: the alarm metric (a per-instance average over the
/// group) × `GroupInServiceInstances`, by metric math in one `GetMetricData` request. The raw
/// average is no use to a forecaster: it falls when the group grows. `Err` says why the alarm
/// does not allow it (then the severity step sizes the change).
pub fn load_query(alarm: &Alarm, group: &str) -> Result<MetricQuery, String> {
    let mut q = MetricQuery::from_alarm(alarm)?;
    let metric = q
        .entries
        .iter()
        .find(|e| e.id == q.returned)
        .ok_or_else(|| "the alarm's evaluated metric is missing".to_string())?;
    per_instance_average_over(metric, group)?;
    if q.entries
        .iter()
        .any(|e| e.id == IN_SERVICE_ID || e.id == LOAD_ID)
    {
        return Err(format!(
            "the alarm already uses the metric id {IN_SERVICE_ID} or {LOAD_ID}"
        ));
    }
    let returned = std::mem::replace(&mut q.returned, LOAD_ID.to_string());
    q.entries.push(QueryEntry {
        id: IN_SERVICE_ID.into(),
        namespace: Some("AWS/AutoScaling".into()),
        name: Some("GroupInServiceInstances".into()),
        dimensions: BTreeMap::from([(GROUP_DIMENSION.to_string(), group.to_string())]),
        stat: Some("Average".into()),
        expression: None,
    });
    q.entries.push(QueryEntry {
        id: LOAD_ID.into(),
        namespace: None,
        name: None,
        dimensions: BTreeMap::new(),
        stat: None,
        expression: Some(format!("{returned} * {IN_SERVICE_ID}")),
    });
    Ok(q)
}

/// Only a per-instance average over this group multiplies into the group's load.
fn per_instance_average_over(metric: &QueryEntry, group: &str) -> Result<(), String> {
    let (Some(ns), Some(name)) = (&metric.namespace, &metric.name) else {
        return Err(
            "the alarm evaluates a metric-math expression; forecast sizing needs a \
             per-instance average over the group (e.g. CPUUtilization, Average, by \
             AutoScalingGroupName)"
                .into(),
        );
    };
    if !metric
        .stat
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("Average"))
    {
        return Err(format!(
            "the alarm watches {ns}/{name} by its {} statistic; forecast sizing needs the \
             Average over the group (a per-instance value)",
            metric.stat.as_deref().unwrap_or("unknown")
        ));
    }
    if metric.dimensions.get(GROUP_DIMENSION).map(String::as_str) != Some(group) {
        return Err(format!(
            "the alarm's metric {ns}/{name} is not averaged over group {group} (no \
             {GROUP_DIMENSION}={group} dimension)"
        ));
    }
    Ok(())
}

/// The history window read for the forecast, ending at `at`, and the period it is read at
/// (the alarm's, at least 1 minute: CloudWatch keeps high-resolution data 3 hours only).
pub fn history_window(at: DateTime<Utc>, alarm_period: u32) -> Window {
    let period = period_for_age(HISTORY_SECS, alarm_period.max(1));
    let t = at.timestamp();
    let to_time = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or(at);
    Window {
        start: to_time(t - HISTORY_SECS),
        // The end is exclusive in GetMetricData: one period past `at` includes its datapoint.
        end: to_time(t + i64::from(period)),
        period,
    }
}

/// The forecaster's settings at a grid step of `step_secs`: the evaluated defaults (at 5
/// minutes) kept in time, not in steps — a 30-minute horizon, the last hour held out, gaps
/// up to 15 minutes filled.
pub fn forecast_settings(step_secs: u32) -> ForecastSettings {
    let step = i64::from(step_secs.max(1));
    let steps = |secs: i64| {
        usize::try_from((secs + step - 1) / step)
            .unwrap_or(1)
            .max(1)
    };
    ForecastSettings {
        step_secs: step,
        horizon_steps: steps(1800),
        holdout_steps: steps(3600),
        max_gap_steps: steps(900).max(3),
        ..ForecastSettings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::alarm_of;
    use selfheal_core::parse_alarms;
    use serde_json::json;

    #[test]
    fn load_query_multiplies_the_average_by_in_service_instances() {
        let a = alarm_of("scale-group-eventbridge.json");
        let q = load_query(&a, "selfheal-sample-asg").unwrap();
        assert_eq!((q.returned.as_str(), q.period), ("selfheal_load", 60));
        let ids: Vec<&str> = q.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["m1", "selfheal_in_service", "selfheal_load"]);
        assert_eq!(
            q.entries[2].expression.as_deref(),
            Some("m1 * selfheal_in_service")
        );
        assert_eq!(
            q.entries[1].name.as_deref(),
            Some("GroupInServiceInstances")
        );
        assert_eq!(
            q.entries[1]
                .dimensions
                .get(GROUP_DIMENSION)
                .map(String::as_str),
            Some("selfheal-sample-asg")
        );
        // The SNS shape's statistic is upper case.
        assert!(load_query(&alarm_of("scale-group-sns.json"), "selfheal-sample-asg").is_ok());
        // Another group's metric, a sum, an expression: no forecast.
        assert!(load_query(&a, "other")
            .unwrap_err()
            .contains("not averaged over group"));
        let sum = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "detail": {"alarmName": "a", "state": {"value": "ALARM"}, "previousState": {"value": "OK"},
                       "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/ApplicationELB", "name": "RequestCount", "dimensions": {"AutoScalingGroupName": "g"}}, "period": 60, "stat": "Sum"}}]}}});
        let err = load_query(&parse_alarms(&sum).unwrap()[0], "g").unwrap_err();
        assert!(err.contains("Sum"), "{err}");
        let math = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "detail": {"alarmName": "a", "state": {"value": "ALARM"}, "previousState": {"value": "OK"},
                       "configuration": {"metrics": [
                           {"id": "e1", "expression": "m1 / 2", "returnData": true},
                           {"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": {"AutoScalingGroupName": "g"}}, "period": 60, "stat": "Average"}, "returnData": false}]}}});
        let err = load_query(&parse_alarms(&math).unwrap()[0], "g").unwrap_err();
        assert!(err.contains("expression"), "{err}");
    }

    #[test]
    fn forecast_settings_keep_the_evaluated_defaults_in_time() {
        let five = forecast_settings(300);
        assert_eq!(
            five,
            selfheal_core::forecast::ForecastSettings {
                step_secs: 300,
                ..Default::default()
            }
        );
        let one = forecast_settings(60);
        assert_eq!(
            (
                one.step_secs,
                one.horizon_steps,
                one.holdout_steps,
                one.max_gap_steps
            ),
            (60, 30, 60, 15)
        );
        let w = history_window(
            chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            10,
        );
        assert_eq!(w.period, 60);
        assert_eq!(w.start.timestamp(), 1_800_000_000 - HISTORY_SECS);
        assert_eq!(w.end.timestamp(), 1_800_000_060);
    }
}
