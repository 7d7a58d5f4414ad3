//! scale-group: a CloudWatch alarm went into ALARM → resize its Auto Scaling group, by as much
//! as the breach is severe, within the group's bounds and the guardrails.
//!
//! The flow: [`plan`] (which group, which direction, what max step; pure, from the alarm and
//! the settings) → the group's facts (through the [`Groups`] port) → for a scale-out, the
//! group's load history (through the [`MetricHistory`] port, at most 5 s) and its forecast
//! ([`selfheal_core::forecast::forecast_capacity`]) → [`choose_step`] (how many instances: the
//! forecast when it is trustworthy, else [`severity_step`]; pure) → [`decide`] (pure: bounds,
//! in-progress activities, opt-in) → guardrails → `SetDesiredCapacity` → read back → audit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use selfheal_aws::autoscaling::AutoScalingGroups;
use selfheal_aws::cloudwatch::CloudWatchHistory;
use selfheal_core::anomaly::Point;
use selfheal_core::forecast::{forecast_capacity, ForecastSettings, ForecastSizing};
use selfheal_core::guard::ConfigError;
use selfheal_core::ports::groups::{GroupFacts, Groups};
use selfheal_core::ports::metrics::{
    period_for_age, MetricHistory, MetricQuery, QueryEntry, Window,
};
use selfheal_core::{
    Alarm, AlarmState, AuditRecord, Common, Decision, Function, HandlerError, Invocation, Response,
    SkipCode, SkipReason, Target, Verdict,
};
use selfheal_lambda::Options;

pub const FUNCTION: &str = "scale-group";

/// The alarm dimension that names the group (as on `AWS/EC2` and `AWS/AutoScaling` metrics).
pub const GROUP_DIMENSION: &str = "AutoScalingGroupName";
/// Alarm tag naming the group when the alarm has no `AutoScalingGroupName` dimension.
pub const GROUP_TAG: &str = "selfheal:group";
/// Alarm tag giving the direction and, optionally, the max step: `out`, `in`, `out:2`.
pub const SCALE_TAG: &str = "selfheal:scale";

/// Default bound on one change, in instances.
pub const DEFAULT_MAX_STEP: u32 = 4;

/// Default load per instance forecast sizing sizes for, in the alarm metric's unit (percent
/// for `CPUUtilization`).
pub const DEFAULT_TARGET_UTILISATION: f64 = 70.0;

/// How long the load history may take: scaling must not wait on CloudWatch.
pub const HISTORY_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Load history read for the forecast (what the evaluation harness replays: 7 days).
pub const HISTORY_SECS: i64 = 7 * 86_400;

/// How the size of a change is chosen (`SELFHEAL_SCALE_SIZING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SizingMode {
    /// Forecast the group's load; fall back to the severity step when the forecast cannot be
    /// trusted or had.
    Forecast,
    /// The severity step only; no history is read.
    Severity,
}

/// Which way to resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Out,
    In,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
        }
    }
}

/// What one alarm asks for: a direction, and optionally its own max step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleRule {
    pub direction: Direction,
    pub max_step: Option<u32>,
}

impl ScaleRule {
    /// `out`, `in`, `out:2`, `in:1` (also `scale-out`, `up`, `down`, ...). A max step of 0
    /// is refused: it would make the alarm a no-op in disguise.
    pub fn parse(s: &str) -> Option<Self> {
        let (dir, step) = match s.trim().split_once(':') {
            Some((d, n)) => (d.trim(), Some(n.trim())),
            None => (s.trim(), None),
        };
        let direction = match dir.to_ascii_lowercase().as_str() {
            "out" | "scale-out" | "up" => Direction::Out,
            "in" | "scale-in" | "down" => Direction::In,
            _ => return None,
        };
        let max_step = match step {
            None => None,
            Some(n) => Some(n.parse::<u32>().ok().filter(|n| *n > 0)?),
        };
        Some(Self {
            direction,
            max_step,
        })
    }
}

