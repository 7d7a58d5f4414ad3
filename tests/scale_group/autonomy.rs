//! Graduated autonomy on scale-group (issue 17) against the emulator: each level, and the
//! one-click approval followed from the emulated SNS notice's links.

use selfheal_core::approval::{self, Key, Request};
use selfheal_core::Response;

use super::*;

async fn call(deps: &Deps, event: Value) -> Response {
    deps.handle(event, Invocation::local(std::time::Duration::from_secs(60)))
        .await
        .expect("a function-URL request never ends in an error")
}

fn page(r: &Response) -> &str {
    r.body["body"].as_str().unwrap_or_default()
}

/// Followed-up deps at autonomy `level`, with an approval key and URL.
fn at_level(w: &World, approvals: &Approvals, level: &str, schedules: &Schedules) -> Deps {
    followed(w, schedules, &approvals.settings(level))
}

#[tokio::test]
async fn autonomy_observe_never_resizes_and_tells_a_person() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = at_level(&w, &approvals, "observe", &schedules);
    let g = w.group(1, 10, 2, true).await;
    let (ev, _) = w.alarm_event("scale-group-eventbridge.json", &g).await;
    for _ in 0..2 {
        let rec = run_one(&deps, ev.clone()).await;
        assert_eq!(rec.decision, Outcome::DryRun, "{rec:?}");
        assert_eq!(rec.details["autonomy"]["level"], "observe");
    }
    assert!(capacities_set(&g).is_empty());
    assert_eq!(w.desired(&g).await, 2);
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(schedules.names().await.is_empty());
}

#[tokio::test]
async fn autonomy_first_dry_run_is_the_default_and_a_repeat_in_the_window_resizes() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = at_level(&w, &approvals, "", &schedules);
    let g = w.group(1, 10, 2, true).await;
    let (ev, _) = w.alarm_event("scale-group-eventbridge.json", &g).await;
    let first = run_one(&deps, ev.clone()).await;
    assert_eq!(first.decision, Outcome::DryRun, "{first:?}");
    assert_eq!(first.details["autonomy"]["source"], "default");
    assert_eq!(first.details["autonomy"]["level"], "first-dry-run");
    assert_eq!(w.desired(&g).await, 2);
    assert_eq!(w.inbox.drain().await.len(), 1, "the dry run is notified");
    let repeat = run_one(&deps, ev).await;
    assert_eq!(repeat.decision, Outcome::Acted, "{repeat:?}");
    assert!(w.desired(&g).await > 2);
    assert_eq!(
        schedules.names().await.len(),
        1,
        "followed up like any resize"
    );
}

#[tokio::test]
async fn autonomy_auto_resizes_and_an_alarm_tag_holds_it_back() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = at_level(&w, &approvals, "auto", &schedules);
    let g = w.group(1, 10, 2, true).await;
    let (ev, _) = w.alarm_event("scale-group-eventbridge.json", &g).await;
    let rec = run_one(&deps, ev).await;
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(rec.details["autonomy"]["decision"], "act");
    // The alarm's tag wins over the setting.
    let held = w.group(1, 10, 2, true).await;
    let (ev, name) = w.alarm_event("scale-group-eventbridge.json", &held).await;
    let arn = parse_alarms(&ev).unwrap()[0].arn.clone().expect("arn");
    w.cloudwatch()
        .tag_resource()
        .resource_arn(&arn)
        .tags(
            selfheal_aws::aws_sdk_cloudwatch::types::Tag::builder()
                .key("selfheal:autonomy")
                .value("observe")
                .build(),
        )
        .send()
        .await
        .expect("tag alarm");
    let rec = run_one(&deps, ev).await;
    assert_eq!(rec.decision, Outcome::DryRun, "{name}: {rec:?}");
    assert_eq!(rec.details["autonomy"]["source"], "alarm-tag");
    assert_eq!(w.desired(&held).await, 2);
}

