//! A Compute checksum job's completion report, read for the two-pass mode: S3 computed each
//! object's checksum at rest; this compares it with what the producer stored and picks out
//! the mismatches, so only those are downloaded and verified.
//!
//! The report is S3 Batch Operations' `Report_CSV_20180820`: a `manifest.json` naming CSV
//! files, each row `Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode,
//! ResultMessage` (the order the manifest's `ReportSchema` gives). For Compute checksum, the
//! result message carries the checksum. AWS documents that it does but not its exact layout,
//! and no emulator produces one, so the reader is deliberately tolerant: a JSON object whose
//! algorithm, type and value keys are matched by name (`checksum_algorithm`,
//! `ChecksumAlgorithm`, `algorithm`; `checksum_type`, ...; `checksum_base64`, `checksum`,
//! `checksum_value`, ...), the value in base64 (as S3's checksum APIs give it; hex under a
//! `*hex` key). A row it cannot read is never taken as
//! healthy: it goes to the full verification like any other doubt.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::batch::decode_key;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("the report manifest is not readable: {0}")]
    Manifest(String),
    #[error("report format {0:?} is not supported (Report_CSV_20180820 is)")]
    Format(String),
    #[error("the report schema lacks the {0} column")]
    Schema(&'static str),
}

/// One CSV file of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportFile {
    pub bucket: String,
    pub key: String,
    /// `succeeded` or `failed` tasks.
    pub succeeded: bool,
    /// The file's MD5 as the manifest gives it (hex), checked after reading.
    pub md5_hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportManifest {
    pub files: Vec<ReportFile>,
    /// Column name → index.
    pub columns: BTreeMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawManifest {
    format: String,
    results: Vec<RawFile>,
    report_schema: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawFile {
    task_execution_status: String,
    bucket: String,
    key: String,
    #[serde(rename = "MD5Checksum", default)]
    md5_checksum: String,
}

pub const FORMAT: &str = "Report_CSV_20180820";

pub fn parse_manifest(text: &str) -> Result<ReportManifest, ReportError> {
    let raw: RawManifest =
        serde_json::from_str(text).map_err(|e| ReportError::Manifest(e.to_string()))?;
    if raw.format != FORMAT {
        return Err(ReportError::Format(raw.format));
    }
    let columns: BTreeMap<String, usize> = raw
        .report_schema
        .split(',')
        .map(|c| c.trim().to_string())
        .enumerate()
        .map(|(i, c)| (c, i))
        .collect();
    for need in ["Bucket", "Key", "TaskStatus", "ResultMessage"] {
        if !columns.contains_key(need) {
            return Err(ReportError::Schema(need));
        }
    }
    let files = raw
        .results
        .into_iter()
        .map(|f| ReportFile {
            succeeded: f.task_execution_status.eq_ignore_ascii_case("succeeded"),
            bucket: f.bucket,
            key: f.key,
            md5_hex: f.md5_checksum.to_ascii_lowercase(),
        })
        .collect();
    Ok(ReportManifest { files, columns })
}

/// A checksum S3 computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Computed {
    /// Upper case: `CRC32`, `CRC32C`, `CRC64NVME`, `MD5`, `SHA1`, `SHA256`, ...
    pub algorithm: String,
    /// `FULL_OBJECT` or `COMPOSITE` when the report says.
    pub checksum_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub line: u64,
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub succeeded: bool,
    pub error: Option<String>,
    /// The checksum, or why the row has none readable.
    pub checksum: Result<Computed, String>,
}

/// Reads the rows of one report file; a row that is not readable at all (a broken CSV line,
/// a key that does not decode) is an `Err` with its line, never dropped silently.
pub fn rows(csv_text: &str, columns: &BTreeMap<String, usize>) -> Vec<Result<Row, (u64, String)>> {
    let col = |n: &str| columns.get(n).copied();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(csv_text.as_bytes());
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i as u64 + 1;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                out.push(Err((line, format!("not a CSV row: {e}"))));
                continue;
            }
        };
        let field = |n: &str| col(n).and_then(|c| rec.get(c)).map(str::to_string);
        let (Some(bucket), Some(raw_key)) = (field("Bucket"), field("Key")) else {
            out.push(Err((line, "row has no bucket or key".into())));
            continue;
        };
        let key = match decode_key(&raw_key) {
            Ok(k) if !k.is_empty() && !bucket.is_empty() => k,
            Ok(_) => {
                out.push(Err((line, "row has an empty bucket or key".into())));
                continue;
            }
            Err(e) => {
                out.push(Err((line, e)));
                continue;
            }
        };
        let succeeded = field("TaskStatus").is_some_and(|s| s.eq_ignore_ascii_case("succeeded"));
        let message = field("ResultMessage").unwrap_or_default();
        let error = (!succeeded).then(|| {
            format!(
                "{} {} {}",
                field("ErrorCode").unwrap_or_default(),
                field("HTTPStatusCode").unwrap_or_default(),
                message
            )
            .trim()
            .to_string()
        });
        let checksum = if succeeded {
            computed(&message)
        } else {
            Err("the Compute checksum task failed".to_string())
        };
        out.push(Ok(Row {
            line,
            bucket,
            key,
            version_id: field("VersionId").filter(|v| !v.is_empty()),
            succeeded,
            error,
            checksum,
        }));
    }
    out
}

