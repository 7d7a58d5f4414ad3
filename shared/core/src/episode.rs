//! The closed loop: every action gets an id and schedules its own verification; actions and
//! verifications on one target from its first alarm until it healed (or a person was told)
//! form an episode.
//!
//! A verification is an event the function sends itself later (through the [`FollowUps`]
//! port): `{"selfheal-verify": {...}}` ([`Verify`]). It is acted on only if the ledger knows
//! the action it verifies ([`known`]): a forged or stale verification is refused.

use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::checksums::to_hex;
use crate::guard::{Ledger, LedgerError, TargetRecord};
use crate::ports::scheduler::{FollowUp, FollowUps};
use crate::settings::{lookup, ConfigError};

/// The key of a verification event.
pub const VERIFY_KEY: &str = "selfheal-verify";

/// The version of [`Verify`] this code writes and reads.
pub const VERIFY_VERSION: u32 = 1;

/// What a follow-up carries: which action to verify, on what, since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verify {
    pub version: u32,
    pub function: String,
    pub action_id: String,
    pub episode_id: String,
    /// The target acted on (instance id, group name).
    pub target: String,
    pub alarm_name: String,
    /// When the verified action was taken (epoch s).
    pub acted_at: i64,
    /// When the episode started: the first alarm's state change (epoch s).
    pub episode_started_at: i64,
    /// Verifications so far in this episode, this one included (1 for the first).
    pub attempt: u32,
    /// scale-group: the step (1 for the first resize).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// reboot-instance: the rung of the escalation ladder that was acted (`reboot`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<String>,
    /// A second half still to do: `start` after a stop-start's stop (reboot-instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The alarm event that started the episode, for a function that re-decides from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_event: Option<Value>,
}

impl Verify {
    /// The event a follow-up delivers.
    pub fn to_event(&self) -> Value {
        serde_json::json!({ VERIFY_KEY: self })
    }

    /// The schedule's name: unique per action and attempt, within Scheduler's 64 characters.
    pub fn follow_up_name(&self) -> String {
        let name = format!("{}-{}-{}", self.function, self.action_id, self.attempt);
        name.chars()
            .take(crate::ports::scheduler::MAX_NAME_CHARS)
            .collect()
    }

    /// Milliseconds from the episode's start to `now` (epoch ms); 0 when the clock says earlier.
    pub fn time_to_heal_ms(&self, now_ms: i64) -> u64 {
        u64::try_from(now_ms - self.episode_started_at * 1000).unwrap_or(0)
    }
}

/// `None`: the event is not a verification. `Some(Err)`: it claims to be one but cannot be read.
pub fn verification_in(event: &Value) -> Option<Result<Verify, String>> {
    let body = event.get(VERIFY_KEY)?;
    Some(
        serde_json::from_value::<Verify>(body.clone())
            .map_err(|e| format!("{VERIFY_KEY} event cannot be read: {e}"))
            .and_then(|v| {
                if v.version == VERIFY_VERSION {
                    Ok(v)
                } else {
                    Err(format!(
                        "{VERIFY_KEY} version {} is not {VERIFY_VERSION}",
                        v.version
                    ))
                }
            }),
    )
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    to_hex(&h.finalize()[..8])
}

/// The id of the episode of `target` that started at `started_at` (epoch s): derived, so a
/// verification's episode id can be checked without storing it.
pub fn episode_id(function: &str, target: &str, started_at: i64) -> String {
    format!(
        "ep-{}",
        short_hash(&[function, target, &started_at.to_string()])
    )
}

/// The id of one action (unique per invocation, target and time).
pub fn action_id(function: &str, target: &str, acted_at: i64, request_id: &str) -> String {
    format!(
        "act-{}",
        short_hash(&[function, target, &acted_at.to_string(), request_id])
    )
}

/// The ledger key of one action's entry.
fn action_key(function: &str, target: &str, action_id: &str) -> String {
    format!("{function}#action#{target}#{action_id}")
}

