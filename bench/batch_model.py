#!/usr/bin/env python3
"""Section 8 of `make bench`: restore-object at bucket scale (issue 16).

Measures, against the emulator, what one object costs on each of restore-object's three
paths (requests by kind, and time per object with one object in flight), then models
verifying 100 million objects three ways from those figures and AWS's published prices:

  1. the scheduled scrub (one invocation at a time walks the bucket, GET per object);
  2. S3 Batch Operations LambdaInvoke, one invocation per object (GET per object);
  3. Compute checksum (S3 computes at rest) + the two-pass report (HEAD per object; GET only
     for the mismatches).

Writes bench/BATCH_MODEL.md and its raw numbers to bench/batch_model.json. Standalone:
  scripts/with-moto.sh --state .moto/bench python bench/batch_model.py [--binary PATH] [--objects N]
Run from bench/run.py as section 8 (with the release binary).
"""

import argparse
import base64
import collections
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request

from request_log import entries as request_log_entries

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---- prices (us-east-1, USD) ------------------------------------------------------------
# Each with the source it is taken from and how sure it is. Where a price could not be
# confirmed, the model carries a range (low, high) and shows both ends.
PRICES = {
    "lambda_request_per_million": (0.20, 0.20, "AWS Lambda pricing, x86, requests"),
    "lambda_gb_second": (0.0000166667, 0.0000166667, "AWS Lambda pricing, x86, first 6 B GB-s/month tier"),
    "s3_get_head_per_1000": (0.0004, 0.0004, "S3 Standard GET, SELECT and all other requests (HEAD, GetBucketTagging)"),
    "s3_list_per_1000": (0.005, 0.005, "S3 Standard PUT, COPY, POST, LIST requests"),
    "batch_job": (0.25, 0.25, "S3 Batch Operations, per job"),
    "batch_per_million_objects": (1.00, 1.00, "S3 Batch Operations, per million object operations"),
    # Not confirmed: the stored pricing pages this was written from do not give the Compute
    # checksum operation's own fee. Shown as a range: nothing beyond the Batch per-object fee,
    # up to $0.01 per GB processed.
    "compute_checksum_per_gb": (0.0, 0.01, "Compute checksum processing fee per GB: NOT CONFIRMED, range"),
    "inventory_per_million": (0.0025, 0.0025, "S3 Inventory, per million objects listed"),
    # On-demand reads: $0.125 per million read request units since the November 2024 price
    # change ($0.25 before); shown as that range.
    "dynamodb_read_per_million": (0.125, 0.25, "DynamoDB on-demand read request units (range: before/after the 2024 price change)"),
}

# ---- assumptions about AWS (not measurable against the emulator) --------------------------
ASSUME = {
    "objects": 100_000_000,
    "object_mib": 1.0,  # average object size
    "lambda_memory_gb": 0.5,  # the template's MemorySize 512
    "s3_request_ms": (10.0, 30.0),  # first-byte latency of one in-region S3 request (range)
    "s3_stream_mb_s": 80.0,  # one GET stream's throughput inside a region
    "scrub_concurrency": 4,  # SELFHEAL_RESTORE_CONCURRENCY default: objects in flight in one scrub
    "report_concurrency": 64,  # SELFHEAL_RESTORE_CONCURRENCY for the report pass (its maximum)
    "lambda_concurrency": 1000,  # the regional default concurrency quota a Batch job fans out to
    "compute_checksum_objects_per_s": (1_000, 10_000),  # S3's own job throughput: not published
    "corrupt_fraction": 1e-6,  # 100 objects in 100 million: restores are a rounding error
}


def request_log():
    return request_log_entries()


