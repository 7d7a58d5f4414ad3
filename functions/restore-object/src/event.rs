//! The trigger shapes restore-object understands:
//!
//! * an S3 event notification (`Records[]`, keys URL-encoded: `+` is a space, then
//!   percent-decoding);
//! * an EventBridge "Object Created" event from S3 (keys verbatim);
//! * a scrub request: a direct invoke `{"bucket", "prefix", "continuation"?}` (also what an
//!   EventBridge schedule with a constant input delivers), or a plain EventBridge
//!   "Scheduled Event", which scrubs `SELFHEAL_RESTORE_SCRUB_TARGETS` and resumes from the
//!   cursor kept in the ledger table;
//! * an S3 Batch Operations `LambdaInvoke` invocation (schema 1.0 or 2.0, [`crate::batch`]);
//! * a direct invoke `{"report": {"bucket", "key"}}` naming a Compute checksum completion
//!   report's `manifest.json` (to run or resume the two-pass verification by hand; the usual
//!   trigger is the manifest's own object event, routed by the handler).

use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::settings::Location;

/// One object named by an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// `s3-notification` or `eventbridge`.
    pub trigger: &'static str,
    pub bucket: String,
    pub key: String,
    /// `ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`, `Object Created`, ...
    pub event_name: String,
    pub version_id: Option<String>,
}

/// A record this function does not act on (a deletion, a restore from Glacier, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub trigger: &'static str,
    pub target: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubRequest {
    pub targets: Vec<Location>,
    /// Resume after this key (direct invoke). Scheduled scrubs read their cursor instead.
    pub continuation: Option<String>,
    pub scheduled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Objects(Vec<Result<ObjectEvent, Ignored>>),
    /// `s3:TestEvent`, sent when a notification is configured: nothing to do.
    TestEvent,
    Scrub(ScrubRequest),
    /// S3 Batch Operations: one result per task is answered.
    Batch(crate::batch::Invocation),
    /// A completion report's manifest, named by a direct invoke.
    Report {
        bucket: String,
        key: String,
    },
}

/// Decodes an S3 notification key: `+` is a space, then percent-decoding (UTF-8).
pub fn decode_notification_key(raw: &str) -> Result<String, String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|e| format!("key {raw:?} is not URL-encoded UTF-8: {e}"))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, p| v.get(p))
        .and_then(Value::as_str)
}

