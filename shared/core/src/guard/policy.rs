//! Guardrail settings, read from the function's environment once per cold start.

use std::time::Duration;

use super::window::ExecutionWindow;
pub use crate::settings::ConfigError;
use crate::settings::{lookup, parse_bool, parse_u64};

/// The tag a resource must carry before any function touches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptInTag {
    pub key: String,
    pub value: String,
}

impl OptInTag {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok(Self {
                key: k.trim().to_string(),
                value: v.trim().to_string(),
            }),
            _ => Err(ConfigError::Invalid {
                name: "SELFHEAL_OPT_IN_TAG",
                value: s.to_string(),
                expected: "KEY=VALUE, e.g. selfheal:managed=true",
            }),
        }
    }

    pub fn matches<'a>(&self, mut tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        tags.any(|(k, v)| k == self.key && v.eq_ignore_ascii_case(&self.value))
    }
}

impl std::fmt::Display for OptInTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    /// The function's name, used in ledger keys, metrics and notifications.
    pub function: String,
    /// `SELFHEAL_ENABLED`: false stops the function whatever the kill-switch parameter says;
    /// true lets the parameter (when one is configured) decide.
    pub enabled_fallback: bool,
    /// `SELFHEAL_KILL_SWITCH_PARAMETER`: SSM parameter holding `on` or `off`.
    pub kill_switch_parameter: Option<String>,
    /// `SELFHEAL_KILL_SWITCH_MAX_STALE_SECONDS`: how long the last value read from the
    /// parameter is trusted while it cannot be read (then: off).
    pub kill_switch_max_stale: Duration,
    /// `SELFHEAL_DRY_RUN`: decide and audit, change nothing.
    pub dry_run: bool,
    /// `SELFHEAL_OPT_IN_TAG`.
    pub opt_in: OptInTag,
    /// `SELFHEAL_COOLDOWN_SECONDS`: minimum time between two actions on one target.
    pub cooldown: Duration,
    /// `SELFHEAL_TARGET_CAP`: actions on one target allowed within `target_cap_window`.
    pub target_cap: u32,
    /// `SELFHEAL_TARGET_CAP_WINDOW_SECONDS`.
    pub target_cap_window: Duration,
    /// `SELFHEAL_MAX_ACTIONS_PER_HOUR`: blast-radius cap for the whole function, over any
    /// rolling 60 minutes.
    pub max_actions_per_hour: u32,
    /// `SELFHEAL_MAX_ACTIONS_PER_GROUP_PER_HOUR`: the same within one group of targets (tag
    /// `selfheal:group`, or the instance's Auto Scaling group).
    pub max_actions_per_group_per_hour: u32,
    /// `SELFHEAL_BREAKER_TARGETS`: distinct targets alarming within `breaker_window` that stop
    /// all action (a shared dependency?); 0 turns the breaker off.
    pub breaker_targets: u32,
    /// `SELFHEAL_BREAKER_WINDOW_SECONDS`.
    pub breaker_window: Duration,
    /// `SELFHEAL_EXECUTION_WINDOW`: when acting is allowed (UTC); unset means always.
    pub window: Option<ExecutionWindow>,
    /// `SELFHEAL_LEDGER_TABLE`: DynamoDB table for cooldowns, caps and idempotency.
    pub ledger_table: Option<String>,
    /// `SELFHEAL_TOPIC_ARN`: SNS topic for notifications; unset means none are sent.
    pub topic_arn: Option<String>,
    /// Graduated autonomy (issue 17): `SELFHEAL_AUTONOMY`, its window, the approval links'
    /// validity, key and URL parameters. Used only by functions that call the autonomy gate.
    pub autonomy: crate::approval::gate::AutonomySettings,
}

impl Policy {
    pub const DEFAULT_OPT_IN_TAG: &'static str = "selfheal:managed=true";

    /// Reads the policy from the process environment.
    pub fn from_env(function: &str) -> Result<Self, ConfigError> {
        Self::from_lookup(function, |k| std::env::var(k).ok())
    }

