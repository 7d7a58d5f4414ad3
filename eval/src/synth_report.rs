//! The synthetic evaluation's tables: reported seeds with intervals, the tuning tables, the
//! acceptance lines, and where the gate does not beat a baseline.

use std::fmt::Write as _;

use selfheal_core::anomaly::GateSettings;

use crate::synth::{interval, Counts, Reported, Results, Setting};
use crate::traces::{self, DST_STEP, HOLIDAY_DAY, STEPS_PER_DAY};

/// Indices into `Results::reported`.
pub const UNTUNED: usize = 0;
pub const UNTUNED_GATE: usize = 1;
pub const TUNED: usize = 2;
pub const TUNED_GATE: usize = 3;

fn ci(r: &Reported, scenario: Option<usize>, n: usize, f: fn(&Counts) -> f64, d: usize) -> String {
    let v = f(&r.total(scenario));
    match interval(&r.per_trace, scenario, n, f) {
        Some((lo, hi)) => format!("{v:.d$} [{lo:.d$}, {hi:.d$}]"),
        None => format!("{v:.d$}"),
    }
}

/// One acceptance line: text and whether it is met.
pub fn acceptance(res: &Results) -> Vec<(String, bool)> {
    let get = |k: usize| {
        res.reported
            .get(k)
            .map(|r| r.total(None))
            .unwrap_or_default()
    };
    let (u, ug, t, tg) = (get(UNTUNED), get(UNTUNED_GATE), get(TUNED), get(TUNED_GATE));
    let tuned = res.static_pick.describe();
    vec![
        (
            format!(
                "The gate cuts false actions of the untuned 80 % 2-of-2 alarm: {:.2} → {:.2} per week",
                u.false_per_week(),
                ug.false_per_week()
            ),
            ug.false_per_week() < u.false_per_week(),
        ),
        (
            format!(
                "… keeping ≥ 0.95 of that alarm's recall (recall of alarmed incidents): {:.4} ({} of {})",
                ug.alarmed_recall(),
                ug.caught,
                ug.alarmed
            ),
            ug.alarmed_recall() >= 0.95,
        ),
        (
            format!(
                "The gate cuts false actions of the tuned alarm ({tuned}): {:.2} → {:.2} per week",
                t.false_per_week(),
                tg.false_per_week()
            ),
            tg.false_per_week() < t.false_per_week(),
        ),
        (
            format!(
                "… keeping ≥ 0.95 of that alarm's recall: {:.4} ({} of {})",
                tg.alarmed_recall(),
                tg.caught,
                tg.alarmed
            ),
            tg.alarmed_recall() >= 0.95,
        ),
    ]
}

/// Where the tuned alarm + gate is worse than another reported detector, overall.
pub fn losses(res: &Results) -> Vec<String> {
    let Some(g) = res.reported.get(TUNED_GATE) else {
        return Vec::new();
    };
    let gc = g.total(None);
    let mut out = Vec::new();
    for (k, r) in res.reported.iter().enumerate() {
        if k == TUNED_GATE || k == UNTUNED_GATE {
            continue;
        }
        let c = r.total(None);
        let name = r.label.trim();
        if c.recall() > gc.recall() + 1e-9 {
            out.push(format!(
                "recall: {name} catches {:.3} of incidents, the tuned alarm + gate {:.3}",
                c.recall(),
                gc.recall()
            ));
        }
        if c.precision() > gc.precision() + 1e-9 {
            out.push(format!(
                "precision: {name} {:.3}, the tuned alarm + gate {:.3}",
                c.precision(),
                gc.precision()
            ));
        }
        if c.false_per_week() + 1e-9 < gc.false_per_week() {
            out.push(format!(
                "false actions: {name} has {:.2} per week, the tuned alarm + gate {:.2}",
                c.false_per_week(),
                gc.false_per_week()
            ));
        }
        if let (Some(a), Some(b)) = (c.mean_delay(), gc.mean_delay()) {
            if a + 1e-9 < b {
                out.push(format!(
                    "delay: {name} acts {a:.0} min into an incident on average, the tuned alarm + gate {b:.0} min"
                ));
            }
        }
    }
    out
}

