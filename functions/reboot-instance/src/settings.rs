//! This function's settings beyond the shared guardrails, read from the environment and
//! validated once per cold start.

use std::time::Duration;

use selfheal_core::anomaly::GateSettings;

use crate::ladder::{parse_ladder, Rung, LADDER};
use selfheal_core::settings::{self, ConfigError};

/// Alarm namespaces whose `InstanceId` dimension names an instance to reboot.
pub const NAMESPACES: &str = "SELFHEAL_REBOOT_NAMESPACES";
/// Metrics whose alarms ask for a reboot without an opt-in tag.
pub const REBOOT_METRICS: &str = "SELFHEAL_REBOOT_METRICS";
/// How long an alarm's tags are trusted once read.
pub const ALARM_TAG_CACHE_SECONDS: &str = "SELFHEAL_ALARM_TAG_CACHE_SECONDS";
/// Events older than this are not acted on.
pub const MAX_EVENT_AGE_SECONDS: &str = "SELFHEAL_MAX_EVENT_AGE_SECONDS";

/// How long after a reboot its verification comes.
pub const VERIFY_AFTER_SECONDS: &str = "SELFHEAL_REBOOT_VERIFY_AFTER_SECONDS";
/// Whether the ladder's stop-start rung may be taken.
pub const ALLOW_STOP_START: &str = "SELFHEAL_REBOOT_ALLOW_STOP_START";
/// Verifications per episode before a person is told.
pub const MAX_FOLLOW_UPS: &str = "SELFHEAL_REBOOT_MAX_FOLLOW_UPS";

