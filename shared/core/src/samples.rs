//! The sample events in the repository's `events/` folder (`<function>-<shape>.json`), for
//! the tests that parse every one of them.

use std::path::PathBuf;

use serde_json::Value;

/// The repository's `events/` folder.
pub fn events_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events"))
}

/// Every sample event of `function`, as (file name, JSON), sorted by name. An unreadable
/// folder or file, or a file that is not JSON, is an error naming it.
pub fn for_function(function: &str) -> Result<Vec<(String, Value)>, String> {
    let dir = events_dir();
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !(name.starts_with(&format!("{function}-")) && name.ends_with(".json")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        let value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
        out.push((name, value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_only_the_functions_samples() {
        let samples = super::for_function("reboot-instance").unwrap();
        assert!(samples.len() >= 6);
        assert!(samples
            .iter()
            .all(|(n, _)| n.starts_with("reboot-instance-")));
        assert!(super::for_function("no-such-function").unwrap().is_empty());
    }
}
