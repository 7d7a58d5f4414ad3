"""Sections 4, 5 and 7 of `make bench`: they need the functions' own resources in the emulator.

4. restore-object verifying a 1 GiB object served by the emulator (peak RSS, throughput),
   next to the emulator's own download speed and Python's hashlib on the same bytes.
5. replay-transactions: AWS calls per 10-record batch in the common path (counted from the
   emulator's request log) and messages per second draining the DLQ, through the integration
   harness's drain loop (the same handler, pollers that behave like the event source mapping).
7. the alarm functions: the AWS calls before the action, in order, from the request log.
"""

import base64
import hashlib
import json
import os
import re
import subprocess
import time
import urllib.request

from request_log import entries as request_log_entries

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
    p = subprocess.run(["cargo", "test", "-q", "--locked", "-p", "selfheal-tests", "--",
                        "replay_transactions::drain_benchmark", "--nocapture"], cwd=ROOT, env=env, text=True, capture_output=True)
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


def _request_log():
    out = []
    for r in request_log_entries():
        target = r.get("headers", {}).get("X-Amz-Target", "")
        body = r.get("body") or ""
        if r.get("body_encoded"):
            try:
                body = base64.b64decode(body).decode("utf-8", "replace")
            except ValueError:
                body = ""
        m = re.search(r"(?:^|&)Action=([A-Za-z]+)", body) or re.search(r"[?&]Action=([A-Za-z]+)", r.get("url", ""))
        if target:
            out.append(target.split(".")[-1])
        elif m:
            out.append(m.group(1))
        else:
            out.append(r.get("method", "?") + " " + r.get("url", "").split("?")[0].rsplit("/", 1)[-1])
    return out


def _fresh(text):
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    return re.sub(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d", now, text)


def _calls_before(release, function, event, env, action, work):
    path = os.path.join(work, f"calls-{function}.json")
    with open(path, "w") as f:
        f.write(event)
    before = len(_request_log())
    p = subprocess.run([os.path.join(release, function), "--event", path], cwd=ROOT, env=env, text=True, capture_output=True)
    calls = _request_log()[before:]
    rec = next((json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")), {})
    upto = calls.index(action) if action in calls else None
    return rec, calls, upto


def alarm_calls(work, release, function_env, aws):
    """Section 7: the AWS calls each alarm function makes before its action, in order, from
    the emulator's request log."""
    stamp = str(int(time.time()))
    events = os.path.join(ROOT, "events")
    cw, ec2 = aws("cloudwatch"), aws("ec2")
    urllib.request.urlopen(urllib.request.Request(os.environ["AWS_ENDPOINT_URL"] + "/moto-api/recorder/start-recording", method="POST"))
    rows = []

    iid = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "selfheal:managed", "Value": "true"}]}])["Instances"][0]["InstanceId"]
    alarm = "bench-status-" + stamp
    cw.put_metric_alarm(AlarmName=alarm, Namespace="AWS/EC2", MetricName="StatusCheckFailed_Instance", Dimensions=[{"Name": "InstanceId", "Value": iid}],
                        Statistic="Maximum", Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold")
    cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="bench")
    text = open(os.path.join(events, "reboot-instance-eventbridge-metric-math.json")).read()
    text = _fresh(text.replace("i-0123456789abcdef0", iid).replace("web-1-status-checks", alarm))
    rows.append(("reboot-instance", "status-check alarm (metric math), EventBridge", *_calls_before(release, "reboot-instance", text, function_env(), "RebootInstances", work)))

    group = "bench-web-" + stamp
    ec2.create_launch_template(LaunchTemplateName=group, LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"})
    aws("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=group, LaunchTemplate={"LaunchTemplateName": group, "Version": "$Latest"}, MinSize=1, MaxSize=6, DesiredCapacity=2,
        AvailabilityZones=["us-east-1a"],
        Tags=[{"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": "selfheal:managed", "Value": "true", "PropagateAtLaunch": False}])
    alarm = "bench-asg-" + stamp
    cw.put_metric_alarm(AlarmName=alarm, Namespace="AWS/EC2", MetricName="CPUUtilization", Dimensions=[{"Name": "AutoScalingGroupName", "Value": group}],
                        Statistic="Average", Period=60, EvaluationPeriods=2, Threshold=60.0, ComparisonOperator="GreaterThanThreshold")
    cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="bench")
    text = open(os.path.join(events, "scale-group-eventbridge-severe.json")).read()
    text = _fresh(text.replace("selfheal-sample-asg", group).replace("web-asg-cpu-high", alarm))
    rows.append(("scale-group", "CPU alarm at 2.5x, EventBridge", *_calls_before(release, "scale-group", text, function_env(), "SetDesiredCapacity", work)))

    md = ["## 7. AWS calls before the action (alarm functions)", "",
          "Release binaries with `--event` against the emulator, the alarm created in it and in ALARM, the event sent now;",
          "the calls as the emulator's request log recorded them, up to the action. The log has no timestamps, so it cannot",
          "show which calls overlapped: that the independent reads go out together is asserted by the functions' handler",
          "tests over fake ports (`the_reads_before_a_reboot_go_out_together`, `the_group_and_the_alarm_are_read_together`).", "",
          "| function | event | outcome | calls before the action | the calls, in the order recorded |", "|---|---|---|---:|---|"]
    for function, what, rec, calls, upto in rows:
        outcome = f"{rec.get('decision', '?')} / {rec.get('code', '?')}"
        if upto is None:
            md.append(f"| {function} | {what} | {outcome} | – | no action recorded; calls: {', '.join(calls) or 'none'} |")
        else:
            before = calls[:upto]
            md.append(f"| {function} | {what} | {outcome} | {len(before)} | {', '.join(before)} |")
    md.append("")
    return md


def run(only, work, release, function_env, aws, peak_rss_kib):
    md = []
    if 4 in only:
        print("4. restore-object on a 1 GiB object ...", flush=True)
        md += restore_1gib(work, release, function_env, aws, peak_rss_kib)
    if 5 in only:
        print("5. replay-transactions drain ...", flush=True)
        md += replay_drain(int(os.environ.get("SELFHEAL_BENCH_MESSAGES", "1000")))
    if 7 in only:
        print("7. AWS calls before the action ...", flush=True)
        md += alarm_calls(work, release, function_env, aws)
    return md
