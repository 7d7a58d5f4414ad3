//! scale-group through its real handler against the emulator: launch template, Auto Scaling
//! groups, ledger table and topic are created per test; the groups' desired capacity, the
//! SetDesiredCapacity requests, the ledger and the notices are read back from the emulator.

use std::collections::HashMap;
use std::sync::Arc;

use crate::support::*;
use scale_group::{Deps, Settings, FUNCTION};
use selfheal_aws::autoscaling::AutoScalingGroups;
use selfheal_aws::aws_config::SdkConfig;
use selfheal_aws::aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use selfheal_aws::aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
use selfheal_aws::cloudwatch::CloudWatchHistory;
use selfheal_core::ports::groups::{async_trait, GroupFacts, Groups};
use selfheal_core::{AuditRecord, AwsError, Outcome};
use selfheal_core::{Function, HandlerError, Invocation};
use serde_json::Value;

/// The group the sample events name.
const PLACEHOLDER: &str = "selfheal-sample-asg";

struct World {
    sdk: SdkConfig,
    table: String,
    inbox: Inbox,
    template: String,
}

impl World {
    async fn new() -> Self {
        let sdk = emulator().await;
        start_request_log().await;
        let table = ledger_table(&sdk).await;
        let inbox = Inbox::new(&sdk).await;
        let template = unique("web-template");
        selfheal_aws::aws_sdk_ec2::Client::new(&sdk)
            .create_launch_template()
            .launch_template_name(&template)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id("ami-12c6146b")
                    .instance_type(InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .expect("create launch template");
        Self {
            sdk,
            table,
            inbox,
            template,
        }
    }

    fn asg(&self) -> selfheal_aws::aws_sdk_autoscaling::Client {
        selfheal_aws::aws_sdk_autoscaling::Client::new(&self.sdk)
    }

    /// Guardrail and function settings from the same environment-variable pairs.
    fn deps(&self, extra: &[(&str, &str)]) -> Deps {
        self.deps_with(extra, Arc::new(AutoScalingGroups(self.asg())))
    }

    fn deps_with(&self, extra: &[(&str, &str)], groups: Arc<dyn Groups>) -> Deps {
        let mut pairs = vec![
            ("SELFHEAL_LEDGER_TABLE", self.table.as_str()),
            ("SELFHEAL_TOPIC_ARN", self.inbox.topic_arn.as_str()),
        ];
        pairs.extend_from_slice(extra);
        let common =
            selfheal_lambda::bootstrap::common(FUNCTION, policy(FUNCTION, &pairs), &self.sdk)
                .expect("common");
        let m: HashMap<&str, &str> = pairs.iter().copied().collect();
        let settings =
            Settings::from_lookup(|k| m.get(k).map(|v| v.to_string())).expect("settings");
        Deps {
            common,
            groups,
            history: Arc::new(CloudWatchHistory::new(&self.sdk)),
            settings,
        }
    }

    /// A group of the given size; `managed` adds the opt-in tag.
    async fn group(&self, min: i32, max: i32, desired: i32, managed: bool) -> String {
        let name = unique("web-asg");
        let tag = |k: &str, v: &str| {
            Tag::builder()
                .resource_id(&name)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(false)
                .build()
        };
        let mut req = self
            .asg()
            .create_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_name(&self.template)
                    .version("$Latest")
                    .build(),
            )
            .min_size(min)
            .max_size(max)
            .desired_capacity(desired)
            .availability_zones("us-east-1a")
            .tags(tag("team", "web"));
        if managed {
            req = req.tags(tag("selfheal:managed", "true"));
        }
        req.send().await.expect("create auto scaling group");
        name
    }

    async fn desired(&self, name: &str) -> i32 {
        self.asg()
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .expect("describe group")
            .auto_scaling_groups()
            .first()
            .and_then(|g| g.desired_capacity())
            .expect("desired capacity")
    }

