//! Graduated autonomy (issue 17): how far a function may go on its own for one action on one
//! target. Four levels, from watching to acting:
//!
//! - `observe`: never acts; every occurrence is a dry run with a notice.
//! - `first-dry-run`: the first occurrence on a (function, target, action) within a window is
//!   a dry run with a notice; a repeat inside the window acts.
//! - `approve`: asks a person (a notice with signed approve and reject links, see
//!   [`crate::approval`]) and acts only on approval.
//! - `auto`: acts.
//!
//! The level is resolved most specific first (target tag, alarm tag, the function's setting,
//! the function's default); a malformed tag resolves to `observe`, the safest level, and says
//! so. Everything here is pure: the caller fetches the tags and the "seen" record, and stores
//! the record again (under [`seen_key`]) on every occurrence.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::settings::ConfigError;

/// The tag, on a target (instance, group, bucket) or on an alarm, that sets the level.
pub const TAG: &str = "selfheal:autonomy";
/// The function's setting (environment variable).
pub const SETTING: &str = "SELFHEAL_AUTONOMY";
/// The first-occurrence window setting, in seconds.
pub const WINDOW_SETTING: &str = "SELFHEAL_AUTONOMY_WINDOW_SECONDS";
/// The first-occurrence window when [`WINDOW_SETTING`] is unset: a day.
pub const DEFAULT_WINDOW_SECONDS: i64 = 86_400;
/// The longest window accepted: 30 days (the ledger keeps "seen" records that long).
pub const MAX_WINDOW_SECONDS: i64 = 30 * 86_400;

/// How far a function may go on its own. Ordered from the safest to the most autonomous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Observe,
    FirstDryRun,
    Approve,
    Auto,
}

impl Level {
    pub const ALL: [Level; 4] = [
        Level::Observe,
        Level::FirstDryRun,
        Level::Approve,
        Level::Auto,
    ];

    /// The word used in tags, settings and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Observe => "observe",
            Level::FirstDryRun => "first-dry-run",
            Level::Approve => "approve",
            Level::Auto => "auto",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that is not one of the four levels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("autonomy level {value:?} is not one of observe, first-dry-run, approve, auto")]
pub struct LevelError {
    /// The value as given (cut to 64 characters: tag values come from outside).
    pub value: String,
}

impl FromStr for Level {
    type Err = LevelError;

    /// Accepts the four words, trimmed, in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let word = s.trim().to_ascii_lowercase();
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == word)
            .ok_or_else(|| LevelError {
                value: s.chars().take(64).collect(),
            })
    }
}

/// Where the level that applies came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    TargetTag,
    AlarmTag,
    Setting,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::TargetTag => "target tag",
            Source::AlarmTag => "alarm tag",
            Source::Setting => "setting",
            Source::Default => "default",
        }
    }
}

/// What [`resolve`] looks at, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs<'a> {
    /// The value of the target's `selfheal:autonomy` tag, if it has one.
    pub target_tag: Option<&'a str>,
    /// The value of the alarm's `selfheal:autonomy` tag, if it has one.
    pub alarm_tag: Option<&'a str>,
    /// The function's `SELFHEAL_AUTONOMY` setting (validated at cold start by [`setting`]).
    pub setting: Option<Level>,
    /// The function's default (reboot and scale: `first-dry-run`, stop-start: `approve`,
    /// replay and restore: `auto`).
    pub default: Level,
}

/// The level that applies, where it came from and why: goes into the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub level: Level,
    pub source: Source,
    pub reason: String,
}

