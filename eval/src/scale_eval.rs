//! Scaling policies on a load trace: what scale-group ships (the closed loop: an alarm's OK →
//! ALARM transition acts, then every action is verified after the cooldown and, while the
//! alarm is still in ALARM, followed by the next bounded step, through the same guardrails),
//! with forecast sizing (`forecast::forecast_capacity`, falling back to the severity step) or
//! the severity step; the same sizing acted on transitions only (scale-group before the
//! closed loop); and two simulated AWS policies: target tracking, and target tracking with
//! predictive scaling.
//!
//! The group: alarms on average CPU (out: above 70 % for 2 of 2 datapoints; in: below 30 %
//! for 3 of 3), 2..=80 instances, new instances serve 10
//! minutes after the change. CPU is capped at 100 %: the load the metric shows is the load the
//! group could serve. scale-group's guardrails are its shipped defaults ([`Shipped`]): a 15-
//! minute cooldown per group, at most 12 actions per group in 6 hours, at most 8 instances
//! per step, at most 12 follow-ups per episode.

use crate::traces::{Trace, STEP, STEPS_PER_DAY, STEPS_PER_WEEK};
use selfheal_core::anomaly::Point;
use selfheal_core::forecast::{forecast_capacity, ForecastSettings};

pub const OUT_THRESHOLD: f64 = 70.0;
pub const IN_THRESHOLD: f64 = 30.0;
/// Target utilisation of forecast sizing and target tracking (the same as the out threshold,
/// so the comparison isolates forecasting from a different target).
pub const TARGET: f64 = 70.0;
/// Utilisation above which a minute counts as under-provisioned.
pub const HOT: f64 = 80.0;
pub const MIN_SIZE: u32 = 2;
pub const MAX_SIZE: u32 = 80;
pub const LAUNCH_STEPS: usize = 2;
/// History handed to the forecaster: the last 7 days.
pub const HISTORY_STEPS: usize = 7 * STEPS_PER_DAY;
/// Target tracking's scale-in: every datapoint of the last 15 minutes below 90 % of the target.
pub const TT_SCALE_IN_STEPS: usize = 3;
pub const TT_SCALE_IN_FRACTION: f64 = 0.9;
/// Predictive scaling's forecast: the mean served load of the same hour of the week over the
/// previous `PREDICTIVE_WEEKS` weeks (a stand-in for AWS's forecast, which uses up to 14 days
/// of history with daily and weekly patterns).
pub const PREDICTIVE_WEEKS: usize = 2;
const STEPS_PER_HOUR: usize = 3600 / STEP as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Severity,
    Forecast,
    TargetTracking,
    Predictive,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Severity => "severity step",
            Self::Forecast => "forecast sizing",
            Self::TargetTracking => "target tracking (simulated)",
            Self::Predictive => "target tracking + predictive (simulated)",
        }
    }

    /// A policy of scale-group (as opposed to a simulated AWS policy).
    pub fn is_selfheal(self) -> bool {
        matches!(self, Self::Severity | Self::Forecast)
    }
}

/// When scale-group acts on its alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// What it ships: a transition acts; each action is verified after the cooldown and
    /// followed by the next step while the alarm is still in ALARM.
    ClosedLoop,
    /// Before the closed loop: one step per OK → ALARM transition.
    TransitionOnly,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Self::ClosedLoop => "closed loop",
            Self::TransitionOnly => "transitions only",
        }
    }
}

/// scale-group's guardrails and follow-up settings as the template ships them, in 5-minute
/// steps. The cap (template `ScaleTargetCap`) and the step limit (`ScaleMaxStep`) were picked on
/// the tuning seeds (`selfheal-eval --scaling-tuning`): the smallest of each with fewer
/// under-provisioned minutes than target tracking and no escalation there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shipped {
    /// `SELFHEAL_COOLDOWN_SECONDS` (900 s).
    pub cooldown_steps: usize,
    /// `SELFHEAL_TARGET_CAP` actions per `SELFHEAL_TARGET_CAP_WINDOW_SECONDS` (12 per 6 h for
    /// scale-group).
    pub cap: u32,
    pub cap_window_steps: usize,
    /// Follow-up steps per episode before a person is told (12).
    pub max_follow_ups: u32,
    /// `SELFHEAL_SCALE_MAX_STEP` (8).
    pub max_step: u32,
}

impl Default for Shipped {
    fn default() -> Self {
        Self {
            cooldown_steps: 3,
            cap: 12,
            cap_window_steps: 6 * STEPS_PER_HOUR,
            max_follow_ups: 12,
            max_step: 8,
        }
    }
}

