use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use selfheal_core::approval::gate::{Ask, Autonomy, Gated};
use selfheal_core::approval::{self as tokens, Key, Request};
use selfheal_core::autonomy::Level;
use selfheal_core::testing::{self, MemoryIdempotency, MemoryParameters, RecordingNotifier};

use super::*;

const KEY: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
const URL: &str = "https://abc.lambda-url.eu-west-1.on.aws/";

struct World {
    c: Common,
    notices: Arc<RecordingNotifier>,
    reruns: AtomicUsize,
}

fn world(with_key: bool) -> World {
    let env = [
        ("SELFHEAL_AUTONOMY", "approve"),
        ("SELFHEAL_APPROVAL_KEY_PARAMETER", "/k"),
        ("SELFHEAL_APPROVAL_URL", URL),
    ];
    let (mut c, _) = testing::common("fn", &env);
    let notices = Arc::new(RecordingNotifier::default());
    let params = MemoryParameters::default();
    let params = if with_key {
        params.with("/k", KEY)
    } else {
        params
    };
    c.autonomy = Autonomy::new(c.guard.policy().autonomy.clone())
        .with_store(Arc::new(MemoryIdempotency::default()))
        .with_parameters(Arc::new(params))
        .with_notifier(Some(notices.clone()));
    World {
        c,
        notices,
        reruns: AtomicUsize::new(0),
    }
}

fn inv() -> Invocation {
    Invocation::local(Duration::from_secs(5))
}

fn ask<'a>(target: &'a str, event: &'a Value, approval: Option<&'a Approved>) -> Ask<'a> {
    Ask {
        target,
        action: "reboot",
        default: Level::FirstDryRun,
        target_tag: None,
        alarm_tag: None,
        episode: "ep-1",
        event,
        would: "reboot",
        approval,
    }
}

/// Asks approval for `target` and returns the (approve, reject) tokens from the notice.
async fn asked(w: &World, target: &str) -> (String, String) {
    let ev = json!({"target": target});
    let i = inv();
    let audit = w.c.audit_for(&i, "alarm", target);
    let g = w.c.autonomy_gate(&i, audit, ask(target, &ev, None)).await;
    assert!(matches!(g, Gated::Held(_)), "{g:?}");
    let (_, body) = w.notices.sent().pop().expect("a notice");
    let body: Value = serde_json::from_str(&body).unwrap();
    let t = |f: &str| token_of(body[f].as_str().unwrap()).unwrap().to_string();
    (t("approve_url"), t("reject_url"))
}

/// What a function does on approval: decides again from the kept event through the gate,
/// and "acts" (or, when `still_alarming` is false, stands down).
async fn call(w: &World, event: Value, still_alarming: bool) -> Response {
    let i = &inv();
    handle(&w.c, &event, i, |original, approved| async move {
        w.reruns.fetch_add(1, Ordering::SeqCst);
        let target = original["target"].as_str().unwrap_or("-").to_string();
        let audit = w.c.audit_for(i, "alarm", &target);
        let g =
            w.c.autonomy_gate(i, audit, ask(&target, &original, Some(&approved)))
                .await;
        Ok(vec![match g {
            Gated::Act(a) if still_alarming => a.acted(format!("rebooted {target}")),
            Gated::Act(a) => a.checked("not-alarming", "the alarm is OK now"),
            Gated::Held(r) => r,
        }])
    })
    .await
}

fn status(r: &Response) -> u64 {
    r.body["statusCode"].as_u64().unwrap()
}

#[tokio::test]
async fn get_shows_a_page_and_never_acts() {
    let w = world(true);
    let (approve, _) = asked(&w, "i-1").await;
    let r = call(&w, get_event(&approve), true).await;
    assert_eq!(status(&r), 200);
    assert!(r.body["body"].as_str().unwrap().contains("method=\"post\""));
    assert_eq!(w.reruns.load(Ordering::SeqCst), 0);
    assert_eq!(r.audits[0].code, "approval-viewed");
    // Still usable after it was viewed.
    let r = call(&w, post_event(&approve), true).await;
    assert_eq!(status(&r), 200, "{}", r.body);
}

