//! Closed loop (issue 14): every restore is followed up. Acting schedules a one-time call back
//! (EventBridge Scheduler, `SELFHEAL_RESTORE_VERIFY_AFTER_SECONDS` later) carrying what was
//! restored; the verification then reads the object again:
//!
//! * **healed**: the restored bytes still verify, and (on a versioned bucket) the version the
//!   restore replaced is the one examined: no newer write was replaced. A restore superseded
//!   since by a newer write is healed too when its version still verifies (the newer object is
//!   verified by its own event);
//! * **not-healed**: the restored bytes no longer verify: a person is told (corrupted again
//!   within minutes is not something to restore in a loop);
//! * **escalated**: the object or the restored version is gone, or the version the restore
//!   replaced is not the one examined (a newer write was replaced).
//!
//! On a bucket without versioning, a restore superseded by a newer write cannot be read again:
//! recorded as `superseded`, with no outcome claimed.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use selfheal_core::episode::{action_id, episode_id, follow_up, Verify, VERIFY_VERSION};
use selfheal_core::ports::objects::{ObjectFacts, ObjectRef};
use selfheal_core::{AuditRecord, HandlerError, Heal, Invocation, Outcome, Response};

use crate::expect;
use crate::handler::Deps;
use crate::repair::RESTORED_ETAG;
use crate::verify::verify;
use crate::FUNCTION;

/// What a restore's verification checks, carried in the follow-up (in `alarm_event`:
/// restore-object's episodes start from a corruption, not an alarm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreCheck {
    pub bucket: String,
    pub key: String,
    /// The restored version (versioned buckets).
    pub version_id: Option<String>,
    /// The restored object's ETag.
    pub etag: Option<String>,
    /// The ETag of the corrupted object the restore replaced.
    pub examined_etag: Option<String>,
}

/// What the verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Healed(String),
    NotHealed(String),
    Escalated(String),
    /// Unversioned and replaced since: nothing left to verify.
    Superseded(String),
}

/// The facts a verification read.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The object's latest head (`None`: deleted).
    pub latest: Option<ObjectFacts>,
    /// The restored version's head (versioned buckets; `None`: gone).
    pub restored: Option<ObjectFacts>,
    /// Whether the restored bytes verify (`None`: not read).
    pub verifies: Option<bool>,
    /// The ETag of the version right before the restored one, when the listing showed it.
    pub replaced_etag: Option<Option<String>>,
}

/// Pure: the finding for what was seen.
pub fn judge(c: &RestoreCheck, seen: &Seen) -> Finding {
    let Some(latest) = &seen.latest else {
        return Finding::Escalated(format!(
            "s3://{}/{} was deleted after it was restored",
            c.bucket, c.key
        ));
    };
    let versioned = c.version_id.is_some();
    if versioned && seen.restored.is_none() {
        return Finding::Escalated("the restored version is gone".into());
    }
    if !versioned && latest.etag != c.etag {
        return Finding::Superseded(
            "replaced by a newer write since the restore (no versioning: the restored bytes cannot be read again); the new object is verified by its own event".into(),
        );
    }
    if let Some(replaced) = &seen.replaced_etag {
        if replaced != &c.examined_etag {
            return Finding::Escalated(format!(
                "the version the restore replaced has ETag {:?}, not the corrupted one examined ({:?}): a newer write was replaced",
                replaced.as_deref().unwrap_or("-"),
                c.examined_etag.as_deref().unwrap_or("-")
            ));
        }
    }
    match seen.verifies {
        Some(true) => {
            let now_version = latest.object.as_ref().and_then(|o| o.version_id.clone());
            if versioned && now_version != c.version_id {
                Finding::Healed("the restored version still verifies; superseded since by a newer write (verified by its own event)".into())
            } else {
                Finding::Healed("the restored object still verifies and is still the current version".into())
            }
        }
        Some(false) => Finding::NotHealed(
            "the restored bytes no longer verify: corrupted again after the restore; a person must look".into(),
        ),
        None => Finding::Escalated("the restored bytes could not be verified".into()),
    }
}