fn find<'a>(o: &'a serde_json::Map<String, Value>, names: &[&str]) -> Option<&'a str> {
    o.iter()
        .find(|(k, _)| {
            let k = k.to_ascii_lowercase().replace(['_', '-'], "");
            names.iter().any(|n| *n == k)
        })
        .and_then(|(_, v)| v.as_str())
}

/// The checksum in a Compute checksum result message.
pub fn computed(message: &str) -> Result<Computed, String> {
    let v: Value = serde_json::from_str(message.trim())
        .map_err(|_| format!("result message {:?} is not JSON", cut(message)))?;
    let o = v
        .as_object()
        .ok_or_else(|| format!("result message {:?} is not a JSON object", cut(message)))?;
    let algorithm = find(o, &["checksumalgorithm", "algorithm"])
        .ok_or_else(|| format!("result message {:?} names no algorithm", cut(message)))?
        .trim()
        .to_ascii_uppercase();
    let checksum_type = find(o, &["checksumtype", "type"]).map(|t| t.trim().to_ascii_uppercase());
    let bytes = if let Some(b64) = find(o, &["checksumbase64", "base64"]) {
        decode_b64(b64)?
    } else if let Some(hex) = find(o, &["checksumhex", "hex"]) {
        decode_hex(hex)?
    } else if let Some(v) = find(o, &["checksum", "checksumvalue", "value"]) {
        decode_b64(v).or_else(|_| decode_hex(v))?
    } else {
        return Err(format!(
            "result message {:?} holds no checksum value",
            cut(message)
        ));
    };
    if bytes.is_empty() {
        return Err("the checksum value is empty".into());
    }
    Ok(Computed {
        algorithm,
        checksum_type,
        bytes,
    })
}

fn decode_b64(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| format!("{s:?} is not base64"))
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{s:?} is not hex"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn cut(s: &str) -> String {
    s.chars().take(120).collect()
}

/// What the producer stored, in comparable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stored {
    pub algorithm: String,
    /// The stored value is a checksum of the whole object (not of parts).
    pub full_object: bool,
    pub bytes: Vec<u8>,
}

/// The first pass's verdict on one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Computed and stored agree: healthy, never downloaded.
    Healthy,
    /// They disagree: verify end to end (and restore through the usual path).
    Mismatch { detail: String },
    /// Nothing to compare with (no stored digest of that algorithm and type, an unreadable
    /// row, a failed task): verify end to end, like any doubt.
    Verify { reason: String },
}

