//! Graduated autonomy on reboot-instance (issue 17) against the emulator: each level, and the
//! one-click approval followed from the emulated SNS notice's links (GET, then POST), refused
//! once the alarm cleared, replayed, expired, or for another target or function.

use selfheal_core::approval::{self, Key, Request};
use selfheal_core::Response;

use super::*;

impl World {
    /// Deps at autonomy `level` with an approval key and URL, followed up in `schedules`.
    fn at_level(&self, approvals: &Approvals, level: &str, schedules: &Schedules) -> Deps {
        self.followed(schedules, &approvals.settings(level))
    }
}

async fn call(deps: &Deps, event: Value) -> Response {
    deps.handle(event, Invocation::local(std::time::Duration::from_secs(60)))
        .await
        .expect("a function-URL request never ends in an error")
}

fn page(r: &Response) -> &str {
    r.body["body"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn autonomy_observe_never_reboots_and_tells_a_person_each_time() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = w.at_level(&approvals, "observe", &schedules);
    let id = w.instance(true).await;
    let ev = w.alarm_event("reboot-instance-eventbridge.json", &id).await;
    for _ in 0..2 {
        let rec = one(run(&deps, ev.clone()).await.unwrap());
        assert_eq!(rec.decision, Outcome::DryRun, "{rec:?}");
        assert_eq!(rec.details["autonomy"]["level"], "observe");
        assert_eq!(rec.details["autonomy"]["source"], "setting");
    }
    assert_eq!(reboots_of(&id), 0);
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices.iter().all(|(s, _)| s.contains("would act on")));
    assert!(schedules.names().await.is_empty(), "nothing to verify");
}

#[tokio::test]
async fn autonomy_first_dry_run_is_the_default_and_a_repeat_in_the_window_reboots() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    // Unset (empty counts as unset): the reboot's default, first-dry-run.
    let deps = w.at_level(&approvals, "", &schedules);
    let id = w.instance(true).await;
    let ev = w.alarm_event("reboot-instance-eventbridge.json", &id).await;
    let first = one(run(&deps, ev.clone()).await.unwrap());
    assert_eq!(first.decision, Outcome::DryRun, "{first:?}");
    assert_eq!(first.details["autonomy"]["source"], "default");
    assert_eq!(first.details["autonomy"]["level"], "first-dry-run");
    assert_eq!(reboots_of(&id), 0);
    let notices = w.inbox.drain().await;
    assert_eq!(notices.len(), 1, "the dry run is notified: {notices:?}");
    let repeat = one(run(&deps, ev).await.unwrap());
    assert_eq!(repeat.decision, Outcome::Acted, "{repeat:?}");
    assert_eq!(reboots_of(&id), 1);
    assert_eq!(
        schedules.names().await.len(),
        1,
        "followed up like any reboot"
    );
    // Another instance's first occurrence is its own.
    let other = w.instance(true).await;
    let ev = w
        .alarm_event("reboot-instance-eventbridge.json", &other)
        .await;
    assert_eq!(one(run(&deps, ev).await.unwrap()).decision, Outcome::DryRun);
}

#[tokio::test]
async fn autonomy_auto_reboots_and_a_tag_holds_one_instance_back() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = w.at_level(&approvals, "auto", &schedules);
    let id = w.instance(true).await;
    let ev = w.alarm_event("reboot-instance-eventbridge.json", &id).await;
    let rec = one(run(&deps, ev).await.unwrap());
    assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
    assert_eq!(rec.details["autonomy"]["decision"], "act");
    assert_eq!(reboots_of(&id), 1);
    // The instance's tag wins over the setting.
    let held = w.instance(true).await;
    selfheal_aws::aws_sdk_ec2::Client::new(&w.sdk)
        .create_tags()
        .resources(&held)
        .tags(
            Tag::builder()
                .key("selfheal:autonomy")
                .value("observe")
                .build(),
        )
        .send()
        .await
        .expect("tag");
    let ev = w
        .alarm_event("reboot-instance-eventbridge.json", &held)
        .await;
    let rec = one(run(&deps, ev).await.unwrap());
    assert_eq!(rec.decision, Outcome::DryRun, "{rec:?}");
    assert_eq!(rec.details["autonomy"]["source"], "target-tag");
    assert_eq!(reboots_of(&held), 0);
}

