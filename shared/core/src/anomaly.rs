//! The anomaly gate: is the value that made an alarm fire abnormal for this metric at this
//! time of day and week, or a pattern the metric shows every day (nightly batch) or every
//! week (Monday-morning peak)?
//!
//! Pure and deterministic: plain numbers in, an [`Assessment`] with every number behind the
//! judgement out. No AWS here (the history arrives through the metric-history port); the
//! evaluation harness (`eval/`) replays synthetic and real labelled traces through it.
//!
//! **Short histories.** A season counts only with at least `min_reference` (5) datapoints in
//! its reference windows; with neither season counting the judgement is
//! [`Judgement::TooLittleHistory`] and the caller acts as without the gate. At a 5-minute
//! period the daily season counts from the second day (±15 minutes holds 7 datapoints a day),
//! the weekly one from the second week; at a 1-hour period the daily season needs 5 days.
//! With only the daily season the score is its score (the weekly season cannot veto).
//!
//! ## Method: seasonal median + MAD robust z-score, two seasons, the milder one wins
//!
//! For the alarm time `t`, two reference sets are read from the history:
//!
//! * **daily**: every datapoint within ±`tolerance` of `t − k·1 day`, `k = 1..=days`;
//! * **weekly**: every datapoint within ±`tolerance` of `t − k·1 week`, `k = 1..=weeks`.
//!
//! For each set, the baseline is the median and the spread the median absolute deviation
//! (scaled by 1.4826 so it estimates a standard deviation for normal noise), floored at
//! `min_scale_fraction × |baseline|` so a flat metric does not turn every wobble into an
//! infinite score. The current value is the median of the breaching datapoints; its score
//! for a set is `(current − baseline) / scale`, signed so that positive points in the
//! alarm's direction. The gate score is the **smaller** of the two scores: a value is
//! abnormal only when it is abnormal both against the same time yesterday (and the days
//! before) and against the same time last week (and the weeks before). A Monday peak is
//! unusual against Sunday but normal against last Monday; a steady trend makes last month's
//! Mondays look low but yesterday looks alike; an incident is unusual against both.
//!
//! Why this and not an isolation forest or a learned model: the median and MAD stay put when
//! up to half the reference points are themselves incidents (past outages do not teach the
//! gate that outages are normal); there is nothing to train or store (the history is read
//! at alarm time); the result is three numbers a person can check by hand (baseline,
//! spread, score against a threshold); and it costs microseconds.

use serde::Serialize;

pub const DAY: i64 = 86_400;
pub const WEEK: i64 = 7 * DAY;

/// Normal-consistency constant: MAD × 1.4826 estimates σ for Gaussian noise.
const MAD_TO_SIGMA: f64 = 1.4826;

/// One datapoint of a metric: Unix seconds and value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub at: i64,
    pub value: f64,
}

impl Point {
    pub fn new(at: i64, value: f64) -> Self {
        Self { at, value }
    }
}

/// Which way the alarm looks: values above its threshold, or below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Above,
    Below,
}

impl Direction {
    /// From a CloudWatch comparison operator; `None` for band comparisons (either side).
    pub fn from_comparison(op: &str) -> Option<Self> {
        if op.contains("Lower") && op.contains("Upper") {
            None
        } else if op.contains("GreaterThan") {
            Some(Self::Above)
        } else if op.contains("LessThan") {
            Some(Self::Below)
        } else {
            None
        }
    }

    fn sign(self) -> f64 {
        match self {
            Self::Above => 1.0,
            Self::Below => -1.0,
        }
    }
}

/// Whether the gate is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateMode {
    /// Not abnormal → skip with "expected pattern".
    On,
    /// Assess and audit the assessment, but act as without the gate (to try it out safely).
    Shadow,
    /// Not consulted; no history is fetched.
    Off,
}

