//! The repair the guardrails allowed: a server-side copy of the good bytes over the object,
//! verified after the copy; or, with no good copy, a copy of the corrupted bytes to the
//! quarantine location for forensics. Nothing is ever deleted. Each ends in the record of
//! what came of it.

use chrono::{SecondsFormat, Utc};

use selfheal_core::ports::objects::{CopySpec, Encryption, ObjectFacts, ObjectRef, Objects};
use selfheal_core::{AuditBuilder, AuditRecord, AwsError};

use crate::decide::{Fix, GoodCopy, Verified};
use crate::expect::{Expected, SourceKind};
use crate::settings::Settings;
use crate::verify::verify;

/// Metadata written on a restored object: where the good bytes came from, and when.
pub const RESTORED_FROM: &str = "selfheal-restored-from";
pub const RESTORED_AT: &str = "selfheal-restored-at";
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

impl Repair<'_> {
    /// Applies `fix` (already allowed by the guardrails) and returns the record of what came
    /// of it. A failed copy is not handed back for a Lambda retry: the ledger holds the
    /// reservation, so a retry would be refused by the cooldown. Audited and notified instead.
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
                    Ok((restored, v)) if v.matched => audit
                        .detail("restored_version", &restored.version_id)
                        .detail("computed_after", &v.computed)
                        .acted(format!(
                            "restored {current} from {}, verified after copy: {reason}",
                            from.object
                        )),
                    Ok((restored, v)) => audit.detail("computed_after", &v.computed).failed(
                        "restore-verify-failed",
                        format!(
                            "copied {} over {restored}, but the result does not match the {}",
                            from.object, obj.expected.label
                        ),
                    ),
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
                Err(e) => audit.failed(
                    "quarantine-failed",
                    format!("{reason}; quarantine copy to {to} failed: {e}"),
                ),
            },
        }
    }

    /// A copy of `source` onto `dest` that keeps `facts`' metadata, headers, encryption and
    /// storage class; callers add tags, markers and the checksum.
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
        }
    }

    /// Copies the good bytes over the object, keeping its metadata, headers, tags and
    /// encryption, marks it restored, and verifies the result. Returns the restored object.
    async fn restore(
        &self,
        obj: &Corrupted<'_>,
        from: &GoodCopy,
    ) -> Result<(ObjectRef, Verified), AwsError> {
        let current = obj.current;
        let mut spec = self.copy_spec(from.object.clone(), from.size, current, obj.facts);
        spec.tags = self.objects.object_tags(current).await?;
        spec.metadata
            .insert(RESTORED_FROM.into(), from.object.to_string());
        spec.metadata.insert(
            RESTORED_AT.into(),
            Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        if obj.expected.source == SourceKind::S3Checksum {
            spec.checksum = Some(obj.expected.algorithm);
        }
        // Pinned to the new version where there is one; "null" (unversioned) is not pinned:
        // the ETag read next pins the read instead.
        let version = self.objects.copy(&spec).await?.filter(|v| v != "null");
        let restored = ObjectRef::new(&current.bucket, &current.key).version(version);
        let after = self.objects.head(&restored).await?;
        let etag = after.as_ref().and_then(|f| f.etag.clone());
        let verified = verify(self.objects, &restored, etag.as_deref(), obj.expected, None).await?;
        Ok((restored, verified))
    }

    /// Copies the corrupted object to the quarantine location, as it is, for forensics.
    async fn quarantine(&self, obj: &Corrupted<'_>, to: &ObjectRef) -> Result<(), AwsError> {
        let current = obj.current;
        let mut spec = self.copy_spec(current.clone(), obj.facts.size, to, obj.facts);
        spec.tags = self.objects.object_tags(current).await?;
        spec.metadata
            .insert(QUARANTINED_FROM.into(), current.to_string());
        self.objects.copy(&spec).await.map(|_| ())
    }
}