/// The entry reuses the ledger's target record: `actions = [episode_started_at, acted_at]`.
fn action_entry(v: &Verify) -> TargetRecord {
    TargetRecord {
        version: 1,
        actions: vec![v.episode_started_at, v.acted_at],
        failures: Vec::new(),
    }
}

/// Writes the action's entry, so that its verification is recognised. Kept a day past the
/// last verification it may see.
pub async fn remember(ledger: &dyn Ledger, v: &Verify, keep: Duration) -> Result<(), LedgerError> {
    let expires_at = v.acted_at + keep.as_secs() as i64 + 86_400;
    let key = action_key(&v.function, &v.target, &v.action_id);
    // Lost to an earlier write of the same entry (a retried invocation): the same facts.
    ledger
        .put_target(&key, &action_entry(v), 0, expires_at)
        .await
        .map(|_| ())
}

/// Whether the ledger knows the action `v` verifies, with the same times and episode.
pub async fn known(ledger: &dyn Ledger, function: &str, v: &Verify) -> Result<bool, String> {
    if v.function != function {
        return Ok(false);
    }
    if v.episode_id != episode_id(function, &v.target, v.episode_started_at) {
        return Ok(false);
    }
    let key = action_key(function, &v.target, &v.action_id);
    let stored = ledger.target(&key).await.map_err(|e| e.to_string())?;
    Ok(stored.version > 0 && stored.actions == action_entry(v).actions)
}

/// How long past its verification's time an episode still counts as open (a verification
/// delivered late, or retried): after that a fresh alarm acts again, so a lost verification
/// never silences a target for good.
pub const OPEN_GRACE_SECS: i64 = 300;

fn open_key(function: &str, target: &str) -> String {
    format!("{function}#episode#{target}")
}

/// When the open episode of `target` expects its next verification (epoch s), if one is open
/// at `now`: a fresh alarm on the target then leaves the next step to that verification.
pub async fn open_episode(
    ledger: &dyn Ledger,
    function: &str,
    target: &str,
    now: i64,
) -> Result<Option<i64>, LedgerError> {
    let stored = ledger.target(&open_key(function, target)).await?;
    Ok(stored
        .actions
        .first()
        .copied()
        .filter(|verify_at| verify_at + OPEN_GRACE_SECS > now))
}

/// Records that the episode of `target` expects its next verification at `verify_at`
/// (`None`: the episode ended, healed or escalated). A lost race is retried once, then left:
/// the other writer's word is as fresh.
pub async fn mark_episode(
    ledger: &dyn Ledger,
    function: &str,
    target: &str,
    verify_at: Option<i64>,
) -> Result<(), LedgerError> {
    let key = open_key(function, target);
    for _ in 0..2 {
        let stored = ledger.target(&key).await?;
        let next = TargetRecord {
            version: stored.version + 1,
            actions: verify_at.into_iter().collect(),
            failures: Vec::new(),
        };
        let expires_at =
            verify_at.unwrap_or_else(|| chrono::Utc::now().timestamp()) + OPEN_GRACE_SECS + 86_400;
        if ledger
            .put_target(&key, &next, stored.version, expires_at)
            .await?
        {
            return Ok(());
        }
    }
    Ok(())
}

/// What became of a follow-up, for the audit record (`details.follow_up`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum FollowUpNote {
    Scheduled { name: String, at: i64, attempt: u32 },
    NotScheduled { reason: String },
    Failed { name: String, error: String },
}

