//! The flow over in-memory ports: what is restored, quarantined, refused or never read, and
//! that every refusal of a corrupted object is escalated.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use selfheal_core::checksums::{digest, to_hex, Algorithm};
use selfheal_core::ports::cursors::Cursors;
use selfheal_core::ports::objects::{
    Body, CopySpec, Grant, ListPage, ObjectFacts, ObjectLock, ObjectRef, Objects, VersionInfo,
};
use selfheal_core::{testing, AuditRecord, AwsError, Function, HandlerError, Invocation, Outcome};

use super::Deps;
use crate::repair::{QUARANTINED_FROM, RESTORED_FROM};
use crate::settings::Settings;
use crate::FUNCTION;

type Stored = (Vec<u8>, BTreeMap<String, String>);
/// A producer's write: key, bytes, metadata.
type Write = (String, Vec<u8>, Vec<(String, String)>);

/// An unversioned object store in memory; bucket `d` opts in unless told otherwise.
struct FakeS3 {
    objects: Mutex<BTreeMap<(String, String), Stored>>,
    opted_in: bool,
    reads: AtomicUsize,
    copies: AtomicUsize,
    /// How many of the next copies fail (throttled after the SDK's retries).
    copy_failures: AtomicUsize,
    /// Every copy asked for.
    specs: Mutex<Vec<CopySpec>>,
    /// A producer's write that lands as the next copy over `d` arrives (after every check
    /// the function can make itself): (key, bytes, metadata).
    write_at_copy: Mutex<Option<Write>>,
}

impl FakeS3 {
    fn new(opted_in: bool) -> Self {
        Self {
            objects: Mutex::new(BTreeMap::new()),
            opted_in,
            reads: AtomicUsize::new(0),
            copies: AtomicUsize::new(0),
            copy_failures: AtomicUsize::new(0),
            specs: Mutex::new(Vec::new()),
            write_at_copy: Mutex::new(None),
        }
    }

    fn put(&self, bucket: &str, key: &str, bytes: &[u8], meta: &[(&str, &str)]) {
        let meta = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.objects
            .lock()
            .unwrap()
            .insert((bucket.into(), key.into()), (bytes.to_vec(), meta));
    }

    fn get(&self, bucket: &str, key: &str) -> Option<Stored> {
        let m = self.objects.lock().unwrap();
        m.get(&(bucket.to_string(), key.to_string())).cloned()
    }

