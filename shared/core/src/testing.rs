//! In-memory ports for tests (feature `testing`, enabled as a dev-dependency only): the
//! ledger, a notifier that records what it was asked to send, a metric history, and a
//! [`Common`] wired to them. One copy, used by every crate's tests.

pub mod fuzz;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::anomaly::Point;
use crate::approval::gate::Autonomy;
use crate::audit::Auditor;
use crate::common::Common;
use crate::error::AwsError;
use crate::guard::{Guardrails, KillSwitch, Policy};
use crate::ports::alarms::{AlarmFacts, Alarms};
use crate::ports::idempotency::{Budget, Claim, ClaimResult, IdempotencyLedger, Settle, State};
use crate::ports::ledger::{FleetRecord, Ledger, LedgerError, LedgerWrite, TargetRecord};
use crate::ports::metrics::{MetricHistory, MetricQuery, Window};
use crate::ports::notifier::Notifier;
use crate::ports::parameters::Parameters;
use crate::ports::scheduler::{FollowUp, FollowUps};

/// An in-memory ledger for unit tests and local experiments. Same semantics as DynamoDB's
/// conditional writes and transactions, under one mutex.
#[derive(Default)]
pub struct MemoryLedger {
    state: Mutex<LedgerState>,
}

#[derive(Default)]
struct LedgerState {
    targets: HashMap<String, TargetRecord>,
    fleets: HashMap<String, FleetRecord>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// The fleet record stored under `key` (default when none).
    pub fn fleet(&self, key: &str) -> FleetRecord {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.fleets.get(key).cloned())
            .unwrap_or_default()
    }

    fn locked(&self, key: &str) -> Result<std::sync::MutexGuard<'_, LedgerState>, LedgerError> {
        self.state.lock().map_err(|_| LedgerError::Malformed {
            key: key.to_string(),
            detail: "in-memory ledger lock poisoned".into(),
        })
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn target(&self, key: &str) -> Result<TargetRecord, LedgerError> {
        Ok(self
            .locked(key)?
            .targets
            .get(key)
            .cloned()
            .unwrap_or_default())
    }

    async fn put_target(
        &self,
        key: &str,
        next: &TargetRecord,
        expected_version: u64,
        expires_at: i64,
    ) -> Result<bool, LedgerError> {
        self.write_all(&[LedgerWrite::Target {
            key: key.to_string(),
            record: next.clone(),
            expected_version,
            expires_at,
        }])
        .await
    }

    async fn read(
        &self,
        target_key: &str,
        fleet_key: &str,
    ) -> Result<(TargetRecord, FleetRecord), LedgerError> {
        let state = self.locked(target_key)?;
        Ok((
            state.targets.get(target_key).cloned().unwrap_or_default(),
            state.fleets.get(fleet_key).cloned().unwrap_or_default(),
        ))
    }

    async fn write_all(&self, writes: &[LedgerWrite]) -> Result<bool, LedgerError> {
        let mut state = self.locked(writes.first().map(LedgerWrite::key).unwrap_or(""))?;
        let current = |state: &LedgerState, w: &LedgerWrite| match w {
            LedgerWrite::Target { key, .. } => state.targets.get(key).map(|r| r.version),
            LedgerWrite::Fleet { key, .. } => state.fleets.get(key).map(|r| r.version),
        };
        let expected = |w: &LedgerWrite| match w {
            LedgerWrite::Target {
                expected_version, ..
            }
            | LedgerWrite::Fleet {
                expected_version, ..
            } => *expected_version,
        };
        if writes
            .iter()
            .any(|w| current(&state, w).unwrap_or(0) != expected(w))
        {
            return Ok(false);
        }
        for w in writes {
            match w {
                LedgerWrite::Target { key, record, .. } => {
                    state.targets.insert(key.clone(), record.clone());
                }
                LedgerWrite::Fleet { key, record, .. } => {
                    state.fleets.insert(key.clone(), record.clone());
                }
            }
        }
        Ok(true)
    }
}

/// A [`Common`] for `function` with the policy read from `env` pairs, the kill switch on,
/// an in-memory ledger (returned too) and no notifier. `SELFHEAL_AUTONOMY` is `auto` unless
/// `env` says otherwise: tests of other things test them as before the autonomy gate.
pub fn common(function: &'static str, env: &[(&str, &str)]) -> (Common, Arc<MemoryLedger>) {
    let map: HashMap<String, String> = std::iter::once(("SELFHEAL_AUTONOMY", "auto"))
        .chain(env.iter().copied())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let policy = Policy::from_lookup(function, |k| map.get(k).cloned())
        .unwrap_or_else(|e| panic!("test policy for {function}: {e}"));
    let ledger = Arc::new(MemoryLedger::new());
    let common = Common {
        function,
        guard: Guardrails::new(
            policy.clone(),
            KillSwitch::new(None, policy.enabled_fallback),
            ledger.clone(),
        ),
        audit: Auditor::new(None),
        autonomy: Autonomy::new(policy.autonomy.clone())
            .with_store(Arc::new(MemoryIdempotency::default())),
    };
    (common, ledger)
}

