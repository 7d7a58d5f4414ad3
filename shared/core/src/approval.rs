//! One-click approval (issue 17): signed, single-use tokens bound to one action.
//!
//! A token is `base64url(claims JSON) "." base64url(HMAC-SHA256(key, <the first part as
//! text>))`, both without padding. The claims name the function, target, action and episode,
//! a unique approval id, the decision the link stands for (`approve` or `reject`: each link has
//! its own token, so a reject link cannot be turned into an approve), and the validity
//! (`iat`, `exp`). Both links of one request share the approval id, so whichever is used first
//! consumes the other too.
//!
//! [`verify`] checks, in order: size and shape, the MAC (constant-time, before the claims are
//! even parsed), the version, the function, the validity window. Single use is the caller's
//! conditional write of [`single_use_claim`] in the idempotency ledger; [`consumption`] reads
//! its result. The key is an SSM SecureString read through the `Parameters` port
//! ([`Key::load`]); it is never logged, displayed or echoed in an error.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::AwsError;
use crate::ports::idempotency::{Claim, ClaimResult};
use crate::ports::parameters::Parameters;
use crate::settings::ConfigError;

pub mod gate;

type HmacSha256 = Hmac<Sha256>;

/// The claims format this code signs and accepts.
pub const VERSION: u32 = 1;
/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// Longer tokens are refused before any decoding (ours are a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Tolerated clock difference between the signer and the verifier, in seconds.
pub const CLOCK_SKEW_SECONDS: i64 = 60;
/// The setting naming the SSM SecureString parameter that holds the key.
pub const KEY_PARAMETER_SETTING: &str = "SELFHEAL_APPROVAL_KEY_PARAMETER";
/// The setting for how long links stay valid, in seconds.
pub const TTL_SETTING: &str = "SELFHEAL_APPROVAL_TTL_SECONDS";
/// Links are valid four hours unless [`TTL_SETTING`] says otherwise.
pub const DEFAULT_TTL_SECONDS: i64 = 4 * 3600;
/// The longest validity accepted: 7 days.
pub const MAX_TTL_SECONDS: i64 = 7 * 86_400;
/// How long the single-use record outlives the token (for the audit trail).
pub const RECORD_RETENTION_SECONDS: i64 = 30 * 86_400;

/// What a link stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    Approve,
    Reject,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Approve => "approve",
            Choice::Reject => "reject",
        }
    }
}

/// What a token says, once verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub v: u32,
    #[serde(rename = "fn")]
    pub function: String,
    pub target: String,
    pub action: String,
    pub episode: String,
    /// The approval id: unique per request for approval, shared by its two links, and the
    /// single-use key ([`approval_key`]).
    pub id: String,
    pub decision: Choice,
    /// Issued at (epoch seconds).
    pub iat: i64,
    /// Expires at (epoch seconds): refused from this second on.
    pub exp: i64,
}

impl Claims {
    /// The ledger key whose conditional write makes this approval single use.
    pub fn ledger_key(&self) -> String {
        approval_key(&self.function, &self.id)
    }
}

/// The ledger key of an approval: `<function>#approval#<id>`.
pub fn approval_key(function: &str, id: &str) -> String {
    format!("{function}#approval#{id}")
}

/// A fresh approval id for one request for approval: a digest of what it is about and of the
/// request that asked (the Lambda request id is unique), 32 hex characters.
pub fn approval_id(
    function: &str,
    target: &str,
    action: &str,
    episode: &str,
    request: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [function, target, action, episode, request] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a token was refused. Messages never contain the key nor the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token is {len} characters long, more than the {MAX_TOKEN_LEN} accepted")]
    TooLong { len: usize },
    #[error("the token's signature does not match: it was altered or signed with another key")]
    BadSignature,
    #[error("the token uses claims version {found}, this code accepts version {VERSION}")]
    UnsupportedVersion { found: u64 },
    #[error("the token is for function {found:?}, not {expected:?}")]
    ForeignFunction { expected: String, found: String },
    #[error("the token is not valid yet (issued at {iat}, now {now})")]
    NotYetValid { iat: i64, now: i64 },
    #[error("the token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
}

impl TokenError {
    /// `malformed`, `bad-signature`, ... for audit records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) | TokenError::TooLong { .. } => "malformed",
            TokenError::BadSignature => "bad-signature",
            TokenError::UnsupportedVersion { .. } => "unsupported-version",
            TokenError::ForeignFunction { .. } => "foreign-function",
            TokenError::NotYetValid { .. } => "not-yet-valid",
            TokenError::Expired { .. } => "expired",
        }
    }
}

