//! Short-horizon load forecasting for sizing a group: Holt-Winters (additive, one daily
//! season) fitted on the metric's history, checked against held-out recent history, and
//! turned into a desired capacity at a target load per instance.
//!
//! Pure and deterministic (no AWS, no randomness); the evaluation harness (`eval/`) compiles
//! this very file. The caller clamps to the group's bounds and bounds the step, as for the
//! severity step; when the forecast is not trustworthy ([`ForecastSizing::fallback`]) the
//! caller uses the severity step instead.
//!
//! ## Method
//! 1. The history is put on a regular grid of `step_secs` (mean per slot; gaps of up to
//!    `max_gap_steps` are filled linearly, longer gaps refuse the forecast).
//! 2. Holt-Winters additive with season `season_secs / step_secs` slots: level, trend and a
//!    seasonal offset per slot, initialised from the first two seasons. The smoothing
//!    constants are chosen from a small fixed grid by one-step-ahead squared error on the
//!    training part (deterministic, ~10 fits).
//! 3. **Fit error**: fitted on everything but the last `holdout_steps`, the model forecasts
//!    those steps; the error is their mean absolute error divided by their mean absolute
//!    value (a scale-free fraction). Above `max_fit_error` the forecast is not used.
//! 4. Refitted on all of the history, the model forecasts the next `horizon_steps`; the
//!    capacity is sized for `max(latest observed load, forecast peak over the horizon)`:
//!    never below what is needed now, and ahead of a ramp that is still climbing.

use serde::Serialize;

use crate::anomaly::Point;

/// Settings of the forecaster. Defaults are what the evaluation harness reports on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastSettings {
    /// Grid step, normally the alarm's period (300 s).
    pub step_secs: i64,
    /// Season length (one day).
    pub season_secs: i64,
    /// Steps ahead to size for: time for new instances to serve plus a cooldown (6 = 30 min
    /// at 5-minute steps).
    pub horizon_steps: usize,
    /// Most recent steps held out to measure the fit error (12 = 1 hour).
    pub holdout_steps: usize,
    /// Fit error above which the forecast is not used (0.15 = 15 % of the load).
    pub max_fit_error: f64,
    /// Whole seasons of history needed (2: one to initialise, one to learn).
    pub min_seasons: usize,
    /// Longest run of missing steps filled by interpolation (3).
    pub max_gap_steps: usize,
}

impl Default for ForecastSettings {
    fn default() -> Self {
        Self {
            step_secs: 300,
            season_secs: crate::anomaly::DAY,
            horizon_steps: 6,
            holdout_steps: 12,
            max_fit_error: 0.15,
            min_seasons: 2,
            max_gap_steps: 3,
        }
    }
}

/// Why the forecast was not used: the caller falls back to the severity step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Fallback {
    /// Not enough history: `have` steps, `need` steps.
    TooLittleHistory { have: usize, need: usize },
    /// A gap longer than `max_gap_steps` in the history.
    GapInHistory { steps: usize },
    /// The forecast of the held-out recent history was off by more than the limit.
    FitErrorTooHigh { error: f64, limit: f64 },
    /// Settings or inputs that make no sense (target ≤ 0, non-finite values).
    InvalidInput { detail: String },
}

/// The fitted model's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Forecast for the next `horizon_steps` steps.
    pub values: Vec<f64>,
    /// Largest forecast value over the horizon.
    pub peak: f64,
    /// Latest observed value.
    pub latest: f64,
    /// Mean absolute error on the held-out steps over their mean absolute value.
    pub fit_error: f64,
    /// Smoothing constants chosen: level, trend, season.
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    /// Steps of history used.
    pub history_steps: usize,
}

/// Desired capacity from the forecast, with every number behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastSizing {
    /// Capacity for the forecast load at the target; `None` when falling back.
    pub desired: Option<u32>,
    pub current_desired: u32,
    /// The load sized for: `max(latest, forecast peak)`.
    pub sized_load: Option<f64>,
    pub target_per_instance: f64,
    pub forecast: Option<Forecast>,
    pub fit_error_limit: f64,
    pub fallback: Option<Fallback>,
    /// One sentence for people.
    pub why: String,
}

/// Smoothing constants tried (level, trend, season): small, fixed, deterministic.
const GRID: [(f64, f64, f64); 9] = [
    (0.1, 0.0, 0.1),
    (0.2, 0.0, 0.1),
    (0.3, 0.0, 0.1),
    (0.5, 0.0, 0.1),
    (0.2, 0.01, 0.1),
    (0.3, 0.01, 0.2),
    (0.5, 0.01, 0.2),
    (0.2, 0.0, 0.3),
    (0.8, 0.0, 0.1),
];

