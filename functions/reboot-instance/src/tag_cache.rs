//! Alarm tags once read, kept in memory for a while: an alarm's opt-in tag changes rarely,
//! and reading it for every event would cost a CloudWatch call per event.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub type Tags = BTreeMap<String, String>;

/// Tags per alarm ARN, each trusted for `ttl` after it was read.
pub struct TagCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Tags)>>,
}

impl TagCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The tags read for `arn` less than `ttl` ago.
    pub fn get(&self, arn: &str) -> Option<Tags> {
        let entries = self.entries.lock().ok()?;
        let (at, tags) = entries.get(arn)?;
        (at.elapsed() < self.ttl).then(|| tags.clone())
    }

    pub fn put(&self, arn: &str, tags: &Tags) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            // Expired entries go when a new one comes: the map holds at most the alarms seen
            // within one ttl.
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            entries.insert(arn.to_string(), (Instant::now(), tags.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_kept_for_the_ttl_only() {
        let tags = Tags::from([("selfheal:reboot".to_string(), "true".to_string())]);
        let cache = TagCache::new(Duration::from_secs(300));
        assert_eq!(cache.get("arn:a"), None);
        cache.put("arn:a", &tags);
        assert_eq!(cache.get("arn:a"), Some(tags.clone()));
        assert_eq!(cache.get("arn:b"), None);

        let off = TagCache::new(Duration::ZERO);
        off.put("arn:a", &tags);
        assert_eq!(off.get("arn:a"), None, "a ttl of 0 reads every time");

        let short = TagCache::new(Duration::from_millis(20));
        short.put("arn:a", &tags);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(short.get("arn:a"), None);
    }
}