impl FollowUpNote {
    pub fn failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

/// Remembers the action and schedules its verification at `at` (epoch s). Never fails the
/// action: what went wrong is in the note (the caller audits and notifies it).
pub async fn follow_up(
    ledger: &dyn Ledger,
    follow_ups: Option<&dyn FollowUps>,
    v: &Verify,
    at: i64,
) -> FollowUpNote {
    let Some(scheduler) = follow_ups else {
        return FollowUpNote::NotScheduled {
            reason: "no scheduler configured".into(),
        };
    };
    let name = v.follow_up_name();
    let failed = |error: String| FollowUpNote::Failed {
        name: name.clone(),
        error,
    };
    let keep = Duration::from_secs(u64::try_from(at - v.acted_at).unwrap_or(0));
    if let Err(e) = remember(ledger, v, keep).await {
        return failed(format!("the action could not be recorded: {e}"));
    }
    let f = FollowUp {
        name: name.clone(),
        at,
        payload: v.to_event().to_string(),
    };
    if let Err(e) = f.validate() {
        return failed(e);
    }
    match scheduler.schedule(&f).await {
        Ok(()) => FollowUpNote::Scheduled {
            name,
            at,
            attempt: v.attempt,
        },
        Err(e) => failed(e.to_string()),
    }
}

/// Where follow-ups go: the schedule group, the role Scheduler invokes the function with, and
/// the function's ARN (when unset, the ARN Lambda invoked it by, see [`invoked_function_arn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerSettings {
    pub group: String,
    pub role_arn: String,
    pub target_arn: Option<String>,
}

impl SchedulerSettings {
    /// `None` (no follow-ups) unless both `SELFHEAL_SCHEDULE_GROUP` and
    /// `SELFHEAL_SCHEDULER_ROLE_ARN` are set; one without the other is a configuration error.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let get = lookup(get);
        let group = get("SELFHEAL_SCHEDULE_GROUP");
        let role = get("SELFHEAL_SCHEDULER_ROLE_ARN");
        match (group, role) {
            (None, None) => Ok(None),
            (Some(group), Some(role_arn)) => Ok(Some(Self {
                group,
                role_arn,
                target_arn: get("SELFHEAL_FOLLOW_UP_TARGET_ARN"),
            })),
            (Some(_), None) => Err(ConfigError::Missing {
                name: "SELFHEAL_SCHEDULER_ROLE_ARN",
                why: "Scheduler invokes the follow-ups with it (SELFHEAL_SCHEDULE_GROUP is set)",
            }),
            (None, Some(_)) => Err(ConfigError::Missing {
                name: "SELFHEAL_SCHEDULE_GROUP",
                why: "follow-ups are created in it (SELFHEAL_SCHEDULER_ROLE_ARN is set)",
            }),
        }
    }

    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::from_lookup(crate::settings::env)
    }
}

static INVOKED_FUNCTION_ARN: OnceLock<String> = OnceLock::new();

/// Set by the runtime loop from the first invocation's context: the function's own ARN, the
/// follow-ups' target when no setting names one.
pub fn set_invoked_function_arn(arn: &str) {
    if !arn.is_empty() {
        let _ = INVOKED_FUNCTION_ARN.set(arn.to_string());
    }
}

