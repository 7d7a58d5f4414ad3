//! Alarm storms against the guardrails with the real DynamoDB ledger (on the emulator): many
//! events over many targets and groups, delivered concurrently, through `Common::act_guarded`
//! exactly as the alarm functions call it. The caps must hold, the correlated-failure breaker
//! must trip once with one notice, and no target may be acted on twice.
//!
//! `make test` runs a small storm; `make soak` runs the full one
//! (`SELFHEAL_STORM_EVENTS=1000 SELFHEAL_STORM_TARGETS=200 SELFHEAL_STORM_GROUPS=20`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use selfheal_aws::aws_sdk_dynamodb;
use selfheal_aws::dynamodb::DynamoLedger;
use selfheal_core::guard::KillSwitch;
use selfheal_core::testing::RecordingNotifier;
use selfheal_core::{Auditor, Common, Guarded, Guardrails, Invocation, Outcome, Target};

use crate::support::*;

const FUNCTION: &str = "storm-test";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic sequence of targets: a fixed-seed LCG, so a failure can be replayed.
fn events(n: usize, targets: usize, seed: u64) -> Vec<usize> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 33) as usize) % targets
        })
        .collect()
}

struct Storm {
    acted: HashMap<String, usize>,
    codes: HashMap<String, usize>,
    notices: Vec<(String, String)>,
}

async fn storm(env: &[(&str, &str)], n: usize, targets: usize, groups: usize) -> Storm {
    let sdk = emulator().await;
    let table = ledger_table(&sdk).await;
    let mut pairs = vec![("SELFHEAL_LEDGER_TABLE", table.as_str())];
    pairs.extend_from_slice(env);
    let notifier = Arc::new(RecordingNotifier::default());
    let policy = policy(FUNCTION, &pairs);
    let common = Arc::new(Common {
        function: FUNCTION,
        // The storm calls act_guarded directly: the autonomy gate is not in its path.
        autonomy: selfheal_core::approval::gate::Autonomy::new(policy.autonomy.clone()),
        guard: Guardrails::new(
            policy,
            KillSwitch::new(None, true),
            Arc::new(DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table.clone(),
            )),
        ),
        audit: Auditor::new(Some(notifier.clone())),
    });
    let acted: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let codes: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let sequence = Arc::new(events(n, targets, 7));
    // Bounded concurrency: as many workers as a function's reserved concurrency allows.
    let workers: Vec<_> = (0..setting("SELFHEAL_STORM_CONCURRENCY", 8))
        .map(|_| {
            let (common, acted, codes, next, sequence) = (
                common.clone(),
                acted.clone(),
                codes.clone(),
                next.clone(),
                sequence.clone(),
            );
            tokio::spawn(async move {
                while let Some(&t) = sequence.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let id = format!("i-{t:04}");
                    let group = format!("asg-{:02}", t % groups);
                    let tags = [
                        ("selfheal:managed", "true"),
                        ("aws:autoscaling:groupName", group.as_str()),
                    ];
                    let inv = Invocation::local(std::time::Duration::from_secs(60));
                    let audit = common.audit_for(&inv, "storm", &id);
                    let action = Guarded {
                        target: Target { id: &id, tags },
                        would: format!("reboot {id}"),
                        escalate_refusal: false,
                    };
                    let acted = acted.clone();
                    let id2 = id.clone();
                    let rec = common
                        .act_guarded(audit, action, |a| async move {
                            *acted.lock().unwrap().entry(id2.clone()).or_insert(0) += 1;
                            a.acted(format!("rebooted {id2}"))
                        })
                        .await
                        .unwrap_or_else(|f| f.record);
                    let key = if rec.decision == Outcome::Acted {
                        "acted".to_string()
                    } else {
                        rec.code.clone()
                    };
                    *codes.lock().unwrap().entry(key).or_insert(0) += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("storm worker");
    }
    let acted = acted.lock().unwrap().clone();
    let codes = codes.lock().unwrap().clone();
    Storm {
        acted,
        codes,
        notices: notifier.sent(),
    }
}

fn per_group(s: &Storm, groups: usize) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for id in s.acted.keys() {
        let t: usize = id.trim_start_matches("i-").parse().unwrap();
        *out.entry(format!("asg-{:02}", t % groups)).or_insert(0) += 1;
    }
    out
}

#[tokio::test]
async fn alarm_storm_trips_the_breaker_once_and_never_exceeds_a_cap() {
    let (n, targets, groups) = (
        setting("SELFHEAL_STORM_EVENTS", 150),
        setting("SELFHEAL_STORM_TARGETS", 40),
        setting("SELFHEAL_STORM_GROUPS", 4),
    );
    let s = storm(
        &[
            ("SELFHEAL_BREAKER_TARGETS", "10"),
            ("SELFHEAL_BREAKER_WINDOW_SECONDS", "600"),
        ],
        n,
        targets,
        groups,
    )
    .await;
    eprintln!(
        "storm with breaker: {n} events, {targets} targets, {groups} groups: {:?}",
        s.codes
    );
    assert_eq!(
        s.codes.values().sum::<usize>(),
        n,
        "every event has one record"
    );
    assert!(
        s.acted.values().all(|c| *c == 1),
        "no double action: {:?}",
        s.acted
    );
    assert_eq!(
        s.codes.get("breaker-tripped"),
        Some(&1),
        "trips once: {:?}",
        s.codes
    );
    let breaker_notices = s
        .notices
        .iter()
        .filter(|(_, body)| body.contains("breaker-tripped"))
        .count();
    assert_eq!(breaker_notices, 1, "one notice per trip");
    assert!(
        s.acted.len() < 10,
        "fewer actions than the breaker's threshold: {}",
        s.acted.len()
    );
    assert!(per_group(&s, groups).values().all(|c| *c <= 3));
}

#[tokio::test]
async fn alarm_storm_without_the_breaker_stops_at_the_budgets() {
    let (n, targets, groups) = (
        setting("SELFHEAL_STORM_EVENTS", 150),
        setting("SELFHEAL_STORM_TARGETS", 40),
        setting("SELFHEAL_STORM_GROUPS", 4),
    );
    let s = storm(
        &[
            ("SELFHEAL_BREAKER_TARGETS", "0"),
            ("SELFHEAL_MAX_ACTIONS_PER_HOUR", "20"),
            ("SELFHEAL_MAX_ACTIONS_PER_GROUP_PER_HOUR", "3"),
        ],
        n,
        targets,
        groups,
    )
    .await;
    eprintln!(
        "storm without breaker: {n} events, {targets} targets, {groups} groups: {:?}",
        s.codes
    );
    assert_eq!(s.codes.values().sum::<usize>(), n);
    assert!(
        s.acted.values().all(|c| *c == 1),
        "no double action: {:?}",
        s.acted
    );
    let total: usize = s.acted.values().sum();
    assert!(total <= 20, "the function's budget holds: {total}");
    let by_group = per_group(&s, groups);
    assert!(
        by_group.values().all(|c| *c <= 3),
        "group caps hold: {by_group:?}"
    );
    // The caps bind: with enough groups the hour's budget is spent exactly; with fewer, every
    // group reaches its cap.
    assert_eq!(total, 20.min(3 * groups.min(targets)), "{by_group:?}");
}
