//! The resumable scrub: walks its targets in key order, `concurrency` objects at a time,
//! examining each like an event would, until done, out of budget, or near the deadline; then
//! hands back where to resume (a direct invoke gets `next`; a scheduled scrub keeps a cursor).

use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use selfheal_core::{AuditRecord, HandlerError, Invocation, Outcome, Response};

use crate::event::ScrubRequest;
use crate::handler::{BucketTags, Deps, OUT_OF_TIME};
use crate::settings::Location;
use crate::FUNCTION;

/// A scheduled scrub's cursor outlives a missed run or two, not an abandoned job.
const CURSOR_TTL_SECONDS: i64 = 7 * 24 * 3600;

/// A scheduled scrub saves its position as it goes, after this many objects or this long,
/// whichever comes first: an invocation killed mid-way loses at most that much work.
const SAVE_EVERY_OBJECTS: usize = 50;
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Counts of a scrub (or of any batch of decisions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub examined: usize,
    pub verified_ok: usize,
    pub restored: usize,
    pub unverifiable: usize,
    /// Of the unverifiable: archived (GLACIER, DEEP_ARCHIVE), and SSE-C objects.
    pub archived: usize,
    pub sse_c: usize,
    /// Of the unverifiable: not finished within the per-object budget (now or before).
    pub over_budget: usize,
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
                (Outcome::Skipped, "unverifiable") => {
                    s.unverifiable += 1;
                    if r.details.get("over_budget") == Some(&Value::Bool(true)) {
                        s.over_budget += 1;
                    }
                    match r.details.get("unreadable").and_then(Value::as_str) {
                        Some("archived") => s.archived += 1,
                        Some("sse-c") => s.sse_c += 1,
                        _ => {}
                    }
                }
                (Outcome::Skipped, "nothing-to-do") => s.verified_ok += 1,
                (Outcome::Skipped, _) => s.skipped += 1,
            }
        }
        s
    }
}

/// The cursor of a scheduled scrub is named after its targets: changing them starts over.
pub fn cursor_name(targets: &[Location]) -> String {
    let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    format!("{FUNCTION}#scrub#{}", targets.join(","))
}

/// A position as stored in the cursor: the target's index, and the key to resume after.
pub fn format_position(index: usize, after: Option<&str>) -> String {
    json!({"target": index, "after": after}).to_string()
}

/// A position that cannot be read starts over: a scrub re-verifies, it never skips.
pub fn parse_position(s: &str) -> (usize, Option<String>) {
    let v: Value = serde_json::from_str(s).unwrap_or(Value::Null);
    (
        v.get("target").and_then(Value::as_u64).unwrap_or(0) as usize,
        v.get("after").and_then(Value::as_str).map(str::to_string),
    )
}

/// Where a walk is, and what it has recorded so far.
struct Walk {
    /// Index of the target being walked.
    index: usize,
    /// Resume after this key.
    after: Option<String>,
    /// Objects this invocation may still examine.
    budget: usize,
    records: Vec<AuditRecord>,
    complete: bool,
    /// A scheduled scrub's cursor, saved as the walk goes.
    cursor: Option<String>,
    saved_at: Instant,
    unsaved: usize,
}

impl Walk {
    /// Where the next invocation goes on, for a direct invoke (`None` when complete).
    fn next(&self, targets: &[Location]) -> Option<Value> {
        (!self.complete).then(|| {
            let t = targets.get(self.index);
            json!({
                "bucket": t.map(|t| t.bucket.clone()),
                "prefix": t.map(|t| t.prefix.clone()),
                "continuation": self.after,
            })
        })
    }
}

impl Deps {
    fn out_of_time(&self, inv: &Invocation) -> bool {
        inv.remaining()
            .is_some_and(|r| r <= self.settings.scrub_reserve)
    }

    pub(crate) async fn scrub(
        &self,
        req: ScrubRequest,
        inv: &Invocation,
    ) -> Result<Response, HandlerError> {
        let started = Instant::now();
        let cursor = cursor_name(&req.targets);
        let (index, after) = if req.scheduled {
            self.load_cursor(&cursor, inv).await?
        } else {
            (0, req.continuation.clone())
        };
        let mut walk = Walk {
            index,
            after,
            budget: self.settings.scrub_max_objects,
            records: Vec::new(),
            complete: false,
            cursor: req.scheduled.then(|| cursor.clone()),
            saved_at: Instant::now(),
            unsaved: 0,
        };
        let cache = BucketTags::default();
        while walk.index < req.targets.len() {
            if walk.budget == 0 || self.out_of_time(inv) {
                break;
            }
            if !self.scrub_page(&mut walk, &req.targets, inv, &cache).await {
                break;
            }
        }
        if req.scheduled {
            self.save_cursor(&cursor, &walk).await;
        }

        Ok(self.report(walk, &req.targets, inv, started))
    }

    /// A scheduled scrub's saved position. A cursor that cannot be read fails the invocation
    /// (retryable): starting over would re-walk what was done, every time.
    async fn load_cursor(
        &self,
        cursor: &str,
        inv: &Invocation,
    ) -> Result<(usize, Option<String>), HandlerError> {
        match self.cursors.get(cursor).await {
            Ok(Some(saved)) => Ok(parse_position(&saved)),
            Ok(None) => Ok((0, None)),
            Err(e) => {
                let audit = self.common.audit_for(inv, "scrub", cursor);
                let rec = self
                    .common
                    .record(audit.failed("cursor-failed", e.to_string()))
                    .await;
                Err(HandlerError::Retryable(rec.reason))
            }
        }
    }

