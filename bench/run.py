#!/usr/bin/env python3
"""make bench: what users pay for — cold start, memory, hashing speed, API calls, package size.

Writes bench/RESULTS.md. A benchmark, not a test: it reports numbers (each next to a
reference measured in the same run) and never fails on timing. Runs inside
scripts/with-moto.sh (AWS_ENDPOINT_URL points at a private emulator).

Sections (each can be picked with --only N[,N]):
  1 cold start   2 peak RSS per sample event   3 hashing throughput
  4 restore-object on a 1 GiB object   5 replay-transactions calls and throughput
  6 zipped bootstrap sizes   7 AWS calls before the action (alarm functions)
  8 restore-object at bucket scale: Batch path, two-pass report, scrub per object, and the
    100-million-object model (bench/batch_model.py; also writes bench/BATCH_MODEL.md)
"""

import argparse
import datetime
import glob
import http.server
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUNCTIONS = ["reboot-instance", "restore-object", "replay-transactions", "scale-group"]
TRIPLE = "x86_64-unknown-linux-gnu"
RELEASE = os.path.join(ROOT, "target", TRIPLE, "release")
GIB = 1 << 30


def sh(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, check=True, text=True, capture_output=True, **kw)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def aws(service):
    kw = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"], "region_name": os.environ.get("AWS_REGION", "us-east-1")}
    if service == "s3":
        # moto answers a multipart object's GET with a full-object CRC32 header that does not
        # match the bytes (a divergence); the bench checks digests itself.
        kw["config"] = Config(s3={"addressing_style": "path"}, response_checksum_validation="when_required")
    return boto3.client(service, **kw)


def ledger_table(name):
    ddb = aws("dynamodb")
    try:
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
    except ddb.exceptions.ResourceInUseException:
        pass
    return name


def function_env(extra=None):
    env = dict(os.environ)
    endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    env.update({
        "SELFHEAL_LEDGER_TABLE": ledger_table("bench-ledger"),
        "RUST_LOG": "warn",
        # Settings the functions require; the resources they name need not exist for a start.
        "SELFHEAL_REPLAY_PROCESSING_QUEUE_URL": f"{endpoint}/123456789012/bench-processing",
        "SELFHEAL_REPLAY_PARKING": "s3://bench-parking/parked/",
        "SELFHEAL_RESTORE_SCRUB_TARGETS": "bench-scrub",
        # The bench measures the acting path: with the template's first-dry-run level the first
        # occurrence on a target would be a dry run (issue 17).
        "SELFHEAL_AUTONOMY": "auto",
    })
    env.update(extra or {})
    return env


