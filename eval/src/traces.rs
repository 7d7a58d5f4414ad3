//! Seeded synthetic traces at 5-minute resolution: daily and weekly seasonality, trend, noise
//! and injected incidents with ground-truth labels.

use crate::rng::Rng;
use selfheal_core::anomaly::DAY;

pub const STEP: i64 = 300;
pub const STEPS_PER_DAY: usize = (DAY / STEP) as usize;
pub const STEPS_PER_WEEK: usize = 7 * STEPS_PER_DAY;
/// A Monday, 00:00 UTC (2027-01-04): trace time 0.
pub const T0: i64 = 1_799_020_800;

/// A metric trace with labelled incidents.
pub struct Trace {
    pub scenario: &'static str,
    pub seed: u64,
    pub values: Vec<f64>,
    /// Incidents as step ranges `[start, end)`.
    pub incidents: Vec<(usize, usize)>,
    /// What each incident is (`peg`, `degradation`, `level-shift`, `overrun`); empty for
    /// load traces.
    pub kinds: Vec<&'static str>,
}

impl Trace {
    pub fn time(&self, i: usize) -> i64 {
        T0 + i as i64 * STEP
    }

    /// The incident covering step `i`, if any.
    pub fn incident_at(&self, i: usize) -> Option<usize> {
        self.incidents.iter().position(|&(a, b)| i >= a && i < b)
    }
}

/// Hour of day (fractional) and day of week (0 = Monday) of step `i`.
pub fn clock(i: usize) -> (f64, usize) {
    let in_day = i % STEPS_PER_DAY;
    (
        in_day as f64 * STEP as f64 / 3600.0,
        (i / STEPS_PER_DAY) % 7,
    )
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// 0 outside `[a, b]` hours, 1 inside, with smooth edges `ramp` hours wide.
pub fn bump(h: f64, a: f64, b: f64, ramp: f64) -> f64 {
    smoothstep((h - a) / ramp) * smoothstep((b - h) / ramp)
}

/// The CPU scenarios for the gate (percent).
pub const GATE_SCENARIOS: [&str; 4] = [
    "monday-peak",
    "nightly-batch",
    "growing-trend",
    "noisy-peaks",
];

/// The step at which clocks go forward one hour (Sunday 01:00 UTC of week 6): from then on,
/// patterns that follow local time (office hours, a local cron) come one hour earlier in UTC.
pub const DST_STEP: usize = 6 * STEPS_PER_WEEK - STEPS_PER_DAY + 12;
/// A public holiday: Wednesday of week 7 (office hours look like a Sunday); the Thursday after
/// it carries 30 % more office load (catch-up). Neither is an incident.
pub const HOLIDAY_DAY: usize = 7 * 7 + 2;

/// Scenarios whose daily pattern follows local time (DST) and office days (the holiday).
fn local_time(scenario: &str) -> bool {
    matches!(scenario, "monday-peak" | "nightly-batch")
}

/// A seed of its own for every (scenario, seed): no two scenarios share an incident schedule.
fn stream(scenario: &str, seed: u64, salt: u64) -> Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in scenario.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Rng::new(h ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt)
}

/// The hour the scenario's expected daily peak ends (where an overrun starts).
fn peak_end(scenario: &str) -> f64 {
    match scenario {
        "monday-peak" => 10.5,
        "nightly-batch" => 1.9,
        "growing-trend" => 17.0,
        _ => 16.0,
    }
}

/// A CPU trace of `weeks` weeks for `scenario`, with incidents injected.
pub fn cpu_trace(scenario: &'static str, seed: u64, weeks: usize) -> Trace {
    let mut rng = stream(scenario, seed, 1);
    let n = weeks * STEPS_PER_WEEK;
    let local = local_time(scenario);
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        let shifted = if local && i >= DST_STEP { i + 12 } else { i };
        let (h, dow) = clock(shifted);
        let day = shifted / STEPS_PER_DAY;
        let holiday = local && day == HOLIDAY_DAY;
        let catch_up = if local && day == HOLIDAY_DAY + 1 {
            1.3
        } else {
            1.0
        };
        let weekday = dow < 5 && !holiday;
        let days = i as f64 / STEPS_PER_DAY as f64;
        let v = match scenario {
            // Business hours on weekdays, and a Monday-morning peak above 80.
            "monday-peak" => {
                let office = if weekday {
                    35.0 * catch_up * bump(h, 8.0, 18.0, 1.5)
                } else {
                    5.0 * bump(h, 10.0, 18.0, 2.0)
                };
                let monday = if dow == 0 && !holiday {
                    33.0 * bump(h, 8.5, 10.5, 0.5)
                } else {
                    0.0
                };
                20.0 + office + monday + 3.0 * rng.normal()
            }
            // A quiet host with a nightly batch job at 92 % and a Sunday backup at 86 %.
            "nightly-batch" => {
                let batch = 67.0 * bump(h, 1.0, 1.9, 0.15);
                let backup = if dow == 6 {
                    61.0 * bump(h, 3.0, 4.5, 0.2)
                } else {
                    0.0
                };
                25.0 + 5.0 * (std::f64::consts::TAU * h / 24.0).sin()
                    + batch
                    + backup
                    + 2.5 * rng.normal()
            }
            // Steady growth: the afternoon peak crosses 80 in later weeks (capacity, not a fault).
            "growing-trend" => {
                let peak = 30.0 * bump(h, 12.0, 17.0, 2.0);
                35.0 + 0.45 * days + peak + 3.0 * rng.normal()
            }
            // A busy host whose daily peak sits near 80: noise crosses it.
            "noisy-peaks" => {
                let peak = 20.0 * bump(h, 10.0, 16.0, 2.5);
                58.0 + peak + 6.0 * rng.normal()
            }
            _ => 50.0,
        };
        values.push(v.clamp(0.0, 100.0));
    }
    let (incidents, kinds) = inject_incidents(&mut rng, scenario, n, &mut values);
    Trace {
        scenario,
        seed,
        values,
        incidents,
        kinds,
    }
}

