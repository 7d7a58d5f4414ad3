//! reboot-instance through its real handler against the emulator: instances, ledger table,
//! topic and SSM parameter are created per test; effects are read back from the emulator.

use std::sync::Arc;

use crate::support::*;
use reboot_instance::{Deps, Settings, FUNCTION};
use selfheal_aws::aws_config::SdkConfig;
use selfheal_aws::aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use selfheal_aws::ec2::Ec2Instances;
use selfheal_core::{AuditRecord, Outcome};
use selfheal_core::{Function, HandlerError, Invocation};
use serde_json::Value;

const PLACEHOLDER: &str = "i-0123456789abcdef0";

struct World {
    sdk: SdkConfig,
    table: String,
    inbox: Inbox,
}

impl World {
    async fn new() -> Self {
        let sdk = emulator().await;
        start_request_log().await;
        let table = ledger_table(&sdk).await;
        let inbox = Inbox::new(&sdk).await;
        Self { sdk, table, inbox }
    }

    fn deps(&self, extra: &[(&str, &str)]) -> Deps {
        let mut pairs = vec![
            ("SELFHEAL_LEDGER_TABLE", self.table.as_str()),
            ("SELFHEAL_TOPIC_ARN", self.inbox.topic_arn.as_str()),
        ];
        pairs.extend_from_slice(extra);
        let common =
            selfheal_lambda::bootstrap::common(FUNCTION, policy(FUNCTION, &pairs), &self.sdk)
                .expect("common");
        Deps {
            common,
            instances: Arc::new(Ec2Instances(selfheal_aws::aws_sdk_ec2::Client::new(
                &self.sdk,
            ))),
            history: Arc::new(selfheal_aws::cloudwatch::CloudWatchHistory::new(&self.sdk)),
            settings: Settings::default(),
        }
    }

    async fn instance(&self, tagged: bool) -> String {
        let ec2 = selfheal_aws::aws_sdk_ec2::Client::new(&self.sdk);
        let mut tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("Name").value(unique("web")).build());
        if tagged {
            tags = tags.tags(Tag::builder().key("selfheal:managed").value("true").build());
        }
        let out = ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .tag_specifications(tags.build())
            .send()
            .await
            .expect("run instance");
        out.instances()[0].instance_id().expect("id").to_string()
    }

    async fn ledger_item(&self, id: &str) -> Option<Value> {
        let ddb = selfheal_aws::aws_sdk_dynamodb::Client::new(&self.sdk);
        let out = ddb
            .get_item()
            .table_name(&self.table)
            .key(
                "pk",
                selfheal_aws::aws_sdk_dynamodb::types::AttributeValue::S(format!(
                    "{FUNCTION}#{id}"
                )),
            )
            .send()
            .await
            .expect("get item");
        out.item.map(|i| serde_json::json!({"version": i.get("version").and_then(|v| v.as_n().ok()).cloned(), "actions": i.get("actions").and_then(|v| v.as_l().ok()).map(|l| l.len())}))
    }
}

fn reboots_of(id: &str) -> usize {
    recorded_requests(&["Action=RebootInstances", &format!("InstanceId.1={id}")]).len()
}

async fn run(deps: &Deps, event: Value) -> Result<Vec<AuditRecord>, HandlerError> {
    deps.handle(event, Invocation::local(std::time::Duration::from_secs(60)))
        .await
        .map(|r| r.audits)
}

fn one(audits: Vec<AuditRecord>) -> AuditRecord {
    assert_eq!(audits.len(), 1, "{audits:?}");
    audits.into_iter().next().unwrap()
}

#[tokio::test]
async fn every_alarm_shape_reboots_a_tagged_running_instance() {
    let w = World::new().await;
    let deps = w.deps(&[]);
    for sample in [
        "reboot-instance-eventbridge.json",
        "reboot-instance-eventbridge-metric-math.json",
        "reboot-instance-sns.json",
        "reboot-instance-sns-metric-math.json",
        "reboot-instance-sns-anomaly.json",
        "reboot-instance-lambda-action.json",
        "reboot-instance-lambda-action-metric-math.json",
    ] {
        let id = w.instance(true).await;
        let rec = one(
            run(&deps, retarget(&sample_event(sample), PLACEHOLDER, &id))
                .await
                .unwrap(),
        );
        assert_eq!(rec.decision, Outcome::Acted, "{sample}: {rec:?}");
        assert_eq!(rec.target, id);
        assert_eq!(
            reboots_of(&id),
            1,
            "{sample}: exactly one RebootInstances call for {id}"
        );
        let item = w.ledger_item(&id).await.expect("ledger item written");
        assert_eq!(item["actions"], 1);
    }
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 7, "one notice per reboot: {notices:?}");
    assert!(notices
        .iter()
        .all(|(subject, msg)| subject.contains("acted on") && msg["decision"] == "acted"));
}

#[tokio::test]
async fn second_alarm_is_refused_by_cooldown_and_untagged_is_refused() {
    let w = World::new().await;
    let deps = w.deps(&[]);
    let id = w.instance(true).await;
    let ev = retarget(
        &sample_event("reboot-instance-eventbridge.json"),
        PLACEHOLDER,
        &id,
    );
    assert_eq!(
        one(run(&deps, ev.clone()).await.unwrap()).decision,
        Outcome::Acted
    );
    let again = one(run(&deps, ev).await.unwrap());
    assert_eq!(
        (again.decision, again.code.as_str()),
        (Outcome::Skipped, "cooldown")
    );
    assert_eq!(reboots_of(&id), 1);

    let untagged = w.instance(false).await;
    let rec = one(run(
        &deps,
        retarget(
            &sample_event("reboot-instance-sns.json"),
            PLACEHOLDER,
            &untagged,
        ),
    )
    .await
    .unwrap());
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "not-opted-in")
    );
    assert_eq!(reboots_of(&untagged), 0);
    assert!(w.ledger_item(&untagged).await.is_none());
    // Only the one reboot was notified: cooldown and opt-in refusals are audited, not paged.
    assert_eq!(w.inbox.drain().await.len(), 1);
}