def peak_rss_kib(cmd, env, stdin=None):
    """Runs cmd under GNU time; returns (peak RSS KiB, wall seconds, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        p = subprocess.run(["/usr/bin/time", "-f", "%M %e", "-o", tf.name, *cmd], cwd=ROOT, env=env, text=True, capture_output=True, stdin=stdin)
        rss, wall = open(tf.name).read().split()[-2:]
    return int(rss), float(wall), p


# ---- 1. cold start ---------------------------------------------------------------------


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    """Answers nothing useful: it only notes when a process first asks for an invocation."""

    first_request = None

    def do_GET(self):
        if RuntimeApi.first_request is None:
            RuntimeApi.first_request = time.perf_counter()
        # Hold the request briefly; the bench kills the process right after.
        self.send_response(503)
        self.end_headers()

    def log_message(self, *a):
        pass


def cold_start(binaries, runs):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    env = function_env(
        {
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
            "AWS_LAMBDA_FUNCTION_NAME": "bench",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_LAMBDA_LOG_GROUP_NAME": "bench",
        }
    )
    results = {}
    for name, path in binaries:
        samples = []
        for _ in range(runs):
            RuntimeApi.first_request = None
            t0 = time.perf_counter()
            p = subprocess.Popen([path], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while RuntimeApi.first_request is None and p.poll() is None and time.perf_counter() - t0 < 10:
                time.sleep(0.0002)
            t1 = RuntimeApi.first_request
            p.kill()
            p.wait()
            if t1 is not None:
                samples.append((t1 - t0) * 1000)
        results[name] = samples
    server.shutdown()
    return results


# ---- 3. hashing ----------------------------------------------------------------------------


def make_file(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    with open(path, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(size >> 20):
            # Vary the blocks cheaply so no tool can shortcut a repeated pattern.
            f.write(i.to_bytes(8, "little") + block[8:])


def time_cmd(cmd, runs=3):
    best = None
    out = ""
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, text=True, capture_output=True).stdout
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, out


def python_crc32(path):
    crc = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return crc
            crc = zlib.crc32(b, crc)


def hashing(path):
    hb = os.path.join(RELEASE, "hashbench")
    best = {}
    for _ in range(3):
        out = sh([hb, path]).stdout
        for line in out.splitlines():
            r = json.loads(line)
            if r["algorithm"] not in best or r["seconds"] < best[r["algorithm"]]["seconds"]:
                best[r["algorithm"]] = r
    refs = {}
    for algo, cmds in {
        "md5": [["md5sum", path], ["openssl", "dgst", "-md5", path]],
        "sha1": [["sha1sum", path], ["openssl", "dgst", "-sha1", path]],
        "sha256": [["sha256sum", path], ["openssl", "dgst", "-sha256", path]],
    }.items():
        for cmd in cmds:
            if shutil.which(cmd[0]):
                secs, out = time_cmd(cmd)
                refs.setdefault(algo, []).append((" ".join(cmd[:-1]), secs, out))
    t0 = time.perf_counter()
    crc = python_crc32(path)
    refs["crc32"] = [("python zlib.crc32", time.perf_counter() - t0, f"{crc:08x}")]
    return best, refs


# ---- report --------------------------------------------------------------------------------


def fmt_ms(x):
    return f"{x:.1f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="1,2,3,4,5,6,7,8")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    args = ap.parse_args()
    only = {int(x) for x in args.only.split(",")}
    work = os.path.join(ROOT, "target", "bench")
    os.makedirs(work, exist_ok=True)

    md = [
        "# selfheal benchmark results",
        "",
        f"Generated by `make bench` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}.",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}.",
        "Release profile: see `[profile.release]` in Cargo.toml. Emulator: moto (local). Every number",
        "is next to a reference measured in the same run; none of them is a pass/fail gate.",
        "",
    ]

    print("building release binaries (cargo lambda build, host architecture) ...", flush=True)
    t0 = time.perf_counter()
    build = subprocess.run(
        ["cargo", "lambda", "build", "--release", "--locked", "--compiler", "cargo", "--target", TRIPLE, "--output-format", "zip",
         *[a for f in FUNCTIONS for a in ("--bin", f)], "--bin", "hello-lambda", "--bin", "hashbench"],
        cwd=ROOT,
    )
    if build.returncode != 0:
        sys.exit("release build failed")
    print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)

    if 1 in only:
        print("1. cold start ...", flush=True)
        bins = [("hello-lambda (reference)", os.path.join(RELEASE, "hello-lambda"))] + [(f, os.path.join(RELEASE, f)) for f in FUNCTIONS]
        res = cold_start(bins, args.runs)
        ref = statistics.median(res[bins[0][0]]) if res[bins[0][0]] else float("nan")
        md += ["## 1. Cold start", "", f"Process exec → first request to a local Lambda Runtime API, median of {args.runs} starts (SDK configuration included).", "",
               "| binary | median | p90 | ratio to reference |", "|---|---|---|---|"]
        for name, _ in bins:
            s = sorted(res[name])
            if not s:
                md.append(f"| {name} | did not start | | |")
                continue
            med = statistics.median(s)
            p90 = s[min(len(s) - 1, int(len(s) * 0.9))]
            md.append(f"| {name} | {fmt_ms(med)} | {fmt_ms(p90)} | {med / ref:.2f}× |")
        md.append("")

    if 2 in only:
        print("2. peak RSS per sample event ...", flush=True)
        md += ["## 2. Peak RSS handling each sample event", "",
               "Release binary run with `--event FILE` against the emulator (GNU time, max RSS). Sample events name",
               "placeholder resources, so most end in a skip; the reference is `hello-lambda` started and stopped.", "",
               "| function | event | peak RSS | outcome |", "|---|---|---|---|"]
        env = function_env()
        for f in FUNCTIONS:
            for ev in sorted(glob.glob(os.path.join(ROOT, "events", f"{f}-*.json"))):
                rss, wall, p = peak_rss_kib([os.path.join(RELEASE, f), "--event", ev], env)
                outcome = "error: " + (p.stderr.strip().splitlines() or ["?"])[-1][:60] if p.returncode else ", ".join(
                    sorted({json.loads(l).get("code", "?") for l in p.stdout.splitlines() if l.startswith("{")}))
                md.append(f"| {f} | {os.path.basename(ev)} | {rss / 1024:.1f} MiB | {outcome} |")
        md.append("")

    if only & {3, 4}:
        make_file(os.path.join(work, "hash-1g.bin"), GIB)

    if 3 in only:
        print("3. hashing throughput on 1 GiB ...", flush=True)
        path = os.path.join(work, "hash-1g.bin")
        best, refs = hashing(path)
        flags = cpu_flags()
        md += ["## 3. Hashing throughput (1 GiB file, page cache warm, best of 3)", "",
               f"CPU instructions: SSE4.2 {'yes' if 'sse4_2' in flags else 'no'}, PCLMULQDQ {'yes' if 'pclmulqdq' in flags else 'no'}, "
               f"SHA-NI {'yes' if 'sha_ni' in flags else 'no'}, AVX2 {'yes' if 'avx2' in flags else 'no'}, VPCLMULQDQ {'yes' if 'vpclmulqdq' in flags else 'no'}.", "",
               "| digest | selfheal | reference | ratio to fastest reference | digests agree |", "|---|---|---|---|---|"]
        for algo in ["md5", "sha1", "sha256", "crc32", "crc32c", "crc64nvme", "all-six-one-pass"]:
            r = best.get(algo)
            if not r:
                continue
            ours = r["gb_per_s"]
            rr = refs.get(algo, [])
            if rr:
                fastest = min(rr, key=lambda x: x[1])
                ref_gbps = GIB / fastest[1] / 1e9
                agree = all(r["digests"][0] in out for _, _, out in rr)
                refs_txt = "; ".join(f"{n}: {GIB / s / 1e9:.2f} GB/s" for n, s, _ in rr)
                md.append(f"| {algo} | {ours:.2f} GB/s | {refs_txt} | {ours / ref_gbps:.2f}× ({fastest[0]}) | {'yes' if agree else 'NO'} |")
            else:
                md.append(f"| {algo} | {ours:.2f} GB/s | none on this machine | | |")
        md.append("")

    extra = os.path.join(ROOT, "bench", "sections.py")
    if os.path.exists(extra) and (only & {4, 5, 7}):
        sys.path.insert(0, os.path.dirname(extra))
        import sections  # noqa: E402  (sections 4 and 5 need the functions' own resources)

        try:
            md += sections.run(only, work=work, release=RELEASE, function_env=function_env, aws=aws, peak_rss_kib=peak_rss_kib)
        except Exception as e:  # a failed section is reported, the others still are
            md += [f"Sections 4/5 failed: {type(e).__name__}: {e}", ""]

    if 6 in only:
        print("6. zipped bootstrap sizes ...", flush=True)
        md += ["## 6. Zipped bootstrap size (host architecture, x86_64)", "", "| function | bootstrap.zip | bootstrap (unzipped) |", "|---|---|---|"]
        for f in ["hello-lambda"] + FUNCTIONS:
            z = os.path.join(ROOT, "target", "lambda", f, "bootstrap.zip")
            b = os.path.join(RELEASE, f)
            if os.path.exists(z):
                md.append(f"| {f} | {os.path.getsize(z) / 1e6:.2f} MB | {os.path.getsize(b) / 1e6:.2f} MB |")
        arm = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True, text=True).stdout
        if "aarch64-unknown-linux-gnu" not in arm:
            md += ["", "arm64: the `aarch64-unknown-linux-gnu` target is not installed on this machine, so no arm64 package was built."]
        md.append("")

    if 8 in only:
        print("8. restore-object at bucket scale (Batch Operations, two-pass) ...", flush=True)
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        import batch_model  # noqa: E402

        try:
            md += batch_model.section(os.path.join(RELEASE, "restore-object"), work=work) + [""]
        except Exception as e:  # a failed section is reported, the others still are
            md += [f"Section 8 failed: {type(e).__name__}: {e}", ""]

    with open(args.out, "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"\nwritten to {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
