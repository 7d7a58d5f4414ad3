"""reboot-instance in the demo: a tagged and an untagged instance, alarms in all three shapes."""

import json
import os

TITLE = "reboot-instance: CloudWatch alarm on an EC2 instance → reboot (guarded)"
PLACEHOLDER = "i-0123456789abcdef0"
EVENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "events")

state = {}


def sample(name, instance_id):
    text = open(os.path.join(EVENTS, name)).read()
    # The placeholder also appears inside SNS messages (JSON in a string): plain replace.
    return json.loads(text.replace(PLACEHOLDER, instance_id))


def setup(demo):
    ec2 = demo.client("ec2")

    def run(tags):
        spec = [{"ResourceType": "instance", "Tags": tags}]
        out = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=1, MaxCount=1, TagSpecifications=spec)
        return out["Instances"][0]["InstanceId"]

    state["tagged"] = run([{"Key": "Name", "Value": "web-1"}, {"Key": "selfheal:managed", "Value": "true"}])
    state["untagged"] = run([{"Key": "Name", "Value": "db-1"}])
    return {}


def reboots(demo, iid):
    return len(demo.requests("Action=RebootInstances", f"InstanceId.1={iid}"))


def run(demo):
    tagged, untagged = state["tagged"], state["untagged"]
    demo.say(f"web-1 {tagged} carries selfheal:managed=true; db-1 {untagged} does not")

    before = reboots(demo, tagged)
    r = demo.invoke("reboot-instance", sample("reboot-instance-eventbridge.json", tagged))
    demo.show_audits("EventBridge alarm web-1-cpu-high ALARM", r)
    demo.before_after(f"RebootInstances calls for {tagged}", before, reboots(demo, tagged))
    demo.expect("first alarm reboots web-1", isinstance(r, list) and r and r[0]["decision"] == "acted")

    r = demo.invoke("reboot-instance", sample("reboot-instance-sns.json", tagged))
    demo.show_audits("SNS alarm web-1-cpu-high ALARM (again)", r, "no reboot: inside the 15 min cooldown")
    demo.expect("second alarm refused by cooldown", isinstance(r, list) and r and r[0]["code"] == "cooldown")

    r = demo.invoke("reboot-instance", sample("reboot-instance-lambda-action.json", untagged))
    demo.show_audits("Lambda alarm action on db-1 ALARM", r, f"RebootInstances calls for {untagged}: {reboots(demo, untagged)}")
    demo.expect("untagged instance refused", isinstance(r, list) and r and r[0]["code"] == "not-opted-in")

    r = demo.invoke("reboot-instance", sample("reboot-instance-ok.json", tagged))
    demo.show_audits("EventBridge alarm back to OK", r)
    r = demo.invoke("reboot-instance", sample("reboot-instance-composite.json", tagged))
    demo.show_audits("composite alarm", r)
    r = demo.invoke("reboot-instance", {"hello": "not an alarm"})
    demo.show_audits("malformed event", r, "rejected with a clear error; in AWS the on-failure destination keeps it")
    demo.expect("malformed event rejected", isinstance(r, dict) and "error" in r)