/// Fits and forecasts `history` (capacity-independent load: requests, or utilisation ×
/// in-service instances; not a per-instance average, which falls when the group grows).
pub fn forecast(history: &[Point], settings: &ForecastSettings) -> Result<Forecast, Fallback> {
    if settings.step_secs <= 0 || settings.season_secs < settings.step_secs {
        return Err(Fallback::InvalidInput {
            detail: format!(
                "step {} s and season {} s must be positive, the season at least one step",
                settings.step_secs, settings.season_secs
            ),
        });
    }
    let series = regular_grid(history, settings.step_secs, settings.max_gap_steps)?;
    let m = (settings.season_secs / settings.step_secs) as usize;
    let need = settings.min_seasons.max(2) * m + settings.holdout_steps;
    if series.len() < need {
        return Err(Fallback::TooLittleHistory {
            have: series.len(),
            need,
        });
    }
    let split = series.len() - settings.holdout_steps;
    let train = series.get(..split).unwrap_or_default();
    let held = series.get(split..).unwrap_or_default();
    let (alpha, beta, gamma) = best_constants(train, m);
    let fit_error = if held.is_empty() {
        0.0
    } else {
        let ahead = HoltWinters::fit(train, m, alpha, beta, gamma).forecast(held.len());
        let abs_err: f64 = ahead.iter().zip(held).map(|(f, a)| (f - a).abs()).sum();
        let scale: f64 = held.iter().map(|a| a.abs()).sum();
        if scale > 0.0 {
            abs_err / scale
        } else if abs_err == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    };
    if fit_error.is_nan() || fit_error > settings.max_fit_error {
        return Err(Fallback::FitErrorTooHigh {
            error: fit_error,
            limit: settings.max_fit_error,
        });
    }
    let values =
        HoltWinters::fit(&series, m, alpha, beta, gamma).forecast(settings.horizon_steps.max(1));
    let peak = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let latest = series.last().copied().unwrap_or(0.0);
    Ok(Forecast {
        values,
        peak,
        latest,
        fit_error,
        alpha,
        beta,
        gamma,
        history_steps: series.len(),
    })
}

/// Desired capacity for the forecast load at `target_per_instance` (the load one instance
/// should carry, in the history's unit). The caller clamps to the group's bounds and bounds
/// the step; on `fallback` it uses the severity step.
pub fn forecast_capacity(
    history: &[Point],
    current_desired: u32,
    target_per_instance: f64,
    settings: &ForecastSettings,
) -> ForecastSizing {
    let base = ForecastSizing {
        desired: None,
        current_desired,
        sized_load: None,
        target_per_instance,
        forecast: None,
        fit_error_limit: settings.max_fit_error,
        fallback: None,
        why: String::new(),
    };
    if !(target_per_instance.is_finite() && target_per_instance > 0.0) {
        let fb = Fallback::InvalidInput {
            detail: format!("target per instance {target_per_instance} must be a positive number"),
        };
        return ForecastSizing {
            why: format!("forecast not used: {}", describe(&fb)),
            fallback: Some(fb),
            ..base
        };
    }
    match forecast(history, settings) {
        Err(fb) => ForecastSizing {
            why: format!(
                "forecast not used, severity step instead: {}",
                describe(&fb)
            ),
            fallback: Some(fb),
            ..base
        },
        Ok(f) => {
            let load = f.latest.max(f.peak).max(0.0);
            // A hair below before rounding up, so 7 × 60 / 60 is 7, not 8.
            let desired = (load / target_per_instance - 1e-9)
                .ceil()
                .clamp(0.0, f64::from(u32::MAX)) as u32;
            let why = format!(
                "Holt-Winters (α {} β {} γ {}) on {} steps: fit error {:.3} ≤ {:.3} on the last \
                 {} steps held out; load now {}, forecast peak {} over the next {} steps; \
                 ceil({} / {} per instance) = {desired} (now {current_desired})",
                f.alpha,
                f.beta,
                f.gamma,
                f.history_steps,
                f.fit_error,
                settings.max_fit_error,
                settings.holdout_steps,
                num(f.latest),
                num(f.peak),
                settings.horizon_steps,
                num(load),
                num(target_per_instance),
            );
            ForecastSizing {
                desired: Some(desired),
                sized_load: Some(load),
                forecast: Some(f),
                why,
                ..base
            }
        }
    }
}

fn describe(fb: &Fallback) -> String {
    match fb {
        Fallback::TooLittleHistory { have, need } => {
            format!("too little history ({have} steps, {need} needed)")
        }
        Fallback::GapInHistory { steps } => format!("a gap of {steps} steps in the history"),
        Fallback::FitErrorTooHigh { error, limit } => {
            format!("fit error {error:.3} on held-out recent history above the limit {limit:.3}")
        }
        Fallback::InvalidInput { detail } => detail.clone(),
    }
}

