//! Runs every detector over a labelled corpus, scores it (window recall, precision, false
//! actions per week, detection delay, NAB standard and low-FP scores) and writes the tables,
//! the raw decisions (`nab/decisions.csv`), per-series scores (`nab/scores.csv`), the windows
//! (`nab/windows.csv`) and one plot per series (`nab/<category>/<series>.png`).

use std::fmt::Write as _;
use std::path::Path;

use selfheal_core::anomaly::{Direction, GateSettings, Judgement, WEEK};

use crate::detect::{Alarm, References, BAND_DAYS, MIN_BAND_POINTS};
use crate::nab::{iso, Corpus, CostMatrix, Series};
use crate::nab_detect::{self, Detector};
use crate::nab_score::{probationary_rows, score_series, SeriesScore};

/// Counts for one detector over some series.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub series: usize,
    pub windows: usize,
    pub detected: usize,
    pub actions: usize,
    pub false_actions: usize,
    pub weeks: f64,
    pub delay_minutes: Vec<f64>,
    pub standard: SeriesScore,
    pub low_fp: SeriesScore,
    /// Gate only: alarms skipped, skipped inside a window, judged with too little history.
    pub skipped: usize,
    pub skipped_in_window: usize,
    pub too_little_history: usize,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.series += o.series;
        self.windows += o.windows;
        self.detected += o.detected;
        self.actions += o.actions;
        self.false_actions += o.false_actions;
        self.weeks += o.weeks;
        self.delay_minutes.extend_from_slice(&o.delay_minutes);
        self.standard.add(&o.standard);
        self.low_fp.add(&o.low_fp);
        self.skipped += o.skipped;
        self.skipped_in_window += o.skipped_in_window;
        self.too_little_history += o.too_little_history;
    }
    pub fn precision(&self) -> Option<f64> {
        (self.actions > 0).then(|| (self.actions - self.false_actions) as f64 / self.actions as f64)
    }
    pub fn recall(&self) -> Option<f64> {
        (self.windows > 0).then(|| self.detected as f64 / self.windows as f64)
    }
    pub fn false_per_week(&self) -> f64 {
        if self.weeks > 0.0 {
            self.false_actions as f64 / self.weeks
        } else {
            0.0
        }
    }
    pub fn mean_delay(&self) -> Option<f64> {
        (!self.delay_minutes.is_empty())
            .then(|| self.delay_minutes.iter().sum::<f64>() / self.delay_minutes.len() as f64)
    }
}

/// What the NAB part found: per category and overall, for every detector.
pub struct NabResults {
    pub markdown: String,
}