    fn keys(&self, bucket: &str) -> Vec<String> {
        let m = self.objects.lock().unwrap();
        m.keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

fn body(data: Vec<u8>) -> Body {
    Box::pin(futures::stream::iter([Ok(data.into())]))
}

#[async_trait]
impl Objects for FakeS3 {
    async fn head(&self, obj: &ObjectRef) -> Result<Option<ObjectFacts>, AwsError> {
        Ok(self.get(&obj.bucket, &obj.key).map(|(bytes, metadata)| {
            ObjectFacts {
                object: Some(ObjectRef::new(&obj.bucket, &obj.key)),
                size: bytes.len() as u64,
                // Not an MD5: the metadata digest is the only source.
                etag: Some(format!("etag-{}", bytes.len())),
                metadata,
                ..ObjectFacts::default()
            }
        }))
    }
    async fn part_sizes(&self, _: &ObjectRef, _: u32) -> Result<Vec<u64>, AwsError> {
        unreachable!("single-part objects only")
    }
    async fn read(&self, obj: &ObjectRef, _: Option<&str>) -> Result<Body, AwsError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let (bytes, _) = self
            .get(&obj.bucket, &obj.key)
            .expect("read of a missing object");
        Ok(body(bytes))
    }
    async fn bucket_tags(&self, bucket: &str) -> Result<Vec<(String, String)>, AwsError> {
        Ok(if self.opted_in && bucket == "d" {
            vec![("selfheal:managed".into(), "true".into())]
        } else {
            Vec::new()
        })
    }
    async fn object_tags(&self, _: &ObjectRef) -> Result<Vec<(String, String)>, AwsError> {
        Ok(Vec::new())
    }
    async fn versioning(&self, _: &str) -> Result<Option<String>, AwsError> {
        Ok(None)
    }
    async fn versions(&self, _: &str, _: &str, _: usize) -> Result<Vec<VersionInfo>, AwsError> {
        Ok(Vec::new())
    }
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        _: i32,
    ) -> Result<ListPage, AwsError> {
        let keys = self
            .keys(bucket)
            .into_iter()
            .filter(|k| k.starts_with(prefix) && start_after.is_none_or(|a| k.as_str() > a))
            .collect();
        Ok(ListPage {
            keys,
            truncated: false,
        })
    }
    async fn copy(&self, spec: &CopySpec) -> Result<Option<String>, AwsError> {
        self.copies.fetch_add(1, Ordering::SeqCst);
        if self
            .copy_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let mut e = AwsError::new("s3:CopyObject", &spec.dest_key, "slow down");
            e.retryable = true;
            return Err(e);
        }
        self.specs.lock().unwrap().push(spec.clone());
        let write = self.write_at_copy.lock().unwrap().take();
        if let Some((key, bytes, meta)) = write {
            let meta: Vec<(&str, &str)> =
                meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            self.put("d", &key, &bytes, &meta);
        }
        // The conditions, as S3 applies them: the ETag of what is there now.
        let etag_of = |b: &str, k: &str| {
            self.get(b, k)
                .map(|(bytes, _)| format!("etag-{}", bytes.len()))
        };
        let failed = |what: &str| {
            let mut e = AwsError::new("s3:CopyObject", &spec.dest_key, format!("{what} failed"));
            e.code = Some("PreconditionFailed".into());
            Err(e)
        };
        if spec.source_if_match.is_some()
            && spec.source_if_match != etag_of(&spec.source.bucket, &spec.source.key)
        {
            return failed("x-amz-copy-source-if-match");
        }
        if spec.dest_if_match.is_some()
            && spec.dest_if_match != etag_of(&spec.dest_bucket, &spec.dest_key)
        {
            return failed("If-Match");
        }
        let (bytes, _) = self
            .get(&spec.source.bucket, &spec.source.key)
            .expect("copy of a missing object");
        let meta: Vec<(&str, &str)> = spec
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.put(&spec.dest_bucket, &spec.dest_key, &bytes, &meta);
        Ok(None)
    }
    async fn acl(&self, _: &ObjectRef) -> Result<Option<Vec<Grant>>, AwsError> {
        Ok(None)
    }
    async fn object_lock_enabled(&self, _: &str) -> Result<bool, AwsError> {
        Ok(false)
    }
    async fn put_object_lock(&self, _: &ObjectRef, _: &ObjectLock) -> Result<(), AwsError> {
        unreachable!("no bucket here has Object Lock")
    }
}

struct NoCursors;

#[async_trait]
impl Cursors for NoCursors {
    async fn get(&self, _: &str) -> Result<Option<String>, AwsError> {
        Ok(None)
    }
    async fn put(&self, _: &str, _: Option<&str>, _: i64) -> Result<(), AwsError> {
        Ok(())
    }
}

const GOOD: &[u8] = b"the producer's bytes";
const BAD: &[u8] = b"the producer's bytez";

fn sha(b: &[u8]) -> String {
    to_hex(&digest(Algorithm::Sha256, b))
}

fn deps(s3: &Arc<FakeS3>, policy: &[(&str, &str)], settings: &[(&str, &str)]) -> Deps {
    let (common, _) = testing::common(FUNCTION, policy);
    let map: HashMap<&str, &str> = settings.iter().copied().collect();
    Deps {
        common,
        objects: s3.clone(),
        cursors: Arc::new(NoCursors),
        settings: Settings::from_lookup(|k| map.get(k).map(|v| v.to_string())).expect("settings"),
        follow_ups: None,
    }
}

fn notification(key: &str) -> Value {
    json!({"Records": [{
        "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "d"}, "object": {"key": key, "size": 1}}
    }]})
}