/// Settings of this function beyond the shared guardrails.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `SELFHEAL_SCALE_MAX_STEP`: the most instances one alarm adds or removes (default 4).
    pub max_step: u32,
    /// `SELFHEAL_SCALE_GROUPS`: `alarm-name=group-name,...`, for alarms without an
    /// `AutoScalingGroupName` dimension or `selfheal:group` tag.
    pub groups: BTreeMap<String, String>,
    /// `SELFHEAL_SCALE_RULES`: `alarm-name=out|in[:max-step],...`; alarms not listed (and
    /// without a `selfheal:scale` tag) scale out.
    pub rules: BTreeMap<String, ScaleRule>,
    /// `SELFHEAL_SCALE_SIZING`: `forecast` (default) or `severity`.
    pub sizing: SizingMode,
    /// `SELFHEAL_SCALE_TARGET_UTILISATION`: the alarm metric's value one instance should run
    /// at when sized from the forecast (default 70, i.e. 70 % CPU); a number > 0.
    pub target_utilisation: f64,
    /// How long the load history may take (not an env var: [`HISTORY_FETCH_TIMEOUT`]; tests
    /// shorten it).
    pub history_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_step: DEFAULT_MAX_STEP,
            groups: BTreeMap::new(),
            rules: BTreeMap::new(),
            sizing: SizingMode::Forecast,
            target_utilisation: DEFAULT_TARGET_UTILISATION,
            history_timeout: HISTORY_FETCH_TIMEOUT,
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let max_step = match get("SELFHEAL_SCALE_MAX_STEP") {
            None => DEFAULT_MAX_STEP,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(ConfigError::Invalid {
                    name: "SELFHEAL_SCALE_MAX_STEP",
                    value: v,
                    expected: "a whole number of instances, at least 1",
                })?,
        };
        let groups = match get("SELFHEAL_SCALE_GROUPS") {
            None => BTreeMap::new(),
            Some(v) => pairs(&v)
                .map(|e| e.map(|(k, g)| (k.to_string(), g.to_string())))
                .collect::<Option<_>>()
                .ok_or(ConfigError::Invalid {
                    name: "SELFHEAL_SCALE_GROUPS",
                    value: v,
                    expected: "alarm-name=group-name pairs separated by commas",
                })?,
        };
        let rules = match get("SELFHEAL_SCALE_RULES") {
            None => BTreeMap::new(),
            Some(v) => pairs(&v)
                .map(|e| e.and_then(|(k, r)| Some((k.to_string(), ScaleRule::parse(r)?))))
                .collect::<Option<_>>()
                .ok_or(ConfigError::Invalid {
                    name: "SELFHEAL_SCALE_RULES",
                    value: v,
                    expected: "alarm-name=out|in[:max-step] pairs separated by commas",
                })?,
        };
        let sizing = match get("SELFHEAL_SCALE_SIZING") {
            None => SizingMode::Forecast,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "forecast" => SizingMode::Forecast,
                "severity" => SizingMode::Severity,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "SELFHEAL_SCALE_SIZING",
                        value: v,
                        expected: "forecast or severity",
                    })
                }
            },
        };
        let target_utilisation = match get("SELFHEAL_SCALE_TARGET_UTILISATION") {
            None => DEFAULT_TARGET_UTILISATION,
            Some(v) => v
                .trim_end_matches('%')
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t > 0.0)
                .ok_or(ConfigError::Invalid {
                    name: "SELFHEAL_SCALE_TARGET_UTILISATION",
                    value: v,
                    expected: "a number above 0 (the alarm metric's value per instance, e.g. 70)",
                })?,
        };
        Ok(Self {
            max_step,
            groups,
            rules,
            sizing,
            target_utilisation,
            history_timeout: HISTORY_FETCH_TIMEOUT,
        })
    }
}

/// `a=b,c=d` → pairs; `None` for an entry without `=` or with an empty side. The value is
/// split at the last `=` (directions and group names do not contain one).
fn pairs(v: &str) -> impl Iterator<Item = Option<(&str, &str)>> {
    v.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (k, v) = e.rsplit_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            (!k.is_empty() && !v.is_empty()).then_some((k, v))
        })
}

/// Where a piece of the plan came from (for the audit record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Dimension,
    AlarmTag,
    Setting,
    Default,
}