fn notification_record(r: &Value) -> Result<Result<ObjectEvent, Ignored>, String> {
    const T: &str = "s3-notification";
    let name = r
        .get("eventName")
        .and_then(Value::as_str)
        .ok_or("record without eventName")?;
    let bucket = str_at(r, &["s3", "bucket", "name"]).ok_or("record without s3.bucket.name")?;
    let raw_key = str_at(r, &["s3", "object", "key"]).ok_or("record without s3.object.key")?;
    let key = decode_notification_key(raw_key)?;
    if !name.starts_with("ObjectCreated:") {
        return Ok(Err(Ignored {
            trigger: T,
            target: format!("{bucket}/{key}"),
            why: format!("{name} is not an object creation"),
        }));
    }
    Ok(Ok(ObjectEvent {
        trigger: T,
        bucket: bucket.to_string(),
        key,
        event_name: name.to_string(),
        version_id: str_at(r, &["s3", "object", "versionId"]).map(str::to_string),
    }))
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Reads the event. `Err` is a malformed event (to be rejected and audited).
pub fn parse(event: &Value, scrub_targets: &[Location]) -> Result<Request, String> {
    if crate::batch::is_invocation(event) {
        return crate::batch::parse(event)
            .map(Request::Batch)
            .map_err(|e| e.to_string());
    }
    if let Some(report) = event.get("report") {
        let bucket = non_empty(report.get("bucket").and_then(Value::as_str));
        let key = non_empty(report.get("key").and_then(Value::as_str));
        return match (bucket, key) {
            (Some(bucket), Some(key)) => Ok(Request::Report { bucket, key }),
            _ => Err(
                "a report request names its manifest: {\"report\": {\"bucket\", \"key\"}}".into(),
            ),
        };
    }
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        if records.is_empty() {
            return Err("Records[] is empty".into());
        }
        let items = records
            .iter()
            .enumerate()
            .map(|(i, r)| notification_record(r).map_err(|e| format!("Records[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Request::Objects(items));
    }
    if event.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Request::TestEvent);
    }
    let source = event.get("source").and_then(Value::as_str);
    let detail_type = event.get("detail-type").and_then(Value::as_str);
    match (source, detail_type) {
        (Some("aws.s3"), Some(dt)) => {
            const T: &str = "eventbridge";
            let d = event
                .get("detail")
                .ok_or("EventBridge event without detail")?;
            let bucket = str_at(d, &["bucket", "name"]).ok_or("detail without bucket.name")?;
            // EventBridge carries keys verbatim (not URL-encoded, unlike notifications).
            let key = str_at(d, &["object", "key"]).ok_or("detail without object.key")?;
            if dt != "Object Created" {
                return Ok(Request::Objects(vec![Err(Ignored {
                    trigger: T,
                    target: format!("{bucket}/{key}"),
                    why: format!("{dt:?} is not an object creation"),
                })]));
            }
            Ok(Request::Objects(vec![Ok(ObjectEvent {
                trigger: T,
                bucket: bucket.to_string(),
                key: key.to_string(),
                event_name: dt.to_string(),
                version_id: str_at(d, &["object", "version-id"]).map(str::to_string),
            })]))
        }
        (Some("aws.events"), Some("Scheduled Event")) => {
            if scrub_targets.is_empty() {
                return Err(
                    "scheduled scrub, but SELFHEAL_RESTORE_SCRUB_TARGETS names no bucket".into(),
                );
            }
            Ok(Request::Scrub(ScrubRequest {
                targets: scrub_targets.to_vec(),
                continuation: None,
                scheduled: true,
            }))
        }
        (Some(s), dt) => Err(format!(
            "event from {s:?} ({dt:?}) is not one restore-object handles"
        )),
        (None, _) => {
            let scrub = event.get("scrub").unwrap_or(event);
            let bucket = non_empty(scrub.get("bucket").and_then(Value::as_str)).ok_or(
                "not an S3 notification, an EventBridge event or a scrub request {bucket, prefix}",
            )?;
            let prefix = scrub
                .get("prefix")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let continuation = ["continuation", "continuation_token", "start_after"]
                .iter()
                .find_map(|k| non_empty(scrub.get(*k).and_then(Value::as_str)));
            Ok(Request::Scrub(ScrubRequest {
                targets: vec![Location { bucket, prefix }],
                continuation,
                scheduled: false,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn notification_keys_are_decoded() {
        let cases = [
            ("plain/key.txt", "plain/key.txt"),
            ("with+space.txt", "with space.txt"),
            ("literal%2Bplus.txt", "literal+plus.txt"),
            ("percent%25sign", "percent%sign"),
            ("dir%2Fsub/file", "dir/sub/file"),
            ("caf%C3%A9+%E2%9C%93.parquet", "café ✓.parquet"),
            ("a%20b", "a b"),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_notification_key(raw).unwrap(), want, "{raw}");
        }
        assert!(decode_notification_key("bad%FF%FE").is_err());
    }

    fn record(name: &str, key: &str) -> Value {
        json!({"eventSource": "aws:s3", "eventName": name,
               "s3": {"bucket": {"name": "b"}, "object": {"key": key, "size": 3, "versionId": "v1"}}})
    }

    #[test]
    fn notification_records() {
        let ev = json!({"Records": [record("ObjectCreated:CompleteMultipartUpload", "a+b%2B"),
                                    record("ObjectRemoved:Delete", "x")]});
        let Request::Objects(items) = parse(&ev, &[]).unwrap() else {
            panic!()
        };
        let first = items[0].clone().unwrap();
        assert_eq!(
            (
                first.bucket.as_str(),
                first.key.as_str(),
                first.version_id.as_deref()
            ),
            ("b", "a b+", Some("v1"))
        );
        assert!(items[1].is_err());
        assert!(parse(&json!({"Records": []}), &[]).is_err());
        assert!(parse(
            &json!({"Records": [{"eventName": "ObjectCreated:Put"}]}),
            &[]
        )
        .is_err());
    }

    #[test]
    fn eventbridge_and_scrub_shapes() {
        let ev = json!({"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "a+b c", "version-id": "v"}}});
        let Request::Objects(items) = parse(&ev, &[]).unwrap() else {
            panic!()
        };
        assert_eq!(items[0].clone().unwrap().key, "a+b c");
        let scrub = parse(
            &json!({"bucket": "b", "prefix": "p/", "continuation": "p/k"}),
            &[],
        )
        .unwrap();
        assert_eq!(
            scrub,
            Request::Scrub(ScrubRequest {
                targets: vec![Location {
                    bucket: "b".into(),
                    prefix: "p/".into()
                }],
                continuation: Some("p/k".into()),
                scheduled: false
            })
        );
        let sched = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        assert!(parse(&sched, &[]).is_err());
        let targets = [Location::parse("b/p").unwrap()];
        assert!(matches!(
            parse(&sched, &targets),
            Ok(Request::Scrub(ScrubRequest {
                scheduled: true,
                ..
            }))
        ));
        assert_eq!(
            parse(
                &json!({"Event": "s3:TestEvent", "Service": "Amazon S3"}),
                &[]
            )
            .unwrap(),
            Request::TestEvent
        );
        assert!(parse(&json!({"hello": 1}), &[]).is_err());
        assert!(parse(&json!({"source": "aws.ec2", "detail-type": "x"}), &[]).is_err());
    }

    #[test]
    fn every_sample_event_for_this_function_parses() {
        let targets = [Location::parse("example-bucket/data/").unwrap_or(Location {
            bucket: "b".into(),
            prefix: String::new(),
        })];
        let mut seen = 0;
        for (name, v) in selfheal_core::samples::for_function(crate::FUNCTION).unwrap() {
            let r = parse(&v, &targets).unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Request::Objects(items) = &r {
                assert!(items.iter().all(|i| i.is_ok()), "{name}: {items:?}");
            }
            seen += 1;
        }
        assert!(seen >= 8, "expected samples for every shape, found {seen}");
    }

    /// Issue 13: structure-aware fuzzing of S3 notifications, EventBridge object events and
    /// scrub requests (from every sample): never a panic, every rejection one line, and every
    /// per-object problem one line too. `SELFHEAL_FUZZ_CASES` sizes it.
    #[test]
    fn fuzzed_object_events_never_panic_and_reject_in_one_line() {
        use selfheal_core::testing::fuzz;
        let targets = [Location {
            bucket: "example-bucket".into(),
            prefix: "data/".into(),
        }];
        let seeds: Vec<Value> = selfheal_core::samples::for_function(crate::FUNCTION)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let report = fuzz::run(&seeds, fuzz::cases(), 17, |v| match parse(v, &targets)? {
            Request::Objects(items) => {
                for item in items {
                    if let Err(ignored) = item {
                        // An ignored record's reason becomes an audit reason: one line.
                        if ignored.why.contains('\n') || ignored.why.trim().is_empty() {
                            return Err(format!("{}\n(reason of an ignored record)", ignored.why));
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        });
        fuzz::assert_clean("object events", &report);
        assert!(report.accepted > 0 && report.rejected > 0, "{report:?}");
    }
}
