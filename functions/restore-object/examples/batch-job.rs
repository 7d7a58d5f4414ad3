//! Prints an S3 Batch Operations `CreateJob` request for `aws s3control create-job
//! --cli-input-json` (see `make batch-verify-job` and `make checksum-job`):
//!
//! ```text
//! batch-job lambda-invoke   ACCOUNT ROLE_ARN MANIFEST_URI MANIFEST_ETAG REPORT_URI FUNCTION_ARN [DRY_RUN]
//! batch-job compute-checksum ACCOUNT ROLE_ARN MANIFEST_URI MANIFEST_ETAG REPORT_URI [ALGORITHM [TYPE]]
//! ```

use std::process::ExitCode;

use restore_object::jobs::{create_job, JobBase, Operation};

const USAGE: &str = "usage: batch-job lambda-invoke ACCOUNT ROLE_ARN MANIFEST_URI MANIFEST_ETAG REPORT_URI FUNCTION_ARN [DRY_RUN=true|false]\n       batch-job compute-checksum ACCOUNT ROLE_ARN MANIFEST_URI MANIFEST_ETAG REPORT_URI [ALGORITHM=SHA256 [TYPE=FULL_OBJECT]]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    if args.len() < 6 {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let base = JobBase {
        account_id: arg(1),
        role_arn: arg(2),
        manifest: arg(3),
        manifest_etag: arg(4),
        report: arg(5),
        priority: 10,
    };
    let op = match arg(0).as_str() {
        "lambda-invoke" => Operation::LambdaInvoke {
            function_arn: arg(6),
            // A job is a dry run unless the operator says otherwise.
            dry_run: args.get(7).map(|s| s.trim() != "false").unwrap_or(true),
        },
        "compute-checksum" => Operation::ComputeChecksum {
            algorithm: args.get(6).cloned().unwrap_or_else(|| "SHA256".into()),
            checksum_type: args.get(7).cloned().unwrap_or_else(|| "FULL_OBJECT".into()),
        },
        other => {
            eprintln!("unknown job {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match create_job(&base, &op) {
        Ok(job) => {
            println!("{}", serde_json::to_string_pretty(&job).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("batch-job: {e}");
            ExitCode::from(2)
        }
    }
}