/// Idempotency records in memory, with the claim semantics of the DynamoDB adapter (absent,
/// or a lapsed in-progress lease, may be claimed; done never).
#[derive(Default)]
pub struct MemoryIdempotency {
    items: Mutex<HashMap<String, State>>,
}

impl MemoryIdempotency {
    /// The state stored under `key`.
    pub fn get(&self, key: &str) -> Option<State> {
        self.items.lock().ok().and_then(|m| m.get(key).cloned())
    }

    /// Every key stored.
    pub fn keys(&self) -> Vec<String> {
        self.items
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl IdempotencyLedger for MemoryIdempotency {
    async fn entries(&self, keys: &[String]) -> Result<HashMap<String, State>, AwsError> {
        let m = self
            .items
            .lock()
            .map_err(|_| AwsError::new("memory:entries", "-", "lock poisoned"))?;
        Ok(keys
            .iter()
            .filter_map(|k| m.get(k).map(|s| (k.clone(), s.clone())))
            .collect())
    }

    async fn claim(
        &self,
        claims: &[Claim],
        _budget: Option<&Budget>,
        now: i64,
    ) -> Result<Vec<ClaimResult>, AwsError> {
        let mut m = self
            .items
            .lock()
            .map_err(|_| AwsError::new("memory:claim", "-", "lock poisoned"))?;
        Ok(claims
            .iter()
            .map(|c| {
                let free = match m.get(&c.key) {
                    None => true,
                    Some(State::InProgress { lease_until, .. }) => *lease_until <= now,
                    Some(State::Done { .. }) => false,
                };
                if free {
                    m.insert(
                        c.key.clone(),
                        State::InProgress {
                            lease_until: c.lease_until,
                            owner: c.owner.clone(),
                        },
                    );
                    ClaimResult::Claimed
                } else {
                    ClaimResult::Conflict
                }
            })
            .collect())
    }

    async fn settle(&self, done: &[Settle], release: &[String]) -> Result<(), AwsError> {
        let mut m = self
            .items
            .lock()
            .map_err(|_| AwsError::new("memory:settle", "-", "lock poisoned"))?;
        for k in release {
            m.remove(k);
        }
        for d in done {
            m.insert(
                d.key.clone(),
                State::Done {
                    outcome: d.outcome.clone(),
                    detail: d.detail.clone(),
                    at: d.at,
                },
            );
        }
        Ok(())
    }
}

/// Parameters in memory, by name.
#[derive(Default)]
pub struct MemoryParameters(pub Mutex<HashMap<String, String>>);

impl MemoryParameters {
    pub fn with(self, name: &str, value: &str) -> Self {
        if let Ok(mut m) = self.0.lock() {
            m.insert(name.into(), value.into());
        }
        self
    }
}

#[async_trait]
impl Parameters for MemoryParameters {
    async fn get(&self, name: &str) -> Result<Option<String>, AwsError> {
        Ok(self.0.lock().ok().and_then(|m| m.get(name).cloned()))
    }
}

/// A notifier that keeps every (subject, message) it was asked to send.
#[derive(Default)]
pub struct RecordingNotifier(Mutex<Vec<(String, String)>>);

impl RecordingNotifier {
    pub fn sent(&self) -> Vec<(String, String)> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, subject: &str, message: &str) -> Result<(), AwsError> {
        if let Ok(mut v) = self.0.lock() {
            v.push((subject.into(), message.into()));
        }
        Ok(())
    }
}

/// How a [`FakeHistory`] answers.
pub enum HistoryAnswer {
    Points(Vec<Point>),
    Fails(AwsError),
    /// Never answers (for timeouts).
    Hangs,
}

/// A metric history that answers as told and remembers what it was asked.
pub struct FakeHistory {
    pub answer: HistoryAnswer,
    pub calls: AtomicUsize,
    pub queries: Mutex<Vec<(MetricQuery, Vec<Window>)>>,
}

impl FakeHistory {
    pub fn new(answer: HistoryAnswer) -> Self {
        Self {
            answer,
            calls: AtomicUsize::new(0),
            queries: Mutex::new(Vec::new()),
        }
    }