pub fn judge(row: &Row, stored: Option<&Stored>) -> Verdict {
    let c = match &row.checksum {
        Ok(c) => c,
        Err(e) => return Verdict::Verify { reason: e.clone() },
    };
    let Some(s) = stored else {
        return Verdict::Verify {
            reason: "no stored digest to compare the computed checksum with".into(),
        };
    };
    if s.algorithm != c.algorithm {
        return Verdict::Verify {
            reason: format!(
                "computed {} but the stored digest is {}",
                c.algorithm, s.algorithm
            ),
        };
    }
    let computed_full = c.checksum_type.as_deref() != Some("COMPOSITE");
    if computed_full != s.full_object {
        return Verdict::Verify {
            reason:
                "computed and stored checksums are of different types (full object vs composite)"
                    .into(),
        };
    }
    if c.bytes == s.bytes {
        Verdict::Healthy
    } else {
        Verdict::Mismatch {
            detail: format!(
                "S3 computed a {} that differs from the stored one",
                c.algorithm
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{
        "Format": "Report_CSV_20180820",
        "ReportCreationDate": "2026-11-30T10:00:00.000Z",
        "Results": [
            {"TaskExecutionStatus": "succeeded", "Bucket": "reports", "MD5Checksum": "83B1c4cbe93fc893f54053697e10fd6e", "Key": "job-1/results/a.csv"},
            {"TaskExecutionStatus": "failed", "Bucket": "reports", "MD5Checksum": "22ee037f3515975f7719699e5c416eaa", "Key": "job-1/results/b.csv"}
        ],
        "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
    }"#;

    #[test]
    fn reads_the_manifest() {
        let m = parse_manifest(MANIFEST).unwrap();
        assert_eq!(m.files.len(), 2);
        assert!(m.files[0].succeeded && !m.files[1].succeeded);
        assert_eq!(m.files[0].md5_hex, "83b1c4cbe93fc893f54053697e10fd6e");
        assert_eq!(m.columns["ResultMessage"], 6);
        assert!(matches!(
            parse_manifest(&MANIFEST.replace("Report_CSV_20180820", "X")),
            Err(ReportError::Format(_))
        ));
        assert!(matches!(
            parse_manifest(&MANIFEST.replace(", ResultMessage", "")),
            Err(ReportError::Schema("ResultMessage"))
        ));
    }

    #[test]
    fn reads_rows_with_quoted_keys_and_json_messages() {
        let m = parse_manifest(MANIFEST).unwrap();
        let csv = concat!(
            "data,a%2Cb+c.bin,v1,succeeded,,200,\"{\"\"checksum_algorithm\"\":\"\"SHA256\"\",\"\"checksum_type\"\":\"\"FULL_OBJECT\"\",\"\"checksum_base64\"\":\"\"AAEC\"\"}\"\n",
            "data,plain.bin,,failed,AccessDenied,403,Access Denied\n",
            "data,odd.bin,,succeeded,,200,not json\n",
            "\"broken\n"
        );
        let rows = rows(csv, &m.columns);
        assert_eq!(rows.len(), 4);
        let r0 = rows[0].as_ref().unwrap();
        assert_eq!(r0.key, "a,b c.bin");
        assert_eq!(r0.version_id.as_deref(), Some("v1"));
        assert_eq!(
            r0.checksum,
            Ok(Computed {
                algorithm: "SHA256".into(),
                checksum_type: Some("FULL_OBJECT".into()),
                bytes: vec![0, 1, 2]
            })
        );
        let r1 = rows[1].as_ref().unwrap();
        assert!(!r1.succeeded && r1.error.as_deref().unwrap().contains("AccessDenied"));
        assert!(rows[2].as_ref().unwrap().checksum.is_err());
        assert!(rows[3].is_err());
    }

    #[test]
    fn message_layouts_are_read_tolerantly() {
        for (m, alg, bytes) in [
            (
                r#"{"ChecksumAlgorithm":"crc32","Checksum":"CgsM"}"#,
                "CRC32",
                vec![10, 11, 12],
            ),
            (
                r#"{"algorithm":"sha1","checksum_hex":"0a0b"}"#,
                "SHA1",
                vec![10, 11],
            ),
            (
                r#"{"algorithm":"MD5","checksumBase64":"AQI="}"#,
                "MD5",
                vec![1, 2],
            ),
            (
                r#"{"checksum_algorithm":"CRC64NVME","checksum_value":"AQI="}"#,
                "CRC64NVME",
                vec![1, 2],
            ),
        ] {
            let c = computed(m).unwrap();
            assert_eq!((c.algorithm.as_str(), c.bytes), (alg, bytes), "{m}");
        }
        for bad in [
            "",
            "[]",
            r#"{"algorithm":"MD5"}"#,
            r#"{"checksum":"AQI="}"#,
            r#"{"algorithm":"MD5","checksum":""}"#,
        ] {
            assert!(computed(bad).is_err(), "{bad}");
        }
    }

    fn row(c: Result<Computed, String>) -> Row {
        Row {
            line: 1,
            bucket: "b".into(),
            key: "k".into(),
            version_id: None,
            succeeded: true,
            error: None,
            checksum: c,
        }
    }

    #[test]
    fn judges_only_like_with_like() {
        let c = Computed {
            algorithm: "SHA256".into(),
            checksum_type: Some("FULL_OBJECT".into()),
            bytes: vec![1, 2],
        };
        let s = Stored {
            algorithm: "SHA256".into(),
            full_object: true,
            bytes: vec![1, 2],
        };
        assert_eq!(judge(&row(Ok(c.clone())), Some(&s)), Verdict::Healthy);
        let bad = Stored {
            bytes: vec![9],
            ..s.clone()
        };
        assert!(matches!(
            judge(&row(Ok(c.clone())), Some(&bad)),
            Verdict::Mismatch { .. }
        ));
        let other = Stored {
            algorithm: "MD5".into(),
            ..s.clone()
        };
        assert!(matches!(
            judge(&row(Ok(c.clone())), Some(&other)),
            Verdict::Verify { .. }
        ));
        let composite = Stored {
            full_object: false,
            ..s.clone()
        };
        assert!(matches!(
            judge(&row(Ok(c.clone())), Some(&composite)),
            Verdict::Verify { .. }
        ));
        assert!(matches!(judge(&row(Ok(c)), None), Verdict::Verify { .. }));
        assert!(matches!(
            judge(&row(Err("x".into())), Some(&s)),
            Verdict::Verify { .. }
        ));
    }

    proptest::proptest! {
        /// Whatever the report holds, a row is never judged healthy unless its computed
        /// checksum equals the stored one.
        #[test]
        fn never_healthy_without_equal_bytes(text in ".{0,300}", stored in proptest::collection::vec(proptest::num::u8::ANY, 1..8)) {
            let m = parse_manifest(MANIFEST).unwrap();
            let s = Stored { algorithm: "SHA256".into(), full_object: true, bytes: stored.clone() };
            for r in rows(&text, &m.columns).into_iter().flatten() {
                if judge(&r, Some(&s)) == Verdict::Healthy {
                    let c = r.checksum.clone().unwrap();
                    proptest::prop_assert_eq!(c.bytes, stored.clone());
                }
            }
        }
    }
}
