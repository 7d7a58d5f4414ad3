//! Scaling policies on a load trace: the severity step (scale-group today), forecast sizing
//! (`forecast::forecast_capacity`, falling back to the severity step), and a simulated
//! target-tracking policy.
//!
//! The group: alarms on average CPU (out: above 70 % for 2 of 2 datapoints; in: below 30 %
//! for 3 of 3), fired on OK → ALARM transitions only (as alarm actions to Lambda are), a 15-
//! minute cooldown per group (the ledger), at most 4 instances per change, 2..=80 instances,
//! new instances serve 10 minutes after the change. CPU is capped at 100 %: the load the
//! metric shows is the load the group could serve.

use crate::traces::{Trace, STEP, STEPS_PER_DAY};
use selfheal_core::anomaly::Point;
use selfheal_core::forecast::{forecast_capacity, ForecastSettings};

pub const OUT_THRESHOLD: f64 = 70.0;
pub const IN_THRESHOLD: f64 = 30.0;
/// Target utilisation of forecast sizing and target tracking (the same as the out threshold,
/// so the comparison isolates forecasting from a different target).
pub const TARGET: f64 = 70.0;
/// Utilisation above which a minute counts as under-provisioned.
pub const HOT: f64 = 80.0;
pub const MAX_STEP: u32 = 4;
pub const MIN_SIZE: u32 = 2;
pub const MAX_SIZE: u32 = 80;
pub const LAUNCH_STEPS: usize = 2;
pub const COOLDOWN_STEPS: usize = 3;
/// History handed to the forecaster: the last 7 days.
pub const HISTORY_STEPS: usize = 7 * STEPS_PER_DAY;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Severity,
    Forecast,
    TargetTracking,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Severity => "severity step",
            Self::Forecast => "forecast sizing",
            Self::TargetTracking => "target tracking (simulated)",
        }
    }
}

/// What one policy did over a trace.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub under_minutes: f64,
    pub over_instance_minutes: f64,
    pub instance_minutes: f64,
    pub changes: usize,
    /// Forecast sizing only: how often the forecast was used, and how often it fell back.
    pub forecast_used: usize,
    pub fallbacks: usize,
    /// Scale-in alarms on which the forecast held capacity for a coming ramp.
    pub held: usize,
    /// In-service instances per step (for plots).
    pub in_service: Vec<u32>,
    /// Steps at which the forecast fell back (for plots).
    pub fallback_steps: Vec<usize>,
}

impl Outcome {
    pub fn add(&mut self, o: &Outcome) {
        self.under_minutes += o.under_minutes;
        self.over_instance_minutes += o.over_instance_minutes;
        self.instance_minutes += o.instance_minutes;
        self.changes += o.changes;
        self.forecast_used += o.forecast_used;
        self.fallbacks += o.fallbacks;
        self.held += o.held;
    }
}

/// The instances that meet the load at the target.
pub fn ideal(load: f64) -> u32 {
    ((load / TARGET - 1e-9).ceil() as u32).clamp(MIN_SIZE, MAX_SIZE)
}

/// `ceil(desired × metric / threshold)`, the change bounded to `1..=max_step` (scale-group's
/// severity step; scaling in divides by `threshold / metric`, which is the same product).
pub fn severity_target(desired: u32, metric: f64, threshold: f64, out: bool) -> u32 {
    let proposed = (f64::from(desired) * metric / threshold - 1e-9)
        .ceil()
        .max(0.0) as u32;
    bounded(desired, proposed, out)
}

fn bounded(desired: u32, proposed: u32, out: bool) -> u32 {
    let to = if out {
        desired + proposed.saturating_sub(desired).clamp(1, MAX_STEP)
    } else {
        desired
            - desired
                .saturating_sub(proposed)
                .clamp(1, MAX_STEP)
                .min(desired)
    };
    to.clamp(MIN_SIZE, MAX_SIZE)
}

