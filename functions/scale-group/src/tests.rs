use super::*;
use selfheal_core::parse_alarms;
use serde_json::json;
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
    assert_eq!(
        (s.sizing, s.target_utilisation),
        (SizingMode::Forecast, 70.0)
    );
    let s = settings(&[
        ("SELFHEAL_SCALE_SIZING", " Severity "),
        ("SELFHEAL_SCALE_TARGET_UTILISATION", "55%"),
    ])
    .unwrap();
    assert_eq!(
        (s.sizing, s.target_utilisation),
        (SizingMode::Severity, 55.0)
    );
    for bad in [
        ("SELFHEAL_SCALE_SIZING", "magic"),
        ("SELFHEAL_SCALE_TARGET_UTILISATION", "0"),
        ("SELFHEAL_SCALE_TARGET_UTILISATION", "-5"),
        ("SELFHEAL_SCALE_TARGET_UTILISATION", "NaN"),
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
    let samples = selfheal_core::samples::for_function(FUNCTION).unwrap();
    for (name, v) in &samples {
        let alarms = parse_alarms(v).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!alarms.is_empty(), "{name}");
    }
    let seen = samples.len();
    assert!(seen >= 7, "expected samples for every shape, found {seen}");
}

/// A forecaster's answer proposing `desired` instances (fit error 0.02), or a fallback.
fn sizing_of(desired: Option<u32>, current: u32) -> ForecastSizing {
    use selfheal_core::forecast::{Fallback, Forecast};
    ForecastSizing {
        desired,
        current_desired: current,
        sized_load: desired.map(|d| f64::from(d) * 70.0),
        target_per_instance: 70.0,
        forecast: desired.map(|d| Forecast {
            values: vec![f64::from(d) * 70.0],
            peak: f64::from(d) * 70.0,
            latest: f64::from(current) * 70.0,
            fit_error: 0.02,
            alpha: 0.2,
            beta: 0.0,
            gamma: 0.1,
            history_steps: 600,
        }),
        fit_error_limit: 0.15,
        fallback: desired.is_none().then_some(Fallback::FitErrorTooHigh {
            error: 0.4,
            limit: 0.15,
        }),
        why: "test".into(),
    }
}