/// What the alarm asks for, before looking at the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub group: String,
    pub group_from: Source,
    pub direction: Direction,
    pub direction_from: Source,
    pub max_step: u32,
}

/// Which group the alarm is about and what it asks for, or why it asks for nothing.
pub fn plan(alarm: &Alarm, settings: &Settings) -> Result<Plan, SkipReason> {
    if !alarm.entered_alarm() {
        let from = alarm
            .previous_state
            .as_ref()
            .map(|s| s.as_str())
            .unwrap_or("unknown");
        let why = if alarm.state == AlarmState::Ok {
            "a recovery does not resize by itself; only a transition into ALARM acts (a \
             scale-in needs its own alarm, configured as `in`)"
        } else {
            "only a transition into ALARM acts"
        };
        return Err(SkipReason::new(
            SkipCode::NotAlarmTransition,
            format!("alarm {} went {from} → {}; {why}", alarm.name, alarm.state),
        ));
    }
    let named = |v: Option<&String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let (group, group_from) = if let Some(g) = named(alarm.dimensions.get(GROUP_DIMENSION)) {
        (g, Source::Dimension)
    } else if let Some(g) = named(alarm.tags.get(GROUP_TAG)) {
        (g, Source::AlarmTag)
    } else if let Some(g) = named(settings.groups.get(&alarm.name)) {
        (g, Source::Setting)
    } else {
        return Err(SkipReason::new(
            SkipCode::NoTarget,
            format!(
                "alarm {} names no Auto Scaling group: no {GROUP_DIMENSION} dimension, no \
                 {GROUP_TAG} tag, and not in SELFHEAL_SCALE_GROUPS",
                alarm.name
            ),
        ));
    };
    let (rule, direction_from) = match alarm.tags.get(SCALE_TAG) {
        Some(t) => match ScaleRule::parse(t) {
            Some(r) => (r, Source::AlarmTag),
            None => {
                return Err(SkipReason::new(
                    SkipCode::NoTarget,
                    format!(
                        "alarm {} has tag {SCALE_TAG}={t:?}; expected out, in, out:N or in:N — \
                         not guessing a direction",
                        alarm.name
                    ),
                ))
            }
        },
        None => match settings.rules.get(&alarm.name) {
            Some(r) => (*r, Source::Setting),
            None => (
                ScaleRule {
                    direction: Direction::Out,
                    max_step: None,
                },
                Source::Default,
            ),
        },
    };
    Ok(Plan {
        group,
        group_from,
        direction: rule.direction,
        direction_from,
        max_step: rule.max_step.unwrap_or(settings.max_step),
    })
}

/// On which side of the threshold the alarm fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Above,
    Below,
}

/// How far past its threshold the alarm's metric is, from the alarm's own numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    /// The mean of the recent datapoints (their order differs between alarm shapes; the mean
    /// does not care, and it damps a single spike).
    pub metric: f64,
    pub datapoints: Vec<f64>,
    pub threshold: f64,
    pub side: Side,
    /// Where the side came from: the comparison operator, the reason text, or the values.
    pub side_from: &'static str,
}

/// The breach in an alarm's reason data, if it carries enough numbers.
pub fn breach(alarm: &Alarm) -> Option<Breach> {
    let e = &alarm.evaluation;
    let datapoints: Vec<f64> = e
        .recent_datapoints
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let metric = mean(&datapoints)?;
    let comparison = e.comparison.as_deref().unwrap_or_default();
    let reason = alarm.reason.to_ascii_lowercase();
    let (side, side_from) = if comparison.contains("GreaterThan") && !comparison.contains("Lower") {
        (Side::Above, "comparison")
    } else if comparison.contains("LessThan") && !comparison.contains("Upper") {
        (Side::Below, "comparison")
    } else if reason.contains("greater than") && !reason.contains("less than") {
        (Side::Above, "reason")
    } else if reason.contains("less than") && !reason.contains("greater than") {
        (Side::Below, "reason")
    } else {
        // An anomaly band alarm fires on either side: the side the metric is on is the one.
        let upper = mean(&e.recent_upper_thresholds);
        let side = match (e.threshold, upper) {
            (Some(t), _) | (None, Some(t)) if metric >= t => Side::Above,
            _ => Side::Below,
        };
        (side, "values")
    };
    let threshold = match (e.threshold, side) {
        (Some(t), _) => t,
        (None, Side::Above) => mean(&e.recent_upper_thresholds)?,
        (None, Side::Below) => mean(&e.recent_lower_thresholds)?,
    };
    threshold.is_finite().then_some(Breach {
        metric,
        datapoints,
        threshold,
        side,
        side_from,
    })
}