/// Settings of the gate. Defaults are the ones the evaluation harness reports on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateSettings {
    /// `SELFHEAL_ANOMALY_GATE`: `on` (default), `shadow` or `off`.
    pub mode: GateMode,
    /// `SELFHEAL_ANOMALY_SENSITIVITY`: robust z-score at or beyond which a value is abnormal
    /// (default 1.0; named levels `high` = 2.0, `medium` = 2.5, `low` = 3.5 let fewer alarms
    /// through). Lower lets more alarms through. The default is the evaluation's tuning rule
    /// applied to its tuning seeds only (`make eval`, "Tuning" in eval/results/RESULTS.md):
    /// of the z values tried, the one with the fewest false actions among those that keep at
    /// least 95 % of the alarm's own recall. A missed incident costs an outage; an extra
    /// reboot is still bounded by the guardrails.
    pub z_threshold: f64,
    /// `SELFHEAL_ANOMALY_DAYS`: previous days read for the daily reference (default 7).
    pub days: u32,
    /// `SELFHEAL_ANOMALY_WEEKS`: previous weeks read for the weekly reference (default 4).
    pub weeks: u32,
    /// Half-width of each reference window around the same time on a previous day or week
    /// (15 minutes).
    pub tolerance_secs: i64,
    /// Fewest reference datapoints a set needs to count (5).
    pub min_reference: usize,
    /// Floor of the spread as a fraction of |baseline| (0.05): a metric that never moves
    /// still tolerates ±5 %·z.
    pub min_scale_fraction: f64,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            mode: GateMode::On,
            z_threshold: 1.0,
            days: 7,
            weeks: 4,
            tolerance_secs: 15 * 60,
            min_reference: 5,
            min_scale_fraction: 0.05,
        }
    }
}

/// A gate setting with a value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?} is not valid: expected {expected}")]
pub struct GateConfigError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl GateSettings {
    /// Reads the settings through `get` (the environment in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, GateConfigError> {
        let mut s = Self::default();
        let read = |name: &'static str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = read("SELFHEAL_ANOMALY_GATE") {
            s.mode = match v.to_ascii_lowercase().as_str() {
                "on" | "true" | "1" | "yes" => GateMode::On,
                "shadow" => GateMode::Shadow,
                "off" | "false" | "0" | "no" => GateMode::Off,
                _ => {
                    return Err(GateConfigError {
                        name: "SELFHEAL_ANOMALY_GATE",
                        value: v,
                        expected: "on, shadow or off",
                    })
                }
            };
        }
        if let Some(v) = read("SELFHEAL_ANOMALY_SENSITIVITY") {
            s.z_threshold = match v.to_ascii_lowercase().as_str() {
                "high" => 2.0,
                "medium" => 2.5,
                "low" => 3.5,
                other => match other.parse::<f64>() {
                    Ok(z) if z.is_finite() && z > 0.0 => z,
                    _ => {
                        return Err(GateConfigError {
                            name: "SELFHEAL_ANOMALY_SENSITIVITY",
                            value: v,
                            expected: "a robust z-score > 0, or high, medium or low",
                        })
                    }
                },
            };
        }
        for (name, field) in [
            ("SELFHEAL_ANOMALY_DAYS", &mut s.days),
            ("SELFHEAL_ANOMALY_WEEKS", &mut s.weeks),
        ] {
            if let Some(v) = read(name) {
                *field = match v.parse::<u32>() {
                    Ok(n) if n <= 60 => n,
                    _ => {
                        return Err(GateConfigError {
                            name,
                            value: v,
                            expected: "a whole number from 0 to 60",
                        })
                    }
                };
            }
        }
        Ok(s)
    }

    /// How far back the gate reads: the oldest reference window's start.
    pub fn lookback_secs(&self) -> i64 {
        (i64::from(self.days) * DAY).max(i64::from(self.weeks) * WEEK) + self.tolerance_secs
    }

    /// The reference windows `(start, end)` (Unix seconds, inclusive) around `at`, newest
    /// first: what the history port must fetch. Days that coincide with a week are listed once.
    pub fn reference_windows(&self, at: i64) -> Vec<(i64, i64)> {
        let mut lags: Vec<i64> = (1..=i64::from(self.days)).map(|k| k * DAY).collect();
        lags.extend((1..=i64::from(self.weeks)).map(|k| k * WEEK));
        lags.sort_unstable();
        lags.dedup();
        lags.into_iter()
            .map(|lag| {
                (
                    at - lag - self.tolerance_secs,
                    at - lag + self.tolerance_secs,
                )
            })
            .collect()
    }
}

