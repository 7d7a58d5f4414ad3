//! Pure decisions over what was read: is the object even eligible, is it intact, and what to
//! do about it when it is not (restore from a verified good copy, or quarantine the
//! evidence). No I/O here: the handler gathers the facts, these functions judge them.

use serde::Serialize;

use selfheal_core::checksums;
use selfheal_core::ports::objects::{ObjectFacts, ObjectRef};
use selfheal_core::{Decision, SkipCode, SkipReason};

use crate::expect::Expected;
use crate::repair::QUARANTINED_FROM;
use crate::settings::Settings;

/// Where a verified good copy was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyKind {
    Replica,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoodCopy {
    pub kind: CopyKind,
    pub object: ObjectRef,
    pub size: u64,
    /// The ETag of the bytes verified: the copy is made only from those.
    pub etag: Option<String>,
}

/// The result of hashing one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub matched: bool,
    /// The computed digest (hex).
    pub computed: String,
    pub bytes: u64,
    /// The independent witness (S3's checksum, an MD5 ETag) that matched the bytes, when the
    /// expectation came from the producer's metadata and a witness was there.
    pub agrees_with: Option<String>,
}

/// What to do about a corrupted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Copy the good bytes over the object (server-side), then verify again.
    Restore { from: GoodCopy },
    /// No good copy: keep the evidence; the original stays where it is.
    Quarantine { to: ObjectRef },
}

impl Fix {
    /// What would be done, for a dry run's record (and a refusal's).
    pub fn would(&self, current: &ObjectRef, reason: &str) -> String {
        match self {
            Fix::Restore { from } => format!("restore {current} from {}: {reason}", from.object),
            Fix::Quarantine { to } => format!("quarantine {current} to {to}: {reason}"),
        }
    }
}

/// Keys of quarantine copies are evidence: they are never examined, let alone restored.
/// Judged on the key alone, before anything is read.
pub fn quarantine_key(settings: &Settings, bucket: &str, key: &str) -> Option<SkipReason> {
    settings.is_quarantine_key(bucket, key).then(|| {
        SkipReason::new(
            SkipCode::TargetNotEligible,
            "a quarantine copy: evidence, never restored",
        )
    })
}

/// A quarantine copy written elsewhere (another bucket or prefix) is known by its marker.
pub fn quarantine_copy(
    metadata: &std::collections::BTreeMap<String, String>,
) -> Option<SkipReason> {
    metadata.get(QUARANTINED_FROM).map(|of| {
        SkipReason::new(
            SkipCode::TargetNotEligible,
            format!("a quarantine copy of {of}: evidence, never restored"),
        )
    })
}

/// Why an object's bytes cannot be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unreadable {
    /// GLACIER or DEEP_ARCHIVE: GetObject fails until the object is restored from the archive.
    Archived,
    /// SSE-C: the bytes cannot be read without the customer's key.
    SseC,
}

/// Objects whose bytes cannot be read are unverifiable, known from the head alone: reading
/// them would only fail (and notify) on every scrub.
pub fn unreadable(facts: &ObjectFacts) -> Option<(Unreadable, SkipReason)> {
    if facts.encryption.customer_key {
        let why = "SSE-C object: its bytes cannot be read without the customer's key";
        return Some((
            Unreadable::SseC,
            SkipReason::new(SkipCode::Unverifiable, why),
        ));
    }
    match facts.storage_class.as_deref() {
        Some(class @ ("GLACIER" | "DEEP_ARCHIVE")) => Some((
            Unreadable::Archived,
            SkipReason::new(
                SkipCode::Unverifiable,
                format!(
                    "archived ({class}): its bytes cannot be read until restored from the archive"
                ),
            ),
        )),
        _ => None,
    }
}

