//! The flow over the ports: for each object, read the facts (bucket tags, head, expected
//! digest, the bytes themselves), [`decide`], and when the object is corrupted find a good
//! copy and repair it through [`Common::act_guarded`]. Exactly one audit record per object.
//! A scrub ([`crate::scrub`]) runs the same examination over listed keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};

use serde_json::Value;

use selfheal_core::approval::gate::{Approved, Ask, Gated};
use selfheal_core::autonomy::{self, Level};
use selfheal_core::checksums;
use selfheal_core::ports::cursors::Cursors;
use selfheal_core::ports::objects::{ObjectFacts, ObjectRef, Objects};
use selfheal_core::ports::scheduler::FollowUps;
use selfheal_core::{
    AuditBuilder, AuditRecord, AwsError, Common, Decision, Failed, Function, Guarded, HandlerError,
    Invocation, Response, SkipCode, SkipReason, Target,
};

use crate::decide::{self, decide, Fix, Verified};
use crate::event::{self, Request};
use crate::expect::{self, Expected};
use crate::repair::{Corrupted, Repair, REPLACED_BEFORE_COPY, RESTORED_FROM};
use crate::settings::Settings;
use crate::sources;
use crate::verify::verify;
use crate::FUNCTION;

pub struct Deps {
    pub common: Common,
    pub objects: Arc<dyn Objects>,
    pub cursors: Arc<dyn Cursors>,
    pub settings: Settings,
    /// One-time calls back into this function (EventBridge Scheduler): a report that did not
    /// finish in one invocation goes on in the next. `None`: no scheduler configured.
    pub follow_ups: Option<Arc<dyn FollowUps>>,
}

/// How long a person is not told again about an object that cannot be read.
const UNREADABLE_NOTICE_TTL_SECONDS: i64 = 365 * 24 * 3600;

/// Left of the invocation when an object's work is cut short: enough to record it (and for a
/// scrub to save its cursor) before Lambda ends the process.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// The code of a record whose object was cut short by the invocation's deadline.
pub(crate) const OUT_OF_TIME: &str = "out-of-time";

/// How many times an object replaced during its repair is examined again in one invocation.
const RECHECKS: u8 = 1;

/// Bucket tags, read once per bucket per invocation.
#[derive(Default)]
pub(crate) struct BucketTags(Mutex<HashMap<String, Vec<(String, String)>>>);

impl BucketTags {
    pub(crate) async fn get(
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
pub(crate) struct Examined {
    pub record: AuditRecord,
    pub retryable: bool,
}

impl From<Failed> for Examined {
    fn from(f: Failed) -> Self {
        Self {
            record: f.record,
            retryable: f.retryable,
        }
    }
}

/// What the caller of an examination asks for beyond the object.
#[derive(Debug, Clone, Default)]
pub(crate) struct Asked {
    /// Record what would be done, change nothing (a Batch job's `dryRun`).
    pub dry_run: bool,
    /// Details every record of the examination carries.
    pub details: Vec<(&'static str, Value)>,
    /// A person's approval of the restore (graduated autonomy): deciding again on it.
    pub approval: Option<Approved>,
}

/// What one examination of an object works within: the record it starts from, the object,
/// the invocation, and how many more times it may start over on a replaced object.
#[derive(Clone, Copy)]
pub(crate) struct Examination<'a> {
    base: &'a AuditBuilder,
    bucket: &'a str,
    key: &'a str,
    tag_cache: &'a BucketTags,
    inv: &'a Invocation,
    rechecks: u8,
    /// The caller asked for a dry run (a Batch job's `dryRun`): record what would be done,
    /// change nothing. It can only narrow what the guardrails allow, never widen it.
    dry_run: bool,
    /// Set when deciding again on a person's approval.
    approval: Option<&'a Approved>,
}

/// What the bytes are expected to hash to, and an independent witness of them, if any.
struct Expectation {
    expected: Expected,
    witness: Option<Expected>,
    audit: AuditBuilder,
}

/// A step of an examination goes on with what it learned, or ends with the object's record.
type Step<T> = Result<T, Examined>;

/// The object being examined, as its head showed it.
struct Subject {
    bucket: String,
    key: String,
    /// Opted-in bucket's tags: the guardrails' target tags.
    tags: Vec<(String, String)>,
    /// Pinned to the version the head saw, where there is one.
    current: ObjectRef,
    facts: ObjectFacts,
    /// Set when an earlier run restored this object (its marker): told in the record.
    restored_from: Option<String>,
    limits: Limits,
}

/// When an object's verification and search must end: its own budget, or the invocation's
/// deadline (less a margin), whichever comes first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    budget: tokio::time::Instant,
    invocation: Option<tokio::time::Instant>,
}

/// Which limit cut an object's work short.
enum Cut {
    /// The object's own budget: recorded as over budget, reported once, skipped until changed.
    Budget,
    /// The invocation's deadline: nothing is concluded; the object is examined again later.
    Invocation,
}

impl Limits {
    fn new(budget: Duration, inv: &Invocation) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            budget: now + budget,
            invocation: inv
                .remaining()
                .map(|r| now + r.saturating_sub(DEADLINE_MARGIN)),
        }
    }

    /// Runs `work` until it ends or a limit is reached.
    async fn run<T>(&self, work: impl std::future::Future<Output = T>) -> Result<T, Cut> {
        let (at, cut) = match self.invocation {
            Some(i) if i < self.budget => (i, Cut::Invocation),
            _ => (self.budget, Cut::Budget),
        };
        tokio::time::timeout_at(at, work).await.map_err(|_| cut)
    }
}

