//! Issue 14: every restore schedules its own verification; the emulator stores the schedule
//! and never fires it, so each test invokes the handler with exactly the stored input.

use super::*;

const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:restore-object";

/// A corrupted object on a versioned bucket, restored from its replica by an object event;
/// returns the verification's event (the stored schedule's input) and the restore's record.
async fn restored(
    w: &World,
    schedules: &Schedules,
) -> (String, String, Vec<u8>, Value, AuditRecord) {
    let data = w.bucket(true, true).await;
    let replica = w.bucket(false, false).await;
    let key = "data/verified.bin".to_string();
    let good = body(77, 5000);
    let sha = sha256_hex(&good);
    let meta = [("sha256", sha.as_str())];
    w.put(&replica, &key, &good, &meta, None).await;
    let mut bad = good.clone();
    bad[9] ^= 1;
    w.put_kms(&data, &key, &bad, &meta).await;
    let mut deps = w.deps(&[(
        "SELFHEAL_RESTORE_REPLICA_BUCKETS",
        &format!("{data}={replica}"),
    )]);
    deps.follow_ups = Some(schedules.follow_ups(FUNCTION_ARN));
    let rec = one(run(&deps, eventbridge(&data, &key)).await);
    assert_eq!(rec.decision, Outcome::Acted, "{rec:#?}");
    assert_eq!(rec.details["follow_up"]["status"], "scheduled", "{rec:#?}");
    assert!(rec.action_id.is_some() && rec.episode_id.is_some());
    let ev = schedules.only_event().await;
    (data, replica, good, ev, rec)
}

fn deps_for(w: &World, data: &str, replica: &str, schedules: &Schedules) -> Deps {
    let mut deps = w.deps(&[(
        "SELFHEAL_RESTORE_REPLICA_BUCKETS",
        &format!("{data}={replica}"),
    )]);
    deps.follow_ups = Some(schedules.follow_ups(FUNCTION_ARN));
    deps
}

#[tokio::test]
async fn a_restore_is_verified_healed_with_its_time_to_heal() {
    let w = World::new().await;
    let schedules = Schedules::new(&w.sdk).await;
    let (data, replica, _, ev, acted) = restored(&w, &schedules).await;
    assert_eq!(
        ev["selfheal-verify"]["target"],
        format!("{data}/data/verified.bin")
    );
    let deps = deps_for(&w, &data, &replica, &schedules);
    let rec = one(run(&deps, ev).await);
    assert_eq!(rec.code, "healed", "{rec:#?}");
    assert_eq!(rec.outcome, Some(selfheal_core::Heal::Healed));
    assert!(rec.time_to_heal_ms.is_some());
    assert_eq!(rec.action_id, acted.action_id);
    assert_eq!(rec.episode_id, acted.episode_id);
}

#[tokio::test]
async fn a_restore_whose_bytes_rot_again_is_not_healed_and_told() {
    let w = World::new().await;
    let schedules = Schedules::new(&w.sdk).await;
    let (data, replica, good, ev, _) = restored(&w, &schedules).await;
    // Bit rot under the restored version's unchanged ETag: reads serve other bytes.
    let mut rotten = good.clone();
    rotten[100] ^= 0x10;
    w.put(&replica, "rotten.bin", &rotten, &[], None).await;
    let mut deps = deps_for(&w, &data, &replica, &schedules);
    let mut hooked = Hooked::new(&w);
    hooked.rot = Some((
        "data/verified.bin".into(),
        ObjectRef::new(&replica, "rotten.bin"),
    ));
    deps.objects = Arc::new(hooked);
    w.inbox.drain().await;
    let rec = one(run(&deps, ev).await);
    assert_eq!(rec.code, "not-healed", "{rec:#?}");
    assert_eq!(rec.outcome, Some(selfheal_core::Heal::NotHealed));
    assert_eq!(w.inbox.drain().await.len(), 1, "a person is told");
}

#[tokio::test]
async fn a_restored_object_deleted_before_its_verification_is_escalated() {
    let w = World::new().await;
    let schedules = Schedules::new(&w.sdk).await;
    let (data, replica, _, ev, _) = restored(&w, &schedules).await;
    w.s3.delete_object()
        .bucket(&data)
        .key("data/verified.bin")
        .send()
        .await
        .expect("delete");
    let deps = deps_for(&w, &data, &replica, &schedules);
    let rec = one(run(&deps, ev).await);
    assert_eq!(rec.code, "escalated", "{rec:#?}");
    assert_eq!(rec.outcome, Some(selfheal_core::Heal::Escalated));
}

#[tokio::test]
async fn a_verification_of_an_action_the_ledger_does_not_know_is_refused() {
    let w = World::new().await;
    let schedules = Schedules::new(&w.sdk).await;
    let (data, replica, _, mut ev, _) = restored(&w, &schedules).await;
    ev["selfheal-verify"]["action_id"] = json!("act-forged");
    let deps = deps_for(&w, &data, &replica, &schedules);
    let rec = one(run(&deps, ev).await);
    assert_eq!(rec.code, "unknown-action", "{rec:#?}");
    assert_eq!(
        schedules.names().await.len(),
        1,
        "the real follow-up is kept"
    );
}
