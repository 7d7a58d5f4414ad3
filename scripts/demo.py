#!/usr/bin/env python3
"""make demo: every selfheal function, run through the Lambda runtime emulator (cargo lambda)
against the local AWS emulator (moto), with what happened shown before and after; then the
closed loop (issue 14): follow-ups that Scheduler would deliver, delivered by the demo.

Run by `make demo` inside scripts/with-moto.sh, which starts moto and exports AWS_ENDPOINT_URL
and fake credentials. Each function has a module scripts/demo_<function>.py with
  TITLE, setup(demo) -> dict of env vars, run(demo)
The closed-loop stories are in this file (closed_loop_* below).
"""

import base64
import datetime
import hashlib
import html
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EVENTS = os.path.join(ROOT, "events")
FUNCTIONS = ["reboot-instance", "restore-object", "replay-transactions", "scale-group"]
ACCOUNT = "123456789012"

BOLD, DIM, GREEN, YELLOW, RED, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[33m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 6
)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def hhmmss(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%H:%M:%S")


class Demo:
    def __init__(self):
        self.endpoint = os.environ["AWS_ENDPOINT_URL"]
        self.region = os.environ.get("AWS_REGION", "us-east-1")
        self.port = None
        self.api = None
        self.procs = {}
        self.executables = {}
        self.logdir = tempfile.mkdtemp(prefix="selfheal-demo-")
        self._clients = {}
        self.failures = 0

    # ---- emulator access -------------------------------------------------------------
    def client(self, service):
        if service not in self._clients:
            kwargs = {"endpoint_url": self.endpoint, "region_name": self.region}
            if service == "s3":
                from botocore.config import Config

                kwargs["config"] = Config(s3={"addressing_style": "path"})
            self._clients[service] = boto3.client(service, **kwargs)
        return self._clients[service]

    def requests(self, *needles):
        """Requests the emulator recorded whose URL, target or body contain every needle."""
        path = os.environ.get("SELFHEAL_EMULATOR_REQUEST_LOG")
        out = []
        if not path or not os.path.exists(path):
            return out
        with open(path) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                body = r.get("body") or ""
                if r.get("body_encoded"):
                    try:
                        body = base64.b64decode(body).decode("utf-8", "replace")
                    except ValueError:
                        body = ""
                hay = " ".join([r.get("url", ""), r.get("headers", {}).get("X-Amz-Target", ""), body])
                if all(n in hay for n in needles):
                    out.append(r)
        return out

    def fresh(self, event):
        """The event with the sample's fixed times moved to now: the alarm functions skip alarm
        events older than SELFHEAL_MAX_EVENT_AGE_SECONDS (an hour by default)."""
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return json.loads(re.sub(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d", now, json.dumps(event)))

    def alarm(self, name, namespace, metric, dimensions, comparison="GreaterThanThreshold", threshold=1.0, tags=None, state="ALARM"):
        """Creates (or replaces) a metric alarm in the emulator and sets its state: the alarm
        functions act only on alarms that exist and are still in ALARM when they act."""
        cw = self.client("cloudwatch")
        cw.put_metric_alarm(
            AlarmName=name,
            Namespace=namespace,
            MetricName=metric,
            Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
            Statistic="Maximum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=threshold,
            ComparisonOperator=comparison,
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )
        self.set_alarm(name, state)

    def set_alarm(self, name, state):
        self.client("cloudwatch").set_alarm_state(AlarmName=name, StateValue=state, StateReason="selfheal demo")

    def create_shared(self):
        ddb = self.client("dynamodb")
        self.ledger_table = "selfheal-demo-ledger"
        ddb.create_table(
            TableName=self.ledger_table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        ddb.update_time_to_live(
            TableName=self.ledger_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
        sns, sqs = self.client("sns"), self.client("sqs")
        self.topic_arn = sns.create_topic(Name="selfheal-demo-notices")["TopicArn"]
        self.inbox_url = sqs.create_queue(QueueName="selfheal-demo-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=self.inbox_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=inbox_arn)
        urllib.request.urlopen(urllib.request.Request(self.endpoint + "/moto-api/recorder/start-recording", method="POST"))

    def notices(self):
        """Notifications delivered to the demo inbox since the last call: (subject, message)."""
        sqs, out = self.client("sqs"), []
        while True:
            msgs = sqs.receive_message(QueueUrl=self.inbox_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                env = json.loads(m["Body"])
                try:
                    msg = json.loads(env.get("Message", "null"))
                except ValueError:
                    msg = env.get("Message")
                out.append((env.get("Subject", ""), msg))
                sqs.delete_message(QueueUrl=self.inbox_url, ReceiptHandle=m["ReceiptHandle"])

    def show_notices(self):
        """Prints (and consumes) the notices the operators' topic received since the last call."""
        notices = self.notices()
        if notices:
            print(f"   {DIM}notices sent to the operators' topic:{RESET}")
        for subject, msg in notices:
            reason = msg.get("reason", "") if isinstance(msg, dict) else str(msg)
            print(f" ✉ {subject} — {reason[:110]}")
        return notices

    # ---- the Lambda runtime emulator ---------------------------------------------------
    def build(self, functions):
        """Builds the functions' binaries once; the runtime emulator runs exactly these (it
        would otherwise `cargo run` each function again when it starts it)."""
        packages = [arg for fn in functions for arg in ("-p", fn)]
        out = subprocess.run(
            ["cargo", "build", "--quiet", "--locked", "--bins", "--message-format", "json", *packages],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for line in out.stdout.splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
                self.executables[msg["target"]["name"]] = msg["executable"]
        if out.returncode != 0:
            raise SystemExit("cargo build failed (its errors are above)")
        missing = [fn for fn in functions if fn not in self.executables]
        if missing:
            raise SystemExit(f"cargo build gave no binary for {', '.join(missing)}")

    def start_runtime(self, function, env):
        """The Lambda runtime emulator (`cargo lambda watch`, its runtime APIs only) and the
        function's binary polling it for invocations, with this function's settings only."""
        self.port = free_port()
        log = open(os.path.join(self.logdir, f"{function}-runtime.log"), "a")
        self.api = subprocess.Popen(
            ["cargo", "lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.api.poll() is not None:
                    raise SystemExit("cargo lambda watch exited; see " + log.name)
                time.sleep(0.1)
        else:
            raise SystemExit("cargo lambda watch did not start")
        # The function sees its own settings, never the caller's SELFHEAL_* or RUST_LOG.
        penv = {k: v for k, v in os.environ.items() if not k.startswith(("SELFHEAL_", "AWS_LAMBDA_", "RUST_LOG"))}
        penv.update(env)
        penv.update(
            {
                "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{self.port}/.rt/{function}",
                "AWS_LAMBDA_FUNCTION_NAME": function,
                "AWS_LAMBDA_FUNCTION_VERSION": "1",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            }
        )
        self.fn_log = os.path.join(self.logdir, f"{function}.log")
        self.procs[function] = subprocess.Popen(
            [self.executables[function]], cwd=ROOT, env=penv, stdout=open(self.fn_log, "a"), stderr=subprocess.STDOUT
        )

    def stop_runtime(self):
        for proc in list(self.procs.values()) + ([self.api] if self.api else []):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.procs, self.api = {}, None

    def invoke(self, function, event):
        """Invokes `function` through the Lambda runtime emulator; returns its parsed response
        (or {"error": ...} when the function returned an error). `event` is a JSON value, or a
        JSON text sent exactly as it is."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(event if isinstance(event, str) else json.dumps(event))
        proc = self.procs.get(function)
        try:
            inv = subprocess.Popen(
                ["cargo", "lambda", "invoke", function, "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port), "--data-file", f.name],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.time() + 120
            while inv.poll() is None:
                # A function that died (a bad setting stops its cold start) never answers.
                if proc is None or proc.poll() is not None or time.time() > deadline:
                    inv.kill()
                    inv.communicate()
                    why = "is not running" if proc is None or proc.poll() is not None else "did not answer in 120 s"
                    return {"error": f"{function} {why}; its log: {self.fn_log}"}
                time.sleep(0.02)
            stdout, stderr = inv.communicate()
        finally:
            os.unlink(f.name)
        if inv.returncode != 0:
            # cargo lambda prints "Error: TYPE", then the message in a box, then a banner.
            text = stderr or stdout
            lines = [l.strip(" ×│╰─▶├") for l in text.splitlines()]
            lines = [l for l in lines if l and "Was this behavior unexpected" not in l and "Start a thread" not in l]
            return {"error": " ".join(lines) or "unknown error"}
        try:
            return json.loads(stdout)
        except ValueError:
            return {"error": stdout.strip()}

    # ---- output for people ---------------------------------------------------------------
    def section(self, title):
        print(f"\n{BOLD}== {title}{RESET}")

    def say(self, text):
        print(f"   {DIM}{text}{RESET}")

    def show(self, trigger, decision, reason, effect=""):
        colour = {"acted": GREEN, "dry-run": YELLOW, "skipped": YELLOW, "failed": RED}.get(decision, "")
        if len(reason) > 150:
            reason = reason[:147] + "..."
        line = f" • {trigger} → {colour}{decision}{RESET}: {reason}"
        if effect:
            line += f"\n     ⇒ {effect}"
        print(line)

    def show_audits(self, trigger, response, effect=""):
        """One line per audit record in a function response that is a list of records."""
        if isinstance(response, dict) and "error" in response:
            self.show(trigger, "failed", f"function returned an error: {response['error']}", effect)
            return
        records = response if isinstance(response, list) else [response]
        for r in records:
            self.show(trigger, r.get("decision", "?"), f"{r.get('target', '')}: {r.get('reason', '')}", effect)

    def before_after(self, label, before, after):
        print(f"     {label}: {before} → {BOLD}{after}{RESET}")

    def expect(self, what, ok):
        """A check the demo makes on what it shows; a failed one fails `make demo`."""
        if not ok:
            self.failures += 1
            print(f"     {RED}unexpected: {what}{RESET}")
        return ok


# ---- the closed loop (issue 14) --------------------------------------------------------------
# Each action schedules its verification with EventBridge Scheduler. The emulator stores
# schedules but never fires them: the demo reads each stored schedule and invokes the function
# it targets with exactly its Target.Input, at once instead of at its time (and says so).

FOLLOW_UP_GROUP = "selfheal-demo-follow-ups"
SCHEDULER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/selfheal-demo-scheduler"
SAMPLE_INSTANCE = "i-0123456789abcdef0"
SAMPLE_GROUP = "selfheal-sample-asg"


def function_arn(demo, function):
    return f"arn:aws:lambda:{demo.region}:{ACCOUNT}:function:{function}"


def closed_loop_env(demo, function):
    """Everything the stories rely on, set explicitly (whatever the code's defaults become)."""
    return {
        "SELFHEAL_AUTONOMY": "auto",
        "SELFHEAL_DRY_RUN": "false",
        "SELFHEAL_ENABLED": "true",
        "SELFHEAL_OPT_IN_TAG": "selfheal:managed=true",
        "SELFHEAL_SCHEDULE_GROUP": FOLLOW_UP_GROUP,
        "SELFHEAL_SCHEDULER_ROLE_ARN": SCHEDULER_ROLE_ARN,
        "SELFHEAL_FOLLOW_UP_TARGET_ARN": function_arn(demo, function),
        # Follow-ups are delivered at once, and the cooldown counts real time: without this a
        # follow-up's next step would meet the cooldown of the step before (in AWS, 900 s).
        "SELFHEAL_COOLDOWN_SECONDS": "0",
        "SELFHEAL_MAX_ACTIONS_PER_HOUR": "20",
        "SELFHEAL_BREAKER_TARGETS": "10",
        "SELFHEAL_MAX_EVENT_AGE_SECONDS": "3600",
    }


def stored_follow_ups(demo, target):
    """The schedules stored in the follow-up group whose payload names `target`."""
    sch, out, token = demo.client("scheduler"), [], None
    while True:
        page = sch.list_schedules(GroupName=FOLLOW_UP_GROUP, **({"NextToken": token} if token else {}))
        for s in page.get("Schedules", []):
            full = sch.get_schedule(GroupName=FOLLOW_UP_GROUP, Name=s["Name"])
            payload = json.loads(full["Target"]["Input"])
            if payload.get("selfheal-verify", {}).get("target") == target:
                out.append(full)
        token = page.get("NextToken")
        if not token:
            return out


def deliver(demo, target, full=False):
    """Reads the one stored follow-up of `target` and invokes the function it targets with
    exactly its Target.Input; returns (payload, response)."""
    found = stored_follow_ups(demo, target)
    if not demo.expect(f"one stored follow-up for {target}, found {len(found)}", len(found) == 1):
        return {}, {"error": "no follow-up to deliver"}
    s = found[0]
    function = s["Target"]["Arn"].rsplit(":function:", 1)[-1]
    raw = s["Target"]["Input"]
    payload = json.loads(raw)["selfheal-verify"]
    m = re.match(r"at\((.*)\)$", s["ScheduleExpression"])
    due = None
    if m:
        at = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        due = int(at.timestamp() - time.time())
    if full:
        demo.say(f"stored schedule {s['Name']} in group {FOLLOW_UP_GROUP}:")
        demo.say(
            f"  {s['ScheduleExpression']} {s.get('ScheduleExpressionTimezone', '')}, flexible window "
            f"{s['FlexibleTimeWindow']['Mode']}, after completion {s.get('ActionAfterCompletion', '?')}"
        )
        demo.say(f"  target {s['Target']['Arn']} as {s['Target']['RoleArn']}")
        demo.say(f"  input {raw[:160]}{'...' if len(raw) > 160 else ''}")
    what = "start after the stop" if payload.get("phase") == "start" else f"verify ({payload.get('rung') or 'step ' + str(payload.get('step'))}, attempt {payload.get('attempt')})"
    when = f"due in {due} s" if due is not None and due > 0 else "due now"
    print(f" ⏱ {YELLOW}time passes{RESET}: the follow-up {what} is {when}; the emulator never fires it, so the demo delivers its input to {function} now")
    return payload, demo.invoke(function, raw)


def loop_line(demo, trigger, records):
    """One line per record of a closed-loop invocation: decision, outcome, time to heal and
    what was scheduled next."""
    if isinstance(records, dict) and "error" in records:
        demo.show(trigger, "failed", f"function returned an error: {records['error']}")
        return []
    records = records if isinstance(records, list) else [records]
    for r in records:
        reason = (r.get("reason") or "").split(": metric ")[0]
        tags = []
        if r.get("outcome"):
            colour = {"healed": GREEN, "escalated": RED}.get(r["outcome"], YELLOW)
            tags.append(f"{colour}{r['outcome']}{RESET}")
        if r.get("time_to_heal_ms") is not None:
            tags.append(f"time to heal {r['time_to_heal_ms'] / 1000:.1f} s")
        demo.show(trigger, r.get("decision", "?") + (f" ({', '.join(tags)})" if tags else ""), reason)
        note = (r.get("details") or {}).get("follow_up") or {}
        if note.get("status") == "scheduled":
            demo.say(f"⇒ follow-up scheduled for {hhmmss(note['at'])} UTC ({note['name']})")
        elif note:
            demo.say(f"⇒ follow-up {note.get('status')}: {note.get('reason') or note.get('error')}")
    return records


def first(records):
    return records[0] if isinstance(records, list) and records else {}


def closed_loop_setup(demo):
    demo.client("scheduler").create_schedule_group(Name=FOLLOW_UP_GROUP)
    ec2 = demo.client("ec2")
    ids = {}
    for name in ("web-2", "web-3"):
        spec = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}, {"Key": "selfheal:managed", "Value": "true"}]}]
        out = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=1, MaxCount=1, TagSpecifications=spec)
        ids[name] = out["Instances"][0]["InstanceId"]
        demo.alarm(f"{name}-status-checks", "AWS/EC2", "StatusCheckFailed_Instance", {"InstanceId": ids[name]})
    group = f"selfheal-demo-shop-{int(time.time())}"
    demo.client("ec2").create_launch_template(
        LaunchTemplateName=group, LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    )
    demo.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateName": group, "Version": "$Latest"},
        MinSize=1,
        MaxSize=12,
        DesiredCapacity=4,
        AvailabilityZones=["us-east-1a"],
        Tags=[{"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": "selfheal:managed", "Value": "true", "PropagateAtLaunch": False}],
    )
    demo.alarm("shop-cpu-high", "AWS/EC2", "CPUUtilization", {"AutoScalingGroupName": group}, threshold=60.0)
    return ids, group


def sample(demo, name, replacements):
    with open(os.path.join(EVENTS, name)) as f:
        text = f.read()
    # Plain text replacement: the names also appear inside SNS messages (JSON in a string).
    for old, new in replacements.items():
        text = text.replace(old, new)
    return demo.fresh(json.loads(text))


def instance_state(demo, iid):
    out = demo.client("ec2").describe_instances(InstanceIds=[iid])
    return out["Reservations"][0]["Instances"][0]["State"]["Name"]


def closed_loop_reboot(demo, ids):
    fn = "reboot-instance"
    demo.say(
        f"reboot-instance settings: ladder reboot → stop-start → notify (stop-start allowed); verification {REBOOT_VERIFY_AFTER} s "
        "after a reboot; cooldown 0 s (follow-ups are delivered at once here); follow-ups in "
        f"schedule group {FOLLOW_UP_GROUP}"
    )

    # Story 1: a reboot that heals.
    iid, alarm = ids["web-2"], "web-2-status-checks"
    print(f"\n   {BOLD}1. web-2 ({iid}) fails its status checks; a reboot heals it{RESET}")
    ev = sample(demo, "reboot-instance-eventbridge-metric-math.json", {SAMPLE_INSTANCE: iid, "web-1-status-checks": alarm})
    r = loop_line(demo, f"alarm {alarm} ALARM", demo.invoke(fn, ev))
    episode = first(r).get("episode_id")
    demo.expect("the status-check alarm reboots web-2", first(r).get("decision") == "acted")
    demo.expect("the reboot's verification is scheduled", (first(r).get("details") or {}).get("follow_up", {}).get("status") == "scheduled")
    demo.before_after(f"RebootInstances calls for {iid}", 0, len(demo.requests("Action=RebootInstances", f"InstanceId.1={iid}")))
    demo.set_alarm(alarm, "OK")
    demo.say(f"after the reboot the status checks pass: alarm {alarm} → OK")
    _, r = deliver(demo, iid, full=True)
    r = loop_line(demo, "verification", r)
    healed = first(r)
    demo.expect("the reboot is verified healed", healed.get("outcome") == "healed" and healed.get("time_to_heal_ms") is not None)
    demo.expect("one episode from the alarm to healed", episode is not None and healed.get("episode_id") == episode)
    demo.expect("nothing more scheduled for web-2", not stored_follow_ups(demo, iid))
    if healed.get("time_to_heal_ms") is not None:
        demo.say(
            f"time to heal {healed['time_to_heal_ms'] / 1000:.1f} s on the demo's clock, from the alarm to the verification; "
            f"in AWS the verification comes {REBOOT_VERIFY_AFTER} s after the reboot, so at least that"
        )
    demo.show_notices()

    # Story 2: a reboot that does not heal → the next rung → a person.
    iid, alarm = ids["web-3"], "web-3-status-checks"
    print(f"\n   {BOLD}2. web-3 ({iid}) fails its status checks; neither a reboot nor new hardware heals it{RESET}")
    ev = sample(demo, "reboot-instance-eventbridge-metric-math.json", {SAMPLE_INSTANCE: iid, "web-1-status-checks": alarm})
    r = loop_line(demo, f"alarm {alarm} ALARM", demo.invoke(fn, ev))
    episode = first(r).get("episode_id")
    demo.expect("the status-check alarm reboots web-3", first(r).get("decision") == "acted")
    demo.say(f"the reboot does not help: alarm {alarm} stays in ALARM")
    _, r = deliver(demo, iid)
    r = loop_line(demo, "verification of the reboot", r)
    demo.expect("the next rung stops the instance", first(r).get("decision") == "acted" and (first(r).get("details") or {}).get("rung") == "stop-start")
    demo.say(f"instance {iid}: {instance_state(demo, iid)} (its start was scheduled before the stop)")
    _, r = deliver(demo, iid)
    r = loop_line(demo, "the start after the stop", r)
    state = instance_state(demo, iid)
    demo.say(f"instance {iid}: {state}, on other hardware in AWS")
    demo.expect("the instance is started again", state in ("pending", "running"))
    demo.say(f"still failing: alarm {alarm} stays in ALARM")
    _, r = deliver(demo, iid)
    r = loop_line(demo, "verification of the stop-start", r)
    last = first(r)
    demo.expect("the last rung escalates to a person", last.get("outcome") == "escalated")
    demo.expect("the whole ladder is one episode", last.get("episode_id") == episode)
    demo.expect("nothing more scheduled for web-3", not stored_follow_ups(demo, iid))
    calls = {a: len(demo.requests(f"Action={a}", f"InstanceId.1={iid}")) for a in ("RebootInstances", "StopInstances", "StartInstances")}
    demo.say("calls on web-3: " + ", ".join(f"{a} {n}" for a, n in calls.items()))
    notices = demo.show_notices()
    demo.expect("a person is told", any("ESCALATION" in s for s, _ in notices))


def desired(demo, group):
    out = demo.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return out["AutoScalingGroups"][0]["DesiredCapacity"]


def closed_loop_scale(demo, group):
    fn, alarm, need = "scale-group", "shop-cpu-high", SURGE_NEEDS
    print()
    demo.say(
        f"scale-group settings: severity sizing (the emulator holds no metric history to forecast from), step ≤ 8, "
        f"12 resizes per group in 6 h, verification {SCALE_VERIFY_AFTER} s after a resize, cooldown 0 s"
    )
    print(f"\n   {BOLD}3. a surge on {group} outlasts the first step{RESET}")
    demo.say(
        f"the surge needs {need} instances: the demo plays the CPU alarm {alarm}, in ALARM while the group "
        f"has fewer (the emulator evaluates no alarm)"
    )
    ev = sample(demo, "scale-group-eventbridge.json", {SAMPLE_GROUP: group, "web-asg-cpu-high": alarm})
    sizes = [desired(demo, group)]
    r = loop_line(demo, f"alarm {alarm} ALARM (CPU 72 % vs 60 %)", demo.invoke(fn, ev))
    sizes.append(desired(demo, group))
    episode = first(r).get("episode_id")
    demo.expect("the alarm resizes the group", first(r).get("decision") == "acted")
    demo.before_after(f"{group} desired capacity", sizes[0], sizes[-1])
    last = first(r)
    for _ in range(12):
        if not stored_follow_ups(demo, group):
            break
        if sizes[-1] >= need:
            demo.set_alarm(alarm, "OK")
            demo.say(f"with {sizes[-1]} instances the CPU falls under 60 %: alarm {alarm} → OK")
        else:
            demo.say(f"{sizes[-1]} instances are not enough: alarm {alarm} stays in ALARM")
        _, r = deliver(demo, group)
        r = loop_line(demo, "verification", r)
        last = first(r)
        if sizes[-1] != desired(demo, group):
            demo.before_after(f"{group} desired capacity", sizes[-1], desired(demo, group))
            sizes.append(desired(demo, group))
    demo.say("desired capacity over the episode: " + " → ".join(map(str, sizes)))
    demo.expect("the surge took further steps", len(sizes) >= 4)
    demo.expect("the surge is healed", last.get("outcome") == "healed" and last.get("time_to_heal_ms") is not None)
    demo.expect("every step in one episode", last.get("episode_id") == episode)
    demo.expect("nothing more scheduled for the group", not stored_follow_ups(demo, group))
    demo.show_notices()


REBOOT_VERIFY_AFTER = 600
SCALE_VERIFY_AFTER = 930
SURGE_NEEDS = 8


def closed_loop(demo, base_env):
    demo.section("closed loop: every action is verified; not healed → the next step, then a person")
    ids, group = closed_loop_setup(demo)
    reboot_env = {
        **base_env,
        **closed_loop_env(demo, "reboot-instance"),
        "SELFHEAL_REBOOT_LADDER": "reboot,stop-start,notify",
        "SELFHEAL_REBOOT_ALLOW_STOP_START": "true",
        "SELFHEAL_REBOOT_VERIFY_AFTER_SECONDS": str(REBOOT_VERIFY_AFTER),
        "SELFHEAL_REBOOT_MAX_FOLLOW_UPS": "4",
        "SELFHEAL_TARGET_CAP": "3",
        # The emulator holds no metric history; the anomaly gate is make eval's subject.
        "SELFHEAL_ANOMALY_GATE": "off",
    }
    scale_env = {
        **base_env,
        **closed_loop_env(demo, "scale-group"),
        "SELFHEAL_SCALE_SIZING": "severity",
        "SELFHEAL_SCALE_MAX_STEP": "8",
        "SELFHEAL_TARGET_CAP": "12",
        "SELFHEAL_MAX_ACTIONS_PER_GROUP_PER_HOUR": "12",
        "SELFHEAL_SCALE_VERIFY_AFTER_SECONDS": str(SCALE_VERIFY_AFTER),
        "SELFHEAL_SCALE_MAX_FOLLOW_UPS": "12",
    }
    for fn, env, story in (("reboot-instance", reboot_env, lambda: closed_loop_reboot(demo, ids)), ("scale-group", scale_env, lambda: closed_loop_scale(demo, group))):
        demo.start_runtime(fn, env)
        try:
            story()
        finally:
            demo.stop_runtime()


# ---- graduated autonomy: one-click approval (issue 17) ----------------------------------------
# An instance tagged selfheal:autonomy=approve is not rebooted on an alarm: the function asks a
# person (a notice with an approve and a reject link to its function URL). The demo follows the
# links as a person would: GET shows a page and never acts; its button POSTs the token.

APPROVAL_URL = "https://selfheal-demo-reboot.lambda-url.us-east-1.on.aws/"
APPROVAL_KEY_PARAMETER = "/selfheal-demo/approval-key"
APPROVAL_TTL = 60


def url_event(demo, method, token):
    """The Lambda function-URL request a browser's GET of a link, or its form's POST, makes."""
    name = "approval-get.json" if method == "GET" else "approval-post.json"
    with open(os.path.join(EVENTS, name)) as f:
        ev = json.load(f)
    query = "t=" + urllib.parse.quote(token, safe="")
    now = time.time()
    ev["requestContext"]["timeEpoch"] = int(now * 1000)
    ev["requestContext"]["time"] = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
    if method == "GET":
        ev["rawQueryString"] = query
        ev["queryStringParameters"] = {"t": token}
    else:
        # A form POST: the token in the body only (a token in a POST's query is ignored).
        ev["rawQueryString"] = ""
        ev.pop("queryStringParameters", None)
        ev["body"] = base64.b64encode(query.encode()).decode()
        ev["isBase64Encoded"] = True
    return ev


def page(response):
    """(status, heading, first paragraph, the form's hidden token) of a function-URL answer."""
    if not isinstance(response, dict) or "statusCode" not in response:
        return None, f"no page: {response}", "", None
    body = response.get("body") or ""
    h1 = re.search(r"<h1>(.*?)</h1>", body, re.S)
    p = re.search(r"<p>(.*?)</p>", body, re.S)
    t = re.search(r'name="t" value="([^"]*)"', body)
    return (
        response["statusCode"],
        html.unescape(h1.group(1)) if h1 else "",
        html.unescape(p.group(1)) if p else "",
        html.unescape(t.group(1)) if t else None,
    )


def open_link(demo, link):
    """A person opens the link: GET (a page, never an action). Returns the page's button token."""
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query).get("t", [""])[0]
    status, title, _, form_token = page(demo.invoke("reboot-instance", url_event(demo, "GET", token)))
    print(f"     GET  {link[:60]}… → {status} “{title}”")
    return status, form_token


def press(demo, form_token):
    """... and presses the page's button: POST the form."""
    if form_token is None:
        demo.say("no button on that page: nothing to press")
        return None
    status, title, text, _ = page(demo.invoke("reboot-instance", url_event(demo, "POST", form_token)))
    colour = GREEN if status == 200 else YELLOW
    print(f"     POST (the page's button) → {colour}{status}{RESET} “{title}”: {text[:120]}")
    return status


def follow(demo, link):
    status, form_token = open_link(demo, link)
    return status if form_token is None else press(demo, form_token)


def asked_links(demo, iid):
    """The links in the approval notice for `iid` (and the other notices, shown)."""
    links = None
    for subject, msg in demo.notices():
        if isinstance(msg, dict) and msg.get("approve_url") and msg.get("target") == iid:
            links = (msg["approve_url"], msg["reject_url"], msg.get("approval_expires_at"))
            print(f" ✉ {subject} — approve and reject links, valid until {hhmmss(links[2]) if links[2] else '?'} UTC")
        else:
            reason = msg.get("reason", "") if isinstance(msg, dict) else str(msg)
            print(f" ✉ {subject} — {reason[:110]}")
    return links


def approval_setup(demo):
    # The link-signing key: an SSM SecureString (never in the environment or the logs).
    demo.client("ssm").put_parameter(
        Name=APPROVAL_KEY_PARAMETER, Type="SecureString", Value=base64.b64encode(os.urandom(48)).decode()
    )
    ec2, ids = demo.client("ec2"), {}
    for name in ("web-4", "web-5", "web-6"):
        tags = [{"Key": "Name", "Value": name}, {"Key": "selfheal:managed", "Value": "true"}, {"Key": "selfheal:autonomy", "Value": "approve"}]
        out = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=1, MaxCount=1, TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
        ids[name] = out["Instances"][0]["InstanceId"]
        demo.alarm(f"{name}-status-checks", "AWS/EC2", "StatusCheckFailed_Instance", {"InstanceId": ids[name]})
    return ids


def reboots(demo, iid):
    return len(demo.requests("Action=RebootInstances", f"InstanceId.1={iid}"))


def ask(demo, name, iid):
    ev = sample(demo, "reboot-instance-eventbridge-metric-math.json", {SAMPLE_INSTANCE: iid, "web-1-status-checks": f"{name}-status-checks"})
    r = loop_line(demo, f"alarm {name}-status-checks ALARM", demo.invoke("reboot-instance", ev))
    demo.expect(f"{name}: an approval is asked, nothing done", first(r).get("code") == "approval-asked" and reboots(demo, iid) == 0)
    links = asked_links(demo, iid)
    demo.expect(f"{name}: the notice carries the links", links is not None)
    return links


def approval_env(demo, base_env):
    return {
        **base_env,
        **closed_loop_env(demo, "reboot-instance"),
        "SELFHEAL_REBOOT_VERIFY_AFTER_SECONDS": str(REBOOT_VERIFY_AFTER),
        "SELFHEAL_ANOMALY_GATE": "off",
        "SELFHEAL_APPROVAL_KEY_PARAMETER": APPROVAL_KEY_PARAMETER,
        "SELFHEAL_APPROVAL_URL": APPROVAL_URL,
        "SELFHEAL_APPROVAL_TTL_SECONDS": str(APPROVAL_TTL),
        "SELFHEAL_ALARM_TAG_CACHE_SECONDS": "0",
    }


def approvals_begin(demo, base_env):
    """The first approval story starts early: its link is followed once it has expired, at
    the end of the demo (the other stories run meanwhile)."""
    demo.section("graduated autonomy: one-click approval from the notice (issue 17)")
    ids = approval_setup(demo)
    demo.say(
        f"web-4, web-5 and web-6 carry selfheal:autonomy=approve (the tag on the target wins over "
        f"SELFHEAL_AUTONOMY=auto); links signed with the key in SSM {APPROVAL_KEY_PARAMETER}, valid "
        f"{APPROVAL_TTL} s here (SELFHEAL_APPROVAL_TTL_SECONDS, the shortest allowed; 4 h by default)"
    )
    demo.start_runtime("reboot-instance", approval_env(demo, base_env))
    try:
        print(f"\n   {BOLD}4. web-6 ({ids['web-6']}): an approval asked now; its link is followed at the end, once expired{RESET}")
        late = ask(demo, "web-6", ids["web-6"])
    finally:
        demo.stop_runtime()
    return {"ids": ids, "late": late, "asked_at": time.time()}


def approval_stories(demo, ids, late, asked_at):
    print(f"\n   {BOLD}5. web-4 ({ids['web-4']}): a person approves{RESET}")
    links = ask(demo, "web-4", ids["web-4"])
    if links:
        status, form_token = open_link(demo, links[0])
        demo.expect("opening the link shows a page and changes nothing", status == 200 and reboots(demo, ids["web-4"]) == 0)
        demo.say("its button POSTs the token: verified, consumed once, the state read again, then the reboot")
        status = press(demo, form_token)
        demo.before_after(f"RebootInstances calls for {ids['web-4']}", 0, reboots(demo, ids["web-4"]))
        demo.expect("the approved reboot is done", status == 200 and reboots(demo, ids["web-4"]) == 1)
        demo.expect("the approved reboot is followed up like any other", len(stored_follow_ups(demo, ids["web-4"])) == 1)
        demo.say("the same link, used once more:")
        status = follow(demo, links[0])
        demo.expect("the same link a second time does nothing", status == 409 and reboots(demo, ids["web-4"]) == 1)
    demo.show_notices()

    print(f"\n   {BOLD}6. web-5 ({ids['web-5']}): a person rejects{RESET}")
    links = ask(demo, "web-5", ids["web-5"])
    if links:
        status = follow(demo, links[1])
        demo.expect("a rejected reboot is not done", status == 200 and reboots(demo, ids["web-5"]) == 0)
        demo.say("the approve link of the same request, used after the reject:")
        status = follow(demo, links[0])
        demo.expect("a rejected approval cannot be approved afterwards", status == 409 and reboots(demo, ids["web-5"]) == 0)
    demo.show_notices()

    print(f"\n   {BOLD}4. (continued) web-6 ({ids['web-6']}): the link followed after it expired{RESET}")
    wait = asked_at + APPROVAL_TTL + 2 - time.time()
    if wait > 0:
        print(f" ⏱ {YELLOW}time passes{RESET}: waiting {wait:.0f} s for web-6's links to expire (real time: the token carries its expiry)", flush=True)
        time.sleep(wait)
    if late:
        status = follow(demo, late[0])
        demo.expect("an expired link does nothing", status == 410 and reboots(demo, ids["web-6"]) == 0)
    demo.show_notices()


def approvals_end(demo, base_env, begun):
    demo.section("graduated autonomy (continued)")
    demo.start_runtime("reboot-instance", approval_env(demo, base_env))
    try:
        approval_stories(demo, begun["ids"], begun["late"], begun["asked_at"])
    finally:
        demo.stop_runtime()

# ---- restore-object at bucket scale: the two-pass mode (issue 16) -----------------------------
# Pass one is S3's: a Batch Operations "Compute checksum" job computes every object's checksum
# at rest and writes a completion report. The emulator has no Batch Operations, so the demo
# plays S3's part: it computes the checksums over the objects' real bytes and writes the
# report (CSV files and a manifest.json with each file's MD5) as S3 would. Pass two is the
# function's: the manifest landing is an S3 event; each row is judged on a HEAD, and only the
# mismatches are read end to end and restored.

BUCKET_OBJECTS = 300
CORRUPT_EVERY = 50
REPORT_PREFIX = "selfheal-checksum-reports/"


def s3_key_encode(key):
    # Keys in reports and notifications are URL-encoded, spaces as '+'.
    return urllib.parse.quote_plus(key, safe="/-_.~")


def two_pass_setup(demo):
    from botocore.config import Config

    s3 = demo.client("s3")
    # The corruption is made with a write (the only way through the API): without a checksum
    # of the bad bytes and encrypted with KMS, so that nothing of S3's vouches for them (its
    # MD5 ETag would), as with bytes gone bad at rest.
    corruptor = boto3.client(
        "s3",
        endpoint_url=demo.endpoint,
        region_name=demo.region,
        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required"),
    )
    suffix = str(int(time.time()))
    data, replica, reports = f"selfheal-demo-lake-{suffix}", f"selfheal-demo-lake-replica-{suffix}", f"selfheal-demo-reports-{suffix}"
    for b in (data, replica, reports):
        s3.create_bucket(Bucket=b)
    s3.put_bucket_tagging(Bucket=data, Tagging={"TagSet": [{"Key": "selfheal:managed", "Value": "true"}]})
    rows, corrupt, good = [], [], {}
    for i in range(BUCKET_OBJECTS):
        key = f"events/2026/11/part-{i:04}.json"
        body = (json.dumps({"part": i, "rows": [{"id": i * 100 + j, "v": (i * 7919 + j) % 1000} for j in range(40)]}) + "\n").encode()
        meta = {"sha256": hashlib.sha256(body).hexdigest()}
        s3.put_object(Bucket=replica, Key=key, Body=body, Metadata=meta)
        stored = body
        if i % CORRUPT_EVERY == CORRUPT_EVERY - 1:
            stored = bytearray(body)
            stored[17] ^= 0x5A
            stored = bytes(stored)
            corruptor.put_object(Bucket=data, Key=key, Body=stored, Metadata=meta, ServerSideEncryption="aws:kms")
            corrupt.append(key)
        else:
            s3.put_object(Bucket=data, Key=key, Body=body, Metadata=meta)
        good[key] = body
        rows.append((key, stored))
    # S3's part: the Compute checksum job's completion report, 100 rows per result file.
    job = f"job-{suffix}"
    results = []
    for n in range(0, len(rows), 100):
        csv = ""
        for key, stored in rows[n : n + 100]:
            msg = json.dumps({"checksum_algorithm": "SHA256", "checksum_type": "FULL_OBJECT", "checksum_base64": base64.b64encode(hashlib.sha256(stored).digest()).decode()})
            csv += f'{data},{s3_key_encode(key)},,succeeded,,200,"{msg.replace(chr(34), chr(34) * 2)}"\n'
        rkey = f"{REPORT_PREFIX}{job}/results/{n // 100:04}.csv"
        s3.put_object(Bucket=reports, Key=rkey, Body=csv.encode())
        results.append({"TaskExecutionStatus": "succeeded", "Bucket": reports, "MD5Checksum": hashlib.md5(csv.encode()).hexdigest(), "Key": rkey})
    manifest = {
        "Format": "Report_CSV_20180820",
        "ReportCreationDate": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "Results": results,
        "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
    }
    mkey = f"{REPORT_PREFIX}{job}/manifest.json"
    s3.put_object(Bucket=reports, Key=mkey, Body=json.dumps(manifest).encode())
    return {"data": data, "replica": replica, "reports": reports, "manifest": mkey, "corrupt": corrupt, "good": good}


def object_gets(demo, bucket, keys):
    """GETs of the objects' bytes the emulator served (HEADs are not reads)."""
    wanted = {f"/{bucket}/{k}" for k in keys}
    n = 0
    for r in demo.requests(f"/{bucket}/"):
        url = urllib.parse.urlsplit(r.get("url", ""))
        if r.get("method") == "GET" and urllib.parse.unquote(url.path) in wanted and not url.query:
            n += 1
    return n


def two_pass_story(demo, b):
    healthy = [k for k in b["good"] if k not in b["corrupt"]]
    demo.say(
        f"s3://{b['data']}: {BUCKET_OBJECTS} objects with their sha256 in metadata, a replica in s3://{b['replica']}; "
        f"{len(b['corrupt'])} of them have gone bad at rest"
    )
    demo.say(
        f"pass one (S3's; played by the demo, the emulator has no Batch Operations): a Compute checksum report, "
        f"{BUCKET_OBJECTS} rows in 3 CSV files, manifest s3://{b['reports']}/{b['manifest']}"
    )
    ev = sample(demo, "restore-object-report-manifest.json", {"example-reports": b["reports"], "selfheal-checksum-reports/job-f8fb9d89-a3aa-461d-bddc-ea6a1b131955/manifest.json": b["manifest"]})
    gets_before = object_gets(demo, b["data"], healthy)
    bad_gets_before = object_gets(demo, b["data"], b["corrupt"])
    started = time.time()
    out = demo.invoke("restore-object", ev)
    took = time.time() - started
    if isinstance(out, dict) and "error" in out:
        demo.show("manifest.json landed", "failed", f"function returned an error: {out['error']}")
        demo.expect("the report is read", False)
        return
    report = (out.get("reports") or [{}])[0] if isinstance(out, dict) else {}
    summary = report.get("summary", {})
    demo.show(
        "manifest.json landed (S3 event)",
        "acted" if summary.get("restored") else "skipped",
        f"report read in {took:.1f} s: {summary.get('rows')} rows, {summary.get('healthy')} healthy on a HEAD, "
        f"{summary.get('mismatched')} mismatched → restored {summary.get('restored')}, unjudgeable {summary.get('unjudgeable')}, "
        f"files refused {summary.get('files_refused')}; complete={report.get('complete')}",
    )
    s3 = demo.client("s3")
    restored_ok = sum(1 for k in b["corrupt"] if s3.get_object(Bucket=b["data"], Key=k)["Body"].read() == b["good"][k])
    healthy_gets = object_gets(demo, b["data"], healthy) - gets_before
    demo.before_after("objects holding their good bytes", BUCKET_OBJECTS - len(b["corrupt"]), BUCKET_OBJECTS - len(b["corrupt"]) + restored_ok)
    demo.before_after(f"GETs of the {len(healthy)} healthy objects' bytes", 0, healthy_gets)
    demo.expect("every row judged", summary.get("rows") == BUCKET_OBJECTS and report.get("complete") is True)
    demo.expect("exactly the bad objects restored", summary.get("mismatched") == len(b["corrupt"]) and summary.get("restored") == len(b["corrupt"]) and restored_ok == len(b["corrupt"]))
    demo.expect("healthy objects never downloaded", healthy_gets == 0)
    # The same count sees the reads of the mismatched ones (so the 0 above means something).
    demo.expect("the mismatched objects read end to end", object_gets(demo, b["data"], b["corrupt"]) - bad_gets_before >= len(b["corrupt"]))
    again = demo.invoke("restore-object", ev)
    records = again.get("records", again) if isinstance(again, dict) else again
    codes = [r.get("code") for r in records] if isinstance(records, list) else []
    demo.show("the same manifest event delivered again", "skipped", ", ".join(c or "?" for c in codes) or str(again)[:120])
    demo.expect("a redelivered report does nothing", codes == ["already-done"])
    demo.show_notices()


def two_pass(demo, base_env):
    demo.section(f"restore-object at bucket scale: a checksum report over {BUCKET_OBJECTS} objects (issue 16)")
    b = two_pass_setup(demo)
    env = {
        **base_env,
        "SELFHEAL_AUTONOMY": "auto",
        "SELFHEAL_DRY_RUN": "false",
        "SELFHEAL_OPT_IN_TAG": "selfheal:managed=true",
        "SELFHEAL_RESTORE_REPLICA_BUCKETS": f"{b['data']}={b['replica']}",
        "SELFHEAL_RESTORE_REPORT_PREFIXES": f"{b['reports']}/{REPORT_PREFIX}",
        "SELFHEAL_COOLDOWN_SECONDS": "900",
        "SELFHEAL_MAX_ACTIONS_PER_HOUR": "100",
        "SELFHEAL_BREAKER_TARGETS": "100",
    }
    demo.start_runtime("restore-object", env)
    try:
        two_pass_story(demo, b)
    finally:
        demo.stop_runtime()


def main():
    # A terminated demo still stops what it started (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    demo = Demo()
    modules = []
    for fn in FUNCTIONS:
        name = "demo_" + fn.replace("-", "_")
        if os.path.exists(os.path.join(HERE, name + ".py")):
            modules.append((fn, importlib.import_module(name)))
    started = time.time()
    print(f"{BOLD}selfheal demo{RESET} — AWS emulator at {demo.endpoint}; functions run by the Lambda runtime emulator (cargo lambda)")
    print("building the functions (first run compiles the AWS SDK: a few minutes) ...", flush=True)
    demo.build([fn for fn, _ in modules])
    print(f"   {DIM}built in {time.time() - started:.0f} s; function logs in {demo.logdir}{RESET}")
    demo.create_shared()
    env = {
        "AWS_ENDPOINT_URL": demo.endpoint,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        "AWS_SESSION_TOKEN": os.environ.get("AWS_SESSION_TOKEN", "testing"),
        "AWS_REGION": demo.region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "SELFHEAL_LEDGER_TABLE": demo.ledger_table,
        "SELFHEAL_TOPIC_ARN": demo.topic_arn,
        # The stories show the functions acting: every occurrence acts (no first-occurrence
        # dry run, no approval), and dry run is off.
        "SELFHEAL_AUTONOMY": "auto",
        "SELFHEAL_DRY_RUN": "false",
        "RUST_LOG": "warn",
    }
    # Each function gets its own runtime emulator with its own settings, as each Lambda
    # function has its own environment in AWS.
    envs = {}
    for fn, mod in modules:
        envs[fn] = {**env, **(mod.setup(demo) or {})}
    for fn, mod in modules:
        demo.start_runtime(fn, envs[fn])
        try:
            demo.section(mod.TITLE)
            mod.run(demo)
            demo.show_notices()
        finally:
            demo.stop_runtime()
    if "reboot-instance" in dict(modules) and "scale-group" in dict(modules):
        closed_loop(demo, env)
        begun = approvals_begin(demo, env)
    if "restore-object" in dict(modules):
        two_pass(demo, env)
    if "reboot-instance" in dict(modules) and "scale-group" in dict(modules):
        approvals_end(demo, env, begun)
    print(f"\n{DIM}make demo took {time.time() - started:.0f} s (build included){RESET}")
    if demo.failures:
        print(f"\n{RED}{demo.failures} unexpected result(s){RESET}")
        sys.exit(1)
    print(f"\n{GREEN}demo finished{RESET}")


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