fn mean(v: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
}

/// How many instances to add or remove, and the arithmetic behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The sizing method: `severity` or `forecast`.
    pub method: &'static str,
    /// Instances to add or remove: at most the max step; at least 1, except 0 when the
    /// forecast holds a scale-in (see [`choose_step`]).
    pub size: u32,
    pub max_step: u32,
    /// The desired capacity the method proposed before bounding the step (when it has one).
    pub proposed: Option<u64>,
    pub breach: Option<Breach>,
    /// The arithmetic, for people.
    pub arithmetic: String,
}

/// Sizes the change like target tracking does: the capacity that would bring the metric back
/// to the threshold if load spread evenly, `ceil(desired × metric / threshold)` for an alarm
/// above its threshold (`threshold / metric` below it); scaling in divides instead. The change
/// is then bounded to `1..=max_step`. Without usable numbers the step is 1.
pub fn severity_step(
    breach: Option<&Breach>,
    desired: u32,
    direction: Direction,
    max_step: u32,
) -> Step {
    let max_step = max_step.max(1);
    let fallback = |why: String| Step {
        method: "severity",
        size: 1,
        max_step,
        proposed: None,
        breach: breach.cloned(),
        arithmetic: format!("{why}: step 1"),
    };
    let Some(b) = breach else {
        return fallback("the alarm carries no datapoints and threshold".into());
    };
    let severity = match b.side {
        Side::Above if b.threshold > 0.0 && b.metric >= 0.0 => b.metric / b.threshold,
        Side::Below if b.threshold > 0.0 && b.metric > 0.0 => b.threshold / b.metric,
        // A metric at zero below a positive threshold (no traffic at all) is as severe as it
        // gets: the max step.
        Side::Below if b.threshold > 0.0 && b.metric == 0.0 => f64::INFINITY,
        _ => {
            return fallback(format!(
                "metric {} vs threshold {} cannot be compared proportionally",
                num(b.metric),
                num(b.threshold)
            ))
        }
    };
    let ratio = match b.side {
        Side::Above => format!("{} / {}", num(b.metric), num(b.threshold)),
        Side::Below => format!("{} / {}", num(b.threshold), num(b.metric)),
    };
    let d = f64::from(desired);
    // A hair below the exact value before rounding up: 10 × 99/90 is 11.000000000000002 in
    // floating point, and must give 11, not 12.
    const EPSILON: f64 = 1e-9;
    let (proposed, raw, formula) = match direction {
        Direction::Out => {
            let p = (d * severity - EPSILON).ceil().max(0.0);
            (p, p - d, format!("ceil({desired} × {})", num(severity)))
        }
        Direction::In => {
            let p = (d / severity - EPSILON).ceil().max(0.0);
            (p, d - p, format!("ceil({desired} / {})", num(severity)))
        }
    };
    let size = if raw.is_nan() {
        1
    } else {
        raw.clamp(1.0, f64::from(max_step)) as u32
    };
    let proposed_n = proposed.is_finite().then_some(proposed as u64);
    let shown = proposed_n.map_or("∞".to_string(), |p| p.to_string());
    Step {
        method: "severity",
        size,
        max_step,
        proposed: proposed_n,
        breach: Some(b.clone()),
        arithmetic: format!(
            "metric {} (mean of {:?}) {} threshold {}: severity {ratio} = {}; {formula} = {shown}; \
             step {} bounded to 1..={max_step} = {size}",
            num(b.metric),
            b.datapoints,
            match b.side {
                Side::Above => "above",
                Side::Below => "below",
            },
            num(b.threshold),
            num(severity),
            if raw.is_finite() { num(raw) } else { "∞".into() },
        ),
    }
}

