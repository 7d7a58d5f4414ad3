use super::*;
use selfheal::parse_alarms;
use std::collections::HashMap;

fn sample(name: &str) -> Value {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn alarm_of(name: &str) -> Alarm {
    parse_alarms(&sample(name)).unwrap().remove(0)
}

/// An EventBridge alarm with the given state change, dimensions, tags and datapoints.
fn alarm(state: &str, prev: &str, dims: Value, tags: Value, points: &[f64]) -> Alarm {
    let rd = json!({"threshold": 60.0, "recentDatapoints": points}).to_string();
    let ev = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
        "detail": {"alarmName": "cpu-high", "tags": tags,
                   "state": {"value": state, "reason": "Threshold Crossed: datapoints were greater than the threshold (60.0)", "reasonData": rd},
                   "previousState": {"value": prev},
                   "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": dims}}}]}}});
    parse_alarms(&ev).unwrap().remove(0)
}

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(|k| m.get(k).cloned())
}

fn group(min: u32, max: u32, desired: u32) -> GroupFacts {
    GroupFacts {
        name: "g".into(),
        min_size: min,
        max_size: max,
        desired,
        tags: BTreeMap::new(),
        activities_in_progress: Vec::new(),
    }
}

fn plan_of(direction: Direction, max_step: u32) -> Plan {
    Plan {
        group: "g".into(),
        group_from: Source::Dimension,
        direction,
        direction_from: Source::Default,
        max_step,
    }
}

fn step_of(size: u32) -> Step {
    Step {
        method: "severity",
        size,
        max_step: size.max(1),
        proposed: None,
        breach: None,
        arithmetic: format!("step {size}"),
    }
}

fn breach_of(metric: f64, threshold: f64, side: Side) -> Breach {
    Breach {
        metric,
        datapoints: vec![metric],
        threshold,
        side,
        side_from: "comparison",
    }
}

fn code<A: std::fmt::Debug>(d: &Decision<A>) -> Option<SkipCode> {
    match d {
        Decision::Skip { reason } => Some(reason.code),
        Decision::Act { .. } => None,
    }
}

#[test]
fn settings_defaults_and_errors() {
    let s = settings(&[]).unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.max_step, 4);
    let s = settings(&[
        ("SELFHEAL_SCALE_MAX_STEP", "2"),
        (
            "SELFHEAL_SCALE_GROUPS",
            "queue-deep = workers , api-slow=api",
        ),
        ("SELFHEAL_SCALE_RULES", "cpu-low=in:1,queue-deep=out"),
    ])
    .unwrap();
    assert_eq!(s.max_step, 2);
    assert_eq!(
        s.groups.get("queue-deep").map(String::as_str),
        Some("workers")
    );
    assert_eq!(s.groups.get("api-slow").map(String::as_str), Some("api"));
    assert_eq!(
        s.rules.get("cpu-low"),
        Some(&ScaleRule {
            direction: Direction::In,
            max_step: Some(1)
        })
    );
    for bad in [
        ("SELFHEAL_SCALE_MAX_STEP", "0"),
        ("SELFHEAL_SCALE_MAX_STEP", "-1"),
        ("SELFHEAL_SCALE_GROUPS", "no-equals-sign"),
        ("SELFHEAL_SCALE_GROUPS", "a="),
        ("SELFHEAL_SCALE_RULES", "a=sideways"),
        ("SELFHEAL_SCALE_RULES", "a=out:0"),
    ] {
        assert!(settings(&[bad]).is_err(), "{bad:?}");
    }
}