    /// Lists one page of the current target and examines it. False when the walk stops here
    /// (the listing failed, or time ran out mid-page).
    async fn scrub_page(
        &self,
        walk: &mut Walk,
        targets: &[Location],
        inv: &Invocation,
        cache: &BucketTags,
    ) -> bool {
        let Some(target) = targets.get(walk.index) else {
            return false;
        };
        let page = match self
            .objects
            .list(
                &target.bucket,
                &target.prefix,
                walk.after.as_deref(),
                walk.budget.min(1000) as i32,
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let audit = self.common.audit_for(inv, "scrub", &target.to_string());
                let rec = self
                    .common
                    .record(audit.failed("list-failed", e.to_string()))
                    .await;
                walk.records.push(rec);
                return false;
            }
        };
        let listed = page.keys.len();
        let bucket = target.bucket.as_str();
        // In key order (buffered keeps it), so the position only ever moves past objects
        // that were examined; saved as it goes.
        let mut results = std::pin::pin!(futures::stream::iter(page.keys)
            .take_while(|_| futures::future::ready(!self.out_of_time(inv)))
            .map(|k| async move {
                let ex = self.examine("scrub", bucket, &k, inv, cache).await;
                (k, ex)
            })
            .buffered(self.settings.concurrency));
        let mut done = 0;
        let mut stopped = false;
        while let Some((k, ex)) = results.next().await {
            done += 1;
            stopped |= ex.record.code == OUT_OF_TIME;
            walk.records.push(ex.record);
            if stopped {
                // An object cut short by the invocation's deadline (not its own budget) is
                // examined again by the next run: the position stays before it. Objects
                // already started after it are let finish (a repair is never cut mid-copy),
                // and examined again too.
                continue;
            }
            walk.after = Some(k);
            walk.unsaved += 1;
            self.save_as_it_goes(walk).await;
        }
        walk.budget = walk.budget.saturating_sub(done);
        if stopped || done != listed {
            return false;
        }
        if !page.truncated {
            walk.index += 1;
            walk.after = None;
            walk.complete = walk.index >= targets.len();
        }
        true
    }

    /// Saves a scheduled scrub's position every so many objects or seconds.
    async fn save_as_it_goes(&self, walk: &mut Walk) {
        let Some(cursor) = walk.cursor.clone() else {
            return;
        };
        if walk.unsaved >= SAVE_EVERY_OBJECTS || walk.saved_at.elapsed() >= SAVE_EVERY {
            self.save_cursor(&cursor, walk).await;
            walk.unsaved = 0;
            walk.saved_at = Instant::now();
        }
    }

    /// Saves where a scheduled scrub stopped (cleared when complete: the next run starts
    /// over). A cursor that cannot be saved costs a re-walk, not a wrong answer: logged only.
    async fn save_cursor(&self, cursor: &str, walk: &Walk) {
        let position = (!walk.complete).then(|| format_position(walk.index, walk.after.as_deref()));
        let ttl = Utc::now().timestamp() + CURSOR_TTL_SECONDS;
        if let Err(e) = self.cursors.put(cursor, position.as_deref(), ttl).await {
            tracing::error!(function = FUNCTION, cursor = %cursor, error = %e, "cannot save the scrub cursor");
        }
    }

    fn report(
        &self,
        walk: Walk,
        targets: &[Location],
        inv: &Invocation,
        started: Instant,
    ) -> Response {
        let next = walk.next(targets);
        let summary = Summary::tally(&walk.records);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            function = FUNCTION,
            request_id = %inv.request_id,
            summary = %json!(summary),
            complete = walk.complete,
            next = %json!(next),
            elapsed_ms,
            "scrub summary"
        );
        Response {
            body: json!({
                "summary": summary,
                "complete": walk.complete,
                "next": next,
                "elapsed_ms": elapsed_ms,
            }),
            audits: walk.records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::{AuditRecord, SkipCode, SkipReason};

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
    fn cursor_is_named_after_the_targets() {
        let t = |s: &str| Location::parse(s).unwrap();
        assert_eq!(
            cursor_name(&[t("a/data/"), t("b")]),
            "restore-object#scrub#a/data/,b/"
        );
    }

    #[test]
    fn tally_counts_each_outcome() {
        let b = || AuditRecord::builder(FUNCTION, "r", "scrub", "b/k");
        let records = [
            b().acted("restored"),
            b().failed("unrecoverable", "x"),
            b().failed("read-failed", "x"),
            b().dry_run("x"),
            b().skipped(&SkipReason::new(SkipCode::Unverifiable, "x")),
            b().detail("unreadable", "archived")
                .skipped(&SkipReason::new(SkipCode::Unverifiable, "x")),
            b().detail("unreadable", "sse-c")
                .skipped(&SkipReason::new(SkipCode::Unverifiable, "x")),
            b().skipped(&SkipReason::new(SkipCode::NothingToDo, "x")),
            b().skipped(&SkipReason::new(SkipCode::NotOptedIn, "x")),
        ];
        let s = Summary::tally(&records);
        assert_eq!(
            s,
            Summary {
                examined: 9,
                verified_ok: 1,
                restored: 1,
                unverifiable: 3,
                archived: 1,
                sse_c: 1,
                over_budget: 0,
                unrecoverable: 1,
                dry_run: 1,
                skipped: 1,
                failed: 1,
            }
        );
    }
}