    /// A history that answers with `points`, or fails with `error`.
    pub fn from_result(points: Result<Vec<Point>, AwsError>) -> Self {
        Self::new(match points {
            Ok(p) => HistoryAnswer::Points(p),
            Err(e) => HistoryAnswer::Fails(e),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every window asked for, in order.
    pub fn windows(&self) -> Vec<Window> {
        self.queries
            .lock()
            .map(|q| q.iter().flat_map(|(_, w)| w.iter().copied()).collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl MetricHistory for FakeHistory {
    async fn history(&self, q: &MetricQuery, windows: &[Window]) -> Result<Vec<Point>, AwsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut v) = self.queries.lock() {
            v.push((q.clone(), windows.to_vec()));
        }
        match &self.answer {
            HistoryAnswer::Points(p) => Ok(p.clone()),
            HistoryAnswer::Fails(e) => Err(e.clone()),
            HistoryAnswer::Hangs => std::future::pending().await,
        }
    }
}

/// Alarms as CloudWatch would describe them now, by name, with their tags by ARN; counts the
/// calls so tests can check what a decision cost.
#[derive(Default)]
pub struct FakeAlarms {
    pub alarms: Mutex<HashMap<String, AlarmFacts>>,
    pub tags: Mutex<HashMap<String, BTreeMap<String, String>>>,
    pub fail: Mutex<Option<AwsError>>,
    pub calls: AtomicUsize,
}

impl FakeAlarms {
    pub fn with(self, facts: AlarmFacts) -> Self {
        if let Ok(mut m) = self.alarms.lock() {
            m.insert(facts.name.clone(), facts);
        }
        self
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Alarms for FakeAlarms {
    async fn current(&self, name: &str) -> Result<Option<AlarmFacts>, AwsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = self.fail.lock().ok().and_then(|f| f.clone()) {
            return Err(e);
        }
        Ok(self.alarms.lock().ok().and_then(|m| m.get(name).cloned()))
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = self.fail.lock().ok().and_then(|f| f.clone()) {
            return Err(e);
        }
        Ok(self
            .tags
            .lock()
            .ok()
            .and_then(|m| m.get(arn).cloned())
            .unwrap_or_default())
    }
}

/// Follow-ups kept in memory: what was scheduled (in order), what was deleted, and an error to
/// answer with instead (a failed schedule creation).
#[derive(Default)]
pub struct FakeFollowUps {
    pub scheduled: Mutex<Vec<FollowUp>>,
    pub deleted: Mutex<Vec<String>>,
    pub fail: Mutex<Option<AwsError>>,
}

impl FakeFollowUps {
    pub fn scheduled(&self) -> Vec<FollowUp> {
        self.scheduled.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The payload of the last follow-up scheduled, as the event it will be.
    pub fn last_event(&self) -> Option<serde_json::Value> {
        self.scheduled()
            .last()
            .and_then(|f| serde_json::from_str(&f.payload).ok())
    }
}

#[async_trait]
impl FollowUps for FakeFollowUps {
    async fn schedule(&self, follow_up: &FollowUp) -> Result<(), AwsError> {
        if let Some(e) = self.fail.lock().ok().and_then(|f| f.clone()) {
            return Err(e);
        }
        if let Ok(mut v) = self.scheduled.lock() {
            v.push(follow_up.clone());
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), AwsError> {
        if let Ok(mut v) = self.deleted.lock() {
            v.push(name.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn memory_ledger_is_conditional() {
        let l = MemoryLedger::new();
        let r = TargetRecord::default().with_action(10, Duration::from_secs(60));
        assert!(l.put_target("k", &r, 0, 0).await.unwrap());
        assert!(
            !l.put_target("k", &r, 0, 0).await.unwrap(),
            "second writer with a stale version loses"
        );
        assert_eq!(l.target("k").await.unwrap(), r);
        let fleet = |version| LedgerWrite::Fleet {
            key: "f".into(),
            record: FleetRecord {
                version,
                ..Default::default()
            },
            expected_version: version - 1,
            expires_at: 0,
        };
        let stale_target = LedgerWrite::Target {
            key: "k".into(),
            record: r.clone(),
            expected_version: 0,
            expires_at: 0,
        };
        assert!(
            !l.write_all(&[fleet(1), stale_target]).await.unwrap(),
            "all or nothing"
        );
        assert_eq!(l.fleet("f").version, 0);
        assert!(l.write_all(&[fleet(1)]).await.unwrap());
        assert_eq!(l.read("k", "f").await.unwrap().1.version, 1);
    }
}