/// The history on a regular grid ending at its last datapoint, oldest first.
fn regular_grid(history: &[Point], step: i64, max_gap: usize) -> Result<Vec<f64>, Fallback> {
    let points: Vec<&Point> = history.iter().filter(|p| p.value.is_finite()).collect();
    let (Some(first), Some(last)) = (
        points.iter().map(|p| p.at).min(),
        points.iter().map(|p| p.at).max(),
    ) else {
        return Err(Fallback::TooLittleHistory { have: 0, need: 1 });
    };
    // Slots count back from the newest point, so the newest is always a full slot.
    let slots = ((last - first) / step) as usize + 1;
    let mut sum = vec![0.0; slots];
    let mut count = vec![0u32; slots];
    for p in points {
        let back = ((last - p.at) / step) as usize;
        if let Some(i) = slots.checked_sub(back + 1) {
            if let (Some(s), Some(c)) = (sum.get_mut(i), count.get_mut(i)) {
                *s += p.value;
                *c += 1;
            }
        }
    }
    let mut out: Vec<Option<f64>> = sum
        .iter()
        .zip(&count)
        .map(|(s, c)| (*c > 0).then(|| s / f64::from(*c)))
        .collect();
    // Fill short gaps linearly; refuse long ones.
    let mut i = 0;
    while i < out.len() {
        if out.get(i).copied().flatten().is_some() {
            i += 1;
            continue;
        }
        let start = i;
        while i < out.len() && out.get(i).copied().flatten().is_none() {
            i += 1;
        }
        let len = i - start;
        if len > max_gap {
            return Err(Fallback::GapInHistory { steps: len });
        }
        // The first slot always has a value (it holds the oldest point), as does the last.
        let (Some(Some(a)), Some(Some(b))) = (
            start.checked_sub(1).and_then(|j| out.get(j).copied()),
            out.get(i).copied(),
        ) else {
            return Err(Fallback::GapInHistory { steps: len });
        };
        for (k, slot) in out.iter_mut().enumerate().skip(start).take(len) {
            let t = (k - start + 1) as f64 / (len + 1) as f64;
            *slot = Some(a + (b - a) * t);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// Holt-Winters additive state after a fit.
struct HoltWinters {
    level: f64,
    trend: f64,
    season: Vec<f64>,
    /// Index in `season` of the next step.
    next: usize,
    /// Sum of squared one-step errors over the fit (after the first season).
    sse: f64,
}

impl HoltWinters {
    /// Fits on `y` (at least two seasons of `m` steps; the caller checks).
    fn fit(y: &[f64], m: usize, alpha: f64, beta: f64, gamma: f64) -> Self {
        let m = m.max(1);
        let first = y.get(..m).unwrap_or(y);
        let second = y.get(m..2 * m).unwrap_or(first);
        let mean1 = mean(first);
        let mean2 = mean(second);
        let mut level = mean1;
        let mut trend = (mean2 - mean1) / m as f64;
        let mut season: Vec<f64> = first.iter().map(|v| v - mean1).collect();
        season.resize(m, 0.0);
        let mut sse = 0.0;
        for (t, &v) in y.iter().enumerate().skip(m) {
            let i = t % m;
            let s = season.get(i).copied().unwrap_or(0.0);
            let predicted = level + trend + s;
            sse += (v - predicted).powi(2);
            let new_level = alpha * (v - s) + (1.0 - alpha) * (level + trend);
            trend = beta * (new_level - level) + (1.0 - beta) * trend;
            level = new_level;
            if let Some(slot) = season.get_mut(i) {
                *slot = gamma * (v - level) + (1.0 - gamma) * s;
            }
        }
        Self {
            level,
            trend,
            season,
            next: y.len() % m,
            sse,
        }
    }

    fn forecast(&self, steps: usize) -> Vec<f64> {
        let m = self.season.len().max(1);
        (1..=steps)
            .map(|h| {
                let s = self
                    .season
                    .get((self.next + h - 1) % m)
                    .copied()
                    .unwrap_or(0.0);
                self.level + h as f64 * self.trend + s
            })
            .collect()
    }
}

fn best_constants(train: &[f64], m: usize) -> (f64, f64, f64) {
    let mut best = GRID[0];
    let mut best_sse = f64::INFINITY;
    for &(a, b, g) in &GRID {
        let sse = HoltWinters::fit(train, m, a, b, g).sse;
        if sse < best_sse {
            best_sse = sse;
            best = (a, b, g);
        }
    }
    best
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn num(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STEP: i64 = 300;
    const M: i64 = 288;

    /// `n` 5-minute points ending at t = n·STEP: a daily sine around `base` plus `slope` per step.
    fn daily(n: i64, base: f64, amplitude: f64, slope: f64) -> Vec<Point> {
        (0..n)
            .map(|i| {
                let phase = (i % M) as f64 / M as f64 * std::f64::consts::TAU;
                Point::new(i * STEP, base + amplitude * phase.sin() + slope * i as f64)
            })
            .collect()
    }

    #[test]
    fn learns_a_clean_daily_cycle() {
        let h = daily(3 * M, 100.0, 50.0, 0.0);
        let f = forecast(&h, &ForecastSettings::default()).unwrap();
        assert!(f.fit_error < 0.02, "{f:?}");
        // Next 6 steps continue the sine from where it left off (start of a new day).
        for (k, v) in f.values.iter().enumerate() {
            let phase = (k as f64 + 0.0) / M as f64 * std::f64::consts::TAU;
            let want = 100.0 + 50.0 * phase.sin();
            assert!((v - want).abs() < 3.0, "step {k}: {v} vs {want}");
        }
    }

    #[test]
    fn sizing_table() {
        let s = ForecastSettings::default();
        // Rising part of the day: the forecast peak is above the latest value.
        let rising: Vec<Point> = daily(3 * M + 10, 300.0, 200.0, 0.0);
        type Case = (
            &'static str,
            Vec<Point>,
            f64,
            Option<u32>,
            Option<&'static str>,
        );
        let cases: [Case; 5] = [
            (
                "flat 420 at 60 per instance",
                (0..3 * M).map(|i| Point::new(i * STEP, 420.0)).collect(),
                60.0,
                Some(7),
                None,
            ),
            (
                "too short",
                daily(M, 100.0, 10.0, 0.0),
                60.0,
                None,
                Some("too-little-history"),
            ),
            (
                "bad target",
                daily(3 * M, 100.0, 10.0, 0.0),
                0.0,
                None,
                Some("invalid-input"),
            ),
            (
                "a step change at the end breaks the fit",
                {
                    let mut h = daily(3 * M, 100.0, 10.0, 0.0);
                    for p in h.iter_mut().rev().take(12) {
                        p.value *= 3.0;
                    }
                    h
                },
                60.0,
                None,
                Some("fit-error-too-high"),
            ),
            ("rising: sized above the latest", rising, 100.0, None, None),
        ];
        for (name, h, target, want, fallback) in cases {
            let r = forecast_capacity(&h, 5, target, &s);
            if let Some(code) = fallback {
                let fb = serde_json::to_value(r.fallback.as_ref().unwrap()).unwrap();
                assert_eq!(fb["reason"], code, "{name}: {}", r.why);
                assert_eq!(r.desired, None, "{name}");
                assert!(r.why.contains("not used"), "{name}: {}", r.why);
            } else {
                assert!(r.fallback.is_none(), "{name}: {}", r.why);
                let f = r.forecast.as_ref().unwrap();
                if let Some(d) = want {
                    assert_eq!(r.desired, Some(d), "{name}: {}", r.why);
                } else {
                    assert!(f.peak > f.latest, "{name}: {f:?}");
                    let d = r.desired.unwrap();
                    assert!(f64::from(d) * target >= f.peak, "{name}: {}", r.why);
                }
                assert!(r.why.contains("fit error"), "{name}: {}", r.why);
            }
        }
    }

    #[test]
    fn short_gaps_are_filled_and_long_gaps_refused() {
        let mut h = daily(3 * M, 100.0, 20.0, 0.0);
        h.retain(|p| !(p.at / STEP == 400 || p.at / STEP == 401));
        assert!(forecast(&h, &ForecastSettings::default()).is_ok());
        h.retain(|p| !(500..510).contains(&(p.at / STEP)));
        assert!(matches!(
            forecast(&h, &ForecastSettings::default()),
            Err(Fallback::GapInHistory { steps: 10 })
        ));
    }

    #[test]
    fn grid_averages_points_in_a_slot() {
        let h = [
            Point::new(-50, 1.0),
            Point::new(0, 3.0),
            Point::new(300, 5.0),
            Point::new(600, 7.0),
        ];
        assert_eq!(regular_grid(&h, 300, 3).unwrap(), vec![2.0, 5.0, 7.0]);
    }

    proptest! {
        #[test]
        fn never_panics_and_desired_covers_the_sized_load(
            base in 0f64..1e4, amp in 0f64..1e3, slope in -0.5f64..0.5,
            target in 0.1f64..1e3, days in 1i64..4,
        ) {
            let h = daily(days * M + 5, base + amp, amp, slope);
            let r = forecast_capacity(&h, 3, target, &ForecastSettings::default());
            let again = forecast_capacity(&h, 3, target, &ForecastSettings::default());
            prop_assert_eq!(&r, &again);
            if let (Some(d), Some(load)) = (r.desired, r.sized_load) {
                prop_assert!(f64::from(d) * target >= load - 1e-6 * load.abs().max(1.0));
                prop_assert!(f64::from(d) * target < load + target + 1e-6);
            } else {
                prop_assert!(r.fallback.is_some());
            }
        }
    }
}