    async fn ledger_actions(&self, group: &str) -> Option<usize> {
        let out = selfheal_aws::aws_sdk_dynamodb::Client::new(&self.sdk)
            .get_item()
            .table_name(&self.table)
            .key(
                "pk",
                selfheal_aws::aws_sdk_dynamodb::types::AttributeValue::S(format!(
                    "{FUNCTION}#{group}"
                )),
            )
            .send()
            .await
            .expect("get item");
        out.item.map(|i| {
            i.get("actions")
                .and_then(|v| v.as_l().ok())
                .map_or(0, |l| l.len())
        })
    }
}

/// The SetDesiredCapacity requests the emulator received for `group`, as the capacities asked.
fn capacities_set(group: &str) -> Vec<String> {
    recorded_requests(&[
        "Action=SetDesiredCapacity",
        &format!("AutoScalingGroupName={group}"),
    ])
    .iter()
    .filter_map(|r| {
        let raw = r["body"].as_str()?;
        let body = if r["body_encoded"].as_bool() == Some(true) {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
            String::from_utf8(bytes).ok()?
        } else {
            raw.to_string()
        };
        body.split('&')
            .find_map(|kv| kv.strip_prefix("DesiredCapacity="))
            .map(str::to_string)
    })
    .collect()
}

fn event(sample: &str, group: &str) -> Value {
    retarget(&sample_event(sample), PLACEHOLDER, group)
}

async fn run(deps: &Deps, event: Value) -> Result<Vec<AuditRecord>, HandlerError> {
    deps.handle(event, Invocation::local(std::time::Duration::from_secs(60)))
        .await
        .map(|r| r.audits)
}

async fn run_one(deps: &Deps, event: Value) -> AuditRecord {
    let audits = run(deps, event).await.expect("handled");
    assert_eq!(audits.len(), 1, "{audits:?}");
    audits.into_iter().next().expect("one record")
}

#[tokio::test]
async fn every_alarm_shape_scales_out_a_managed_group() {
    let w = World::new().await;
    let deps = w.deps(&[]);
    for sample in [
        "scale-group-eventbridge.json",
        "scale-group-sns.json",
        "scale-group-lambda-action.json",
    ] {
        let g = w.group(1, 10, 2, true).await;
        let rec = run_one(&deps, event(sample, &g)).await;
        assert_eq!(rec.decision, Outcome::Acted, "{sample}: {rec:?}");
        assert_eq!(rec.target, g);
        // A small breach (72 vs 60): ceil(2 × 1.2) = 3, one more instance.
        assert_eq!(w.desired(&g).await, 3, "{sample}");
        assert_eq!(capacities_set(&g), ["3"], "{sample}");
        assert_eq!(
            (
                &rec.details["desired_before"],
                &rec.details["desired_after"]
            ),
            (&Value::from(2), &Value::from(3)),
            "{sample}"
        );
        assert_eq!(rec.details["step"]["size"], 1, "{sample}");
        assert!(
            rec.details["step"]["arithmetic"]
                .as_str()
                .is_some_and(|a| a.contains("ceil(2 × 1.20) = 3")),
            "{sample}: {}",
            rec.details["step"]
        );
        assert_eq!(w.ledger_actions(&g).await, Some(1), "{sample}");
        // Forecast sizing (the default) read the group's load history — the emulator has
        // none — and fell back to the severity step, saying so.
        let sizing = &rec.details["sizing"];
        assert_eq!(sizing["setting"], "forecast", "{sample}: {sizing}");
        assert_eq!(sizing["used"], "severity", "{sample}: {sizing}");
        assert_eq!(
            sizing["forecast"]["fallback"]["reason"], "too-little-history",
            "{sample}: {sizing}"
        );
        assert!(
            sizing["why"]
                .as_str()
                .is_some_and(|w| w.contains("severity step instead")),
            "{sample}: {sizing}"
        );
        let fetches =
            recorded_requests(&["Action=GetMetricData", "selfheal_in_service", g.as_str()]);
        assert_eq!(fetches.len(), 1, "{sample}: one GetMetricData request");
    }
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 3, "one notice per resize: {notices:?}");
    assert!(notices
        .iter()
        .all(|(subject, msg)| subject.contains("acted on") && msg["decision"] == "acted"));
}

