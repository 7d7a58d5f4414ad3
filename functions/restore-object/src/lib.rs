//! restore-object: verify S3 objects end to end against the most trustworthy expected digest
//! there is, and restore a corrupted one server-side from a copy verified to be good (the
//! replica, then earlier versions). With no good copy, the corrupted object is copied to a
//! quarantine location for forensics, left in place, and people are told. Nothing is ever
//! deleted.

pub mod event;
pub mod expect;
pub mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use selfheal_aws::aws_config::SdkConfig;
use selfheal_aws::dynamodb::DynamoCursors;
use selfheal_aws::s3::S3Objects;
use selfheal_core::audit::AuditBuilder;
use selfheal_core::checksums::{self, Hasher};
use selfheal_core::guard::ConfigError;
use selfheal_core::ports::cursors::Cursors;
use selfheal_core::ports::objects::{CopySpec, Encryption, ObjectFacts, ObjectRef, Objects};
use selfheal_core::{
    AuditRecord, AwsError, Common, Decision, Function, HandlerError, Invocation, Outcome, Response,
    SkipCode, SkipReason, Target,
};
use selfheal_lambda::Options;

use crate::event::{Request, ScrubRequest};
use crate::expect::Expected;
pub use crate::settings::Settings;

pub const FUNCTION: &str = "restore-object";
/// Metadata written on a restored object: where the good bytes came from, and when.
pub const RESTORED_FROM: &str = "selfheal-restored-from";
pub const RESTORED_AT: &str = "selfheal-restored-at";
/// Metadata written on a quarantine copy: the object it is evidence of.
pub const QUARANTINED_FROM: &str = "selfheal-quarantined-from";

/// Where a verified good copy was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyKind {
    Replica,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoodCopy {
    pub kind: CopyKind,
    pub object: ObjectRef,
    pub size: u64,
}

/// The result of hashing one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub matched: bool,
    /// The computed digest (hex).
    pub computed: String,
    pub bytes: u64,
}

/// What to do about a corrupted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Copy the good bytes over the object (server-side), then verify again.
    Restore { from: GoodCopy },
    /// No good copy: keep the evidence; the original stays where it is.
    Quarantine { to: ObjectRef },
}

/// Verified → nothing to do; corrupted → restore from the good copy, or quarantine.
pub fn decide(
    expected: &Expected,
    current: &Verified,
    restored_from: Option<&str>,
    good: Option<GoodCopy>,
    quarantine: ObjectRef,
) -> Decision<Fix> {
    if current.matched {
        let earlier = restored_from
            .map(|f| format!(" (restored earlier from {f})"))
            .unwrap_or_default();
        return Decision::skip(
            SkipCode::NothingToDo,
            format!(
                "verified: {} bytes match the {}{earlier}",
                current.bytes, expected.label
            ),
        );
    }
    let mismatch = format!(
        "bytes do not match the {}: expected {}, computed {}",
        expected.label,
        checksums::to_hex(&expected.value),
        current.computed
    );
    match good {
        Some(from) => {
            let reason = format!(
                "{mismatch}; {} {} verified good",
                match from.kind {
                    CopyKind::Replica => "replica",
                    CopyKind::Version => "earlier version",
                },
                from.object
            );
            Decision::act(Fix::Restore { from }, reason)
        }
        None => Decision::act(
            Fix::Quarantine { to: quarantine },
            format!("{mismatch}; no verified good copy in the replica or earlier versions"),
        ),
    }
}

/// Counts of a scrub (or of any batch of decisions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub examined: usize,
    pub verified_ok: usize,
    pub restored: usize,
    pub unverifiable: usize,
    pub unrecoverable: usize,
    pub dry_run: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl Summary {
    pub fn tally(records: &[AuditRecord]) -> Self {
        let mut s = Self::default();
        for r in records {
            s.examined += 1;
            match (r.decision, r.code.as_str()) {
                (Outcome::Acted, _) => s.restored += 1,
                (Outcome::Failed, "unrecoverable") => s.unrecoverable += 1,
                (Outcome::Failed, _) => s.failed += 1,
                (Outcome::DryRun, _) => s.dry_run += 1,
                (Outcome::Skipped, "unverifiable") => s.unverifiable += 1,
                (Outcome::Skipped, "nothing-to-do") => s.verified_ok += 1,
                (Outcome::Skipped, _) => s.skipped += 1,
            }
        }
        s
    }
}

