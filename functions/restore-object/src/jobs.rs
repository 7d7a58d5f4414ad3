//! The S3 Batch Operations jobs an operator creates (`make batch-verify-job`,
//! `make checksum-job`): the `CreateJob` request, as `aws s3control create-job
//! --cli-input-json` takes it, built from an inventory manifest (or a CSV manifest):
//!
//! * **LambdaInvoke**: every object of the manifest verified (and restored) by this function,
//!   schema 2.0, the job's `dryRun` passed as a user argument;
//! * **Compute checksum**: S3 computes every object's checksum at rest and writes the
//!   completion report under the function's report prefix, which starts the two-pass
//!   verification ([`crate::two_pass`]).
//!
//! Pure: the request is checked and built here and unit-tested; the emulator has no Batch
//! Operations, so the only live part is the CLI call itself.

use serde_json::{json, Value};

use selfheal_core::checksums::{digest, to_hex, Algorithm};

/// What both jobs need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobBase {
    pub account_id: String,
    /// The role Batch Operations assumes (template output `BatchOperationsRoleArn`).
    pub role_arn: String,
    /// `s3://bucket/key`: an S3 Inventory `manifest.json`, or a CSV of `bucket,key` rows.
    pub manifest: String,
    /// The manifest object's ETag (Batch Operations requires it).
    pub manifest_etag: String,
    /// `s3://bucket/prefix`: where the completion report goes.
    pub report: String,
    pub priority: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    LambdaInvoke {
        function_arn: String,
        dry_run: bool,
    },
    ComputeChecksum {
        algorithm: String,
        checksum_type: String,
    },
}

fn s3_uri(s: &str, what: &str) -> Result<(String, String), String> {
    let rest = s
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{what} {s:?} is not an s3://bucket/key URI"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() || bucket.contains(':') {
        return Err(format!("{what} {s:?} names no bucket"));
    }
    Ok((bucket.to_string(), key.to_string()))
}

fn arn(s: &str, service: &str, what: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", p, svc, _, acct, res]
            if !p.is_empty() && *svc == service && !acct.is_empty() && !res.is_empty() =>
        {
            Ok(())
        }
        _ => Err(format!("{what} {s:?} is not an {service} ARN")),
    }
}

