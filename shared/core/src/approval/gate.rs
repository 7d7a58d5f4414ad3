//! The autonomy gate (issue 17): one step a function calls right before it acts
//! ([`crate::Common::autonomy_gate`]). It resolves the level that applies (target tag → alarm
//! tag → `SELFHEAL_AUTONOMY` → the function's default), applies `first-dry-run` with the "seen"
//! record in the ledger, and at `approve` issues the approve and reject tokens, keeps the
//! pending approval (with the event to decide again from) in the ledger and sends the notice
//! with both links. What it holds back is recorded here; what it lets through carries the
//! level, its source and the autonomy decision into the action's audit record.
//!
//! The ledger records go through the [`IdempotencyLedger`] port (the same table as the
//! guardrails): the "seen" record and the pending approval are `done` records (their `at` and
//! `detail`), the single use of an approval is a conditional claim ([`super::single_use_claim`]).

use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};

use super::{
    approval_id, base_url, consumption, issue, link, single_use_claim, ttl_setting, Claims, Key,
    KeyError, Request, Use, KEY_PARAMETER_SETTING, RECORD_RETENTION_SECONDS,
};
use crate::autonomy::{self, gate, resolve, AutonomyDecision, Facts, Inputs, Level, Resolved};
use crate::error::AwsError;
use crate::ports::idempotency::{IdempotencyLedger, Settle, State};
use crate::ports::notifier::Notifier;
use crate::ports::parameters::Parameters;
use crate::settings::ConfigError;

/// The setting naming the SSM String parameter that holds the function's URL (the base of the
/// links; the template writes it from `!GetAtt <Function>Url.FunctionUrl`).
pub const URL_PARAMETER_SETTING: &str = "SELFHEAL_APPROVAL_URL_PARAMETER";
/// The base of the links given directly (local runs and tests); wins over the parameter.
pub const URL_SETTING: &str = "SELFHEAL_APPROVAL_URL";

/// The actions a per-action setting exists for: `SELFHEAL_AUTONOMY_<ACTION>` (upper case,
/// `-` as `_`), e.g. `SELFHEAL_AUTONOMY_STOP_START`, more specific than `SELFHEAL_AUTONOMY`.
pub const ACTIONS: [&str; 5] = ["reboot", "stop-start", "scale", "restore", "replay"];

/// The per-action setting's name of `action` (one of [`ACTIONS`]).
pub fn action_setting(action: &str) -> String {
    format!(
        "{}_{}",
        autonomy::SETTING,
        action.to_ascii_uppercase().replace('-', "_")
    )
}

/// The autonomy settings every function reads (validated at cold start with the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutonomySettings {
    /// `SELFHEAL_AUTONOMY`: unset → each action's own default.
    pub level: Option<Level>,
    /// `SELFHEAL_AUTONOMY_<ACTION>`: the level of one action of the function (the ladder's
    /// `stop-start` apart from the reboot), before `SELFHEAL_AUTONOMY`.
    pub per_action: Vec<(&'static str, Level)>,
    /// `SELFHEAL_AUTONOMY_WINDOW_SECONDS` (a day).
    pub window: i64,
    /// `SELFHEAL_APPROVAL_TTL_SECONDS` (four hours).
    pub ttl: i64,
    /// `SELFHEAL_APPROVAL_KEY_PARAMETER`: the SecureString holding the signing key.
    pub key_parameter: Option<String>,
    /// `SELFHEAL_APPROVAL_URL_PARAMETER`: the String parameter holding the function URL.
    pub url_parameter: Option<String>,
    /// `SELFHEAL_APPROVAL_URL`: the function URL itself (checked like the parameter's value).
    pub url: Option<String>,
}

impl Default for AutonomySettings {
    fn default() -> Self {
        Self {
            level: None,
            per_action: Vec::new(),
            window: autonomy::DEFAULT_WINDOW_SECONDS,
            ttl: super::DEFAULT_TTL_SECONDS,
            key_parameter: None,
            url_parameter: None,
            url: None,
        }
    }
}

impl AutonomySettings {
    /// Reads the settings through `get` (values already trimmed, empty as unset).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let url = match get(URL_SETTING) {
            Some(u) => Some(base_url(&u).map_err(|_| ConfigError::Invalid {
                name: URL_SETTING,
                value: u,
                expected: "an https:// URL with nothing that needs escaping",
            })?),
            None => None,
        };
        let mut per_action = Vec::new();
        for action in ACTIONS {
            let name = action_setting(action);
            if let Some(v) = get(&name) {
                let level = v.parse().map_err(|_| ConfigError::Invalid {
                    // The names are a fixed few: leaked once per cold start, not per event.
                    name: Box::leak(name.into_boxed_str()),
                    value: v,
                    expected: "observe, first-dry-run, approve or auto",
                })?;
                per_action.push((action, level));
            }
        }
        Ok(Self {
            level: autonomy::setting(get)?,
            per_action,
            window: autonomy::window_setting(get)?,
            ttl: ttl_setting(get)?,
            key_parameter: get(KEY_PARAMETER_SETTING),
            url_parameter: get(URL_PARAMETER_SETTING),
            url,
        })
    }
}