/// Bucket tags, read once per bucket per invocation.
#[derive(Default)]
struct BucketTags(Mutex<HashMap<String, Vec<(String, String)>>>);

impl BucketTags {
    async fn get(
        &self,
        objects: &dyn Objects,
        bucket: &str,
    ) -> Result<Vec<(String, String)>, AwsError> {
        if let Some(t) = self.0.lock().ok().and_then(|m| m.get(bucket).cloned()) {
            return Ok(t);
        }
        let tags = objects.bucket_tags(bucket).await?;
        if let Ok(mut m) = self.0.lock() {
            m.insert(bucket.to_string(), tags.clone());
        }
        Ok(tags)
    }
}

/// One decision's record, and whether a Lambda retry could change it.
struct Examined {
    record: AuditRecord,
    retryable: bool,
}

pub struct Deps {
    pub common: Common,
    pub objects: Arc<dyn Objects>,
    pub cursors: Arc<dyn Cursors>,
    pub settings: Settings,
}

impl Deps {
    pub async fn from_env(opts: Options) -> Result<Self, ConfigError> {
        let settings = Settings::from_env()?;
        let selfheal_lambda::Boot { common, sdk } =
            selfheal_lambda::from_env(FUNCTION, opts).await?;
        Ok(Self::new(common, &sdk, settings))
    }

    /// Builds the AWS ports from the common SDK configuration.
    pub fn new(common: Common, sdk: &SdkConfig, settings: Settings) -> Self {
        let objects = Arc::new(S3Objects::from_conf(sdk));
        // Common::new refuses to start without a ledger table, so this is always set.
        let table = common
            .guard
            .policy()
            .ledger_table
            .clone()
            .unwrap_or_default();
        let cursors = Arc::new(DynamoCursors::new(
            selfheal_aws::aws_sdk_dynamodb::Client::new(sdk),
            table,
        ));
        Self {
            common,
            objects,
            cursors,
            settings,
        }
    }

    async fn record(&self, rec: AuditRecord) -> Examined {
        self.common.audit.record(&rec).await;
        Examined {
            record: rec,
            retryable: false,
        }
    }

    async fn skip(
        &self,
        audit: AuditBuilder,
        code: SkipCode,
        detail: impl Into<String>,
    ) -> Examined {
        self.record(audit.skipped(&SkipReason::new(code, detail)))
            .await
    }

    async fn fail(&self, audit: AuditBuilder, code: &str, e: &AwsError) -> Examined {
        let rec = audit
            .detail("retryable", e.retryable)
            .failed(code, e.to_string());
        let mut ex = self.record(rec).await;
        ex.retryable = e.retryable;
        ex
    }

    /// Streams the object through the hashers of `expected`, in one pass, in bounded memory.
    pub async fn verify(
        &self,
        obj: &ObjectRef,
        if_match: Option<&str>,
        expected: &Expected,
    ) -> Result<Verified, AwsError> {
        let mut body = self.objects.read(obj, if_match).await?;
        let mut h = Hasher::new(&expected.specs);
        while let Some(chunk) = body.next().await {
            h.update(&chunk?);
        }
        let bytes = h.bytes();
        let (matched, computed) = expect::matches(expected, &h.finish());
        Ok(Verified {
            matched,
            computed,
            bytes,
        })
    }