impl Deps {
    async fn record(&self, rec: AuditRecord) -> Examined {
        Examined {
            record: self.common.record(rec).await,
            retryable: false,
        }
    }

    async fn skip(&self, audit: AuditBuilder, reason: SkipReason) -> Examined {
        self.record(audit.skipped(&reason)).await
    }

    async fn fail(&self, audit: AuditBuilder, code: &str, e: &AwsError) -> Examined {
        self.common
            .failed(audit, code, e.to_string(), e.retryable)
            .await
            .into()
    }

    /// Verifies one object and acts on what it finds. Always produces exactly one record.
    pub(crate) async fn examine(
        &self,
        trigger: &str,
        bucket: &str,
        key: &str,
        inv: &Invocation,
        tag_cache: &BucketTags,
    ) -> Examined {
        let asked = Asked::default();
        self.examine_with(trigger, bucket, key, inv, tag_cache, &asked)
            .await
    }

    /// [`Deps::examine`], as a caller asked: its dry run (which only narrows) and details
    /// for the record (a Batch job and task).
    pub(crate) async fn examine_with(
        &self,
        trigger: &str,
        bucket: &str,
        key: &str,
        inv: &Invocation,
        tag_cache: &BucketTags,
        asked: &Asked,
    ) -> Examined {
        let dry_run = asked.dry_run;
        let mut audit = self
            .common
            .audit_for(inv, trigger, &format!("{bucket}/{key}"));
        for (k, v) in &asked.details {
            audit = audit.detail(k, v);
        }
        let at = Examination {
            base: &audit,
            bucket,
            key,
            tag_cache,
            inv,
            rechecks: RECHECKS,
            dry_run,
            approval: asked.approval.as_ref(),
        };
        self.examine_steps(audit.clone(), at).await
    }

