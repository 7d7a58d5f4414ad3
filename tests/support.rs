//! Test harness for the integration tests: the emulator's SDK configuration, unique resource
//! names, and the shared resources every function needs (ledger table, topic with a queue
//! subscribed so notifications can be read back).
//!
//! The tests need a running emulator: `make test` starts one (scripts/with-moto.sh) and sets
//! `AWS_ENDPOINT_URL`. Each test creates its own uniquely named resources, so tests run in
//! parallel against one emulator without seeing each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use selfheal_aws::aws_config::SdkConfig;
use selfheal_aws::aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use selfheal_aws::dynamodb::{KEY_ATTRIBUTE, TTL_ATTRIBUTE};
use selfheal_core::Policy;
use serde_json::Value;

/// SDK configuration pointing at the emulator. Panics (failing the test) with instructions
/// when no emulator is configured: these tests must not silently pass without one.
pub async fn emulator() -> SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost"),
        "integration tests need the local emulator: run them with `make test` \
         (or scripts/with-moto.sh cargo test -p selfheal-tests); AWS_ENDPOINT_URL={endpoint:?}"
    );
    selfheal_aws::sdk_config().await
}

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Creates a ledger table shaped like the one in template.yaml (pk, TTL on expires_at).
pub async fn ledger_table(sdk: &SdkConfig) -> String {
    let ddb = selfheal_aws::aws_sdk_dynamodb::Client::new(sdk);
    let name = unique("ledger");
    ddb.create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(KEY_ATTRIBUTE)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(KEY_ATTRIBUTE)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create ledger table");
    ddb.update_time_to_live()
        .table_name(&name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("enable TTL");
    name
}

/// A topic with an SQS queue subscribed, so a test can read back what was notified.
pub struct Inbox {
    pub topic_arn: String,
    pub queue_url: String,
    sqs: selfheal_aws::aws_sdk_sqs::Client,
}

impl Inbox {
    pub async fn new(sdk: &SdkConfig) -> Self {
        let sns = selfheal_aws::aws_sdk_sns::Client::new(sdk);
        let sqs = selfheal_aws::aws_sdk_sqs::Client::new(sdk);
        let name = unique("notices");
        let topic_arn = sns
            .create_topic()
            .name(&name)
            .send()
            .await
            .expect("create topic")
            .topic_arn
            .expect("topic arn");
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(selfheal_aws::aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|a| {
                a.get(&selfheal_aws::aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .expect("queue arn");
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .expect("subscribe");
        Self {
            topic_arn,
            queue_url,
            sqs,
        }
    }

    /// Every notification delivered so far, as (subject, parsed message).
    pub async fn drain(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        loop {
            let msgs = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive")
                .messages
                .unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let envelope: Value =
                    serde_json::from_str(m.body().unwrap_or("{}")).expect("SNS envelope");
                let subject = envelope["Subject"].as_str().unwrap_or_default().to_string();
                let message = serde_json::from_str(envelope["Message"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null);
                out.push((subject, message));
                if let Some(h) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(h)
                        .send()
                        .await
                        .expect("delete");
                }
            }
        }
        out
    }
}

/// A policy for `function` with the given settings (as environment variable pairs).
/// `SELFHEAL_AUTONOMY` is `auto` unless `pairs` say otherwise, so tests of other things keep
/// testing them as before the autonomy gate (tests/*::autonomy_* set their own level).
pub fn policy(function: &str, pairs: &[(&str, &str)]) -> Policy {
    let m: HashMap<String, String> = std::iter::once(&("SELFHEAL_AUTONOMY", "auto"))
        .chain(pairs.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Policy::from_lookup(function, |k| m.get(k).cloned()).expect("valid policy")
}

/// A sample event from `events/`, as JSON.
pub fn sample_event(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Replaces every string equal to `from` anywhere in `v` (also inside JSON-in-a-string, as in
/// SNS messages) with `to`. Sample events name a placeholder resource; tests point them at
/// the resources they created.
pub fn retarget(v: &Value, from: &str, to: &str) -> Value {
    match v {
        Value::String(s) if s == from => Value::String(to.to_string()),
        Value::String(s) if s.contains(from) && (s.starts_with('{') || s.starts_with('[')) => {
            match serde_json::from_str::<Value>(s) {
                Ok(inner) => Value::String(retarget(&inner, from, to).to_string()),
                Err(_) => v.clone(),
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| retarget(x, from, to)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), retarget(x, from, to)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Turns on the emulator's request log (idempotent). Call before the requests to observe.
pub async fn start_request_log() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let addr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    // A bare HTTP/1.0 request: the harness needs no HTTP client dependency for one POST.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect to emulator");
    let req = format!("POST /moto-api/recorder/start-recording HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("start recording");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.expect("recorder response");
    assert!(
        resp.starts_with(b"HTTP/1.1 200") || resp.starts_with(b"HTTP/1.0 200"),
        "recorder: {}",
        String::from_utf8_lossy(&resp)
    );
}

/// The body of a recorded request as text (the recorder base64-encodes binary bodies).
pub fn request_body(r: &Value) -> String {
    use base64::Engine;
    let raw = r["body"].as_str().unwrap_or_default();
    if r["body_encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    } else {
        raw.to_string()
    }
}

/// The requests on one line of the emulator's log. The emulator's threads append entries
/// with buffered writes, so under parallel tests a long entry is sometimes split around a
/// short one, which then sits mid-line after a fragment: every complete entry on the line is
/// recovered (a fragment is not an entry and is dropped).
fn entries(line: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return vec![v];
    }
    line.match_indices("{\"headers\"")
        .filter_map(|(i, _)| {
            serde_json::Deserializer::from_str(&line[i..])
                .into_iter::<Value>()
                .next()
                .and_then(Result::ok)
        })
        .collect()
}

/// Every request the emulator recorded whose URL or body contains all of `needles`.
pub fn recorded_requests(needles: &[&str]) -> Vec<Value> {
    let path = std::env::var("SELFHEAL_EMULATOR_REQUEST_LOG")
        .expect("SELFHEAL_EMULATOR_REQUEST_LOG (set by scripts/with-moto.sh)");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .flat_map(entries)
        .filter(|r| {
            let body = request_body(r);
            let target = r["headers"]["X-Amz-Target"].as_str().unwrap_or_default();
            let hay = format!("{} {target} {body}", r["url"].as_str().unwrap_or_default());
            needles.iter().all(|n| hay.contains(n))
        })
        .collect()
}

/// The AWS operations the emulator received that mention any of `needles`, in order (the
/// request log is shared by every test running at once: the needles pick one test's resources).
pub fn operations(needles: &[&str]) -> Vec<String> {
    recorded_requests(&[])
        .iter()
        .filter_map(|r| {
            let body = request_body(r);
            let url = r["url"].as_str().unwrap_or_default();
            let target = r["headers"]["X-Amz-Target"].as_str().unwrap_or_default();
            let hay = format!("{url} {target} {body}");
            if !needles.iter().any(|n| hay.contains(n)) {
                return None;
            }
            let method = r["method"].as_str().unwrap_or_default();
            let op = if url.contains("/schedules/") {
                // EventBridge Scheduler is REST: the method names the operation.
                match method {
                    "POST" => "CreateSchedule",
                    "DELETE" => "DeleteSchedule",
                    "PUT" => "UpdateSchedule",
                    _ => "GetSchedule",
                }
                .to_string()
            } else if let Some((_, op)) = target.rsplit_once('.') {
                op.to_string()
            } else if let Some(a) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
                a.to_string()
            } else {
                url.rsplit("/operation/")
                    .next()?
                    .split('?')
                    .next()?
                    .to_string()
            };
            Some(op)
        })
        .collect()
}

/// A schedule group of its own in the emulator, for the follow-ups of one test. The emulator
/// stores schedules but never fires them: a test reads a schedule back and invokes the handler
/// with exactly its target's input.
pub struct Schedules {
    pub group: String,
    pub client: selfheal_aws::aws_sdk_scheduler::Client,
}

/// The role and function ARNs a test's schedules name (the emulator invokes nothing).
pub const SCHEDULER_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/selfheal-scheduler";

impl Schedules {
    pub async fn new(sdk: &SdkConfig) -> Self {
        let client = selfheal_aws::aws_sdk_scheduler::Client::new(sdk);
        let group = unique("followups");
        client
            .create_schedule_group()
            .name(&group)
            .send()
            .await
            .expect("create schedule group");
        Self { group, client }
    }

    /// Settings for a function's follow-ups into this group, targeting `function_arn`.
    pub fn settings(&self, function_arn: &str) -> selfheal_core::episode::SchedulerSettings {
        selfheal_core::episode::SchedulerSettings {
            group: self.group.clone(),
            role_arn: SCHEDULER_ROLE_ARN.into(),
            target_arn: Some(function_arn.into()),
        }
    }

    pub fn follow_ups(
        &self,
        function_arn: &str,
    ) -> std::sync::Arc<dyn selfheal_core::ports::scheduler::FollowUps> {
        std::sync::Arc::new(selfheal_aws::scheduler::SchedulerFollowUps::new(
            self.client.clone(),
            self.settings(function_arn),
        ))
    }

    /// The names of the schedules in the group now.
    pub async fn names(&self) -> Vec<String> {
        self.client
            .list_schedules()
            .group_name(&self.group)
            .send()
            .await
            .expect("list schedules")
            .schedules()
            .iter()
            .filter_map(|s| s.name().map(str::to_string))
            .collect()
    }

    /// One schedule as stored.
    pub async fn get(
        &self,
        name: &str,
    ) -> selfheal_aws::aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput {
        self.client
            .get_schedule()
            .group_name(&self.group)
            .name(name)
            .send()
            .await
            .expect("get schedule")
    }

    /// The only schedule in the group, as the event Scheduler would deliver: its target's input.
    pub async fn only_event(&self) -> Value {
        let names = self.names().await;
        assert_eq!(names.len(), 1, "{names:?}");
        let s = self.get(&names[0]).await;
        let input = s.target().and_then(|t| t.input()).expect("target input");
        serde_json::from_str(input).expect("the input is JSON")
    }
}

/// The approval key (SSM SecureString) and the approval URL (SSM String) of one test's
/// function, as the template would create them (the key by the operator), and the settings
/// that name them (issue 17).
pub struct Approvals {
    pub key_parameter: String,
    pub url_parameter: String,
    /// The key's value, for tests that sign tokens of their own (expired, other target).
    pub key: String,
}

/// The function URL the approval links name (the emulator has no function URLs: the tests
/// hand the link's token to the handler as Lambda would).
pub const APPROVAL_URL: &str = "https://approvals.lambda-url.us-east-1.on.aws/";

impl Approvals {
    pub async fn new(sdk: &SdkConfig) -> Self {
        use selfheal_aws::aws_sdk_ssm::types::ParameterType;
        let ssm = selfheal_aws::aws_sdk_ssm::Client::new(sdk);
        let key_parameter = format!("/{}/approval-key", unique("selfheal"));
        let url_parameter = format!("/{}/approval-url", unique("selfheal"));
        let key = format!("{}-0123456789abcdefghijklmnopqrstuvwxyz", unique("key"));
        for (name, value, kind) in [
            (&key_parameter, &key, ParameterType::SecureString),
            (
                &url_parameter,
                &APPROVAL_URL.to_string(),
                ParameterType::String,
            ),
        ] {
            ssm.put_parameter()
                .name(name)
                .value(value)
                .r#type(kind)
                .send()
                .await
                .expect("put parameter");
        }
        Self {
            key_parameter,
            url_parameter,
            key,
        }
    }

    /// The settings that point a function at this key and URL, at autonomy `level`.
    pub fn settings<'a>(&'a self, level: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("SELFHEAL_AUTONOMY", level),
            (
                "SELFHEAL_APPROVAL_KEY_PARAMETER",
                self.key_parameter.as_str(),
            ),
            (
                "SELFHEAL_APPROVAL_URL_PARAMETER",
                self.url_parameter.as_str(),
            ),
        ]
    }
}

/// The approve and reject tokens of the one approval notice among `notices` (read from the
/// emulated SNS notice, as a person would click them).
pub fn approval_tokens(notices: &[(String, Value)]) -> (String, String) {
    let asks: Vec<&Value> = notices
        .iter()
        .filter(|(s, _)| s.contains("asks approval"))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(asks.len(), 1, "one approval notice: {notices:?}");
    let token = |field: &str| {
        let link = asks[0][field].as_str().expect("link in the notice");
        assert!(link.starts_with(APPROVAL_URL), "{link}");
        selfheal_lambda::approval::token_of(link)
            .expect("token")
            .to_string()
    };
    (token("approve_url"), token("reject_url"))
}

/// The status code of a function-URL response.
pub fn status_of(body: &Value) -> u64 {
    body["statusCode"].as_u64().unwrap_or_default()
}
