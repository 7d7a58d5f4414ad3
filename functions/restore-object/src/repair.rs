//! The repair the guardrails allowed: a server-side copy of the good bytes over the object,
//! verified after the copy; or, with no good copy, a copy of the corrupted bytes to the
//! quarantine location for forensics. Nothing is ever deleted. Each ends in the record of
//! what came of it.

use chrono::{DateTime, SecondsFormat, Utc};

use selfheal_core::ports::objects::{
    CopySpec, Encryption, ObjectFacts, ObjectLock, ObjectRef, Objects,
};
use selfheal_core::{AuditBuilder, AuditRecord, AwsError, SkipCode, SkipReason};

use crate::decide::{replaced, Fix, GoodCopy, Verified};
use crate::expect::{Expected, SourceKind};
use crate::settings::Settings;
use crate::verify::verify;

/// Metadata written on a restored object: where the good bytes came from, and when.
pub const RESTORED_FROM: &str = "selfheal-restored-from";
pub const RESTORED_AT: &str = "selfheal-restored-at";
/// Detail of a restore's record: the restored object's ETag, what its verification looks for.
pub const RESTORED_ETAG: &str = "restored_etag";
/// Metadata written on a quarantine copy: the object it is evidence of.
pub const QUARANTINED_FROM: &str = "selfheal-quarantined-from";

/// The corrupted object being repaired, as examined.
pub struct Corrupted<'a> {
    /// Pinned to the version examined, where there is one.
    pub current: &'a ObjectRef,
    pub facts: &'a ObjectFacts,
    pub expected: &'a Expected,
}

/// Runs fixes over the object store.
pub struct Repair<'a> {
    pub objects: &'a dyn Objects,
    pub settings: &'a Settings,
}

/// Detail set on the record of a fix that stood down because the object was no longer the
/// one examined; the handler then verifies the new object.
pub const REPLACED_BEFORE_COPY: &str = "replaced_before_copy";

/// What a restore came to. Built once per restore and matched at once, never stored: the
/// size difference between its variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Restored {
    /// Copied and verified again; `kept` is where the replaced bytes were kept first (a
    /// bucket without versioning Enabled).
    Done {
        restored: ObjectRef,
        verified: Verified,
        kept: Option<ObjectRef>,
        /// The restored object's ETag (its verification is pinned to it).
        etag: Option<String>,
    },
    /// The object changed after it was examined: nothing was overwritten.
    Replaced(String),
}