/// One or two incidents a week at random times (week 0 is left clean), of four kinds:
///
/// * `peg`: CPU pegged at 93–100 % for 20–120 min (a runaway process);
/// * `degradation`: 12–25 points above normal for 1–3 h (a slow dependency, a hot shard);
/// * `level-shift`: 10–20 points above normal for 1–2 days (a bad deploy, rolled back later);
/// * `overrun`: the expected daily peak does not come down: it holds its level for 1–3 h past
///   its usual end (a batch job that overruns, a peak whose traffic never drains).
///
/// Incidents are kept at least 2 hours apart.
fn inject_incidents(
    rng: &mut Rng,
    scenario: &str,
    n: usize,
    values: &mut [f64],
) -> (Vec<(usize, usize)>, Vec<&'static str>) {
    let mut incidents: Vec<(usize, usize, &'static str)> = Vec::new();
    let weeks = n / STEPS_PER_WEEK;
    for w in 1..weeks {
        let count = if rng.unit() < 0.5 { 1 } else { 2 };
        for _ in 0..count {
            let pick = rng.unit();
            let kind = if pick < 0.3 {
                "peg"
            } else if pick < 0.55 {
                "degradation"
            } else if pick < 0.7 {
                "level-shift"
            } else {
                "overrun"
            };
            let mut start = rng.index(w * STEPS_PER_WEEK, (w + 1) * STEPS_PER_WEEK - 30);
            let len = match kind {
                "peg" => rng.index(4, 25),
                "degradation" => rng.index(12, 37),
                "level-shift" => rng.index(STEPS_PER_DAY, 2 * STEPS_PER_DAY),
                _ => {
                    // The day's peak end (local-time scenarios after DST: one hour earlier).
                    let day = start / STEPS_PER_DAY;
                    let mut at = day * STEPS_PER_DAY
                        + (peak_end(scenario) * 3600.0 / STEP as f64).round() as usize;
                    if local_time(scenario) && at >= DST_STEP {
                        at = at.saturating_sub(12);
                    }
                    start = at;
                    rng.index(12, 37)
                }
            };
            let end = (start + len).min(n);
            if start >= n
                || incidents
                    .iter()
                    .any(|&(a, b, _)| start < b + 24 && a < end + 24)
            {
                continue;
            }
            match kind {
                "peg" => {
                    let level = rng.range(93.0, 100.0);
                    for v in values.iter_mut().take(end).skip(start) {
                        *v = (level + rng.normal()).clamp(0.0, 100.0);
                    }
                }
                "degradation" | "level-shift" => {
                    let (lo, hi) = if kind == "degradation" {
                        (12.0, 25.0)
                    } else {
                        (10.0, 20.0)
                    };
                    let bump = rng.range(lo, hi);
                    for v in values.iter_mut().take(end).skip(start) {
                        *v = (*v + bump).clamp(0.0, 100.0);
                    }
                }
                _ => {
                    // Hold the level of the last 30 minutes of the peak.
                    let from = start.saturating_sub(6);
                    let held: Vec<f64> = values.get(from..start).unwrap_or(&[]).to_vec();
                    let level = held.iter().sum::<f64>() / held.len().max(1) as f64;
                    for v in values.iter_mut().take(end).skip(start) {
                        *v = (level + 2.0 * rng.normal()).clamp(0.0, 100.0);
                    }
                }
            }
            incidents.push((start, end, kind));
        }
    }
    incidents.sort_unstable_by_key(|x| x.0);
    (
        incidents.iter().map(|x| (x.0, x.1)).collect(),
        incidents.iter().map(|x| x.2).collect(),
    )
}

/// The load scenarios for scaling, in instance-percent (one instance at 100 % = 100).
pub const LOAD_SCENARIOS: [&str; 4] = [
    "business-day",
    "evening-peak",
    "flash-crowds",
    "large-group",
];

/// A load trace of `weeks` weeks; `incidents` holds the flash crowds (unforecastable spikes).
pub fn load_trace(scenario: &'static str, seed: u64, weeks: usize) -> Trace {
    let mut rng = Rng::new(seed.wrapping_mul(7919) + 17 + scenario.len() as u64);
    let n = weeks * STEPS_PER_WEEK;
    let mut values = Vec::with_capacity(n);
    let mut wander = 0.0;
    for i in 0..n {
        let (h, dow) = clock(i);
        let weekday = dow < 5;
        let day = i as f64 / STEPS_PER_DAY as f64;
        let growth = 1.0 + 0.004 * day;
        // Slow random drift (AR(1)): days are alike, not identical.
        wander = 0.98 * wander + 0.01 * rng.normal();
        let business = |scale: f64| {
            scale
                * if weekday {
                    150.0 + 850.0 * bump(h, 8.0, 18.0, 1.5) - 120.0 * bump(h, 12.0, 13.0, 0.4)
                } else {
                    150.0 + 250.0 * bump(h, 10.0, 20.0, 2.0)
                }
        };
        let shape = match scenario {
            "business-day" | "flash-crowds" => business(1.0),
            // The same day at three times the size: changes the step bound cannot keep up with.
            "large-group" => business(3.0),
            "evening-peak" => {
                let weekend = if weekday { 1.0 } else { 1.3 };
                200.0 + weekend * 700.0 * bump(h, 17.5, 23.0, 1.5) + 120.0 * bump(h, 7.0, 9.0, 1.0)
            }
            _ => 500.0,
        };
        let v = shape * growth * (1.0 + wander) * (1.0 + 0.03 * rng.normal());
        values.push(v.max(0.0));
    }
    let mut incidents = Vec::new();
    if scenario == "flash-crowds" {
        let weeks = n / STEPS_PER_WEEK;
        for w in 1..weeks {
            for _ in 0..2 {
                let start = rng.index(w * STEPS_PER_WEEK, (w + 1) * STEPS_PER_WEEK - 20);
                let len = rng.index(6, 19);
                let end = (start + len).min(n);
                let factor = rng.range(1.6, 2.2);
                for v in values.iter_mut().take(end).skip(start) {
                    *v *= factor;
                }
                incidents.push((start, end));
            }
        }
        incidents.sort_unstable();
    }
    Trace {
        scenario,
        seed,
        values,
        incidents,
        kinds: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_deterministic_and_labelled() {
        for s in GATE_SCENARIOS {
            let a = cpu_trace(s, 3, 6);
            let b = cpu_trace(s, 3, 6);
            assert_eq!(a.values, b.values, "{s}");
            assert_eq!(a.incidents, b.incidents, "{s}");
            assert!(!a.incidents.is_empty(), "{s}");
            assert_eq!(a.incidents.len(), a.kinds.len());
            for (&(x, y), kind) in a.incidents.iter().zip(&a.kinds) {
                if *kind == "peg" {
                    assert!(a.values[x..y].iter().all(|v| *v > 85.0), "{s}");
                }
            }
        }
        assert_eq!(
            load_trace("business-day", 1, 3).values,
            load_trace("business-day", 1, 3).values
        );
    }

    #[test]
    fn expected_patterns_cross_the_static_threshold() {
        // The point of the scenarios: the static threshold fires on them without an incident.
        let t = cpu_trace("monday-peak", 1, 2);
        assert!(t.values[..STEPS_PER_DAY].iter().any(|v| *v > 80.0));
        let t = cpu_trace("nightly-batch", 1, 1);
        assert!(t.values[..STEPS_PER_DAY].iter().any(|v| *v > 80.0));
    }

    #[test]
    fn scenarios_have_schedules_of_their_own() {
        // Two scenarios with names of the same length used to share an incident schedule.
        let a = cpu_trace("monday-peak", 3, 6);
        let b = cpu_trace("noisy-peaks", 3, 6);
        assert_ne!(a.incidents, b.incidents);
        let c = cpu_trace("monday-peak", 4, 6);
        assert_ne!(a.incidents, c.incidents);
    }

    #[test]
    fn dst_moves_local_patterns_one_hour_earlier() {
        // The nightly batch peaks near 01:30 local: 01:30 UTC before DST, 00:30 UTC after.
        let t = cpu_trace("nightly-batch", 2, 8);
        let at = |day: usize, hour_steps: usize| t.values[day * STEPS_PER_DAY + hour_steps];
        let before = (DST_STEP / STEPS_PER_DAY) - 2;
        let after = (DST_STEP / STEPS_PER_DAY) + 2;
        let clean = |d: usize| {
            t.incident_at(d * STEPS_PER_DAY + 6).is_none()
                && t.incident_at(d * STEPS_PER_DAY + 18).is_none()
        };
        if clean(before) && clean(after) {
            assert!(at(before, 18) > 80.0 && at(before, 6) < 60.0);
            assert!(at(after, 6) > 80.0 && at(after, 18) < 60.0);
        }
    }
}