def kind(r):
    url = r.get("url", "")
    target = r.get("headers", {}).get("X-Amz-Target", "")
    if target:
        return "DynamoDB " + target.split(".")[-1]
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0].rstrip("/")
    q = url.split("?", 1)[1] if "?" in url else ""
    m = r.get("method", "?")
    bucket_level = "/" not in path
    if m == "GET" and "tagging" in q and bucket_level:
        return "S3 GetBucketTagging"
    if m == "GET" and ("list-type" in q or bucket_level):
        return "S3 ListObjectsV2"
    if m == "HEAD" and bucket_level:
        return "S3 HeadBucket"
    if m == "HEAD":
        return "S3 HeadObject"
    if m == "GET" and "tagging" in q:
        return "S3 GetObjectTagging"
    if m == "GET":
        return "S3 GetObject"
    return f"S3 {m}"


def aws(service):
    import boto3
    from botocore.config import Config

    kw = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"], "region_name": os.environ.get("AWS_REGION", "us-east-1")}
    if service == "s3":
        kw["config"] = Config(s3={"addressing_style": "path"}, response_checksum_validation="when_required")
    return boto3.client(service, **kw)


def env_for(extra):
    env = dict(os.environ)
    ddb = aws("dynamodb")
    table = "bench-batch-ledger"
    try:
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    except ddb.exceptions.ResourceInUseException:
        pass
    env.update({"SELFHEAL_LEDGER_TABLE": table, "RUST_LOG": "warn", "SELFHEAL_RESTORE_CONCURRENCY": "1",
                "SELFHEAL_RESTORE_SCRUB_MAX_OBJECTS": "100000", "SELFHEAL_MAX_ACTIONS_PER_HOUR": "1000000"})
    env.update(extra)
    return env


