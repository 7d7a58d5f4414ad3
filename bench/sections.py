"""Sections 4 and 5 of `make bench`: they need the functions' own resources in the emulator.

4. restore-object verifying a 1 GiB object served by the emulator (peak RSS, throughput),
   next to the emulator's own download speed and Python's hashlib on the same bytes.
5. replay-transactions: AWS calls per 10-record batch in the common path (counted from the
   emulator's request log) and messages per second draining the DLQ, through the integration
   harness's drain loop (the same handler, pollers that behave like the event source mapping).
"""

import hashlib
import json
import os
import re
import subprocess
import time

from boto3.s3.transfer import TransferConfig

GIB = 1 << 30
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def restore_1gib(work, release, function_env, aws, peak_rss_kib):
    s3 = aws("s3")
    bucket = f"bench-restore-{int(time.time())}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "selfheal:managed", "Value": "true"}]})
    path = os.path.join(work, "hash-1g.bin")
    t0 = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    hashlib_secs = time.perf_counter() - t0
    digest = h.hexdigest()
    key = "exports/large object.bin"
    s3.upload_file(path, bucket, key, ExtraArgs={"Metadata": {"sha256": digest}},
                   Config=TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20))
    t0 = time.perf_counter()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    while body.read(8 << 20):
        pass
    download_secs = time.perf_counter() - t0
    event = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "ObjectCreated:CompleteMultipartUpload",
                          "s3": {"bucket": {"name": bucket}, "object": {"key": key.replace(" ", "+"), "size": GIB}}}]}
    ev_path = os.path.join(work, "restore-1g-event.json")
    with open(ev_path, "w") as f:
        json.dump(event, f)
    rss, wall, p = peak_rss_kib([os.path.join(release, "restore-object"), "--event", ev_path], function_env())
    rec = next((json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")), {})
    details = rec.get("details", {})
    verify_ms = details.get("verify_ms")
    bytes_read = details.get("bytes_read")
    ours = bytes_read / (verify_ms / 1000) / 1e6 if verify_ms and bytes_read else None
    md = ["## 4. restore-object verifying a 1 GiB object from the emulator", "",
          "Release binary, `--event` with an S3 `CompleteMultipartUpload` record (16 parts of 64 MiB), expected digest",
          "from the producer's metadata (SHA-256). Target: peak RSS ≤ 64 MB.", "",
          "| measure | value |", "|---|---|",
          f"| outcome | {rec.get('decision', '?')} / {rec.get('code', '?')} ({'exit ' + str(p.returncode)}) |",
          f"| peak RSS | {rss / 1024:.1f} MiB |",
          f"| wall time (process) | {wall:.2f} s |"]
    if ours:
        md.append(f"| verify throughput (selfheal, SHA-256 over the streamed body) | {ours:.0f} MB/s |")
    md += [f"| reference: emulator download alone (boto3, no hashing) | {GIB / download_secs / 1e6:.0f} MB/s |",
           f"| reference: Python hashlib SHA-256 on the local file | {GIB / hashlib_secs / 1e6:.0f} MB/s |"]
    if ours:
        md.append(f"| ratio to the emulator's download speed | {ours / (GIB / download_secs / 1e6):.2f}× |")
    md.append("")
    return md


def replay_drain(messages):
    env = dict(os.environ, SELFHEAL_BENCH_MESSAGES=str(messages), SELFHEAL_BENCH_POLLERS="2")
    t0 = time.perf_counter()
    # A debug build: the drain is bound by the emulator, and the debug test binary is the one
    # `make test` already built (a release build of the test crate would rebuild the SDK).
    p = subprocess.run(["cargo", "test", "-q", "-p", "selfheal-tests", "--test", "replay_transactions",
                        "drain_benchmark", "--", "--nocapture"], cwd=ROOT, env=env, text=True, capture_output=True)
    line = next((l for l in (p.stderr + p.stdout).splitlines() if l.startswith("BENCH replay-transactions")), None)
    calls = next((l for l in (p.stderr + p.stdout).splitlines() if l.startswith("calls in the counted batch")), "")
    md = ["## 5. replay-transactions", "",
          f"The integration harness's drain (`drain_benchmark` in tests/replay_transactions.rs, debug build) with {messages}",
          "messages and 2 pollers, against the emulator. The emulator is the bottleneck: its TransactWriteItems copies the",
          "whole table per item, so throughput falls as the ledger grows; 10,000 messages would take over an hour here,",
          "so this run drains fewer (`SELFHEAL_BENCH_MESSAGES` sets the count).", ""]
    if line:
        m = re.search(r"(\d+) AWS calls per 10-record batch", line)
        r = re.search(r"= (\d+) msg/s", line)
        md += ["| measure | value |", "|---|---|",
               f"| AWS calls per 10-record batch (common path, from the emulator's request log) | {m.group(1) if m else '?'} (reference: 20+ for one call per record per step) |",
               f"| the calls | {calls.split(':', 1)[-1].strip()} |",
               f"| drain throughput end to end | {r.group(1) if r else '?'} msg/s |",
               f"| run | {line.split(':', 1)[-1].strip()} |"]
    else:
        md.append(f"drain benchmark did not report (exit {p.returncode}): {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    md.append(f"\n(section time {time.perf_counter() - t0:.0f} s)\n")
    return md


def run(only, work, release, function_env, aws, peak_rss_kib):
    md = []
    if 4 in only:
        print("4. restore-object on a 1 GiB object ...", flush=True)
        md += restore_1gib(work, release, function_env, aws, peak_rss_kib)
    if 5 in only:
        print("5. replay-transactions drain ...", flush=True)
        md += replay_drain(int(os.environ.get("SELFHEAL_BENCH_MESSAGES", "1000")))
    return md
