//! S3 Batch Operations `LambdaInvoke`: the invocation S3 sends (schema `1.0` and `2.0`) and
//! the answer it expects, one result per task: `Succeeded`, `TemporaryFailure` (S3 retries
//! the task) or `PermanentFailure`, with a result string that lands in the job's completion
//! report.
//!
//! Own types rather than `aws_lambda_events::s3::batch_job`: those carry neither schema
//! 2.0's `s3Bucket` nor `userArguments`.
//!
//! A task that cannot be read (no key, a bucket ARN that is not one, a key that does not
//! decode) fails alone, permanently, with its reason; it never fails the other tasks. Job
//! arguments can only make the run more careful (`dryRun`), never less.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The result string is cut to this many characters (it is stored in the CSV report).
pub const MAX_RESULT_CHARS: usize = 1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("not an S3 Batch Operations invocation: {0}")]
    NotBatch(String),
    #[error("S3 Batch Operations invocation schema {0:?} is not supported (1.0 and 2.0 are)")]
    UnsupportedSchema(String),
}

/// One object a task names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

/// One task: its id and the object, or why the task names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub task_id: String,
    pub object: Result<ObjectRef, String>,
}

/// What the job asks for, read from schema 2.0's `userArguments`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobArguments {
    /// `dryRun: "true"`: verify and report, change nothing (even when the function would act).
    pub dry_run: bool,
    /// Arguments this function does not know, kept for the audit.
    pub unknown: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub schema_version: String,
    pub invocation_id: String,
    pub job_id: String,
    pub arguments: JobArguments,
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultCode {
    Succeeded,
    /// S3 retries the task (throttling, a timeout, an emulator hiccup).
    TemporaryFailure,
    /// Reported as failed in the completion report; not retried.
    PermanentFailure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    pub task_id: String,
    pub code: ResultCode,
    pub result_string: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInvocation {
    invocation_schema_version: String,
    invocation_id: String,
    job: RawJob,
    tasks: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJob {
    id: String,
    #[serde(default)]
    user_arguments: Option<BTreeMap<String, Value>>,
}

/// Whether `v` looks like a Batch Operations invocation (to route it; `parse` says what is
/// wrong with one that does).
pub fn is_invocation(v: &Value) -> bool {
    v.get("invocationSchemaVersion").is_some() && v.get("tasks").is_some()
}

pub fn parse(v: &Value) -> Result<Invocation, BatchError> {
    let raw: RawInvocation =
        serde_json::from_value(v.clone()).map_err(|e| BatchError::NotBatch(e.to_string()))?;
    let v2 = match raw.invocation_schema_version.as_str() {
        "1.0" => false,
        "2.0" => true,
        other => return Err(BatchError::UnsupportedSchema(other.to_string())),
    };
    let mut arguments = JobArguments::default();
    for (k, v) in raw.job.user_arguments.unwrap_or_default() {
        let text = match &v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match k.as_str() {
            "dryRun" => arguments.dry_run = text.trim().eq_ignore_ascii_case("true"),
            _ => {
                arguments.unknown.insert(k, text);
            }
        }
    }
    let tasks = raw
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| task(t, i, v2))
        .collect();
    Ok(Invocation {
        schema_version: raw.invocation_schema_version,
        invocation_id: raw.invocation_id,
        job_id: raw.job.id,
        arguments,
        tasks,
    })
}

fn task(t: &Value, index: usize, v2: bool) -> Task {
    let text = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_string);
    let task_id = text("taskId").unwrap_or_else(|| format!("(task {index} without taskId)"));
    let object = (|| {
        let bucket = if v2 {
            text("s3Bucket").ok_or("task has no s3Bucket")?
        } else {
            let arn = text("s3BucketArn").ok_or("task has no s3BucketArn")?;
            bucket_from_arn(&arn)?
        };
        if bucket.is_empty() {
            return Err("task names an empty bucket".to_string());
        }
        let key = decode_key(&text("s3Key").ok_or("task has no s3Key")?)?;
        if key.is_empty() {
            return Err("task names an empty key".to_string());
        }
        let version_id = text("s3VersionId").filter(|v| !v.is_empty() && v != "null");
        Ok(ObjectRef {
            bucket,
            key,
            version_id,
        })
    })()
    .map_err(|e: String| e);
    Task { task_id, object }
}

/// `arn:<partition>:s3:::<bucket>` → bucket.
pub fn bucket_from_arn(arn: &str) -> Result<String, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "s3", "", "", bucket]
            if !partition.is_empty() && !bucket.is_empty() && !bucket.contains('/') =>
        {
            Ok((*bucket).to_string())
        }
        _ => Err(format!("{arn:?} is not an S3 bucket ARN")),
    }
}

/// Batch Operations passes keys URL-encoded (`+` for a space), as AWS's own examples decode
/// them.
pub fn decode_key(raw: &str) -> Result<String, String> {
    let plus = raw.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| format!("key {raw:?} does not decode to UTF-8"))
}

/// The answer S3 expects: one result per task of the invocation, in its order. A task without
/// a result (a bug) is answered `TemporaryFailure`, so S3 asks again rather than lose it.
pub fn response(inv: &Invocation, results: &[TaskResult]) -> Value {
    let by_id: BTreeMap<&str, &TaskResult> =
        results.iter().map(|r| (r.task_id.as_str(), r)).collect();
    let results: Vec<Value> = inv
        .tasks
        .iter()
        .map(|t| {
            let (code, text) = match by_id.get(t.task_id.as_str()) {
                Some(r) => (r.code, r.result_string.clone()),
                None => (
                    ResultCode::TemporaryFailure,
                    "no result was produced for this task; S3 retries it".to_string(),
                ),
            };
            serde_json::json!({
                "taskId": t.task_id,
                "resultCode": code,
                "resultString": cut(&text),
            })
        })
        .collect();
    serde_json::json!({
        "invocationSchemaVersion": inv.schema_version,
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": inv.invocation_id,
        "results": results,
    })
}

fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_RESULT_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_RESULT_CHARS - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1() -> Value {
        json!({
            "invocationSchemaVersion": "1.0",
            "invocationId": "inv-1",
            "job": {"id": "job-1"},
            "tasks": [
                {"taskId": "t1", "s3Key": "a/b+c%2Bd.txt", "s3VersionId": "v1", "s3BucketArn": "arn:aws:s3:::data"},
                {"taskId": "t2", "s3Key": "x", "s3VersionId": null, "s3BucketArn": "arn:aws:s3:::"},
                {"taskId": "t3", "s3BucketArn": "arn:aws:s3:::data"}
            ]
        })
    }

    #[test]
    fn schema_1_tasks_fail_alone() {
        let inv = parse(&v1()).unwrap();
        assert_eq!(inv.job_id, "job-1");
        assert_eq!(
            inv.tasks[0].object,
            Ok(ObjectRef {
                bucket: "data".into(),
                key: "a/b c+d.txt".into(),
                version_id: Some("v1".into())
            })
        );
        assert!(inv.tasks[1]
            .object
            .as_ref()
            .unwrap_err()
            .contains("not an S3 bucket ARN"));
        assert!(inv.tasks[2]
            .object
            .as_ref()
            .unwrap_err()
            .contains("no s3Key"));
    }

    #[test]
    fn schema_2_reads_bucket_and_arguments() {
        let inv = parse(&json!({
            "invocationSchemaVersion": "2.0",
            "invocationId": "inv-2",
            "job": {"id": "job-2", "userArguments": {"dryRun": "TRUE", "other": 3}},
            "tasks": [{"taskId": "t1", "s3Bucket": "data", "s3Key": "k%C3%A9", "s3VersionId": null}]
        }))
        .unwrap();
        assert!(inv.arguments.dry_run);
        assert_eq!(
            inv.arguments.unknown.get("other").map(String::as_str),
            Some("3")
        );
        let o = inv.tasks[0].object.as_ref().unwrap();
        assert_eq!(
            (o.bucket.as_str(), o.key.as_str(), o.version_id.as_ref()),
            ("data", "ké", None)
        );
    }

    #[test]
    fn unknown_schema_and_non_batch_are_errors() {
        let mut v = v1();
        v["invocationSchemaVersion"] = json!("3.0");
        assert!(matches!(parse(&v), Err(BatchError::UnsupportedSchema(_))));
        assert!(matches!(
            parse(&json!({"Records": []})),
            Err(BatchError::NotBatch(_))
        ));
        assert!(!is_invocation(&json!({"Records": []})));
        assert!(is_invocation(&v1()));
    }

    #[test]
    fn bad_utf8_key_fails_that_task() {
        assert!(decode_key("%FF").is_err());
    }

    #[test]
    fn response_has_one_result_per_task_in_order() {
        let inv = parse(&v1()).unwrap();
        let r = response(
            &inv,
            &[
                TaskResult {
                    task_id: "t3".into(),
                    code: ResultCode::PermanentFailure,
                    result_string: "x".repeat(5000),
                },
                TaskResult {
                    task_id: "t1".into(),
                    code: ResultCode::Succeeded,
                    result_string: "healthy".into(),
                },
            ],
        );
        assert_eq!(r["invocationSchemaVersion"], "1.0");
        assert_eq!(r["invocationId"], "inv-1");
        assert_eq!(r["treatMissingKeysAs"], "PermanentFailure");
        let results = r["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0]["taskId"], "t1");
        assert_eq!(results[0]["resultCode"], "Succeeded");
        assert_eq!(
            results[1]["resultCode"], "TemporaryFailure",
            "no result: retried, not lost"
        );
        assert_eq!(
            results[2]["resultString"].as_str().unwrap().chars().count(),
            MAX_RESULT_CHARS
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_json(s in ".{0,400}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                let _ = parse(&v);
            }
        }

        #[test]
        fn every_task_gets_exactly_one_result(n in 0usize..40, answered in proptest::collection::vec(proptest::bool::ANY, 40)) {
            let tasks: Vec<Value> = (0..n).map(|i| json!({"taskId": format!("t{i}"), "s3Key": format!("k{i}"), "s3BucketArn": "arn:aws:s3:::b"})).collect();
            let inv = parse(&json!({"invocationSchemaVersion": "1.0", "invocationId": "i", "job": {"id": "j"}, "tasks": tasks})).unwrap();
            let results: Vec<TaskResult> = (0..n).filter(|i| answered[*i]).map(|i| TaskResult { task_id: format!("t{i}"), code: ResultCode::Succeeded, result_string: String::new() }).collect();
            let r = response(&inv, &results);
            let out = r["results"].as_array().unwrap();
            proptest::prop_assert_eq!(out.len(), n);
            for (i, o) in out.iter().enumerate() {
                proptest::prop_assert_eq!(o["taskId"].as_str().unwrap(), format!("t{i}"));
                let want = if answered[i] { "Succeeded" } else { "TemporaryFailure" };
                proptest::prop_assert_eq!(o["resultCode"].as_str().unwrap(), want);
            }
        }
    }
}