def run(binary, event, env, work, name):
    path = os.path.join(work, f"batch-model-{name}.json")
    with open(path, "w") as f:
        json.dump(event, f)
    before = len(request_log())
    t0 = time.perf_counter()
    p = subprocess.run([binary, "--event", path], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    recs = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    calls = collections.Counter(kind(r) for r in request_log()[before:])
    return wall, recs, calls, p


def measure(binary, n, size, work):
    s3 = aws("s3")
    stamp = int(time.time())
    data, reports = f"bench-batch-{stamp}", f"bench-reports-{stamp}"
    for b in (data, reports):
        s3.create_bucket(Bucket=b)
    s3.put_bucket_tagging(Bucket=data, Tagging={"TagSet": [{"Key": "selfheal:managed", "Value": "true"}]})
    rows = []
    for i in range(n):
        body = hashlib.sha256(f"{stamp}-{i}".encode()).digest() * (size // 32)
        key = f"data/{i:06d}.bin"
        s3.put_object(Bucket=data, Key=key, Body=body, Metadata={"sha256": hashlib.sha256(body).hexdigest()})
        rows.append((key, body))
    urllib.request.urlopen(urllib.request.Request(os.environ["AWS_ENDPOINT_URL"] + "/moto-api/recorder/start-recording", method="POST"))
    prefix = "selfheal-checksum-reports/"
    env = env_for({"SELFHEAL_RESTORE_REPORT_PREFIXES": f"{reports}/{prefix}", "SELFHEAL_RESTORE_SCRUB_TARGETS": f"{data}/data/"})

    def report(count, job):
        csv = "".join(
            f'{data},{k},,succeeded,,200,"' + json.dumps({"checksum_algorithm": "SHA256", "checksum_type": "FULL_OBJECT",
                                                         "checksum_base64": base64.b64encode(hashlib.sha256(b).digest()).decode()}).replace('"', '""') + '"\n'
            for k, b in rows[:count])
        ck = f"{prefix}{job}/results/0.csv"
        s3.put_object(Bucket=reports, Key=ck, Body=csv.encode())
        man = {"Format": "Report_CSV_20180820", "ReportCreationDate": "2026-11-30T00:00:00.000Z",
               "Results": [{"TaskExecutionStatus": "succeeded", "Bucket": reports, "Key": ck, "MD5Checksum": hashlib.md5(csv.encode()).hexdigest()}],
               "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"}
        mk = f"{prefix}{job}/manifest.json"
        s3.put_object(Bucket=reports, Key=mk, Body=json.dumps(man).encode())
        return {"report": {"bucket": reports, "key": mk}}

    def batch(count):
        return {"invocationSchemaVersion": "2.0", "invocationId": "bench", "job": {"id": "bench", "userArguments": {"dryRun": "false"}},
                "tasks": [{"taskId": f"t{i}", "s3Bucket": data, "s3Key": k, "s3VersionId": None} for i, (k, _) in enumerate(rows[:count])]}

    out = {}
    paths = {
        "batch": (batch(1), batch(n)),
        "two_pass": (report(1, f"job-1-{stamp}"), report(n, f"job-n-{stamp}")),
        "scrub": ({"bucket": data, "prefix": rows[0][0]}, {"bucket": data, "prefix": "data/"}),
    }
    for name, (one, many) in paths.items():
        w1, r1, c1, p1 = run(binary, one, env, work, f"{name}-1")
        wn, rn, cn, pn = run(binary, many, env, work, f"{name}-n")
        codes = collections.Counter(r.get("code") for r in rn)
        out[name] = {
            "objects": n,
            "wall_one_s": w1,
            "wall_n_s": wn,
            # The extra time each further object costs, one object in flight (process start,
            # configuration and the first object's setup are in the one-object run).
            "per_object_ms": (wn - w1) / (n - 1) * 1000,
            "objects_per_s": (n - 1) / (wn - w1) if wn > w1 else None,
            "calls_one_invocation": dict(c1),
            "calls_per_object_n": {k: v / n for k, v in cn.items()},
            "outcomes": dict(codes),
            "exit": [p1.returncode, pn.returncode],
            "stderr_tail": [(p1.stderr.strip().splitlines() or [""])[-1][:300], (pn.stderr.strip().splitlines() or [""])[-1][:300]],
        }
    return out


def calls(m, path):
    """Measured calls per object on a path: S3 requests other than GET, LIST and the bucket's
    region lookup (HeadBucket, once per warm container); GETs; LISTs; DynamoDB reads."""
    c = m[path]["calls_per_object_n"]
    s3_small = sum(v for k, v in c.items() if k.startswith("S3 ") and k not in ("S3 GetObject", "S3 ListObjectsV2", "S3 HeadBucket"))
    return {"s3_small": s3_small, "get": c.get("S3 GetObject", 0.0), "list": c.get("S3 ListObjectsV2", 0.0),
            "ddb": sum(v for k, v in c.items() if k.startswith("DynamoDB"))}


def model(m):
    a, n = ASSUME, ASSUME["objects"]
    mb = a["object_mib"] * 1.048576
    gb_total = n * a["object_mib"] / 1024
    p = PRICES
    scrub, report = calls(m, "scrub"), calls(m, "two_pass")
    batch = calls(m, "batch")
    # S3 sends one task per invocation: the bucket's tags (cached per invocation) are read in
    # every one of them, not once per N objects as in the measured N-task run.
    batch["s3_small"] += 1 - m["batch"]["calls_per_object_n"].get("S3 GetBucketTagging", 0.0)

    def usd(c, end):
        i = 0 if end == "lo" else 1
        return n * ((c["s3_small"] + c["get"]) / 1000 * p["s3_get_head_per_1000"][i] + c["list"] / 1000 * p["s3_list_per_1000"][i]
                    + c["ddb"] / 1e6 * p["dynamodb_read_per_million"][i])

    def ms(c, lat):
        return (c["s3_small"] + c["get"] + c["ddb"]) * lat + (c["get"] * mb / a["s3_stream_mb_s"] * 1000)

    rows = []
    gbs = p["lambda_gb_second"][0] * a["lambda_memory_gb"]
    for lat in a["s3_request_ms"]:
        # 1. scrub: one invocation at a time, scrub_concurrency objects in flight.
        t = n * ms(scrub, lat) / a["scrub_concurrency"] / 1000
        rows.append(("scheduled scrub", lat, t / 3600, usd(scrub, "lo") + t * gbs, usd(scrub, "hi") + t * gbs))
        # 2. Batch LambdaInvoke: one invocation per object, billed per request and per ms.
        per = ms(batch, lat) / 1000
        fixed = p["batch_job"][0] + n / 1e6 * (p["batch_per_million_objects"][0] + p["lambda_request_per_million"][0])
        rows.append(("Batch LambdaInvoke per object", lat, n * per / a["lambda_concurrency"] / 3600,
                     usd(batch, "lo") + fixed + n * per * gbs, usd(batch, "hi") + fixed + n * per * gbs))
        # 3. Compute checksum + targeted verify: S3's job (Batch fee, processing fee, inventory),
        # then the report pass (measured calls per healthy row), report_concurrency in flight.
        t = n * ms(report, lat) / a["report_concurrency"] / 1000
        fixed = p["batch_job"][0] + n / 1e6 * (p["batch_per_million_objects"][0] + p["inventory_per_million"][0])
        lo = usd(report, "lo") + fixed + t * gbs + gb_total * p["compute_checksum_per_gb"][0]
        hi = usd(report, "hi") + fixed + t * gbs + gb_total * p["compute_checksum_per_gb"][1]
        job_h = [n / r / 3600 for r in a["compute_checksum_objects_per_s"]]
        rows.append(("Compute checksum + targeted verify", lat, (min(job_h) + t / 3600, max(job_h) + t / 3600), lo, hi))
    return rows


def fmt_hours(h):
    if isinstance(h, tuple):
        return f"{h[0]:,.1f}–{h[1]:,.1f} h"
    return f"{h:,.1f} h" if h < 48 else f"{h:,.0f} h ({h / 24:,.1f} days)"


def fmt_usd(lo, hi):
    return f"${lo:,.0f}" if abs(hi - lo) < 0.5 else f"${lo:,.0f}–${hi:,.0f}"


def markdown(m, rows, binary):
    md = ["## 8. restore-object at bucket scale: Batch Operations and the two-pass mode (issue 16)", "",
          f"Measured against the emulator with `{os.path.relpath(binary, ROOT)}` (`--event`, one object in flight:",
          "SELFHEAL_RESTORE_CONCURRENCY=1), on objects of 256 KiB carrying a SHA-256 in their metadata. Time per",
          "object is the difference between a run over N objects and a run over one, divided by N−1. Calls are",
          "counted from the emulator's request log. The emulator answers from memory on this machine, so its",
          "times are a floor, not AWS's: the model below uses the measured call counts and assumed AWS latencies.", "",
          "| path | objects | time per object | objects/s (one in flight) | calls per object (N objects, one invocation) | calls of a one-object invocation |",
          "|---|---|---|---|---|---|"]
    for name, label in [("scrub", "scheduled scrub"), ("batch", "Batch LambdaInvoke"), ("two_pass", "Compute checksum report (healthy rows)")]:
        r = m[name]
        per = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["calls_per_object_n"].items()))
        one = ", ".join(f"{k} {v}" for k, v in sorted(r["calls_one_invocation"].items()))
        ops = f"{r['objects_per_s']:.0f}" if r["objects_per_s"] else "n/a"
        md.append(f"| {label} | {r['objects']} | {r['per_object_ms']:.1f} ms | {ops} | {per} | {one} |")
    md += ["", "Outcomes of the N-object runs: " + "; ".join(f"{k}: {json.dumps(v['outcomes'])}" for k, v in m.items()), "",
           f"### Model: verifying {ASSUME['objects']:,} objects of {ASSUME['object_mib']} MiB on average (us-east-1)", "",
           "| way | S3 request latency assumed | hours | dollars |", "|---|---|---|---|"]
    for way, lat, hours, lo, hi in rows:
        md.append(f"| {way} | {lat:.0f} ms | {fmt_hours(hours)} | {fmt_usd(lo, hi)} |")
    md += ["", "Prices (USD, us-east-1; each as published on the AWS pricing pages for the service named):", ""]
    for k, (lo, hi, src) in PRICES.items():
        md.append(f"- `{k}`: {lo if lo == hi else f'{lo}–{hi}'} — {src}")
    md += ["", "Assumptions:", ""]
    for k, v in ASSUME.items():
        md.append(f"- `{k}`: {v}")
    md += ["",
           "- Calls per object are the measured ones (table above: HEAD, GET, the over-budget marker's DynamoDB read,",
           "  LIST per 1,000 keys), each taking `s3_request_ms` one after the other; a GET streams at `s3_stream_mb_s` and",
           "  hashing keeps up with it (section 3). The bucket's region lookup (HeadBucket) is once per warm container.",
           "- Scrub: one invocation at a time (the schedule's cursor), `scrub_concurrency` objects in flight.",
           "- Batch LambdaInvoke: one task per invocation (S3 sends one), so the bucket's tags (cached per invocation) are",
           "  read in every invocation; `lambda_concurrency` invocations at once; billed per request and per ms.",
           "- Compute checksum: S3 reads the objects itself; its throughput is not published, hence the range of",
           "  `compute_checksum_objects_per_s`; its fee beyond the Batch per-object fee is not confirmed, hence the dollar range.",
           "  The report pass costs one HEAD per row (the expected digest is in the object's metadata or S3 checksum, which",
           "  the inventory does not carry), `report_concurrency` rows in flight; GETs only for mismatches and unjudgeable rows.",
           "- The report pass runs invocation after invocation (up to 15 minutes each), each continued a minute later by",
           "  a one-time schedule (EventBridge Scheduler, not priced here: $1 per million invocations); one at a time,",
           "  `report_concurrency` rows in flight in it. Several reports (several jobs, by prefix) run side by side.",
           "- Not counted: storage, KMS requests for SSE-KMS objects (one Decrypt per GET, $0.03 per 10,000, which",
           "  adds about $300 to each GET-per-object way at 100 million objects), CloudWatch Logs of the audit records."]
    return md