pub fn invoked_function_arn() -> Option<&'static str> {
    INVOKED_FUNCTION_ARN.get().map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AwsError;
    use crate::testing::{FakeFollowUps, MemoryLedger};

    fn verify() -> Verify {
        let started = 1_700_000_000;
        Verify {
            version: 1,
            function: "scale-group".into(),
            action_id: action_id("scale-group", "web", started + 5, "req-1"),
            episode_id: episode_id("scale-group", "web", started),
            target: "web".into(),
            alarm_name: "cpu".into(),
            acted_at: started + 5,
            episode_started_at: started,
            attempt: 1,
            step: Some(1),
            rung: None,
            phase: None,
            alarm_event: None,
        }
    }

    #[test]
    fn a_verification_event_round_trips_and_others_are_not_one() {
        let v = verify();
        assert_eq!(verification_in(&v.to_event()), Some(Ok(v.clone())));
        assert!(verification_in(&serde_json::json!({"detail-type": "x"})).is_none());
        let bad = serde_json::json!({VERIFY_KEY: {"version": 1}});
        assert!(verification_in(&bad).unwrap().is_err());
        let mut newer = v.to_event();
        newer[VERIFY_KEY]["version"] = 2.into();
        assert!(verification_in(&newer)
            .unwrap()
            .unwrap_err()
            .contains("version 2"));
        assert!(v.follow_up_name().len() <= 64);
        assert_eq!(v.time_to_heal_ms(1_700_000_061_500), 61_500);
    }

    #[tokio::test]
    async fn only_a_remembered_action_is_known() {
        let ledger = MemoryLedger::new();
        let follow_ups = FakeFollowUps::default();
        let v = verify();
        assert_eq!(known(&ledger, "scale-group", &v).await, Ok(false));
        let note = follow_up(&ledger, Some(&follow_ups), &v, v.acted_at + 905).await;
        assert!(matches!(note, FollowUpNote::Scheduled { .. }), "{note:?}");
        assert_eq!(known(&ledger, "scale-group", &v).await, Ok(true));
        assert_eq!(follow_ups.last_event(), Some(v.to_event()));
        // Same action id, other times, other episode, other function: unknown.
        let mut forged = v.clone();
        forged.acted_at += 1;
        assert_eq!(known(&ledger, "scale-group", &forged).await, Ok(false));
        let mut forged = v.clone();
        forged.episode_id = "ep-0000000000000000".into();
        assert_eq!(known(&ledger, "scale-group", &forged).await, Ok(false));
        assert_eq!(known(&ledger, "reboot-instance", &v).await, Ok(false));
    }

    #[tokio::test]
    async fn a_follow_up_that_cannot_be_scheduled_says_why() {
        let ledger = MemoryLedger::new();
        let v = verify();
        let none = follow_up(&ledger, None, &v, 0).await;
        assert_eq!(
            none,
            FollowUpNote::NotScheduled {
                reason: "no scheduler configured".into()
            }
        );
        let follow_ups = FakeFollowUps::default();
        *follow_ups.fail.lock().unwrap() = Some(AwsError::new(
            "scheduler:CreateSchedule",
            "selfheal/x",
            "access denied",
        ));
        let note = follow_up(&ledger, Some(&follow_ups), &v, v.acted_at + 60).await;
        assert!(note.failed(), "{note:?}");
        let mut big = v.clone();
        big.alarm_event = Some(Value::String("x".repeat(9000)));
        let note = follow_up(&ledger, Some(&FakeFollowUps::default()), &big, 0).await;
        match note {
            FollowUpNote::Failed { error, .. } => assert!(error.contains("8192"), "{error}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_episode_is_open_until_it_ends_or_its_verification_is_long_overdue() {
        let ledger = MemoryLedger::new();
        let open = |now| open_episode(&ledger, "scale-group", "web", now);
        assert_eq!(open(100).await.unwrap(), None);
        mark_episode(&ledger, "scale-group", "web", Some(1_000))
            .await
            .unwrap();
        assert_eq!(open(100).await.unwrap(), Some(1_000));
        assert_eq!(
            open(1_000 + OPEN_GRACE_SECS - 1).await.unwrap(),
            Some(1_000)
        );
        assert_eq!(
            open(1_000 + OPEN_GRACE_SECS).await.unwrap(),
            None,
            "overdue"
        );
        mark_episode(&ledger, "scale-group", "web", Some(2_000))
            .await
            .unwrap();
        assert_eq!(open(1_500).await.unwrap(), Some(2_000));
        mark_episode(&ledger, "scale-group", "web", None)
            .await
            .unwrap();
        assert_eq!(open(1_500).await.unwrap(), None, "ended");
        assert_eq!(
            open_episode(&ledger, "scale-group", "other", 100)
                .await
                .unwrap(),
            None
        );
    }

    #[test]
    fn scheduler_settings_need_both_or_neither() {
        let from = |pairs: &'static [(&'static str, &'static str)]| {
            SchedulerSettings::from_lookup(move |k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        assert_eq!(from(&[]), Ok(None));
        assert!(from(&[("SELFHEAL_SCHEDULE_GROUP", "g")]).is_err());
        assert!(from(&[("SELFHEAL_SCHEDULER_ROLE_ARN", "r")]).is_err());
        let s = from(&[
            ("SELFHEAL_SCHEDULE_GROUP", "g"),
            ("SELFHEAL_SCHEDULER_ROLE_ARN", "r"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((s.group.as_str(), s.target_arn), ("g", None));
    }
}