#[tokio::test]
async fn the_step_grows_with_the_breach_up_to_the_max_step() {
    let w = World::new().await;
    let deps = w.deps(&[]);
    // 150 vs 60: severity 2.5; ceil(2 × 2.5) = 5, three more.
    let g = w.group(1, 20, 2, true).await;
    let rec = run_one(&deps, event("scale-group-eventbridge-severe.json", &g)).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(w.desired(&g).await, 5);
    assert_eq!(rec.details["step"]["size"], 3);
    // From 4: ceil(4 × 2.5) = 10 would be six more; the max step (4) bounds it to 8.
    let g = w.group(1, 20, 4, true).await;
    let rec = run_one(&deps, event("scale-group-eventbridge-severe.json", &g)).await;
    assert_eq!(w.desired(&g).await, 8, "{rec:?}");
    assert_eq!(rec.details["step"]["proposed"], 10);
    // A configured max step of 2 bounds it further.
    let deps = w.deps(&[("SELFHEAL_SCALE_MAX_STEP", "2")]);
    let g = w.group(1, 20, 4, true).await;
    run_one(&deps, event("scale-group-eventbridge-severe.json", &g)).await;
    assert_eq!(w.desired(&g).await, 6);
    assert_eq!(capacities_set(&g), ["6"]);
}

#[tokio::test]
async fn clamps_at_max_then_escalates_capacity_exhausted() {
    let w = World::new().await;
    let deps = w.deps(&[("SELFHEAL_COOLDOWN_SECONDS", "0")]);
    let g = w.group(1, 4, 3, true).await;
    // Would be 3 → 8; the group's MaxSize is 4. Clamped in our code: the emulator would
    // accept 8 (AWS refuses a desired capacity above MaxSize).
    let rec = run_one(&deps, event("scale-group-eventbridge-severe.json", &g)).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(rec.details["clamped_at"], "MaxSize");
    assert_eq!(w.desired(&g).await, 4);
    assert_eq!(capacities_set(&g), ["4"], "never asks above MaxSize");

    let rec = run_one(&deps, event("scale-group-sns.json", &g)).await;
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "at-bound"),
        "{rec:?}"
    );
    assert_eq!(rec.details["escalate"], true);
    assert!(rec.reason.contains("capacity exhausted"), "{}", rec.reason);
    assert_eq!(w.desired(&g).await, 4);
    assert_eq!(capacities_set(&g).len(), 1);

    let notices = w.inbox.drain().await;
    let subjects: Vec<&str> = notices.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects[0].contains("acted on"), "{subjects:?}");
    assert!(subjects[1].contains("ESCALATION for"), "{subjects:?}");
    let (_, msg) = &notices[1];
    assert_eq!(msg["code"], "at-bound");
    assert_eq!(msg["target"], g.as_str());
    assert!(
        msg["reason"]
            .as_str()
            .is_some_and(|r| r.contains("capacity exhausted") && r.contains("operator")),
        "{msg}"
    );
}

#[tokio::test]
async fn scale_in_alarm_shrinks_the_group_and_stops_at_min() {
    let w = World::new().await;
    let deps = w.deps(&[
        ("SELFHEAL_SCALE_RULES", "web-asg-cpu-low=in"),
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
    ]);
    // 9 vs 20 below: severity 2.22; ceil(6 / 2.22) = 3, three fewer.
    let g = w.group(1, 10, 6, true).await;
    let rec = run_one(&deps, event("scale-group-scale-in.json", &g)).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(rec.details["plan"]["direction"], "in");
    assert_eq!(w.desired(&g).await, 3);

    // From 4 with MinSize 3: 4 → 2 is cut at MinSize 3.
    let g = w.group(3, 10, 4, true).await;
    let rec = run_one(&deps, event("scale-group-scale-in.json", &g)).await;
    assert_eq!(rec.details["clamped_at"], "MinSize", "{rec:?}");
    assert_eq!(w.desired(&g).await, 3);
    // At MinSize: nothing to remove, and nothing to escalate.
    let rec = run_one(&deps, event("scale-group-scale-in.json", &g)).await;
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "at-bound")
    );
    assert!(rec.details.get("escalate").is_none(), "{rec:?}");
    assert_eq!(w.desired(&g).await, 3);
    assert_eq!(capacities_set(&g), ["3"]);
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 2, "two resizes, no escalation: {notices:?}");
}

