//! The synthetic evaluation of the gate: seeded CPU traces with labelled incidents, every
//! detector tuned on the tuning seeds by one rule, then frozen and run on the reported seeds,
//! with bootstrap confidence intervals over traces.
//!
//! **The tuning rule** (the same for every detector family): among a family's settings, keep
//! those whose recall on the tuning seeds is at least 95 % of the best recall any setting of
//! that family reaches there, and pick the one with the fewest false actions per week (ties:
//! higher recall). For the gate, the family is "the alarm it sits on, with the gate at each
//! sensitivity", so the rule keeps 95 % of the alarm's own recall.

use std::fmt::Write as _;
use std::ops::Range;

use selfheal_core::anomaly::{Direction, GateSettings, Point};

use crate::detect::{self, Alarm, References, Rule};
use crate::nab::{iso, Series};
use crate::rng::Rng;
use crate::traces::{self, Trace, STEPS_PER_WEEK};

/// How big a run is.
#[derive(Debug, Clone)]
pub struct Config {
    pub seeds: Range<u64>,
    pub tuning_seeds: Range<u64>,
    pub weeks: usize,
    pub warmup_weeks: usize,
    /// Bootstrap resamples for the intervals (0: no intervals).
    pub resamples: usize,
    /// Also tune and run the seasonal band and last-week baselines.
    pub baselines: bool,
}

impl Config {
    /// What `make eval` runs.
    pub fn full() -> Self {
        Self {
            seeds: 0..30,
            tuning_seeds: 1000..1020,
            weeks: 10,
            warmup_weeks: 4,
            resamples: 1000,
            baselines: true,
        }
    }
}

/// A detector setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting {
    /// Above `threshold` % for `datapoints` of `datapoints`.
    Static {
        threshold: f64,
        datapoints: usize,
    },
    /// That alarm, with the gate at sensitivity `z` (`None`: the shipped default).
    Gated {
        threshold: f64,
        datapoints: usize,
        z: f64,
    },
    Band {
        width: f64,
        datapoints: usize,
    },
    LastWeek {
        change: f64,
        datapoints: usize,
    },
}

impl Setting {
    pub fn describe(&self) -> String {
        match *self {
            Setting::Static {
                threshold,
                datapoints,
            } => format!("static > {threshold} %, {datapoints} of {datapoints}"),
            Setting::Gated {
                threshold,
                datapoints,
                z,
            } => format!("static > {threshold} %, {datapoints} of {datapoints} + gate z {z}"),
            Setting::Band { width, datapoints } => {
                format!("seasonal band ± {width} σ, {datapoints} of {datapoints}")
            }
            Setting::LastWeek { change, datapoints } => format!(
                "last week ± {:.0} %, {datapoints} of {datapoints}",
                change * 100.0
            ),
        }
    }
}

/// Counts on one trace (or summed over traces).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub actions: usize,
    pub false_actions: usize,
    pub incidents: usize,
    pub caught: usize,
    /// Incidents the underlying alarm fired for (with or without the gate).
    pub alarmed: usize,
    pub weeks: f64,
    pub delay_minutes: f64,
    /// (incidents, caught) per kind, in the order of `KINDS`.
    pub by_kind: [(usize, usize); 4],
}