pub fn markdown(res: &Results, gate: &GateSettings) -> Result<String, std::fmt::Error> {
    let mut md = String::new();
    let cfg = &res.cfg;
    let n = cfg.resamples;
    let scored_weeks = cfg.weeks - cfg.warmup_weeks;
    writeln!(md, "## Anomaly gate on synthetic traces\n")?;
    writeln!(md, "Seeded CPU traces (percent, 5-minute datapoints), {} weeks each, the first {} history only; \
        every scenario × seed has its own random stream (no two scenarios share an incident schedule). \
        **Tuning seeds {}–{}** ({} per scenario) chose every detector's settings by one rule (below); the settings \
        were then frozen and the **reported seeds {}–{}** ({} per scenario, {} scored weeks each) run once. The gate \
        runs with the shipped defaults (z {}, {} days, {} weeks) — see the tuning section for what the rule picks.\n",
        cfg.weeks, cfg.warmup_weeks, cfg.tuning_seeds.start, cfg.tuning_seeds.end.saturating_sub(1),
        cfg.tuning_seeds.end - cfg.tuning_seeds.start, cfg.seeds.start, cfg.seeds.end.saturating_sub(1),
        cfg.seeds.end - cfg.seeds.start, scored_weeks, gate.z_threshold, gate.days, gate.weeks)?;
    writeln!(md, "Scenarios: `monday-peak` (office hours, Monday-morning peak to ~88 %), `nightly-batch` (92 % \
        nightly job, 86 % Sunday backup), `growing-trend` (afternoon peak crosses 80 % as load grows), `noisy-peaks` \
        (daily peak near 80 % with noise). `monday-peak` and `nightly-batch` follow local time: clocks go forward \
        one hour on day {} (their patterns come an hour earlier in UTC from then on), and day {} is a public \
        holiday (office hours like a Sunday) followed by a catch-up day at 130 % office load; neither is an \
        incident. Incidents, 1–2 a week at random times, of four kinds: **peg** (93–100 % for 20–120 min), \
        **degradation** (+12–25 points for 1–3 h), **level shift** (+10–20 points for 1–2 days), **overrun** (the \
        expected daily peak holds its level for 1–3 h past its usual end: a batch job that overruns, a peak that does \
        not come down). Every detector is an alarm acting once per OK → ALARM transition; an action inside an \
        incident is true, recall counts incidents with at least one action, delay is from the incident's start \
        to the first action. An incident that begins while the alarm is already in ALARM (an overrun of a peak \
        above the threshold) makes no transition, so no alarm-driven policy can act on it.\n",
        DST_STEP / STEPS_PER_DAY, HOLIDAY_DAY)?;
    if n > 0 {
        writeln!(md, "Brackets: 95 % bootstrap intervals ({n} resamples of whole traces, within each scenario), \
            so incidents and alarms of one trace move together.\n")?;
    }
    writeln!(md, "Raw material: `synthetic/incidents.csv` (every incident: start, end, kind), `synthetic/decisions.csv` \
        (every alarm in the scored weeks of every reported detector: time, value, act/skip, incident, the gate's \
        judgement and score), `synthetic/counts.csv` (per detector and trace: the counts behind every rate and \
        interval), `synthetic/tuning.csv` (the tuning tables).\n")?;
    writeln!(md, "| scenario | detector | incidents | recall | recall of alarmed incidents | actions | precision | false actions / week | mean delay (min) |")?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    let scenarios: Vec<(Option<usize>, String)> = traces::GATE_SCENARIOS
        .iter()
        .enumerate()
        .map(|(k, s)| (Some(k), s.to_string()))
        .chain(std::iter::once((None, "**all**".to_string())))
        .collect();
    for (sc, name) in &scenarios {
        for (k, r) in res.reported.iter().enumerate() {
            let c = r.total(*sc);
            let alarmed = if k == UNTUNED_GATE || k == TUNED_GATE {
                format!("{:.3}", c.alarmed_recall())
            } else {
                "–".into()
            };
            writeln!(
                md,
                "| {name} | {} | {} | {} | {alarmed} | {} | {} | {} | {} |",
                r.label.replace("  + ", "↳ + "),
                c.incidents,
                ci(r, *sc, n, Counts::recall, 3),
                c.actions,
                ci(r, *sc, n, Counts::precision, 3),
                ci(r, *sc, n, Counts::false_per_week, 2),
                c.mean_delay().map_or("–".into(), |d| format!("{d:.0}")),
            )?;
        }
    }
    writeln!(md, "\nRecall by incident kind (all scenarios, reported seeds; incidents caught / incidents):\n")?;
    writeln!(md, "| detector | {} |", crate::synth::KINDS.join(" | "))?;
    writeln!(md, "|---|{}", "---:|".repeat(crate::synth::KINDS.len()))?;
    for r in &res.reported {
        let c = r.total(None);
        let cells: Vec<String> = c
            .by_kind
            .iter()
            .map(|(n, k)| {
                format!(
                    "{k}/{n} ({:.2})",
                    if *n == 0 { 1.0 } else { *k as f64 / *n as f64 }
                )
            })
            .collect();
        writeln!(
            md,
            "| {} | {} |",
            r.label.replace("  + ", "↳ + "),
            cells.join(" | ")
        )?;
    }
    writeln!(
        md,
        "\n### Where the gate does not beat a baseline (synthetic, all scenarios)\n"
    )?;
    let l = losses(res);
    if l.is_empty() {
        writeln!(md, "Nowhere on these traces: the tuned alarm + gate is at least as good as every other detector on recall, false actions and delay.\n")?;
    } else {
        for line in l {
            writeln!(md, "- {line}.")?;
        }
        writeln!(md)?;
    }
    Ok(md)
}

