"""Demo: scale-group grows an Auto Scaling group under a CPU alarm, by how bad the breach is
(forecast sizing falls back to this: the emulator has no metric history), and refuses (and
escalates) once the group is at its maximum."""

import json
import os
import time

TITLE = "scale-group: an alarm grows a group by the breach's severity, up to its MaxSize"

EVENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "events")
PLACEHOLDER = "selfheal-sample-asg"

# Filled by setup(): the group the demo resizes.
_state = {}


def _event(demo, sample, group):
    with open(os.path.join(EVENTS, sample)) as f:
        # The placeholder also appears inside the SNS message (JSON in a string): a plain
        # text replacement reaches both. Sent now: older alarm events are not acted on.
        return demo.fresh(json.loads(f.read().replace(PLACEHOLDER, group)))


def _desired(demo, group):
    out = demo.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return out["AutoScalingGroups"][0]["DesiredCapacity"]


def setup(demo):
    suffix = str(int(time.time()))
    template = "selfheal-demo-web-" + suffix
    group = "selfheal-demo-web-" + suffix
    demo.client("ec2").create_launch_template(
        LaunchTemplateName=template,
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )
    demo.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateName": template, "Version": "$Latest"},
        MinSize=1,
        MaxSize=6,
        DesiredCapacity=2,
        AvailabilityZones=["us-east-1a"],
        Tags=[
            {
                "ResourceId": group,
                "ResourceType": "auto-scaling-group",
                "Key": "selfheal:managed",
                "Value": "true",
                "PropagateAtLaunch": False,
            }
        ],
    )
    _state["group"] = group
    # The samples' alarm as it exists in CloudWatch: CPU above its threshold, in ALARM. The
    # function acts only while it is, and scales the way its comparison says (above: out).
    demo.alarm("web-asg-cpu-high", "AWS/EC2", "CPUUtilization", {"AutoScalingGroupName": group}, threshold=60.0)
    # No cooldown, so that the demo can show three alarms in a row.
    return {"SELFHEAL_COOLDOWN_SECONDS": "0"}


def _show(demo, trigger, records, effect):
    if isinstance(records, dict) and "error" in records:
        demo.show(trigger, "failed", f"function returned an error: {records['error']}", effect)
        return
    for r in records if isinstance(records, list) else [records]:
        # The arithmetic follows the action in the reason; it is printed on its own line.
        reason = (r.get("reason") or "").split(": metric ")[0]
        demo.show(trigger, r.get("decision", "?"), reason, effect)


def _first(records):
    return records[0] if isinstance(records, list) and records else {}


def run(demo):
    group = _state["group"]
    demo.say(f"Group {group}: MinSize 1, MaxSize 6, desired 2, tagged selfheal:managed=true.")

    steps = [
        ("CPU at 2.5x its threshold (EventBridge)", "scale-group-eventbridge-severe.json"),
        ("CPU still at 2.5x (EventBridge)", "scale-group-eventbridge-severe.json"),
        ("CPU at 1.2x its threshold (SNS)", "scale-group-sns.json"),
    ]
    outcomes = []
    for trigger, sample in steps:
        before = _desired(demo, group)
        records = demo.invoke("scale-group", _event(demo, sample, group))
        after = _desired(demo, group)
        first = _first(records)
        details = first.get("details", {})
        if first.get("decision") == "acted":
            effect = f"desired {before} -> {after}"
            if details.get("clamped_at"):
                effect += f" (cut at {details['clamped_at']})"
        elif details.get("escalate"):
            effect = "refused at MaxSize; operator notified (capacity exhausted)"
        else:
            effect = "nothing changed"
        _show(demo, trigger, records, effect)
        step = details.get("step", {})
        if step.get("arithmetic"):
            demo.say("sizing: " + step["arithmetic"])
        sizing = details.get("sizing", {})
        if sizing.get("why"):
            # The emulator holds no metric history: forecast sizing falls back, and says so.
            demo.say(f"sized by {sizing.get('used', '?')}: {sizing['why']}")
        demo.before_after(f"{group} desired capacity", before, after)
        outcomes.append((first.get("code"), after))

    demo.expect("a severe breach grows the group by 3 (2 -> 5)", outcomes[0] == ("acted", 5))
    demo.expect("the next step is cut at MaxSize 6", outcomes[1] == ("acted", 6))
    demo.expect("at MaxSize the alarm is refused", outcomes[2] == ("at-bound", 6))

    records = demo.invoke("scale-group", _event(demo, "scale-group-ok.json", group))
    _show(demo, "alarm recovers (ALARM -> OK)", records, "no scale-in by itself")
    demo.expect("recovery does not resize", _first(records).get("code") == "not-alarm-transition")