/// The incident kinds (see `traces`).
pub const KINDS: [&str; 4] = ["peg", "degradation", "level-shift", "overrun"];

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.actions += o.actions;
        self.false_actions += o.false_actions;
        self.incidents += o.incidents;
        self.caught += o.caught;
        self.alarmed += o.alarmed;
        self.weeks += o.weeks;
        self.delay_minutes += o.delay_minutes;
        for (a, b) in self.by_kind.iter_mut().zip(o.by_kind) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }
    pub fn precision(&self) -> f64 {
        ratio(self.actions - self.false_actions, self.actions)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.caught, self.incidents)
    }
    pub fn alarmed_recall(&self) -> f64 {
        ratio(self.caught, self.alarmed)
    }
    pub fn false_per_week(&self) -> f64 {
        if self.weeks > 0.0 {
            self.false_actions as f64 / self.weeks
        } else {
            0.0
        }
    }
    pub fn mean_delay(&self) -> Option<f64> {
        (self.caught > 0).then(|| self.delay_minutes / self.caught as f64)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// One trace, ready to replay.
pub struct Prepared {
    pub trace: Trace,
    pub series: Series,
    pub refs: Option<References>,
    pub from: usize,
    /// Gated alarms of the last static setting asked (the gate's score does not depend on z).
    gated: Option<((f64, usize), Vec<Alarm>)>,
}

impl Prepared {
    pub fn new(scenario: &'static str, seed: u64, cfg: &Config) -> Self {
        let trace = traces::cpu_trace(scenario, seed, cfg.weeks);
        let series = Series {
            category: scenario.to_string(),
            name: format!("seed-{seed}"),
            times: (0..trace.values.len()).map(|i| trace.time(i)).collect(),
            values: trace.values.clone(),
            windows: trace
                .incidents
                .iter()
                .map(|&(a, b)| (a, b.saturating_sub(1).max(a)))
                .collect(),
        };
        let refs = cfg.baselines.then(|| References::new(&series));
        Self {
            trace,
            series,
            refs,
            from: cfg.warmup_weeks * STEPS_PER_WEEK,
            gated: None,
        }
    }

    fn static_alarms(&self, threshold: f64, datapoints: usize) -> Vec<Alarm> {
        let b: Vec<Option<Direction>> = self
            .series
            .values
            .iter()
            .map(|v| (*v > threshold).then_some(Direction::Above))
            .collect();
        detect::alarms(&b, datapoints)
    }

    /// The alarms of `setting` and, for a gated one, the alarm's own transitions.
    pub fn run(&mut self, setting: Setting, gate: &GateSettings) -> (Vec<Alarm>, Vec<Alarm>) {
        match setting {
            Setting::Static {
                threshold,
                datapoints,
            } => {
                let a = self.static_alarms(threshold, datapoints);
                (a.clone(), a)
            }
            Setting::Gated {
                threshold,
                datapoints,
                z,
            } => {
                let key = (threshold, datapoints);
                if self.gated.as_ref().map(|g| g.0) != Some(key) {
                    let mut a = self.static_alarms(threshold, datapoints);
                    // Only alarms in the scored weeks need the gate's judgement.
                    let (early, mut late): (Vec<Alarm>, Vec<Alarm>) =
                        a.drain(..).partition(|x| x.row < self.from);
                    detect::gate(&self.series, &mut late, datapoints, gate);
                    let mut all = early;
                    all.extend(late);
                    self.gated = Some((key, all));
                }
                let base = self.gated.as_ref().map(|g| g.1.clone()).unwrap_or_default();
                (detect::regate(&base, z), base)
            }
            Setting::Band { width, datapoints } => {
                let a = match &self.refs {
                    Some(r) => {
                        detect::alarms(&r.breaches(&self.series, Rule::Band { width }), datapoints)
                    }
                    None => Vec::new(),
                };
                (a.clone(), a)
            }
            Setting::LastWeek { change, datapoints } => {
                let a = match &self.refs {
                    Some(r) => detect::alarms(
                        &r.breaches(&self.series, Rule::LastWeek { change, floor: 0.0 }),
                        datapoints,
                    ),
                    None => Vec::new(),
                };
                let above: Vec<Alarm> = a
                    .into_iter()
                    .filter(|x| x.direction == Direction::Above)
                    .collect();
                (above.clone(), above)
            }
        }
    }

    /// Scores alarms on the scored weeks: an action inside an incident is true; an incident
    /// is caught by its first action inside it.
    pub fn count(&self, acted: &[Alarm], base: &[Alarm]) -> Counts {
        let scored = |a: &&Alarm| a.row >= self.from;
        let actions: Vec<usize> = acted
            .iter()
            .filter(scored)
            .filter(|a| a.acted)
            .map(|a| a.row)
            .collect();
        let fired: Vec<usize> = base.iter().filter(scored).map(|a| a.row).collect();
        let mut c = Counts {
            actions: actions.len(),
            false_actions: actions
                .iter()
                .filter(|r| self.trace.incident_at(**r).is_none())
                .count(),
            weeks: (self.series.len().saturating_sub(self.from)) as f64 / STEPS_PER_WEEK as f64,
            ..Counts::default()
        };
        for (&(a, b), kind) in self
            .trace
            .incidents
            .iter()
            .zip(&self.trace.kinds)
            .filter(|((a, _), _)| *a >= self.from)
        {
            c.incidents += 1;
            let k = KINDS.iter().position(|x| x == kind).unwrap_or(0);
            c.by_kind[k].0 += 1;
            if fired.iter().any(|r| *r >= a && *r < b) {
                c.alarmed += 1;
            }
            if let Some(r) = actions.iter().find(|r| **r >= a && **r < b) {
                c.caught += 1;
                c.by_kind[k].1 += 1;
                c.delay_minutes += ((r - a) * 5) as f64;
            }
        }
        c
    }
}

/// Every scenario's traces for `seeds`.
pub fn prepare(seeds: Range<u64>, cfg: &Config) -> Vec<Prepared> {
    traces::GATE_SCENARIOS
        .iter()
        .flat_map(|s| seeds.clone().map(move |seed| (*s, seed)))
        .map(|(s, seed)| Prepared::new(s, seed, cfg))
        .collect()
}

/// Summed counts of `setting` over `traces`.
pub fn total(traces: &mut [Prepared], setting: Setting, gate: &GateSettings) -> Counts {
    let mut c = Counts::default();
    for p in traces.iter_mut() {
        let (acted, base) = p.run(setting, gate);
        c.add(&p.count(&acted, &base));
    }
    c
}

/// The tuning rule over a family of settings; returns the pick and the whole table.
pub fn tune(
    traces: &mut [Prepared],
    family: &[Setting],
    gate: &GateSettings,
) -> (Option<Setting>, Vec<(Setting, Counts)>) {
    let table: Vec<(Setting, Counts)> = family
        .iter()
        .map(|s| (*s, total(traces, *s, gate)))
        .collect();
    let best = table.iter().map(|(_, c)| c.recall()).fold(0.0, f64::max);
    let pick = table
        .iter()
        .filter(|(_, c)| c.recall() >= 0.95 * best - 1e-12)
        .min_by(|a, b| {
            a.1.false_per_week()
                .total_cmp(&b.1.false_per_week())
                .then(b.1.recall().total_cmp(&a.1.recall()))
        })
        .map(|(s, _)| *s);
    (pick, table)
}

pub fn static_family() -> Vec<Setting> {
    let mut v = Vec::new();
    for threshold in [80.0, 85.0, 88.0, 90.0, 92.0, 93.0, 95.0, 97.0] {
        for datapoints in [1, 2, 3] {
            v.push(Setting::Static {
                threshold,
                datapoints,
            });
        }
    }
    v
}

pub const SENSITIVITIES: [f64; 10] = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.5, 4.5];