def main():
    ap = argparse.ArgumentParser()
    # Standalone: the debug build (`cargo build -p restore-object`); make bench passes the
    # release binary it has just built.
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "restore-object"))
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--size", type=int, default=256 * 1024)
    args = ap.parse_args()
    md = section(args.binary, args.objects, args.size)
    print("\n".join(md))


def section(binary=None, n=200, size=256 * 1024, work=None):
    binary = binary or os.path.join(ROOT, "target", "x86_64-unknown-linux-gnu", "release", "restore-object")
    work = work or os.path.join(ROOT, "target", "bench")
    os.makedirs(work, exist_ok=True)
    m = measure(binary, n, size, work)
    rows = model(m)
    md = markdown(m, rows, binary)
    with open(os.path.join(ROOT, "bench", "batch_model.json"), "w") as f:
        json.dump({"binary": os.path.relpath(binary, ROOT), "measured": m, "prices": PRICES, "assumptions": ASSUME,
                   "model": [{"way": w, "s3_request_ms": lat, "hours": h, "usd_low": lo, "usd_high": hi} for w, lat, h, lo, hi in rows]},
                  f, indent=2)
        f.write("\n")
    with open(os.path.join(ROOT, "bench", "BATCH_MODEL.md"), "w") as f:
        f.write("\n".join(["# restore-object at bucket scale: measured figures and the 100-million-object model", "",
                           "Generated by `make bench` (section 8) or `bench/batch_model.py`; raw numbers in `bench/batch_model.json`.", ""]
                          + md[1:]) + "\n")
    return md


if __name__ == "__main__":
    sys.exit(main())
