//! This function's settings from the environment (beyond the shared guardrails), read and
//! validated once per cold start, and the per-alarm scale rules they may carry.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use selfheal_core::settings::{self, ConfigError};

/// Default bound on one change, in instances.
pub const DEFAULT_MAX_STEP: u32 = 4;

/// Default load per instance forecast sizing sizes for, in the alarm metric's unit (percent
/// for `CPUUtilization`).
pub const DEFAULT_TARGET_UTILISATION: f64 = 70.0;

/// Default oldest alarm event acted on (`SELFHEAL_MAX_EVENT_AGE_SECONDS`): an hour.
pub const DEFAULT_MAX_EVENT_AGE: Duration = Duration::from_secs(3600);

/// How long the load history may take: scaling must not wait on CloudWatch.
pub const HISTORY_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Default cap on follow-ups per episode (`SELFHEAL_SCALE_MAX_FOLLOW_UPS`): then a person.
pub const DEFAULT_MAX_FOLLOW_UPS: u32 = 12;

/// How long after the cooldown a follow-up comes by default, so that the cooldown guardrail
/// admits the next step.
pub const FOLLOW_UP_MARGIN: Duration = Duration::from_secs(30);

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
    /// without a `selfheal:scale` tag) move the way their comparison says (above → out,
    /// below → in); a rule that contradicts the comparison is refused.
    pub rules: BTreeMap<String, ScaleRule>,
    /// `SELFHEAL_SCALE_SIZING`: `forecast` (default) or `severity`.
    pub sizing: SizingMode,
    /// `SELFHEAL_SCALE_TARGET_UTILISATION`: the alarm metric's value one instance should run
    /// at when sized from the forecast (default 70, i.e. 70 % CPU); a number > 0.
    pub target_utilisation: f64,
    /// `SELFHEAL_MAX_EVENT_AGE_SECONDS`: an alarm event whose state change is older than this
    /// is not acted on (default 3600; at least 1): the group it describes may have moved on.
    pub max_event_age: Duration,
    /// `SELFHEAL_SCALE_VERIFY_AFTER_SECONDS`: how long after a resize its verification comes
    /// (`None`, the default: the cooldown plus [`FOLLOW_UP_MARGIN`]). Never sooner than the
    /// cooldown plus 5 s: a follow-up the cooldown refuses could not take the next step.
    pub verify_after: Option<Duration>,
    /// `SELFHEAL_SCALE_MAX_FOLLOW_UPS`: follow-ups per episode (the steps and re-checks its
    /// verifications take after the first action; default 12, at least 1): the verification
    /// after the last one that still finds the alarm not OK tells a person.
    pub max_follow_ups: u32,
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
            max_event_age: DEFAULT_MAX_EVENT_AGE,
            verify_after: None,
            max_follow_ups: DEFAULT_MAX_FOLLOW_UPS,
            history_timeout: HISTORY_FETCH_TIMEOUT,
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(settings::env)
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = settings::lookup(get);
        Ok(Self {
            max_step: max_step(&get)?,
            groups: groups(&get)?,
            rules: rules(&get)?,
            sizing: sizing(&get)?,
            target_utilisation: target_utilisation(&get)?,
            max_event_age: max_event_age(&get)?,
            verify_after: verify_after(&get)?,
            max_follow_ups: max_follow_ups(&get)?,
            history_timeout: HISTORY_FETCH_TIMEOUT,
        })
    }
}

/// Parses `name` when set with `parse`; `None` from `parse` is the error naming `expected`.
fn parsed<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    expected: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => parse(&v).ok_or(ConfigError::Invalid {
            name,
            value: v,
            expected,
        }),
    }
}

fn max_step(get: &impl Fn(&str) -> Option<String>) -> Result<u32, ConfigError> {
    parsed(
        get,
        "SELFHEAL_SCALE_MAX_STEP",
        DEFAULT_MAX_STEP,
        "a whole number of instances, at least 1",
        |v| v.parse::<u32>().ok().filter(|n| *n > 0),
    )
}

fn max_event_age(get: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    parsed(
        get,
        "SELFHEAL_MAX_EVENT_AGE_SECONDS",
        DEFAULT_MAX_EVENT_AGE,
        "a whole number of seconds, at least 1",
        |v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Duration::from_secs)
        },
    )
}

fn verify_after(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Duration>, ConfigError> {
    parsed(
        get,
        "SELFHEAL_SCALE_VERIFY_AFTER_SECONDS",
        None,
        "a whole number of seconds",
        |v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .map(|n| Some(Duration::from_secs(n)))
        },
    )
}

fn max_follow_ups(get: &impl Fn(&str) -> Option<String>) -> Result<u32, ConfigError> {
    parsed(
        get,
        "SELFHEAL_SCALE_MAX_FOLLOW_UPS",
        DEFAULT_MAX_FOLLOW_UPS,
        "a whole number of verifications, at least 1",
        |v| v.trim().parse::<u32>().ok().filter(|n| *n > 0),
    )
}

impl Settings {
    /// When a resize's verification comes, given the guardrails' cooldown.
    pub fn verify_after(&self, cooldown: Duration) -> Duration {
        let floor = cooldown + Duration::from_secs(5);
        self.verify_after
            .unwrap_or(cooldown + FOLLOW_UP_MARGIN)
            .max(floor)
    }
}

fn groups(get: &impl Fn(&str) -> Option<String>) -> Result<BTreeMap<String, String>, ConfigError> {
    parsed(
        get,
        "SELFHEAL_SCALE_GROUPS",
        BTreeMap::new(),
        "alarm-name=group-name pairs separated by commas",
        |v| {
            pairs(v)
                .map(|e| e.map(|(k, g)| (k.to_string(), g.to_string())))
                .collect()
        },
    )
}

