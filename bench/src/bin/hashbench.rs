//! Hashing throughput of every digest restore-object supports, over one file, through the
//! same streaming `selfheal_core::checksums::Hasher` the function uses. Prints one JSON line per
//! algorithm (and one for all six in one pass): bytes, seconds, GB/s, hex digest (so the
//! bench can check the reference tools agree).
//!
//!   hashbench FILE [CHUNK_BYTES]

use std::io::Read;
use std::time::Instant;

use selfheal_core::checksums::{to_hex, Algorithm, Hasher, Spec};

fn hash_file(path: &str, specs: &[Spec], chunk: usize) -> std::io::Result<(u64, f64, Vec<String>)> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; chunk];
    let mut h = Hasher::new(specs);
    let start = Instant::now();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let bytes = h.bytes();
    let digests = h
        .finish()
        .into_iter()
        .map(|c| c.value.as_deref().map(to_hex).unwrap_or_default())
        .collect();
    Ok((bytes, start.elapsed().as_secs_f64(), digests))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: hashbench FILE [CHUNK_BYTES]");
        return std::process::ExitCode::from(2);
    };
    // 1 MiB: the size of the body chunks restore-object hashes as they stream in.
    let chunk = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(1 << 20);
    let mut runs: Vec<(String, Vec<Spec>)> = Algorithm::ALL
        .iter()
        .map(|a| (a.as_str().to_string(), vec![Spec::whole(*a)]))
        .collect();
    runs.push((
        "all-six-one-pass".into(),
        Algorithm::ALL.iter().map(|a| Spec::whole(*a)).collect(),
    ));
    for (name, specs) in runs {
        match hash_file(path, &specs, chunk) {
            Ok((bytes, secs, digests)) => println!(
                "{}",
                serde_json::json!({"algorithm": name, "bytes": bytes, "seconds": secs, "gb_per_s": bytes as f64 / secs / 1e9, "digests": digests})
            ),
            Err(e) => {
                eprintln!("hashbench: {path}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