/// One decision of a policy, for the raw CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub step: usize,
    /// `transition`, `follow-up`, `verify`, `policy` (target tracking / predictive).
    pub kind: &'static str,
    /// `out` or `in`.
    pub direction: &'static str,
    pub from: u32,
    pub to: u32,
    /// `acted`, `healed`, `escalated: ...`, `refused: ...`, `held`.
    pub outcome: String,
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
    /// Closed loop: episodes, how they ended, and the minutes from first action to healed.
    pub episodes: usize,
    pub healed: usize,
    pub escalated: usize,
    pub heal_minutes: Vec<f64>,
    /// Alarm-triggered actions the guardrails refused (cooldown, cap).
    pub refused: usize,
    /// In-service instances per step (for plots).
    pub in_service: Vec<u32>,
    /// Steps at which the forecast fell back (for plots).
    pub fallback_steps: Vec<usize>,
    /// Every decision, for the raw CSV.
    pub events: Vec<Event>,
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
        self.episodes += o.episodes;
        self.healed += o.healed;
        self.escalated += o.escalated;
        self.heal_minutes.extend_from_slice(&o.heal_minutes);
        self.refused += o.refused;
    }

    /// Median minutes from an episode's first action to healed.
    pub fn median_heal_minutes(&self) -> Option<f64> {
        let mut v = self.heal_minutes.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }
}

/// The instances that meet the load at the target.
pub fn ideal(load: f64) -> u32 {
    ((load / TARGET - 1e-9).ceil() as u32).clamp(MIN_SIZE, MAX_SIZE)
}

/// `ceil(desired × metric / threshold)`, the change bounded to `1..=max_step` (scale-group's
/// severity step; scaling in divides by `threshold / metric`, which is the same product).
pub fn severity_target(desired: u32, metric: f64, threshold: f64, out: bool, max_step: u32) -> u32 {
    let proposed = (f64::from(desired) * metric / threshold - 1e-9)
        .ceil()
        .max(0.0) as u32;
    bounded(desired, proposed, out, max_step)
}

fn bounded(desired: u32, proposed: u32, out: bool, max_step: u32) -> u32 {
    let max_step = max_step.max(1);
    let to = if out {
        desired + proposed.saturating_sub(desired).clamp(1, max_step)
    } else {
        desired
            - desired
                .saturating_sub(proposed)
                .clamp(1, max_step)
                .min(desired)
    };
    to.clamp(MIN_SIZE, MAX_SIZE)
}

/// An episode in progress in one direction.
#[derive(Debug, Clone, Copy)]
struct Episode {
    start: usize,
    follow_ups: u32,
    verify_at: usize,
}

/// The group as the simulation sees it.
struct Group {
    in_service: u32,
    launching: Vec<(usize, u32)>,
}

impl Group {
    fn desired(&self) -> u32 {
        self.in_service + self.launching.iter().map(|(_, k)| *k).sum::<u32>()
    }

    fn apply(&mut self, i: usize, d: u32) {
        let desired = self.desired();
        if d > desired {
            self.launching.push((i + LAUNCH_STEPS, d - desired));
        } else if d < desired {
            // Cancel launches first, then remove in-service instances.
            let mut remove = desired - d;
            while remove > 0 {
                match self.launching.last_mut() {
                    Some((_, k)) if *k > remove => {
                        *k -= remove;
                        remove = 0;
                    }
                    Some((_, k)) => {
                        remove -= *k;
                        self.launching.pop();
                    }
                    None => {
                        self.in_service = self.in_service.saturating_sub(remove).max(1);
                        remove = 0;
                    }
                }
            }
        }
    }
}

/// The hour-of-week mean of served load over the previous `PREDICTIVE_WEEKS` weeks, as
/// instances at the target, for the hour that contains step `at`.
fn predicted_capacity(served: &[f64], at: usize) -> Option<u32> {
    let hour_start = at - at % STEPS_PER_HOUR;
    let mut sum = 0.0;
    let mut n = 0usize;
    for w in 1..=PREDICTIVE_WEEKS {
        let Some(s) = hour_start.checked_sub(w * STEPS_PER_WEEK) else {
            continue;
        };
        for v in served.get(s..s + STEPS_PER_HOUR).unwrap_or_default() {
            sum += v;
            n += 1;
        }
    }
    (n > 0).then(|| ideal(sum / n as f64))
}