pub fn gate_family(threshold: f64, datapoints: usize) -> Vec<Setting> {
    std::iter::once(f64::NEG_INFINITY)
        .chain(SENSITIVITIES)
        .map(|z| Setting::Gated {
            threshold,
            datapoints,
            z,
        })
        .collect()
}

pub fn band_family() -> Vec<Setting> {
    let mut v = Vec::new();
    for width in [2.0, 2.5, 3.0, 4.0, 5.0, 6.0] {
        for datapoints in [2, 3] {
            v.push(Setting::Band { width, datapoints });
        }
    }
    v
}

pub fn last_week_family() -> Vec<Setting> {
    let mut v = Vec::new();
    for change in [0.2, 0.3, 0.5, 0.75, 1.0] {
        for datapoints in [2, 3] {
            v.push(Setting::LastWeek { change, datapoints });
        }
    }
    v
}

/// A reported detector: its label and per-trace counts (scenario index, counts).
pub struct Reported {
    pub label: String,
    pub setting: Setting,
    pub per_trace: Vec<(usize, Counts)>,
}

impl Reported {
    pub fn total(&self, scenario: Option<usize>) -> Counts {
        let mut c = Counts::default();
        for (s, k) in &self.per_trace {
            if scenario.is_none_or(|x| x == *s) {
                c.add(k);
            }
        }
        c
    }
}