async fn one(deps: &Deps, key: &str) -> AuditRecord {
    let r = deps
        .handle(
            notification(key),
            Invocation::local(Duration::from_secs(60)),
        )
        .await
        .expect("handled");
    assert_eq!(r.audits.len(), 1, "{:#?}", r.audits);
    r.audits.into_iter().next().unwrap()
}

/// A corrupted `d/k` whose producer's digest is that of GOOD; with a good replica in `r`.
fn corrupted(with_replica: bool) -> Arc<FakeS3> {
    let s3 = Arc::new(FakeS3::new(true));
    let digest = sha(GOOD);
    s3.put("d", "k", BAD, &[("sha256", &digest)]);
    if with_replica {
        s3.put("r", "k", GOOD, &[("sha256", &digest)]);
    }
    s3
}

#[tokio::test]
async fn restored_once_from_the_replica_then_the_cooldown_refusal_is_escalated() {
    let s3 = corrupted(true);
    let deps = deps(&s3, &[], &[("SELFHEAL_RESTORE_REPLICA_BUCKETS", "d=r")]);
    let rec = one(&deps, "k").await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:#?}");
    assert_eq!(rec.details["restored_from"], "s3://r/k");
    assert_eq!(rec.details["computed_after"], sha(GOOD));
    let (bytes, meta) = s3.get("d", "k").unwrap();
    assert_eq!(bytes, GOOD);
    assert_eq!(
        meta.get(RESTORED_FROM).map(String::as_str),
        Some("s3://r/k")
    );

    // Corrupted again within the cooldown: refused, and a person hears of it.
    s3.put("d", "k", BAD, &[("sha256", &sha(GOOD))]);
    let again = one(&deps, "k").await;
    assert_eq!(
        (again.decision, again.code.as_str()),
        (Outcome::Skipped, "cooldown"),
        "{again:#?}"
    );
    assert_eq!(again.details["escalate"], true);
    assert!(again.notify_worthy());
    // The bucket is unversioned: the corrupted bytes were kept before the restore.
    assert_eq!(s3.copies.load(Ordering::SeqCst), 2);
}

/// Every copy is conditional: only from the bytes verified, and (over the object) only while
/// it is still the one examined.
#[tokio::test]
async fn copies_are_conditional_on_what_was_verified() {
    let s3 = corrupted(true);
    let deps = deps(&s3, &[], &[("SELFHEAL_RESTORE_REPLICA_BUCKETS", "d=r")]);
    let rec = one(&deps, "k").await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:#?}");
    let specs = s3.specs.lock().unwrap().clone();
    let examined = Some(format!("etag-{}", BAD.len()));
    let replica = Some(format!("etag-{}", GOOD.len()));
    let kept = specs
        .iter()
        .find(|c| c.dest_key.starts_with("selfheal-quarantine/"))
        .expect("the replaced bytes kept first");
    assert_eq!(kept.source_if_match, examined);
    let restore = specs
        .iter()
        .find(|c| c.dest_key == "k")
        .expect("the restore");
    assert_eq!(restore.source_if_match, replica);
    assert_eq!(restore.dest_if_match, examined);
}

/// Issue 12, item 1, through the fake port (the emulator ignores the copy conditions,
/// README): a producer's write that lands after every check the function can make itself, as
/// its copy arrives, is refused by the copy's condition; the new object is re-verified and
/// left alone, never overwritten.
#[tokio::test]
async fn a_write_landing_as_the_copy_arrives_is_not_overwritten() {
    let s3 = corrupted(true);
    let newer: &[u8] = b"a newer object, and a good one";
    *s3.write_at_copy.lock().unwrap() = Some((
        "k".into(),
        newer.to_vec(),
        vec![("sha256".into(), sha(newer))],
    ));
    let deps = deps(&s3, &[], &[("SELFHEAL_RESTORE_REPLICA_BUCKETS", "d=r")]);
    let rec = one(&deps, "k").await;
    assert_eq!(s3.get("d", "k").unwrap().0, newer, "{rec:#?}");
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "nothing-to-do"),
        "{rec:#?}"
    );
    assert!(
        rec.details["replaced_before_restore"].is_string(),
        "{rec:#?}"
    );
}

