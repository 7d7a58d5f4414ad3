//! Builders the unit tests of several modules share: alarms, settings, groups, plans, steps
//! and breaches.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use selfheal_core::forecast::ForecastSizing;
use selfheal_core::ports::alarms::AlarmFacts;
use selfheal_core::ports::groups::GroupFacts;
use selfheal_core::{parse_alarms, Alarm, AlarmState, ConfigError, Decision, SkipCode, SkipReason};

use crate::plan::{plan, request, Plan, Source};
use crate::settings::{Direction, Settings};
use crate::severity::{Breach, Side, Step};

pub fn sample(name: &str) -> Value {
    let path = selfheal_core::samples::events_dir().join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn alarm_of(name: &str) -> Alarm {
    parse_alarms(&sample(name)).unwrap().remove(0)
}

/// An EventBridge alarm with the given state change, dimensions, tags and datapoints.
pub fn alarm(state: &str, prev: &str, dims: Value, tags: Value, points: &[f64]) -> Alarm {
    let rd = json!({"threshold": 60.0, "recentDatapoints": points}).to_string();
    let ev = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
        "detail": {"alarmName": "cpu-high", "tags": tags,
                   "state": {"value": state, "reason": "Threshold Crossed: datapoints were greater than the threshold (60.0)", "reasonData": rd},
                   "previousState": {"value": prev},
                   "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": dims}}}]}}});
    parse_alarms(&ev).unwrap().remove(0)
}

/// What CloudWatch says about alarm `name` now: in ALARM, with `comparison` and `actions`.
pub fn alarm_now(name: &str, comparison: Option<&str>, actions: &[&str]) -> AlarmFacts {
    AlarmFacts {
        name: name.into(),
        arn: None,
        state: AlarmState::Alarm,
        state_updated: None,
        alarm_actions: actions.iter().map(|a| a.to_string()).collect(),
        comparison: comparison.map(str::to_string),
    }
}

/// [`request`] then [`plan`], judged at the alarm's own time, with the alarm in ALARM now
/// with `comparison`.
pub fn plan_with(
    alarm: &Alarm,
    settings: &Settings,
    comparison: Option<&str>,
) -> Result<Plan, SkipReason> {
    let now = alarm.time.unwrap_or_else(chrono::Utc::now);
    let current = alarm_now(&alarm.name, comparison, &[]);
    plan(
        request(alarm, settings, now)?,
        alarm,
        Some(&current),
        settings,
    )
}

pub fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(|k| m.get(k).cloned())
}

pub fn group(min: u32, max: u32, desired: u32) -> GroupFacts {
    GroupFacts {
        name: "g".into(),
        min_size: min,
        max_size: max,
        desired,
        tags: BTreeMap::new(),
        activities_in_progress: Vec::new(),
    }
}

pub fn plan_of(direction: Direction, max_step: u32) -> Plan {
    Plan {
        group: "g".into(),
        group_from: Source::Dimension,
        direction,
        direction_from: Source::Comparison,
        comparison: None,
        max_step,
    }
}

pub fn step_of(size: u32) -> Step {
    Step {
        method: "severity",
        size,
        max_step: size.max(1),
        proposed: None,
        breach: None,
        arithmetic: format!("step {size}"),
    }
}

pub fn breach_of(metric: f64, threshold: f64, side: Side) -> Breach {
    Breach {
        metric,
        datapoints: vec![metric],
        threshold,
        side,
        side_from: "comparison",
    }
}

pub fn code<A: std::fmt::Debug>(d: &Decision<A>) -> Option<SkipCode> {
    match d {
        Decision::Skip { reason } => Some(reason.code),
        Decision::Act { .. } => None,
    }
}

/// A forecaster's answer proposing `desired` instances (fit error 0.02), or a fallback.
pub fn sizing_of(desired: Option<u32>, current: u32) -> ForecastSizing {
    use selfheal_core::forecast::{Fallback, Forecast};
    ForecastSizing {
        desired,
        current_desired: current,
        sized_load: desired.map(|d| f64::from(d) * 70.0),
        target_per_instance: 70.0,
        forecast: desired.map(|d| Forecast {
            values: vec![f64::from(d) * 70.0],
            peak: f64::from(d) * 70.0,
            latest: f64::from(current) * 70.0,
            fit_error: 0.02,
            alpha: 0.2,
            beta: 0.0,
            gamma: 0.1,
            history_steps: 600,
        }),
        fit_error_limit: 0.15,
        fallback: desired.is_none().then_some(Fallback::FitErrorTooHigh {
            error: 0.4,
            limit: 0.15,
        }),
        why: "test".into(),
    }
}