/// Everything the synthetic evaluation found.
pub struct Results {
    pub static_tuning: Vec<(Setting, Counts)>,
    pub static_pick: Setting,
    pub gate_tuning: Vec<(Setting, Counts)>,
    /// What the tuning rule picks for the gate's sensitivity (reported: the shipped default).
    pub gate_pick: Option<Setting>,
    pub band_tuning: Vec<(Setting, Counts)>,
    pub last_week_tuning: Vec<(Setting, Counts)>,
    /// 0: static 80 % 2 of 2; 1: + gate; 2: tuned static; 3: + gate; 4: band; 5: last week.
    pub reported: Vec<Reported>,
    /// Reported traces of seed `cfg.seeds.start`, for plots, with the gated tuned alarms.
    pub shown: Vec<(Trace, Vec<Alarm>)>,
    /// (time, breaching, history as fetched) of gated alarms, for the latency bench.
    pub alarm_inputs: Vec<(i64, Vec<f64>, Vec<Point>)>,
    pub cfg: Config,
    /// Raw material beside the tables: (file name, CSV text).
    pub csv: Vec<(&'static str, String)>,
}

pub const UNTUNED: (f64, usize) = (80.0, 2);

pub fn run(cfg: &Config, gate: &GateSettings) -> Results {
    // ---- tuning: the tuning seeds only -------------------------------------------------
    let mut tuning = prepare(cfg.tuning_seeds.clone(), cfg);
    let (static_pick, static_tuning) = tune(&mut tuning, &static_family(), gate);
    let static_pick = static_pick.unwrap_or(Setting::Static {
        threshold: UNTUNED.0,
        datapoints: UNTUNED.1,
    });
    let (thr, dp) = match static_pick {
        Setting::Static {
            threshold,
            datapoints,
        } => (threshold, datapoints),
        _ => UNTUNED,
    };
    let (gate_pick, gate_tuning) = tune(&mut tuning, &gate_family(thr, dp), gate);
    let (band_pick, band_tuning, lw_pick, last_week_tuning) = if cfg.baselines {
        let (bp, bt) = tune(&mut tuning, &band_family(), gate);
        let (lp, lt) = tune(&mut tuning, &last_week_family(), gate);
        (bp, bt, lp, lt)
    } else {
        (None, Vec::new(), None, Vec::new())
    };
    drop(tuning);

    // ---- reported seeds: settings frozen above ------------------------------------------
    let z = gate.z_threshold;
    let mut detectors: Vec<(String, Setting)> = vec![
        (
            format!(
                "static > {} %, {} of {} (untuned)",
                UNTUNED.0, UNTUNED.1, UNTUNED.1
            ),
            Setting::Static {
                threshold: UNTUNED.0,
                datapoints: UNTUNED.1,
            },
        ),
        (
            "  + gate (shipped default)".into(),
            Setting::Gated {
                threshold: UNTUNED.0,
                datapoints: UNTUNED.1,
                z,
            },
        ),
        (format!("{} (tuned)", static_pick.describe()), static_pick),
        (
            "  + gate (shipped default)".into(),
            Setting::Gated {
                threshold: thr,
                datapoints: dp,
                z,
            },
        ),
    ];
    if let Some(b) = band_pick {
        detectors.push((format!("{} (tuned)", b.describe()), b));
    }
    if let Some(l) = lw_pick {
        detectors.push((format!("{} (tuned)", l.describe()), l));
    }
    let mut reported: Vec<Reported> = detectors
        .into_iter()
        .map(|(label, setting)| Reported {
            label,
            setting,
            per_trace: Vec::new(),
        })
        .collect();
    let mut shown = Vec::new();
    let mut alarm_inputs = Vec::new();
    let mut incidents_csv = String::from("scenario,seed,incident,start,end,kind,scored\n");
    let mut counts_csv = String::from(
        "detector,scenario,seed,actions,false_actions,incidents,caught,alarmed,weeks_scored,delay_minutes_sum\n",
    );
    let mut decisions_csv = String::from(
        "detector,scenario,seed,timestamp,value,decision,incident,gate_judgement,gate_score\n",
    );
    for (k, scenario) in traces::GATE_SCENARIOS.iter().enumerate() {
        for seed in cfg.seeds.clone() {
            let mut p = Prepared::new(scenario, seed, cfg);
            for (n, (&(a, b), kind)) in p.trace.incidents.iter().zip(&p.trace.kinds).enumerate() {
                let _ = writeln!(
                    incidents_csv,
                    "{scenario},{seed},{n},{},{},{kind},{}",
                    iso(p.trace.time(a)),
                    iso(p.trace.time(b)),
                    a >= p.from
                );
            }
            let mut keep = Vec::new();
            for r in reported.iter_mut() {
                let (acted, base) = p.run(r.setting, gate);
                let c = p.count(&acted, &base);
                let _ = writeln!(
                    counts_csv,
                    "{},{scenario},{seed},{},{},{},{},{},{:.4},{}",
                    csv_label(&r.setting.describe()),
                    c.actions,
                    c.false_actions,
                    c.incidents,
                    c.caught,
                    c.alarmed,
                    c.weeks,
                    c.delay_minutes
                );
                for a in acted.iter().filter(|a| a.row >= p.from) {
                    let (j, score) = match a.gate {
                        Some((j, sc, _)) => (
                            format!("{j:?}"),
                            sc.map_or(String::new(), |x| format!("{x:.3}")),
                        ),
                        None => Default::default(),
                    };
                    let _ = writeln!(
                        decisions_csv,
                        "{},{scenario},{seed},{},{:.3},{},{},{j},{score}",
                        csv_label(&r.setting.describe()),
                        iso(p.trace.time(a.row)),
                        p.trace.values[a.row],
                        if a.acted { "act" } else { "skip" },
                        p.trace
                            .incident_at(a.row)
                            .map_or(String::new(), |n| n.to_string()),
                    );
                }
                r.per_trace.push((k, c));
                if seed == cfg.seeds.start
                    && r.setting
                        == (Setting::Gated {
                            threshold: thr,
                            datapoints: dp,
                            z,
                        })
                {
                    keep = acted;
                }
            }
            if seed == cfg.seeds.start {
                for a in keep.iter().filter(|a| a.row >= p.from).take(40) {
                    alarm_inputs.push((
                        p.trace.time(a.row),
                        p.series.values[(a.row + 1).saturating_sub(dp)..=a.row].to_vec(),
                        fetched_history(&p.series, a.row, gate),
                    ));
                }
                shown.push((p.trace, keep));
            }
        }
    }
    Results {
        static_tuning,
        static_pick,
        gate_tuning,
        gate_pick,
        band_tuning,
        last_week_tuning,
        reported,
        shown,
        alarm_inputs,
        cfg: cfg.clone(),
        csv: vec![
            ("incidents.csv", incidents_csv),
            ("counts.csv", counts_csv),
            ("decisions.csv", decisions_csv),
        ],
    }
}

fn csv_label(label: &str) -> String {
    format!("\"{}\"", label.trim().replace('"', "'"))
}

/// The tuning tables as CSV: family, setting, counts summed over the tuning seeds.
pub fn tuning_csv(res: &Results) -> String {
    let mut out = String::from(
        "family,setting,actions,false_actions,incidents,caught,alarmed,weeks_scored,picked\n",
    );
    let picks: Vec<Setting> = res.reported.iter().map(|r| r.setting).collect();
    for (family, table) in [
        ("static", &res.static_tuning),
        ("gate", &res.gate_tuning),
        ("seasonal-band", &res.band_tuning),
        ("last-week", &res.last_week_tuning),
    ] {
        for (s, c) in table.iter() {
            let picked = picks.contains(s) && family != "gate"
                || (family == "gate" && res.gate_pick == Some(*s));
            let _ = writeln!(
                out,
                "{family},{},{},{},{},{},{},{:.4},{picked}",
                csv_label(&s.describe()),
                c.actions,
                c.false_actions,
                c.incidents,
                c.caught,
                c.alarmed,
                c.weeks
            );
        }
    }
    out
}

/// Recent history fetched along with the references (as in reboot-instance).
pub const RECENT_SECS: i64 = 3 * 3600;

/// The datapoints the function's port returns at row `i`: the recent hours and the gate's
/// reference windows, never the future.
pub fn fetched_history(s: &Series, i: usize, settings: &GateSettings) -> Vec<Point> {
    let t = s.times[i];
    let mut windows = vec![(t - RECENT_SECS, t)];
    windows.extend(settings.reference_windows(t));
    let mut out = Vec::new();
    for (start, end) in windows {
        let a = s.times.partition_point(|x| *x < start);
        let b = s.times.partition_point(|x| *x <= end.min(t));
        out.extend((a..b).map(|j| Point::new(s.times[j], s.values[j])));
    }
    out
}

/// A 95 % bootstrap interval of `f` over traces, resampled within each scenario.
pub fn interval(
    per_trace: &[(usize, Counts)],
    scenario: Option<usize>,
    resamples: usize,
    f: impl Fn(&Counts) -> f64,
) -> Option<(f64, f64)> {
    if resamples == 0 {
        return None;
    }
    let mut groups: Vec<Vec<Counts>> = Vec::new();
    for (s, c) in per_trace {
        if scenario.is_some_and(|x| x != *s) {
            continue;
        }
        if groups.len() <= *s {
            groups.resize(s + 1, Vec::new());
        }
        groups[*s].push(*c);
    }
    let mut rng = Rng::new(0x5EED);
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut sum = Counts::default();
            for g in groups.iter().filter(|g| !g.is_empty()) {
                for _ in 0..g.len() {
                    sum.add(&g[rng.index(0, g.len()).min(g.len() - 1)]);
                }
            }
            f(&sum)
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats[((stats.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_rule_keeps_95_percent_of_the_best_recall_then_fewest_false_actions() {
        let cfg = Config {
            seeds: 0..1,
            tuning_seeds: 0..1,
            weeks: 6,
            warmup_weeks: 4,
            resamples: 0,
            baselines: false,
        };
        let mut t = prepare(0..2, &cfg);
        let (pick, table) = tune(&mut t, &static_family(), &GateSettings::default());
        let pick = pick.unwrap();
        let best = table.iter().map(|(_, c)| c.recall()).fold(0.0, f64::max);
        let chosen = table.iter().find(|(s, _)| *s == pick).unwrap().1;
        assert!(chosen.recall() >= 0.95 * best);
        for (_, c) in &table {
            if c.recall() >= 0.95 * best {
                assert!(c.false_per_week() >= chosen.false_per_week());
            }
        }
    }

    #[test]
    fn intervals_bracket_the_estimate() {
        let per: Vec<(usize, Counts)> = (0..20)
            .map(|k| {
                (
                    k % 2,
                    Counts {
                        actions: 10,
                        false_actions: k % 4,
                        incidents: 2,
                        caught: 1 + k % 2,
                        alarmed: 2,
                        weeks: 6.0,
                        ..Counts::default()
                    },
                )
            })
            .collect();
        let mut all = Counts::default();
        for (_, c) in &per {
            all.add(c);
        }
        let (lo, hi) = interval(&per, None, 500, Counts::false_per_week).unwrap();
        assert!(lo <= all.false_per_week() && all.false_per_week() <= hi && lo < hi);
        assert_eq!(interval(&per, None, 0, Counts::recall), None);
    }
}