fn num(x: f64) -> String {
    if x.is_infinite() {
        "∞".into()
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

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

/// The forecast as the handler obtained it: plain data for [`choose_step`].
#[derive(Debug, Clone, PartialEq)]
pub enum ForecastInput {
    /// No forecast was attempted or the history could not be read: `why`, and the fetch
    /// error when there was one.
    NotMade { why: String, error: Option<String> },
    /// The forecaster's answer (which may itself say to fall back).
    Made(ForecastSizing),
}

/// Which sizing decided the change and why (`details.sizing` of the audit record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizingReport {
    /// `SELFHEAL_SCALE_SIZING`.
    pub setting: SizingMode,
    /// What sized this change: `forecast` or `severity`.
    pub used: &'static str,
    /// Why, for people.
    pub why: String,
    /// Error of the forecast on the held-out recent history, and its limit, when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit_error: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit_error_limit: Option<f64>,
    /// The forecaster's whole answer: forecast values and peak, latest load, sized load,
    /// target per instance, smoothing constants, fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastSizing>,
    /// The history fetch error (or timeout), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Datapoints of load history read (filled in by the handler).
    pub history_points: usize,
    /// What was read as the load (filled in by the handler).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_query: Option<String>,
}

impl SizingReport {
    fn severity(setting: SizingMode, why: String) -> Self {
        Self {
            setting,
            used: "severity",
            why,
            fit_error: None,
            fit_error_limit: None,
            forecast: None,
            error: None,
            history_points: 0,
            load_query: None,
        }
    }
}

/// The step to take: the forecast's when it was made and trusted, else the severity step.
///
/// * Scale out to the forecast capacity, the change bounded to `1..=max_step`, and never less
///   than the severity step: the alarm says the group is short now, whatever the forecast.
/// * Scale in down to the forecast capacity, bounded to `1..=max_step`; when the forecast
///   needs as many instances as there are (load is coming back), the step is 0 and
///   [`decide`] holds the capacity.
///
/// This is the policy the evaluation harness (`eval/src/scale_eval.rs`) replays.
pub fn choose_step(
    breach: Option<&Breach>,
    desired: u32,
    direction: Direction,
    max_step: u32,
    setting: SizingMode,
    forecast: &ForecastInput,
) -> (Step, SizingReport) {
    let severity = severity_step(breach, desired, direction, max_step);
    let sizing = match forecast {
        ForecastInput::NotMade { why, error } => {
            let mut r = SizingReport::severity(setting, format!("severity step: {why}"));
            r.error = error.clone();
            return (severity, r);
        }
        ForecastInput::Made(s) => s,
    };
    let fit_error = sizing
        .forecast
        .as_ref()
        .map(|f| f.fit_error)
        .or(match &sizing.fallback {
            Some(selfheal_core::forecast::Fallback::FitErrorTooHigh { error, .. }) => Some(*error),
            _ => None,
        });
    let mut report = SizingReport {
        setting,
        used: "severity",
        why: sizing.why.clone(),
        fit_error,
        fit_error_limit: Some(sizing.fit_error_limit),
        forecast: Some(sizing.clone()),
        error: None,
        history_points: 0,
        load_query: None,
    };
    let Some(wanted) = sizing.desired else {
        return (severity, report);
    };
    let max_step = max_step.max(1);
    let (size, arithmetic) = match direction {
        Direction::Out => {
            let raw = wanted.saturating_sub(desired);
            let bounded = raw.clamp(1, max_step);
            let size = bounded.max(severity.size);
            let floor = if size > bounded {
                format!(", raised to the severity step {}", severity.size)
            } else {
                String::new()
            };
            (
                size,
                format!(
                    "forecast {wanted} instances: step {raw} bounded to 1..={max_step} = \
                     {bounded}{floor}"
                ),
            )
        }
        Direction::In if wanted < desired => {
            let raw = desired - wanted;
            let size = raw.clamp(1, max_step);
            (
                size,
                format!(
                    "forecast {wanted} instances: step {raw} bounded to 1..={max_step} = {size}"
                ),
            )
        }
        Direction::In => (
            0,
            format!(
                "forecast {wanted} instances, not fewer than the {desired} there are: the load \
                 is coming back, holding capacity"
            ),
        ),
    };
    report.used = "forecast";
    report.why = format!("{}; {arithmetic}", sizing.why);
    let step = Step {
        method: "forecast",
        size,
        max_step,
        proposed: Some(u64::from(wanted)),
        breach: severity.breach.clone(),
        arithmetic: format!(
            "{arithmetic} (load now {}, forecast peak {}, fit error {} on the last hour)",
            sizing
                .forecast
                .as_ref()
                .map_or("?".into(), |f| num(f.latest)),
            sizing.forecast.as_ref().map_or("?".into(), |f| num(f.peak)),
            fit_error.map_or("?".into(), |e| format!("{e:.3}")),
        ),
    };
    (step, report)
}

/// The action: set this group's desired capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resize {
    pub group: String,
    pub direction: Direction,
    pub from: u32,
    pub to: u32,
    /// `MaxSize` or `MinSize` when the step was cut to stay within the group's bounds.
    pub clamped_at: Option<&'static str>,
}