/// The gate's judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Judgement {
    /// Abnormal for this time of day and week: act.
    Anomalous,
    /// Within what this metric does at this time: skip.
    Expected,
    /// Not enough history to tell: act as without the gate.
    TooLittleHistory,
}

/// The score against one seasonal reference set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeasonScore {
    /// `daily` or `weekly`.
    pub season: &'static str,
    /// Reference datapoints found.
    pub points: usize,
    /// Previous days (or weeks) that contributed at least one datapoint.
    pub periods: usize,
    /// Median of the reference datapoints.
    pub baseline: f64,
    /// 1.4826 × MAD, floored.
    pub scale: f64,
    /// Robust z-score of the current value, positive in the alarm's direction.
    pub score: f64,
    /// The value at which the score reaches the threshold: the edge of the normal band.
    pub band_edge: f64,
}

/// Everything behind one gate judgement, for the audit record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub judgement: Judgement,
    /// Median of the breaching datapoints (what was scored).
    pub current: Option<f64>,
    /// The gate score: the smaller of the seasonal scores.
    pub score: Option<f64>,
    /// Baseline of the season that decided (the one with the smaller score).
    pub baseline: Option<f64>,
    /// The z-score threshold.
    pub threshold: f64,
    /// The value the current one had to reach to count as abnormal (deciding season).
    pub band_edge: Option<f64>,
    /// `daily` or `weekly`: which season decided.
    pub deciding: Option<&'static str>,
    pub seasons: Vec<SeasonScore>,
    pub direction: Direction,
    /// One sentence for people.
    pub why: String,
}

/// Scores the breaching datapoints against the seasonal baselines in `history`.
///
/// `breaching` are the values that made the alarm fire (from the alarm's reason data); when
/// empty, the history's datapoints in the last `tolerance` before `at` stand in for them.
/// `history` need not be sorted and may hold anything (recent hours, other windows): only
/// points in the reference windows are used.
pub fn assess(
    at: i64,
    breaching: &[f64],
    history: &[Point],
    direction: Direction,
    settings: &GateSettings,
) -> Assessment {
    let threshold = settings.z_threshold;
    let mut current_values: Vec<f64> = breaching
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if current_values.is_empty() {
        current_values = history
            .iter()
            .filter(|p| p.at <= at && at - p.at <= settings.tolerance_secs && p.value.is_finite())
            .map(|p| p.value)
            .collect();
    }
    let current = median(&mut current_values);
    let mut daily = Vec::new();
    let mut weekly = Vec::new();
    let (mut daily_periods, mut weekly_periods) = (0u64, 0u64);
    for p in history.iter().filter(|p| p.value.is_finite() && p.at < at) {
        let d = at - p.at;
        if let Some(k) = lag_index(d, DAY, settings.days, settings.tolerance_secs) {
            daily.push(p.value);
            daily_periods |= 1 << k.min(63);
        }
        if let Some(k) = lag_index(d, WEEK, settings.weeks, settings.tolerance_secs) {
            weekly.push(p.value);
            weekly_periods |= 1 << k.min(63);
        }
    }
    let mut seasons = Vec::new();
    if let Some(c) = current {
        for (season, values, periods) in [
            ("daily", &mut daily, daily_periods),
            ("weekly", &mut weekly, weekly_periods),
        ] {
            if values.len() < settings.min_reference.max(1) {
                continue;
            }
            if let Some(s) = season_score(
                season,
                values,
                periods.count_ones() as usize,
                c,
                direction,
                settings,
            ) {
                seasons.push(s);
            }
        }
    }
    let deciding = seasons
        .iter()
        .min_by(|a, b| a.score.total_cmp(&b.score))
        .cloned();
    let (judgement, why) = match (current, &deciding) {
        (None, _) => (
            Judgement::TooLittleHistory,
            "no breaching datapoint to score: acting as without the gate".to_string(),
        ),
        (Some(_), None) => (
            Judgement::TooLittleHistory,
            format!(
                "too little history: {} daily and {} weekly reference datapoints, {} needed \
                 in at least one: acting as without the gate",
                daily.len(),
                weekly.len(),
                settings.min_reference
            ),
        ),
        (Some(c), Some(s)) => {
            let others = seasons
                .iter()
                .filter(|o| o.season != s.season)
                .map(|o| {
                    format!(
                        "; {} score {:.2} (baseline {})",
                        o.season,
                        o.score,
                        num(o.baseline)
                    )
                })
                .collect::<String>();
            let judgement = if s.score >= threshold {
                Judgement::Anomalous
            } else {
                Judgement::Expected
            };
            let verdict = match judgement {
                Judgement::Anomalous => "abnormal",
                _ => "an expected pattern",
            };
            (
                judgement,
                format!(
                    "value {} is {verdict}: {} score {:.2} {} threshold {:.2} (baseline {} ± {} \
                     from {} points over {} {}, normal up to {}){others}",
                    num(c),
                    s.season,
                    s.score,
                    if s.score >= threshold { "≥" } else { "<" },
                    threshold,
                    num(s.baseline),
                    num(s.scale),
                    s.points,
                    s.periods,
                    if s.season == "daily" { "days" } else { "weeks" },
                    num(s.band_edge),
                ),
            )
        }
    };
    Assessment {
        judgement,
        current,
        score: deciding.as_ref().map(|s| s.score),
        baseline: deciding.as_ref().map(|s| s.baseline),
        threshold,
        band_edge: deciding.as_ref().map(|s| s.band_edge),
        deciding: deciding.as_ref().map(|s| s.season),
        seasons,
        direction,
        why,
    }
}