/// Runs `policy` over the trace from step `from` (earlier steps are history only). `trigger`
/// and `shipped` apply to scale-group's policies; the simulated AWS policies ignore them.
pub fn simulate(
    trace: &Trace,
    from: usize,
    policy: Policy,
    settings: &ForecastSettings,
    trigger: Trigger,
    shipped: &Shipped,
) -> Outcome {
    let load = &trace.values;
    let mut out = Outcome::default();
    let Some(&first) = load.get(from) else {
        return out;
    };
    let mut g = Group {
        in_service: ideal(first),
        launching: Vec::new(),
    };
    let mut util_hist: Vec<f64> = Vec::new();
    let mut served: Vec<f64> = load.iter().take(from).copied().collect();
    let (mut high, mut low) = (false, false);
    let mut changes_at: Vec<usize> = Vec::new();
    // Episodes in progress: [out, in].
    let mut episodes: [Option<Episode>; 2] = [None, None];
    let minutes = STEP as f64 / 60.0;
    for (i, &l) in load.iter().enumerate().skip(from) {
        let ready: u32 = g
            .launching
            .iter()
            .filter(|(at, _)| *at <= i)
            .map(|(_, k)| *k)
            .sum();
        g.launching.retain(|(at, _)| *at > i);
        g.in_service += ready;
        let n = g.in_service.max(1);
        let util = (l / f64::from(n)).min(100.0);
        util_hist.push(util);
        served.push(util * f64::from(n));
        if l > HOT / 100.0 * 100.0 * f64::from(n) {
            out.under_minutes += minutes;
        }
        out.instance_minutes += f64::from(n) * minutes;
        out.over_instance_minutes += f64::from(n.saturating_sub(ideal(l))) * minutes;
        out.in_service.push(n);

        let desired = g.desired();
        let last = |k: usize| {
            util_hist
                .get(util_hist.len().saturating_sub(k)..)
                .unwrap_or_default()
        };
        let now_load = util * f64::from(n);
        match policy {
            Policy::TargetTracking | Policy::Predictive => {
                // Scale out on one 5-minute breach (AWS: 3 of 3 one-minute datapoints), in on
                // 15 minutes below 90 % of the target (AWS: 15 of 15); sized to the served load.
                let mut d = if util > TARGET {
                    desired.max(ideal(now_load))
                } else if last(TT_SCALE_IN_STEPS).len() == TT_SCALE_IN_STEPS
                    && last(TT_SCALE_IN_STEPS)
                        .iter()
                        .all(|u| *u < TT_SCALE_IN_FRACTION * TARGET)
                {
                    ideal(now_load).min(desired)
                } else {
                    desired
                };
                if policy == Policy::Predictive {
                    // The forecast capacity for the hour the instances launched now would
                    // serve in is the group's minimum (the larger of the two wins).
                    if let Some(p) = predicted_capacity(&served, i + LAUNCH_STEPS) {
                        d = d.max(p);
                    }
                }
                let d = d.clamp(MIN_SIZE, MAX_SIZE);
                if d != desired {
                    out.events.push(Event {
                        step: i,
                        kind: "policy",
                        direction: if d > desired { "out" } else { "in" },
                        from: desired,
                        to: d,
                        outcome: "acted".into(),
                    });
                    g.apply(i, d);
                    out.changes += 1;
                }
                continue;
            }
            Policy::Severity | Policy::Forecast => {}
        }

        let was_high = high;
        let was_low = low;
        high = last(2).len() == 2 && last(2).iter().all(|u| *u > OUT_THRESHOLD);
        low = last(3).len() == 3 && last(3).iter().all(|u| *u < IN_THRESHOLD);

        // Alarm events at this step: verifications that are due, then transitions.
        let mut due: Vec<(bool, &'static str)> = Vec::new();
        if trigger == Trigger::ClosedLoop {
            for (slot, is_out) in [(0usize, true), (1, false)] {
                let Some(ep) = episodes[slot] else { continue };
                if i < ep.verify_at {
                    continue;
                }
                let still = if is_out { high } else { low };
                let dir = if is_out { "out" } else { "in" };
                if !still {
                    out.healed += 1;
                    out.heal_minutes.push((i - ep.start) as f64 * minutes);
                    episodes[slot] = None;
                    out.events
                        .push(verify_event(i, dir, desired, "healed".into()));
                } else if ep.follow_ups >= shipped.max_follow_ups {
                    out.escalated += 1;
                    episodes[slot] = None;
                    out.events.push(verify_event(
                        i,
                        dir,
                        desired,
                        "escalated: follow-ups ran out".into(),
                    ));
                } else {
                    due.push((is_out, "follow-up"));
                }
            }
        }
        if high && !was_high {
            due.push((true, "transition"));
        }
        if low && !was_low {
            due.push((false, "transition"));
        }

        for (is_out, kind) in due {
            let slot = usize::from(!is_out);
            let dir = if is_out { "out" } else { "in" };
            let follow_up = kind == "follow-up";
            if kind == "transition" && episodes[slot].is_some() && trigger == Trigger::ClosedLoop {
                // The alarm fired again inside an episode: the episode's verification will
                // take the next step.
                continue;
            }
            let desired = g.desired();
            let end = |out: &mut Outcome, eps: &mut [Option<Episode>; 2], why: String| {
                if follow_up {
                    out.escalated += 1;
                    eps[slot] = None;
                }
                out.events.push(Event {
                    step: i,
                    kind,
                    direction: dir,
                    from: desired,
                    to: desired,
                    outcome: why,
                });
            };
            // The guardrails, as `Guardrails::check_and_reserve` applies them.
            let since = changes_at.last().map(|c| i - c);
            let in_window = changes_at
                .iter()
                .filter(|c| i - **c < shipped.cap_window_steps)
                .count();
            if since.is_some_and(|s| s < shipped.cooldown_steps) {
                out.refused += 1;
                let why = if follow_up {
                    "escalated: "
                } else {
                    "refused: "
                };
                end(&mut out, &mut episodes, format!("{why}cooldown"));
                continue;
            }
            if in_window >= shipped.cap as usize {
                out.refused += 1;
                let why = if follow_up {
                    "escalated: "
                } else {
                    "refused: "
                };
                end(&mut out, &mut episodes, format!("{why}target cap"));
                continue;
            }
            let at_bound = if is_out {
                desired >= MAX_SIZE
            } else {
                desired <= MIN_SIZE
            };
            if at_bound {
                let why = if follow_up {
                    "escalated: "
                } else {
                    "refused: "
                };
                end(&mut out, &mut episodes, format!("{why}at bound"));
                continue;
            }
            let k = if is_out { 2 } else { 3 };
            let metric = last(k).iter().sum::<f64>() / k as f64;
            let threshold = if is_out { OUT_THRESHOLD } else { IN_THRESHOLD };
            let severity = severity_target(desired, metric, threshold, is_out, shipped.max_step);
            let new_desired = if policy == Policy::Severity {
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
                            Some(bounded(desired, d, true, shipped.max_step).max(severity))
                        } else if d < desired {
                            // Down to the forecast peak at the target: the forecast keeps
                            // what the next half hour needs.
                            Some(bounded(desired, d, false, shipped.max_step))
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
            };
            let Some(d) = new_desired.map(|d| d.clamp(MIN_SIZE, MAX_SIZE)) else {
                // Nothing to do now (the forecast holds capacity): a follow-up looks again
                // after the same interval, counting toward the episode's follow-ups.
                if let Some(ep) = episodes[slot].as_mut().filter(|_| follow_up) {
                    ep.follow_ups += 1;
                    ep.verify_at = i + shipped.cooldown_steps;
                }
                out.events.push(Event {
                    step: i,
                    kind,
                    direction: dir,
                    from: desired,
                    to: desired,
                    // Forecast sizing held capacity (a ramp is coming): nothing to verify.
                    outcome: "held".into(),
                });
                continue;
            };
            if d == desired {
                continue;
            }
            g.apply(i, d);
            out.changes += 1;
            changes_at.push(i);
            out.events.push(Event {
                step: i,
                kind,
                direction: dir,
                from: desired,
                to: d,
                outcome: "acted".into(),
            });
            if trigger == Trigger::ClosedLoop {
                let verify_at = i + shipped.cooldown_steps;
                match &mut episodes[slot] {
                    Some(ep) => {
                        ep.follow_ups += 1;
                        ep.verify_at = verify_at;
                    }
                    None => {
                        out.episodes += 1;
                        episodes[slot] = Some(Episode {
                            start: i,
                            follow_ups: 0,
                            verify_at,
                        });
                    }
                }
            }
        }
    }
    out
}

fn verify_event(step: usize, direction: &'static str, desired: u32, outcome: String) -> Event {
    Event {
        step,
        kind: "verify",
        direction,
        from: desired,
        to: desired,
        outcome,
    }
}

/// The raw decisions of one run as CSV rows (no header): scenario, seed, policy, time (Unix
/// seconds), kind, direction, from, to, outcome.
pub fn events_csv(trace: &Trace, label: &str, o: &Outcome) -> String {
    let mut s = String::new();
    for e in &o.events {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            trace.scenario,
            trace.seed,
            label,
            trace.time(e.step),
            e.kind,
            e.direction,
            e.from,
            e.to,
            e.outcome.replace(',', ";")
        ));
    }
    s
}

