//! S3 Batch Operations tasks: each task's object is examined exactly like an object event's
//! (same opt-in, guardrails, audit), and its record becomes the task's result code. One
//! task's failure never fails another; the invocation itself always answers.
//!
//! The blast-radius cap and the cooldown need nothing more here: they live in the ledger
//! (one conditional write per action), so they hold however many invocations a job fans out.

use futures::StreamExt;
use serde_json::json;

use selfheal_core::{AuditRecord, Invocation, Outcome, Response, SkipCode, SkipReason};

use crate::batch::{self, ResultCode, TaskResult};
use crate::handler::{Asked, BucketTags, Deps, Examined};
use crate::FUNCTION;

/// The trigger named in the records of Batch tasks.
pub const TRIGGER: &str = "s3-batch";

/// The task's result code for the record its object's examination produced:
///
/// * healthy (verified) or restored: `Succeeded`;
/// * something a retry can change (throttling, a timeout, the invocation's deadline, a race
///   for the ledger lost to a concurrent invocation, the object replaced while it was read):
///   `TemporaryFailure`, so S3 retries the task;
/// * everything else (missing, unverifiable, refused by a guardrail, not opted in, no good
///   copy, a dry run that would act, a stale recorded digest): `PermanentFailure`, with the
///   record's reason as the result string, which lands in the completion report.
pub fn result_code(record: &AuditRecord, retryable: bool) -> ResultCode {
    if retryable {
        return ResultCode::TemporaryFailure;
    }
    match (record.decision, record.code.as_str()) {
        (Outcome::Acted, _) => ResultCode::Succeeded,
        (Outcome::Skipped, c) if c == SkipCode::NothingToDo.as_str() => ResultCode::Succeeded,
        (Outcome::Skipped, c) if c == SkipCode::ChangeInProgress.as_str() => {
            ResultCode::TemporaryFailure
        }
        // The guardrails' own wording for a reservation lost to concurrent invocations after
        // every retry: another invocation is acting on the object; a later retry finds it
        // restored (or in its cooldown).
        (Outcome::Skipped, c)
            if c == SkipCode::Cooldown.as_str() && record.reason.contains("concurrently") =>
        {
            ResultCode::TemporaryFailure
        }
        _ => ResultCode::PermanentFailure,
    }
}

/// The result string: the outcome's code and the audit reason.
pub fn result_string(record: &AuditRecord) -> String {
    format!("{}: {}", record.code, record.reason)
}

fn task_result(task_id: &str, ex: &Examined) -> TaskResult {
    TaskResult {
        task_id: task_id.to_string(),
        code: result_code(&ex.record, ex.retryable),
        result_string: result_string(&ex.record),
    }
}

impl Deps {
    /// Answers a Batch Operations invocation: one result per task, in order.
    pub(crate) async fn batch(&self, job: batch::Invocation, inv: &Invocation) -> Response {
        let cache = BucketTags::default();
        let dry_run = job.arguments.dry_run;
        let job_ref = &job;
        let cache_ref = &cache;
        let examined: Vec<(TaskResult, AuditRecord)> = futures::stream::iter(job.tasks.clone())
            .map(|task| async move {
                let asked = Asked {
                    dry_run,
                    details: vec![
                        ("batch_job", json!(job_ref.job_id)),
                        ("batch_task", json!(task.task_id)),
                    ],
                    approval: None,
                };
                let ex = match &task.object {
                    Ok(o) => {
                        self.examine_with(TRIGGER, &o.bucket, &o.key, inv, cache_ref, &asked)
                            .await
                    }
                    Err(why) => {
                        let audit = self
                            .common
                            .audit_for(inv, TRIGGER, &task.task_id)
                            .detail("batch_job", &job_ref.job_id);
                        let reason = SkipReason::new(
                            SkipCode::NoTarget,
                            format!("task {} names no object: {why}", task.task_id),
                        );
                        let record = self.common.record(audit.skipped(&reason)).await;
                        Examined {
                            record,
                            retryable: false,
                        }
                    }
                };
                (task_result(&task.task_id, &ex), ex.record)
            })
            .buffered(self.settings.concurrency)
            .collect()
            .await;
        let (results, audits): (Vec<TaskResult>, Vec<AuditRecord>) = examined.into_iter().unzip();
        tracing::info!(
            function = FUNCTION,
            request_id = %inv.request_id,
            job = %job.job_id,
            tasks = job.tasks.len(),
            dry_run,
            "batch invocation answered"
        );
        Response {
            body: batch::response(&job, &results),
            audits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(f: impl FnOnce(selfheal_core::AuditBuilder) -> AuditRecord) -> AuditRecord {
        f(AuditRecord::builder(FUNCTION, "r", TRIGGER, "b/k"))
    }

    fn skip(code: SkipCode, why: &str) -> AuditRecord {
        rec(|b| b.skipped(&SkipReason::new(code, why)))
    }

    #[test]
    fn result_codes_follow_the_record() {
        use ResultCode::*;
        let cases = [
            (rec(|b| b.acted("restored")), false, Succeeded),
            (skip(SkipCode::NothingToDo, "verified"), false, Succeeded),
            (
                rec(|b| b.failed("read-failed", "throttled")),
                true,
                TemporaryFailure,
            ),
            (
                skip(SkipCode::ChangeInProgress, "replaced"),
                false,
                TemporaryFailure,
            ),
            (
                skip(SkipCode::Cooldown, "d/k is being acted on concurrently"),
                false,
                TemporaryFailure,
            ),
            (
                skip(SkipCode::Cooldown, "acted 3 min ago"),
                false,
                PermanentFailure,
            ),
            (skip(SkipCode::BlastRadius, "cap"), false, PermanentFailure),
            (
                skip(SkipCode::TargetNotFound, "gone"),
                false,
                PermanentFailure,
            ),
            (
                skip(SkipCode::Unverifiable, "no digest"),
                false,
                PermanentFailure,
            ),
            (
                skip(SkipCode::NotOptedIn, "no tag"),
                false,
                PermanentFailure,
            ),
            (
                skip(SkipCode::StaleDigest, "stale"),
                false,
                PermanentFailure,
            ),
            (
                rec(|b| b.failed("unrecoverable", "no copy")),
                false,
                PermanentFailure,
            ),
            (rec(|b| b.dry_run("restore")), false, PermanentFailure),
        ];
        for (r, retryable, want) in cases {
            assert_eq!(result_code(&r, retryable), want, "{r:?}");
        }
        let r = skip(SkipCode::Unverifiable, "no digest");
        assert_eq!(result_string(&r), "unverifiable: no digest");
    }
}