#[tokio::test]
async fn autonomy_approve_reboots_only_once_a_person_approves_then_follows_up() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = w.at_level(&approvals, "approve", &schedules);
    let id = w.instance(true).await;
    let ev = w.alarm_event("reboot-instance-eventbridge.json", &id).await;
    let asked = one(run(&deps, ev.clone()).await.unwrap());
    assert_eq!(asked.code, "approval-asked", "{asked:?}");
    assert_eq!(reboots_of(&id), 0, "nothing acted before approval");
    let (approve, reject) = approval_tokens(&w.inbox.drain().await);
    // A link preview (GET) shows the page and does nothing.
    let viewed = call(&deps, selfheal_lambda::approval::get_event(&approve)).await;
    assert_eq!(status_of(&viewed.body), 200);
    assert!(page(&viewed).contains(&id));
    assert_eq!(reboots_of(&id), 0);
    // The button (POST): decided again now, through the guardrails, rebooted, followed up.
    let approved = call(&deps, selfheal_lambda::approval::post_event(&approve)).await;
    assert_eq!(status_of(&approved.body), 200, "{}", page(&approved));
    assert_eq!(reboots_of(&id), 1);
    let rec = approved
        .audits
        .iter()
        .find(|r| r.decision == Outcome::Acted);
    let rec = rec.expect("an acted record");
    assert_eq!(rec.details["autonomy"]["decision"], "act");
    assert!(rec.details["approval"]["id"].is_string(), "{rec:?}");
    assert_eq!(rec.details["follow_up"]["status"], "scheduled", "{rec:?}");
    let verification = schedules.only_event().await;
    w.set_alarm(&alarm_name(&ev), StateValue::Ok).await;
    let healed = one(run(&deps, verification).await.unwrap());
    assert_eq!(healed.outcome, Some(Heal::Healed), "{healed:?}");
    // Replayed, or its reject twin: refused, nothing more done.
    for again in [approve, reject] {
        let r = call(&deps, selfheal_lambda::approval::post_event(&again)).await;
        assert_eq!(status_of(&r.body), 409, "{}", page(&r));
        assert_eq!(r.audits[0].code, "approval-already-used");
    }
    assert_eq!(reboots_of(&id), 1);
}

#[tokio::test]
async fn autonomy_a_rejected_reboot_is_never_done() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = w.at_level(&approvals, "approve", &schedules);
    let id = w.instance(true).await;
    let ev = w.alarm_event("reboot-instance-eventbridge.json", &id).await;
    one(run(&deps, ev).await.unwrap());
    let (approve, reject) = approval_tokens(&w.inbox.drain().await);
    let r = call(&deps, selfheal_lambda::approval::post_event(&reject)).await;
    assert_eq!(status_of(&r.body), 200);
    assert_eq!(r.audits[0].code, "approval-rejected");
    let r = call(&deps, selfheal_lambda::approval::post_event(&approve)).await;
    assert_eq!(status_of(&r.body), 409);
    assert_eq!(reboots_of(&id), 0);
}

#[tokio::test]
async fn autonomy_approval_after_the_alarm_cleared_is_refused_and_audited() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = w.at_level(&approvals, "approve", &schedules);
    let id = w.instance(true).await;
    let ev = w.alarm_event("reboot-instance-eventbridge.json", &id).await;
    one(run(&deps, ev.clone()).await.unwrap());
    let (approve, _) = approval_tokens(&w.inbox.drain().await);
    w.set_alarm(&alarm_name(&ev), StateValue::Ok).await;
    let r = call(&deps, selfheal_lambda::approval::post_event(&approve)).await;
    assert_eq!(status_of(&r.body), 409, "{}", page(&r));
    assert!(page(&r).contains("situation changed"), "{}", page(&r));
    let rec = one(r.audits);
    assert_eq!(rec.decision, Outcome::Skipped, "{rec:?}");
    assert_eq!(rec.target, id);
    assert_eq!(reboots_of(&id), 0);
    assert!(schedules.names().await.is_empty());
}