impl Repair<'_> {
    /// Applies `fix` (already allowed by the guardrails) and returns the record of what came
    /// of it. A failed copy is not handed back for a Lambda retry: the ledger holds the
    /// reservation, so a retry would be refused by the cooldown. Audited and notified instead.
    /// An object replaced since it was examined is never overwritten: the record stands down
    /// (skipped, [`REPLACED_BEFORE_COPY`]) and the handler verifies the new object.
    pub async fn apply(
        &self,
        audit: AuditBuilder,
        fix: Fix,
        reason: &str,
        obj: &Corrupted<'_>,
    ) -> AuditRecord {
        let current = obj.current;
        match fix {
            Fix::Restore { from } => {
                let audit = audit.detail("restored_from", from.object.to_string());
                match self.restore(obj, &from).await {
                    Ok(Restored::Done {
                        restored,
                        verified: v,
                        kept,
                        etag,
                    }) => {
                        let audit = audit
                            .detail("kept_before_restore", kept.as_ref().map(|k| k.to_string()))
                            .detail("computed_after", &v.computed);
                        if v.matched {
                            audit
                                .detail("restored_version", &restored.version_id)
                                .detail(RESTORED_ETAG, &etag)
                                .acted(format!(
                                    "restored {current} from {}, verified after copy: {reason}",
                                    from.object
                                ))
                        } else {
                            audit.failed(
                                "restore-verify-failed",
                                format!(
                                    "copied {} over {restored}, but the result does not match the {}",
                                    from.object, obj.expected.label
                                ),
                            )
                        }
                    }
                    Ok(Restored::Replaced(why)) => stood_down(audit, current, &why),
                    Err(e) => audit.action_failed("restore-failed", &e),
                }
            }
            Fix::Quarantine { to } => match self.quarantine(obj, &to).await {
                Ok(()) => audit.detail("quarantined_to", to.to_string()).failed(
                    "unrecoverable",
                    format!(
                        "{reason}; corrupted bytes copied to {to} for forensics; the original is left in place"
                    ),
                ),
                Err(e) if e.is_code("PreconditionFailed") => {
                    stood_down(audit, current, "its bytes changed before they were kept")
                }
                Err(e) => audit.failed(
                    "quarantine-failed",
                    format!("{reason}; quarantine copy to {to} failed: {e}"),
                ),
            },
        }
    }

    /// A copy of `source` onto `dest` that keeps `facts`' metadata, headers, encryption and
    /// storage class; callers add tags, markers, conditions and the checksum.
    fn copy_spec(
        &self,
        source: ObjectRef,
        size: u64,
        dest: &ObjectRef,
        facts: &ObjectFacts,
    ) -> CopySpec {
        CopySpec {
            source,
            size,
            dest_bucket: dest.bucket.clone(),
            dest_key: dest.key.clone(),
            metadata: facts.metadata.clone(),
            headers: facts.headers.clone(),
            tags: Vec::new(),
            encryption: Encryption {
                customer_key: false,
                ..facts.encryption.clone()
            },
            storage_class: facts.storage_class.clone(),
            checksum: facts.checksums.keys().next().copied(),
            multipart_threshold: self.settings.multipart_threshold,
            part_size: self.settings.copy_part_size,
            part_concurrency: self.settings.copy_concurrency,
            source_if_match: None,
            dest_if_match: None,
            bucket_key_enabled: facts.bucket_key_enabled,
            grants: None,
        }
    }

    /// Copies the good bytes over the object, keeping its metadata, headers, tags, ACL,
    /// Object Lock settings and encryption, marks it restored, and verifies the result.
    ///
    /// Only over the object examined: it is looked at again right before the copy, the copy
    /// carries `If-Match` (its ETag as examined) and `x-amz-copy-source-if-match` (the good
    /// copy's ETag as verified). On a bucket without versioning Enabled, the bytes about to be
    /// replaced are first kept at the quarantine location: nothing else would keep them.
    async fn restore(&self, obj: &Corrupted<'_>, from: &GoodCopy) -> Result<Restored, AwsError> {
        let current = obj.current;
        let latest = ObjectRef::new(&current.bucket, &current.key);
        if let Some(why) = replaced(obj.facts, self.objects.head(&latest).await?.as_ref()) {
            return Ok(Restored::Replaced(why));
        }
        let mut spec = self.copy_spec(from.object.clone(), from.size, current, obj.facts);
        spec.tags = self.objects.object_tags(current).await?;
        spec.grants = self.objects.acl(current).await?;
        let lock = if obj.facts.object_lock.is_empty() {
            None
        } else if self.objects.object_lock_enabled(&current.bucket).await? {
            Some(lock_to_keep(&obj.facts.object_lock, Utc::now()))
        } else {
            None
        };
        spec.metadata
            .insert(RESTORED_FROM.into(), from.object.to_string());
        spec.metadata.insert(
            RESTORED_AT.into(),
            Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        if obj.expected.source == SourceKind::S3Checksum {
            spec.checksum = Some(obj.expected.algorithm);
        }
        spec.source_if_match = from.etag.clone();
        spec.dest_if_match = obj.facts.etag.clone();
        let kept = match self.objects.versioning(&current.bucket).await?.as_deref() {
            Some("Enabled") => None,
            _ => {
                let etag = obj.facts.etag.as_deref().unwrap_or("no-etag");
                let (qb, qk) = self
                    .settings
                    .quarantine_of(&current.bucket, &current.key, etag);
                let to = ObjectRef::new(qb, qk);
                match self.quarantine(obj, &to).await {
                    Ok(()) => Some(to),
                    Err(e) if e.is_code("PreconditionFailed") => {
                        return Ok(Restored::Replaced(
                            "its bytes changed before they were kept".into(),
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        // Pinned to the new version where there is one; "null" (unversioned) is not pinned:
        // the ETag read next pins the read instead.
        let version = match self.objects.copy(&spec).await {
            Ok(v) => v.filter(|v| v != "null"),
            Err(e) if e.is_code("PreconditionFailed") => {
                return Ok(Restored::Replaced(format!(
                    "the copy's condition no longer held: {e}"
                )))
            }
            Err(e) => return Err(e),
        };
        let restored = ObjectRef::new(&current.bucket, &current.key).version(version);
        if let Some(lock) = lock.filter(|l| !l.is_empty()) {
            // Object Lock is versioned: the restored copy is its own version, unprotected
            // until its lock is put on it here.
            self.objects.put_object_lock(&restored, &lock).await?;
        }
        let after = self.objects.head(&restored).await?;
        let etag = after.as_ref().and_then(|f| f.etag.clone());
        let verified = verify(self.objects, &restored, etag.as_deref(), obj.expected, None).await?;
        Ok(Restored::Done {
            restored,
            verified,
            kept,
            etag,
        })
    }

    /// Copies the corrupted object to the quarantine location, as it is, for forensics: only
    /// the bytes examined (`x-amz-copy-source-if-match`). Not its ACL (evidence is private)
    /// nor its Object Lock settings.
    async fn quarantine(&self, obj: &Corrupted<'_>, to: &ObjectRef) -> Result<(), AwsError> {
        let current = obj.current;
        let mut spec = self.copy_spec(current.clone(), obj.facts.size, to, obj.facts);
        spec.tags = self.objects.object_tags(current).await?;
        spec.source_if_match = obj.facts.etag.clone();
        spec.metadata
            .insert(QUARANTINED_FROM.into(), current.to_string());
        self.objects.copy(&spec).await.map(|_| ())
    }
}

/// The record of a fix that stood down: the object is no longer the one examined.
fn stood_down(audit: AuditBuilder, current: &ObjectRef, why: &str) -> AuditRecord {
    let reason = SkipReason::new(
        SkipCode::ChangeInProgress,
        format!("{current} was replaced after it was examined ({why}): not overwritten; the new object is verified in its own right"),
    );
    audit.detail(REPLACED_BEFORE_COPY, why).skipped(&reason)
}

/// The Object Lock settings a restored copy can carry: the legal hold always; a retention
/// only while its date is still ahead (S3 refuses a retain-until date in the past).
pub fn lock_to_keep(lock: &ObjectLock, now: DateTime<Utc>) -> ObjectLock {
    let ahead = lock
        .retain_until
        .as_deref()
        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
        .is_some_and(|d| d > now);
    ObjectLock {
        mode: lock.mode.clone().filter(|_| ahead),
        retain_until: lock.retain_until.clone().filter(|_| ahead),
        legal_hold: lock.legal_hold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_in_the_past_is_not_carried_over() {
        let now = Utc::now();
        let lock = |until: DateTime<Utc>| ObjectLock {
            mode: Some("GOVERNANCE".into()),
            retain_until: Some(until.to_rfc3339()),
            legal_hold: true,
        };
        let ahead = lock(now + chrono::Duration::days(1));
        assert_eq!(lock_to_keep(&ahead, now), ahead);
        let past = lock_to_keep(&lock(now - chrono::Duration::days(1)), now);
        assert_eq!(
            past,
            ObjectLock {
                mode: None,
                retain_until: None,
                legal_hold: true
            }
        );
    }
}
