//! The two-pass mode for very large buckets. Pass one is S3's: a Batch Operations Compute
//! checksum job computes every object's checksum at rest and writes a completion report.
//! Pass two is this: when the report's `manifest.json` lands under a report prefix, each
//! row's computed checksum is compared with the expected digest (the producer's metadata or
//! S3's stored checksum, read with a HEAD), and only the mismatches and the rows that cannot
//! be judged are examined end to end (verified, restored through the usual guarded path).
//! A row judged healthy costs one HEAD: its bytes are never read.
//!
//! Resumable: the position (report file, row) and the counts so far are saved in the ledger
//! table as it goes, like the scrub's cursor; a finished report is remembered, so a
//! redelivered event does nothing. The summary is audited once, when the report is done.

use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use selfheal_core::checksums::{self, Algorithm};
use selfheal_core::ports::objects::{ObjectFacts, ObjectRef};
use selfheal_core::ports::scheduler::FollowUp;
use selfheal_core::{
    AuditRecord, AwsError, HandlerError, Invocation, Outcome, Response, SkipCode, SkipReason,
};

use crate::expect::{self, Candidate, Layout};
use crate::handler::{Asked, BucketTags, Deps, Examined};
use crate::report::{self, ReportFile, ReportManifest, Row, Stored, Verdict};
use crate::FUNCTION;

pub const TRIGGER: &str = "compute-checksum-report";

/// A report's progress outlives the retries of its event and a resume by hand.
const PROGRESS_TTL_SECONDS: i64 = 30 * 24 * 3600;
/// Saved after this many rows or this long, whichever comes first.
const SAVE_EVERY_ROWS: u64 = 50;
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// An unfinished report goes on this long after its invocation stopped.
const CONTINUE_AFTER_SECONDS: i64 = 60;

/// Counts of one report, over every run that read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportSummary {
    pub rows: u64,
    /// Computed checksum equal to the expected digest: one HEAD, never downloaded.
    pub healthy: u64,
    /// Computed checksum differs: examined end to end.
    pub mismatched: u64,
    /// No like-for-like expected digest, a failed task, a checksum that cannot be read, an
    /// object rewritten since the job: examined end to end.
    pub unjudgeable: u64,
    /// Of the examined: restored, found intact after all, no good copy (quarantined), and
    /// left alone for another reason (unverifiable, a guardrail, a stale digest).
    pub restored: u64,
    pub verified_ok: u64,
    pub unrecoverable: u64,
    pub skipped: u64,
    /// Rows whose object is gone, in a bucket that did not opt in, or a quarantine copy.
    pub missing: u64,
    pub not_opted_in: u64,
    /// Rows that could not be read at all, and failures (recorded each).
    pub unreadable_rows: u64,
    pub failed: u64,
    /// Report files refused: their MD5 does not match the manifest's, or too large.
    pub files_refused: u64,
}

impl ReportSummary {
    fn count_examined(&mut self, r: &AuditRecord) {
        match (r.decision, r.code.as_str()) {
            (Outcome::Acted, _) => self.restored += 1,
            (Outcome::Skipped, "nothing-to-do") => self.verified_ok += 1,
            (Outcome::Failed, "unrecoverable") => self.unrecoverable += 1,
            (Outcome::Failed, _) => self.failed += 1,
            _ => self.skipped += 1,
        }
    }
}

/// Where the reading of a report is, saved in the ledger table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// Index of the report file being read (in the manifest's order).
    pub file: usize,
    /// Rows of that file already done.
    pub rows_done: u64,
    pub summary: ReportSummary,
    pub complete: bool,
}

pub fn progress_name(bucket: &str, key: &str) -> String {
    format!("{FUNCTION}#report#{bucket}/{key}")
}