fn score_one(s: &Series, alarms: &[Alarm], standard: &CostMatrix, low_fp: &CostMatrix) -> Tally {
    let p = probationary_rows(s.len());
    let acted: Vec<usize> = alarms.iter().filter(|a| a.acted).map(|a| a.row).collect();
    let scored: Vec<usize> = acted.iter().copied().filter(|r| *r >= p).collect();
    let mut t = Tally {
        series: 1,
        actions: scored.len(),
        false_actions: scored.iter().filter(|r| s.window_at(**r).is_none()).count(),
        ..Tally::default()
    };
    if let (Some(first), Some(last)) = (s.times.get(p), s.times.last()) {
        t.weeks = (last - first) as f64 / WEEK as f64;
    }
    for &(a, b) in &s.windows {
        if b < p {
            continue;
        }
        t.windows += 1;
        if let Some(r) = scored.iter().find(|r| **r >= a && **r <= b) {
            t.detected += 1;
            t.delay_minutes
                .push((s.times[*r] - s.times[a.max(p)]) as f64 / 60.0);
        }
    }
    t.standard = score_series(s.len(), &s.windows, &acted, standard);
    t.low_fp = score_series(s.len(), &s.windows, &acted, low_fp);
    for a in alarms.iter().filter(|a| a.row >= p) {
        if let Some((j, _, _)) = a.gate {
            if !a.acted {
                t.skipped += 1;
                if s.window_at(a.row).is_some() {
                    t.skipped_in_window += 1;
                }
            }
            if j == Judgement::TooLittleHistory {
                t.too_little_history += 1;
            }
        }
    }
    t
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// Runs the corpus; writes CSVs and plots under `out/nab`; returns the tables.
pub fn run(
    corpus: &Corpus,
    source: &str,
    out: &Path,
    gate: &GateSettings,
    plots: bool,
) -> Result<NabResults, Box<dyn std::error::Error>> {
    let dir = out.join("nab");
    std::fs::create_dir_all(&dir)?;
    let standard = corpus.standard.unwrap_or(crate::nab::STANDARD);
    let low_fp = corpus.low_fp.unwrap_or(crate::nab::LOW_FP);
    let mut decisions = String::from(
        "detector,category,series,timestamp,value,direction,decision,scored,in_window,window_start,window_end,gate_judgement,gate_score,gate_baseline\n",
    );
    let mut scores = String::from(
        "detector,category,series,rows,probationary_rows,windows_scored,windows_detected,actions,false_actions,weeks_scored,mean_delay_min,nab_standard_raw,nab_standard_null,nab_standard_perfect,nab_low_fp_raw,nab_low_fp_null,nab_low_fp_perfect\n",
    );
    let mut windows_csv = String::from("category,series,window_start,window_end,rows\n");
    let categories = corpus.categories();
    let mut per: Vec<(String, Detector, Tally)> = Vec::new();
    for s in &corpus.series {
        let p = probationary_rows(s.len());
        for &(a, b) in &s.windows {
            writeln!(
                windows_csv,
                "{},{},{},{},{}",
                s.category,
                s.name,
                iso(s.times[a]),
                iso(s.times[b]),
                b - a + 1
            )?;
        }
        let refs = References::new(s);
        let mut all_alarms = Vec::new();
        for d in Detector::ALL {
            let alarms = nab_detect::run(s, &refs, d, gate);
            for a in &alarms {
                let w = s.window_at(a.row).and_then(|k| s.windows.get(k));
                let (j, score, base) = match a.gate {
                    Some((j, sc, b)) => (
                        format!("{j:?}"),
                        sc.map_or(String::new(), |x| format!("{x:.3}")),
                        b.map_or(String::new(), |x| format!("{x}")),
                    ),
                    None => Default::default(),
                };
                writeln!(
                    decisions,
                    "{},{},{},{},{},{},{},{},{},{},{},{j},{score},{base}",
                    d.slug(),
                    s.category,
                    s.name,
                    iso(s.times[a.row]),
                    s.values[a.row],
                    if a.direction == Direction::Above {
                        "above"
                    } else {
                        "below"
                    },
                    if a.acted { "act" } else { "skip" },
                    a.row >= p,
                    w.is_some(),
                    w.map_or(String::new(), |w| iso(s.times[w.0])),
                    w.map_or(String::new(), |w| iso(s.times[w.1])),
                )?;
            }
            let t = score_one(s, &alarms, &standard, &low_fp);
            writeln!(
                scores,
                "{},{},{},{},{p},{},{},{},{},{:.4},{},{:.6},{},{},{:.6},{},{}",
                d.slug(),
                s.category,
                s.name,
                s.len(),
                t.windows,
                t.detected,
                t.actions,
                t.false_actions,
                t.weeks,
                opt(t.mean_delay(), 1),
                t.standard.raw,
                t.standard.null,
                t.standard.perfect,
                t.low_fp.raw,
                t.low_fp.null,
                t.low_fp.perfect
            )?;
            match per
                .iter_mut()
                .find(|(c, det, _)| *c == s.category && *det == d)
            {
                Some((_, _, acc)) => acc.add(&t),
                None => per.push((s.category.clone(), d, t)),
            }
            all_alarms.push((d, alarms));
        }
        if plots {
            let cat_dir = dir.join(&s.category);
            std::fs::create_dir_all(&cat_dir)?;
            crate::plots::nab_series(&cat_dir.join(format!("{}.png", s.name)), s, &all_alarms)?;
        }
    }
    std::fs::write(dir.join("decisions.csv"), decisions)?;
    std::fs::write(dir.join("scores.csv"), scores)?;
    std::fs::write(dir.join("windows.csv"), windows_csv)?;

    let mut rows = Vec::new();
    for c in &categories {
        for d in Detector::ALL {
            if let Some((_, _, t)) = per.iter().find(|(cat, det, _)| cat == c && *det == d) {
                rows.push((c.clone(), d, t.clone()));
            }
        }
    }
    for d in Detector::ALL {
        let mut all = Tally::default();
        for (_, _, t) in per.iter().filter(|(_, det, _)| *det == d) {
            all.add(t);
        }
        rows.push(("all".to_string(), d, all));
    }

    let mut md = String::new();
    writeln!(
        md,
        "## Real labelled data: Numenta Anomaly Benchmark layout (`{source}`)\n"
    )?;
    writeln!(md, "{} labelled series in {} categories ({} windows after the probationary periods). \
        Every detector is an alarm that needs {} consecutive breaching datapoints and acts once per OK → ALARM \
        transition. Settings come from rules fixed up front, using at most each series' probationary rows (NAB's \
        first 15 %, at most 750 rows), never the labels:\n",
        corpus.series.len(), categories.len(), rows.iter().filter(|r| r.0 == "all" && r.1 == Detector::Static).map(|r| r.2.windows).sum::<usize>(),
        nab_detect::DATAPOINTS)?;
    writeln!(md, "- **static**: above the probation's max + {:.0} % of its range, or below its min − {:.0} % (the alarm \
        an operator sets so it would not have fired on the data they had; on a series sampled every minute the \
        750-row cap is 12.5 hours, less than one daily cycle, so this alarm fires on the daily peak).", nab_detect::STATIC_MARGIN * 100.0, nab_detect::STATIC_MARGIN * 100.0)?;
    writeln!(md, "- **static + gate**: the static alarm; before acting, the anomaly gate with the shipped defaults \
        (z {}, {} days, {} weeks) on the history before the alarm. Acts unless the gate judges the value an expected \
        pattern; with too little history (fewer than {} reference datapoints in both seasons: the first day of a \
        5-minute series, the first 5 days of an hourly one) it acts, as the product does.",
        gate.z_threshold, gate.days, gate.weeks, gate.min_reference)?;
    writeln!(md, "- **seasonal band** (like CloudWatch anomaly detection at its default band width {}): outside \
        mean ± {} σ of the datapoints at the same time of day (±15 min) over the previous {} days; no band before \
        {} such datapoints exist.", nab_detect::BAND_WIDTH, nab_detect::BAND_WIDTH, BAND_DAYS, MIN_BAND_POINTS)?;
    writeln!(md, "- **last week**: more than {:.0} % away from the median at the same time last week (±15 min) and by \
        more than {:.0} % of the probation's range; no alarm in the first week.\n", nab_detect::LAST_WEEK_CHANGE * 100.0, nab_detect::STATIC_MARGIN * 100.0)?;
    writeln!(md, "Precision: actions inside a labelled window / actions. Recall: windows with at least one action / \
        windows. Delay: from the window's start (or the end of the probation) to the first action in it; NAB's \
        windows open before the labelled anomaly, so a detector can act early. NAB scores: NAB's own rule (scaled \
        sigmoid of the earliest detection's position in its window, one per window, false positives weighted by \
        their distance past the preceding window, missed windows cost −1; standard profile FP weight {}, low-FP \
        profile {}), normalised as NAB does, `100 · (raw − null) / (perfect − null)` over the rows of the table \
        (null = never fires). NAB's published scoreboard tunes each detector's threshold on the whole labelled \
        corpus; these detectors are not tuned on labels, so their scores are what a user would get out of the box. \
        \"–\": nothing to compute (no window, no action).\n", standard.fp, low_fp.fp)?;
    writeln!(md, "| category | detector | series | windows | recall | actions | precision | false actions / week | mean delay (min) | NAB standard | NAB low FP |")?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for (c, d, t) in &rows {
        let bold = if c == "all" { "**" } else { "" };
        writeln!(
            md,
            "| {bold}{c}{bold} | {bold}{}{bold} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} |",
            d.name(),
            t.series,
            t.windows,
            opt(t.recall(), 3),
            t.actions,
            opt(t.precision(), 3),
            t.false_per_week(),
            opt(t.mean_delay(), 0),
            opt(t.standard.normalised(), 1),
            opt(t.low_fp.normalised(), 1),
        )?;
    }
    let gate_all = rows
        .iter()
        .find(|r| r.0 == "all" && r.1 == Detector::StaticGate)
        .map(|r| r.2.clone())
        .unwrap_or_default();
    writeln!(md, "\nThe gate skipped {} of the static alarm's scored alarms, {} of them inside a labelled window; it \
        judged {} alarms with too little history (and acted on them).\n",
        gate_all.skipped, gate_all.skipped_in_window, gate_all.too_little_history)?;
    writeln!(
        md,
        "### Where the gate does not beat a baseline (labelled data)\n"
    )?;
    let mut any = false;
    for (c, d, t) in rows.iter().filter(|r| r.1 != Detector::StaticGate) {
        let Some((_, _, g)) = rows
            .iter()
            .find(|r| r.0 == *c && r.1 == Detector::StaticGate)
        else {
            continue;
        };
        let mut worse = Vec::new();
        let better =
            |a: Option<f64>, b: Option<f64>| matches!((a, b), (Some(a), Some(b)) if a > b + 1e-9);
        if better(t.standard.normalised(), g.standard.normalised()) {
            worse.push(format!(
                "NAB standard {} vs {}",
                opt(t.standard.normalised(), 1),
                opt(g.standard.normalised(), 1)
            ));
        }
        if better(t.low_fp.normalised(), g.low_fp.normalised()) {
            worse.push(format!(
                "NAB low FP {} vs {}",
                opt(t.low_fp.normalised(), 1),
                opt(g.low_fp.normalised(), 1)
            ));
        }
        if better(t.recall(), g.recall()) {
            worse.push(format!(
                "recall {} vs {}",
                opt(t.recall(), 3),
                opt(g.recall(), 3)
            ));
        }
        if t.false_per_week() + 1e-9 < g.false_per_week() {
            worse.push(format!(
                "false actions / week {:.2} vs {:.2}",
                t.false_per_week(),
                g.false_per_week()
            ));
        }
        if better(g.mean_delay(), t.mean_delay()) {
            worse.push(format!(
                "mean delay {} vs {} min",
                opt(t.mean_delay(), 0),
                opt(g.mean_delay(), 0)
            ));
        }
        if !worse.is_empty() {
            any = true;
            writeln!(
                md,
                "- {c}: **{}** beats static + gate on {}.",
                d.name(),
                worse.join(", ")
            )?;
        }
    }
    if !any {
        writeln!(
            md,
            "Nowhere: static + gate is at least as good as every baseline in every category."
        )?;
    }
    writeln!(md)?;
    if !corpus.warnings.is_empty() {
        writeln!(md, "Skipped or adjusted while reading:\n")?;
        for w in &corpus.warnings {
            writeln!(md, "- {w}")?;
        }
        writeln!(md)?;
    }
    writeln!(md, "Raw material: `nab/decisions.csv` (every alarm of every detector: time, value, direction, act/skip, \
        scored, window, the gate's judgement and score), `nab/scores.csv` (per series and detector: counts and raw NAB \
        scores with their null and perfect), `nab/windows.csv`. Plots: `nab/<category>/<series>.png` (the series, \
        probation, labelled windows, and each detector's actions; crosses: alarms the gate skipped).\n")?;
    Ok(NabResults { markdown: md })
}