/// Verified → nothing to do; the metadata digest is stale (S3's own checksum of the bytes
/// agrees with them) → escalate, never restore; corrupted → restore from the good copy, or
/// quarantine.
pub fn decide(
    expected: &Expected,
    current: &Verified,
    restored_from: Option<&str>,
    good: Option<GoodCopy>,
    quarantine: ObjectRef,
) -> Decision<Fix> {
    if current.matched {
        let earlier = restored_from
            .map(|f| format!(" (restored earlier from {f})"))
            .unwrap_or_default();
        return Decision::skip(
            SkipCode::NothingToDo,
            format!(
                "verified: {} bytes match the {}{earlier}",
                current.bytes, expected.label
            ),
        );
    }
    let mismatch = format!(
        "bytes do not match the {}: expected {}, computed {}",
        expected.label,
        checksums::to_hex(&expected.value),
        current.computed
    );
    if let Some(witness) = &current.agrees_with {
        return Decision::skip(
            SkipCode::StaleDigest,
            format!(
                "{mismatch}; but they match the {witness}: new content written with a stale \
                 recorded digest, most likely, not corruption; not restored (a person must look)"
            ),
        );
    }
    match good {
        Some(from) => {
            let reason = format!(
                "{mismatch}; {} {} verified good",
                match from.kind {
                    CopyKind::Replica => "replica",
                    CopyKind::Version => "earlier version",
                },
                from.object
            );
            Decision::act(Fix::Restore { from }, reason)
        }
        None => Decision::act(
            Fix::Quarantine { to: quarantine },
            format!("{mismatch}; no verified good copy in the replica or earlier versions"),
        ),
    }
}

/// The object is no longer the one examined (a new write, a delete): it must be verified
/// again, never overwritten. `now` is its head right before the copy.
pub fn replaced(examined: &ObjectFacts, now: Option<&ObjectFacts>) -> Option<String> {
    let Some(now) = now else {
        return Some("it was deleted".into());
    };
    if now.etag != examined.etag {
        return Some(format!(
            "its ETag is now {:?}, was {:?}",
            now.etag.as_deref().unwrap_or("-"),
            examined.etag.as_deref().unwrap_or("-")
        ));
    }
    let version = |f: &ObjectFacts| f.object.as_ref().and_then(|o| o.version_id.clone());
    match (version(examined), version(now)) {
        (Some(a), Some(b)) if a != b => Some(format!("its version is now {b}, was {a}")),
        _ => None,
    }
}