/// What the gate is asked about one action on one target.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// The target (instance id, group name, bucket/key...).
    pub target: &'a str,
    /// The action (`reboot`, `stop-start`, `scale`, `restore`, `replay`): no `#`.
    pub action: &'a str,
    /// The level when neither a tag nor `SELFHEAL_AUTONOMY` sets one.
    pub default: Level,
    /// The target's `selfheal:autonomy` tag, if it has one.
    pub target_tag: Option<&'a str>,
    /// The alarm's `selfheal:autonomy` tag, if it has one.
    pub alarm_tag: Option<&'a str>,
    /// The episode the action belongs to (goes into the token).
    pub episode: &'a str,
    /// The event to decide again from when a person approves (kept with the pending
    /// approval): the alarm, the message, the verification.
    pub event: &'a Value,
    /// What would be done, for people ("reboot i-1: ...").
    pub would: &'a str,
    /// Set when deciding again on a person's approval ([`Approved`]).
    pub approval: Option<&'a Approved>,
}

/// A person's approval: a token verified and consumed (single use) in this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    pub claims: Claims,
}

/// What the gate says.
#[derive(Debug)]
pub enum Gated {
    /// Go on to the guardrails and act; the audit carries `details.autonomy`.
    Act(crate::audit::AuditBuilder),
    /// Held back (a dry run with a notice, an approval asked, or refused): already recorded.
    Held(crate::audit::AuditRecord),
}

/// The gate's ports and settings, built once per cold start.
pub struct Autonomy {
    pub settings: AutonomySettings,
    store: Option<Arc<dyn IdempotencyLedger>>,
    params: Option<Arc<dyn Parameters>>,
    notifier: Option<Arc<dyn Notifier>>,
    key: OnceLock<Key>,
    url: OnceLock<String>,
}