/// Issue 13, item 7: a copy that still failed after the SDK's retries kept its reservation:
/// recorded, not handed back to Lambda, and the retry (or the next event) refused by the
/// cooldown, leaving the corrupted bytes in place. Now the failure releases the reservation
/// and goes back to Lambda as retryable, and the retry restores.
#[tokio::test]
async fn a_failed_copy_is_handed_back_and_the_retry_restores() {
    let s3 = corrupted(true);
    s3.copy_failures.store(1, Ordering::SeqCst);
    let deps = deps(&s3, &[], &[("SELFHEAL_RESTORE_REPLICA_BUCKETS", "d=r")]);
    let first = deps
        .handle(
            notification("k"),
            Invocation::local(Duration::from_secs(60)),
        )
        .await;
    assert!(
        matches!(first, Err(HandlerError::Retryable(_))),
        "handed back for a retry: {first:?}"
    );
    let retry = one(&deps, "k").await;
    assert_eq!(retry.decision, Outcome::Acted, "{retry:#?}");
    assert_eq!(s3.get("d", "k").unwrap().0, GOOD);
}

#[tokio::test]
async fn dry_run_records_what_would_be_restored_and_changes_nothing() {
    let s3 = corrupted(true);
    let deps = deps(
        &s3,
        &[("SELFHEAL_DRY_RUN", "true")],
        &[("SELFHEAL_RESTORE_REPLICA_BUCKETS", "d=r")],
    );
    let rec = one(&deps, "k").await;
    assert_eq!(rec.decision, Outcome::DryRun, "{rec:#?}");
    assert!(
        rec.reason.contains("restore s3://d/k from s3://r/k"),
        "{}",
        rec.reason
    );
    assert_eq!(rec.details["escalate"], true);
    assert_eq!(rec.details["corrupt"], true);
    assert_eq!(s3.copies.load(Ordering::SeqCst), 0);
    assert_eq!(s3.get("d", "k").unwrap().0, BAD);
}

#[tokio::test]
async fn no_good_copy_quarantines_the_evidence_and_leaves_the_original() {
    let s3 = corrupted(false);
    let deps = deps(&s3, &[], &[]);
    let rec = one(&deps, "k").await;
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Failed, "unrecoverable"),
        "{rec:#?}"
    );
    assert_eq!(s3.get("d", "k").unwrap().0, BAD);
    let q = format!("selfheal-quarantine/d/k/etag-{}", BAD.len());
    assert_eq!(rec.details["quarantined_to"], format!("s3://d/{q}"));
    let (bytes, meta) = s3.get("d", &q).expect("quarantine copy");
    assert_eq!(bytes, BAD);
    assert_eq!(
        meta.get(QUARANTINED_FROM).map(String::as_str),
        Some("s3://d/k")
    );

    // The quarantine copy's own event: evidence, never examined.
    let q_rec = one(&deps, &q).await;
    assert_eq!(q_rec.code, "target-not-eligible", "{q_rec:#?}");
}

#[tokio::test]
async fn a_bucket_that_did_not_opt_in_is_never_read() {
    let s3 = Arc::new(FakeS3::new(false));
    s3.put("d", "k", BAD, &[("sha256", &sha(GOOD))]);
    let deps = deps(&s3, &[], &[]);
    let rec = one(&deps, "k").await;
    assert_eq!(rec.code, "not-opted-in", "{rec:#?}");
    assert_eq!(s3.reads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_intact_object_is_nothing_to_do() {
    let s3 = Arc::new(FakeS3::new(true));
    s3.put("d", "k", GOOD, &[("sha256", &sha(GOOD))]);
    let deps = deps(&s3, &[], &[]);
    let rec = one(&deps, "k").await;
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "nothing-to-do"),
        "{rec:#?}"
    );
    assert_eq!(rec.details["expected_source"], "metadata");
    assert_eq!(s3.copies.load(Ordering::SeqCst), 0);
}