    /// One examination of the object; boxed, because an object replaced during its repair is
    /// examined again from here.
    fn examine_steps<'a>(
        &'a self,
        audit: AuditBuilder,
        at: Examination<'a>,
    ) -> BoxFuture<'a, Examined> {
        async move {
            match self.steps(audit, at).await {
                Ok(ex) | Err(ex) => ex,
            }
        }
        .boxed()
    }

    async fn steps(&self, audit: AuditBuilder, at: Examination<'_>) -> Step<Examined> {
        let (bucket, key) = (at.bucket, at.key);
        let tags = self.opted_in(&audit, bucket, key, at.tag_cache).await?;
        let limits = Limits::new(self.settings.object_budget, at.inv);
        let (subject, audit) = self.head(audit, bucket, key, tags, limits).await?;
        self.readable(&audit, &subject).await?;
        self.within_budget_before(&audit, &subject).await?;
        let Expectation {
            expected,
            witness,
            audit,
        } = self.expectation(audit, &subject).await?;
        let (verified, audit) = self
            .check(audit, &subject, &expected, witness.as_ref())
            .await?;
        Ok(self.repair(audit, &subject, &expected, &verified, at).await)
    }

    /// Is the object eligible at all? Checked before reading anything: a bucket that did not
    /// opt in is not even read. Returns the bucket's tags.
    async fn opted_in(
        &self,
        audit: &AuditBuilder,
        bucket: &str,
        key: &str,
        tag_cache: &BucketTags,
    ) -> Step<Vec<(String, String)>> {
        if let Some(reason) = decide::quarantine_key(&self.settings, bucket, key) {
            return Err(self.skip(audit.clone(), reason).await);
        }
        let tags = match tag_cache.get(self.objects.as_ref(), bucket).await {
            Ok(t) => t,
            Err(e) => return Err(self.fail(audit.clone(), "bucket-tags-failed", &e).await),
        };
        let opt_in = &self.common.guard.policy().opt_in;
        if !opt_in.matches(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            let reason = SkipReason::new(
                SkipCode::NotOptedIn,
                format!("bucket {bucket} does not carry the opt-in tag {opt_in}"),
            );
            return Err(self.skip(audit.clone(), reason).await);
        }
        Ok(tags)
    }

    /// Reads the object's head: it must exist and not be a quarantine copy.
    async fn head(
        &self,
        audit: AuditBuilder,
        bucket: &str,
        key: &str,
        tags: Vec<(String, String)>,
        limits: Limits,
    ) -> Step<(Subject, AuditBuilder)> {
        let obj = ObjectRef::new(bucket, key);
        let facts = match self.objects.head(&obj).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                let reason =
                    SkipReason::new(SkipCode::TargetNotFound, format!("{obj} does not exist"));
                return Err(self.skip(audit, reason).await);
            }
            Err(e) => return Err(self.fail(audit, "head-failed", &e).await),
        };
        if let Some(reason) = decide::quarantine_copy(&facts.metadata) {
            return Err(self.skip(audit, reason).await);
        }
        let current = facts.object.clone().unwrap_or(obj);
        let restored_from = facts.metadata.get(RESTORED_FROM).cloned();
        let audit = audit
            .detail("size", facts.size)
            .detail("etag", &facts.etag)
            .detail("version_id", &current.version_id)
            .detail("restored_from", &restored_from);
        let subject = Subject {
            bucket: bucket.to_string(),
            key: key.to_string(),
            tags,
            current,
            facts,
            restored_from,
            limits,
        };
        Ok((subject, audit))
    }

    /// Archived and SSE-C objects are unverifiable before anything is read. A person hears of
    /// each once (a marker in the ledger table, per object and ETag), not on every scrub.
    async fn readable(&self, audit: &AuditBuilder, s: &Subject) -> Step<()> {
        let Some((kind, reason)) = decide::unreadable(&s.facts) else {
            return Ok(());
        };
        let etag = s.facts.etag.as_deref().unwrap_or("no-etag");
        let marker = format!("{FUNCTION}#unreadable#{}/{}#{etag}", s.bucket, s.key);
        let told = matches!(self.cursors.get(&marker).await, Ok(Some(_)));
        let mut audit = audit.clone().detail("unreadable", kind);
        if told {
            audit = audit.detail("notified_before", true);
        } else {
            let expires = chrono::Utc::now().timestamp() + UNREADABLE_NOTICE_TTL_SECONDS;
            // A marker that cannot be written means another notice later: better than none.
            let _ = self.cursors.put(&marker, Some("notified"), expires).await;
            audit = audit.detail("escalate", true);
        }
        Err(self.skip(audit, reason).await)
    }

    /// The ledger marker of an object (at one ETag) that ran over its budget.
    fn over_budget_marker(s: &Subject) -> String {
        let etag = s.facts.etag.as_deref().unwrap_or("no-etag");
        format!("{FUNCTION}#over-budget#{}/{}#{etag}", s.bucket, s.key)
    }

    /// An object that ran over its budget before, unchanged since (same ETag), is not read
    /// again: it would only run over again, every scrub. A person was told then.
    async fn within_budget_before(&self, audit: &AuditBuilder, s: &Subject) -> Step<()> {
        // A marker that cannot be read costs one more try, never a wrong answer.
        let Ok(Some(_)) = self.cursors.get(&Self::over_budget_marker(s)).await else {
            return Ok(());
        };
        let reason = SkipReason::new(
            SkipCode::Unverifiable,
            format!(
                "{} could not be verified within SELFHEAL_RESTORE_OBJECT_BUDGET_SECONDS ({} s) before; not read again until it changes",
                s.current,
                self.settings.object_budget.as_secs()
            ),
        );
        let audit = audit
            .clone()
            .detail("over_budget", true)
            .detail("notified_before", true);
        Err(self.skip(audit, reason).await)
    }

    /// An object's work cut short: over its own budget (recorded, reported once, skipped
    /// until it changes), or at the invocation's deadline (examined again later).
    async fn cut_short(&self, audit: AuditBuilder, s: &Subject, cut: Cut, doing: &str) -> Examined {
        match cut {
            Cut::Budget => {
                let expires = chrono::Utc::now().timestamp() + UNREADABLE_NOTICE_TTL_SECONDS;
                let marker = Self::over_budget_marker(s);
                // A marker that cannot be written means another notice later: better than none.
                let _ = self.cursors.put(&marker, Some("notified"), expires).await;
                let reason = SkipReason::new(
                    SkipCode::Unverifiable,
                    format!(
                        "{} was not finished {doing} within SELFHEAL_RESTORE_OBJECT_BUDGET_SECONDS ({} s): not verified; skipped until it changes",
                        s.current,
                        self.settings.object_budget.as_secs()
                    ),
                );
                let audit = audit.detail("over_budget", true).detail("escalate", true);
                self.skip(audit, reason).await
            }
            Cut::Invocation => {
                let why = format!(
                    "{} was not finished {doing} before the invocation's deadline; examined again later",
                    s.current
                );
                self.common
                    .failed(audit.detail("out_of_time", true), OUT_OF_TIME, why, true)
                    .await
                    .into()
            }
        }
    }

    /// The most trustworthy expected digest there is, with the part boundaries it needs; and,
    /// when it is the producer's metadata, S3's own witness of the bytes (checksum or MD5
    /// ETag) to hash in the same pass.
    async fn expectation(&self, audit: AuditBuilder, s: &Subject) -> Step<Expectation> {
        let (cand, mut notes) = match expect::candidate(&s.facts, &self.settings.metadata_keys) {
            Ok(x) => x,
            Err(u) => {
                let reason = SkipReason::new(SkipCode::Unverifiable, u.reason);
                return Err(self.skip(audit.detail("notes", &u.notes), reason).await);
            }
        };
        let witness = match cand.source {
            expect::SourceKind::Metadata => expect::witness(&s.facts, &mut notes),
            _ => None,
        };
        let audit = audit
            .detail("expected_source", cand.source)
            .detail("expected_from", &cand.label)
            .detail("expected", checksums::to_hex(&cand.value))
            .detail("layout", &cand.layout)
            .detail("witness", witness.as_ref().map(|w| &w.label));
        // A metadata expectation is whole-object: only a witness can need the part sizes.
        let needs_parts = cand
            .layout
            .parts()
            .or(witness.as_ref().and_then(|w| w.layout.parts()));
        let parts = match needs_parts {
            None => None,
            Some(n) => match self.objects.part_sizes(&s.current, n).await {
                Ok(sizes) => Some(sizes),
                Err(e) if e.retryable => {
                    let audit = audit.detail("notes", &notes);
                    return Err(self.fail(audit, "parts-failed", &e).await);
                }
                Err(e) if witness.is_some() => {
                    notes.push(format!(
                        "no witness: S3 did not give the part boundaries: {e}"
                    ));
                    None
                }
                Err(e) => {
                    let why = format!(
                        "the {} needs the part boundaries, and S3 did not give them: {e}",
                        cand.label
                    );
                    let reason = SkipReason::new(SkipCode::Unverifiable, why);
                    return Err(self.skip(audit.detail("notes", &notes), reason).await);
                }
            },
        };
        let witness = witness.and_then(|w| {
            expect::expected(w, parts.as_deref(), s.facts.size)
                .map_err(|why| notes.push(format!("no witness: {why}")))
                .ok()
        });
        let audit = audit.detail("notes", &notes).detail("part_sizes", &parts);
        match expect::expected(cand, parts.as_deref(), s.facts.size) {
            Ok(expected) => Ok(Expectation {
                expected,
                witness,
                audit,
            }),
            Err(why) => {
                let reason = SkipReason::new(SkipCode::Unverifiable, why);
                Err(self.skip(audit, reason).await)
            }
        }
    }

    /// Reads the bytes examined (pinned to the ETag seen) and ends here when they verify.
    async fn check(
        &self,
        audit: AuditBuilder,
        s: &Subject,
        expected: &Expected,
        witness: Option<&Expected>,
    ) -> Step<(Verified, AuditBuilder)> {
        let started = Instant::now();
        let current = &s.current;
        let work = verify(
            self.objects.as_ref(),
            current,
            s.facts.etag.as_deref(),
            expected,
            witness,
        );
        let verified = match s.limits.run(work).await {
            Err(cut) => return Err(self.cut_short(audit, s, cut, "verifying it").await),
            Ok(Ok(v)) => v,
            Ok(Err(e)) if e.is_code("PreconditionFailed") => {
                let reason = SkipReason::new(
                    SkipCode::ChangeInProgress,
                    format!("{current} was replaced while it was read; its own event verifies the new object"),
                );
                return Err(self.skip(audit, reason).await);
            }
            Ok(Err(e)) => return Err(self.fail(audit, "read-failed", &e).await),
        };
        let audit = audit
            .detail("computed", &verified.computed)
            .detail("bytes_read", verified.bytes)
            .detail("verify_ms", started.elapsed().as_millis() as u64);
        // Intact, or rewritten with a stale digest: either way nothing is searched or restored.
        if verified.matched || verified.agrees_with.is_some() {
            let verdict = decide(
                expected,
                &verified,
                s.restored_from.as_deref(),
                None,
                current.clone(),
            );
            if let Decision::Skip { reason } = verdict {
                // New content under old metadata: the producer (or whoever wrote it) must fix
                // the digest or the content; a person hears of it.
                let audit = if reason.code == SkipCode::StaleDigest {
                    audit.detail("escalate", true)
                } else {
                    audit
                };
                return Err(self.skip(audit, reason).await);
            }
        }
        Ok((verified, audit))
    }

    /// Corrupted: look for good bytes (read-only), decide, and repair within the guardrails.
    async fn repair(
        &self,
        audit: AuditBuilder,
        s: &Subject,
        expected: &Expected,
        verified: &Verified,
        at: Examination<'_>,
    ) -> Examined {
        let search =
            sources::find_good_copy(self.objects.as_ref(), &self.settings, &s.current, expected);
        let search = match s.limits.run(search).await {
            Ok(found) => found,
            Err(cut) => {
                let audit = audit.detail("corrupt", true);
                return self
                    .cut_short(audit, s, cut, "searching for a good copy")
                    .await;
            }
        };
        let audit = audit
            .detail("corrupt", true)
            .detail("sources_tried", &search.tried);
        if let (None, Some(e)) = (&search.good, &search.transient) {
            // A source could not be read for a passing reason: quarantining now would give
            // up on a copy that may well be good. Lambda retries.
            return self.fail(audit, "source-search-failed", e).await;
        }
        let etag = s.facts.etag.clone().unwrap_or_else(|| "no-etag".into());
        let (qb, qk) = self.settings.quarantine_of(&s.bucket, &s.key, &etag);
        let restored_from = s.restored_from.as_deref();
        let quarantine = ObjectRef::new(qb, qk);
        let (fix, reason) = match decide(expected, verified, restored_from, search.good, quarantine)
        {
            Decision::Act { action, reason } => (action, reason),
            Decision::Skip { reason } => return self.skip(audit, reason).await,
        };
        let copied = match &fix {
            // On a bucket without versioning the replaced bytes are copied too.
            Fix::Restore { from } => from.size.max(s.facts.size),
            Fix::Quarantine { .. } => s.facts.size,
        };
        if let Some(reason) = decide::too_large(copied, &self.settings) {
            let audit = audit
                .detail("escalate", true)
                .detail("would", fix.would(&s.current, &reason.detail));
            return self.skip(audit, reason).await;
        }
        if at.dry_run {
            // Not even a reservation: a dry run must leave the ledger as it found it.
            let audit = audit.detail("job_dry_run", true).detail("escalate", true);
            return self
                .record(audit.dry_run(fix.would(&s.current, &reason)))
                .await;
        }
        let target = format!("{}/{}", s.bucket, s.key);
        let would = fix.would(&s.current, &reason);
        // Graduated autonomy (issue 17), right before the guardrails: the bucket's
        // selfheal:autonomy tag, else SELFHEAL_AUTONOMY, else auto. An approval decides again
        // from this one object's event, so the object is examined afresh then.
        let again = serde_json::json!({"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": s.bucket}, "object": {"key": s.key}}});
        let episode = format!("{target}@{}", s.facts.etag.as_deref().unwrap_or("no-etag"));
        let ask = Ask {
            target: &target,
            action: "restore",
            default: Level::Auto,
            target_tag: s
                .tags
                .iter()
                .find(|(k, _)| k == autonomy::TAG)
                .map(|(_, v)| v.as_str()),
            alarm_tag: None,
            episode: &episode,
            event: &again,
            would: &would,
            approval: at.approval,
        };
        let audit = match self.common.autonomy_gate(at.inv, audit, ask).await {
            Gated::Act(audit) => audit,
            Gated::Held(record) => {
                return Examined {
                    record,
                    retryable: false,
                }
            }
        };
        let action = Guarded {
            target: Target {
                id: &target,
                tags: s.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            },
            would,
            // A corrupted object the guardrails keep us from fixing is still news for a person.
            escalate_refusal: true,
        };
        let repair = Repair {
            objects: self.objects.as_ref(),
            settings: &self.settings,
        };
        let corrupted = Corrupted {
            current: &s.current,
            facts: &s.facts,
            expected,
        };
        let examined_etag = s.facts.etag.as_deref();
        let done = self
            .common
            .act_guarded(audit, action, |audit| async move {
                let rec = repair.apply(audit, fix, &reason, &corrupted).await;
                // Closed loop: a restore schedules its own verification (in its record).
                self.follow_restore(rec, examined_etag).await
            })
            .await;
        if let Ok(record) = &done {
            // A restore nothing will verify is news for a person.
            let _ = self.common.follow_up_failure(record, at.inv).await;
        }
        match done {
            Ok(record) if record.details.get(REPLACED_BEFORE_COPY).is_some() && at.rechecks > 0 => {
                // Stood down (the reservation is released): the new object is verified in its
                // own right, and repaired only if it is corrupted too.
                let audit = at
                    .base
                    .clone()
                    .detail("replaced_before_restore", &record.reason);
                let again = Examination {
                    rechecks: at.rechecks - 1,
                    ..at
                };
                self.examine_steps(audit, again).await
            }
            Ok(record) => Examined {
                record,
                retryable: false,
            },
            Err(failed) => failed.into(),
        }
    }

    /// Examines every object of a notification (or EventBridge event), in order; with a
    /// person's approval when deciding again on one.
    async fn objects(
        &self,
        items: Vec<Result<event::ObjectEvent, event::Ignored>>,
        inv: &Invocation,
        approval: Option<&Approved>,
    ) -> Result<Response, HandlerError> {
        let cache = BucketTags::default();
        let mut audits = Vec::new();
        let mut retry = None;
        let mut reports = Vec::new();
        for item in items {
            match item {
                Ok(ev) if self.settings.is_report_manifest(&ev.bucket, &ev.key) => {
                    reports.push((ev.bucket, ev.key));
                }
                Ok(ev) if self.settings.is_report_key(&ev.bucket, &ev.key) => {
                    let audit = self.common.audit_for(
                        inv,
                        ev.trigger,
                        &format!("{}/{}", ev.bucket, ev.key),
                    );
                    let reason = SkipReason::new(
                        SkipCode::NothingToDo,
                        "a file of a completion report: read with its manifest.json, never examined as data",
                    );
                    audits.push(self.common.record(audit.skipped(&reason)).await);
                }
                Ok(ev) => {
                    let asked = Asked {
                        approval: approval.cloned(),
                        ..Asked::default()
                    };
                    let ex = self
                        .examine_with(ev.trigger, &ev.bucket, &ev.key, inv, &cache, &asked)
                        .await;
                    if ex.retryable {
                        retry = Some(ex.record.reason.clone());
                    }
                    audits.push(ex.record);
                }
                Err(ignored) => {
                    let audit = self.common.audit_for(inv, ignored.trigger, &ignored.target);
                    let reason = SkipReason::new(SkipCode::NothingToDo, ignored.why);
                    audits.push(self.common.record(audit.skipped(&reason)).await);
                }
            }
        }
        let mut summaries = Vec::new();
        for (bucket, key) in reports {
            match self.two_pass(&bucket, &key, inv).await {
                Ok(done) => {
                    summaries.push(done.body);
                    audits.extend(done.audits);
                }
                // Progress is saved: the retry resumes where this run stopped.
                Err(e) => retry = Some(e.to_string()),
            }
        }
        // Every record was examined and audited; a passing failure (throttling, 5xx) is handed
        // back so Lambda retries the event. Objects already fixed then verify as a no-op.
        if let Some(msg) = retry {
            return Err(HandlerError::Retryable(msg));
        }
        let mut response = Response::from_audits(audits);
        if !summaries.is_empty() {
            response.body = serde_json::json!({"reports": summaries, "records": response.body});
        }
        Ok(response)
    }
}

