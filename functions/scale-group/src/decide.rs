//! Resize or not, from the plan, the group's facts and the sized step ([`decide`]), and which
//! refusals an operator must hear about ([`capacity_exhausted`]). Pure.

use serde::Serialize;

use selfheal_core::ports::groups::GroupFacts;
use selfheal_core::{Decision, SkipCode, SkipReason};

use crate::plan::Plan;
use crate::settings::Direction;
use crate::severity::Step;

/// The action: set this group's desired capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resize {
    pub group: String,
    pub direction: Direction,
    pub from: u32,
    pub to: u32,
    /// `MaxSize` or `MinSize` when the step was cut to stay within the group's bounds.
    pub clamped_at: Option<&'static str>,
}

/// Resize or not, from the plan, the group's facts and the sized step. `managed` says whether
/// the group carries the opt-in tag: an unmanaged group is refused before anything else, so
/// nobody is paged about a group this function does not look after.
pub fn decide(plan: &Plan, group: &GroupFacts, managed: bool, step: &Step) -> Decision<Resize> {
    if let Some(reason) = ineligible(group, managed) {
        return Decision::Skip { reason };
    }
    let (name, from, min, max) = (&group.name, group.desired, group.min_size, group.max_size);
    let wanted = match wanted(plan.direction, group, step) {
        Ok(w) => w,
        Err(reason) => return Decision::Skip { reason },
    };
    let to = wanted.clamp(min, max);
    if to == from {
        return Decision::skip(
            SkipCode::NothingToDo,
            format!("group {name} is already at {from} within [{min}, {max}]"),
        );
    }
    let clamped_at = match wanted.cmp(&to) {
        std::cmp::Ordering::Greater => Some("MaxSize"),
        std::cmp::Ordering::Less => Some("MinSize"),
        std::cmp::Ordering::Equal => None,
    };
    let bound = clamped_at
        .map(|b| format!(" (cut at {b} {})", if b == "MaxSize" { max } else { min }))
        .unwrap_or_default();
    Decision::act(
        Resize {
            group: name.clone(),
            direction: plan.direction,
            from,
            to,
            clamped_at,
        },
        format!(
            "scale {} {name} {from} → {to}{bound}: {}",
            plan.direction.as_str(),
            step.arithmetic
        ),
    )
}

/// Why this group may not be resized at all, whatever the step: not ours, misconfigured, or
/// already changing.
fn ineligible(group: &GroupFacts, managed: bool) -> Option<SkipReason> {
    let name = &group.name;
    if !managed {
        return Some(SkipReason::new(
            SkipCode::NotOptedIn,
            format!("group {name} does not carry the opt-in tag"),
        ));
    }
    if group.min_size > group.max_size {
        return Some(SkipReason::new(
            SkipCode::TargetNotEligible,
            format!(
                "group {name} has MinSize {} above MaxSize {}",
                group.min_size, group.max_size
            ),
        ));
    }
    let busy = &group.activities_in_progress;
    let first = busy.first()?;
    Some(SkipReason::new(
        SkipCode::ChangeInProgress,
        format!(
            "group {name} has {} scaling activit{} in progress ({first}); not stacking \
             another change on it",
            busy.len(),
            if busy.len() == 1 { "y" } else { "ies" }
        ),
    ))
}

/// The capacity the step asks for, before the group's bounds cut it; a refusal when the
/// group is already at the bound in that direction, or the step holds it.
fn wanted(direction: Direction, group: &GroupFacts, step: &Step) -> Result<u32, SkipReason> {
    let (name, from, min, max) = (&group.name, group.desired, group.min_size, group.max_size);
    match direction {
        Direction::Out => {
            if from >= max {
                return Err(SkipReason::new(
                    SkipCode::AtBound,
                    format!(
                        "capacity exhausted: group {name} is at its MaxSize {max} (desired \
                         {from}) and the alarm asks for {} more; an operator must act (raise \
                         MaxSize or remove the cause)",
                        step.size
                    ),
                ));
            }
            Ok(from.saturating_add(step.size))
        }
        Direction::In => {
            if from <= min {
                return Err(SkipReason::new(
                    SkipCode::AtBound,
                    format!("group {name} is already at its MinSize {min} (desired {from})"),
                ));
            }
            if step.size == 0 {
                return Err(SkipReason::new(
                    SkipCode::NothingToDo,
                    format!("group {name} stays at {from}: {}", step.arithmetic),
                ));
            }
            Ok(from.saturating_sub(step.size))
        }
    }
}

