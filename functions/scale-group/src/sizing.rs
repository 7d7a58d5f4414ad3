//! How many instances one change moves: the forecast's answer when it was made and trusted,
//! else the severity step ([`choose_step`]), and the report of which sizing decided it and
//! why ([`SizingReport`], `details.sizing` of the audit record). Pure.

use serde::Serialize;

use selfheal_core::forecast::{Fallback, ForecastSizing};

use crate::settings::{Direction, SizingMode};
use crate::severity::{num, severity_step, Breach, Step};

/// The forecast as the handler obtained it: plain data for [`choose_step`].
#[derive(Debug, Clone, PartialEq)]
pub enum ForecastInput {
    /// No forecast was attempted or the history could not be read: `why`, and the fetch
    /// error when there was one.
    NotMade { why: String, error: Option<String> },
    /// The forecaster's answer (which may itself say to fall back).
    Made(ForecastSizing),
}

/// Which sizing decided the change and why (`details.sizing` of the audit record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizingReport {
    /// `SELFHEAL_SCALE_SIZING`.
    pub setting: SizingMode,
    /// What sized this change: `forecast` or `severity`.
    pub used: &'static str,
    /// Why, for people.
    pub why: String,
    /// Error of the forecast on the held-out recent history, and its limit, when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit_error: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit_error_limit: Option<f64>,
    /// The forecaster's whole answer: forecast values and peak, latest load, sized load,
    /// target per instance, smoothing constants, fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastSizing>,
    /// The history fetch error (or timeout), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Datapoints of load history read (filled in by the handler).
    pub history_points: usize,
    /// What was read as the load (filled in by the handler).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_query: Option<String>,
}

impl SizingReport {
    /// The severity step sized the change, for `why`.
    pub fn severity(setting: SizingMode, why: String) -> Self {
        Self {
            setting,
            used: "severity",
            why,
            fit_error: None,
            fit_error_limit: None,
            forecast: None,
            error: None,
            history_points: 0,
            load_query: None,
        }
    }
}

/// The step to take: the forecast's when it was made and trusted, else the severity step.
///
/// * Scale out to the forecast capacity, the change bounded to `1..=max_step`, and never less
///   than the severity step: the alarm says the group is short now, whatever the forecast.
/// * Scale in down to the forecast capacity, bounded to `1..=max_step`; when the forecast
///   needs as many instances as there are (load is coming back), the step is 0 and
///   [`crate::decide::decide`] holds the capacity.
///
/// This is the policy the evaluation harness (`eval/src/scale_eval.rs`) replays.
pub fn choose_step(
    breach: Option<&Breach>,
    desired: u32,
    direction: Direction,
    max_step: u32,
    setting: SizingMode,
    forecast: &ForecastInput,
) -> (Step, SizingReport) {
    let severity = severity_step(breach, desired, direction, max_step);
    let sizing = match forecast {
        ForecastInput::NotMade { why, error } => {
            let mut r = SizingReport::severity(setting, format!("severity step: {why}"));
            r.error = error.clone();
            return (severity, r);
        }
        ForecastInput::Made(s) => s,
    };
    let fit_error = sizing
        .forecast
        .as_ref()
        .map(|f| f.fit_error)
        .or(match &sizing.fallback {
            Some(Fallback::FitErrorTooHigh { error, .. }) => Some(*error),
            _ => None,
        });
    let mut report = SizingReport {
        setting,
        used: "severity",
        why: sizing.why.clone(),
        fit_error,
        fit_error_limit: Some(sizing.fit_error_limit),
        forecast: Some(sizing.clone()),
        error: None,
        history_points: 0,
        load_query: None,
    };
    let Some(wanted) = sizing.desired else {
        return (severity, report);
    };
    let max_step = max_step.max(1);
    let (size, arithmetic) = forecast_size(direction, wanted, desired, max_step, severity.size);
    report.used = "forecast";
    report.why = format!("{}; {arithmetic}", sizing.why);
    let step = Step {
        method: "forecast",
        size,
        max_step,
        proposed: Some(u64::from(wanted)),
        breach: severity.breach.clone(),
        arithmetic: format!(
            "{arithmetic} (load now {}, forecast peak {}, fit error {} on the last hour)",
            sizing
                .forecast
                .as_ref()
                .map_or("?".into(), |f| num(f.latest)),
            sizing.forecast.as_ref().map_or("?".into(), |f| num(f.peak)),
            fit_error.map_or("?".into(), |e| format!("{e:.3}")),
        ),
    };
    (step, report)
}

/// The step towards the forecast's `wanted` capacity from `desired`, and its arithmetic.
fn forecast_size(
    direction: Direction,
    wanted: u32,
    desired: u32,
    max_step: u32,
    severity_size: u32,
) -> (u32, String) {
    match direction {
        Direction::Out => {
            let raw = wanted.saturating_sub(desired);
            let bounded = raw.clamp(1, max_step);
            let size = bounded.max(severity_size);
            let floor = if size > bounded {
                format!(", raised to the severity step {severity_size}")
            } else {
                String::new()
            };
            (
                size,
                format!(
                    "forecast {wanted} instances: step {raw} bounded to 1..={max_step} = \
                     {bounded}{floor}"
                ),
            )
        }
        Direction::In if wanted < desired => {
            let raw = desired - wanted;
            let size = raw.clamp(1, max_step);
            (
                size,
                format!(
                    "forecast {wanted} instances: step {raw} bounded to 1..={max_step} = {size}"
                ),
            )
        }
        Direction::In => (
            0,
            format!(
                "forecast {wanted} instances, not fewer than the {desired} there are: the load \
                 is coming back, holding capacity"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::decide;
    use crate::severity::Side;
    use crate::test_support::{breach_of, group, plan_of, sizing_of};
    use selfheal_core::{Decision, SkipCode};

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
}
