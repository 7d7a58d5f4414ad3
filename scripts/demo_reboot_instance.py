"""reboot-instance in the demo: a tagged and an untagged instance, alarms in all three shapes,
and the rules that keep a reboot for the alarms that ask for it."""

import json
import os

TITLE = "reboot-instance: CloudWatch alarm on an EC2 instance → reboot (guarded)"
PLACEHOLDER = "i-0123456789abcdef0"
EVENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "events")

state = {}


def sample(demo, name, instance_id):
    text = open(os.path.join(EVENTS, name)).read()
    # The placeholder also appears inside SNS messages (JSON in a string): plain replace.
    return demo.fresh(json.loads(text.replace(PLACEHOLDER, instance_id)))


def setup(demo):
    ec2 = demo.client("ec2")

    def run(tags):
        spec = [{"ResourceType": "instance", "Tags": tags}]
        out = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=1, MaxCount=1, TagSpecifications=spec)
        return out["Instances"][0]["InstanceId"]

    state["tagged"] = run([{"Key": "Name", "Value": "web-1"}, {"Key": "selfheal:managed", "Value": "true"}])
    state["untagged"] = run([{"Key": "Name", "Value": "db-1"}])
    # The samples' alarms, as they exist in CloudWatch: a status-check alarm (on the default
    # allowlist of metrics that ask for a reboot) and a CPU alarm (which does not ask).
    demo.alarm("web-1-status-checks", "AWS/EC2", "StatusCheckFailed_Instance", {"InstanceId": state["tagged"]})
    demo.alarm("web-1-cpu-high", "AWS/EC2", "CPUUtilization", {"InstanceId": state["tagged"]}, threshold=90.0)
    # The demo tags an alarm a moment after the function read its tags: read them every time
    # (in production they are cached for 5 minutes).
    return {"SELFHEAL_ALARM_TAG_CACHE_SECONDS": "0"}


def reboots(demo, iid):
    return len(demo.requests("Action=RebootInstances", f"InstanceId.1={iid}"))


def first(r):
    return r[0] if isinstance(r, list) and r else {}


def run(demo):
    tagged, untagged = state["tagged"], state["untagged"]
    demo.say(f"web-1 {tagged} carries selfheal:managed=true; db-1 {untagged} does not")

    before = reboots(demo, tagged)
    r = demo.invoke("reboot-instance", sample(demo, "reboot-instance-eventbridge-metric-math.json", tagged))
    demo.show_audits("EventBridge status-check alarm web-1-status-checks ALARM", r)
    demo.before_after(f"RebootInstances calls for {tagged}", before, reboots(demo, tagged))
    demo.expect("a failed status check reboots web-1", first(r).get("decision") == "acted")

    r = demo.invoke("reboot-instance", sample(demo, "reboot-instance-sns.json", tagged))
    demo.show_audits("SNS alarm web-1-cpu-high ALARM (CPU above 90 %)", r, "no reboot: a busy server is not a broken one")
    demo.expect("a CPU alarm does not ask for a reboot", first(r).get("code") == "not-requested")

    demo.client("cloudwatch").tag_resource(
        ResourceARN="arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-1-cpu-high",
        Tags=[{"Key": "selfheal:reboot", "Value": "true"}],
    )
    demo.say("an operator opts the CPU alarm in: tag selfheal:reboot=true on the alarm")
    r = demo.invoke("reboot-instance", sample(demo, "reboot-instance-eventbridge.json", tagged))
    demo.show_audits("EventBridge alarm web-1-cpu-high ALARM", r, "no reboot: inside the 15 min cooldown")
    demo.expect("the opted-in alarm meets the cooldown", first(r).get("code") == "cooldown")

    r = demo.invoke("reboot-instance", sample(demo, "reboot-instance-lambda-action-metric-math.json", untagged))
    demo.show_audits("Lambda alarm action on db-1 ALARM", r, f"RebootInstances calls for {untagged}: {reboots(demo, untagged)}")
    demo.expect("untagged instance refused", first(r).get("code") in ("not-opted-in", "alarm-cleared"))

    stale = json.loads(open(os.path.join(EVENTS, "reboot-instance-eventbridge-metric-math.json")).read().replace(PLACEHOLDER, tagged))
    r = demo.invoke("reboot-instance", stale)
    demo.show_audits("the same alarm event, delivered days late", r)
    demo.expect("a stale event is not acted on", first(r).get("code") == "stale-event")

    r = demo.invoke("reboot-instance", sample(demo, "reboot-instance-ok.json", tagged))
    demo.show_audits("EventBridge alarm back to OK", r)
    r = demo.invoke("reboot-instance", sample(demo, "reboot-instance-composite.json", tagged))
    demo.show_audits("composite alarm", r)
    r = demo.invoke("reboot-instance", {"hello": "not an alarm"})
    demo.show_audits("malformed event", r, "rejected with a clear error; in AWS the on-failure destination keeps it")
    demo.expect("malformed event rejected", isinstance(r, dict) and "error" in r)