#[tokio::test]
async fn scale_in_direction_from_an_alarm_tag() {
    let w = World::new().await;
    let deps = w.deps(&[]);
    let g = w.group(1, 10, 6, true).await;
    let mut ev = event("scale-group-eventbridge.json", &g);
    ev["detail"]["tags"] = serde_json::json!({"selfheal:scale": "in:1"});
    // A scale-out sample turned into a scale-in by the tag, with its own max step of 1.
    let rec = run_one(&deps, ev).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(rec.details["plan"]["direction_from"], "alarm-tag");
    assert_eq!(w.desired(&g).await, 5);
}

#[tokio::test]
async fn second_alarm_within_the_cooldown_is_refused() {
    let w = World::new().await;
    let deps = w.deps(&[]);
    let g = w.group(1, 10, 2, true).await;
    let first = run_one(&deps, event("scale-group-eventbridge.json", &g)).await;
    assert_eq!(first.decision, Outcome::Acted);
    let again = run_one(&deps, event("scale-group-lambda-action.json", &g)).await;
    assert_eq!(
        (again.decision, again.code.as_str()),
        (Outcome::Skipped, "cooldown"),
        "{again:?}"
    );
    assert_eq!(w.desired(&g).await, 3);
    assert_eq!(capacities_set(&g), ["3"]);
    assert_eq!(w.ledger_actions(&g).await, Some(1));
    assert_eq!(
        w.inbox.drain().await.len(),
        1,
        "cooldowns are audited, not paged"
    );
}

#[tokio::test]
async fn group_without_the_opt_in_tag_is_left_alone() {
    let w = World::new().await;
    let deps = w.deps(&[]);
    let g = w.group(1, 10, 2, false).await;
    let rec = run_one(&deps, event("scale-group-eventbridge.json", &g)).await;
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "not-opted-in"),
        "{rec:?}"
    );
    // An unmanaged group at MaxSize does not page anyone either.
    let full = w.group(1, 2, 2, false).await;
    let rec = run_one(&deps, event("scale-group-eventbridge.json", &full)).await;
    assert_eq!(rec.code, "not-opted-in", "{rec:?}");
    for name in [&g, &full] {
        assert_eq!(w.desired(name).await, 2);
        assert!(capacities_set(name).is_empty());
        assert!(w.ledger_actions(name).await.is_none());
    }
    assert!(w.inbox.drain().await.is_empty());
}

#[tokio::test]
async fn alarm_naming_no_group_is_skipped_unless_mapped() {
    let w = World::new().await;
    let rec = run_one(&w.deps(&[]), sample_event("scale-group-no-group.json")).await;
    assert_eq!(
        (rec.decision, rec.code.as_str(), rec.target.as_str()),
        (Outcome::Skipped, "no-target", "checkout-latency-high"),
        "{rec:?}"
    );
    // The same alarm, mapped to a group in the settings: 2.0 vs 1.0 doubles 2 → 4.
    let g = w.group(1, 10, 2, true).await;
    let mapping = format!("checkout-latency-high={g}");
    let deps = w.deps(&[("SELFHEAL_SCALE_GROUPS", mapping.as_str())]);
    let rec = run_one(&deps, sample_event("scale-group-no-group.json")).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(rec.details["plan"]["group_from"], "setting");
    assert_eq!(w.desired(&g).await, 4);

    let missing = run_one(
        &w.deps(&[]),
        event("scale-group-eventbridge.json", "no-such-group"),
    )
    .await;
    assert_eq!(missing.code, "target-not-found", "{missing:?}");
}