impl Deps {
    /// A person approved a restore: the object's event is examined again now (fresh reads,
    /// the guardrails at this moment), with the approval.
    async fn decide_again(
        &self,
        original: Value,
        approved: Approved,
        inv: &Invocation,
    ) -> Result<Vec<AuditRecord>, HandlerError> {
        match event::parse(&original, &[]) {
            Ok(Request::Objects(items)) => self
                .objects(items, inv, Some(&approved))
                .await
                .map(|r| r.audits),
            _ => Err(HandlerError::Malformed(
                "the approved event is not an object event".into(),
            )),
        }
    }
}

impl Function for Deps {
    async fn handle(&self, event: Value, inv: Invocation) -> Result<Response, HandlerError> {
        // An approval link (function URL) first: always a page, never an error.
        if selfheal_lambda::http::is_function_url(&event) {
            let inv = &inv;
            return Ok(selfheal_lambda::approval::handle(
                &self.common,
                &event,
                inv,
                |original, approved| async move { self.decide_again(original, approved, inv).await },
            )
            .await);
        }
        match selfheal_core::episode::verification_in(&event) {
            Some(Ok(v)) => return self.verify_restore(v, &inv).await,
            Some(Err(e)) => {
                return Err(self
                    .common
                    .reject(&inv, selfheal_core::episode::VERIFY_KEY, e)
                    .await)
            }
            None => {}
        }
        let request = match event::parse(&event, &self.settings.scrub_targets) {
            Ok(r) => r,
            Err(e) => return Err(self.common.reject(&inv, "s3", e).await),
        };
        match request {
            Request::Scrub(req) => self.scrub(req, &inv).await,
            Request::TestEvent => {
                let audit = self.common.audit_for(&inv, "s3-notification", "-");
                let reason = SkipReason::new(
                    SkipCode::NothingToDo,
                    "s3:TestEvent: the notification is wired",
                );
                let rec = self.common.record(audit.skipped(&reason)).await;
                Ok(Response::from_audits(vec![rec]))
            }
            Request::Objects(items) => self.objects(items, &inv, None).await,
            Request::Batch(job) => Ok(self.batch(job, &inv).await),
            Request::Report { bucket, key } => self.two_pass(&bucket, &key, &inv).await,
        }
    }
}

#[cfg(test)]
mod tests;