#[test]
fn choose_step_table() {
    use Direction::{In, Out};
    let small = breach_of(72.0, 60.0, Side::Above); // severity: 2 → 3, step 1
    let low = breach_of(9.0, 20.0, Side::Below); // severity in: 6 → 3, step 3
    let severe = breach_of(150.0, 60.0, Side::Above); // severity: 2 → 5, step 3
    let made = |d: Option<u32>, cur| ForecastInput::Made(sizing_of(d, cur));
    let not_made = ForecastInput::NotMade {
        why: "no forecast: boom".into(),
        error: Some("boom".into()),
    };
    // (breach, desired, direction, max_step, forecast) → (method, size, used)
    let cases: Vec<(&Breach, u32, Direction, u32, ForecastInput, &str, u32)> = vec![
        // forecast 10 from 2: +8 bounded to 4
        (&small, 2, Out, 4, made(Some(10), 2), "forecast", 4),
        // forecast 4 from 2: +2 (more than the severity step 1)
        (&small, 2, Out, 4, made(Some(4), 2), "forecast", 2),
        // forecast at or below now: never less than the severity step
        (&small, 2, Out, 4, made(Some(1), 2), "forecast", 1),
        (&severe, 2, Out, 4, made(Some(3), 2), "forecast", 3),
        // fallbacks: the severity step
        (&small, 2, Out, 4, made(None, 2), "severity", 1),
        (&small, 2, Out, 4, not_made.clone(), "severity", 1),
        // scale in down to the forecast, bounded
        (&low, 6, In, 4, made(Some(5), 6), "forecast", 1),
        (&low, 10, In, 4, made(Some(2), 10), "forecast", 4),
        // scale in while the forecast needs what is there: hold (step 0)
        (&low, 6, In, 4, made(Some(6), 6), "forecast", 0),
        (&low, 6, In, 4, made(None, 6), "severity", 3),
    ];
    for (b, desired, dir, max_step, input, method, size) in cases {
        let (step, report) = choose_step(
            Some(b),
            desired,
            dir,
            max_step,
            SizingMode::Forecast,
            &input,
        );
        assert_eq!(
            (step.method, step.size, report.used),
            (method, size, method),
            "{desired} {dir:?} {input:?}: {}",
            step.arithmetic
        );
        match &input {
            ForecastInput::Made(s) => {
                assert_eq!(report.forecast.as_ref(), Some(s));
                assert_eq!(report.fit_error_limit, Some(0.15));
                let want = if s.desired.is_some() { 0.02 } else { 0.4 };
                assert_eq!(report.fit_error, Some(want));
            }
            ForecastInput::NotMade { .. } => {
                assert_eq!(report.error.as_deref(), Some("boom"));
                assert!(
                    report.why.starts_with("severity step: no forecast"),
                    "{}",
                    report.why
                );
            }
        }
    }
    // A held scale-in is a skip that says why.
    let (step, _) = choose_step(
        Some(&low),
        6,
        In,
        4,
        SizingMode::Forecast,
        &made(Some(7), 6),
    );
    let d = decide(&plan_of(In, 4), &group(1, 10, 6), true, &step);
    match d {
        Decision::Skip { reason } => {
            assert_eq!(reason.code, SkipCode::NothingToDo);
            assert!(reason.detail.contains("holding capacity"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn load_query_multiplies_the_average_by_in_service_instances() {
    let a = alarm_of("scale-group-eventbridge.json");
    let q = load_query(&a, "selfheal-sample-asg").unwrap();
    assert_eq!((q.returned.as_str(), q.period), ("selfheal_load", 60));
    let ids: Vec<&str> = q.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["m1", "selfheal_in_service", "selfheal_load"]);
    assert_eq!(
        q.entries[2].expression.as_deref(),
        Some("m1 * selfheal_in_service")
    );
    assert_eq!(
        q.entries[1].name.as_deref(),
        Some("GroupInServiceInstances")
    );
    assert_eq!(
        q.entries[1]
            .dimensions
            .get(GROUP_DIMENSION)
            .map(String::as_str),
        Some("selfheal-sample-asg")
    );
    // The SNS shape's statistic is upper case.
    assert!(load_query(&alarm_of("scale-group-sns.json"), "selfheal-sample-asg").is_ok());
    // Another group's metric, a sum, an expression: no forecast.
    assert!(load_query(&a, "other")
        .unwrap_err()
        .contains("not averaged over group"));
    let sum = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
        "detail": {"alarmName": "a", "state": {"value": "ALARM"}, "previousState": {"value": "OK"},
                   "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/ApplicationELB", "name": "RequestCount", "dimensions": {"AutoScalingGroupName": "g"}}, "period": 60, "stat": "Sum"}}]}}});
    let err = load_query(&parse_alarms(&sum).unwrap()[0], "g").unwrap_err();
    assert!(err.contains("Sum"), "{err}");
    let math = json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
        "detail": {"alarmName": "a", "state": {"value": "ALARM"}, "previousState": {"value": "OK"},
                   "configuration": {"metrics": [
                       {"id": "e1", "expression": "m1 / 2", "returnData": true},
                       {"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": {"AutoScalingGroupName": "g"}}, "period": 60, "stat": "Average"}, "returnData": false}]}}});
    let err = load_query(&parse_alarms(&math).unwrap()[0], "g").unwrap_err();
    assert!(err.contains("expression"), "{err}");
}