pub const EVENTS_CSV_HEADER: &str =
    "scenario,seed,policy,time_unix,kind,direction,from_desired,to_desired,outcome\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// scale-group's code default step limit.
    const MAX_STEP: u32 = 4;

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
            assert_eq!(
                severity_target(d, m, t, out, MAX_STEP),
                want,
                "{d} {m} {t} {out}"
            );
        }
    }

    #[test]
    fn policies_run_and_are_deterministic() {
        let t = crate::traces::load_trace("business-day", 1, 3);
        let from = 2 * crate::traces::STEPS_PER_WEEK;
        let s = Shipped::default();
        for p in [
            Policy::Severity,
            Policy::Forecast,
            Policy::TargetTracking,
            Policy::Predictive,
        ] {
            let a = simulate(
                &t,
                from,
                p,
                &ForecastSettings::default(),
                Trigger::ClosedLoop,
                &s,
            );
            let b = simulate(
                &t,
                from,
                p,
                &ForecastSettings::default(),
                Trigger::ClosedLoop,
                &s,
            );
            assert_eq!(a.in_service, b.in_service, "{p:?}");
            assert!(a.instance_minutes > 0.0 && a.changes > 0, "{p:?}");
        }
    }

    /// A flat trace that jumps to a sustained surge: transitions only takes one step and stays
    /// under-provisioned; the closed loop keeps stepping until the alarm clears.
    fn surge() -> Trace {
        let mut values = vec![140.0; 3 * STEPS_PER_DAY];
        for v in values.iter_mut().skip(2 * STEPS_PER_DAY) {
            *v = 1400.0; // 20 instances at the target, from 2
        }
        Trace {
            scenario: "surge",
            seed: 0,
            values,
            incidents: vec![],
            kinds: vec![],
        }
    }

    #[test]
    fn closed_loop_follows_a_sustained_surge_until_it_clears() {
        let t = surge();
        let from = STEPS_PER_DAY;
        let roomy = Shipped {
            cap: 100,
            ..Shipped::default()
        };
        let fs = ForecastSettings::default();
        let once = simulate(
            &t,
            from,
            Policy::Severity,
            &fs,
            Trigger::TransitionOnly,
            &roomy,
        );
        let closed = simulate(&t, from, Policy::Severity, &fs, Trigger::ClosedLoop, &roomy);
        assert_eq!(once.changes, 1, "one step per transition");
        assert!(closed.changes >= 5, "{} steps", closed.changes);
        assert_eq!(closed.episodes, 1);
        assert_eq!(closed.healed, 1, "{:?}", closed.events);
        assert!(closed.under_minutes < once.under_minutes / 4.0);
        assert_eq!(
            closed.in_service.last().copied(),
            Some(20),
            "ideal(1400) at 70 %"
        );
    }

    #[test]
    fn the_cap_stops_follow_ups_and_escalates_once() {
        let t = surge();
        let fs = ForecastSettings::default();
        let r = simulate(
            &t,
            STEPS_PER_DAY,
            Policy::Severity,
            &fs,
            Trigger::ClosedLoop,
            &Shipped {
                cap: 3,
                max_step: 4,
                ..Shipped::default()
            },
        );
        assert_eq!(r.changes, 3, "3 actions per 6 h");
        assert_eq!(r.escalated, 1, "{:?}", r.events);
        assert_eq!(r.healed, 0);
        assert!(r
            .events
            .iter()
            .any(|e| e.outcome == "escalated: target cap"));
    }

    #[test]
    fn predictive_scales_ahead_of_a_weekly_ramp() {
        // A ramp at the same hour every day for three weeks: predictive capacity is in place
        // when the ramp starts, target tracking follows it.
        let mut values = Vec::new();
        for i in 0..3 * STEPS_PER_WEEK {
            let h = (i % STEPS_PER_DAY) / STEPS_PER_HOUR;
            values.push(if (9..17).contains(&h) { 1400.0 } else { 140.0 });
        }
        let t = Trace {
            scenario: "ramp",
            seed: 0,
            values,
            incidents: vec![],
            kinds: vec![],
        };
        let fs = ForecastSettings::default();
        let s = Shipped::default();
        let from = 2 * STEPS_PER_WEEK;
        let tt = simulate(
            &t,
            from,
            Policy::TargetTracking,
            &fs,
            Trigger::ClosedLoop,
            &s,
        );
        let pr = simulate(&t, from, Policy::Predictive, &fs, Trigger::ClosedLoop, &s);
        assert!(
            pr.under_minutes < tt.under_minutes,
            "{} vs {}",
            pr.under_minutes,
            tt.under_minutes
        );
    }
}