    /// Looks for a copy whose bytes match `expected`: the replica first, then earlier versions.
    /// Read-only. Returns what was tried, and a retryable error met on the way (if nothing was
    /// found, a retry may find the copy the error hid).
    async fn find_good_copy(
        &self,
        current: &ObjectRef,
        expected: &Expected,
    ) -> (Option<GoodCopy>, Vec<Value>, Option<AwsError>) {
        let mut tried = Vec::new();
        let mut transient = None;
        let note = |tried: &mut Vec<Value>, what: String, result: String| {
            tried.push(json!({"source": what, "result": result}));
        };
        if let Some((rb, rk)) = self.settings.replica_of(&current.bucket, &current.key) {
            let replica = ObjectRef::new(rb, rk);
            match self.objects.head(&replica).await {
                Ok(None) => note(&mut tried, replica.to_string(), "missing".into()),
                Ok(Some(f)) if expected.size.is_some_and(|s| s != f.size) => note(
                    &mut tried,
                    replica.to_string(),
                    format!("size {} differs", f.size),
                ),
                Ok(Some(f)) => {
                    let pinned = f.object.clone().unwrap_or(replica.clone());
                    match self.verify(&pinned, f.etag.as_deref(), expected).await {
                        Ok(v) if v.matched => {
                            note(&mut tried, pinned.to_string(), "verified good".into());
                            return (
                                Some(GoodCopy {
                                    kind: CopyKind::Replica,
                                    object: pinned,
                                    size: f.size,
                                }),
                                tried,
                                None,
                            );
                        }
                        Ok(v) => note(
                            &mut tried,
                            pinned.to_string(),
                            format!("corrupt too (computed {})", v.computed),
                        ),
                        Err(e) => {
                            note(&mut tried, pinned.to_string(), e.to_string());
                            if e.retryable {
                                transient = Some(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    note(&mut tried, replica.to_string(), e.to_string());
                    if e.retryable {
                        transient = Some(e);
                    }
                }
            }
        } else {
            note(
                &mut tried,
                "replica".into(),
                "none configured for this bucket".into(),
            );
        }
        match self.objects.versioning(&current.bucket).await {
            Ok(None) => note(&mut tried, "versions".into(), "versioning is off".into()),
            Ok(Some(_)) => {
                let limit = self.settings.max_versions;
                match self
                    .objects
                    .versions(&current.bucket, &current.key, limit.saturating_add(1))
                    .await
                {
                    Ok(versions) => {
                        let earlier = versions
                            .into_iter()
                            .filter(|v| {
                                !v.is_latest && Some(&v.version_id) != current.version_id.as_ref()
                            })
                            .take(limit);
                        for v in earlier {
                            let obj = current.clone().version(Some(v.version_id.clone()));
                            if expected.size.is_some_and(|s| s != v.size) {
                                note(
                                    &mut tried,
                                    obj.to_string(),
                                    format!("size {} differs", v.size),
                                );
                                continue;
                            }
                            match self.verify(&obj, None, expected).await {
                                Ok(r) if r.matched => {
                                    note(&mut tried, obj.to_string(), "verified good".into());
                                    return (
                                        Some(GoodCopy {
                                            kind: CopyKind::Version,
                                            object: obj,
                                            size: v.size,
                                        }),
                                        tried,
                                        None,
                                    );
                                }
                                Ok(r) => note(
                                    &mut tried,
                                    obj.to_string(),
                                    format!("does not match (computed {})", r.computed),
                                ),
                                Err(e) => {
                                    note(&mut tried, obj.to_string(), e.to_string());
                                    if e.retryable {
                                        transient = Some(e);
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        note(&mut tried, "versions".into(), e.to_string());
                        if e.retryable {
                            transient = Some(e);
                        }
                    }
                }
            }
            Err(e) => {
                note(&mut tried, "versions".into(), e.to_string());
                if e.retryable {
                    transient = Some(e);
                }
            }
        }
        (None, tried, transient)
    }

    /// A copy of `source` onto `dest` that keeps `facts`' metadata, headers, encryption and
    /// storage class; callers add tags, markers and the checksum.
    fn copy_spec(
        &self,
        source: ObjectRef,
        size: u64,
        dest: &ObjectRef,
        facts: &ObjectFacts,
    ) -> CopySpec {
        CopySpec {
            source,
            size,
            dest_bucket: dest.bucket.clone(),
            dest_key: dest.key.clone(),
            metadata: facts.metadata.clone(),
            headers: facts.headers.clone(),
            tags: Vec::new(),
            encryption: Encryption {
                customer_key: false,
                ..facts.encryption.clone()
            },
            storage_class: facts.storage_class.clone(),
            checksum: facts.checksums.keys().next().copied(),
            multipart_threshold: self.settings.multipart_threshold,
            part_size: self.settings.copy_part_size,
        }
    }

    /// Copies the good bytes over the object, keeping its metadata, headers, tags and
    /// encryption, marks it restored, and verifies the result. Returns the restored object.
    async fn restore(
        &self,
        current: &ObjectRef,
        facts: &ObjectFacts,
        expected: &Expected,
        from: &GoodCopy,
    ) -> Result<(ObjectRef, Verified), AwsError> {
        let mut spec = self.copy_spec(from.object.clone(), from.size, current, facts);
        spec.tags = self.objects.object_tags(current).await?;
        spec.metadata
            .insert(RESTORED_FROM.into(), from.object.to_string());
        spec.metadata.insert(
            RESTORED_AT.into(),
            Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        if expected.source == expect::SourceKind::S3Checksum {
            spec.checksum = Some(expected.algorithm);
        }
        // Pinned to the new version where there is one; "null" (unversioned) is not pinned:
        // the ETag read next pins the read instead.
        let version = self.objects.copy(&spec).await?.filter(|v| v != "null");
        let restored = ObjectRef::new(&current.bucket, &current.key).version(version);
        let after = self.objects.head(&restored).await?;
        let etag = after.as_ref().and_then(|f| f.etag.clone());
        let verified = self.verify(&restored, etag.as_deref(), expected).await?;
        Ok((restored, verified))
    }

    /// Copies the corrupted object to the quarantine location, as it is, for forensics.
    async fn quarantine(
        &self,
        current: &ObjectRef,
        facts: &ObjectFacts,
        to: &ObjectRef,
    ) -> Result<(), AwsError> {
        let mut spec = self.copy_spec(current.clone(), facts.size, to, facts);
        spec.tags = self.objects.object_tags(current).await?;
        spec.metadata
            .insert(QUARANTINED_FROM.into(), current.to_string());
        self.objects.copy(&spec).await.map(|_| ())
    }

    /// Verifies one object and acts on what it finds. Always produces exactly one record.
    async fn examine(
        &self,
        trigger: &str,
        bucket: &str,
        key: &str,
        inv: &Invocation,
        tag_cache: &BucketTags,
    ) -> Examined {
        let c = &self.common;
        let target = format!("{bucket}/{key}");
        let audit = c.audit_for(inv, trigger, &target);
        if self.settings.is_quarantine_key(bucket, key) {
            return self
                .skip(
                    audit,
                    SkipCode::TargetNotEligible,
                    "a quarantine copy: evidence, never restored",
                )
                .await;
        }
        let tags = match tag_cache.get(self.objects.as_ref(), bucket).await {
            Ok(t) => t,
            Err(e) => return self.fail(audit, "bucket-tags-failed", &e).await,
        };
        let opt_in = &c.guard.policy().opt_in;
        // Checked before reading anything: a bucket that did not opt in is not even read.
        if !opt_in.matches(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            return self
                .skip(
                    audit,
                    SkipCode::NotOptedIn,
                    format!("bucket {bucket} does not carry the opt-in tag {opt_in}"),
                )
                .await;
        }
        let obj = ObjectRef::new(bucket, key);
        let facts = match self.objects.head(&obj).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                return self
                    .skip(
                        audit,
                        SkipCode::TargetNotFound,
                        format!("{obj} does not exist"),
                    )
                    .await
            }
            Err(e) => return self.fail(audit, "head-failed", &e).await,
        };
        if let Some(of) = facts.metadata.get(QUARANTINED_FROM) {
            return self
                .skip(
                    audit,
                    SkipCode::TargetNotEligible,
                    format!("a quarantine copy of {of}: evidence, never restored"),
                )
                .await;
        }
        let current = facts.object.clone().unwrap_or(obj);
        let restored_from = facts.metadata.get(RESTORED_FROM).cloned();
        let audit = audit
            .detail("size", facts.size)
            .detail("etag", &facts.etag)
            .detail("version_id", &current.version_id)
            .detail("restored_from", &restored_from);
        let (cand, notes) = match expect::candidate(&facts, &self.settings.metadata_keys) {
            Ok(x) => x,
            Err(u) => {
                return self
                    .skip(
                        audit.detail("notes", &u.notes),
                        SkipCode::Unverifiable,
                        u.reason,
                    )
                    .await
            }
        };
        let audit = audit
            .detail("expected_source", cand.source)
            .detail("expected_from", &cand.label)
            .detail("expected", checksums::to_hex(&cand.value))
            .detail("layout", &cand.layout)
            .detail("notes", &notes);
        let parts = match cand.layout.parts() {
            None => None,
            Some(n) => match self.objects.part_sizes(&current, n).await {
                Ok(sizes) => Some(sizes),
                Err(e) if e.retryable => return self.fail(audit, "parts-failed", &e).await,
                Err(e) => {
                    return self
                        .skip(
                            audit,
                            SkipCode::Unverifiable,
                            format!(
                                "the {} needs the part boundaries, and S3 did not give them: {e}",
                                cand.label
                            ),
                        )
                        .await
                }
            },
        };
        let audit = audit.detail("part_sizes", &parts);
        let expected = match expect::expected(cand, parts.as_deref(), facts.size) {
            Ok(e) => e,
            Err(why) => return self.skip(audit, SkipCode::Unverifiable, why).await,
        };
        let started = Instant::now();
        let verified = match self.verify(&current, facts.etag.as_deref(), &expected).await {
            Ok(v) => v,
            Err(e) if e.is_code("PreconditionFailed") => {
                return self
                    .skip(
                        audit,
                        SkipCode::ChangeInProgress,
                        format!("{current} was replaced while it was read; its own event verifies the new object"),
                    )
                    .await
            }
            Err(e) => return self.fail(audit, "read-failed", &e).await,
        };
        let audit = audit
            .detail("computed", &verified.computed)
            .detail("bytes_read", verified.bytes)
            .detail("verify_ms", started.elapsed().as_millis() as u64);
        if verified.matched {
            if let Decision::Skip { reason } = decide(
                &expected,
                &verified,
                restored_from.as_deref(),
                None,
                current.clone(),
            ) {
                return self.record(audit.skipped(&reason)).await;
            }
        }
        // Corrupted. Look for good bytes (read-only), then decide and ask the guardrails.
        let (good, tried, transient) = self.find_good_copy(&current, &expected).await;
        let audit = audit
            .detail("corrupt", true)
            .detail("sources_tried", &tried);
        if let (None, Some(e)) = (&good, &transient) {
            // A source could not be read for a passing reason: quarantining now would give
            // up on a copy that may well be good. Lambda retries.
            return self.fail(audit, "source-search-failed", e).await;
        }
        let etag = facts.etag.clone().unwrap_or_else(|| "no-etag".into());
        let (qb, qk) = self.settings.quarantine_of(bucket, key, &etag);
        let (fix, reason) = match decide(
            &expected,
            &verified,
            restored_from.as_deref(),
            good,
            ObjectRef::new(qb, qk),
        ) {
            Decision::Act { action, reason } => (action, reason),
            Decision::Skip { reason } => return self.record(audit.skipped(&reason)).await,
        };
        let would = match &fix {
            Fix::Restore { from } => format!("restore {current} from {}: {reason}", from.object),
            Fix::Quarantine { to } => format!("quarantine {current} to {to}: {reason}"),
        };
        let verdict = c
            .guard
            .check(
                Target {
                    id: &target,
                    tags: tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                },
                Utc::now(),
            )
            .await;
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) => {
                let rec = audit
                    .detail("retryable", e.retryable())
                    .failed("ledger-failed", e.to_string());
                let mut ex = self.record(rec).await;
                ex.retryable = e.retryable();
                return ex;
            }
        };
        // A corrupted object the guardrails keep us from fixing is still news for a person.
        if let Some(rec) = audit
            .clone()
            .detail("escalate", true)
            .from_verdict(&verdict, would)
        {
            return self.record(rec).await;
        }
        match fix {
            Fix::Restore { from } => {
                let audit = audit.detail("restored_from", from.object.to_string());
                match self.restore(&current, &facts, &expected, &from).await {
                    Ok((restored, v)) if v.matched => {
                        self.record(
                            audit
                                .detail("restored_version", &restored.version_id)
                                .detail("computed_after", &v.computed)
                                .acted(format!("restored {current} from {}, verified after copy: {reason}", from.object)),
                        )
                        .await
                    }
                    Ok((restored, v)) => {
                        self.record(audit.detail("computed_after", &v.computed).failed(
                            "restore-verify-failed",
                            format!("copied {} over {restored}, but the result does not match the {}", from.object, expected.label),
                        ))
                        .await
                    }
                    // Not handed back for a Lambda retry: the ledger holds the reservation, so
                    // a retry would be refused by the cooldown. Audited and notified instead.
                    Err(e) => self.record(audit.failed("restore-failed", e.to_string())).await,
                }
            }
            Fix::Quarantine { to } => match self.quarantine(&current, &facts, &to).await {
                Ok(()) => {
                    self.record(audit.detail("quarantined_to", to.to_string()).failed(
                        "unrecoverable",
                        format!("{reason}; corrupted bytes copied to {to} for forensics; the original is left in place"),
                    ))
                    .await
                }
                Err(e) => {
                    self.record(audit.failed(
                        "quarantine-failed",
                        format!("{reason}; quarantine copy to {to} failed: {e}"),
                    ))
                    .await
                }
            },
        }
    }

    fn out_of_time(&self, inv: &Invocation) -> bool {
        inv.remaining()
            .is_some_and(|r| r <= self.settings.scrub_reserve)
    }

    /// Walks the targets in key order, `concurrency` objects at a time, until done, out of
    /// budget, or near the deadline; returns where to resume.
    async fn scrub(&self, req: ScrubRequest, inv: &Invocation) -> Result<Response, HandlerError> {
        let started = Instant::now();
        let cache = BucketTags::default();
        let cursor_name = format!(
            "{FUNCTION}#scrub#{}",
            req.targets
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        // Position: (index of the target, resume after this key).
        let (mut index, mut after) = if req.scheduled {
            match self.cursors.get(&cursor_name).await {
                Ok(Some(saved)) => parse_position(&saved),
                Ok(None) => (0, None),
                Err(e) => {
                    let rec = self
                        .common
                        .audit_for(inv, "scrub", &cursor_name)
                        .failed("cursor-failed", e.to_string());
                    self.common.audit.record(&rec).await;
                    return Err(HandlerError::Retryable(e.to_string()));
                }
            }
        } else {
            (0, req.continuation.clone())
        };
        let mut budget = self.settings.scrub_max_objects;
        let mut records = Vec::new();
        let mut complete = false;
        while let Some(target) = req.targets.get(index) {
            if budget == 0 || self.out_of_time(inv) {
                break;
            }
            let page = match self
                .objects
                .list(
                    &target.bucket,
                    &target.prefix,
                    after.as_deref(),
                    budget.min(1000) as i32,
                )
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    let rec = self
                        .common
                        .audit_for(inv, "scrub", &target.to_string())
                        .failed("list-failed", e.to_string());
                    self.common.audit.record(&rec).await;
                    records.push(rec);
                    break;
                }
            };
            let listed = page.keys.len();
            let results: Vec<(String, Examined)> = futures::stream::iter(page.keys)
                .take_while(|_| futures::future::ready(!self.out_of_time(inv)))
                .map(|k| {
                    let cache = &cache;
                    let bucket = target.bucket.as_str();
                    async move {
                        let ex = self.examine("scrub", bucket, &k, inv, cache).await;
                        (k, ex)
                    }
                })
                .buffered(self.settings.concurrency)
                .collect()
                .await;
            budget = budget.saturating_sub(results.len());
            let done_all = results.len() == listed;
            for (k, ex) in results {
                after = Some(k);
                records.push(ex.record);
            }
            if !done_all {
                break;
            }
            if !page.truncated {
                index += 1;
                after = None;
                if index >= req.targets.len() {
                    complete = true;
                }
            }
        }
        let next = (!complete).then(|| {
            let t = req.targets.get(index);
            json!({
                "bucket": t.map(|t| t.bucket.clone()),
                "prefix": t.map(|t| t.prefix.clone()),
                "continuation": after,
            })
        });
        if req.scheduled {
            let position = (!complete).then(|| format_position(index, after.as_deref()));
            let ttl = Utc::now().timestamp() + 7 * 24 * 3600;
            if let Err(e) = self
                .cursors
                .put(&cursor_name, position.as_deref(), ttl)
                .await
            {
                tracing::error!(function = FUNCTION, cursor = %cursor_name, error = %e, "cannot save the scrub cursor");
            }
        }
        let summary = Summary::tally(&records);
        tracing::info!(
            function = FUNCTION,
            request_id = %inv.request_id,
            summary = %json!(summary),
            complete,
            next = %json!(next),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "scrub summary"
        );
        let body = json!({
            "summary": summary,
            "complete": complete,
            "next": next,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        });
        Ok(Response {
            body,
            audits: records,
        })
    }
}

fn format_position(index: usize, after: Option<&str>) -> String {
    json!({"target": index, "after": after}).to_string()
}

fn parse_position(s: &str) -> (usize, Option<String>) {
    let v: Value = serde_json::from_str(s).unwrap_or(Value::Null);
    (
        v.get("target").and_then(Value::as_u64).unwrap_or(0) as usize,
        v.get("after").and_then(Value::as_str).map(str::to_string),
    )
}

impl Function for Deps {
    async fn handle(&self, event: Value, inv: Invocation) -> Result<Response, HandlerError> {
        let request = match event::parse(&event, &self.settings.scrub_targets) {
            Ok(r) => r,
            Err(e) => return Err(self.common.reject(&inv, "s3", e).await),
        };
        let items = match request {
            Request::Scrub(req) => return self.scrub(req, &inv).await,
            Request::TestEvent => {
                let rec =
                    self.common
                        .audit_for(&inv, "s3-notification", "-")
                        .skipped(&SkipReason::new(
                            SkipCode::NothingToDo,
                            "s3:TestEvent: the notification is wired",
                        ));
                self.common.audit.record(&rec).await;
                return Ok(Response::from_audits(vec![rec]));
            }
            Request::Objects(items) => items,
        };
        let cache = BucketTags::default();
        let mut audits = Vec::new();
        let mut retry = None;
        for item in items {
            match item {
                Ok(ev) => {
                    let ex = self
                        .examine(ev.trigger, &ev.bucket, &ev.key, &inv, &cache)
                        .await;
                    if ex.retryable {
                        retry = Some(ex.record.reason.clone());
                    }
                    audits.push(ex.record);
                }
                Err(ignored) => {
                    let rec = self
                        .common
                        .audit_for(&inv, ignored.trigger, &ignored.target)
                        .skipped(&SkipReason::new(SkipCode::NothingToDo, ignored.why));
                    self.common.audit.record(&rec).await;
                    audits.push(rec);
                }
            }
        }
        // Every record was examined and audited; a passing failure (throttling, 5xx) is handed
        // back so Lambda retries the event. Objects already fixed then verify as a no-op.
        if let Some(msg) = retry {
            return Err(HandlerError::Retryable(msg));
        }
        Ok(Response::from_audits(audits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::checksums::{Algorithm, Spec};

    fn expected() -> Expected {
        Expected {
            source: expect::SourceKind::Metadata,
            label: "metadata sha256 (sha256)".into(),
            algorithm: Algorithm::Sha256,
            value: vec![1, 2],
            specs: vec![Spec::whole(Algorithm::Sha256)],
            size: None,
        }
    }

    fn verified(matched: bool) -> Verified {
        Verified {
            matched,
            computed: "0303".into(),
            bytes: 2,
        }
    }

    #[test]
    fn decide_table() {
        let q = ObjectRef::new("b", "selfheal-quarantine/b/k/e");
        let replica = GoodCopy {
            kind: CopyKind::Replica,
            object: ObjectRef::new("r", "k"),
            size: 2,
        };
        match decide(
            &expected(),
            &verified(true),
            Some("s3://r/k"),
            Some(replica.clone()),
            q.clone(),
        ) {
            Decision::Skip { reason } => {
                assert_eq!(reason.code, SkipCode::NothingToDo);
                assert!(
                    reason.detail.contains("restored earlier from s3://r/k"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        match decide(
            &expected(),
            &verified(false),
            None,
            Some(replica.clone()),
            q.clone(),
        ) {
            Decision::Act {
                action: Fix::Restore { from },
                reason,
            } => {
                assert_eq!(from, replica);
                assert!(reason.contains("expected 0102, computed 0303"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(&expected(), &verified(false), None, None, q.clone()),
            Decision::act(
                Fix::Quarantine { to: q },
                "bytes do not match the metadata sha256 (sha256): expected 0102, computed 0303; no verified good copy in the replica or earlier versions"
            )
        );
    }

    #[test]
    fn positions_round_trip() {
        assert_eq!(
            parse_position(&format_position(2, Some("a/b c"))),
            (2, Some("a/b c".into()))
        );
        assert_eq!(parse_position(&format_position(0, None)), (0, None));
        assert_eq!(parse_position("garbage"), (0, None));
    }

    #[test]
    fn every_sample_event_for_this_function_parses() {
        let targets =
            [
                settings::Location::parse("example-bucket/data/").unwrap_or(settings::Location {
                    bucket: "b".into(),
                    prefix: String::new(),
                }),
            ];
        let mut seen = 0;
        for (name, v) in selfheal_core::samples::for_function(FUNCTION).unwrap() {
            let r = event::parse(&v, &targets).unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Request::Objects(items) = &r {
                assert!(items.iter().all(|i| i.is_ok()), "{name}: {items:?}");
            }
            seen += 1;
        }
        assert!(seen >= 5, "expected samples for every shape, found {seen}");
    }
}
