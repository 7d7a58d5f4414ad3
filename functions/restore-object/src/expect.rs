//! What an object's bytes are expected to hash to, from the most trustworthy source there is:
//!
//! 1. a digest the producer recorded in user metadata;
//! 2. S3's additional checksum (full-object, or composite `-N` over the real parts);
//! 3. the ETag, only where it is an MD5: not SSE-KMS / SSE-C; multipart ETags are the MD5 of
//!    the parts' MD5s, recomputed over the object's real part boundaries.
//!
//! Pure: facts in, an expectation (or why there is none) out.

use serde::Serialize;

use selfheal_core::checksums::{self, Algorithm, Computed, Spec};
use selfheal_core::ports::objects::ObjectFacts;

use crate::settings::MetadataKey;

/// Where the expected digest comes from, most trustworthy first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Metadata,
    S3Checksum,
    Etag,
}

/// How the digest covers the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    Whole,
    /// Digest of the concatenated digests of `parts` parts.
    Composite {
        parts: u32,
    },
    /// A CRC on a multipart object without `-N` and without ChecksumType: S3 may have
    /// computed it either way, so both are computed (in the same pass) and either matches.
    WholeOrComposite {
        parts: u32,
    },
}

impl Layout {
    pub fn parts(&self) -> Option<u32> {
        match self {
            Self::Whole => None,
            Self::Composite { parts } | Self::WholeOrComposite { parts } => Some(*parts),
        }
    }
}

/// An expected digest, before part boundaries are known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub source: SourceKind,
    /// Human label: `metadata sha256`, `s3 checksum crc32c`, `etag`.
    pub label: String,
    pub algorithm: Algorithm,
    #[serde(serialize_with = "hex")]
    pub value: Vec<u8>,
    pub layout: Layout,
}

fn hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&checksums::to_hex(v))
}

/// A complete expectation: compare any of `specs` with `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    pub source: SourceKind,
    pub label: String,
    pub algorithm: Algorithm,
    #[serde(serialize_with = "hex")]
    pub value: Vec<u8>,
    pub specs: Vec<Spec>,
    /// Size the part layout implies (composite only): other sizes cannot match.
    pub size: Option<u64>,
}

/// Why there is no expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unverifiable {
    pub reason: String,
    /// Sources looked at and why each was not usable.
    pub notes: Vec<String>,
}

/// Splits `value-N` into the value and N.
fn split_parts(v: &str) -> (&str, Option<u32>) {
    match v.rsplit_once('-') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (head, n.parse().ok())
        }
        _ => (v, None),
    }
}

const MAX_PARTS: u32 = 10_000;

/// An object carries at most one additional checksum; if ever several, this order decides.
const S3_CHECKSUM_ORDER: [Algorithm; 5] = [
    Algorithm::Crc64Nvme,
    Algorithm::Crc32c,
    Algorithm::Crc32,
    Algorithm::Sha256,
    Algorithm::Sha1,
];

/// Picks the most trustworthy expected digest of an object. `notes` in the result explain
/// the sources that were skipped (also on success, for the audit).
pub fn candidate(
    facts: &ObjectFacts,
    keys: &[MetadataKey],
) -> Result<(Candidate, Vec<String>), Unverifiable> {
    let mut notes = Vec::new();
    if facts.encryption.customer_key {
        return Err(Unverifiable {
            reason: "SSE-C object: its bytes cannot be read without the customer's key".into(),
            notes,
        });
    }
    let etag = facts.etag.as_deref().unwrap_or_default();
    let etag_parts = split_parts(etag).1.filter(|n| (1..=MAX_PARTS).contains(n));
    let found = match from_metadata(facts, keys, &mut notes)
        .or_else(|| from_s3_checksum(facts, etag_parts, &mut notes))
    {
        Some(c) => Ok(Some(c)),
        None => from_etag(facts, etag_parts, &mut notes),
    };
    match found {
        Ok(Some(c)) => Ok((c, notes)),
        Ok(None) => Err(Unverifiable {
            reason: "no trustworthy expected digest: no digest in metadata, no S3 checksum, and the ETag is not an MD5".into(),
            notes,
        }),
        Err(reason) => Err(Unverifiable {
            reason: reason.into(),
            notes,
        }),
    }
}