/// The expected digests an object carries, comparable with a computed checksum: the
/// producer's metadata digest and S3's own (checksum, or MD5 ETag).
pub fn stored_digests(facts: &ObjectFacts, keys: &[crate::settings::MetadataKey]) -> Vec<Stored> {
    let mut notes = Vec::new();
    let mut found: Vec<Candidate> = Vec::new();
    if let Ok((c, _)) = expect::candidate(facts, keys) {
        found.push(c);
    }
    if let Some(w) = expect::witness(facts, &mut notes) {
        if !found.contains(&w) {
            found.push(w);
        }
    }
    found
        .into_iter()
        .flat_map(|c| {
            let algorithm = c.algorithm.as_str().to_ascii_uppercase();
            let stored = |full_object| Stored {
                algorithm: algorithm.clone(),
                full_object,
                bytes: c.value.clone(),
            };
            match c.layout {
                Layout::Whole => vec![stored(true)],
                Layout::Composite { .. } => vec![stored(false)],
                // S3 may have computed it either way: either type compares.
                Layout::WholeOrComposite { .. } => vec![stored(true), stored(false)],
            }
        })
        .collect()
}

/// The first pass's verdict on a row, given what the object's HEAD shows now.
pub fn judge_row(row: &Row, facts: &ObjectFacts, stored: &[Stored]) -> Verdict {
    let now = facts.object.as_ref().and_then(|o| o.version_id.as_deref());
    if let (Some(then), Some(now)) = (row.version_id.as_deref(), now) {
        if then != now {
            return Verdict::Verify {
                reason: format!("the job computed version {then}; the object is now version {now}"),
            };
        }
    }
    let Ok(c) = &row.checksum else {
        return report::judge(row, None);
    };
    let computed_full = c.checksum_type.as_deref() != Some("COMPOSITE");
    let like = stored
        .iter()
        .find(|s| s.algorithm == c.algorithm && s.full_object == computed_full)
        .or_else(|| stored.first());
    report::judge(row, like)
}

/// What became of one row.
enum RowOutcome {
    Healthy,
    NotOptedIn,
    Missing,
    Quarantine,
    /// Examined end to end; the verdict that sent it there.
    Examined(Examined, Verdict),
    /// A row that cannot be read at all; recorded.
    Unreadable(AuditRecord),
    /// Its object could not be looked at (a failure no retry fixes); recorded.
    Failed(AuditRecord),
    /// A retry can fix it: the report stops before this row.
    Transient(String),
}