/// Resize or not, from the plan, the group's facts and the sized step. `managed` says whether
/// the group carries the opt-in tag: an unmanaged group is refused before anything else, so
/// nobody is paged about a group this function does not look after.
pub fn decide(plan: &Plan, group: &GroupFacts, managed: bool, step: &Step) -> Decision<Resize> {
    let name = &group.name;
    if !managed {
        return Decision::skip(
            SkipCode::NotOptedIn,
            format!("group {name} does not carry the opt-in tag"),
        );
    }
    if group.min_size > group.max_size {
        return Decision::skip(
            SkipCode::TargetNotEligible,
            format!(
                "group {name} has MinSize {} above MaxSize {}",
                group.min_size, group.max_size
            ),
        );
    }
    if let Some(first) = group.activities_in_progress.first() {
        return Decision::skip(
            SkipCode::ChangeInProgress,
            format!(
                "group {name} has {} scaling activit{} in progress ({first}); not stacking \
                 another change on it",
                group.activities_in_progress.len(),
                if group.activities_in_progress.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            ),
        );
    }
    let (from, min, max) = (group.desired, group.min_size, group.max_size);
    let (wanted, to) = match plan.direction {
        Direction::Out => {
            if from >= max {
                return Decision::skip(
                    SkipCode::AtBound,
                    format!(
                        "capacity exhausted: group {name} is at its MaxSize {max} (desired \
                         {from}) and the alarm asks for {} more; an operator must act (raise \
                         MaxSize or remove the cause)",
                        step.size
                    ),
                );
            }
            let wanted = from.saturating_add(step.size);
            (wanted, wanted.clamp(min, max))
        }
        Direction::In => {
            if from <= min {
                return Decision::skip(
                    SkipCode::AtBound,
                    format!("group {name} is already at its MinSize {min} (desired {from})"),
                );
            }
            if step.size == 0 {
                return Decision::skip(
                    SkipCode::NothingToDo,
                    format!("group {name} stays at {from}: {}", step.arithmetic),
                );
            }
            let wanted = from.saturating_sub(step.size);
            (wanted, wanted.clamp(min, max))
        }
    };
    if to == from {
        return Decision::skip(
            SkipCode::NothingToDo,
            format!("group {name} is already at {from} within [{min}, {max}]"),
        );
    }
    let clamped_at = match wanted.cmp(&to) {
        std::cmp::Ordering::Greater => Some("MaxSize"),
        std::cmp::Ordering::Less => Some("MinSize"),
        std::cmp::Ordering::Equal => None,
    };
    let bound = clamped_at
        .map(|b| format!(" (cut at {b} {})", if b == "MaxSize" { max } else { min }))
        .unwrap_or_default();
    Decision::act(
        Resize {
            group: name.clone(),
            direction: plan.direction,
            from,
            to,
            clamped_at,
        },
        format!(
            "scale {} {name} {from} → {to}{bound}: {}",
            plan.direction.as_str(),
            step.arithmetic
        ),
    )
}