#[tokio::test]
async fn an_approval_acts_once_and_its_twin_and_replays_are_refused() {
    let w = world(true);
    let (approve, reject) = asked(&w, "i-1").await;
    let r = call(&w, post_event(&approve), true).await;
    assert_eq!(status(&r), 200, "{}", r.body);
    assert!(r.body["body"].as_str().unwrap().contains("rebooted i-1"));
    assert_eq!(r.audits[0].decision, Outcome::Acted);
    assert_eq!(r.audits[0].details["autonomy"]["decision"], "act");
    for used in [get_event(&approve), get_event(&reject)] {
        let r = call(&w, used, true).await;
        assert_eq!(status(&r), 409, "a used link's page says so");
    }
    for replay in [post_event(&approve), post_event(&reject)] {
        let r = call(&w, replay, true).await;
        assert_eq!(status(&r), 409);
        assert_eq!(r.audits[0].code, "approval-already-used");
    }
    assert_eq!(w.reruns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_reject_does_nothing_and_kills_the_approve_link() {
    let w = world(true);
    let (approve, reject) = asked(&w, "i-1").await;
    let r = call(&w, post_event(&reject), true).await;
    assert_eq!(status(&r), 200);
    assert_eq!(r.audits[0].code, "approval-rejected");
    let r = call(&w, post_event(&approve), true).await;
    assert_eq!(status(&r), 409);
    assert_eq!(w.reruns.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_approval_after_the_state_changed_is_refused_with_its_page() {
    let w = world(true);
    let (approve, _) = asked(&w, "i-1").await;
    let r = call(&w, post_event(&approve), false).await;
    assert_eq!(status(&r), 409, "{}", r.body);
    assert!(r.body["body"]
        .as_str()
        .unwrap()
        .contains("the alarm is OK now"));
    assert_ne!(r.audits[0].decision, Outcome::Acted);
}

#[tokio::test]
async fn bad_tokens_are_refused_audited_and_never_rerun() {
    let w = world(true);
    let (approve, _) = asked(&w, "i-1").await;
    let key = Key::from_parameter(KEY).unwrap();
    let now = super::now();
    let req = |function: &str| Request {
        function: function.into(),
        target: "i-1".into(),
        action: "reboot".into(),
        episode: "ep-1".into(),
        id: "x".into(),
    };
    let expired = tokens::issue(&req("fn"), &key, now - 1000, 60).approve;
    let foreign = tokens::issue(&req("other-fn"), &key, now, 600).approve;
    let other_key = Key::from_parameter("ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvu").unwrap();
    let resigned = tokens::issue(&req("fn"), &other_key, now, 600).approve;
    let mut tampered = approve.clone();
    tampered.insert(3, 'A');
    for (token, code) in [
        (expired, 410),
        (foreign, 403),
        (resigned, 403),
        (tampered, 403),
        ("nonsense".to_string(), 400),
    ] {
        let r = call(&w, post_event(&token), true).await;
        assert_eq!(status(&r), code, "{}", r.body);
        assert_eq!(r.audits[0].code, "approval-refused");
    }
    let r = call(
        &w,
        json!({"requestContext": {"http": {"method": "DELETE"}}}),
        true,
    )
    .await;
    assert_eq!(status(&r), 405);
    assert_eq!(r.audits[0].code, "approval-bad-request");
    assert_eq!(w.reruns.load(Ordering::SeqCst), 0);
    // The genuine link still works.
    assert_eq!(status(&call(&w, post_event(&approve), true).await), 200);
}

#[tokio::test]
async fn a_token_for_another_target_acts_on_nothing() {
    let w = world(true);
    let (approve_1, _) = asked(&w, "i-1").await;
    // Rewrite the kept event's target: the token names i-1, the event now another instance.
    let (i, w) = (&inv(), &w);
    let r = handle(&w.c, &post_event(&approve_1), i, |_, approved| async move {
        let other = json!({"target": "i-2"});
        let audit = w.c.audit_for(i, "alarm", "i-2");
        let g =
            w.c.autonomy_gate(i, audit, ask("i-2", &other, Some(&approved)))
                .await;
        Ok(vec![match g {
            Gated::Act(a) => a.acted("rebooted i-2"),
            Gated::Held(r) => r,
        }])
    })
    .await;
    assert_eq!(status(&r), 409, "{}", r.body);
    assert_eq!(r.audits[0].code, "approval-mismatch");
}

#[tokio::test]
async fn no_key_is_a_503_page_not_an_error() {
    let w = world(false);
    let r = call(&w, post_event("a.b"), true).await;
    assert_eq!(status(&r), 503);
    assert_eq!(r.audits[0].decision, Outcome::Failed);
}

#[tokio::test]
async fn a_rerun_that_fails_is_a_page_not_an_error() {
    let w = world(true);
    let (approve, _) = asked(&w, "i-1").await;
    let (i, w) = (&inv(), &w);
    let r = handle(&w.c, &post_event(&approve), i, |_, _| async {
        Err(HandlerError::Retryable("describe failed".into()))
    })
    .await;
    assert_eq!(status(&r), 409);
    assert_eq!(r.audits[0].code, "approval-rerun-failed");
    // Consumed: not re-armed.
    assert_eq!(status(&call(w, post_event(&approve), true).await), 409);
}