impl Deps {
    /// Reads a small object (a manifest, a report CSV) whole, refusing more than `max` bytes.
    async fn read_small(&self, obj: &ObjectRef, max: u64) -> Result<Vec<u8>, AwsError> {
        let mut body = self.objects.read(obj, None).await?;
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if out.len() as u64 + chunk.len() as u64 > max {
                return Err(AwsError::new(
                    "GetObject",
                    obj.to_string(),
                    format!(
                        "larger than SELFHEAL_RESTORE_REPORT_MAX_BYTES ({max} bytes): not read"
                    ),
                ));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Runs (or resumes) the two-pass verification of one completion report.
    pub(crate) async fn two_pass(
        &self,
        bucket: &str,
        key: &str,
        inv: &Invocation,
    ) -> Result<Response, HandlerError> {
        let started = Instant::now();
        let target = format!("{bucket}/{key}");
        let audit = self.common.audit_for(inv, TRIGGER, &target);
        if !self.settings.is_report_manifest(bucket, key) {
            let why = format!(
                "{target} is not a manifest.json under SELFHEAL_RESTORE_REPORT_PREFIXES: not read"
            );
            return Err(self.common.reject(inv, TRIGGER, why).await);
        }
        let name = progress_name(bucket, key);
        let progress = match self.cursors.get(&name).await {
            Ok(Some(saved)) => serde_json::from_str(&saved).unwrap_or_default(),
            Ok(None) => Progress::default(),
            Err(e) => {
                // Starting over would re-read what was done: retried instead.
                return Err(self
                    .common
                    .fail(audit, "progress-failed", e.to_string(), true)
                    .await
                    .err()
                    .unwrap_or(HandlerError::Retryable(e.to_string())));
            }
        };
        if progress.complete {
            let reason = SkipReason::new(
                SkipCode::AlreadyDone,
                format!(
                    "report {target} was read before: {}",
                    json!(progress.summary)
                ),
            );
            let rec = self.common.record(audit.skipped(&reason)).await;
            return Ok(Response::from_audits(vec![rec]));
        }
        let manifest = match self.manifest(bucket, key).await {
            Ok(m) => m,
            Err(Err(e)) if e.retryable => {
                let failed = self
                    .common
                    .failed(audit, "report-read-failed", e.to_string(), true)
                    .await;
                return Err(HandlerError::Retryable(failed.record.reason));
            }
            Err(Err(e)) => {
                let rec = audit
                    .detail("escalate", true)
                    .failed("report-read-failed", e.to_string());
                return Ok(Response::from_audits(vec![self.common.record(rec).await]));
            }
            Err(Ok(why)) => {
                let rec = audit
                    .detail("escalate", true)
                    .failed("report-malformed", why);
                return Ok(Response::from_audits(vec![self.common.record(rec).await]));
            }
        };
        let mut run = Run {
            name: name.clone(),
            progress,
            records: Vec::new(),
            saved_at: Instant::now(),
            unsaved: 0,
            budget: self.settings.scrub_max_objects as u64,
        };
        let cache = BucketTags::default();
        let mut stopped = None;
        while run.progress.file < manifest.files.len() {
            let file = &manifest.files[run.progress.file];
            match self
                .read_file(&mut run, &manifest, file, &target, inv, &cache)
                .await
            {
                Ok(()) => {
                    run.progress.file += 1;
                    run.progress.rows_done = 0;
                    run.unsaved += 1;
                }
                Err(why) => {
                    stopped = Some(why);
                    break;
                }
            }
        }
        run.progress.complete = stopped.is_none();
        self.save_progress(&name, &run.progress).await;
        let summary = run.progress.summary.clone();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let audit = audit
            .detail("summary", &summary)
            .detail("files", manifest.files.len())
            .detail("elapsed_ms", elapsed_ms);
        let body = |complete: bool| json!({"report": target, "summary": summary, "complete": complete, "elapsed_ms": elapsed_ms});
        if let Some(why) = stopped {
            let resume = json!({"report": {"bucket": bucket, "key": key}});
            let audit = audit.detail("resume", &resume);
            let position = (run.progress.file, run.progress.rows_done);
            match self.continue_later(&name, position, &resume).await {
                // The next invocation goes on from the saved position: nothing for Lambda to
                // retry, and nobody to tell yet.
                Ok(follow_up) => {
                    let rec = audit.detail("follow_up", &follow_up).checked(
                        "report-continues",
                        format!("report {target} not finished ({why}); progress saved, continued by the follow-up {}", follow_up.name),
                    );
                    run.records.push(self.common.record(rec).await);
                    return Ok(Response {
                        body: body(false),
                        audits: run.records,
                    });
                }
                Err(no_follow_up) => {
                    let failed = self
                        .common
                        .failed(audit.detail("escalate", true), "report-incomplete", format!("report {target} not finished ({why}); progress saved; {no_follow_up}: resumed by Lambda's retry of the event, or by invoking with {{\"report\": {{\"bucket\", \"key\"}}}}"), true)
                        .await;
                    run.records.push(failed.record.clone());
                    tracing::info!(function = FUNCTION, request_id = %inv.request_id, report = %target, summary = %json!(summary), "report not finished");
                    return Err(HandlerError::Retryable(failed.record.reason));
                }
            }
        }
        // The summary is the report's one record (news for a person when anything was wrong).
        let anything = summary.mismatched
            + summary.unjudgeable
            + summary.failed
            + summary.unreadable_rows
            + summary.files_refused
            > 0;
        let reason = SkipReason::new(
            SkipCode::NothingToDo,
            format!(
                "report {target} read: {} rows, {} healthy (not downloaded), {} mismatched, {} unjudgeable, {} restored, {} unrecoverable, {} failed",
                summary.rows, summary.healthy, summary.mismatched, summary.unjudgeable, summary.restored, summary.unrecoverable, summary.failed + summary.unreadable_rows
            ),
        );
        let rec = self
            .common
            .record(audit.detail("escalate", anything).skipped(&reason))
            .await;
        run.records.push(rec);
        Ok(Response {
            body: body(true),
            audits: run.records,
        })
    }

    /// The manifest, or why not: `Err(Ok(why))` when it is not a report this reads.
    async fn manifest(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<ReportManifest, Result<String, AwsError>> {
        let bytes = self
            .read_small(&ObjectRef::new(bucket, key), self.settings.report_max_bytes)
            .await
            .map_err(Err)?;
        let text =
            String::from_utf8(bytes).map_err(|_| Ok("the manifest is not UTF-8".to_string()))?;
        report::parse_manifest(&text).map_err(|e| Ok(e.to_string()))
    }

    /// Schedules the next invocation of an unfinished report (a minute from now). `Err` says
    /// why there is none.
    async fn continue_later(
        &self,
        name: &str,
        (file, rows_done): (usize, u64),
        resume: &serde_json::Value,
    ) -> Result<FollowUp, String> {
        let Some(scheduler) = &self.follow_ups else {
            return Err("no scheduler configured (SELFHEAL_SCHEDULE_GROUP)".into());
        };
        let hash = checksums::to_hex(&checksums::digest(Algorithm::Sha256, name.as_bytes()));
        let f = FollowUp {
            // Unique per position: a retried invocation that stopped at the same place asks
            // for the same schedule, not a second one.
            name: format!("{FUNCTION}-report-{}-{file}-{rows_done}", &hash[..16]),
            at: Utc::now().timestamp() + CONTINUE_AFTER_SECONDS,
            payload: resume.to_string(),
        };
        f.validate()?;
        scheduler
            .schedule(&f)
            .await
            .map_err(|e| format!("the follow-up could not be scheduled: {e}"))?;
        Ok(f)
    }

    /// Reads one report file from where the progress says and judges its rows. `Err` when
    /// the report must stop here (out of time or budget, a passing failure).
    async fn read_file(
        &self,
        run: &mut Run,
        manifest: &ReportManifest,
        file: &ReportFile,
        report: &str,
        inv: &Invocation,
        cache: &BucketTags,
    ) -> Result<(), String> {
        let obj = ObjectRef::new(&file.bucket, &file.key);
        let audit = self
            .common
            .audit_for(inv, TRIGGER, &format!("{}/{}", file.bucket, file.key))
            .detail("report", report);
        if !self.settings.is_report_key(&file.bucket, &file.key) {
            let rec = audit.detail("escalate", true).failed(
                "report-file-refused",
                format!("{obj} is not under SELFHEAL_RESTORE_REPORT_PREFIXES: not read"),
            );
            run.refuse(self.common.record(rec).await);
            return Ok(());
        }
        let bytes = match self.read_small(&obj, self.settings.report_max_bytes).await {
            Ok(b) => b,
            Err(e) if e.retryable => return Err(format!("{obj} could not be read: {e}")),
            Err(e) => {
                let rec = audit
                    .detail("escalate", true)
                    .failed("report-file-refused", e.to_string());
                run.refuse(self.common.record(rec).await);
                return Ok(());
            }
        };
        let md5 = checksums::to_hex(&checksums::digest(Algorithm::Md5, &bytes));
        if md5 != file.md5_hex {
            // A report file that is not what S3 wrote cannot vouch for any object's health.
            let rec = audit.detail("escalate", true).failed(
                "report-file-corrupt",
                format!("{obj} has MD5 {md5}, the manifest says {:?}: its rows are not trusted; re-run the job", file.md5_hex),
            );
            run.refuse(self.common.record(rec).await);
            return Ok(());
        }
        let text = String::from_utf8_lossy(&bytes);
        let rows: Vec<_> = report::rows(&text, &manifest.columns)
            .into_iter()
            .skip(run.progress.rows_done as usize)
            .collect();
        let left = rows.len();
        let reserve = self.settings.scrub_reserve;
        let near_deadline = move || inv.remaining().is_some_and(|r| r <= reserve);
        // No new row once the budget is spent or the deadline is near; rows already started
        // finish and are counted (a repair is never cut mid-copy).
        let mut results = std::pin::pin!(futures::stream::iter(rows)
            .take(run.budget as usize)
            .take_while(move |_| futures::future::ready(!near_deadline()))
            .map(|row| self.row(row, report, inv, cache))
            .buffered(self.settings.concurrency));
        let mut done = 0;
        while let Some(outcome) = results.next().await {
            if let RowOutcome::Transient(why) = &outcome {
                return Err(why.clone());
            }
            run.count(outcome);
            done += 1;
            self.save_report_as_it_goes(run).await;
        }
        if done < left {
            return Err(if run.budget == 0 {
                "this invocation's row budget (SELFHEAL_RESTORE_SCRUB_MAX_OBJECTS) is spent".into()
            } else {
                "the invocation's deadline is near".into()
            });
        }
        Ok(())
    }

    async fn save_report_as_it_goes(&self, run: &mut Run) {
        if run.unsaved >= SAVE_EVERY_ROWS || run.saved_at.elapsed() >= SAVE_EVERY {
            self.save_progress(&run.name, &run.progress).await;
            run.unsaved = 0;
            run.saved_at = Instant::now();
        }
    }

    /// A progress that cannot be saved costs a re-read, never a wrong answer: logged only.
    async fn save_progress(&self, name: &str, progress: &Progress) {
        let ttl = Utc::now().timestamp() + PROGRESS_TTL_SECONDS;
        let text = json!(progress).to_string();
        if let Err(e) = self.cursors.put(name, Some(&text), ttl).await {
            tracing::error!(function = FUNCTION, cursor = %name, error = %e, "cannot save the report's progress");
        }
    }

    /// Judges one row: one HEAD; a full examination only for a mismatch or a doubt.
    async fn row(
        &self,
        row: Result<Row, (u64, String)>,
        report: &str,
        inv: &Invocation,
        cache: &BucketTags,
    ) -> RowOutcome {
        let row = match row {
            Ok(r) => r,
            Err((line, why)) => {
                let audit = self
                    .common
                    .audit_for(inv, TRIGGER, &format!("{report}#line-{line}"));
                let rec = audit
                    .detail("escalate", true)
                    .failed("report-row-unreadable", why);
                return RowOutcome::Unreadable(self.common.record(rec).await);
            }
        };
        let (bucket, key) = (row.bucket.as_str(), row.key.as_str());
        if self.settings.is_quarantine_key(bucket, key) {
            return RowOutcome::Quarantine;
        }
        let tags = match cache.get(self.objects.as_ref(), bucket).await {
            Ok(t) => t,
            Err(e) if e.retryable => {
                return RowOutcome::Transient(format!("tags of {bucket}: {e}"))
            }
            Err(e) => {
                let audit = self
                    .common
                    .audit_for(inv, TRIGGER, &format!("{bucket}/{key}"));
                return RowOutcome::Failed(
                    self.common
                        .record(audit.failed("bucket-tags-failed", e.to_string()))
                        .await,
                );
            }
        };
        let opt_in = &self.common.guard.policy().opt_in;
        if !opt_in.matches(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            return RowOutcome::NotOptedIn;
        }
        let facts = match self.objects.head(&ObjectRef::new(bucket, key)).await {
            Ok(Some(f)) => f,
            Ok(None) => return RowOutcome::Missing,
            Err(e) if e.retryable => {
                return RowOutcome::Transient(format!("head of {bucket}/{key}: {e}"))
            }
            Err(e) => {
                let audit = self
                    .common
                    .audit_for(inv, TRIGGER, &format!("{bucket}/{key}"));
                return RowOutcome::Failed(
                    self.common
                        .record(audit.failed("head-failed", e.to_string()))
                        .await,
                );
            }
        };
        let stored = stored_digests(&facts, &self.settings.metadata_keys);
        let verdict = judge_row(&row, &facts, &stored);
        if verdict == Verdict::Healthy {
            return RowOutcome::Healthy;
        }
        let asked = Asked {
            dry_run: false,
            details: vec![
                ("report", json!(report)),
                ("report_line", json!(row.line)),
                ("first_pass", json!(verdict)),
            ],
            approval: None,
        };
        let ex = self
            .examine_with(TRIGGER, bucket, key, inv, cache, &asked)
            .await;
        if ex.retryable {
            return RowOutcome::Transient(ex.record.reason.clone());
        }
        RowOutcome::Examined(ex, verdict)
    }
}

/// One run over a report.
struct Run {
    /// The progress's name in the ledger table.
    name: String,
    progress: Progress,
    records: Vec<AuditRecord>,
    saved_at: Instant,
    unsaved: u64,
    /// Rows this invocation may still judge.
    budget: u64,
}

impl Run {
    fn refuse(&mut self, rec: AuditRecord) {
        self.progress.summary.files_refused += 1;
        self.records.push(rec);
    }

    fn count(&mut self, outcome: RowOutcome) {
        let s = &mut self.progress.summary;
        s.rows += 1;
        match outcome {
            RowOutcome::Healthy => s.healthy += 1,
            RowOutcome::NotOptedIn => s.not_opted_in += 1,
            RowOutcome::Missing | RowOutcome::Quarantine => s.missing += 1,
            RowOutcome::Unreadable(rec) => {
                s.unreadable_rows += 1;
                self.records.push(rec);
            }
            RowOutcome::Failed(rec) => {
                s.failed += 1;
                self.records.push(rec);
            }
            RowOutcome::Examined(ex, verdict) => {
                match verdict {
                    Verdict::Mismatch { .. } => s.mismatched += 1,
                    _ => s.unjudgeable += 1,
                }
                s.count_examined(&ex.record);
                self.records.push(ex.record);
            }
            RowOutcome::Transient(_) => {}
        }
        self.progress.rows_done += 1;
        self.unsaved += 1;
        self.budget = self.budget.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Computed;
    use crate::settings::Settings;

    fn row(version: Option<&str>, alg: &str, ty: &str, bytes: &[u8]) -> Row {
        Row {
            line: 1,
            bucket: "b".into(),
            key: "k".into(),
            version_id: version.map(str::to_string),
            succeeded: true,
            error: None,
            checksum: Ok(Computed {
                algorithm: alg.into(),
                checksum_type: Some(ty.into()),
                bytes: bytes.to_vec(),
            }),
        }
    }

    fn facts(version: Option<&str>, sha256_hex: &str) -> ObjectFacts {
        let mut f = ObjectFacts {
            object: Some(ObjectRef::new("b", "k").version(version.map(str::to_string))),
            size: 3,
            etag: Some("900150983cd24fb0d6963f7d28e17f72".into()),
            ..ObjectFacts::default()
        };
        f.metadata.insert("sha256".into(), sha256_hex.into());
        f
    }

    #[test]
    fn a_row_is_healthy_only_against_a_like_for_like_digest_of_the_object_as_it_is_now() {
        let keys = Settings::default().metadata_keys;
        let sha = checksums::digest(Algorithm::Sha256, b"abc");
        let f = facts(Some("v1"), &checksums::to_hex(&sha));
        let stored = stored_digests(&f, &keys);
        // The producer's SHA-256 and S3's MD5 ETag are both there.
        assert!(stored
            .iter()
            .any(|s| s.algorithm == "SHA256" && s.full_object));
        assert!(stored.iter().any(|s| s.algorithm == "MD5"));
        let judge = |r: &Row| judge_row(r, &f, &stored);
        assert_eq!(
            judge(&row(Some("v1"), "SHA256", "FULL_OBJECT", &sha)),
            Verdict::Healthy
        );
        assert!(matches!(
            judge(&row(Some("v1"), "SHA256", "FULL_OBJECT", &[0; 32])),
            Verdict::Mismatch { .. }
        ));
        // Computed on another version than the one there now: examined end to end.
        assert!(matches!(
            judge(&row(Some("v0"), "SHA256", "FULL_OBJECT", &sha)),
            Verdict::Verify { .. }
        ));
        // The job's algorithm matches no stored digest: examined, never healthy.
        assert!(matches!(
            judge(&row(Some("v1"), "CRC32", "FULL_OBJECT", &[1, 2, 3, 4])),
            Verdict::Verify { .. }
        ));
        // A composite SHA-256 is not the producer's whole-object one.
        assert!(matches!(
            judge(&row(Some("v1"), "SHA256", "COMPOSITE", &sha)),
            Verdict::Verify { .. }
        ));
        // S3's MD5 ETag vouches too, when the job computed MD5.
        let md5 = checksums::digest(Algorithm::Md5, b"abc");
        assert_eq!(
            judge(&row(None, "MD5", "FULL_OBJECT", &md5)),
            Verdict::Healthy
        );
    }

    #[test]
    fn progress_round_trips_and_a_broken_one_starts_over() {
        let p = Progress {
            file: 2,
            rows_done: 17,
            summary: ReportSummary {
                rows: 99,
                healthy: 90,
                ..ReportSummary::default()
            },
            complete: false,
        };
        let text = json!(p).to_string();
        assert_eq!(serde_json::from_str::<Progress>(&text).unwrap(), p);
        assert_eq!(
            serde_json::from_str::<Progress>("{}").unwrap(),
            Progress::default()
        );
        assert_eq!(
            progress_name("r", "p/manifest.json"),
            "restore-object#report#r/p/manifest.json"
        );
    }
}
