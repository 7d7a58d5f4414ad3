//! The anomaly gate's glue for this function, pure: what history to read for an alarm, and
//! what the assessment of that history (or the failure to read it) means for the reboot,
//! with the report that goes into the audit record. The fetch itself is the handler's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use selfheal_core::anomaly::{
    self, Assessment, Direction, GateMode, GateSettings, Judgement, Point,
};
use selfheal_core::ports::metrics::{gate_windows, MetricQuery, Window};
use selfheal_core::{Alarm, SkipCode, SkipReason};

/// How long the gate waits for the metric history: healing must not wait on CloudWatch.
pub const GATE_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Recent history read with the references (stands in for the breaching datapoints when the
/// alarm event carries none).
pub const GATE_RECENT_SECS: i64 = 3 * 3600;

/// What the anomaly gate did, for the audit record (`details.anomaly_gate`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateReport {
    pub mode: GateMode,
    /// True when the gate's judgement decided (mode `on` with enough history).
    pub applied: bool,
    /// Why the gate did or did not decide, for people.
    pub note: String,
    /// Score, baseline, threshold and the rest, when history was scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assessment: Option<Assessment>,
    /// The metric fetch error, when the history could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Datapoints of history read.
    pub history_points: usize,
}

impl GateReport {
    /// A gate that judged nothing (and so decides nothing), with why.
    pub fn stepped_aside(mode: GateMode, note: impl Into<String>) -> Self {
        Self {
            mode,
            applied: false,
            note: note.into(),
            assessment: None,
            error: None,
            history_points: 0,
        }
    }
}

/// The history to read before judging an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct GateFetch {
    pub query: MetricQuery,
    /// The instant judged (see [`gate_time`]).
    pub at: DateTime<Utc>,
    pub windows: Vec<Window>,
}

/// What to read for `alarm`, or why the gate steps aside without reading (it is off, or the
/// alarm names no metric to read); healing then goes on without it.
pub fn plan(
    alarm: &Alarm,
    settings: &GateSettings,
    now: DateTime<Utc>,
) -> Result<GateFetch, String> {
    if settings.mode == GateMode::Off {
        return Err("gate off (SELFHEAL_ANOMALY_GATE=off)".into());
    }
    let query = MetricQuery::from_alarm(alarm).map_err(|why| format!("gate not applied: {why}"))?;
    let at = gate_time(alarm, now);
    let windows = gate_windows(at, query.period, settings, GATE_RECENT_SECS);
    Ok(GateFetch { query, at, windows })
}

/// The instant the gate judges: when the alarm changed state (not in the future).
pub fn gate_time(alarm: &Alarm, now: DateTime<Utc>) -> DateTime<Utc> {
    alarm.time.filter(|t| *t <= now).unwrap_or(now)
}

/// The direction the alarm looks in: from its comparison operator, else its reason text.
pub fn alarm_direction(alarm: &Alarm) -> Direction {
    if let Some(d) = alarm
        .evaluation
        .comparison
        .as_deref()
        .and_then(Direction::from_comparison)
    {
        return d;
    }
    let reason = alarm.reason.to_ascii_lowercase();
    if reason.contains("less than") && !reason.contains("greater than") {
        Direction::Below
    } else {
        Direction::Above
    }
}

/// The gate's verdict on an alarm, from the fetched history (or the fetch error).
/// Returns the skip when the gate says "expected pattern", and the report either way.
/// A history that could not be read never blocks healing: the gate then steps aside.
pub fn apply_gate(
    alarm: &Alarm,
    id: &str,
    at: DateTime<Utc>,
    fetched: Result<&[Point], &str>,
    settings: &GateSettings,
) -> (Option<SkipReason>, GateReport) {
    let history = match fetched {
        Ok(h) => h,
        Err(e) => {
            let mut report = GateReport::stepped_aside(
                settings.mode,
                "metric history could not be read: acting as without the gate",
            );
            report.error = Some(e.to_string());
            return (None, report);
        }
    };
    let a = anomaly::assess(
        at.timestamp(),
        &alarm.evaluation.recent_datapoints,
        history,
        alarm_direction(alarm),
        settings,
    );
    let (skip, applied, note) = judge(alarm, id, &a, settings.mode);
    let report = GateReport {
        mode: settings.mode,
        applied,
        note,
        assessment: Some(a),
        error: None,
        history_points: history.len(),
    };
    (skip, report)
}