impl Deps {
    /// After a restore (inside the guarded action, so the record carries it): schedules its
    /// verification. Never undoes or fails the restore: what went wrong is in the note.
    pub(crate) async fn follow_restore(
        &self,
        mut rec: AuditRecord,
        examined_etag: Option<&str>,
    ) -> AuditRecord {
        if rec.decision != Outcome::Acted {
            return rec;
        }
        let Some((bucket, key)) = rec.target.split_once('/') else {
            return rec;
        };
        let now = Utc::now().timestamp();
        let check = RestoreCheck {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: rec
                .details
                .get("restored_version")
                .and_then(Value::as_str)
                .map(str::to_string),
            etag: rec
                .details
                .get(RESTORED_ETAG)
                .and_then(Value::as_str)
                .map(str::to_string),
            examined_etag: examined_etag.map(str::to_string),
        };
        let v = Verify {
            version: VERIFY_VERSION,
            function: FUNCTION.into(),
            action_id: action_id(FUNCTION, &rec.target, now, &rec.request_id),
            episode_id: episode_id(FUNCTION, &rec.target, now),
            target: rec.target.clone(),
            alarm_name: String::new(),
            acted_at: now,
            episode_started_at: now,
            attempt: 1,
            step: None,
            rung: None,
            phase: None,
            alarm_event: Some(json!(check)),
        };
        let at = now + self.settings.verify_after.as_secs() as i64;
        let note = follow_up(
            self.common.guard.ledger().as_ref(),
            self.follow_ups.as_deref(),
            &v,
            at,
        )
        .await;
        rec.action_id = Some(v.action_id.clone());
        rec.episode_id = Some(v.episode_id.clone());
        if let Value::Object(m) = &mut rec.details {
            m.insert("follow_up".into(), json!(note));
        }
        rec
    }

    /// A restore's verification (the follow-up's event).
    pub(crate) async fn verify_restore(
        &self,
        v: Verify,
        inv: &Invocation,
    ) -> Result<Response, HandlerError> {
        let audit = match self
            .common
            .admit_verification(inv, &v, self.follow_ups.as_deref())
            .await
        {
            Ok(a) => a,
            Err(Ok(refused)) => return Ok(Response::from_audits(vec![refused])),
            Err(Err(e)) => return Err(e),
        };
        let check: RestoreCheck = match v
            .alarm_event
            .clone()
            .map(serde_json::from_value)
            .transpose()
        {
            Ok(Some(c)) => c,
            _ => {
                let rec = audit
                    .heal(Heal::Escalated, None)
                    .detail("escalate", true)
                    .checked(
                        "escalated",
                        "the verification does not say what was restored",
                    );
                return Ok(Response::from_audits(vec![self.common.record(rec).await]));
            }
        };
        let seen = match self.seen(&check).await {
            Ok(s) => s,
            // A passing failure: Scheduler's retry policy calls again.
            Err(e) if e.retryable => {
                return Err(self
                    .common
                    .fail(audit, "verification-read-failed", e.to_string(), true)
                    .await
                    .err()
                    .unwrap_or(HandlerError::Retryable(e.to_string())))
            }
            Err(e) => Seen {
                latest: self
                    .objects
                    .head(&ObjectRef::new(&check.bucket, &check.key))
                    .await
                    .ok()
                    .flatten(),
                verifies: None,
                ..Seen::default()
            }
            .with_note(e.to_string()),
        };
        let now_ms = Utc::now().timestamp_millis();
        let audit = audit.detail("restored", &check);
        let rec = match judge(&check, &seen) {
            Finding::Healed(why) => audit
                .heal(Heal::Healed, Some(v.time_to_heal_ms(now_ms)))
                .checked("healed", why),
            Finding::NotHealed(why) => audit
                .heal(Heal::NotHealed, None)
                .detail("escalate", true)
                .checked("not-healed", why),
            Finding::Escalated(why) => audit
                .heal(Heal::Escalated, None)
                .detail("escalate", true)
                .checked("escalated", why),
            Finding::Superseded(why) => audit.checked("superseded", why),
        };
        Ok(Response::from_audits(vec![self.common.record(rec).await]))
    }