/// The level that applies. A tag that is present but malformed (empty, or not one of the four
/// words) is not skipped in favour of a less specific one: someone meant to set the level on
/// that target or alarm, so the safest level (`observe`) applies and the reason says why.
pub fn resolve(inputs: &Inputs<'_>) -> Resolved {
    for (value, source) in [
        (inputs.target_tag, Source::TargetTag),
        (inputs.alarm_tag, Source::AlarmTag),
    ] {
        let Some(value) = value else { continue };
        return match value.parse::<Level>() {
            Ok(level) => Resolved {
                level,
                source,
                reason: format!("{} {TAG}={level}", source.as_str()),
            },
            Err(e) => Resolved {
                level: Level::Observe,
                source,
                reason: format!(
                    "{} {TAG} is malformed ({e}): using observe, the safest level",
                    source.as_str()
                ),
            },
        };
    }
    match inputs.setting {
        Some(level) => Resolved {
            level,
            source: Source::Setting,
            reason: format!("setting {SETTING}={level}"),
        },
        None => Resolved {
            level: inputs.default,
            source: Source::Default,
            reason: format!("the function's default ({})", inputs.default),
        },
    }
}

/// Reads `SELFHEAL_AUTONOMY` (unset: `None`, the function's default applies). A bad value
/// fails the cold start, like every other setting.
pub fn setting(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Level>, ConfigError> {
    match get(SETTING) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ConfigError::Invalid {
            name: SETTING,
            value: v,
            expected: "observe, first-dry-run, approve or auto",
        }),
    }
}

/// Reads `SELFHEAL_AUTONOMY_WINDOW_SECONDS` (default a day; 1 s to 30 days).
pub fn window_setting(get: &impl Fn(&str) -> Option<String>) -> Result<i64, ConfigError> {
    match get(WINDOW_SETTING) {
        None => Ok(DEFAULT_WINDOW_SECONDS),
        Some(v) => match v.parse::<i64>() {
            Ok(w) if (1..=MAX_WINDOW_SECONDS).contains(&w) => Ok(w),
            _ => Err(ConfigError::Invalid {
                name: WINDOW_SETTING,
                value: v,
                expected: "a number of seconds from 1 to 2592000 (30 days)",
            }),
        },
    }
}

/// The first-occurrence decision at `first-dry-run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "gate", rename_all = "kebab-case")]
pub enum Gate {
    /// Nothing seen within the window: a dry run with a notice.
    DryRun { reason: String },
    /// Seen within the window: act.
    Act { reason: String },
}

/// Whether this occurrence is the first on its (function, target, action) within `window`
/// seconds. `last_seen` is the epoch second of the previous occurrence (the record under
/// [`seen_key`]); the caller stores `now` there on every occurrence, so the window slides: a
/// target that fails every hour keeps acting, one that fails once a week is a dry run each
/// time. A record dated after `now` (clock skew between invocations) does not count: when in
/// doubt, the dry run.
pub fn first_dry_run(last_seen: Option<i64>, now: i64, window: i64) -> Gate {
    match last_seen {
        None => Gate::DryRun {
            reason: format!("first occurrence (nothing seen in the last {window} s): dry run"),
        },
        Some(t) if t > now => Gate::DryRun {
            reason: format!(
                "the previous occurrence is dated {} s in the future (clock skew): dry run",
                t.saturating_sub(now)
            ),
        },
        Some(t) if now.saturating_sub(t) <= window => Gate::Act {
            reason: format!(
                "repeat occurrence ({} s after the previous one, window {window} s)",
                now.saturating_sub(t)
            ),
        },
        Some(t) => Gate::DryRun {
            reason: format!(
                "first occurrence in the window (previous one {} s ago, window {window} s): dry run",
                now.saturating_sub(t)
            ),
        },
    }
}

/// The ledger key of the "seen" record of a (function, target, action):
/// `<function>#autonomy#seen#<action>#<target>`. Function and action names never contain `#`
/// and the target comes last, so the key is unambiguous even for targets that do (object keys).
pub fn seen_key(function: &str, target: &str, action: &str) -> String {
    format!("{function}#autonomy#seen#{action}#{target}")
}

/// What the gate is given besides the level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The previous occurrence on this (function, target, action), epoch seconds.
    pub last_seen: Option<i64>,
    pub now: i64,
    /// The first-occurrence window in seconds.
    pub window: i64,
    /// The id of a person's approval of this very action: a token that was verified and
    /// consumed (single use) in this invocation. `None` for an alarm or event.
    pub approval: Option<String>,
}