/// A witness of the bytes independent of the producer's metadata: S3's own checksum, else an
/// MD5 ETag. Only asked for when the expectation comes from metadata. S3 computed it over the
/// bytes it stored, so when the metadata digest disagrees with the bytes and the witness
/// agrees, a writer changed the content and kept old metadata: that is not corruption.
pub fn witness(facts: &ObjectFacts, notes: &mut Vec<String>) -> Option<Candidate> {
    if facts.encryption.customer_key {
        return None;
    }
    let etag = facts.etag.as_deref().unwrap_or_default();
    let etag_parts = split_parts(etag).1.filter(|n| (1..=MAX_PARTS).contains(n));
    from_s3_checksum(facts, etag_parts, notes)
        .or_else(|| from_etag(facts, etag_parts, notes).ok().flatten())
}

/// Source 1, the producer's own record: the first configured key present with a valid digest.
fn from_metadata(
    facts: &ObjectFacts,
    keys: &[MetadataKey],
    notes: &mut Vec<String>,
) -> Option<Candidate> {
    for k in keys {
        let Some(v) = facts.metadata.get(&k.key) else {
            continue;
        };
        match checksums::decode_digest(k.algorithm, v) {
            Some(value) => {
                return Some(Candidate {
                    source: SourceKind::Metadata,
                    label: format!("metadata {} ({})", k.key, k.algorithm),
                    algorithm: k.algorithm,
                    value,
                    layout: Layout::Whole,
                })
            }
            None => notes.push(format!(
                "metadata {} = {v:?} is not a {} digest (hex or base64)",
                k.key, k.algorithm
            )),
        }
    }
    None
}

/// Source 2, S3's additional checksum, with the layout it covers the object in.
fn from_s3_checksum(
    facts: &ObjectFacts,
    etag_parts: Option<u32>,
    notes: &mut Vec<String>,
) -> Option<Candidate> {
    for alg in S3_CHECKSUM_ORDER {
        let Some(raw) = facts.checksums.get(&alg) else {
            continue;
        };
        let (b64, suffix_parts) = split_parts(raw);
        let Some(value) = checksums::from_base64(b64).filter(|v| v.len() == alg.digest_len())
        else {
            notes.push(format!(
                "s3 checksum {alg} {raw:?} is not base64 of a {alg}"
            ));
            continue;
        };
        let checksum_type = facts.checksum_type.as_deref();
        let Some(layout) = checksum_layout(alg, suffix_parts, checksum_type, etag_parts, notes)
        else {
            continue;
        };
        return Some(Candidate {
            source: SourceKind::S3Checksum,
            label: format!("s3 checksum {alg}"),
            algorithm: alg,
            value,
            layout,
        });
    }
    None
}

/// How an S3 checksum covers the object: its `-N` suffix, else its stated type, else what S3
/// does for that algorithm on a multipart object. `None` (with a note) when it cannot tell.
fn checksum_layout(
    alg: Algorithm,
    suffix_parts: Option<u32>,
    checksum_type: Option<&str>,
    etag_parts: Option<u32>,
    notes: &mut Vec<String>,
) -> Option<Layout> {
    Some(match (suffix_parts, checksum_type, etag_parts) {
        (Some(n), _, _) if (1..=MAX_PARTS).contains(&n) => Layout::Composite { parts: n },
        (Some(n), _, _) => {
            notes.push(format!("s3 checksum {alg} claims {n} parts"));
            return None;
        }
        (None, Some("FULL_OBJECT"), _) => Layout::Whole,
        (None, Some("COMPOSITE"), Some(n)) => Layout::Composite { parts: n },
        (None, Some("COMPOSITE"), None) => {
            notes.push(format!(
                "s3 checksum {alg} is composite but the part count is unknown"
            ));
            return None;
        }
        (None, _, None) => Layout::Whole,
        // Multipart, shape not stated. S3 computes CRC64NVME only over the full object,
        // and SHA checksums of multipart uploads only as composites.
        (None, _, Some(n)) => match alg {
            Algorithm::Crc64Nvme => Layout::Whole,
            Algorithm::Sha1 | Algorithm::Sha256 | Algorithm::Md5 => Layout::Composite { parts: n },
            Algorithm::Crc32 | Algorithm::Crc32c => Layout::WholeOrComposite { parts: n },
        },
    })
}