#[test]
fn forecast_settings_keep_the_evaluated_defaults_in_time() {
    let five = forecast_settings(300);
    assert_eq!(
        five,
        selfheal_core::forecast::ForecastSettings {
            step_secs: 300,
            ..Default::default()
        }
    );
    let one = forecast_settings(60);
    assert_eq!(
        (
            one.step_secs,
            one.horizon_steps,
            one.holdout_steps,
            one.max_gap_steps
        ),
        (60, 30, 60, 15)
    );
    let w = history_window(
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        10,
    );
    assert_eq!(w.period, 60);
    assert_eq!(w.start.timestamp(), 1_800_000_000 - HISTORY_SECS);
    assert_eq!(w.end.timestamp(), 1_800_000_060);
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
        forecast in proptest::option::of(0u32..200),
    ) {
        let side = if above { Side::Above } else { Side::Below };
        let dir = if out { Direction::Out } else { Direction::In };
        let b = breach_of(metric, threshold, side);
        let severity = severity_step(Some(&b), desired, dir, max_step);
        proptest::prop_assert!((1..=max_step).contains(&severity.size), "{:?}", severity);
        let input = match forecast {
            Some(f) => ForecastInput::Made(sizing_of(Some(f), desired)),
            None => ForecastInput::Made(sizing_of(None, desired)),
        };
        let (step, _) = choose_step(Some(&b), desired, dir, max_step, SizingMode::Forecast, &input);
        // Only a held scale-in has step 0; scaling out never goes below the severity step.
        let least = match (dir, forecast) {
            (Direction::In, Some(f)) if f >= desired => 0,
            (Direction::Out, _) => severity.size,
            _ => 1,
        };
        proptest::prop_assert!((least..=max_step).contains(&step.size), "{:?}", step);
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
            // From within the bounds, no change exceeds the max step.
            if (g.min_size..=g.max_size).contains(&action.from) {
                proptest::prop_assert!(action.to.abs_diff(action.from) <= max_step);
            }
        }
    }
}

/// The handler, with in-memory groups, ledger and history.
mod handler {
    use super::*;
    use selfheal_core::{AwsError, Outcome};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    struct FakeGroups {
        group: Mutex<GroupFacts>,
        set: Mutex<Vec<u32>>,
    }

    #[selfheal_core::ports::groups::async_trait]
    impl Groups for FakeGroups {
        async fn facts(&self, name: &str) -> Result<Option<GroupFacts>, AwsError> {
            let g = self.group.lock().unwrap().clone();
            Ok((g.name == name).then_some(g))
        }
        async fn set_desired(&self, _name: &str, desired: u32) -> Result<(), AwsError> {
            self.set.lock().unwrap().push(desired);
            self.group.lock().unwrap().desired = desired;
            Ok(())
        }
    }

    enum Answer {
        Points(Vec<Point>),
        Fails,
        Hangs,
    }

    struct FakeHistory {
        answer: Answer,
        calls: AtomicUsize,
        queries: Mutex<Vec<(MetricQuery, Vec<Window>)>>,
    }

