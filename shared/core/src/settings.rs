//! Settings from the environment, read and validated once per cold start: the helpers every
//! function's `settings.rs` uses, so that a bad value always fails the same way (naming the
//! variable and what was expected).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}={value:?} is not valid: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{name} must be set: {why}")]
    Missing {
        name: &'static str,
        why: &'static str,
    },
}

/// Reads settings through `get`: the process environment in production, a map in tests.
/// Values are trimmed; an empty value counts as unset.
pub fn lookup(get: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    move |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

/// The process environment, as a lookup.
pub fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Parses a boolean setting (`true/false`, `1/0`, `yes/no`, `on/off`).
pub fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => bool_word(&v).ok_or(ConfigError::Invalid {
            name,
            value: v,
            expected: "true or false",
        }),
    }
}

pub fn bool_word(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "enabled" => Some(true),
        "0" | "false" | "no" | "off" | "disabled" => Some(false),
        _ => None,
    }
}

/// Parses a non-negative whole-number setting.
pub fn parse_u64(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v.parse::<u64>().map_err(|_| ConfigError::Invalid {
            name,
            value: v,
            expected: "a whole number",
        }),
    }
}

/// Parses a number setting (`f64`), which must be finite and within `range`.
pub fn parse_f64(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: f64,
    range: std::ops::RangeInclusive<f64>,
    expected: &'static str,
) -> Result<f64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<f64>() {
            Ok(x) if x.is_finite() && range.contains(&x) => Ok(x),
            _ => Err(ConfigError::Invalid {
                name,
                value: v,
                expected,
            }),
        },
    }
}

/// Parses a comma-separated list; `None` when unset.
pub fn parse_list(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<Vec<String>> {
    get(name).map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_trimmed_and_checked() {
        let get = lookup(|k| match k {
            "B" => Some(" yes ".into()),
            "N" => Some("12".into()),
            "E" => Some("  ".into()),
            "X" => Some("soon".into()),
            "F" => Some("2.5".into()),
            "L" => Some("a, b,,c".into()),
            _ => None,
        });
        assert_eq!(parse_bool(&get, "B", false), Ok(true));
        assert_eq!(parse_bool(&get, "E", false), Ok(false), "empty is unset");
        assert!(parse_bool(&get, "X", false).is_err());
        assert_eq!(parse_u64(&get, "N", 1), Ok(12));
        assert!(parse_u64(&get, "X", 1).is_err());
        assert_eq!(parse_f64(&get, "F", 1.0, 0.0..=10.0, "0 to 10"), Ok(2.5));
        assert!(parse_f64(&get, "F", 1.0, 0.0..=1.0, "0 to 1").is_err());
        assert_eq!(
            parse_list(&get, "L"),
            Some(vec!["a".to_string(), "b".into(), "c".into()])
        );
        assert_eq!(parse_list(&get, "missing"), None);
    }
}