/// What an assessment means in this mode: the skip (only `on` skips), whether the gate's
/// judgement decided, and the note for people.
fn judge(
    alarm: &Alarm,
    id: &str,
    a: &Assessment,
    mode: GateMode,
) -> (Option<SkipReason>, bool, String) {
    match (a.judgement, mode) {
        (Judgement::TooLittleHistory, _) => (None, false, a.why.clone()),
        (Judgement::Anomalous, GateMode::On) => (None, true, format!("abnormal: {}", a.why)),
        (Judgement::Expected, GateMode::On) => {
            let skip = SkipReason::new(
                SkipCode::ExpectedPattern,
                format!(
                    "alarm {} on {id} matches this metric's usual pattern at this time, not rebooting: {}",
                    alarm.name, a.why
                ),
            );
            (Some(skip), true, format!("expected pattern: {}", a.why))
        }
        (j, _) => {
            let would = if j == Judgement::Expected {
                "skipped"
            } else {
                "acted"
            };
            (
                None,
                false,
                format!("shadow mode: would have {would}: {}", a.why),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{alarm, alarm_time, flat, history_before, nightly};
    use serde_json::json;

    #[test]
    fn apply_gate_table() {
        let a = alarm("ALARM", "OK", "AWS/EC2", json!({"InstanceId": "i-1"}));
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let on = GateSettings::default();
        let shadow = GateSettings {
            mode: GateMode::Shadow,
            ..GateSettings::default()
        };
        let nightly_h = history_before(at, nightly);
        let flat_h = history_before(at, flat);
        // (name, breaching, fetched, settings, skipped?, applied?, note contains)
        type Case<'a> = (
            &'a str,
            Vec<f64>,
            Result<&'a [Point], &'a str>,
            &'a GateSettings,
            bool,
            bool,
            &'a str,
        );
        let cases: [Case; 6] = [
            (
                "fetch failed",
                vec![98.0],
                Err("throttled"),
                &on,
                false,
                false,
                "could not be read",
            ),
            (
                "no history",
                vec![98.0],
                Ok(&[]),
                &on,
                false,
                false,
                "too little history",
            ),
            (
                "nightly batch",
                vec![97.0, 98.0],
                Ok(&nightly_h),
                &on,
                true,
                true,
                "expected pattern",
            ),
            (
                "incident",
                vec![97.0, 98.0],
                Ok(&flat_h),
                &on,
                false,
                true,
                "abnormal",
            ),
            (
                "shadow, nightly batch",
                vec![97.0, 98.0],
                Ok(&nightly_h),
                &shadow,
                false,
                false,
                "would have skipped",
            ),
            (
                "shadow, incident",
                vec![97.0, 98.0],
                Ok(&flat_h),
                &shadow,
                false,
                false,
                "would have acted",
            ),
        ];
        for (name, breaching, fetched, settings, skipped, applied, note) in cases {
            let mut a = a.clone();
            a.evaluation.recent_datapoints = breaching;
            let (skip, report) = apply_gate(&a, "i-1", at, fetched, settings);
            assert_eq!(skip.is_some(), skipped, "{name}: {report:?}");
            if let Some(r) = &skip {
                assert_eq!(r.code, SkipCode::ExpectedPattern);
                assert!(
                    r.detail.contains("baseline") && r.detail.contains("threshold"),
                    "{name}: {}",
                    r.detail
                );
            }
            assert_eq!(report.applied, applied, "{name}: {report:?}");
            assert!(report.note.contains(note), "{name}: {}", report.note);
            assert_eq!(report.error.is_some(), fetched.is_err(), "{name}");
        }
    }

    #[test]
    fn direction_from_comparison_or_reason() {
        let mut a = alarm("ALARM", "OK", "AWS/EC2", json!({"InstanceId": "i-1"}));
        assert_eq!(alarm_direction(&a), Direction::Above);
        a.evaluation.comparison = Some("LessThanThreshold".into());
        assert_eq!(alarm_direction(&a), Direction::Below);
        a.evaluation.comparison = None;
        a.reason = "1 datapoint [2.0] was less than the threshold (5.0)".into();
        assert_eq!(alarm_direction(&a), Direction::Below);
    }

    #[test]
    fn plan_steps_aside_when_off_or_without_a_metric() {
        let a = alarm("ALARM", "OK", "AWS/EC2", json!({"InstanceId": "i-1"}));
        let off = GateSettings {
            mode: GateMode::Off,
            ..GateSettings::default()
        };
        let now = alarm_time();
        assert_eq!(
            plan(&a, &off, now),
            Err("gate off (SELFHEAL_ANOMALY_GATE=off)".to_string())
        );

        let samples = selfheal_core::samples::for_function(crate::FUNCTION).unwrap();
        let (_, event) = samples
            .iter()
            .find(|(name, _)| name == "reboot-instance-composite.json")
            .unwrap();
        let composite = selfheal_core::parse_alarms(event).unwrap().remove(0);
        let why = plan(&composite, &GateSettings::default(), now).unwrap_err();
        assert!(why.starts_with("gate not applied: "), "{why}");
    }

    #[test]
    fn plan_reads_recent_hours_and_every_reference_window() {
        let a = alarm("ALARM", "OK", "AWS/EC2", json!({"InstanceId": "i-1"}));
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let fetch = plan(&a, &GateSettings::default(), now).unwrap();
        assert_eq!(fetch.at, now, "an alarm without a time is judged now");
        // Recent hours plus 7 days and 3 more weeks.
        assert_eq!(fetch.windows.len(), 11);
        assert!(fetch.windows.iter().all(|w| w.start < w.end));
    }

    #[test]
    fn gate_time_is_the_alarm_time_unless_in_the_future() {
        let mut a = alarm("ALARM", "OK", "AWS/EC2", json!({"InstanceId": "i-1"}));
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let earlier = now - chrono::Duration::minutes(3);
        a.time = Some(earlier);
        assert_eq!(gate_time(&a, now), earlier);
        a.time = Some(now + chrono::Duration::minutes(3));
        assert_eq!(gate_time(&a, now), now);
    }
}