/// Runs `policy` over the trace from step `from` (earlier steps are history only).
///
/// `rearmed`: the alarm is acted on every period while it stays in ALARM (as when the function
/// re-arms it with `SetAlarmState OK` after acting, or for Auto Scaling's own alarm actions);
/// otherwise only on OK → ALARM transitions (what a Lambda or EventBridge alarm action does).
pub fn simulate(
    trace: &Trace,
    from: usize,
    policy: Policy,
    settings: &ForecastSettings,
    rearmed: bool,
) -> Outcome {
    let load = &trace.values;
    let mut out = Outcome::default();
    let Some(&first) = load.get(from) else {
        return out;
    };
    let mut in_service = ideal(first);
    let mut launching: Vec<(usize, u32)> = Vec::new();
    let mut util_hist: Vec<f64> = Vec::new();
    let mut served: Vec<f64> = load.iter().take(from).copied().collect();
    let (mut high, mut low) = (false, false);
    let mut last_change: Option<usize> = None;
    let minutes = STEP as f64 / 60.0;
    for (i, &l) in load.iter().enumerate().skip(from) {
        let ready: u32 = launching
            .iter()
            .filter(|(at, _)| *at <= i)
            .map(|(_, k)| *k)
            .sum();
        launching.retain(|(at, _)| *at > i);
        in_service += ready;
        let n = in_service.max(1);
        let util = (l / f64::from(n)).min(100.0);
        util_hist.push(util);
        served.push(util * f64::from(n));
        if l > HOT / 100.0 * 100.0 * f64::from(n) {
            out.under_minutes += minutes;
        }
        out.instance_minutes += f64::from(n) * minutes;
        out.over_instance_minutes += f64::from(n.saturating_sub(ideal(l))) * minutes;
        out.in_service.push(n);

        let pending: u32 = launching.iter().map(|(_, k)| *k).sum();
        let desired = in_service + pending;
        let last = |k: usize| {
            util_hist
                .get(util_hist.len().saturating_sub(k)..)
                .unwrap_or_default()
        };
        let new_desired = match policy {
            Policy::TargetTracking => {
                // Scale out on one 5-minute breach (AWS: 3 of 3 one-minute datapoints), in on
                // three below 90 % of the target (AWS: 15 of 15); sized to the served load.
                let now_load = util * f64::from(n);
                if util > TARGET {
                    Some(desired.max(ideal(now_load)))
                } else if last(3).len() == 3 && last(3).iter().all(|u| *u < 0.9 * TARGET) {
                    Some(ideal(now_load).min(desired))
                } else {
                    None
                }
            }
            Policy::Severity | Policy::Forecast => {
                let was_high = high;
                let was_low = low;
                high = last(2).len() == 2 && last(2).iter().all(|u| *u > OUT_THRESHOLD);
                low = last(3).len() == 3 && last(3).iter().all(|u| *u < IN_THRESHOLD);
                let fired = if high && (rearmed || !was_high) {
                    Some(true)
                } else if low && (rearmed || !was_low) {
                    Some(false)
                } else {
                    None
                };
                let cooling = last_change.is_some_and(|c| i < c + COOLDOWN_STEPS);
                match fired {
                    Some(is_out) if !cooling => {
                        let k = if is_out { 2 } else { 3 };
                        let metric = last(k).iter().sum::<f64>() / k as f64;
                        let threshold = if is_out { OUT_THRESHOLD } else { IN_THRESHOLD };
                        let severity = severity_target(desired, metric, threshold, is_out);
                        if policy == Policy::Severity {
                            Some(severity)
                        } else {
                            let start = served.len().saturating_sub(HISTORY_STEPS);
                            let history: Vec<Point> = served
                                .iter()
                                .enumerate()
                                .skip(start)
                                .map(|(j, v)| Point::new(trace.time(j), *v))
                                .collect();
                            let sizing = forecast_capacity(&history, desired, TARGET, settings);
                            match sizing.desired {
                                Some(d) => {
                                    out.forecast_used += 1;
                                    if is_out {
                                        // Never less than the severity step would add.
                                        Some(bounded(desired, d, true).max(severity))
                                    } else if d < desired {
                                        // Down to the forecast peak at the target: the
                                        // forecast keeps what the next half hour needs.
                                        Some(bounded(desired, d, false))
                                    } else {
                                        out.held += 1;
                                        None // a ramp is coming: keep what is there
                                    }
                                }
                                None => {
                                    out.fallbacks += 1;
                                    out.fallback_steps.push(i);
                                    Some(severity)
                                }
                            }
                        }
                    }
                    _ => None,
                }
            }
        };
        if let Some(d) = new_desired.map(|d| d.clamp(MIN_SIZE, MAX_SIZE)) {
            if d > desired {
                launching.push((i + LAUNCH_STEPS, d - desired));
                out.changes += 1;
                last_change = Some(i);
            } else if d < desired {
                // Cancel launches first, then remove in-service instances.
                let mut remove = desired - d;
                while remove > 0 {
                    match launching.last_mut() {
                        Some((_, k)) if *k > remove => {
                            *k -= remove;
                            remove = 0;
                        }
                        Some((_, k)) => {
                            remove -= *k;
                            launching.pop();
                        }
                        None => {
                            in_service = in_service.saturating_sub(remove).max(1);
                            remove = 0;
                        }
                    }
                }
                out.changes += 1;
                last_change = Some(i);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_target_table() {
        // (desired, metric, threshold, out) -> new desired
        for (d, m, t, out, want) in [
            (10, 77.0, 70.0, true, 11),
            (10, 99.0, 70.0, true, 14),
            (10, 100.0, 70.0, true, 15 - 1), // bounded to +4
            (10, 15.0, 30.0, false, 6),
            (10, 27.0, 30.0, false, 9),
            (3, 5.0, 30.0, false, 2), // not below the minimum
        ] {
            assert_eq!(severity_target(d, m, t, out), want, "{d} {m} {t} {out}");
        }
    }

    #[test]
    fn policies_run_and_are_deterministic() {
        let t = crate::traces::load_trace("business-day", 1, 3);
        let from = 2 * crate::traces::STEPS_PER_WEEK;
        for p in [Policy::Severity, Policy::Forecast, Policy::TargetTracking] {
            let a = simulate(&t, from, p, &ForecastSettings::default(), true);
            let b = simulate(&t, from, p, &ForecastSettings::default(), true);
            assert_eq!(a.in_service, b.in_service, "{p:?}");
            assert!(a.instance_minutes > 0.0 && a.changes > 0, "{p:?}");
        }
    }
}