/// Right before the change, the group as it is now (`now`, re-read inside the guarded act)
/// must still be the one the resize was planned from. If its desired capacity moved since the
/// first read, someone else (a person, a scheduled action, a policy) is changing it: setting
/// our absolute value now could undo their change — shrink a group on a scale-out, grow it on
/// a scale-in — so nothing is done. The same holds when it became busy, lost its opt-in tag,
/// or its bounds no longer admit the planned value.
pub fn recheck(action: &Resize, now: &GroupFacts, managed: bool) -> Result<(), SkipReason> {
    let (name, to) = (&action.group, action.to);
    if !managed {
        return Err(SkipReason::new(
            SkipCode::NotOptedIn,
            format!("group {name} lost the opt-in tag since it was read; not resizing it"),
        ));
    }
    if now.desired != action.from {
        let undo = match (action.direction, now.desired.cmp(&to)) {
            (Direction::Out, std::cmp::Ordering::Greater) => {
                format!("; setting {to} would shrink it on a scale-out")
            }
            (Direction::In, std::cmp::Ordering::Less) => {
                format!("; setting {to} would grow it on a scale-in")
            }
            _ => String::new(),
        };
        return Err(SkipReason::new(
            SkipCode::ChangeInProgress,
            format!(
                "group {name} moved from desired {} to {} since it was read (someone else is \
                 resizing it){undo}; not setting {to} over their change",
                action.from, now.desired
            ),
        ));
    }
    if let Some(reason) = ineligible(now, managed) {
        return Err(reason);
    }
    if !(now.min_size..=now.max_size).contains(&to) {
        return Err(SkipReason::new(
            SkipCode::TargetNotEligible,
            format!(
                "group {name} now has bounds [{}, {}], which exclude the planned {to}",
                now.min_size, now.max_size
            ),
        ));
    }
    Ok(())
}

/// A refusal an operator must hear about: a scale-out alarm on a group already at MaxSize.
pub fn capacity_exhausted(plan: &Plan, reason: &SkipReason) -> bool {
    plan.direction == Direction::Out && reason.code == SkipCode::AtBound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Settings, SizingMode};
    use crate::severity::{breach, severity_step, Side};
    use crate::sizing::{choose_step, ForecastInput};
    use crate::test_support::{
        alarm_of, breach_of, code, group, plan_of, plan_with, sizing_of, step_of,
    };

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
        let p = plan_with(&a, &Settings::default(), Some("GreaterThanThreshold")).unwrap();
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
    fn recheck_refuses_a_group_that_moved_since_the_read() {
        let resize = |direction, from, to| Resize {
            group: "g".into(),
            direction,
            from,
            to,
            clamped_at: None,
        };
        let out = resize(Direction::Out, 4, 8);
        let inn = resize(Direction::In, 6, 3);
        assert_eq!(recheck(&out, &group(1, 20, 4), true), Ok(()));
        assert_eq!(recheck(&inn, &group(1, 20, 6), true), Ok(()));
        // (action, desired now) → the refusal and a phrase of its reason
        let moved = [
            (&out, 9, "would shrink it on a scale-out"),
            (&out, 8, "not setting 8"),
            (&out, 5, "moved from desired 4 to 5"),
            (&out, 2, "moved from desired 4 to 2"),
            (&inn, 2, "would grow it on a scale-in"),
            (&inn, 4, "moved from desired 6 to 4"),
            (&inn, 7, "moved from desired 6 to 7"),
        ];
        for (action, now, phrase) in moved {
            let r = recheck(action, &group(1, 20, now), true).unwrap_err();
            assert_eq!(r.code, SkipCode::ChangeInProgress, "{r}");
            assert!(r.detail.contains(phrase), "{r}");
        }
        let mut busy = group(1, 20, 4);
        busy.activities_in_progress = vec!["a-2 (InProgress): x".into()];
        assert_eq!(
            recheck(&out, &busy, true).unwrap_err().code,
            SkipCode::ChangeInProgress
        );
        assert_eq!(
            recheck(&out, &group(1, 20, 4), false).unwrap_err().code,
            SkipCode::NotOptedIn
        );
        assert_eq!(
            recheck(&out, &group(1, 6, 4), true).unwrap_err().code,
            SkipCode::TargetNotEligible
        );
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
}