fn rules(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, ScaleRule>, ConfigError> {
    parsed(
        get,
        "SELFHEAL_SCALE_RULES",
        BTreeMap::new(),
        "alarm-name=out|in[:max-step] pairs separated by commas",
        |v| {
            pairs(v)
                .map(|e| e.and_then(|(k, r)| Some((k.to_string(), ScaleRule::parse(r)?))))
                .collect()
        },
    )
}

fn sizing(get: &impl Fn(&str) -> Option<String>) -> Result<SizingMode, ConfigError> {
    parsed(
        get,
        "SELFHEAL_SCALE_SIZING",
        SizingMode::Forecast,
        "forecast or severity",
        |v| match v.to_ascii_lowercase().as_str() {
            "forecast" => Some(SizingMode::Forecast),
            "severity" => Some(SizingMode::Severity),
            _ => None,
        },
    )
}

/// A trailing `%` is allowed: people write CPU targets that way.
fn target_utilisation(get: &impl Fn(&str) -> Option<String>) -> Result<f64, ConfigError> {
    parsed(
        get,
        "SELFHEAL_SCALE_TARGET_UTILISATION",
        DEFAULT_TARGET_UTILISATION,
        "a number above 0 (the alarm metric's value per instance, e.g. 70)",
        |v| {
            v.trim_end_matches('%')
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t > 0.0)
        },
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::settings;

    #[test]
    fn follow_ups_come_after_the_cooldown_and_are_capped() {
        let cooldown = Duration::from_secs(900);
        let s = settings(&[]).unwrap();
        assert_eq!(s.verify_after(cooldown), Duration::from_secs(930));
        assert_eq!(s.max_follow_ups, 12);
        let s = settings(&[
            ("SELFHEAL_SCALE_VERIFY_AFTER_SECONDS", "60"),
            ("SELFHEAL_SCALE_MAX_FOLLOW_UPS", "3"),
        ])
        .unwrap();
        assert_eq!(
            s.verify_after(cooldown),
            Duration::from_secs(905),
            "never inside the cooldown"
        );
        assert_eq!(s.verify_after(Duration::ZERO), Duration::from_secs(60));
        assert_eq!(s.max_follow_ups, 3);
        assert!(settings(&[("SELFHEAL_SCALE_MAX_FOLLOW_UPS", "0")]).is_err());
        assert!(settings(&[("SELFHEAL_SCALE_VERIFY_AFTER_SECONDS", "soon")]).is_err());
    }

    #[test]
    fn settings_defaults_and_errors() {
        let s = settings(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.max_step, 4);
        let s = settings(&[
            ("SELFHEAL_SCALE_MAX_STEP", "2"),
            (
                "SELFHEAL_SCALE_GROUPS",
                "queue-deep = workers , api-slow=api",
            ),
            ("SELFHEAL_SCALE_RULES", "cpu-low=in:1,queue-deep=out"),
        ])
        .unwrap();
        assert_eq!(s.max_step, 2);
        assert_eq!(
            s.groups.get("queue-deep").map(String::as_str),
            Some("workers")
        );
        assert_eq!(s.groups.get("api-slow").map(String::as_str), Some("api"));
        assert_eq!(
            s.rules.get("cpu-low"),
            Some(&ScaleRule {
                direction: Direction::In,
                max_step: Some(1)
            })
        );
        assert_eq!(
            (s.sizing, s.target_utilisation),
            (SizingMode::Forecast, 70.0)
        );
        let s = settings(&[
            ("SELFHEAL_SCALE_SIZING", " Severity "),
            ("SELFHEAL_SCALE_TARGET_UTILISATION", "55%"),
        ])
        .unwrap();
        assert_eq!(
            (s.sizing, s.target_utilisation),
            (SizingMode::Severity, 55.0)
        );
        let s = settings(&[("SELFHEAL_MAX_EVENT_AGE_SECONDS", "600")]).unwrap();
        assert_eq!(s.max_event_age, Duration::from_secs(600));
        assert_eq!(Settings::default().max_event_age, Duration::from_secs(3600));
        for bad in [
            ("SELFHEAL_SCALE_SIZING", "magic"),
            ("SELFHEAL_SCALE_TARGET_UTILISATION", "0"),
            ("SELFHEAL_SCALE_TARGET_UTILISATION", "-5"),
            ("SELFHEAL_SCALE_TARGET_UTILISATION", "NaN"),
            ("SELFHEAL_SCALE_MAX_STEP", "0"),
            ("SELFHEAL_SCALE_MAX_STEP", "-1"),
            ("SELFHEAL_MAX_EVENT_AGE_SECONDS", "0"),
            ("SELFHEAL_MAX_EVENT_AGE_SECONDS", "an hour"),
            ("SELFHEAL_SCALE_GROUPS", "no-equals-sign"),
            ("SELFHEAL_SCALE_GROUPS", "a="),
            ("SELFHEAL_SCALE_RULES", "a=sideways"),
            ("SELFHEAL_SCALE_RULES", "a=out:0"),
        ] {
            assert!(settings(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scale_rules_parse() {
        let r = |d, s| {
            Some(ScaleRule {
                direction: d,
                max_step: s,
            })
        };
        assert_eq!(ScaleRule::parse("out"), r(Direction::Out, None));
        assert_eq!(ScaleRule::parse(" IN "), r(Direction::In, None));
        assert_eq!(ScaleRule::parse("scale-out:3"), r(Direction::Out, Some(3)));
        assert_eq!(ScaleRule::parse("down: 2"), r(Direction::In, Some(2)));
        for bad in ["", "left", "out:", "out:x", "in:0", "in:-1"] {
            assert_eq!(ScaleRule::parse(bad), None, "{bad:?}");
        }
    }
}