/// A fix that would copy more than the ceiling is not started: it may not finish within the
/// invocation, and a half-done restore helps nobody. A person is told instead.
pub fn too_large(bytes: u64, settings: &Settings) -> Option<SkipReason> {
    (bytes > settings.max_copy_bytes).then(|| {
        SkipReason::new(
            SkipCode::TargetNotEligible,
            format!(
                "the fix would copy {bytes} bytes, more than SELFHEAL_RESTORE_MAX_COPY_BYTES ({}): \
                 not started; a person must restore it",
                settings.max_copy_bytes
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect;
    use selfheal_core::checksums::{Algorithm, Spec};

    fn expected() -> Expected {
        Expected {
            source: expect::SourceKind::Metadata,
            label: "metadata sha256 (sha256)".into(),
            algorithm: Algorithm::Sha256,
            value: vec![1, 2],
            specs: vec![Spec::whole(Algorithm::Sha256)],
            size: None,
        }
    }

    fn verified(matched: bool) -> Verified {
        Verified {
            matched,
            computed: "0303".into(),
            bytes: 2,
            agrees_with: None,
        }
    }

    #[test]
    fn a_changed_or_deleted_object_counts_as_replaced() {
        let facts = |etag: &str, v: Option<&str>| ObjectFacts {
            object: Some(ObjectRef::new("b", "k").version(v.map(str::to_string))),
            etag: Some(etag.into()),
            ..ObjectFacts::default()
        };
        assert_eq!(replaced(&facts("a", None), Some(&facts("a", None))), None);
        assert_eq!(
            replaced(&facts("a", Some("1")), Some(&facts("a", Some("1")))),
            None
        );
        assert!(replaced(&facts("a", None), Some(&facts("b", None))).is_some());
        assert!(replaced(&facts("a", Some("1")), Some(&facts("a", Some("2")))).is_some());
        assert!(replaced(&facts("a", None), None).is_some());
    }

    #[test]
    fn a_copy_above_the_ceiling_is_not_started() {
        let s = Settings {
            max_copy_bytes: 100,
            ..Settings::default()
        };
        assert!(too_large(100, &s).is_none());
        let why = too_large(101, &s).expect("too large");
        assert_eq!(why.code, SkipCode::TargetNotEligible);
    }

    #[test]
    fn decide_table() {
        let q = ObjectRef::new("b", "selfheal-quarantine/b/k/e");
        let replica = GoodCopy {
            kind: CopyKind::Replica,
            object: ObjectRef::new("r", "k"),
            size: 2,
            etag: None,
        };
        match decide(
            &expected(),
            &verified(true),
            Some("s3://r/k"),
            Some(replica.clone()),
            q.clone(),
        ) {
            Decision::Skip { reason } => {
                assert_eq!(reason.code, SkipCode::NothingToDo);
                assert!(
                    reason.detail.contains("restored earlier from s3://r/k"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        match decide(
            &expected(),
            &verified(false),
            None,
            Some(replica.clone()),
            q.clone(),
        ) {
            Decision::Act {
                action: Fix::Restore { from },
                reason,
            } => {
                assert_eq!(from, replica);
                assert!(reason.contains("expected 0102, computed 0303"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(&expected(), &verified(false), None, None, q.clone()),
            Decision::act(
                Fix::Quarantine { to: q },
                "bytes do not match the metadata sha256 (sha256): expected 0102, computed 0303; no verified good copy in the replica or earlier versions"
            )
        );
    }

    #[test]
    fn a_stale_metadata_digest_is_escalated_even_with_a_good_copy() {
        let q = ObjectRef::new("b", "selfheal-quarantine/b/k/e");
        let earlier = GoodCopy {
            kind: CopyKind::Version,
            object: ObjectRef::new("b", "k").version(Some("v1".into())),
            size: 2,
            etag: None,
        };
        let rewritten = Verified {
            agrees_with: Some("s3 checksum sha256".into()),
            ..verified(false)
        };
        match decide(&expected(), &rewritten, None, Some(earlier), q) {
            Decision::Skip { reason } => {
                assert_eq!(reason.code, SkipCode::StaleDigest);
                assert!(reason.detail.contains("s3 checksum sha256"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn archived_and_sse_c_objects_are_unreadable() {
        use selfheal_core::ports::objects::Encryption;
        let with_class = |c: &str| ObjectFacts {
            storage_class: Some(c.into()),
            ..Default::default()
        };
        let cases = [
            (with_class("GLACIER"), Some(Unreadable::Archived)),
            (with_class("DEEP_ARCHIVE"), Some(Unreadable::Archived)),
            (with_class("GLACIER_IR"), None),
            (with_class("STANDARD"), None),
            (ObjectFacts::default(), None),
            (
                ObjectFacts {
                    encryption: Encryption {
                        customer_key: true,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                Some(Unreadable::SseC),
            ),
        ];
        for (facts, want) in cases {
            let got = unreadable(&facts);
            assert_eq!(got.as_ref().map(|(k, _)| *k), want, "{facts:?}");
            if let Some((_, r)) = got {
                assert_eq!(r.code, SkipCode::Unverifiable);
            }
        }
    }

    #[test]
    fn quarantine_copies_are_never_eligible() {
        let s = Settings::default();
        let cases = [
            ("b", "selfheal-quarantine/b/k/e", true),
            ("b", "data/k", false),
        ];
        for (bucket, key, skipped) in cases {
            let r = quarantine_key(&s, bucket, key);
            assert_eq!(r.is_some(), skipped, "{bucket}/{key}");
            if let Some(r) = r {
                assert_eq!(r.code, SkipCode::TargetNotEligible);
            }
        }
        let mut meta = std::collections::BTreeMap::new();
        assert_eq!(quarantine_copy(&meta), None);
        meta.insert(QUARANTINED_FROM.to_string(), "s3://b/k".to_string());
        let r = quarantine_copy(&meta).unwrap();
        assert_eq!(r.code, SkipCode::TargetNotEligible);
        assert_eq!(
            r.detail,
            "a quarantine copy of s3://b/k: evidence, never restored"
        );
    }

    #[test]
    fn would_names_the_fix() {
        let current = ObjectRef::new("b", "k");
        let restore = Fix::Restore {
            from: GoodCopy {
                kind: CopyKind::Version,
                object: ObjectRef::new("b", "k").version(Some("v1".into())),
                size: 1,
                etag: None,
            },
        };
        assert!(restore.would(&current, "why").starts_with("restore "));
        assert!(restore.would(&current, "why").ends_with(": why"));
        let q = Fix::Quarantine {
            to: ObjectRef::new("f", "q"),
        };
        assert!(q.would(&current, "why").starts_with("quarantine "));
    }
}