/// A refusal an operator must hear about: a scale-out alarm on a group already at MaxSize.
pub fn capacity_exhausted(plan: &Plan, reason: &SkipReason) -> bool {
    plan.direction == Direction::Out && reason.code == SkipCode::AtBound
}

pub struct Deps {
    pub common: Common,
    pub groups: Arc<dyn Groups>,
    /// The group's load history, for forecast sizing.
    pub history: Arc<dyn MetricHistory>,
    pub settings: Settings,
}

impl Deps {
    pub async fn from_env(opts: Options) -> Result<Self, ConfigError> {
        let settings = Settings::from_env()?;
        let selfheal_lambda::Boot { common, sdk } =
            selfheal_lambda::from_env(FUNCTION, opts).await?;
        let groups = Arc::new(AutoScalingGroups(
            selfheal_aws::aws_sdk_autoscaling::Client::new(&sdk),
        ));
        let history = Arc::new(CloudWatchHistory::new(&sdk));
        Ok(Self {
            common,
            groups,
            history,
            settings,
        })
    }

    /// The forecast for the group's load, from its history (read within
    /// [`HISTORY_FETCH_TIMEOUT`]); a fetch that fails or times out never blocks scaling: the
    /// severity step then sizes the change. Returns the forecast, the datapoints read and
    /// what was read.
    async fn forecast(
        &self,
        alarm: &Alarm,
        plan: &Plan,
        desired: u32,
    ) -> (ForecastInput, usize, Option<String>) {
        let not_made = |why: String, error: Option<String>| ForecastInput::NotMade { why, error };
        if self.settings.sizing == SizingMode::Severity {
            return (
                not_made("SELFHEAL_SCALE_SIZING=severity".into(), None),
                0,
                None,
            );
        }
        let query = match load_query(alarm, &plan.group) {
            Ok(q) => q,
            Err(why) => return (not_made(format!("no forecast: {why}"), None), 0, None),
        };
        let shown = query
            .entries
            .iter()
            .find(|e| e.id == query.returned)
            .and_then(|e| e.expression.clone());
        let at = alarm
            .time
            .filter(|t| *t <= Utc::now())
            .unwrap_or_else(Utc::now);
        let window = history_window(at, query.period);
        let fetched = tokio::time::timeout(
            self.settings.history_timeout,
            self.history.history(&query, &[window]),
        )
        .await;
        let points: Vec<Point> = match fetched {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(alarm = %alarm.name, target = %plan.group, error = %e, "load history unavailable: severity step");
                let why = "no forecast: the load history could not be read".to_string();
                return (not_made(why, Some(e.to_string())), 0, shown);
            }
            Err(_) => {
                let e = format!(
                    "cloudwatch:GetMetricData did not answer within {} ms",
                    self.settings.history_timeout.as_millis()
                );
                tracing::warn!(alarm = %alarm.name, target = %plan.group, error = %e, "load history unavailable: severity step");
                let why = "no forecast: the load history could not be read".to_string();
                return (not_made(why, Some(e)), 0, shown);
            }
        };
        let sizing = forecast_capacity(
            &points,
            desired,
            self.settings.target_utilisation,
            &forecast_settings(window.period),
        );
        (ForecastInput::Made(sizing), points.len(), shown)
    }

    async fn handle_alarm(
        &self,
        alarm: &Alarm,
        inv: &Invocation,
    ) -> Result<AuditRecord, HandlerError> {
        let c = &self.common;
        let details = alarm.audit_details();
        let plan = match plan(alarm, &self.settings) {
            Ok(p) => p,
            Err(reason) => {
                return Ok(self
                    .common
                    .record(
                        c.audit_for(inv, alarm.shape.as_str(), &alarm.name)
                            .details(details)
                            .skipped(&reason),
                    )
                    .await)
            }
        };
        let audit = c
            .audit_for(inv, alarm.shape.as_str(), &plan.group)
            .details(details)
            .detail("plan", &plan);
        let facts = match self.groups.facts(&plan.group).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                let reason = SkipReason::new(
                    SkipCode::TargetNotFound,
                    format!("Auto Scaling group {} does not exist", plan.group),
                );
                return Ok(self.common.record(audit.skipped(&reason)).await);
            }
            Err(e) => {
                return self
                    .common
                    .fail(audit, "describe-failed", e.to_string(), e.retryable)
                    .await
            }
        };
        let audit = audit
            .detail("min_size", facts.min_size)
            .detail("max_size", facts.max_size)
            .detail("desired_before", facts.desired)
            .detail("activities_in_progress", &facts.activities_in_progress);
        let tags = || facts.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let managed = c.guard.policy().opt_in.matches(tags());
        let breach = breach(alarm);
        // The forecast changes only how far the group moves, never whether it can: decide
        // with the severity step first, and read the history only when a change is possible.
        let severity = severity_step(
            breach.as_ref(),
            facts.desired,
            plan.direction,
            plan.max_step,
        );
        let (step, sizing) = match decide(&plan, &facts, managed, &severity) {
            Decision::Skip { .. } => {
                let why = "the group cannot change; no history read".to_string();
                (severity, SizingReport::severity(self.settings.sizing, why))
            }
            Decision::Act { .. } => {
                let (input, points, shown) = self.forecast(alarm, &plan, facts.desired).await;
                let (step, mut report) = choose_step(
                    breach.as_ref(),
                    facts.desired,
                    plan.direction,
                    plan.max_step,
                    self.settings.sizing,
                    &input,
                );
                report.history_points = points;
                report.load_query = shown;
                (step, report)
            }
        };
        let audit = audit.detail("sizing", &sizing).detail("step", &step);
        let (action, reason) = match decide(&plan, &facts, managed, &step) {
            Decision::Skip { reason } => {
                let audit = if capacity_exhausted(&plan, &reason) {
                    audit
                        .detail("capacity_exhausted", true)
                        .detail("escalate", true)
                } else {
                    audit
                };
                return Ok(self.common.record(audit.skipped(&reason)).await);
            }
            Decision::Act { action, reason } => (action, reason),
        };
        let audit = audit
            .detail("desired_requested", action.to)
            .detail("clamped_at", action.clamped_at);
        let verdict = c
            .guard
            .check(
                Target {
                    id: &action.group,
                    tags: tags(),
                },
                Utc::now(),
            )
            .await;
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) => {
                return self
                    .common
                    .fail(audit, "ledger-failed", e.to_string(), e.retryable())
                    .await
            }
        };
        if let Some(rec) = audit.clone().from_verdict(&verdict, reason.clone()) {
            return Ok(self.common.record(rec).await);
        }
        debug_assert_eq!(verdict, Verdict::Act);
        if let Err(e) = self.groups.set_desired(&action.group, action.to).await {
            // Not returned for a Lambda retry even when retryable: the SDK already retried,
            // and the ledger holds the reservation, so a retry would only meet the cooldown.
            return Ok(self
                .common
                .record(
                    audit
                        .detail("retryable", e.retryable)
                        .failed("scale-failed", e.to_string()),
                )
                .await);
        }
        let audit = match self.groups.facts(&action.group).await {
            Ok(Some(after)) => audit
                .detail("desired_after", after.desired)
                .detail("read_back_matches", after.desired == action.to),
            Ok(None) => audit
                .detail("desired_after", Value::Null)
                .detail("read_back_error", "group vanished after the change"),
            Err(e) => audit
                .detail("desired_after", Value::Null)
                .detail("read_back_error", e.to_string()),
        };
        Ok(self.common.record(audit.acted(reason)).await)
    }
}

impl Function for Deps {
    async fn handle(&self, event: Value, inv: Invocation) -> Result<Response, HandlerError> {
        let mut audits = Vec::new();
        for alarm in self.common.alarms_or_reject(&event, &inv).await? {
            audits.push(self.handle_alarm(&alarm, &inv).await?);
        }
        Ok(Response::from_audits(audits))
    }
}

#[cfg(test)]
mod tests;
