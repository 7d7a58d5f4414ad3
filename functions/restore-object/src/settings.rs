//! Settings of restore-object beyond the shared guardrails: `SELFHEAL_RESTORE_*`.

use std::collections::BTreeMap;
use std::time::Duration;

use selfheal_core::checksums::Algorithm;
use selfheal_core::ports::objects::{MAX_KEY_BYTES, MAX_SINGLE_COPY, MIN_PART};
use selfheal_core::settings::{env, lookup, parse_bool, parse_list, parse_u64, ConfigError};

/// A user-metadata key a producer records a digest under, and the digest's algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataKey {
    /// Lower-case, without `x-amz-meta-`.
    pub key: String,
    pub algorithm: Algorithm,
}

/// A bucket (and key prefix) in another place: a replica, a scrub target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    pub prefix: String,
}

impl Location {
    /// `bucket` or `bucket/prefix`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (bucket, prefix) = s.split_once('/').unwrap_or((s, ""));
        (!bucket.is_empty()).then(|| Self {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.bucket, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SELFHEAL_RESTORE_METADATA_KEYS`: `key[:algorithm]`, comma-separated, most trusted
    /// first. Without `:algorithm` the key names it (`sha256`, `md5`, `crc32c`, ...).
    pub metadata_keys: Vec<MetadataKey>,
    /// `SELFHEAL_RESTORE_REPLICA_BUCKETS`: `source=replica[/prefix]`, comma-separated. The
    /// replica of `s3://source/key` is `s3://replica/<prefix>key`.
    pub replicas: BTreeMap<String, Location>,
    /// `SELFHEAL_RESTORE_MAX_VERSIONS`: earlier versions examined as a source (default 10).
    pub max_versions: usize,
    /// `SELFHEAL_RESTORE_ALLOW_ROLLBACK` (default false): restoring from an earlier version
    /// puts older content back, a rollback; only an operator can allow it. Off, earlier
    /// versions are not searched and a corrupted object without a good replica is quarantined.
    pub allow_rollback: bool,
    /// `SELFHEAL_RESTORE_QUARANTINE_BUCKET`: where corrupted objects with no good copy are
    /// copied for forensics (default: the object's own bucket).
    pub quarantine_bucket: Option<String>,
    /// `SELFHEAL_RESTORE_QUARANTINE_PREFIX` (default `selfheal-quarantine/`).
    pub quarantine_prefix: String,
    /// `SELFHEAL_RESTORE_CONCURRENCY`: objects verified at once by a scrub (default 4).
    pub concurrency: usize,
    /// `SELFHEAL_RESTORE_SCRUB_MAX_OBJECTS`: objects one scrub invocation examines before it
    /// hands back its continuation (default 5000).
    pub scrub_max_objects: usize,
    /// `SELFHEAL_RESTORE_SCRUB_RESERVE_SECONDS`: a scrub starts no new object when less than
    /// this is left before the Lambda deadline (default 60).
    pub scrub_reserve: Duration,
    /// `SELFHEAL_RESTORE_SCRUB_TARGETS`: `bucket[/prefix]`, comma-separated: what a scheduled
    /// (EventBridge) scrub walks.
    pub scrub_targets: Vec<Location>,
    /// `SELFHEAL_RESTORE_MULTIPART_COPY_THRESHOLD_BYTES`: copies above this size use
    /// UploadPartCopy, parts in parallel (default 256 MiB; at most 5 GiB, CopyObject's limit).
    pub multipart_threshold: u64,
    /// `SELFHEAL_RESTORE_COPY_PART_BYTES`: part size of a multipart copy (default 128 MiB;
    /// raised where 10,000 parts would not cover the object).
    pub copy_part_size: u64,
    /// `SELFHEAL_RESTORE_COPY_CONCURRENCY`: parts of one multipart copy in flight at once
    /// (default 8, 1 to 32).
    pub copy_concurrency: usize,
    /// `SELFHEAL_RESTORE_MAX_COPY_BYTES`: a fix that would copy more than this is not started
    /// (it may not finish within the invocation); it is escalated instead (default 16 GiB).
    pub max_copy_bytes: u64,
    /// `SELFHEAL_RESTORE_OBJECT_BUDGET_SECONDS`: how long one object's verification and search
    /// for a good copy may take (default 300). An object over it is recorded as over budget,
    /// reported once, and skipped until it changes.
    pub object_budget: Duration,
    /// `SELFHEAL_RESTORE_REPORT_PREFIXES`: `bucket[/prefix]`, comma-separated: where S3 Batch
    /// Operations writes Compute checksum completion reports. A `manifest.json` landing there
    /// starts the two-pass verification ([`crate::two_pass`]); the report's CSV files there
    /// are read with it, never examined as data.
    pub report_prefixes: Vec<Location>,
    /// `SELFHEAL_RESTORE_REPORT_MAX_BYTES`: the largest report file (manifest or CSV) read
    /// into memory (default 256 MiB): a larger one is refused and a person told.
    pub report_max_bytes: u64,
    /// `SELFHEAL_RESTORE_VERIFY_AFTER_SECONDS`: when a restore's verification runs (default
    /// 300; closed loop, with `SELFHEAL_SCHEDULE_GROUP`).
    pub verify_after: Duration,
}

const MIB: u64 = 1024 * 1024;

pub const DEFAULT_METADATA_KEYS: &str =
    "sha256,checksum-sha256:sha256,md5,content-md5:md5,crc32c,crc64nvme,crc32,sha1";

impl Default for Settings {
    fn default() -> Self {
        Self::from_lookup(|_| None).unwrap_or_else(|_| unreachable_defaults())
    }
}

// Defaults always parse (a unit test proves it); this only satisfies the type checker.
fn unreachable_defaults() -> Settings {
    Settings {
        metadata_keys: Vec::new(),
        replicas: BTreeMap::new(),
        max_versions: 10,
        allow_rollback: false,
        quarantine_bucket: None,
        quarantine_prefix: "selfheal-quarantine/".into(),
        concurrency: 4,
        scrub_max_objects: 5000,
        scrub_reserve: Duration::from_secs(60),
        scrub_targets: Vec::new(),
        multipart_threshold: 256 * MIB,
        copy_part_size: 128 * MIB,
        copy_concurrency: 8,
        max_copy_bytes: 16 * 1024 * MIB,
        object_budget: Duration::from_secs(300),
        report_prefixes: Vec::new(),
        report_max_bytes: 256 * MIB,
        verify_after: Duration::from_secs(300),
    }
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        expected,
    }
}

/// `key[:algorithm]`, most trusted first; without `:algorithm` the key names it.
fn metadata_keys(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<MetadataKey>, ConfigError> {
    const NAME: &str = "SELFHEAL_RESTORE_METADATA_KEYS";
    let items = parse_list(get, NAME).unwrap_or_else(|| {
        DEFAULT_METADATA_KEYS
            .split(',')
            .map(str::to_string)
            .collect()
    });
    items
        .iter()
        .map(|item| {
            let (key, alg) = item.split_once(':').unwrap_or((item, item));
            let key = key.trim().to_ascii_lowercase();
            let key = key.strip_prefix("x-amz-meta-").unwrap_or(&key).to_string();
            let algorithm = Algorithm::parse(alg).ok_or_else(|| {
                invalid(
                    NAME,
                    item,
                    "key[:algorithm] with algorithm one of md5, sha1, sha256, crc32, crc32c, crc64nvme",
                )
            })?;
            Ok(MetadataKey { key, algorithm })
        })
        .collect()
}

/// `source=replica[/prefix]`, comma-separated.
fn replicas(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, Location>, ConfigError> {
    const NAME: &str = "SELFHEAL_RESTORE_REPLICA_BUCKETS";
    let mut replicas = BTreeMap::new();
    for item in parse_list(get, NAME).unwrap_or_default() {
        let parsed = item
            .split_once('=')
            .and_then(|(s, r)| Some((s.trim(), Location::parse(r)?)))
            .filter(|(s, _)| !s.is_empty());
        let (source, replica) = parsed
            .ok_or_else(|| invalid(NAME, &item, "source=replica[/prefix], comma-separated"))?;
        replicas.insert(source.to_string(), replica);
    }
    Ok(replicas)
}

/// `bucket[/prefix]`, comma-separated.
fn locations(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Vec<Location>, ConfigError> {
    parse_list(get, name)
        .unwrap_or_default()
        .iter()
        .map(|item| {
            Location::parse(item)
                .ok_or_else(|| invalid(name, item, "bucket[/prefix], comma-separated"))
        })
        .collect()
}

/// `<prefix><bucket>/<key>/<etag>`, kept within S3's 1,024-byte key limit: a key too long
/// for that is cut (on a character boundary) and a digest of the whole name is added, so two
/// long keys that differ only past the cut still get their own quarantine copies.
fn quarantine_key(prefix: &str, bucket: &str, key: &str, etag: &str) -> String {
    let full = format!("{prefix}{bucket}/{key}/{etag}");
    if full.len() <= MAX_KEY_BYTES {
        return full;
    }
    let hash = selfheal_core::checksums::to_hex(&selfheal_core::checksums::digest(
        Algorithm::Sha256,
        full.as_bytes(),
    ));
    // `…/<etag>~<sha256 of the full name>`: 64 hex characters, a separator, the ETag.
    let tail = format!("/{etag}~{hash}");
    let room = MAX_KEY_BYTES.saturating_sub(tail.len());
    let mut cut = room.min(full.len());
    while cut > 0 && !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tail}", &full[..cut])
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env)
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = lookup(get);
        // Read in a fixed order, so that of several bad values the same one is reported.
        let metadata_keys = metadata_keys(&get)?;
        let replicas = replicas(&get)?;
        let scrub_targets = locations(&get, "SELFHEAL_RESTORE_SCRUB_TARGETS")?;
        let report_prefixes = locations(&get, "SELFHEAL_RESTORE_REPORT_PREFIXES")?;
        let report_max = parse_u64(&get, "SELFHEAL_RESTORE_REPORT_MAX_BYTES", 256 * MIB)?;
        let verify_after = parse_u64(&get, "SELFHEAL_RESTORE_VERIFY_AFTER_SECONDS", 300)?;
        let threshold = parse_u64(
            &get,
            "SELFHEAL_RESTORE_MULTIPART_COPY_THRESHOLD_BYTES",
            256 * MIB,
        )?;
        let part = parse_u64(&get, "SELFHEAL_RESTORE_COPY_PART_BYTES", 128 * MIB)?;
        let copy_concurrency = parse_u64(&get, "SELFHEAL_RESTORE_COPY_CONCURRENCY", 8)?;
        let max_copy = parse_u64(&get, "SELFHEAL_RESTORE_MAX_COPY_BYTES", 16 * 1024 * MIB)?;
        let budget = parse_u64(&get, "SELFHEAL_RESTORE_OBJECT_BUDGET_SECONDS", 300)?;
        let max_versions = parse_u64(&get, "SELFHEAL_RESTORE_MAX_VERSIONS", 10)? as usize;
        let allow_rollback = parse_bool(&get, "SELFHEAL_RESTORE_ALLOW_ROLLBACK", false)?;
        let concurrency = parse_u64(&get, "SELFHEAL_RESTORE_CONCURRENCY", 4)? as usize;
        let scrub_max = parse_u64(&get, "SELFHEAL_RESTORE_SCRUB_MAX_OBJECTS", 5000)? as usize;
        let reserve = parse_u64(&get, "SELFHEAL_RESTORE_SCRUB_RESERVE_SECONDS", 60)?;
        Ok(Self {
            metadata_keys,
            replicas,
            max_versions,
            allow_rollback,
            quarantine_bucket: get("SELFHEAL_RESTORE_QUARANTINE_BUCKET"),
            quarantine_prefix: get("SELFHEAL_RESTORE_QUARANTINE_PREFIX")
                .unwrap_or_else(|| "selfheal-quarantine/".into()),
            concurrency: concurrency.clamp(1, 64),
            scrub_max_objects: scrub_max.max(1),
            scrub_reserve: Duration::from_secs(reserve),
            scrub_targets,
            // CopyObject cannot copy more than 5 GiB; parts below 5 MiB are refused by S3.
            multipart_threshold: threshold.clamp(MIN_PART, MAX_SINGLE_COPY),
            copy_part_size: part.clamp(MIN_PART, MAX_SINGLE_COPY),
            copy_concurrency: (copy_concurrency as usize).clamp(1, 32),
            max_copy_bytes: max_copy,
            object_budget: Duration::from_secs(budget.max(1)),
            report_prefixes,
            report_max_bytes: report_max.max(1),
            verify_after: Duration::from_secs(verify_after.max(60)),
        })
    }

    /// Where the replica of `bucket/key` is, if the bucket has one.
    pub fn replica_of(&self, bucket: &str, key: &str) -> Option<(String, String)> {
        self.replicas
            .get(bucket)
            .map(|r| (r.bucket.clone(), format!("{}{key}", r.prefix)))
    }

    /// Where a corrupted `bucket/key` with ETag `etag` is copied for forensics.
    pub fn quarantine_of(&self, bucket: &str, key: &str, etag: &str) -> (String, String) {
        let qb = self
            .quarantine_bucket
            .clone()
            .unwrap_or_else(|| bucket.to_string());
        (
            qb,
            quarantine_key(&self.quarantine_prefix, bucket, key, etag),
        )
    }

    /// True for keys under a completion-report prefix: report files, never data.
    pub fn is_report_key(&self, bucket: &str, key: &str) -> bool {
        self.report_prefixes
            .iter()
            .any(|l| l.bucket == bucket && key.starts_with(&l.prefix))
    }

    /// True for a completion report's top-level `manifest.json` under a report prefix.
    pub fn is_report_manifest(&self, bucket: &str, key: &str) -> bool {
        self.is_report_key(bucket, key)
            && (key == "manifest.json" || key.ends_with("/manifest.json"))
    }

    /// True for keys of quarantine copies in `bucket`: they are evidence, never restored.
    pub fn is_quarantine_key(&self, bucket: &str, key: &str) -> bool {
        let qb = self.quarantine_bucket.as_deref().unwrap_or(bucket);
        qb == bucket
            && !self.quarantine_prefix.is_empty()
            && key.starts_with(&self.quarantine_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.metadata_keys.len(), 8);
        assert_eq!(
            s.metadata_keys[1],
            MetadataKey {
                key: "checksum-sha256".into(),
                algorithm: Algorithm::Sha256
            }
        );
        assert!(s.replicas.is_empty());
        assert_eq!(s.multipart_threshold, 256 * MIB);
        assert_eq!(s.copy_concurrency, 8);
        assert_eq!(s.object_budget, Duration::from_secs(300));
        assert_eq!(
            s.quarantine_of("b", "k/x", "e").1,
            "selfheal-quarantine/b/k/x/e"
        );
        assert!(s.is_quarantine_key("b", "selfheal-quarantine/b/k"));
        assert!(!s.is_quarantine_key("b", "data/k"));
    }

    #[test]
    fn quarantine_keys_stay_within_s3s_key_limit() {
        let s = Settings::default();
        let etag = "0123456789abcdef0123456789abcdef-12";
        let long = "k".repeat(1000);
        let (_, q) = s.quarantine_of("bucket", &long, etag);
        assert!(q.len() <= MAX_KEY_BYTES, "{} bytes", q.len());
        assert!(q.starts_with("selfheal-quarantine/bucket/kkkk"), "{q}");
        assert!(s.is_quarantine_key("bucket", &q));
        // Two long keys that differ only past the cut keep apart.
        let other = format!("{}x", "k".repeat(999));
        assert_ne!(q, s.quarantine_of("bucket", &other, etag).1);
        // Multi-byte characters are not cut in half.
        let (_, u) = s.quarantine_of("b", &"é".repeat(600), etag);
        assert!(u.len() <= MAX_KEY_BYTES);
        // A short key is as it always was.
        assert_eq!(
            s.quarantine_of("b", "k", "e").1,
            "selfheal-quarantine/b/k/e"
        );
    }

    #[test]
    fn overrides_and_errors() {
        let s = settings(&[
            (
                "SELFHEAL_RESTORE_METADATA_KEYS",
                "X-Amz-Meta-Digest:SHA-256, md5",
            ),
            (
                "SELFHEAL_RESTORE_REPLICA_BUCKETS",
                "a=a-replica, b=dr/copies/",
            ),
            ("SELFHEAL_RESTORE_SCRUB_TARGETS", "a/data/,b"),
            (
                "SELFHEAL_RESTORE_MULTIPART_COPY_THRESHOLD_BYTES",
                "99999999999999",
            ),
            ("SELFHEAL_RESTORE_QUARANTINE_BUCKET", "forensics"),
        ])
        .unwrap();
        assert_eq!(s.metadata_keys[0].key, "digest");
        assert_eq!(s.metadata_keys[0].algorithm, Algorithm::Sha256);
        assert_eq!(
            s.replica_of("a", "k"),
            Some(("a-replica".into(), "k".into()))
        );
        assert_eq!(
            s.replica_of("b", "k"),
            Some(("dr".into(), "copies/k".into()))
        );
        assert_eq!(s.replica_of("c", "k"), None);
        assert_eq!(s.scrub_targets[0].prefix, "data/");
        assert_eq!(s.multipart_threshold, MAX_SINGLE_COPY);
        assert!(!s.is_quarantine_key("a", "selfheal-quarantine/x"));
        assert!(settings(&[("SELFHEAL_RESTORE_METADATA_KEYS", "digest")]).is_err());
        assert!(settings(&[("SELFHEAL_RESTORE_REPLICA_BUCKETS", "noequals")]).is_err());
        assert!(settings(&[("SELFHEAL_RESTORE_MAX_VERSIONS", "many")]).is_err());
        assert!(!Settings::default().allow_rollback, "a rollback is opt-in");
        let on = settings(&[("SELFHEAL_RESTORE_ALLOW_ROLLBACK", "true")]).unwrap();
        assert!(on.allow_rollback);
        assert!(settings(&[("SELFHEAL_RESTORE_ALLOW_ROLLBACK", "sometimes")]).is_err());
        let r = settings(&[("SELFHEAL_RESTORE_REPORT_PREFIXES", "reports/batch/")]).unwrap();
        assert!(r.is_report_manifest("reports", "batch/job-1/manifest.json"));
        assert!(r.is_report_key("reports", "batch/job-1/results/a.csv"));
        assert!(!r.is_report_manifest("reports", "batch/job-1/results/a.csv"));
        assert!(!r.is_report_manifest("data", "batch/job-1/manifest.json"));
        assert!(!r.is_report_manifest("reports", "other/manifest.json"));
        assert!(settings(&[("SELFHEAL_RESTORE_REPORT_PREFIXES", "/x")]).is_err());
    }
}