/// Why an approval cannot be asked or checked now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unavailable {
    #[error("no ledger is configured for approvals")]
    NoLedger,
    #[error("{KEY_PARAMETER_SETTING} is not set: no approval key")]
    NoKeyParameter,
    #[error("{URL_PARAMETER_SETTING} (or {URL_SETTING}) is not set: no link to send")]
    NoUrl,
    #[error("no parameter store is configured to read {0}")]
    NoParameters(&'static str),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the approval URL parameter {name} does not exist")]
    UrlMissing { name: String },
    #[error("reading the approval URL parameter {name}: {source}")]
    UrlRead { name: String, source: AwsError },
    #[error(transparent)]
    Url(#[from] super::UrlError),
    #[error("the ledger: {0}")]
    Ledger(#[from] AwsError),
}

/// The ledger key of a pending approval (the event to decide again from).
pub fn pending_key(function: &str, id: &str) -> String {
    format!("{}#pending", super::approval_key(function, id))
}

impl Autonomy {
    pub fn new(settings: AutonomySettings) -> Self {
        Self {
            settings,
            store: None,
            params: None,
            notifier: None,
            key: OnceLock::new(),
            url: OnceLock::new(),
        }
    }

    /// Where "seen" records, pending approvals and single-use claims are kept.
    pub fn with_store(mut self, store: Arc<dyn IdempotencyLedger>) -> Self {
        self.store = Some(store);
        self
    }

    /// Where the key (SecureString) and the URL parameter are read.
    pub fn with_parameters(mut self, params: Arc<dyn Parameters>) -> Self {
        self.params = Some(params);
        self
    }

    /// Where the approval notice (with the links) is sent.
    pub fn with_notifier(mut self, notifier: Option<Arc<dyn Notifier>>) -> Self {
        self.notifier = notifier;
        self
    }

    fn store(&self) -> Result<&dyn IdempotencyLedger, Unavailable> {
        self.store.as_deref().ok_or(Unavailable::NoLedger)
    }

    /// The level that applies to `ask`.
    pub fn resolve(&self, ask: &Ask<'_>) -> Resolved {
        let per_action = self
            .settings
            .per_action
            .iter()
            .find(|(a, _)| *a == ask.action)
            .map(|(_, l)| *l);
        let mut r = resolve(&Inputs {
            target_tag: ask.target_tag,
            alarm_tag: ask.alarm_tag,
            setting: per_action.or(self.settings.level),
            default: ask.default,
        });
        if let (Some(level), autonomy::Source::Setting) = (per_action, r.source) {
            r.reason = format!("setting {}={level}", action_setting(ask.action));
        }
        r
    }

    /// The signing key, read once per cold start (a failed read is tried again next time).
    pub async fn key(&self) -> Result<Key, Unavailable> {
        if let Some(k) = self.key.get() {
            return Ok(k.clone());
        }
        let name = self
            .settings
            .key_parameter
            .as_deref()
            .ok_or(Unavailable::NoKeyParameter)?;
        let params = self
            .params
            .as_deref()
            .ok_or(Unavailable::NoParameters(KEY_PARAMETER_SETTING))?;
        let key = Key::load(params, name).await?;
        Ok(self.key.get_or_init(|| key).clone())
    }

    /// The base of the links: the setting, or the URL parameter (read once).
    pub async fn base_url(&self) -> Result<String, Unavailable> {
        if let Some(u) = &self.settings.url {
            return Ok(u.clone());
        }
        if let Some(u) = self.url.get() {
            return Ok(u.clone());
        }
        let name = self
            .settings
            .url_parameter
            .as_deref()
            .ok_or(Unavailable::NoUrl)?;
        let params = self
            .params
            .as_deref()
            .ok_or(Unavailable::NoParameters(URL_PARAMETER_SETTING))?;
        let value = match params.get(name).await {
            Ok(Some(v)) => v,
            Ok(None) => return Err(Unavailable::UrlMissing { name: name.into() }),
            Err(source) => {
                return Err(Unavailable::UrlRead {
                    name: name.into(),
                    source,
                })
            }
        };
        let url = base_url(&value)?;
        Ok(self.url.get_or_init(|| url).clone())
    }

    /// When this (function, target, action) was last seen (`None`: never, or the record is
    /// gone with its TTL).
    pub async fn last_seen(&self, key: &str) -> Result<Option<i64>, Unavailable> {
        let found = self.store()?.entries(&[key.to_string()]).await?;
        Ok(match found.get(key) {
            Some(State::Done { at, .. }) => Some(*at),
            _ => None,
        })
    }

    /// Stores `now` as the last occurrence, kept a day past the window.
    pub async fn mark_seen(&self, key: &str, now: i64) -> Result<(), Unavailable> {
        let done = Settle {
            key: key.to_string(),
            outcome: "seen".into(),
            detail: String::new(),
            at: now,
            expires_at: now + self.settings.window + 86_400,
        };
        Ok(self.store()?.settle(&[done], &[]).await?)
    }

    /// Keeps what is needed to decide again on approval: the event, target and action.
    async fn keep_pending(
        &self,
        function: &str,
        id: &str,
        ask: &Ask<'_>,
        now: i64,
        exp: i64,
    ) -> Result<(), Unavailable> {
        let detail = json!({"target": ask.target, "action": ask.action, "event": ask.event});
        let done = Settle {
            key: pending_key(function, id),
            outcome: "pending".into(),
            detail: detail.to_string(),
            at: now,
            expires_at: exp + RECORD_RETENTION_SECONDS,
        };
        Ok(self.store()?.settle(&[done], &[]).await?)
    }

    /// The event kept with a pending approval (`None`: no such approval, or it is gone).
    pub async fn pending_event(&self, claims: &Claims) -> Result<Option<Value>, Unavailable> {
        let key = pending_key(&claims.function, &claims.id);
        let found = self.store()?.entries(std::slice::from_ref(&key)).await?;
        Ok(match found.get(&key) {
            Some(State::Done { detail, .. }) => serde_json::from_str::<Value>(detail)
                .ok()
                .filter(|d| d["target"] == claims.target.as_str())
                .and_then(|mut d| d.get_mut("event").map(Value::take)),
            _ => None,
        })
    }

    /// Whether the approval (either of its links) was used already: for the confirmation page
    /// only; the POST's conditional write is what decides.
    pub async fn used(&self, claims: &Claims) -> Result<bool, Unavailable> {
        let key = claims.ledger_key();
        let found = self.store()?.entries(std::slice::from_ref(&key)).await?;
        Ok(found.contains_key(&key))
    }

    /// Consumes the approval (both its links): a conditional write, once and never again.
    pub async fn consume(
        &self,
        claims: &Claims,
        owner: &str,
        now: i64,
    ) -> Result<Use, Unavailable> {
        let store = self.store()?;
        let result = store
            .claim(&[single_use_claim(claims, owner)], None, now)
            .await?;
        let used = result
            .first()
            .copied()
            .map(consumption)
            .unwrap_or(Use::AlreadyUsed);
        if used == Use::Consumed {
            // Settled as done with the choice, so it stays used whatever the lease says.
            let done = Settle {
                key: claims.ledger_key(),
                outcome: claims.decision.as_str().into(),
                detail: owner.into(),
                at: now,
                expires_at: claims.exp.saturating_add(RECORD_RETENTION_SECONDS),
            };
            if let Err(e) = store.settle(&[done], &[]).await {
                // The claim itself holds past the token's expiry: still single use.
                tracing::warn!(error = %e, "could not settle a consumed approval; its claim holds");
            }
        }
        Ok(used)
    }

    /// The autonomy decision for `ask` at `now`, with the level that applied. Reads (and at
    /// `first-dry-run` writes) the "seen" record; a record that cannot be read is a dry run
    /// (when in doubt, nothing is done).
    pub async fn decide(
        &self,
        function: &str,
        ask: &Ask<'_>,
        now: i64,
    ) -> (Resolved, AutonomyDecision) {
        let resolved = self.resolve(ask);
        let approval = ask.approval.map(|a| a.claims.id.clone());
        if resolved.level == Level::FirstDryRun && approval.is_none() {
            let key = autonomy::seen_key(function, ask.target, ask.action);
            let last_seen = match self.last_seen(&key).await {
                Ok(t) => t,
                Err(e) => {
                    let reason = format!(
                        "autonomy first-dry-run: the previous occurrence could not be read \
                         ({e}): dry run"
                    );
                    return (resolved, AutonomyDecision::DryRun { reason });
                }
            };
            if let Err(e) = self.mark_seen(&key, now).await {
                tracing::warn!(function, target = ask.target, error = %e, "could not record this occurrence for first-dry-run");
            }
            let d = gate(
                resolved.level,
                &Facts {
                    last_seen,
                    now,
                    window: self.settings.window,
                    approval: None,
                },
            );
            return (resolved, d);
        }
        let d = gate(
            resolved.level,
            &Facts {
                last_seen: None,
                now,
                window: self.settings.window,
                approval,
            },
        );
        (resolved, d)
    }

    /// Asks a person: issues the tokens, keeps the pending approval, and returns the approval
    /// id, the links and their expiry (the caller records and sends the notice).
    pub async fn ask(
        &self,
        function: &str,
        request_id: &str,
        ask: &Ask<'_>,
        now: i64,
    ) -> Result<Asked, Unavailable> {
        let key = self.key().await?;
        let url = self.base_url().await?;
        let id = approval_id(function, ask.target, ask.action, ask.episode, request_id);
        let tokens = issue(
            &Request {
                function: function.into(),
                target: ask.target.into(),
                action: ask.action.into(),
                episode: ask.episode.into(),
                id: id.clone(),
            },
            &key,
            now,
            self.settings.ttl,
        );
        self.keep_pending(function, &id, ask, now, tokens.exp)
            .await?;
        Ok(Asked {
            approve: link(&url, &tokens.approve),
            reject: link(&url, &tokens.reject),
            expires_at: tokens.exp,
            id,
        })
    }

    /// Sends the notice of an approval asked (the links are in the notice only: never in logs).
    pub async fn notify_asked(&self, record: &crate::audit::AuditRecord, asked: &Asked) {
        let Some(n) = &self.notifier else {
            tracing::error!(function = %record.function, target = %record.target, "approval asked but no notifier is configured: nobody can approve");
            return;
        };
        let subject: String = format!(
            "[selfheal] {} asks approval for {}",
            record.function, record.target
        )
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(100)
        .collect();
        let mut body = serde_json::to_value(record).unwrap_or_else(|_| json!({}));
        if let Value::Object(m) = &mut body {
            m.insert("approve_url".into(), json!(asked.approve));
            m.insert("reject_url".into(), json!(asked.reject));
            m.insert("approval_expires_at".into(), json!(asked.expires_at));
        }
        let text = serde_json::to_string_pretty(&body).unwrap_or_default();
        if let Err(e) = n.notify(&subject, &text).await {
            tracing::error!(function = %record.function, target = %record.target, error = %e, "the approval notice could not be sent");
        }
    }
}

/// An approval asked: its id, the two links and when they expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub id: String,
    pub approve: String,
    pub reject: String,
    pub expires_at: i64,
}

/// The autonomy part of an audit record (`details.autonomy`).
pub fn audit_detail(resolved: &Resolved, decision: &AutonomyDecision) -> Value {
    json!({
        "level": resolved.level,
        "source": resolved.source,
        "resolved": resolved.reason,
        "decision": decision.code(),
        "reason": decision.reason(),
    })
}
