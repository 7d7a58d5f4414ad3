//! This function's settings beyond the shared guardrails, read from the environment and
//! validated once per cold start.

use selfheal_core::anomaly::GateSettings;
use selfheal_core::settings::{self, ConfigError};

/// Alarm namespaces whose `InstanceId` dimension names an instance to reboot.
pub const NAMESPACES: &str = "SELFHEAL_REBOOT_NAMESPACES";

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `SELFHEAL_REBOOT_NAMESPACES`: alarm namespaces whose `InstanceId` dimension names an
    /// instance to reboot (default `AWS/EC2,CWAgent`).
    pub namespaces: Vec<String>,
    /// The anomaly gate: `SELFHEAL_ANOMALY_GATE` (`on` by default, `shadow`, `off`),
    /// `SELFHEAL_ANOMALY_SENSITIVITY` (robust z-score, default 3), `SELFHEAL_ANOMALY_DAYS`
    /// (7), `SELFHEAL_ANOMALY_WEEKS` (4). See docs/ai.md.
    pub gate: GateSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespaces: vec!["AWS/EC2".into(), "CWAgent".into()],
            gate: GateSettings::default(),
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
        Ok(Self { namespaces, gate })
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
}
