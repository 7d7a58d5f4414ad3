//! Graduated autonomy on restore-object (issue 17) against the emulator: each level, a
//! bucket's tag, and the one-click approval followed from the emulated SNS notice's links.

use selfheal_core::Response;

use super::*;

/// A corrupted object with a good replica; returns (data bucket, replica bucket, key, good bytes, corrupt bytes).
async fn corrupted(w: &World) -> (String, String, String, Vec<u8>, Vec<u8>) {
    let data = w.bucket(true, false).await;
    let replica = w.bucket(false, false).await;
    let key = "data/gated.bin".to_string();
    let good = body(91, 3000);
    let sha = sha256_hex(&good);
    let meta = [("sha256", sha.as_str())];
    w.put(&replica, &key, &good, &meta, None).await;
    let mut bad = good.clone();
    bad[3] ^= 0x80;
    w.put_kms(&data, &key, &bad, &meta).await;
    (data, replica, key, good, bad)
}

fn deps_at(w: &World, approvals: &Approvals, level: &str, data: &str, replica: &str) -> Deps {
    let replicas = format!("{data}={replica}");
    let mut pairs = approvals.settings(level);
    pairs.push(("SELFHEAL_RESTORE_REPLICA_BUCKETS", replicas.as_str()));
    w.deps(&pairs)
}

async fn call(deps: &Deps, event: Value) -> Response {
    deps.handle(event, Invocation::local(Duration::from_secs(60)))
        .await
        .expect("a function-URL request never ends in an error")
}

async fn bytes(w: &World, data: &str, key: &str) -> Vec<u8> {
    w.get(data, key).await.expect("object").0
}

#[tokio::test]
async fn autonomy_observe_never_restores_and_tells_a_person() {
    let w = World::new().await;
    let approvals = Approvals::new(&w.sdk).await;
    let (data, replica, key, _, bad) = corrupted(&w).await;
    let deps = deps_at(&w, &approvals, "observe", &data, &replica);
    w.inbox.drain().await;
    for _ in 0..2 {
        let rec = one(run(&deps, eventbridge(&data, &key)).await);
        assert_eq!(rec.decision, Outcome::DryRun, "{rec:#?}");
        assert_eq!(rec.details["autonomy"]["level"], "observe", "{rec:#?}");
    }
    assert!(bytes(&w, &data, &key).await == bad, "nothing restored");
    assert_eq!(w.inbox.drain().await.len(), 2, "told each time");
}

#[tokio::test]
async fn autonomy_first_dry_run_then_a_repeat_restores() {
    let w = World::new().await;
    let approvals = Approvals::new(&w.sdk).await;
    let (data, replica, key, good, bad) = corrupted(&w).await;
    let deps = deps_at(&w, &approvals, "first-dry-run", &data, &replica);
    let first = one(run(&deps, eventbridge(&data, &key)).await);
    assert_eq!(first.decision, Outcome::DryRun, "{first:#?}");
    assert!(bytes(&w, &data, &key).await == bad);
    let second = one(run(&deps, eventbridge(&data, &key)).await);
    assert_eq!(second.decision, Outcome::Acted, "{second:#?}");
    assert!(bytes(&w, &data, &key).await == good);
}

#[tokio::test]
async fn autonomy_auto_restores_and_a_bucket_tag_holds_it_back() {
    let w = World::new().await;
    let approvals = Approvals::new(&w.sdk).await;
    let (data, replica, key, good, _) = corrupted(&w).await;
    let deps = deps_at(&w, &approvals, "auto", &data, &replica);
    let rec = one(run(&deps, eventbridge(&data, &key)).await);
    assert_eq!(rec.decision, Outcome::Acted, "{rec:#?}");
    assert!(bytes(&w, &data, &key).await == good);
    // Another bucket whose owners asked to watch first: its tag wins over the setting.
    let (held, replica2, key2, _, bad2) = corrupted(&w).await;
    w.s3.put_bucket_tagging()
        .bucket(&held)
        .tagging(
            Tagging::builder()
                .tag_set(
                    Tag::builder()
                        .key("selfheal:managed")
                        .value("true")
                        .build()
                        .unwrap(),
                )
                .tag_set(
                    Tag::builder()
                        .key("selfheal:autonomy")
                        .value("observe")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("tags");
    let deps = deps_at(&w, &approvals, "auto", &held, &replica2);
    let rec = one(run(&deps, eventbridge(&held, &key2)).await);
    assert_eq!(rec.decision, Outcome::DryRun, "{rec:#?}");
    assert!(bytes(&w, &held, &key2).await == bad2);
}

#[tokio::test]
async fn autonomy_approve_restores_only_once_a_person_approves() {
    let w = World::new().await;
    let approvals = Approvals::new(&w.sdk).await;
    let (data, replica, key, good, bad) = corrupted(&w).await;
    let deps = deps_at(&w, &approvals, "approve", &data, &replica);
    w.inbox.drain().await;
    let asked = one(run(&deps, eventbridge(&data, &key)).await);
    assert_eq!(asked.code, "approval-asked", "{asked:#?}");
    assert!(
        bytes(&w, &data, &key).await == bad,
        "nothing before approval"
    );
    let (approve, reject) = approval_tokens(&w.inbox.drain().await);
    let viewed = call(&deps, selfheal_lambda::approval::get_event(&approve)).await;
    assert_eq!(status_of(&viewed.body), 200);
    assert!(
        bytes(&w, &data, &key).await == bad,
        "a link preview does nothing"
    );
    let approved = call(&deps, selfheal_lambda::approval::post_event(&approve)).await;
    assert_eq!(status_of(&approved.body), 200, "{}", approved.body);
    let rec = approved
        .audits
        .iter()
        .find(|r| r.decision == Outcome::Acted)
        .expect("an acted record");
    assert!(rec.details["approval"]["id"].is_string(), "{rec:#?}");
    assert!(bytes(&w, &data, &key).await == good, "restored on approval");
    for again in [approve, reject] {
        let r = call(&deps, selfheal_lambda::approval::post_event(&again)).await;
        assert_eq!(status_of(&r.body), 409);
        assert_eq!(r.audits[0].code, "approval-already-used");
    }
}

/// The situation changed before the click (someone put the good bytes back): the approval
/// decides again now, finds nothing to do, and says so; nothing is copied.
#[tokio::test]
async fn autonomy_an_approval_after_the_object_was_fixed_is_refused_and_audited() {
    let w = World::new().await;
    let approvals = Approvals::new(&w.sdk).await;
    let (data, replica, key, good, _) = corrupted(&w).await;
    let deps = deps_at(&w, &approvals, "approve", &data, &replica);
    w.inbox.drain().await;
    let asked = one(run(&deps, eventbridge(&data, &key)).await);
    assert_eq!(asked.code, "approval-asked", "{asked:#?}");
    let (approve, _) = approval_tokens(&w.inbox.drain().await);
    let sha = sha256_hex(&good);
    w.put(&data, &key, &good, &[("sha256", sha.as_str())], None)
        .await;
    let r = call(&deps, selfheal_lambda::approval::post_event(&approve)).await;
    assert_eq!(status_of(&r.body), 409, "{}", r.body);
    assert!(
        r.audits.iter().all(|a| a.decision != Outcome::Acted),
        "{:#?}",
        r.audits
    );
    assert!(
        r.audits.iter().any(|a| a.code == "nothing-to-do"),
        "{:#?}",
        r.audits
    );
    let copies = recorded_requests(&[&format!("/{data}/{key}"), "x-id=CopyObject"]);
    assert!(copies.is_empty(), "nothing copied");
}
