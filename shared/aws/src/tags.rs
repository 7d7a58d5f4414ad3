//! Tags as the core sees them: plain key/value maps.

use std::collections::BTreeMap;

/// Key/value pairs from an SDK tag list; tags without a key are dropped, a missing value is
/// empty.
pub fn tag_map<'a, T: 'a>(
    tags: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&T) -> Option<&str>,
    value: impl Fn(&T) -> Option<&str>,
) -> BTreeMap<String, String> {
    tags.into_iter()
        .filter_map(|t| {
            Some((
                key(t)?.to_string(),
                value(t).unwrap_or_default().to_string(),
            ))
        })
        .collect()
}