/// What autonomy allows for this occurrence. Guardrails still apply after `Act`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "autonomy", rename_all = "kebab-case")]
pub enum AutonomyDecision {
    Act { reason: String },
    DryRun { reason: String },
    AskApproval { reason: String },
}

impl AutonomyDecision {
    pub fn reason(&self) -> &str {
        match self {
            AutonomyDecision::Act { reason }
            | AutonomyDecision::DryRun { reason }
            | AutonomyDecision::AskApproval { reason } => reason,
        }
    }

    /// `act`, `dry-run` or `ask-approval`, for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AutonomyDecision::Act { .. } => "act",
            AutonomyDecision::DryRun { .. } => "dry-run",
            AutonomyDecision::AskApproval { .. } => "ask-approval",
        }
    }
}

/// The autonomy decision for one occurrence, at the level that applies *now*. An approval is
/// honoured at `first-dry-run`, `approve` and `auto` (a person said yes); at `observe` it is
/// not (someone lowered the level after the link was sent: the level wins).
pub fn gate(level: Level, facts: &Facts) -> AutonomyDecision {
    match (level, &facts.approval) {
        (Level::Observe, Some(id)) => AutonomyDecision::DryRun {
            reason: format!(
                "autonomy observe: the level was lowered since approval {id} was asked; not acting"
            ),
        },
        (Level::Observe, None) => AutonomyDecision::DryRun {
            reason: "autonomy observe: never acts, dry run with a notice".into(),
        },
        (_, Some(id)) => AutonomyDecision::Act {
            reason: format!("approved by a person (approval {id}), autonomy {level}"),
        },
        (Level::FirstDryRun, None) => {
            match first_dry_run(facts.last_seen, facts.now, facts.window) {
                Gate::Act { reason } => AutonomyDecision::Act {
                    reason: format!("autonomy first-dry-run: {reason}"),
                },
                Gate::DryRun { reason } => AutonomyDecision::DryRun {
                    reason: format!("autonomy first-dry-run: {reason}"),
                },
            }
        }
        (Level::Approve, None) => AutonomyDecision::AskApproval {
            reason: "autonomy approve: asking a person, acting only on approval".into(),
        },
        (Level::Auto, None) => AutonomyDecision::Act {
            reason: "autonomy auto".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(t: Option<&'a str>, a: Option<&'a str>, s: Option<Level>) -> Inputs<'a> {
        Inputs {
            target_tag: t,
            alarm_tag: a,
            setting: s,
            default: Level::FirstDryRun,
        }
    }

    #[test]
    fn levels_parse_from_their_words_only() {
        for l in Level::ALL {
            assert_eq!(l.as_str().parse::<Level>(), Ok(l));
            assert_eq!(serde_json::to_value(l).unwrap(), l.as_str());
        }
        assert_eq!(" Auto\n".parse::<Level>(), Ok(Level::Auto));
        for bad in ["", "yes", "first_dry_run", "autopilot", "observe,auto"] {
            let e = bad.parse::<Level>().unwrap_err();
            assert!(e.to_string().contains("is not one of observe"), "{e}");
        }
    }

    #[test]
    fn resolution_takes_the_most_specific_source() {
        let table = [
            (
                inputs(Some("auto"), Some("observe"), Some(Level::Approve)),
                Level::Auto,
                Source::TargetTag,
            ),
            (
                inputs(None, Some("approve"), Some(Level::Auto)),
                Level::Approve,
                Source::AlarmTag,
            ),
            (
                inputs(None, None, Some(Level::Auto)),
                Level::Auto,
                Source::Setting,
            ),
            (
                inputs(None, None, None),
                Level::FirstDryRun,
                Source::Default,
            ),
        ];
        for (i, level, source) in table {
            let r = resolve(&i);
            assert_eq!((r.level, r.source), (level, source), "{i:?}");
            assert!(!r.reason.is_empty());
        }
    }

    #[test]
    fn a_malformed_tag_resolves_to_observe_with_the_reason() {
        for (i, source) in [
            (inputs(Some("yolo"), Some("auto"), None), Source::TargetTag),
            (inputs(Some(""), None, Some(Level::Auto)), Source::TargetTag),
            (
                inputs(None, Some("AUTO!"), Some(Level::Auto)),
                Source::AlarmTag,
            ),
        ] {
            let r = resolve(&i);
            assert_eq!(r.level, Level::Observe, "{i:?}");
            assert_eq!(r.source, source);
            assert!(r.reason.contains("malformed"), "{}", r.reason);
            assert!(r.reason.contains("observe"), "{}", r.reason);
        }
    }

    #[test]
    fn settings_are_validated() {
        let get = |v: Option<&'static str>| move |_: &str| v.map(String::from);
        assert_eq!(setting(&get(None)), Ok(None));
        assert_eq!(setting(&get(Some("approve"))), Ok(Some(Level::Approve)));
        assert!(setting(&get(Some("sometimes"))).is_err());
        assert_eq!(window_setting(&get(None)), Ok(DEFAULT_WINDOW_SECONDS));
        assert_eq!(window_setting(&get(Some("3600"))), Ok(3600));
        for bad in ["0", "-5", "2592001", "1d"] {
            assert!(window_setting(&get(Some(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn first_occurrence_is_a_dry_run_and_a_repeat_in_the_window_acts() {
        let w = 86_400;
        let now = 1_000_000;
        let table = [
            (None, false),
            (Some(now), true),
            (Some(now - 1), true),
            (Some(now - w), true),
            (Some(now - w - 1), false),
            (Some(now + 5), false),
            (Some(i64::MIN), false),
        ];
        for (last, acts) in table {
            let g = first_dry_run(last, now, w);
            assert_eq!(matches!(g, Gate::Act { .. }), acts, "{last:?}: {g:?}");
        }
    }

    #[test]
    fn seen_keys_are_namespaced_by_function_target_and_action() {
        assert_eq!(
            seen_key("reboot-instance", "i-1", "reboot"),
            "reboot-instance#autonomy#seen#reboot#i-1"
        );
        assert_ne!(seen_key("f", "a#b", "c"), seen_key("f", "b#a", "c"));
        assert_ne!(
            seen_key("f", "t", "reboot"),
            seen_key("f", "t", "stop-start")
        );
    }

    #[test]
    fn gate_table() {
        let now = 10_000;
        let facts = |last_seen: Option<i64>, approval: Option<&str>| Facts {
            last_seen,
            now,
            window: 100,
            approval: approval.map(String::from),
        };
        let table = [
            (Level::Observe, facts(Some(now), None), "dry-run"),
            (Level::Observe, facts(None, Some("ap-1")), "dry-run"),
            (Level::FirstDryRun, facts(None, None), "dry-run"),
            (Level::FirstDryRun, facts(Some(now - 50), None), "act"),
            (Level::FirstDryRun, facts(Some(now - 500), None), "dry-run"),
            (Level::FirstDryRun, facts(None, Some("ap-1")), "act"),
            (Level::Approve, facts(Some(now), None), "ask-approval"),
            (Level::Approve, facts(None, Some("ap-1")), "act"),
            (Level::Auto, facts(None, None), "act"),
            (Level::Auto, facts(None, Some("ap-1")), "act"),
        ];
        for (level, f, expected) in table {
            let d = gate(level, &f);
            assert_eq!(d.code(), expected, "{level} {f:?} gave {d:?}");
            assert!(d.reason().contains(level.as_str()), "{d:?}");
        }
    }

    #[test]
    fn decisions_serialise_for_the_audit_record() {
        let d = gate(
            Level::Approve,
            &Facts {
                last_seen: None,
                now: 0,
                window: 1,
                approval: None,
            },
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["autonomy"], "ask-approval");
        assert_eq!(d.code(), "ask-approval");
        let r = resolve(&inputs(None, None, None));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["level"], "first-dry-run");
        assert_eq!(v["source"], "default");
    }
}