    /// Reads the policy through `get` (the environment in production, a map in tests).
    pub fn from_lookup(
        function: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = lookup(get);
        let opt_in = OptInTag::parse(
            &get("SELFHEAL_OPT_IN_TAG").unwrap_or_else(|| Self::DEFAULT_OPT_IN_TAG.into()),
        )?;
        let window = match get("SELFHEAL_EXECUTION_WINDOW") {
            Some(w) => Some(
                ExecutionWindow::parse(&w).map_err(|_| ConfigError::Invalid {
                    name: "SELFHEAL_EXECUTION_WINDOW",
                    value: w.clone(),
                    expected: "e.g. \"Mon-Fri 08:00-18:00\" (UTC; several separated by ';')",
                })?,
            ),
            None => None,
        };
        Ok(Self {
            function: function.to_string(),
            enabled_fallback: parse_bool(&get, "SELFHEAL_ENABLED", true)?,
            kill_switch_parameter: get("SELFHEAL_KILL_SWITCH_PARAMETER"),
            kill_switch_max_stale: Duration::from_secs(parse_u64(
                &get,
                "SELFHEAL_KILL_SWITCH_MAX_STALE_SECONDS",
                300,
            )?),
            dry_run: parse_bool(&get, "SELFHEAL_DRY_RUN", false)?,
            opt_in,
            cooldown: Duration::from_secs(parse_u64(&get, "SELFHEAL_COOLDOWN_SECONDS", 900)?),
            target_cap: parse_u64(&get, "SELFHEAL_TARGET_CAP", 3)? as u32,
            target_cap_window: Duration::from_secs(parse_u64(
                &get,
                "SELFHEAL_TARGET_CAP_WINDOW_SECONDS",
                6 * 3600,
            )?),
            max_actions_per_hour: parse_u64(&get, "SELFHEAL_MAX_ACTIONS_PER_HOUR", 20)? as u32,
            max_actions_per_group_per_hour: parse_u64(
                &get,
                "SELFHEAL_MAX_ACTIONS_PER_GROUP_PER_HOUR",
                3,
            )? as u32,
            breaker_targets: parse_u64(&get, "SELFHEAL_BREAKER_TARGETS", 10)? as u32,
            breaker_window: Duration::from_secs(parse_u64(
                &get,
                "SELFHEAL_BREAKER_WINDOW_SECONDS",
                600,
            )?),
            window,
            ledger_table: get("SELFHEAL_LEDGER_TABLE"),
            topic_arn: get("SELFHEAL_TOPIC_ARN"),
            autonomy: crate::approval::gate::AutonomySettings::from_lookup(&get)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn policy(pairs: &[(&str, &str)]) -> Result<Policy, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Policy::from_lookup("f", |k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let p = policy(&[]).unwrap();
        assert!(p.enabled_fallback);
        assert!(!p.dry_run);
        assert_eq!(p.opt_in.to_string(), "selfheal:managed=true");
        assert_eq!(p.cooldown, Duration::from_secs(900));
        assert_eq!(p.target_cap, 3);
        assert_eq!(p.target_cap_window, Duration::from_secs(21600));
        assert_eq!(p.max_actions_per_hour, 20);
        assert!(p.window.is_none() && p.ledger_table.is_none() && p.topic_arn.is_none());
    }

    #[test]
    fn overrides_and_errors() {
        let p = policy(&[
            ("SELFHEAL_DRY_RUN", "yes"),
            ("SELFHEAL_OPT_IN_TAG", "team:auto=on"),
            ("SELFHEAL_COOLDOWN_SECONDS", "60"),
        ])
        .unwrap();
        assert!(p.dry_run);
        assert_eq!(p.opt_in.key, "team:auto");
        assert_eq!(p.cooldown, Duration::from_secs(60));
        assert!(policy(&[("SELFHEAL_DRY_RUN", "maybe")]).is_err());
        assert!(policy(&[("SELFHEAL_OPT_IN_TAG", "novalue")]).is_err());
        assert!(policy(&[("SELFHEAL_TARGET_CAP", "-1")]).is_err());
        assert!(policy(&[("SELFHEAL_EXECUTION_WINDOW", "someday")]).is_err());
    }

    #[test]
    fn opt_in_matching() {
        let t = OptInTag::parse("selfheal:managed=true").unwrap();
        assert!(t.matches([("selfheal:managed", "TRUE")].into_iter()));
        assert!(!t.matches([("selfheal:managed", "false")].into_iter()));
        assert!(!t.matches(std::iter::empty()));
    }
}