/// The status checks: an instance that fails them is what a reboot is for.
pub const DEFAULT_REBOOT_METRICS: [&str; 4] = [
    "StatusCheckFailed",
    "StatusCheckFailed_Instance",
    "StatusCheckFailed_System",
    "StatusCheckFailed_AttachedEBS",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `SELFHEAL_REBOOT_NAMESPACES`: alarm namespaces whose `InstanceId` dimension names an
    /// instance to reboot (default `AWS/EC2,CWAgent`).
    pub namespaces: Vec<String>,
    /// The anomaly gate: `SELFHEAL_ANOMALY_GATE` (`on` by default, `shadow`, `off`),
    /// `SELFHEAL_ANOMALY_SENSITIVITY` (robust z-score, default 1.0), `SELFHEAL_ANOMALY_DAYS`
    /// (7), `SELFHEAL_ANOMALY_WEEKS` (4). See docs/ai.md.
    pub gate: GateSettings,
    /// `SELFHEAL_REBOOT_METRICS`: an alarm whose metrics are all on this list asks for a
    /// reboot (default: the four status-check metrics); any other alarm must be tagged
    /// `selfheal:reboot=true`.
    pub reboot_metrics: Vec<String>,
    /// `SELFHEAL_ALARM_TAG_CACHE_SECONDS` (300): how long an alarm's tags, once read, are
    /// trusted (0: read them for every event).
    pub alarm_tag_cache: Duration,
    /// `SELFHEAL_MAX_EVENT_AGE_SECONDS` (3600): an alarm event older than this (by the alarm's
    /// state-change time) is skipped as stale.
    pub max_event_age: Duration,
    /// `SELFHEAL_REBOOT_VERIFY_AFTER_SECONDS` (600): how long after a reboot its verification
    /// comes (at least 60).
    pub verify_after: Duration,
    /// `SELFHEAL_REBOOT_LADDER` (`reboot,notify`): see [`crate::ladder`].
    pub ladder: Vec<Rung>,
    /// `SELFHEAL_REBOOT_ALLOW_STOP_START` (false): the ladder's `stop-start` rung may be taken.
    pub allow_stop_start: bool,
    /// `SELFHEAL_REBOOT_MAX_FOLLOW_UPS` (3): verifications per episode (re-checks of a reboot
    /// whose status checks are still initializing count) before a person is told.
    pub max_follow_ups: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespaces: vec!["AWS/EC2".into(), "CWAgent".into()],
            gate: GateSettings::default(),
            reboot_metrics: DEFAULT_REBOOT_METRICS.map(String::from).to_vec(),
            alarm_tag_cache: Duration::from_secs(300),
            max_event_age: Duration::from_secs(3600),
            verify_after: Duration::from_secs(600),
            ladder: vec![Rung::Reboot, Rung::Notify],
            allow_stop_start: false,
            max_follow_ups: 3,
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(settings::env)
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = settings::lookup(get);
        let namespaces =
            settings::parse_list(&get, NAMESPACES).unwrap_or_else(|| Self::default().namespaces);
        // The gate reads its own variables (it is shared with eval/); its error names the
        // variable like every other setting's does.
        let gate = GateSettings::from_lookup(&get).map_err(|e| ConfigError::Invalid {
            name: e.name,
            value: e.value,
            expected: e.expected,
        })?;
        let reboot_metrics = settings::parse_list(&get, REBOOT_METRICS)
            .unwrap_or_else(|| Self::default().reboot_metrics);
        let alarm_tag_cache =
            Duration::from_secs(settings::parse_u64(&get, ALARM_TAG_CACHE_SECONDS, 300)?);
        let max_event_age = match settings::parse_u64(&get, MAX_EVENT_AGE_SECONDS, 3600)? {
            // Zero would skip every event: a typo, not a choice.
            0 => {
                return Err(ConfigError::Invalid {
                    name: MAX_EVENT_AGE_SECONDS,
                    value: "0".into(),
                    expected: "a whole number of seconds above 0",
                })
            }
            secs => Duration::from_secs(secs),
        };
        let verify_after = match settings::parse_u64(&get, VERIFY_AFTER_SECONDS, 600)? {
            // Sooner than a minute, a rebooted instance is still booting: not a verdict.
            secs if secs < 60 => {
                return Err(ConfigError::Invalid {
                    name: VERIFY_AFTER_SECONDS,
                    value: secs.to_string(),
                    expected: "a whole number of seconds, at least 60",
                })
            }
            secs => Duration::from_secs(secs),
        };
        let max_follow_ups = match settings::parse_u64(&get, MAX_FOLLOW_UPS, 3)? {
            n @ 1..=100 => n as u32,
            n => {
                return Err(ConfigError::Invalid {
                    name: MAX_FOLLOW_UPS,
                    value: n.to_string(),
                    expected: "a whole number from 1 to 100",
                })
            }
        };
        Ok(Self {
            namespaces,
            gate,
            reboot_metrics,
            alarm_tag_cache,
            max_event_age,
            verify_after,
            ladder: parse_ladder(get(LADDER).as_deref())?,
            allow_stop_start: settings::parse_bool(&get, ALLOW_STOP_START, false)?,
            max_follow_ups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::anomaly::GateMode;

    #[test]
    fn settings_from_lookup_reads_the_gate() {
        let s = Settings::from_lookup(|k| match k {
            "SELFHEAL_ANOMALY_GATE" => Some("off".into()),
            "SELFHEAL_ANOMALY_SENSITIVITY" => Some("4".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((s.gate.mode, s.gate.z_threshold), (GateMode::Off, 4.0));
        assert_eq!(
            Settings::from_lookup(|_| None).unwrap(),
            Settings::default()
        );
        let err =
            Settings::from_lookup(|k| (k == "SELFHEAL_ANOMALY_GATE").then(|| "sometimes".into()));
        assert!(matches!(
            err,
            Err(ConfigError::Invalid {
                name: "SELFHEAL_ANOMALY_GATE",
                ..
            })
        ));
    }

    #[test]
    fn namespaces_are_a_trimmed_list_and_blank_means_the_default() {
        let namespaces = |v: &str| {
            let v = v.to_string();
            Settings::from_lookup(move |k| (k == NAMESPACES).then(|| v.clone()))
                .unwrap()
                .namespaces
        };
        assert_eq!(namespaces(" AWS/EC2 , Custom,"), ["AWS/EC2", "Custom"]);
        assert_eq!(namespaces("  "), Settings::default().namespaces);
        assert!(
            namespaces(",").is_empty(),
            "set but naming none handles none"
        );
    }

    #[test]
    fn follow_up_settings() {
        let d = Settings::default();
        assert_eq!(d.verify_after, Duration::from_secs(600));
        assert_eq!(d.ladder, [Rung::Reboot, Rung::Notify]);
        assert!(!d.allow_stop_start);
        let s = Settings::from_lookup(|k| match k {
            VERIFY_AFTER_SECONDS => Some("120".into()),
            LADDER => Some("reboot,stop-start".into()),
            ALLOW_STOP_START => Some("true".into()),
            MAX_FOLLOW_UPS => Some("5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.verify_after, Duration::from_secs(120));
        assert_eq!(s.ladder, [Rung::Reboot, Rung::StopStart, Rung::Notify]);
        assert!(s.allow_stop_start);
        assert_eq!(s.max_follow_ups, 5);
        for (name, bad) in [
            (VERIFY_AFTER_SECONDS, "10"),
            (LADDER, "stop-start"),
            (ALLOW_STOP_START, "maybe"),
            (MAX_FOLLOW_UPS, "0"),
        ] {
            let err = Settings::from_lookup(|k| (k == name).then(|| bad.to_string()));
            assert!(
                matches!(err, Err(ConfigError::Invalid { name: n, .. }) if n == name),
                "{name}={bad}: {err:?}"
            );
        }
    }

    #[test]
    fn reboot_metrics_tag_cache_and_event_age() {
        let d = Settings::default();
        assert_eq!(d.reboot_metrics, DEFAULT_REBOOT_METRICS);
        assert_eq!(d.alarm_tag_cache, Duration::from_secs(300));
        assert_eq!(d.max_event_age, Duration::from_secs(3600));
        let s = Settings::from_lookup(|k| match k {
            REBOOT_METRICS => Some("StatusCheckFailed, mem_used_percent".into()),
            ALARM_TAG_CACHE_SECONDS => Some("0".into()),
            MAX_EVENT_AGE_SECONDS => Some("600".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.reboot_metrics, ["StatusCheckFailed", "mem_used_percent"]);
        assert_eq!(s.alarm_tag_cache, Duration::ZERO);
        assert_eq!(s.max_event_age, Duration::from_secs(600));
        for (name, bad) in [
            (MAX_EVENT_AGE_SECONDS, "0"),
            (MAX_EVENT_AGE_SECONDS, "1h"),
            (ALARM_TAG_CACHE_SECONDS, "-1"),
        ] {
            let err = Settings::from_lookup(|k| (k == name).then(|| bad.to_string()));
            assert!(
                matches!(err, Err(ConfigError::Invalid { name: n, .. }) if n == name),
                "{name}={bad}: {err:?}"
            );
        }
    }
}