fn tuning_rows(
    md: &mut String,
    table: &[(Setting, Counts)],
    pick: Option<Setting>,
    mark: &str,
) -> std::fmt::Result {
    writeln!(md, "| setting | actions | false actions / week | precision | recall | recall of alarmed incidents |")?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|")?;
    for (s, c) in table {
        let picked = if Some(*s) == pick { mark } else { "" };
        let name = match s {
            Setting::Gated { z, .. } if z.is_infinite() => "no gate (the alarm alone)".to_string(),
            Setting::Gated { z, .. } => format!("gate z {z}"),
            other => other.describe(),
        };
        writeln!(
            md,
            "| {name}{picked} | {} | {:.2} | {:.3} | {:.3} | {:.3} |",
            c.actions,
            c.false_per_week(),
            c.precision(),
            c.recall(),
            c.alarmed_recall()
        )?;
    }
    Ok(())
}

pub fn tuning_markdown(res: &Results, gate: &GateSettings) -> Result<String, std::fmt::Error> {
    let mut md = String::new();
    let cfg = &res.cfg;
    writeln!(
        md,
        "### Gate and baselines (synthetic tuning seeds {}–{}, all scenarios)\n",
        cfg.tuning_seeds.start,
        cfg.tuning_seeds.end.saturating_sub(1)
    )?;
    writeln!(md, "The rule, the same for every family: among its settings, keep those whose recall on the tuning seeds \
        is at least 95 % of the best recall any of them reaches, and pick the fewest false actions per week (ties: \
        higher recall). **Picked** settings are the ones reported above; nothing was chosen on the reported seeds.\n")?;
    writeln!(md, "Static alarm (threshold, datapoints of datapoints):\n")?;
    tuning_rows(
        &mut md,
        &res.static_tuning,
        Some(res.static_pick),
        " **(picked)**",
    )?;
    writeln!(md, "\nThe gate on the picked alarm, by sensitivity (`SELFHEAL_ANOMALY_SENSITIVITY`; the recall that counts is \
        the alarm's own, \"no gate\"):\n")?;
    tuning_rows(
        &mut md,
        &res.gate_tuning,
        res.gate_pick,
        " **(rule's pick)**",
    )?;
    let default_z = gate.z_threshold;
    match res.gate_pick {
        Some(Setting::Gated { z, .. }) if (z - default_z).abs() < 1e-9 => writeln!(md, "\nThe rule picks z {z}: the shipped default.\n")?,
        Some(Setting::Gated { z, .. }) if z.is_infinite() => writeln!(md, "\nThe rule picks no gate at all on the tuning seeds: no sensitivity keeps 95 % of the alarm's recall with fewer false actions. The reported tables use the shipped default z {default_z}.\n")?,
        Some(Setting::Gated { z, .. }) => writeln!(md, "\nThe rule picks z {z}; the shipped default is z {default_z}, which the reported tables use. (The default is not moved after looking at reported seeds.)\n")?,
        _ => writeln!(md)?,
    }
    if !res.band_tuning.is_empty() {
        writeln!(md, "Seasonal band (like CloudWatch anomaly detection; width in σ of the same time of day over the previous 14 days):\n")?;
        let pick = res
            .reported
            .iter()
            .map(|r| r.setting)
            .find(|s| matches!(s, Setting::Band { .. }));
        tuning_rows(&mut md, &res.band_tuning, pick, " **(picked)**")?;
        writeln!(md, "\nSame time last week (alarm when more than the given change above the median at the same time a week earlier):\n")?;
        let pick = res
            .reported
            .iter()
            .map(|r| r.setting)
            .find(|s| matches!(s, Setting::LastWeek { .. }));
        tuning_rows(&mut md, &res.last_week_tuning, pick, " **(picked)**")?;
        writeln!(md)?;
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{run, Config};

    /// The acceptance lines of the gate, on a run small enough for CI (debug build): a
    /// regression in the gate or the harness fails `make test`. The margins leave room for
    /// the smaller sample: false actions must at least halve, and the gate must keep at least
    /// 90 % of the alarm's recall (the line says 95 %).
    #[test]
    fn acceptance_lines_hold_on_a_small_run() {
        let cfg = Config {
            seeds: 0..6,
            tuning_seeds: 1000..1006,
            weeks: 10,
            warmup_weeks: 4,
            resamples: 0,
            baselines: false,
        };
        let gate = GateSettings::default();
        let res = run(&cfg, &gate);
        let get = |k: usize| res.reported[k].total(None);
        let (u, ug, t, tg) = (get(UNTUNED), get(UNTUNED_GATE), get(TUNED), get(TUNED_GATE));
        eprintln!(
            "untuned {:.2} -> {:.2} (alarmed recall {:.3}); tuned {} {:.2} -> {:.2} ({:.3})",
            u.false_per_week(),
            ug.false_per_week(),
            ug.alarmed_recall(),
            res.static_pick.describe(),
            t.false_per_week(),
            tg.false_per_week(),
            tg.alarmed_recall()
        );
        assert!(
            u.incidents >= 20,
            "too few incidents for a test: {}",
            u.incidents
        );
        assert!(
            ug.false_per_week() <= 0.5 * u.false_per_week(),
            "gate on the 80 % 2-of-2 alarm: {:.2} → {:.2} false actions / week",
            u.false_per_week(),
            ug.false_per_week()
        );
        assert!(ug.alarmed_recall() >= 0.90, "{:.3}", ug.alarmed_recall());
        assert!(
            tg.false_per_week() <= 0.5 * t.false_per_week(),
            "gate on the tuned alarm: {:.2} → {:.2}",
            t.false_per_week(),
            tg.false_per_week()
        );
        assert!(tg.alarmed_recall() >= 0.90, "{:.3}", tg.alarmed_recall());
    }
}