#[tokio::test]
async fn recovery_to_ok_does_not_scale() {
    let w = World::new().await;
    let deps = w.deps(&[]);
    let g = w.group(1, 10, 5, true).await;
    let rec = run_one(&deps, event("scale-group-ok.json", &g)).await;
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "not-alarm-transition"),
        "{rec:?}"
    );
    assert_eq!(w.desired(&g).await, 5);
    assert!(capacities_set(&g).is_empty());
    assert!(w.ledger_actions(&g).await.is_none());
}

#[tokio::test]
async fn dry_run_and_kill_switch_change_nothing() {
    let w = World::new().await;
    let g = w.group(1, 10, 2, true).await;
    let ev = event("scale-group-eventbridge-severe.json", &g);
    let dry = run_one(&w.deps(&[("SELFHEAL_DRY_RUN", "true")]), ev.clone()).await;
    assert_eq!(dry.decision, Outcome::DryRun, "{dry:?}");
    assert!(dry.reason.contains("2 → 5"), "{}", dry.reason);
    let off = run_one(&w.deps(&[("SELFHEAL_ENABLED", "false")]), ev.clone()).await;
    assert_eq!(
        (off.decision, off.code.as_str()),
        (Outcome::Skipped, "kill-switch")
    );
    assert_eq!(w.desired(&g).await, 2);
    assert!(capacities_set(&g).is_empty());
    assert!(w.ledger_actions(&g).await.is_none());
    let on = run_one(&w.deps(&[]), ev).await;
    assert_eq!(on.decision, Outcome::Acted);
    assert_eq!(w.desired(&g).await, 5);
}

/// The emulator never reports scaling activities (DescribeScalingActivities is always
/// empty), so an unfinished one is added on top of the real group's facts.
struct BusyGroups(AutoScalingGroups);

#[async_trait]
impl Groups for BusyGroups {
    async fn facts(&self, name: &str) -> Result<Option<GroupFacts>, AwsError> {
        Ok(self.0.facts(name).await?.map(|mut f| {
            f.activities_in_progress
                .push("a-1 (InProgress): Launching a new EC2 instance".into());
            f
        }))
    }
    async fn set_desired(&self, name: &str, desired: u32) -> Result<(), AwsError> {
        self.0.set_desired(name, desired).await
    }
}

#[tokio::test]
async fn no_change_while_a_scaling_activity_is_in_progress() {
    let w = World::new().await;
    let deps = w.deps_with(&[], Arc::new(BusyGroups(AutoScalingGroups(w.asg()))));
    let g = w.group(1, 10, 2, true).await;
    let rec = run_one(&deps, event("scale-group-eventbridge.json", &g)).await;
    assert_eq!(
        (rec.decision, rec.code.as_str()),
        (Outcome::Skipped, "change-in-progress"),
        "{rec:?}"
    );
    assert_eq!(w.desired(&g).await, 2);
    assert!(capacities_set(&g).is_empty());
    assert!(w.ledger_actions(&g).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_alarms_for_one_group_resize_it_once() {
    let w = World::new().await;
    let deps = Arc::new(w.deps(&[]));
    let g = w.group(1, 20, 2, true).await;
    let ev = event("scale-group-eventbridge-severe.json", &g);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (deps, ev) = (deps.clone(), ev.clone());
            tokio::spawn(async move { run_one(&deps, ev).await })
        })
        .collect();
    let mut acted = 0;
    for t in tasks {
        let rec = t.await.expect("task");
        match rec.decision {
            Outcome::Acted => acted += 1,
            Outcome::Skipped => assert_eq!(rec.code, "cooldown", "{rec:?}"),
            other => panic!("unexpected {other:?}: {rec:?}"),
        }
    }
    assert_eq!(acted, 1);
    assert_eq!(w.desired(&g).await, 5, "one step, not six stacked");
    assert_eq!(capacities_set(&g), ["5"]);
}

#[tokio::test]
async fn malformed_event_is_rejected_and_reported() {
    let w = World::new().await;
    let err = run(&w.deps(&[]), serde_json::json!({"hello": "world"}))
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Malformed(_)), "{err}");
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].1["code"], "malformed-event");
}