/// The `CreateJob` request for `op` over `base`. `Err` names the first bad input.
pub fn create_job(base: &JobBase, op: &Operation) -> Result<Value, String> {
    if base.account_id.len() != 12 || !base.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("account id {:?} is not 12 digits", base.account_id));
    }
    arn(&base.role_arn, "iam", "role")?;
    let (mb, mk) = s3_uri(&base.manifest, "manifest")?;
    if mk.is_empty() {
        return Err("the manifest URI names no object".into());
    }
    let etag = base.manifest_etag.trim().trim_matches('"');
    if etag.is_empty() {
        return Err("the manifest's ETag is required (aws s3api head-object)".into());
    }
    let (rb, rp) = s3_uri(&base.report, "report location")?;
    let spec = if mk.ends_with("manifest.json") {
        json!({"Format": "S3InventoryReport_CSV_20161130"})
    } else {
        json!({"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]})
    };
    let (operation, description) = match op {
        Operation::LambdaInvoke {
            function_arn,
            dry_run,
        } => {
            arn(function_arn, "lambda", "function")?;
            (
                json!({"LambdaInvoke": {"FunctionArn": function_arn, "InvocationSchemaVersion": "2.0",
                    "UserArguments": {"dryRun": dry_run.to_string()}}}),
                "selfheal restore-object: verify (and restore) every object of the manifest",
            )
        }
        Operation::ComputeChecksum {
            algorithm,
            checksum_type,
        } => {
            let alg = algorithm.trim().to_ascii_uppercase();
            if Algorithm::parse(&alg).is_none() {
                return Err(format!(
                    "checksum algorithm {algorithm:?}: one of CRC32, CRC32C, CRC64NVME, MD5, SHA1, SHA256"
                ));
            }
            let ty = checksum_type.trim().to_ascii_uppercase();
            if ty != "FULL_OBJECT" && ty != "COMPOSITE" {
                return Err(format!(
                    "checksum type {checksum_type:?}: FULL_OBJECT or COMPOSITE"
                ));
            }
            (
                json!({"S3ComputeObjectChecksum": {"ChecksumAlgorithm": alg, "ChecksumType": ty}}),
                "selfheal restore-object: compute checksums at rest (pass one of two)",
            )
        }
    };
    let mut job = json!({
        "AccountId": base.account_id,
        "ConfirmationRequired": false,
        "Operation": operation,
        "Manifest": {
            "Spec": spec,
            "Location": {"ObjectArn": format!("arn:aws:s3:::{mb}/{mk}"), "ETag": etag},
        },
        "Report": {
            "Bucket": format!("arn:aws:s3:::{rb}"),
            "Prefix": rp.trim_end_matches('/'),
            "Format": "Report_CSV_20180820",
            "Enabled": true,
            "ReportScope": "AllTasks",
        },
        "Priority": base.priority,
        "RoleArn": base.role_arn,
        "Description": description,
    });
    // The same inputs give the same token: running the command twice creates one job.
    let token = to_hex(&digest(Algorithm::Sha256, job.to_string().as_bytes()));
    job["ClientRequestToken"] = json!(token[..32]);
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> JobBase {
        JobBase {
            account_id: "123456789012".into(),
            role_arn: "arn:aws:iam::123456789012:role/selfheal-batch".into(),
            manifest: "s3://inventory/data/daily/2026-11-30T00-00Z/manifest.json".into(),
            manifest_etag: "\"0123abcd\"".into(),
            report: "s3://reports/selfheal-checksum-reports/".into(),
            priority: 10,
        }
    }

    fn invoke() -> Operation {
        Operation::LambdaInvoke {
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:restore".into(),
            dry_run: true,
        }
    }

    #[test]
    fn lambda_invoke_job_from_an_inventory() {
        let j = create_job(&base(), &invoke()).unwrap();
        assert_eq!(
            j["Operation"]["LambdaInvoke"]["InvocationSchemaVersion"],
            "2.0"
        );
        assert_eq!(
            j["Operation"]["LambdaInvoke"]["UserArguments"]["dryRun"],
            "true"
        );
        assert_eq!(
            j["Manifest"]["Spec"]["Format"],
            "S3InventoryReport_CSV_20161130"
        );
        assert_eq!(
            j["Manifest"]["Location"]["ObjectArn"],
            "arn:aws:s3:::inventory/data/daily/2026-11-30T00-00Z/manifest.json"
        );
        assert_eq!(j["Manifest"]["Location"]["ETag"], "0123abcd");
        assert_eq!(j["Report"]["Bucket"], "arn:aws:s3:::reports");
        assert_eq!(j["Report"]["Prefix"], "selfheal-checksum-reports");
        assert_eq!(j["Report"]["ReportScope"], "AllTasks");
        assert_eq!(j["ConfirmationRequired"], false);
        assert_eq!(j["ClientRequestToken"].as_str().unwrap().len(), 32);
        // Deterministic: the same request twice is one job.
        assert_eq!(j, create_job(&base(), &invoke()).unwrap());
    }

    #[test]
    fn compute_checksum_job_and_csv_manifest() {
        let mut b = base();
        b.manifest = "s3://inventory/lists/objects.csv".into();
        let op = Operation::ComputeChecksum {
            algorithm: "sha256".into(),
            checksum_type: "full_object".into(),
        };
        let j = create_job(&b, &op).unwrap();
        assert_eq!(
            j["Operation"],
            json!({"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "SHA256", "ChecksumType": "FULL_OBJECT"}})
        );
        assert_eq!(j["Manifest"]["Spec"]["Fields"], json!(["Bucket", "Key"]));
        assert_ne!(
            j["ClientRequestToken"],
            create_job(&base(), &op).unwrap()["ClientRequestToken"]
        );
    }

    #[test]
    fn bad_inputs_are_named() {
        type Edit = Box<dyn Fn(&mut JobBase)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|b| b.account_id = "12".into()), "12 digits"),
            (Box::new(|b| b.role_arn = "role".into()), "iam ARN"),
            (Box::new(|b| b.manifest = "inventory/x".into()), "s3://"),
            (
                Box::new(|b| b.manifest = "s3://inventory".into()),
                "names no object",
            ),
            (Box::new(|b| b.manifest_etag = " ".into()), "ETag"),
            (Box::new(|b| b.report = "s3:///x".into()), "no bucket"),
        ];
        for (edit, want) in cases {
            let mut b = base();
            edit(&mut b);
            let e = create_job(&b, &invoke()).unwrap_err();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        let bad_fn = Operation::LambdaInvoke {
            function_arn: "restore".into(),
            dry_run: false,
        };
        assert!(create_job(&base(), &bad_fn).is_err());
        for (alg, ty) in [("xxhash", "FULL_OBJECT"), ("SHA256", "whole")] {
            let op = Operation::ComputeChecksum {
                algorithm: alg.into(),
                checksum_type: ty.into(),
            };
            assert!(create_job(&base(), &op).is_err(), "{alg} {ty}");
        }
    }
}