#[tokio::test]
async fn non_actionable_alarms_are_skipped_with_reasons() {
    let w = World::new().await;
    let deps = w.deps(&[]);
    let id = w.instance(true).await;
    let ok = one(run(
        &deps,
        retarget(&sample_event("reboot-instance-ok.json"), PLACEHOLDER, &id),
    )
    .await
    .unwrap());
    assert_eq!(ok.code, "not-alarm-transition");
    for composite in [
        "reboot-instance-composite.json",
        "reboot-instance-lambda-action-composite.json",
    ] {
        let rec = one(run(&deps, sample_event(composite)).await.unwrap());
        assert_eq!(rec.code, "no-target", "{composite}");
    }
    let missing = one(run(
        &deps,
        retarget(
            &sample_event("reboot-instance-eventbridge.json"),
            PLACEHOLDER,
            "i-0000000000000dead",
        ),
    )
    .await
    .unwrap());
    assert_eq!(missing.code, "target-not-found");

    let stopped = w.instance(true).await;
    selfheal_aws::aws_sdk_ec2::Client::new(&w.sdk)
        .stop_instances()
        .instance_ids(&stopped)
        .send()
        .await
        .unwrap();
    let rec = one(run(
        &deps,
        retarget(
            &sample_event("reboot-instance-eventbridge.json"),
            PLACEHOLDER,
            &stopped,
        ),
    )
    .await
    .unwrap());
    assert_eq!(rec.code, "target-not-eligible");
    assert_eq!(reboots_of(&id) + reboots_of(&stopped), 0);
}

#[tokio::test]
async fn dry_run_and_kill_switch_change_nothing() {
    let w = World::new().await;
    let id = w.instance(true).await;
    let ev = retarget(
        &sample_event("reboot-instance-lambda-action.json"),
        PLACEHOLDER,
        &id,
    );

    let dry = one(run(&w.deps(&[("SELFHEAL_DRY_RUN", "true")]), ev.clone())
        .await
        .unwrap());
    assert_eq!(dry.decision, Outcome::DryRun);

    let param = unique("/selfheal/enabled");
    let ssm = selfheal_aws::aws_sdk_ssm::Client::new(&w.sdk);
    ssm.put_parameter()
        .name(&param)
        .value("off")
        .r#type(selfheal_aws::aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let killed = one(run(
        &w.deps(&[("SELFHEAL_KILL_SWITCH_PARAMETER", &param)]),
        ev.clone(),
    )
    .await
    .unwrap());
    assert_eq!(
        (killed.decision, killed.code.as_str()),
        (Outcome::Skipped, "kill-switch")
    );

    assert_eq!(reboots_of(&id), 0);
    assert!(
        w.ledger_item(&id).await.is_none(),
        "dry run and kill switch write nothing"
    );

    ssm.put_parameter()
        .name(&param)
        .value("on")
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let on = one(
        run(&w.deps(&[("SELFHEAL_KILL_SWITCH_PARAMETER", &param)]), ev)
            .await
            .unwrap(),
    );
    assert_eq!(on.decision, Outcome::Acted);
    assert_eq!(reboots_of(&id), 1);
}

#[tokio::test]
async fn cap_escalates_instead_of_acting() {
    let w = World::new().await;
    let deps = w.deps(&[
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
        ("SELFHEAL_TARGET_CAP", "2"),
    ]);
    let id = w.instance(true).await;
    let ev = retarget(
        &sample_event("reboot-instance-eventbridge.json"),
        PLACEHOLDER,
        &id,
    );
    let codes: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(one(run(&deps, ev.clone()).await.unwrap()).code);
        }
        v
    };
    assert_eq!(codes, ["acted", "acted", "target-cap-reached"]);
    assert_eq!(reboots_of(&id), 2);
    let subjects: Vec<String> = w.inbox.drain().await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        subjects.iter().filter(|s| s.contains("ESCALATION")).count(),
        1,
        "{subjects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_alarms_for_one_instance_reboot_it_once() {
    let w = World::new().await;
    let deps = Arc::new(w.deps(&[]));
    let id = w.instance(true).await;
    let ev = retarget(
        &sample_event("reboot-instance-eventbridge.json"),
        PLACEHOLDER,
        &id,
    );
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (deps, ev) = (deps.clone(), ev.clone());
            tokio::spawn(async move { one(run(&deps, ev).await.unwrap()) })
        })
        .collect();
    let mut acted = 0;
    for t in tasks {
        let rec = t.await.unwrap();
        match rec.decision {
            Outcome::Acted => acted += 1,
            Outcome::Skipped => assert_eq!(rec.code, "cooldown"),
            other => panic!("unexpected {other:?}: {rec:?}"),
        }
    }
    assert_eq!(acted, 1);
    assert_eq!(reboots_of(&id), 1);
}

#[tokio::test]
async fn malformed_event_is_rejected_and_reported() {
    let w = World::new().await;
    let deps = w.deps(&[]);
    let err = run(&deps, serde_json::json!({"hello": "world"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandlerError::Malformed(ref m) if m.contains("expected an EventBridge")),
        "{err}"
    );
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].1["code"], "malformed-event");
}