    #[async_trait::async_trait]
    impl MetricHistory for FakeHistory {
        async fn history(
            &self,
            q: &MetricQuery,
            windows: &[Window],
        ) -> Result<Vec<Point>, AwsError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.queries
                .lock()
                .unwrap()
                .push((q.clone(), windows.to_vec()));
            match &self.answer {
                Answer::Points(p) => Ok(p.clone()),
                Answer::Fails => Err(AwsError::new(
                    "cloudwatch:GetMetricData",
                    "selfheal_load",
                    "throttled",
                )),
                Answer::Hangs => std::future::pending().await,
            }
        }
    }

    /// `days` of load at 1-minute steps (the test alarm's period), `f(step)`.
    fn load(days: i64, f: impl Fn(i64) -> f64) -> Vec<Point> {
        let t0 = 1_800_000_000 - days * 86_400;
        (0..days * 1440)
            .map(|i| Point::new(t0 + i * 60, f(i)))
            .collect()
    }

    /// Deterministic noise in [0, 1).
    fn noise(i: i64) -> f64 {
        let x = (i as u64)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn deps(
        answer: Answer,
        env: &[(&str, &str)],
        min: u32,
        max: u32,
        desired: u32,
    ) -> (Deps, Arc<FakeGroups>, Arc<FakeHistory>) {
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let (common, _) = selfheal_core::testing::common(FUNCTION, env);
        let mut g = group(min, max, desired);
        g.tags.insert("selfheal:managed".into(), "true".into());
        let groups = Arc::new(FakeGroups {
            group: Mutex::new(g),
            set: Mutex::new(Vec::new()),
        });
        let history = Arc::new(FakeHistory {
            answer,
            calls: AtomicUsize::new(0),
            queries: Mutex::new(Vec::new()),
        });
        let mut settings = Settings::from_lookup(lookup).unwrap();
        settings.history_timeout = std::time::Duration::from_millis(50);
        let d = Deps {
            common,
            groups: groups.clone(),
            history: history.clone(),
            settings,
        };
        (d, groups, history)
    }

    /// The test alarm on group `g`: CPU 72 against 60 (the severity step adds 1 to 2).
    fn event(direction: &str, points: &[f64]) -> Value {
        let rd = json!({"threshold": 60.0, "recentDatapoints": points}).to_string();
        let reason = if direction == "in" {
            "Threshold Crossed: datapoints were less than the threshold (60.0)"
        } else {
            "Threshold Crossed: datapoints were greater than the threshold (60.0)"
        };
        json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "detail": {"alarmName": "cpu", "tags": {"selfheal:scale": direction},
                       "state": {"value": "ALARM", "reason": reason, "reasonData": rd},
                       "previousState": {"value": "OK"},
                       "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": {"AutoScalingGroupName": "g"}}, "period": 60, "stat": "Average"}}]}}})
    }

    async fn handle(d: &Deps, ev: Value) -> AuditRecord {
        let r = d
            .handle(ev, Invocation::local(std::time::Duration::from_secs(30)))
            .await
            .unwrap();
        assert_eq!(r.audits.len(), 1);
        r.audits.into_iter().next().unwrap()
    }

    #[tokio::test]
    async fn a_trusted_forecast_sizes_the_step() {
        // A steady 700 instance-percent: 10 instances at 70 %; from 2, bounded to +4.
        let (d, groups, history) = deps(Answer::Points(load(3, |_| 700.0)), &[], 1, 20, 2);
        let rec = handle(&d, event("out", &[72.0])).await;
        assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
        assert_eq!(*groups.set.lock().unwrap(), [6]);
        let s = &rec.details["sizing"];
        assert_eq!(s["used"], "forecast", "{s}");
        assert_eq!(s["setting"], "forecast");
        assert_eq!(s["fit_error"], 0.0);
        assert_eq!(s["fit_error_limit"], 0.15);
        assert_eq!(s["forecast"]["desired"], 10);
        assert_eq!(s["forecast"]["forecast"]["peak"], 700.0);
        assert_eq!(s["history_points"], 3 * 1440);
        assert_eq!(s["load_query"], "m1 * selfheal_in_service");
        assert_eq!(rec.details["step"]["method"], "forecast");
        assert!(
            rec.reason
                .contains("forecast 10 instances: step 8 bounded to 1..=4 = 4"),
            "{}",
            rec.reason
        );
        // One request: 7 days at the alarm's period, the load by metric math.
        assert_eq!(history.calls.load(Ordering::SeqCst), 1);
        let q = history.queries.lock().unwrap();
        let (query, windows) = &q[0];
        assert_eq!(query.returned, "selfheal_load");
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].period, 60);
        assert_eq!(
            windows[0].end.timestamp() - windows[0].start.timestamp(),
            HISTORY_SECS + 60
        );
    }

    #[tokio::test]
    async fn clamping_and_the_step_bound_still_hold_with_a_forecast() {
        // Forecast 10, max step 10 from the alarm tag, MaxSize 8: cut at MaxSize.
        let (d, groups, _) = deps(
            Answer::Points(load(3, |_| 700.0)),
            &[("SELFHEAL_SCALE_MAX_STEP", "10")],
            1,
            8,
            2,
        );
        let rec = handle(&d, event("out", &[72.0])).await;
        assert_eq!(*groups.set.lock().unwrap(), [8]);
        assert_eq!(rec.details["clamped_at"], "MaxSize");
        assert_eq!(rec.details["sizing"]["used"], "forecast");
    }

    #[tokio::test]
    async fn a_scale_in_is_held_when_the_forecast_needs_the_capacity() {
        // 700 instance-percent needs 10; the group has 6: hold, do not remove.
        let (d, groups, _) = deps(Answer::Points(load(3, |_| 700.0)), &[], 1, 20, 6);
        let rec = handle(&d, event("in", &[9.0])).await;
        assert_eq!(rec.decision, Outcome::Skipped, "{rec:?}");
        assert_eq!(rec.code, "nothing-to-do", "{rec:?}");
        assert!(rec.reason.contains("holding capacity"), "{}", rec.reason);
        assert!(groups.set.lock().unwrap().is_empty());
        // A quiet load (140 = 2 instances): down to the forecast, bounded by the max step.
        let (d, groups, _) = deps(Answer::Points(load(3, |_| 140.0)), &[], 1, 20, 10);
        let rec = handle(&d, event("in", &[9.0])).await;
        assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
        assert_eq!(*groups.set.lock().unwrap(), [6]);
    }

    #[tokio::test]
    async fn a_high_fit_error_falls_back_to_the_severity_step() {
        let (d, groups, _) = deps(
            Answer::Points(load(3, |i| 100.0 + 900.0 * noise(i))),
            &[],
            1,
            20,
            2,
        );
        let rec = handle(&d, event("out", &[72.0])).await;
        assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
        // The severity step: ceil(2 × 72/60) = 3.
        assert_eq!(*groups.set.lock().unwrap(), [3]);
        let s = &rec.details["sizing"];
        assert_eq!(s["used"], "severity", "{s}");
        assert_eq!(s["forecast"]["fallback"]["reason"], "fit-error-too-high");
        assert!(s["fit_error"].as_f64().unwrap() > 0.15, "{s}");
        assert!(
            s["why"].as_str().unwrap().contains("severity step instead"),
            "{s}"
        );
        assert_eq!(rec.details["step"]["method"], "severity");
    }

    #[tokio::test]
    async fn too_little_history_falls_back_to_the_severity_step() {
        let (d, groups, _) = deps(Answer::Points(load(1, |_| 700.0)), &[], 1, 20, 2);
        let rec = handle(&d, event("out", &[72.0])).await;
        assert_eq!(*groups.set.lock().unwrap(), [3]);
        let s = &rec.details["sizing"];
        assert_eq!(s["used"], "severity", "{s}");
        assert_eq!(s["forecast"]["fallback"]["reason"], "too-little-history");
    }

    #[tokio::test]
    async fn a_failed_or_slow_fetch_falls_back_to_the_severity_step() {
        for (answer, error) in [
            (Answer::Fails, "throttled"),
            (Answer::Hangs, "did not answer within 50 ms"),
        ] {
            let (d, groups, _) = deps(answer, &[], 1, 20, 2);
            let rec = handle(&d, event("out", &[72.0])).await;
            assert_eq!(rec.decision, Outcome::Acted, "{rec:?}");
            assert_eq!(*groups.set.lock().unwrap(), [3]);
            let s = &rec.details["sizing"];
            assert_eq!(s["used"], "severity", "{s}");
            assert!(s["error"].as_str().unwrap().contains(error), "{s}");
            assert!(
                s["why"]
                    .as_str()
                    .unwrap()
                    .contains("load history could not be read"),
                "{s}"
            );
        }
    }

    #[tokio::test]
    async fn severity_setting_and_groups_that_cannot_change_read_no_history() {
        let (d, groups, history) = deps(
            Answer::Points(load(3, |_| 700.0)),
            &[("SELFHEAL_SCALE_SIZING", "severity")],
            1,
            20,
            2,
        );
        let rec = handle(&d, event("out", &[72.0])).await;
        assert_eq!(*groups.set.lock().unwrap(), [3]);
        assert_eq!(rec.details["sizing"]["used"], "severity");
        assert_eq!(history.calls.load(Ordering::SeqCst), 0);
        // At MaxSize: refused before any history is read.
        let (d, _, history) = deps(Answer::Points(load(3, |_| 700.0)), &[], 1, 2, 2);
        let rec = handle(&d, event("out", &[72.0])).await;
        assert_eq!(rec.code, "at-bound", "{rec:?}");
        assert_eq!(history.calls.load(Ordering::SeqCst), 0);
    }
}
