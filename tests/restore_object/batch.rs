//! Issue 16: S3 Batch Operations and the two-pass mode, through the real handler against the
//! emulator. The emulator has no Batch Operations: the tests play S3's part, sending the
//! invocations S3 would send and writing the completion report a Compute checksum job would
//! write (its checksums computed here over the objects' real bytes).

use super::*;

use restore_object::two_pass::progress_name;

fn task_v2(i: usize, bucket: &str, key: &str) -> Value {
    json!({"taskId": format!("t{i}"), "s3Bucket": bucket, "s3Key": notification_encode(key), "s3VersionId": null})
}

fn job_v2(tasks: Vec<Value>, dry_run: bool) -> Value {
    let mut ev = sample_event("restore-object-batch-v2.json");
    ev["tasks"] = Value::Array(tasks);
    ev["job"]["userArguments"]["dryRun"] = json!(dry_run.to_string());
    ev
}

fn job_v1(bucket: &str, key: &str) -> Value {
    let mut ev = sample_event("restore-object-batch-v1.json");
    ev["tasks"][0]["s3BucketArn"] = json!(format!("arn:aws:s3:::{bucket}"));
    ev["tasks"][0]["s3Key"] = json!(notification_encode(key));
    ev
}

/// The Batch response's (taskId, resultCode, resultString) triples.
fn results(body: &Value) -> Vec<(String, String, String)> {
    body["results"]
        .as_array()
        .expect("results[]")
        .iter()
        .map(|r| {
            (
                r["taskId"].as_str().unwrap_or_default().to_string(),
                r["resultCode"].as_str().unwrap_or_default().to_string(),
                r["resultString"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn answer(deps: &Deps, ev: Value) -> Value {
    deps.handle(ev, Invocation::local(Duration::from_secs(120)))
        .await
        .expect("a Batch invocation is always answered")
        .body
}

/// A producer's object with its digest; corrupted in place when `corrupt` (old digest kept,
/// SSE-KMS so nothing of S3's vouches for the new bytes), a good replica kept either way.
async fn object(
    w: &World,
    data: &str,
    replica: &str,
    key: &str,
    seed: u8,
    corrupt: bool,
) -> Vec<u8> {
    let good = body(seed, 4096);
    let sha = sha256_hex(&good);
    let meta = [("sha256", sha.as_str())];
    w.put(replica, key, &good, &meta, None).await;
    if corrupt {
        let mut bad = good.clone();
        bad[17] ^= 0x5a;
        w.put_kms(data, key, &bad, &meta).await;
    } else {
        w.put(data, key, &good, &meta, None).await;
    }
    good
}

#[tokio::test]
async fn a_batch_job_answers_each_task_by_what_its_object_is() {
    let w = World::new().await;
    let data = w.bucket(true, false).await;
    let replica = w.bucket(false, false).await;
    let healthy = object(&w, &data, &replica, "data/healthy.bin", 1, false).await;
    let good = object(&w, &data, &replica, "data/corrupt file.bin", 2, true).await;
    // Unverifiable: no digest of the producer's, SSE-KMS (the ETag is no MD5), no checksum.
    w.put_kms(&data, "data/no-digest.bin", &body(3, 100), &[])
        .await;
    let deps = w.deps(&[(
        "SELFHEAL_RESTORE_REPLICA_BUCKETS",
        &format!("{data}={replica}"),
    )]);
    let mut tasks = vec![
        task_v2(0, &data, "data/healthy.bin"),
        task_v2(1, &data, "data/corrupt file.bin"),
        task_v2(2, &data, "data/missing.bin"),
        task_v2(3, &data, "data/no-digest.bin"),
    ];
    tasks.push(json!({"taskId": "t4", "s3Bucket": data}));
    let body = answer(&deps, job_v2(tasks, false)).await;
    assert_eq!(body["invocationSchemaVersion"], "2.0");
    let r = results(&body);
    let codes: Vec<&str> = r.iter().map(|(_, c, _)| c.as_str()).collect();
    assert_eq!(
        codes,
        [
            "Succeeded",
            "Succeeded",
            "PermanentFailure",
            "PermanentFailure",
            "PermanentFailure"
        ],
        "{r:#?}"
    );
    assert!(r[0].2.starts_with("nothing-to-do: verified"), "{}", r[0].2);
    assert!(r[1].2.starts_with("acted: restored"), "{}", r[1].2);
    assert!(r[2].2.starts_with("target-not-found"), "{}", r[2].2);
    assert!(r[3].2.starts_with("unverifiable"), "{}", r[3].2);
    assert!(r[4].2.contains("no s3Key"), "{}", r[4].2);
    // Effects: the corrupt object holds the good bytes again, the healthy one is untouched.
    let (bytes, meta, _) = w
        .get(&data, "data/corrupt file.bin")
        .await
        .expect("restored");
    assert!(bytes == good, "restored bytes equal the replica's");
    assert!(meta.contains_key("selfheal-restored-from"), "{meta:?}");
    let (bytes, meta, _) = w.get(&data, "data/healthy.bin").await.expect("healthy");
    assert!(bytes == healthy && !meta.contains_key("selfheal-restored-from"));

    // Schema 1.0 (bucket ARN): the restored object now verifies.
    let body = answer(&deps, job_v1(&data, "data/corrupt file.bin")).await;
    assert_eq!(body["invocationSchemaVersion"], "1.0");
    let r = results(&body);
    assert_eq!(r[0].1, "Succeeded", "{r:#?}");
    assert!(r[0].2.contains("restored earlier"), "{}", r[0].2);
}

#[tokio::test]
async fn a_batch_dry_run_changes_nothing_and_reports_what_it_would_do() {
    let w = World::new().await;
    let data = w.bucket(true, false).await;
    let replica = w.bucket(false, false).await;
    object(&w, &data, &replica, "data/corrupt.bin", 4, true).await;
    let before = w.get(&data, "data/corrupt.bin").await.expect("object").0;
    let deps = w.deps(&[(
        "SELFHEAL_RESTORE_REPLICA_BUCKETS",
        &format!("{data}={replica}"),
    )]);
    let body = answer(
        &deps,
        job_v2(vec![task_v2(0, &data, "data/corrupt.bin")], true),
    )
    .await;
    let r = results(&body);
    assert_eq!(r[0].1, "PermanentFailure", "{r:#?}");
    assert!(
        r[0].2.starts_with("dry-run: dry run: would act: restore"),
        "{}",
        r[0].2
    );
    assert!(w.get(&data, "data/corrupt.bin").await.expect("object").0 == before);
    // The job's dry run left no reservation: without it, the object is restored at once.
    let body = answer(
        &deps,
        job_v2(vec![task_v2(0, &data, "data/corrupt.bin")], false),
    )
    .await;
    assert_eq!(results(&body)[0].1, "Succeeded", "{body}");
}

/// A job fans out to many concurrent invocations: the hourly cap (the blast radius) and the
/// per-object cooldown still hold, because both live in the ledger table.
#[tokio::test]
async fn a_batch_fan_out_keeps_the_hourly_cap_and_the_cooldown() {
    let w = World::new().await;
    let data = w.bucket(true, false).await;
    let replica = w.bucket(false, false).await;
    let keys: Vec<String> = (0..8).map(|i| format!("data/c{i}.bin")).collect();
    for (i, k) in keys.iter().enumerate() {
        object(&w, &data, &replica, k, 10 + i as u8, true).await;
    }
    let deps = w.deps(&[
        (
            "SELFHEAL_RESTORE_REPLICA_BUCKETS",
            &format!("{data}={replica}"),
        ),
        ("SELFHEAL_MAX_ACTIONS_PER_HOUR", "3"),
        ("SELFHEAL_BREAKER_TARGETS", "100"),
    ]);
    // One invocation per task, as S3 sends them, all at once; the first object twice.
    let mut invocations: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| job_v2(vec![task_v2(i, &data, k)], false))
        .collect();
    invocations.push(job_v2(vec![task_v2(99, &data, &keys[0])], false));
    let deps = Arc::new(deps);
    let mut set = tokio::task::JoinSet::new();
    for ev in invocations {
        let deps = deps.clone();
        set.spawn(async move { answer(&deps, ev).await });
    }
    let bodies: Vec<Value> = set.join_all().await;
    let all: Vec<_> = bodies.iter().flat_map(results).collect();
    let succeeded = all.iter().filter(|r| r.1 == "Succeeded").count();
    let restored_codes = all.iter().filter(|r| r.2.starts_with("acted:")).count();
    assert_eq!(restored_codes, 3, "exactly the cap acted: {all:#?}");
    let capped = all
        .iter()
        .filter(|r| r.1 == "PermanentFailure" && r.2.starts_with("blast-radius"))
        .count();
    assert!(capped >= 5, "{all:#?}");
    // The duplicate task: the object is restored once (or verified after it), never twice.
    let mut restored_objects = 0;
    for k in &keys {
        let meta = w.get(&data, k).await.expect("object").1;
        restored_objects += usize::from(meta.contains_key("selfheal-restored-from"));
    }
    assert_eq!(restored_objects, 3, "{all:#?}");
    // (An unversioned bucket's replaced bytes are kept first, under the quarantine prefix.)
    assert_eq!(
        copies_onto(&data, "data/c"),
        3,
        "one copy per restore, none more"
    );
    assert!(succeeded >= 3, "{all:#?}");
}

/// A Compute checksum report as S3 writes one: a CSV per result file (checksums in the
/// result message) and a manifest with each file's MD5. `rows`: (key, bytes as stored now).
async fn write_report(
    w: &World,
    reports: &str,
    prefix: &str,
    data: &str,
    rows: &[(String, Vec<u8>)],
    per_file: usize,
) -> String {
    let job = unique("job").to_lowercase();
    let mut results = Vec::new();
    for (n, chunk) in rows.chunks(per_file).enumerate() {
        let mut csv = String::new();
        for (key, bytes) in chunk {
            let msg = json!({"checksum_algorithm": "SHA256", "checksum_type": "FULL_OBJECT",
                "checksum_base64": to_base64(&digest(Algorithm::Sha256, bytes))})
            .to_string();
            csv.push_str(&format!(
                "{data},{},,succeeded,,200,\"{}\"\n",
                notification_encode(key),
                msg.replace('"', "\"\"")
            ));
        }
        let key = format!("{prefix}{job}/results/{n:04}.csv");
        w.put(reports, &key, csv.as_bytes(), &[], None).await;
        results.push(
            json!({"TaskExecutionStatus": "succeeded", "Bucket": reports,
            "MD5Checksum": to_hex(&digest(Algorithm::Md5, csv.as_bytes())), "Key": key}),
        );
    }
    let manifest = json!({"Format": "Report_CSV_20180820", "ReportCreationDate": "2026-11-30T10:00:00.000Z",
        "Results": results,
        "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"});
    let key = format!("{prefix}{job}/manifest.json");
    w.put(reports, &key, manifest.to_string().as_bytes(), &[], None)
        .await;
    key
}

fn report_event(reports: &str, key: &str) -> Value {
    let ev = retarget(
        &sample_event("restore-object-report-manifest.json"),
        "example-reports",
        reports,
    );
    retarget(
        &ev,
        "selfheal-checksum-reports/job-f8fb9d89-a3aa-461d-bddc-ea6a1b131955/manifest.json",
        key,
    )
}

/// The objects of a two-pass test: healthy ones, corrupt ones (with a good replica), and one
/// with no expected digest at all.
struct Bucketful {
    data: String,
    reports: String,
    rows: Vec<(String, Vec<u8>)>,
    corrupt: Vec<String>,
    good: Vec<(String, Vec<u8>)>,
    deps_pairs: Vec<(String, String)>,
}

async fn bucketful(w: &World, n: usize, corrupt_every: usize) -> Bucketful {
    let data = w.bucket(true, false).await;
    let replica = w.bucket(false, false).await;
    let reports = w.bucket(false, false).await;
    let mut rows = Vec::new();
    let mut corrupt = Vec::new();
    let mut good = Vec::new();
    for i in 0..n {
        let key = format!("data/{i:04}.bin");
        let is_corrupt = i % corrupt_every == corrupt_every - 1;
        let g = object(w, &data, &replica, &key, i as u8, is_corrupt).await;
        let stored = w.get(&data, &key).await.expect("object").0;
        if is_corrupt {
            corrupt.push(key.clone());
        }
        good.push((key.clone(), g));
        rows.push((key, stored));
    }
    let key = "data/zz-no-digest.bin".to_string();
    let b = body(200, 64);
    w.put_kms(&data, &key, &b, &[]).await;
    rows.push((key, b));
    let deps_pairs = vec![
        (
            "SELFHEAL_RESTORE_REPLICA_BUCKETS".to_string(),
            format!("{data}={replica}"),
        ),
        (
            "SELFHEAL_RESTORE_REPORT_PREFIXES".to_string(),
            format!("{reports}/selfheal-checksum-reports/"),
        ),
        (
            "SELFHEAL_MAX_ACTIONS_PER_HOUR".to_string(),
            "100".to_string(),
        ),
        ("SELFHEAL_BREAKER_TARGETS".to_string(), "100".to_string()),
    ];
    Bucketful {
        data,
        reports,
        rows,
        corrupt,
        good,
        deps_pairs,
    }
}

fn deps_of(w: &World, b: &Bucketful, extra: &[(&str, &str)]) -> Deps {
    let mut pairs: Vec<(&str, &str)> = b
        .deps_pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.extend_from_slice(extra);
    w.deps(&pairs)
}

/// Copies onto keys under `prefix` of `bucket` (not the quarantine copies, whose keys name
/// the object too).
fn copies_onto(bucket: &str, prefix: &str) -> usize {
    recorded_requests(&[&format!("/{bucket}/{prefix}"), "x-id=CopyObject"])
        .iter()
        .filter(|r| {
            !r["url"]
                .as_str()
                .unwrap_or_default()
                .contains("selfheal-quarantine")
        })
        .count()
}

/// GETs of an object's bytes the emulator served (HEADs are not reads).
fn reads_of(bucket: &str, key: &str) -> usize {
    recorded_requests(&[&format!("/{bucket}/{key}")])
        .iter()
        .filter(|r| r["method"] == "GET")
        .filter(|r| {
            let url = r["url"].as_str().unwrap_or_default();
            !url.contains("tagging") && !url.contains("acl") && !url.contains("versioning")
        })
        .count()
}

#[tokio::test]
async fn a_checksum_report_restores_exactly_the_mismatches_and_never_reads_healthy_objects() {
    let w = World::new().await;
    let b = bucketful(&w, 12, 4).await;
    let manifest = write_report(
        &w,
        &b.reports,
        "selfheal-checksum-reports/",
        &b.data,
        &b.rows,
        5,
    )
    .await;
    let deps = deps_of(&w, &b, &[]);
    // The test's own reads so far (setting up) are not the function's.
    let before: Vec<usize> = b.good.iter().map(|(k, _)| reads_of(&b.data, k)).collect();
    let out = deps
        .handle(
            report_event(&b.reports, &manifest),
            Invocation::local(Duration::from_secs(120)),
        )
        .await
        .expect("report read");
    // Healthy objects were never downloaded; the doubtful ones were.
    for ((key, _), before) in b.good.iter().zip(before) {
        let reads = reads_of(&b.data, key) - before;
        if b.corrupt.contains(key) {
            assert!(reads >= 1, "{key} verified end to end");
        } else {
            assert_eq!(reads, 0, "{key} judged healthy without a GET");
        }
    }
    let summary = &out.body["reports"][0]["summary"];
    assert_eq!(out.body["reports"][0]["complete"], true, "{}", out.body);
    assert_eq!(summary["rows"], 13, "{summary}");
    assert_eq!(summary["healthy"], 9, "{summary}");
    assert_eq!(summary["mismatched"], 3, "{summary}");
    assert_eq!(summary["restored"], 3, "{summary}");
    assert_eq!(summary["unjudgeable"], 1, "{summary}");
    assert_eq!(summary["files_refused"], 0, "{summary}");
    // Exactly the mismatches were restored, and they hold the good bytes again.
    let acted: Vec<&str> = out
        .audits
        .iter()
        .filter(|a| a.decision == Outcome::Acted)
        .map(|a| a.target.as_str())
        .collect();
    let want: Vec<String> = b
        .corrupt
        .iter()
        .map(|k| format!("{}/{k}", b.data))
        .collect();
    assert_eq!(acted, want);
    for (key, good) in &b.good {
        let now = w.get(&b.data, key).await.expect("object").0;
        assert!(&now == good, "{key} holds its good bytes");
    }
    assert!(
        reads_of(&b.data, "data/zz-no-digest.bin") == 0,
        "unreadable by design (KMS, no digest): skipped on its head"
    );
    // The summary is audited (and told, since something was wrong); a redelivery does nothing.
    let summary_rec = out.audits.last().expect("summary record");
    assert_eq!(summary_rec.trigger, "compute-checksum-report");
    assert_eq!(summary_rec.details["summary"]["restored"], 3);
    let again = deps
        .handle(
            report_event(&b.reports, &manifest),
            Invocation::local(Duration::from_secs(120)),
        )
        .await
        .expect("report read");
    assert_eq!(again.audits.len(), 1, "{:#?}", again.audits);
    assert_eq!(again.audits[0].code, "already-done");
}

#[tokio::test]
async fn a_report_file_that_does_not_match_its_md5_is_not_trusted() {
    let w = World::new().await;
    let b = bucketful(&w, 4, 4).await;
    let manifest = write_report(
        &w,
        &b.reports,
        "selfheal-checksum-reports/",
        &b.data,
        &b.rows,
        10,
    )
    .await;
    // Someone rewrites the CSV after S3 wrote it: every row now "healthy" and the MD5 stale.
    let text = w.get(&b.reports, &manifest).await.expect("manifest").0;
    let m: Value = serde_json::from_slice(&text).expect("json");
    let csv_key = m["Results"][0]["Key"].as_str().expect("key").to_string();
    let csv = String::from_utf8(w.get(&b.reports, &csv_key).await.expect("csv").0).expect("utf8");
    w.put(
        &b.reports,
        &csv_key,
        format!("{csv}\n").as_bytes(),
        &[],
        None,
    )
    .await;
    let deps = deps_of(&w, &b, &[]);
    let out = deps
        .handle(
            report_event(&b.reports, &manifest),
            Invocation::local(Duration::from_secs(120)),
        )
        .await
        .expect("report read");
    let summary = &out.body["reports"][0]["summary"];
    assert_eq!(summary["files_refused"], 1, "{summary}");
    assert_eq!(summary["rows"], 0, "{summary}");
    assert!(
        out.audits.iter().any(|a| a.code == "report-file-corrupt"),
        "{:#?}",
        out.audits
    );
    assert!(!w.inbox.drain().await.is_empty(), "a person hears of it");
}

/// The first run stops (its row budget spent, as at a deadline); the report's event is
/// retried and the second run resumes where the first stopped: every row is judged once,
/// every mismatch restored once.
#[tokio::test]
async fn a_report_resumes_after_an_interrupted_run() {
    let w = World::new().await;
    let b = bucketful(&w, 12, 3).await;
    let manifest = write_report(
        &w,
        &b.reports,
        "selfheal-checksum-reports/",
        &b.data,
        &b.rows,
        4,
    )
    .await;
    let deps = deps_of(&w, &b, &[("SELFHEAL_RESTORE_SCRUB_MAX_OBJECTS", "5")]);
    let ev = report_event(&b.reports, &manifest);
    let mut runs = 0;
    let out = loop {
        runs += 1;
        assert!(runs <= 5, "the report never finished");
        match deps
            .handle(ev.clone(), Invocation::local(Duration::from_secs(120)))
            .await
        {
            Ok(out) => break out,
            Err(e) => assert!(e.to_string().contains("not finished"), "{e}"),
        }
    };
    assert_eq!(runs, 3, "13 rows at 5 per run");
    let summary = &out.body["reports"][0]["summary"];
    assert_eq!(summary["rows"], 13, "{summary}");
    assert_eq!(summary["healthy"], 8, "{summary}");
    assert_eq!(summary["mismatched"], 4, "{summary}");
    assert_eq!(summary["restored"], 4, "{summary}");
    // Each object was looked at once (one HEAD by the first pass), not once per run.
    for (key, _) in &b.good {
        let heads = recorded_requests(&[&format!("/{}/{key}", b.data)])
            .iter()
            .filter(|r| r["method"] == "HEAD")
            .count();
        let restored = b.corrupt.contains(key);
        assert!(
            if restored { heads >= 1 } else { heads == 1 },
            "{key}: {heads} HEADs"
        );
    }
    assert_eq!(
        copies_onto(&b.data, "data/"),
        4,
        "each mismatch restored once"
    );
}

/// A killed invocation (the harness drops the handler's future at its deadline, as Lambda
/// ends the process) while one object's HEAD hangs: the next run resumes from the last saved
/// position (every 50 rows), never from the start.
#[tokio::test]
async fn a_report_killed_mid_way_resumes_from_its_saved_position() {
    let w = World::new().await;
    let b = bucketful(&w, 80, 20).await;
    let manifest = write_report(
        &w,
        &b.reports,
        "selfheal-checksum-reports/",
        &b.data,
        &b.rows,
        200,
    )
    .await;
    let ev = report_event(&b.reports, &manifest);
    let mut deps = deps_of(&w, &b, &[]);
    let mut hooked = Hooked::new(&w);
    hooked.slow_head = Some(("data/0060.bin".to_string(), Duration::from_secs(60)));
    deps.objects = Arc::new(hooked);
    let killed = tokio::time::timeout(
        Duration::from_secs(8),
        deps.handle(ev.clone(), Invocation::local(Duration::from_secs(120))),
    )
    .await;
    assert!(
        killed.is_err(),
        "the first run hangs on data/0060.bin and is killed"
    );
    let name = progress_name(&b.reports, &manifest);
    let deps = deps_of(&w, &b, &[]);
    let out = deps
        .handle(ev, Invocation::local(Duration::from_secs(120)))
        .await
        .expect("report read");
    let summary = &out.body["reports"][0]["summary"];
    assert_eq!(out.body["reports"][0]["complete"], true, "{}", out.body);
    // 50 rows were saved before the kill; the second run judged the other 31.
    assert_eq!(summary["rows"], 81, "{summary} ({name})");
    // A restore that finished after the last save (in flight at the kill) is found restored
    // by the second run: verified, not copied again.
    let n = |k: &str| summary[k].as_u64().unwrap_or(0);
    assert_eq!(n("restored") + n("verified_ok"), 4, "{summary}");
    assert_eq!(n("mismatched"), 4, "{summary}");
    let heads = |key: &str| {
        recorded_requests(&[&format!("/{}/{key}", b.data)])
            .iter()
            .filter(|r| r["method"] == "HEAD")
            .count()
    };
    assert_eq!(
        heads("data/0010.bin"),
        1,
        "a row before the saved position is not looked at again"
    );
    assert_eq!(
        heads("data/0055.bin"),
        2,
        "a row after it is looked at again"
    );
    assert_eq!(
        copies_onto(&b.data, "data/"),
        4,
        "each mismatch restored once"
    );
}

/// A report longer than one invocation goes on through a one-time schedule calling the
/// function back (the emulator stores schedules but never fires them: the test invokes the
/// handler with exactly the stored input), not through Lambda's two retries.
#[tokio::test]
async fn a_long_report_continues_through_its_follow_up_schedule() {
    let w = World::new().await;
    let b = bucketful(&w, 12, 3).await;
    let manifest = write_report(
        &w,
        &b.reports,
        "selfheal-checksum-reports/",
        &b.data,
        &b.rows,
        4,
    )
    .await;
    let schedules = Schedules::new(&w.sdk).await;
    let mut deps = deps_of(&w, &b, &[("SELFHEAL_RESTORE_SCRUB_MAX_OBJECTS", "5")]);
    deps.follow_ups =
        Some(schedules.follow_ups("arn:aws:lambda:us-east-1:123456789012:function:restore-object"));
    let first = deps
        .handle(
            report_event(&b.reports, &manifest),
            Invocation::local(Duration::from_secs(120)),
        )
        .await
        .expect("an unfinished report with a follow-up is not an error");
    assert_eq!(
        first.body["reports"][0]["complete"], false,
        "{}",
        first.body
    );
    let note = first.audits.last().expect("record");
    assert_eq!(note.code, "report-continues", "{note:#?}");
    // The group also holds the restores' own verifications (closed loop): the report's
    // continuation is the one named after the report.
    let reports: Vec<String> = schedules
        .names()
        .await
        .into_iter()
        .filter(|n| n.contains("-report-"))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let stored = schedules.get(&reports[0]).await;
    let input = stored
        .target()
        .and_then(|t| t.input())
        .expect("target input");
    let payload: Value = serde_json::from_str(input).expect("the input is JSON");
    assert_eq!(
        payload,
        json!({"report": {"bucket": b.reports, "key": manifest}})
    );
    let mut runs = 1;
    let out = loop {
        runs += 1;
        assert!(runs <= 5, "the report never finished");
        let out = deps
            .handle(payload.clone(), Invocation::local(Duration::from_secs(120)))
            .await
            .expect("report read");
        if out.body["complete"] == true {
            break out;
        }
    };
    assert_eq!(runs, 3, "13 rows at 5 per invocation");
    assert_eq!(out.body["summary"]["rows"], 13, "{}", out.body);
    assert_eq!(out.body["summary"]["restored"], 4, "{}", out.body);
    let continuations = schedules
        .names()
        .await
        .into_iter()
        .filter(|n| n.contains("-report-"))
        .count();
    assert_eq!(continuations, 2, "one follow-up per unfinished run");
}
