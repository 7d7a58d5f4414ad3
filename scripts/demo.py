#!/usr/bin/env python3
"""make demo: every selfheal function, run through the Lambda runtime emulator (cargo lambda)
against the local AWS emulator (moto), with what happened shown before and after.

Run by `make demo` inside scripts/with-moto.sh, which starts moto and exports AWS_ENDPOINT_URL
and fake credentials. Each function has a module scripts/demo_<function>.py with
  TITLE, setup(demo) -> dict of env vars, run(demo)
"""

import base64
import datetime
import importlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FUNCTIONS = ["reboot-instance", "restore-object", "replay-transactions", "scale-group"]

BOLD, DIM, GREEN, YELLOW, RED, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[33m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 6
)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Demo:
    def __init__(self):
        self.endpoint = os.environ["AWS_ENDPOINT_URL"]
        self.region = os.environ.get("AWS_REGION", "us-east-1")
        self.port = None
        self.watch = None
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
        cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason="selfheal demo")

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

    # ---- the Lambda runtime emulator ---------------------------------------------------
    def start_runtime(self, env):
        env_file = os.path.join(tempfile.mkdtemp(prefix="selfheal-demo-"), "functions.env")
        with open(env_file, "w") as f:
            for k, v in sorted(env.items()):
                # Quoted: values such as `src=replica` or URLs trip the unquoted syntax.
                f.write(f'{k}="{v}"\n')
        self.port = free_port()
        self.watch_log = open(os.path.join(os.path.dirname(env_file), "watch.log"), "w")
        self.watch = subprocess.Popen(
            ["cargo", "lambda", "watch", "--locked", "--quiet", "--ignore-changes", "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port), "--env-file", env_file],
            cwd=ROOT,
            stdout=self.watch_log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.watch.poll() is not None:
                    raise SystemExit("cargo lambda watch exited; see " + self.watch_log.name)
                time.sleep(0.1)
        raise SystemExit("cargo lambda watch did not start")

    def stop_runtime(self):
        if self.watch and self.watch.poll() is None:
            self.watch.terminate()
            try:
                self.watch.wait(10)
            except subprocess.TimeoutExpired:
                self.watch.kill()

    def invoke(self, function, event):
        """Invokes `function` through the Lambda runtime emulator; returns its parsed response
        (or {"error": ...} when the function returned an error)."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(event, f)
        try:
            out = subprocess.run(
                ["cargo", "lambda", "invoke", function, "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port), "--data-file", f.name],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
            )
        finally:
            os.unlink(f.name)
        if out.returncode != 0:
            # cargo lambda prints "Error: TYPE", then the message in a box, then a banner.
            text = out.stderr or out.stdout
            lines = [l.strip(" ×│╰─▶├") for l in text.splitlines()]
            lines = [l for l in lines if l and "Was this behavior unexpected" not in l and "Start a thread" not in l]
            return {"error": " ".join(lines) or "unknown error"}
        try:
            return json.loads(out.stdout)
        except ValueError:
            return {"error": out.stdout.strip()}

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


def main():
    demo = Demo()
    modules = []
    for fn in FUNCTIONS:
        name = "demo_" + fn.replace("-", "_")
        if os.path.exists(os.path.join(HERE, name + ".py")):
            modules.append((fn, importlib.import_module(name)))
    print(f"{BOLD}selfheal demo{RESET} — AWS emulator at {demo.endpoint}; functions run by the Lambda runtime emulator (cargo lambda)")
    print("building the functions (first run compiles the AWS SDK: a few minutes) ...", flush=True)
    packages = [arg for fn, _ in modules for arg in ("-p", fn)]
    subprocess.run(["cargo", "build", "--quiet", "--locked", "--bins", *packages], cwd=ROOT, check=True)
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
        "RUST_LOG": "warn",
    }
    # Each function gets its own runtime emulator with its own settings, as each Lambda
    # function has its own environment in AWS.
    envs = {}
    for fn, mod in modules:
        envs[fn] = {**env, **(mod.setup(demo) or {})}
    for fn, mod in modules:
        demo.start_runtime(envs[fn])
        try:
            demo.section(mod.TITLE)
            mod.run(demo)
        finally:
            demo.stop_runtime()
    demo.section("notifications sent to the operators' topic")
    for subject, msg in demo.notices():
        reason = msg.get("reason", "") if isinstance(msg, dict) else str(msg)
        print(f" ✉ {subject} — {reason[:110]}")
    if demo.failures:
        print(f"\n{RED}{demo.failures} unexpected result(s){RESET}")
        sys.exit(1)
    print(f"\n{GREEN}demo finished{RESET}")


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