#[test]
fn scale_rules_parse() {
    let r = |d, s| {
        Some(ScaleRule {
            direction: d,
            max_step: s,
        })
    };
    assert_eq!(ScaleRule::parse("out"), r(Direction::Out, None));
    assert_eq!(ScaleRule::parse(" IN "), r(Direction::In, None));
    assert_eq!(ScaleRule::parse("scale-out:3"), r(Direction::Out, Some(3)));
    assert_eq!(ScaleRule::parse("down: 2"), r(Direction::In, Some(2)));
    for bad in ["", "left", "out:", "out:x", "in:0", "in:-1"] {
        assert_eq!(ScaleRule::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn plan_table() {
    let s = settings(&[
        ("SELFHEAL_SCALE_GROUPS", "cpu-high=mapped"),
        ("SELFHEAL_SCALE_RULES", "cpu-high=in:2"),
    ])
    .unwrap();
    let dim = json!({"AutoScalingGroupName": "from-dim"});
    let none = json!({});
    let p = plan(
        &alarm("ALARM", "OK", dim.clone(), none.clone(), &[70.0]),
        &s,
    )
    .unwrap();
    assert_eq!(
        (
            p.group.as_str(),
            p.group_from,
            p.direction,
            p.direction_from,
            p.max_step
        ),
        (
            "from-dim",
            Source::Dimension,
            Direction::In,
            Source::Setting,
            2
        )
    );
    // The tag beats the setting, the dimension beats the tag.
    let tags = json!({"selfheal:group": "from-tag", "selfheal:scale": "out"});
    let p = plan(&alarm("ALARM", "OK", none.clone(), tags.clone(), &[]), &s).unwrap();
    assert_eq!(
        (p.group.as_str(), p.group_from, p.direction, p.max_step),
        ("from-tag", Source::AlarmTag, Direction::Out, 4)
    );
    let p = plan(&alarm("ALARM", "OK", dim.clone(), tags, &[]), &s).unwrap();
    assert_eq!(p.group, "from-dim");
    let p = plan(&alarm("ALARM", "OK", none.clone(), none.clone(), &[]), &s).unwrap();
    assert_eq!(
        (p.group.as_str(), p.group_from),
        ("mapped", Source::Setting)
    );
    // Default: scale out, settings' max step.
    let d = Settings::default();
    let p = plan(
        &alarm("ALARM", "INSUFFICIENT_DATA", dim.clone(), none.clone(), &[]),
        &d,
    )
    .unwrap();
    assert_eq!(
        (p.direction, p.direction_from, p.max_step),
        (Direction::Out, Source::Default, 4)
    );
    // Refusals.
    let cases = [
        (
            alarm("OK", "ALARM", dim.clone(), none.clone(), &[]),
            SkipCode::NotAlarmTransition,
        ),
        (
            alarm("ALARM", "ALARM", dim.clone(), none.clone(), &[]),
            SkipCode::NotAlarmTransition,
        ),
        (
            alarm("INSUFFICIENT_DATA", "OK", dim.clone(), none.clone(), &[]),
            SkipCode::NotAlarmTransition,
        ),
        (
            alarm("ALARM", "OK", none.clone(), none.clone(), &[]),
            SkipCode::NoTarget,
        ),
        (
            alarm(
                "ALARM",
                "OK",
                json!({"AutoScalingGroupName": "  "}),
                none.clone(),
                &[],
            ),
            SkipCode::NoTarget,
        ),
        (
            alarm(
                "ALARM",
                "OK",
                dim,
                json!({"selfheal:scale": "sideways"}),
                &[],
            ),
            SkipCode::NoTarget,
        ),
    ];
    for (a, want) in cases {
        assert_eq!(plan(&a, &d).map_err(|r| r.code).err(), Some(want), "{a:?}");
    }
    let ok = plan(&alarm("OK", "ALARM", json!({}), json!({}), &[]), &d).unwrap_err();
    assert!(ok.detail.contains("recovery does not resize"), "{ok}");
}

#[test]
fn breach_from_every_shape() {
    for (name, metric, threshold, side, from) in [
        (
            "scale-group-eventbridge.json",
            72.0,
            60.0,
            Side::Above,
            "reason",
        ),
        (
            "scale-group-lambda-action.json",
            72.0,
            60.0,
            Side::Above,
            "reason",
        ),
        (
            "scale-group-sns.json",
            72.0,
            60.0,
            Side::Above,
            "comparison",
        ),
        (
            "scale-group-eventbridge-severe.json",
            150.0,
            60.0,
            Side::Above,
            "reason",
        ),
        (
            "scale-group-scale-in.json",
            9.0,
            20.0,
            Side::Below,
            "reason",
        ),
    ] {
        let b = breach(&alarm_of(name)).unwrap_or_else(|| panic!("{name}: no breach"));
        assert_eq!(
            (b.metric, b.threshold, b.side, b.side_from),
            (metric, threshold, side, from),
            "{name}"
        );
    }
}

#[test]
fn breach_of_an_anomaly_band_uses_the_band() {
    let rd = json!({"recentDatapoints": [300.0], "recentUpperThresholds": [200.0], "recentLowerThresholds": [50.0]}).to_string();
    let ev = json!({"detail-type": "CloudWatch Alarm State Change",
        "detail": {"alarmName": "ad", "state": {"value": "ALARM", "reason": "Thresholds Crossed", "reasonData": rd},
                   "configuration": {"metrics": [{"id": "ad1", "expression": "ANOMALY_DETECTION_BAND(m1, 2)"}]}}});
    let b = breach(&parse_alarms(&ev).unwrap()[0]).unwrap();
    assert_eq!((b.metric, b.threshold, b.side), (300.0, 200.0, Side::Above));
    // No datapoints → no breach.
    assert!(breach(&alarm("ALARM", "OK", json!({}), json!({}), &[])).is_none());
}

#[test]
fn severity_step_table() {
    use Direction::{In, Out};
    use Side::{Above, Below};
    // (metric, threshold, side, desired, direction, max_step) → (size, proposed)
    type Case = (f64, f64, Side, u32, Direction, u32, u32, Option<u64>);
    let cases: &[Case] = &[
        // small breach: 2 × 72/60 = 2.4 → 3
        (72.0, 60.0, Above, 2, Out, 4, 1, Some(3)),
        // large breach: 2 × 150/60 = 5 → 5
        (150.0, 60.0, Above, 2, Out, 4, 3, Some(5)),
        // larger than the max step: 4 × 2.5 = 10 → +6, bounded to 4
        (150.0, 60.0, Above, 4, Out, 4, 4, Some(10)),
        // floating point: 10 × 99/90 is 11.000000000000002 → 11, not 12
        (99.0, 90.0, Above, 10, Out, 4, 1, Some(11)),
        // at (or under) the threshold still moves by one
        (60.0, 60.0, Above, 3, Out, 4, 1, Some(3)),
        // empty group: ceil(0 × s) = 0 → at least 1
        (120.0, 60.0, Above, 0, Out, 4, 1, Some(0)),
        // below-threshold alarm scaling out (e.g. healthy hosts too low): 4 × 10/5 = 8
        (5.0, 10.0, Below, 4, Out, 8, 4, Some(8)),
        // scale in: 6 / (20/9) = 2.7 → 3, i.e. remove 3
        (9.0, 20.0, Below, 6, In, 4, 3, Some(3)),
        // scale in, bounded
        (2.0, 20.0, Below, 10, In, 4, 4, Some(1)),
        // scale in on no traffic at all: as severe as it gets
        (0.0, 20.0, Below, 10, In, 4, 4, Some(0)),
    ];
    for &(metric, threshold, side, desired, dir, max_step, size, proposed) in cases {
        let b = breach_of(metric, threshold, side);
        let s = severity_step(Some(&b), desired, dir, max_step);
        assert_eq!(
            (s.size, s.proposed),
            (size, proposed),
            "{metric} vs {threshold} {side:?}, desired {desired} {dir:?}: {}",
            s.arithmetic
        );
        assert!(s.arithmetic.contains("bounded to 1..="), "{}", s.arithmetic);
    }
    // No numbers, or numbers that cannot be compared proportionally: step 1.
    let s = severity_step(None, 5, Out, 4);
    assert_eq!((s.size, s.proposed), (1, None));
    let s = severity_step(Some(&breach_of(5.0, 0.0, Above)), 5, Out, 4);
    assert_eq!(s.size, 1);
    assert!(
        s.arithmetic.contains("cannot be compared"),
        "{}",
        s.arithmetic
    );
    let s = severity_step(Some(&breach_of(-5.0, 10.0, Above)), 5, Out, 4);
    assert_eq!(s.size, 1);
}

#[test]
fn severity_arithmetic_reads_well() {
    let b = breach_of(150.0, 60.0, Side::Above);
    let s = severity_step(Some(&b), 2, Direction::Out, 4);
    assert_eq!(
        s.arithmetic,
        "metric 150 (mean of [150.0]) above threshold 60: severity 150 / 60 = 2.50; \
         ceil(2 × 2.50) = 5; step 3 bounded to 1..=4 = 3"
    );
}

#[test]
fn decide_table() {
    use Direction::{In, Out};
    // (min, max, desired, direction, step) → Ok((to, clamped)) or Err(code)
    type Case = (
        u32,
        u32,
        u32,
        Direction,
        u32,
        Result<(u32, Option<&'static str>), SkipCode>,
    );
    let cases: &[Case] = &[
        (1, 10, 2, Out, 1, Ok((3, None))),
        (1, 10, 2, Out, 3, Ok((5, None))),
        (1, 5, 4, Out, 3, Ok((5, Some("MaxSize")))),
        (1, 5, 5, Out, 1, Err(SkipCode::AtBound)),
        // desired above max (the emulator allows it; AWS does not): still exhausted
        (1, 5, 7, Out, 1, Err(SkipCode::AtBound)),
        (2, 10, 6, In, 3, Ok((3, None))),
        (2, 10, 3, In, 3, Ok((2, Some("MinSize")))),
        (2, 10, 2, In, 1, Err(SkipCode::AtBound)),
        // desired below min: scaling out lands inside the bounds
        (3, 10, 1, Out, 1, Ok((3, Some("MinSize")))),
        // desired above max, scaling in: comes back within bounds
        (1, 5, 9, In, 1, Ok((5, Some("MaxSize")))),
        (5, 3, 4, Out, 1, Err(SkipCode::TargetNotEligible)),
    ];
    for &(min, max, desired, dir, size, want) in cases {
        let d = decide(
            &plan_of(dir, 4),
            &group(min, max, desired),
            true,
            &step_of(size),
        );
        let got = match &d {
            Decision::Act { action, .. } => Ok((action.to, action.clamped_at)),
            Decision::Skip { reason } => Err(reason.code),
        };
        assert_eq!(
            got, want,
            "[{min},{max}] desired {desired} {dir:?} step {size}: {d:?}"
        );
    }
}

#[test]
fn decide_refuses_unmanaged_and_busy_groups_first() {
    let step = step_of(1);
    let at_max = group(1, 3, 3);
    // Not managed: refused even at MaxSize, so nobody is paged about a group not ours.
    let d = decide(&plan_of(Direction::Out, 4), &at_max, false, &step);
    assert_eq!(code(&d), Some(SkipCode::NotOptedIn));
    let mut busy = group(1, 10, 2);
    busy.activities_in_progress = vec!["a-1 (InProgress): Launching a new EC2 instance".into()];
    let d = decide(&plan_of(Direction::Out, 4), &busy, true, &step);
    assert_eq!(code(&d), Some(SkipCode::ChangeInProgress));
    match d {
        Decision::Skip { reason } => assert!(reason.detail.contains("a-1"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_a_scale_out_at_max_escalates() {
    let out = plan_of(Direction::Out, 4);
    let inn = plan_of(Direction::In, 4);
    let Decision::Skip { reason } = decide(&out, &group(1, 3, 3), true, &step_of(2)) else {
        panic!("expected a skip")
    };
    assert!(capacity_exhausted(&out, &reason));
    assert!(reason.detail.contains("capacity exhausted"), "{reason}");
    let Decision::Skip { reason } = decide(&inn, &group(1, 3, 1), true, &step_of(2)) else {
        panic!("expected a skip")
    };
    assert!(!capacity_exhausted(&inn, &reason));
    let cooldown = SkipReason::new(SkipCode::Cooldown, "x");
    assert!(!capacity_exhausted(&out, &cooldown));
}

#[test]
fn act_reason_carries_the_arithmetic() {
    let a = alarm_of("scale-group-eventbridge-severe.json");
    let p = plan(&a, &Settings::default()).unwrap();
    let g = group(1, 10, 2);
    let step = severity_step(breach(&a).as_ref(), g.desired, p.direction, p.max_step);
    match decide(&p, &g, true, &step) {
        Decision::Act { action, reason } => {
            assert_eq!((action.from, action.to), (2, 5));
            assert!(
                reason.starts_with("scale out g 2 → 5: metric 150"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_sample_event_for_this_function_parses() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("scale-group-") {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let alarms = parse_alarms(&v).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!alarms.is_empty(), "{name}");
        seen += 1;
    }
    assert!(seen >= 7, "expected samples for every shape, found {seen}");
}

proptest::proptest! {
    /// Whatever the numbers, the step is within 1..=max_step and a resize stays within the
    /// group's bounds and moves in the asked direction.
    #[test]
    fn resizes_stay_within_bounds(
        metric in proptest::num::f64::ANY,
        threshold in proptest::num::f64::ANY,
        above in proptest::bool::ANY,
        out in proptest::bool::ANY,
        min in 0u32..50, span in 0u32..50, desired in 0u32..120, max_step in 1u32..10,
    ) {
        let side = if above { Side::Above } else { Side::Below };
        let dir = if out { Direction::Out } else { Direction::In };
        let b = breach_of(metric, threshold, side);
        let step = severity_step(Some(&b), desired, dir, max_step);
        proptest::prop_assert!((1..=max_step).contains(&step.size), "{:?}", step);
        let g = group(min, min + span, desired);
        if let Decision::Act { action, .. } = decide(&plan_of(dir, max_step), &g, true, &step) {
            proptest::prop_assert!(action.to >= g.min_size && action.to <= g.max_size);
            match dir {
                Direction::Out => proptest::prop_assert!(action.to > action.from),
                Direction::In => proptest::prop_assert!(action.to < action.from),
            }
            if action.clamped_at.is_none() {
                proptest::prop_assert_eq!(action.to.abs_diff(action.from), step.size);
            }
        }
    }
}