/// The signing key. Its bytes are never displayed: `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(<redacted, {} bytes>)", self.0.len())
    }
}

/// Why a key was refused or could not be read. Never contains the key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    #[error("the approval key is {bytes} bytes long: at least {MIN_KEY_BYTES} are required")]
    TooShort { bytes: usize },
    #[error("the approval key has the base64: prefix but is not valid base64")]
    NotBase64,
    #[error("the approval key has only {distinct} distinct byte values: use a random key")]
    Weak { distinct: usize },
    #[error("the approval key parameter {name} does not exist")]
    Missing { name: String },
    #[error("reading the approval key parameter {name}: {source}")]
    Read { name: String, source: AwsError },
}

impl Key {
    /// The key from the parameter's value, trimmed. A value starting with `base64:` is standard
    /// base64 of the key bytes (for binary keys); any other value is the key itself, as UTF-8
    /// bytes (so `openssl rand -base64 48`, stored as is, is a 64-byte key). At least
    /// [`MIN_KEY_BYTES`] bytes, and not a repeated pattern (fewer than 16 distinct bytes).
    pub fn from_parameter(value: &str) -> Result<Key, KeyError> {
        let value = value.trim();
        let bytes = match value.strip_prefix("base64:") {
            Some(b64) => STANDARD
                .decode(b64.trim())
                .map_err(|_| KeyError::NotBase64)?,
            None => value.as_bytes().to_vec(),
        };
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { bytes: bytes.len() });
        }
        let mut seen = [false; 256];
        bytes.iter().for_each(|b| seen[*b as usize] = true);
        let distinct = seen.iter().filter(|s| **s).count();
        if distinct < 16 {
            return Err(KeyError::Weak { distinct });
        }
        Ok(Key(bytes))
    }

    /// Reads the key from the parameter `name` (an SSM SecureString, read with decryption).
    pub async fn load(params: &dyn Parameters, name: &str) -> Result<Key, KeyError> {
        match params.get(name).await {
            Ok(Some(value)) => Key::from_parameter(&value),
            Ok(None) => Err(KeyError::Missing { name: name.into() }),
            Err(source) => Err(KeyError::Read {
                name: name.into(),
                source,
            }),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; the error type exists for fixed-size MACs only.
        match <HmacSha256 as KeyInit>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }
}

/// Signs the claims: `base64url(claims JSON).base64url(HMAC-SHA256)`.
pub fn sign(claims: &Claims, key: &Key) -> String {
    let body = json!({
        "v": claims.v,
        "fn": claims.function,
        "target": claims.target,
        "action": claims.action,
        "episode": claims.episode,
        "id": claims.id,
        "decision": claims.decision,
        "iat": claims.iat,
        "exp": claims.exp,
    })
    .to_string();
    let payload = URL_SAFE_NO_PAD.encode(body.as_bytes());
    let mut mac = key.mac();
    mac.update(payload.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{payload}.{sig}")
}

/// Verifies a token for `expected_function` at `now` (epoch seconds). The MAC is checked
/// (in constant time) before the claims are parsed, so nothing unauthenticated is interpreted.
pub fn verify(
    token: &str,
    key: &Key,
    now: i64,
    expected_function: &str,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong { len: token.len() });
    }
    let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed(
        "no '.' between the claims and the signature",
    ))?;
    if payload.is_empty() || sig.contains('.') {
        return Err(TokenError::Malformed(
            "expected two parts separated by one '.'",
        ));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
    let mut mac = key.mac();
    mac.update(payload.as_bytes());
    mac.verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    let body = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed("the claims are not base64url"))?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| TokenError::Malformed("the claims are not JSON"))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(found) => return Err(TokenError::UnsupportedVersion { found }),
        None => return Err(TokenError::Malformed("the claims have no version")),
    }
    let claims: Claims = serde_json::from_value(value)
        .map_err(|_| TokenError::Malformed("the claims do not have the expected fields"))?;
    if claims.function != expected_function {
        return Err(TokenError::ForeignFunction {
            expected: expected_function.into(),
            found: claims.function,
        });
    }
    if claims.iat > now.saturating_add(CLOCK_SKEW_SECONDS) {
        return Err(TokenError::NotYetValid {
            iat: claims.iat,
            now,
        });
    }
    if now >= claims.exp {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now,
        });
    }
    Ok(claims)
}