/// `Some(k)` when `d` seconds ago lies within `tol` of `k` whole `lag`s, `1 ≤ k ≤ count`.
fn lag_index(d: i64, lag: i64, count: u32, tol: i64) -> Option<u32> {
    if d <= 0 || count == 0 {
        return None;
    }
    let k = (d + lag / 2) / lag;
    (k >= 1 && k <= i64::from(count) && (d - k * lag).abs() <= tol).then_some(k as u32)
}

fn season_score(
    season: &'static str,
    values: &mut [f64],
    periods: usize,
    current: f64,
    direction: Direction,
    settings: &GateSettings,
) -> Option<SeasonScore> {
    let baseline = median(values)?;
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - baseline).abs()).collect();
    let mad = median(&mut deviations)?;
    let scale = (MAD_TO_SIGMA * mad)
        .max(settings.min_scale_fraction * baseline.abs())
        .max(1e-9);
    let sign = direction.sign();
    let score = sign * (current - baseline) / scale;
    Some(SeasonScore {
        season,
        points: values.len(),
        periods,
        baseline,
        scale,
        score,
        band_edge: baseline + sign * settings.z_threshold * scale,
    })
}

/// Median by selection (O(n)); reorders `v`. `None` for an empty slice.
pub fn median(v: &mut [f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lower, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if n % 2 == 1 {
        Some(m)
    } else {
        let below = lower.iter().copied().max_by(f64::total_cmp)?;
        Some((below + m) / 2.0)
    }
}

/// A number as people read it: at most three decimals, no trailing zeros.
fn num(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: i64 = 1_800_000_000; // a Friday, 2027-01-15 08:00 UTC

    /// `days` days and `weeks` weeks of 5-minute history: `f(seconds_before_t)`.
    fn history(f: impl Fn(i64) -> f64) -> Vec<Point> {
        (1..=(29 * DAY / 300))
            .map(|i| {
                let at = T - i * 300;
                Point::new(at, f(T - at))
            })
            .collect()
    }

    #[test]
    fn median_table() {
        let cases: [(&[f64], Option<f64>); 5] = [
            (&[], None),
            (&[3.0], Some(3.0)),
            (&[3.0, 1.0], Some(2.0)),
            (&[5.0, 1.0, 3.0], Some(3.0)),
            (&[4.0, 1.0, 3.0, 100.0], Some(3.5)),
        ];
        for (v, want) in cases {
            assert_eq!(median(&mut v.to_vec()), want, "{v:?}");
        }
    }

    #[test]
    fn lag_index_table() {
        let tol = 900;
        let cases = [
            (DAY, Some(1)),
            (DAY + 900, Some(1)),
            (DAY - 900, Some(1)),
            (DAY + 901, None),
            (3 * DAY + 60, Some(3)),
            (8 * DAY, None), // beyond 7 days
            (300, None),
            (0, None),
            (-DAY, None),
        ];
        for (d, want) in cases {
            assert_eq!(lag_index(d, DAY, 7, tol), want, "{d}");
        }
    }

    #[test]
    fn judgement_table() {
        let s = GateSettings::default();
        // Flat 40 with ±2 wobble.
        let flat = history(|d| 40.0 + ((d / 300) % 5) as f64 - 2.0);
        // A nightly batch: 90 at this hour every day, 30 otherwise.
        let nightly = history(|d| {
            if (d % DAY) < 3600 || (d % DAY) > DAY - 3600 {
                90.0 + ((d / 300) % 3) as f64
            } else {
                30.0
            }
        });
        // A weekly peak: 88 at this time on this weekday, 25 on other days at this time.
        let weekly = history(|d| {
            if (d % WEEK) < 3600 || (d % WEEK) > WEEK - 3600 {
                88.0 + ((d / 300) % 3) as f64
            } else {
                25.0 + ((d / 300) % 3) as f64
            }
        });
        type Case<'a> = (
            &'a str,
            &'a [f64],
            &'a [Point],
            Direction,
            Judgement,
            Option<&'a str>,
        );
        let cases: [Case; 8] = [
            (
                "incident on a flat metric",
                &[97.0, 98.0],
                &flat,
                Direction::Above,
                Judgement::Anomalous,
                Some("daily"),
            ),
            (
                "nightly batch at its usual level",
                &[91.0, 92.0],
                &nightly,
                Direction::Above,
                Judgement::Expected,
                None,
            ),
            (
                "batch hour but far above it",
                &[100.0 * 10.0],
                &nightly,
                Direction::Above,
                Judgement::Anomalous,
                None,
            ),
            (
                "weekly peak: odd against days, normal against weeks",
                &[89.0, 90.0],
                &weekly,
                Direction::Above,
                Judgement::Expected,
                Some("weekly"),
            ),
            (
                "drop on a Below alarm",
                &[2.0],
                &flat,
                Direction::Below,
                Judgement::Anomalous,
                None,
            ),
            (
                "rise on a Below alarm is not abnormal",
                &[97.0],
                &flat,
                Direction::Below,
                Judgement::Expected,
                None,
            ),
            (
                "no history",
                &[97.0],
                &[],
                Direction::Above,
                Judgement::TooLittleHistory,
                None,
            ),
            (
                "no breaching value and no recent history",
                &[],
                &flat,
                Direction::Above,
                Judgement::Expected,
                None,
            ),
        ];
        for (name, breaching, hist, dir, want, deciding) in cases {
            let a = assess(T, breaching, hist, dir, &s);
            assert_eq!(a.judgement, want, "{name}: {}", a.why);
            if let Some(d) = deciding {
                assert_eq!(a.deciding, Some(d), "{name}: {}", a.why);
            }
            if want != Judgement::TooLittleHistory {
                assert!(
                    a.score.is_some() && a.baseline.is_some() && a.band_edge.is_some(),
                    "{name}"
                );
                assert!(a.why.contains("score"), "{name}: {}", a.why);
            } else {
                assert!(
                    a.why.contains("acting as without the gate"),
                    "{name}: {}",
                    a.why
                );
            }
        }
    }

    #[test]
    fn too_little_history_when_only_recent_hours_exist() {
        let recent: Vec<Point> = (1..=36).map(|i| Point::new(T - i * 300, 40.0)).collect();
        let a = assess(
            T,
            &[97.0],
            &recent,
            Direction::Above,
            &GateSettings::default(),
        );
        assert_eq!(a.judgement, Judgement::TooLittleHistory);
        assert!(a.why.contains("too little history"), "{}", a.why);
    }

    #[test]
    fn past_incidents_in_the_reference_do_not_make_incidents_normal() {
        // Three of seven previous days had an incident at this hour: still a minority.
        let h = history(|d| {
            let day = d / DAY;
            if (d % DAY) < 1800 && [1, 3, 5].contains(&day) {
                97.0
            } else {
                40.0 + ((d / 300) % 4) as f64
            }
        });
        let s = GateSettings {
            weeks: 0,
            ..GateSettings::default()
        };
        let a = assess(T, &[97.0], &h, Direction::Above, &s);
        assert_eq!(a.judgement, Judgement::Anomalous, "{}", a.why);
    }

    #[test]
    fn settings_from_lookup() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            GateSettings::from_lookup(get(&[])).unwrap(),
            GateSettings::default()
        );
        let s = GateSettings::from_lookup(get(&[
            ("SELFHEAL_ANOMALY_GATE", "shadow"),
            ("SELFHEAL_ANOMALY_SENSITIVITY", "high"),
            ("SELFHEAL_ANOMALY_DAYS", "3"),
        ]))
        .unwrap();
        assert_eq!(
            (s.mode, s.z_threshold, s.days, s.weeks),
            (GateMode::Shadow, 2.0, 3, 4)
        );
        assert_eq!(
            GateSettings::from_lookup(get(&[("SELFHEAL_ANOMALY_SENSITIVITY", "1.7")]))
                .unwrap()
                .z_threshold,
            1.7
        );
        for bad in [
            &[("SELFHEAL_ANOMALY_GATE", "maybe")][..],
            &[("SELFHEAL_ANOMALY_SENSITIVITY", "-1")][..],
            &[("SELFHEAL_ANOMALY_SENSITIVITY", "NaN")][..],
            &[("SELFHEAL_ANOMALY_DAYS", "many")][..],
        ] {
            let pairs: &'static [(&str, &str)] = bad;
            assert!(GateSettings::from_lookup(get(pairs)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reference_windows_cover_days_and_weeks_once() {
        let s = GateSettings::default();
        let w = s.reference_windows(T);
        // 7 days + weeks 2..4 (week 1 is day 7).
        assert_eq!(w.len(), 10);
        assert_eq!(w[0], (T - DAY - 900, T - DAY + 900));
        assert_eq!(w[9], (T - 4 * WEEK - 900, T - 4 * WEEK + 900));
        assert_eq!(s.lookback_secs(), 4 * WEEK + 900);
    }

    proptest! {
        #[test]
        fn assess_never_panics_and_is_deterministic(
            values in proptest::collection::vec(-1e6f64..1e6, 0..400),
            breaching in proptest::collection::vec(-1e6f64..1e6, 0..4),
            spacing in 60i64..4000,
        ) {
            let hist: Vec<Point> = values.iter().enumerate().map(|(i, v)| Point::new(T - (i as i64 + 1) * spacing * 20, *v)).collect();
            let a = assess(T, &breaching, &hist, Direction::Above, &GateSettings::default());
            let b = assess(T, &breaching, &hist, Direction::Above, &GateSettings::default());
            prop_assert_eq!(&a, &b);
            if let (Some(score), Some(j)) = (a.score, Some(a.judgement)) {
                prop_assert!(score.is_finite());
                prop_assert_eq!(j == Judgement::Anomalous, score >= a.threshold);
            }
        }

        #[test]
        fn higher_values_never_lower_the_score(base in 0f64..100.0, bump in 0f64..50.0) {
            let h = history(|d| base + ((d / 300) % 7) as f64);
            let s = GateSettings::default();
            let lo = assess(T, &[base + 10.0], &h, Direction::Above, &s).score;
            let hi = assess(T, &[base + 10.0 + bump], &h, Direction::Above, &s).score;
            prop_assert!(hi >= lo);
        }
    }
}