/// Source 3, the ETag, where it is an MD5. An MD5 ETag claiming an impossible part count
/// ends the search (`Err` with the reason): no source is left to fall back to.
fn from_etag(
    facts: &ObjectFacts,
    etag_parts: Option<u32>,
    notes: &mut Vec<String>,
) -> Result<Option<Candidate>, &'static str> {
    let etag = facts.etag.as_deref().unwrap_or_default();
    if facts.encryption.is_kms() {
        notes.push("etag of an SSE-KMS object is not an MD5".into());
        return Ok(None);
    }
    let Some(value) = checksums::from_hex(split_parts(etag).0).filter(|v| v.len() == 16) else {
        notes.push(format!("etag {etag:?} is not an MD5"));
        return Ok(None);
    };
    let layout = match (split_parts(etag).1, etag_parts) {
        (None, _) => Layout::Whole,
        (Some(_), Some(n)) => Layout::Composite { parts: n },
        (Some(_), None) => {
            notes.push(format!("etag {etag:?} claims an impossible part count"));
            return Err("no trustworthy expected digest");
        }
    };
    Ok(Some(Candidate {
        source: SourceKind::Etag,
        label: "etag (md5)".into(),
        algorithm: Algorithm::Md5,
        value,
        layout,
    }))
}

/// Completes a candidate with the object's real part sizes (`None` for whole-object ones).
pub fn expected(c: Candidate, part_sizes: Option<&[u64]>, size: u64) -> Result<Expected, String> {
    let composite = |sizes: &[u64], n: u32| -> Result<Spec, String> {
        if sizes.len() != n as usize {
            return Err(format!(
                "{} names {n} parts but S3 reports {}",
                c.label,
                sizes.len()
            ));
        }
        let total: u64 = sizes.iter().sum();
        if total != size {
            return Err(format!(
                "parts add up to {total} bytes, the object has {size}"
            ));
        }
        Ok(Spec::composite(c.algorithm, sizes.to_vec()))
    };
    let (specs, implied) = match (&c.layout, part_sizes) {
        (Layout::Whole, _) => (vec![Spec::whole(c.algorithm)], None),
        (Layout::Composite { parts }, Some(sizes)) => (vec![composite(sizes, *parts)?], Some(size)),
        (Layout::WholeOrComposite { parts }, Some(sizes)) => (
            vec![Spec::whole(c.algorithm), composite(sizes, *parts)?],
            None,
        ),
        (_, None) => return Err(format!("{} needs the part boundaries", c.label)),
    };
    Ok(Expected {
        source: c.source,
        label: c.label,
        algorithm: c.algorithm,
        value: c.value,
        specs,
        size: implied,
    })
}