/// What one request for approval is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub function: String,
    pub target: String,
    pub action: String,
    pub episode: String,
    /// From [`approval_id`].
    pub id: String,
}

/// The two tokens of one request for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub approve: String,
    pub reject: String,
    pub exp: i64,
}

/// Issues the approve and reject tokens of `request`, valid `ttl` seconds from `now`.
pub fn issue(request: &Request, key: &Key, now: i64, ttl: i64) -> Tokens {
    let exp = now.saturating_add(ttl.max(1));
    let claims = |decision| Claims {
        v: VERSION,
        function: request.function.clone(),
        target: request.target.clone(),
        action: request.action.clone(),
        episode: request.episode.clone(),
        id: request.id.clone(),
        decision,
        iat: now,
        exp,
    };
    Tokens {
        approve: sign(&claims(Choice::Approve), key),
        reject: sign(&claims(Choice::Reject), key),
        exp,
    }
}

/// Why a function URL cannot be used as the base of approval links.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the approval URL {value:?} is not usable: {why}")]
pub struct UrlError {
    /// The value as given, cut to 200 characters.
    pub value: String,
    pub why: &'static str,
}

/// Checks the base of approval links (the function URL, from the template): `https://` only,
/// a host, no fragment, nothing that needs escaping in a notice (spaces, quotes, `<`, `>`,
/// control characters). Returns it trimmed.
pub fn base_url(value: &str) -> Result<String, UrlError> {
    let v = value.trim();
    let err = |why| UrlError {
        value: value.chars().take(200).collect(),
        why,
    };
    let rest = v
        .strip_prefix("https://")
        .ok_or_else(|| err("links must be https://"))?;
    if rest.is_empty() || rest.starts_with(['/', '?', ':']) {
        return Err(err("no host"));
    }
    if v.chars()
        .any(|c| c.is_control() || c.is_whitespace() || "\"'<>`{}|\\^#".contains(c))
    {
        return Err(err(
            "it holds characters that would need escaping, or a fragment",
        ));
    }
    Ok(v.to_string())
}

/// The link for a token: `<function URL>?t=<token>` (tokens are URL-safe as they are).
pub fn link(function_url: &str, token: &str) -> String {
    let base = function_url.trim_end_matches(['?', '&']);
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}t={token}")
}

/// Reads `SELFHEAL_APPROVAL_TTL_SECONDS` (default four hours; 60 s to 7 days).
pub fn ttl_setting(get: &impl Fn(&str) -> Option<String>) -> Result<i64, ConfigError> {
    match get(TTL_SETTING) {
        None => Ok(DEFAULT_TTL_SECONDS),
        Some(v) => match v.parse::<i64>() {
            Ok(t) if (60..=MAX_TTL_SECONDS).contains(&t) => Ok(t),
            _ => Err(ConfigError::Invalid {
                name: TTL_SETTING,
                value: v,
                expected: "a number of seconds from 60 to 604800 (7 days)",
            }),
        },
    }
}

/// The conditional write that consumes an approval: claimed once, never again. The lease runs
/// past the token's expiry (with the clock skew), so it cannot lapse while the token is still
/// accepted; the caller then settles it as done (or leaves it: either way it stays used).
pub fn single_use_claim(claims: &Claims, owner: &str) -> Claim {
    Claim {
        key: claims.ledger_key(),
        owner: owner.into(),
        lease_until: claims.exp.saturating_add(CLOCK_SKEW_SECONDS + 3600),
        expires_at: claims.exp.saturating_add(RECORD_RETENTION_SECONDS),
        uses_budget: false,
    }
}

/// Whether the approval was consumed by this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Use {
    /// This request consumed it: go on (through the guardrails, with the state re-checked).
    Consumed,
    /// It was used before (this link or its twin): refuse, act on nothing.
    AlreadyUsed,
}

/// Reads the result of [`single_use_claim`]. A budget refusal cannot happen (the claim uses no
/// budget) and is read as used: when in doubt, nothing is acted on.
pub fn consumption(result: ClaimResult) -> Use {
    match result {
        ClaimResult::Claimed => Use::Consumed,
        ClaimResult::Conflict | ClaimResult::BudgetRefused => Use::AlreadyUsed,
    }
}

#[cfg(test)]
mod tests;