    /// Reads what a restore's verification needs.
    async fn seen(&self, c: &RestoreCheck) -> Result<Seen, selfheal_core::AwsError> {
        let latest = self
            .objects
            .head(&ObjectRef::new(&c.bucket, &c.key))
            .await?;
        let mut seen = Seen {
            latest: latest.clone(),
            ..Seen::default()
        };
        let restored_ref = ObjectRef::new(&c.bucket, &c.key).version(c.version_id.clone());
        let restored = match &c.version_id {
            Some(_) => self.objects.head(&restored_ref).await?,
            None => latest.filter(|l| l.etag == c.etag),
        };
        seen.restored = restored.clone();
        let Some(facts) = restored else {
            return Ok(seen);
        };
        if c.version_id.is_some() {
            let versions = self.objects.versions(&c.bucket, &c.key, 50).await?;
            if let Some(i) = versions
                .iter()
                .position(|x| Some(&x.version_id) == c.version_id.as_ref())
            {
                if let Some(before) = versions.get(i + 1) {
                    seen.replaced_etag = Some(before.etag.clone());
                }
            }
        }
        let expected = match expect::candidate(&facts, &self.settings.metadata_keys) {
            Ok((cand, _)) => {
                let parts = match cand.layout.parts() {
                    Some(n) => Some(self.objects.part_sizes(&restored_ref, n).await?),
                    None => None,
                };
                expect::expected(cand, parts.as_deref(), facts.size).ok()
            }
            Err(_) => None,
        };
        if let Some(expected) = expected {
            let v = verify(
                self.objects.as_ref(),
                &restored_ref,
                facts.etag.as_deref(),
                &expected,
                None,
            )
            .await?;
            seen.verifies = Some(v.matched);
        }
        Ok(seen)
    }
}

impl Seen {
    fn with_note(self, note: String) -> Self {
        tracing::warn!(function = FUNCTION, error = %note, "a restore's verification could not read everything");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(version: Option<&str>) -> RestoreCheck {
        RestoreCheck {
            bucket: "b".into(),
            key: "k".into(),
            version_id: version.map(str::to_string),
            etag: Some("good".into()),
            examined_etag: Some("bad".into()),
        }
    }

    fn head(version: Option<&str>, etag: &str) -> ObjectFacts {
        ObjectFacts {
            object: Some(ObjectRef::new("b", "k").version(version.map(str::to_string))),
            etag: Some(etag.into()),
            ..ObjectFacts::default()
        }
    }

    #[test]
    fn findings() {
        let v = check(Some("v2"));
        let ok = Seen {
            latest: Some(head(Some("v2"), "good")),
            restored: Some(head(Some("v2"), "good")),
            verifies: Some(true),
            replaced_etag: Some(Some("bad".into())),
        };
        assert!(matches!(judge(&v, &ok), Finding::Healed(_)));
        let newer = Seen {
            latest: Some(head(Some("v3"), "new")),
            ..ok.clone()
        };
        assert!(matches!(judge(&v, &newer), Finding::Healed(w) if w.contains("superseded")));
        let rotten = Seen {
            verifies: Some(false),
            ..ok.clone()
        };
        assert!(matches!(judge(&v, &rotten), Finding::NotHealed(_)));
        let clobbered = Seen {
            replaced_etag: Some(Some("someone-else".into())),
            ..ok.clone()
        };
        assert!(
            matches!(judge(&v, &clobbered), Finding::Escalated(w) if w.contains("newer write was replaced"))
        );
        let deleted = Seen {
            latest: None,
            ..ok.clone()
        };
        assert!(matches!(judge(&v, &deleted), Finding::Escalated(_)));
        let gone = Seen {
            restored: None,
            ..ok.clone()
        };
        assert!(matches!(judge(&v, &gone), Finding::Escalated(_)));
        // Unversioned: replaced since → superseded, nothing claimed.
        let u = check(None);
        let replaced = Seen {
            latest: Some(head(None, "new")),
            restored: None,
            verifies: None,
            replaced_etag: None,
        };
        assert!(matches!(judge(&u, &replaced), Finding::Superseded(_)));
        let fine = Seen {
            latest: Some(head(None, "good")),
            restored: Some(head(None, "good")),
            verifies: Some(true),
            replaced_etag: None,
        };
        assert!(matches!(judge(&u, &fine), Finding::Healed(_)));
    }
}