/// Whether what was computed matches; and the computed value to show (hex).
pub fn matches(e: &Expected, computed: &[Computed]) -> (bool, String) {
    let ok = computed
        .iter()
        .any(|c| c.value.as_deref() == Some(e.value.as_slice()));
    let shown = computed
        .iter()
        .find(|c| c.value.as_deref() == Some(e.value.as_slice()))
        .or_else(|| computed.first())
        .and_then(|c| c.value.as_deref())
        .map(checksums::to_hex)
        .unwrap_or_else(|| "(bytes do not fit the part layout)".into());
    (ok, shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use selfheal_core::checksums::{digest, to_base64, to_hex};
    use selfheal_core::ports::objects::Encryption;

    fn facts() -> ObjectFacts {
        ObjectFacts {
            size: 5,
            etag: Some(to_hex(&digest(Algorithm::Md5, b"hello"))),
            ..Default::default()
        }
    }

    fn pick(f: &ObjectFacts) -> Result<Candidate, Unverifiable> {
        candidate(f, &Settings::default().metadata_keys).map(|(c, _)| c)
    }

    #[test]
    fn source_order() {
        let sha = digest(Algorithm::Sha256, b"hello");
        let mut f = facts();
        f.metadata.insert("sha256".into(), to_hex(&sha));
        f.checksums.insert(Algorithm::Crc32, "NhCmhg==".into());
        let c = pick(&f).unwrap();
        assert_eq!(
            (c.source, c.algorithm, c.value),
            (SourceKind::Metadata, Algorithm::Sha256, sha)
        );

        f.metadata.insert("sha256".into(), "garbage".into());
        let (c, notes) = candidate(&f, &Settings::default().metadata_keys).unwrap();
        assert_eq!(
            (c.source, c.layout),
            (SourceKind::S3Checksum, Layout::Whole)
        );
        assert_eq!(notes.len(), 1, "{notes:?}");

        f.checksums.clear();
        let c = pick(&f).unwrap();
        assert_eq!((c.source, c.layout), (SourceKind::Etag, Layout::Whole));

        f.encryption = Encryption {
            algorithm: Some("aws:kms".into()),
            ..Default::default()
        };
        assert!(pick(&f).is_err(), "KMS etag is not an MD5");

        f.encryption = Encryption {
            customer_key: true,
            ..Default::default()
        };
        f.metadata
            .insert("md5".into(), to_base64(&digest(Algorithm::Md5, b"hello")));
        assert!(pick(&f).is_err(), "SSE-C cannot be read");
    }

    #[test]
    fn multipart_layouts() {
        let mut f = facts();
        f.etag = Some("8c6f96fe400c627d9394af6161f5921d-2".into());
        let c = pick(&f).unwrap();
        assert_eq!(
            (c.source, c.layout.clone()),
            (SourceKind::Etag, Layout::Composite { parts: 2 })
        );

        let cases = [
            (
                "gzKREhG1RwKmrTCIEhem1Qh4SLYssbnaSjmwJsKJ6aA=-2",
                Algorithm::Sha256,
                None,
                Layout::Composite { parts: 2 },
            ),
            (
                "gzKREhG1RwKmrTCIEhem1Qh4SLYssbnaSjmwJsKJ6aA=",
                Algorithm::Sha256,
                None,
                Layout::Composite { parts: 2 },
            ),
            (
                "MQVsmQ==",
                Algorithm::Crc32,
                Some("FULL_OBJECT"),
                Layout::Whole,
            ),
            (
                "MQVsmQ==",
                Algorithm::Crc32c,
                None,
                Layout::WholeOrComposite { parts: 2 },
            ),
            (
                "MQVsmQ==",
                Algorithm::Crc32c,
                Some("COMPOSITE"),
                Layout::Composite { parts: 2 },
            ),
            ("AAAAAAAAAAA=", Algorithm::Crc64Nvme, None, Layout::Whole),
        ];
        for (raw, alg, ty, want) in cases {
            let mut f = f.clone();
            f.checksums.insert(alg, raw.into());
            f.checksum_type = ty.map(str::to_string);
            let c = pick(&f).unwrap();
            assert_eq!(
                (c.source, c.layout),
                (SourceKind::S3Checksum, want),
                "{raw} {alg} {ty:?}"
            );
        }
    }

    #[test]
    fn completing_with_parts() {
        let c = Candidate {
            source: SourceKind::Etag,
            label: "etag".into(),
            algorithm: Algorithm::Md5,
            value: vec![0; 16],
            layout: Layout::Composite { parts: 2 },
        };
        assert!(expected(c.clone(), Some(&[5, 5]), 10).is_ok());
        assert!(
            expected(c.clone(), Some(&[5, 4]), 10).is_err(),
            "sizes must add up"
        );
        assert!(
            expected(c.clone(), Some(&[10]), 10).is_err(),
            "count must match"
        );
        assert!(expected(c.clone(), None, 10).is_err(), "never guessed");
        let whole = Candidate {
            layout: Layout::Whole,
            ..c
        };
        assert_eq!(expected(whole, None, 10).unwrap().specs.len(), 1);
    }

    #[test]
    fn a_witness_is_s3s_checksum_else_an_md5_etag() {
        let mut f = facts();
        let mut notes = Vec::new();
        let w = witness(&f, &mut notes).unwrap();
        assert_eq!((w.source, w.algorithm), (SourceKind::Etag, Algorithm::Md5));
        f.checksums.insert(
            Algorithm::Sha256,
            to_base64(&digest(Algorithm::Sha256, b"hello")),
        );
        let w = witness(&f, &mut notes).unwrap();
        assert_eq!(
            (w.source, w.algorithm),
            (SourceKind::S3Checksum, Algorithm::Sha256)
        );
        f.checksums.clear();
        f.encryption = Encryption {
            algorithm: Some("aws:kms".into()),
            ..Default::default()
        };
        assert_eq!(
            witness(&f, &mut notes),
            None,
            "a KMS ETag witnesses nothing"
        );
    }

    #[test]
    fn unverifiable_without_sources() {
        let mut f = facts();
        f.etag = Some("not-an-md5".into());
        let err = pick(&f).unwrap_err();
        assert!(err.reason.contains("no trustworthy"), "{err:?}");
    }
}