#[tokio::test]
async fn autonomy_expired_foreign_and_other_target_tokens_act_on_nothing() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let deps = w.at_level(&approvals, "approve", &schedules);
    let id = w.instance(true).await;
    let other = w.instance(true).await;
    let ev = w.alarm_event("reboot-instance-eventbridge.json", &id).await;
    one(run(&deps, ev).await.unwrap());
    let (approve, _) = approval_tokens(&w.inbox.drain().await);
    let key = Key::from_parameter(&approvals.key).unwrap();
    let claims = approval::verify(&approve, &key, chrono::Utc::now().timestamp(), FUNCTION)
        .expect("a genuine token");
    let now = chrono::Utc::now().timestamp();
    let request = |function: &str, target: &str| Request {
        function: function.into(),
        target: target.into(),
        action: claims.action.clone(),
        episode: claims.episode.clone(),
        id: claims.id.clone(),
    };
    // Signed with the real key: what only a leak of the key, or a bug, could produce.
    let expired = approval::issue(&request(FUNCTION, &id), &key, now - 7200, 3600).approve;
    let foreign = approval::issue(&request("scale-group", &id), &key, now, 600).approve;
    let other_target = approval::issue(&request(FUNCTION, &other), &key, now, 600).approve;
    for (token, status, code) in [
        (expired, 410, "approval-refused"),
        (foreign, 403, "approval-refused"),
        (other_target, 409, "approval-unknown"),
    ] {
        let r = call(&deps, selfheal_lambda::approval::post_event(&token)).await;
        assert_eq!(status_of(&r.body), status, "{code}: {}", page(&r));
        assert_eq!(r.audits[0].code, code, "{:?}", r.audits);
    }
    assert_eq!(reboots_of(&id) + reboots_of(&other), 0);
    // A tampered token.
    let mut tampered = approve.clone();
    tampered.replace_range(5..6, if &approve[5..6] == "A" { "B" } else { "A" });
    let r = call(&deps, selfheal_lambda::approval::post_event(&tampered)).await;
    assert_eq!(status_of(&r.body), 403, "{}", page(&r));
    // The refusals used nothing up: the genuine link still works, once.
    let r = call(&deps, selfheal_lambda::approval::post_event(&approve)).await;
    assert_eq!(status_of(&r.body), 200, "{}", page(&r));
    assert_eq!((reboots_of(&id), reboots_of(&other)), (1, 0));
}

#[tokio::test]
async fn autonomy_the_stop_start_rung_asks_a_person_by_default() {
    let w = World::new().await;
    let (approvals, schedules) = (Approvals::new(&w.sdk).await, Schedules::new(&w.sdk).await);
    let mut env = approvals.settings("");
    env.extend([
        ("SELFHEAL_COOLDOWN_SECONDS", "0"),
        ("SELFHEAL_REBOOT_LADDER", "reboot,stop-start,notify"),
        ("SELFHEAL_REBOOT_ALLOW_STOP_START", "true"),
    ]);
    let deps = w.followed(&schedules, &env);
    let id = w.instance(true).await;
    let ev = w.alarm_event("reboot-instance-eventbridge.json", &id).await;
    // The reboot's default (first-dry-run): a dry run, then the repeat reboots.
    assert_eq!(
        one(run(&deps, ev.clone()).await.unwrap()).decision,
        Outcome::DryRun
    );
    assert_eq!(one(run(&deps, ev).await.unwrap()).decision, Outcome::Acted);
    w.inbox.drain().await;
    // Still in ALARM at the verification: the stop-start rung is asked, not done.
    let asked = one(run(&deps, schedules.only_event().await).await.unwrap());
    assert_eq!(asked.code, "approval-asked", "{asked:?}");
    assert_eq!(asked.details["autonomy"]["level"], "approve");
    let stops = || recorded_requests(&["Action=StopInstances", &format!("InstanceId.1={id}")]);
    assert!(stops().is_empty());
    let (approve, _) = approval_tokens(&w.inbox.drain().await);
    let r = call(&deps, selfheal_lambda::approval::post_event(&approve)).await;
    assert_eq!(status_of(&r.body), 200, "{}", page(&r));
    assert_eq!(stops().len(), 1, "stopped once approved");
    let start = schedules.only_event().await;
    assert_eq!(start["selfheal-verify"]["phase"], "start");
}