#[tokio::test]
async fn autonomy_approve_resizes_only_once_a_person_approves_then_follows_up() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = at_level(&w, &approvals, "approve", &schedules);
    let g = w.group(1, 10, 2, true).await;
    let (ev, name) = w.alarm_event("scale-group-eventbridge.json", &g).await;
    let asked = run_one(&deps, ev).await;
    assert_eq!(asked.code, "approval-asked", "{asked:?}");
    assert_eq!(w.desired(&g).await, 2, "nothing acted before approval");
    let (approve, reject) = approval_tokens(&w.inbox.drain().await);
    let viewed = call(&deps, selfheal_lambda::approval::get_event(&approve)).await;
    assert_eq!(status_of(&viewed.body), 200);
    assert_eq!(w.desired(&g).await, 2, "a GET never acts");
    let approved = call(&deps, selfheal_lambda::approval::post_event(&approve)).await;
    assert_eq!(status_of(&approved.body), 200, "{}", page(&approved));
    assert_eq!(capacities_set(&g).len(), 1);
    assert!(w.desired(&g).await > 2);
    let rec = approved
        .audits
        .iter()
        .find(|r| r.decision == Outcome::Acted);
    let rec = rec.expect("an acted record");
    assert_eq!(rec.details["follow_up"]["status"], "scheduled", "{rec:?}");
    // The follow-up verifies it like any resize: the alarm cleared, healed.
    let verification = schedules.only_event().await;
    set_alarm(&w, &name, StateValue::Ok).await;
    let healed = run_one(&deps, verification).await;
    assert_eq!(healed.outcome, Some(Heal::Healed), "{healed:?}");
    for again in [approve, reject] {
        let r = call(&deps, selfheal_lambda::approval::post_event(&again)).await;
        assert_eq!(status_of(&r.body), 409, "{}", page(&r));
    }
    assert_eq!(capacities_set(&g).len(), 1, "acted once");
}

#[tokio::test]
async fn autonomy_approval_after_the_alarm_cleared_is_refused_and_audited() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = at_level(&w, &approvals, "approve", &schedules);
    let g = w.group(1, 10, 2, true).await;
    let (ev, name) = w.alarm_event("scale-group-eventbridge.json", &g).await;
    run_one(&deps, ev).await;
    let (approve, _) = approval_tokens(&w.inbox.drain().await);
    set_alarm(&w, &name, StateValue::Ok).await;
    let r = call(&deps, selfheal_lambda::approval::post_event(&approve)).await;
    assert_eq!(status_of(&r.body), 409, "{}", page(&r));
    let rec = r.audits.first().expect("audited");
    assert_eq!(rec.decision, Outcome::Skipped, "{rec:?}");
    assert_eq!(rec.target, g);
    assert!(capacities_set(&g).is_empty());
    assert_eq!(w.desired(&g).await, 2);
}

#[tokio::test]
async fn autonomy_expired_and_other_group_tokens_act_on_nothing() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = at_level(&w, &approvals, "approve", &schedules);
    let g = w.group(1, 10, 2, true).await;
    let other = w.group(1, 10, 2, true).await;
    let (ev, _) = w.alarm_event("scale-group-eventbridge.json", &g).await;
    run_one(&deps, ev).await;
    let (approve, _) = approval_tokens(&w.inbox.drain().await);
    let key = Key::from_parameter(&approvals.key).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = approval::verify(&approve, &key, now, FUNCTION).expect("genuine");
    let request = |target: &str| Request {
        function: FUNCTION.into(),
        target: target.into(),
        action: claims.action.clone(),
        episode: claims.episode.clone(),
        id: claims.id.clone(),
    };
    let expired = approval::issue(&request(&g), &key, now - 7200, 3600).approve;
    let other_group = approval::issue(&request(&other), &key, now, 600).approve;
    for (token, status) in [(expired, 410), (other_group, 409)] {
        let r = call(&deps, selfheal_lambda::approval::post_event(&token)).await;
        assert_eq!(status_of(&r.body), status, "{}", page(&r));
    }
    assert!(capacities_set(&g).is_empty() && capacities_set(&other).is_empty());
}
