//! PNG plots: a trace with the gate's baseline and band and its decisions; a scaling run with
//! each policy's in-service capacity against the capacity the load needed.
//!
//! Text is drawn with a font embedded from `epaint_default_fonts` (no system fonts needed).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::detect::Alarm;
use crate::scale_eval::{Outcome, TARGET};
use crate::traces::{Trace, STEPS_PER_DAY};
use selfheal_core::anomaly::{assess, Direction, GateSettings};

pub type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Registers the embedded font once; plots are drawn without it only if that fails.
pub fn register_font() -> bool {
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        epaint_default_fonts::UBUNTU_LIGHT,
    )
    .is_ok()
}

const INCIDENT: RGBColor = RGBColor(255, 205, 205);
const BAND: RGBColor = RGBColor(150, 80, 200);
const TRACE: RGBColor = RGBColor(40, 90, 200);
const ACT: RGBColor = RGBColor(20, 150, 60);
const SKIP: RGBColor = RGBColor(240, 140, 0);

fn day(i: usize, from: usize) -> f64 {
    (i as f64 - from as f64) / STEPS_PER_DAY as f64
}

/// One week of a CPU trace from step `from`: the metric, the gate's baseline and the edge of
/// its normal band at every step, the alarm's threshold, incidents, and what the gate did
/// with each alarm (green: acted, orange: skipped as expected).
pub fn gate_week(
    path: &Path,
    trace: &Trace,
    from: usize,
    alarms: &[Alarm],
    threshold: f64,
    settings: &GateSettings,
) -> PlotResult {
    let to = (from + 7 * STEPS_PER_DAY).min(trace.values.len());
    let series = crate::nab::Series {
        category: trace.scenario.to_string(),
        name: String::new(),
        times: (0..trace.values.len()).map(|i| trace.time(i)).collect(),
        values: trace.values.clone(),
        windows: Vec::new(),
    };
    let mut baseline = Vec::new();
    let mut edge = Vec::new();
    for i in from..to {
        let h = crate::synth::fetched_history(&series, i, settings);
        let v = trace.values.get(i).copied().unwrap_or(0.0);
        let a = assess(trace.time(i), &[v], &h, Direction::Above, settings);
        if let (Some(b), Some(e)) = (a.baseline, a.band_edge) {
            baseline.push((day(i, from), b));
            edge.push((day(i, from), e.min(104.0)));
        }
    }
    let root = BitMapBackend::new(path, (1600, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "{} (seed {}): one week, CPU %, tuned static alarm at {threshold} % and the anomaly gate",
        trace.scenario, trace.seed
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..7f64, 0f64..105f64)?;
    chart
        .configure_mesh()
        .x_desc("day of the week shown (0 = Monday 00:00 UTC)")
        .y_desc("CPU %")
        .x_labels(15)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .draw_series(
            trace
                .incidents
                .iter()
                .filter(|(a, b)| *b > from && *a < to)
                .map(|&(a, b)| {
                    Rectangle::new(
                        [(day(a.max(from), from), 0.0), (day(b.min(to), from), 105.0)],
                        INCIDENT.filled(),
                    )
                }),
        )?
        .label("injected incident (ground truth)")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], INCIDENT.filled()));
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, threshold), (7.0, threshold)],
            8,
            6,
            RED.stroke_width(2),
        ))?
        .label("static threshold")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            baseline,
            RGBColor(120, 120, 120).stroke_width(2),
        ))?
        .label("gate baseline (seasonal median)")
        .legend(|(x, y)| {
            PathElement::new(
                vec![(x, y), (x + 18, y)],
                RGBColor(120, 120, 120).stroke_width(2),
            )
        });
    chart
        .draw_series(LineSeries::new(edge, BAND.stroke_width(2)))?
        .label("gate band edge (baseline + z·spread)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BAND.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            (from..to).filter_map(|i| trace.values.get(i).map(|v| (day(i, from), *v))),
            TRACE.stroke_width(1),
        ))?
        .label("metric")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], TRACE.stroke_width(2)));
    let shown: Vec<&Alarm> = alarms
        .iter()
        .filter(|f| f.row >= from && f.row < to)
        .collect();
    chart
        .draw_series(shown.iter().filter(|f| f.acted).map(|f| {
            let v = trace.values.get(f.row).copied().unwrap_or(0.0);
            TriangleMarker::new((day(f.row, from), v), 9, ACT.filled())
        }))?
        .label("alarm: gate acts")
        .legend(|(x, y)| TriangleMarker::new((x + 9, y), 7, ACT.filled()));
    chart
        .draw_series(shown.iter().filter(|f| !f.acted).map(|f| {
            let v = trace.values.get(f.row).copied().unwrap_or(0.0);
            Cross::new((day(f.row, from), v), 8, SKIP.stroke_width(3))
        }))?
        .label("alarm: gate skips (expected pattern)")
        .legend(|(x, y)| Cross::new((x + 9, y), 6, SKIP.stroke_width(3)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

/// `days` days of a scaling run from step `from`: the capacity the load needed at the target
/// and each policy's in-service instances.
pub fn scaling(
    path: &Path,
    trace: &Trace,
    from: usize,
    days: usize,
    runs: &[(&str, &Outcome, RGBColor)],
) -> PlotResult {
    let n = days * STEPS_PER_DAY;
    let needed: Vec<(f64, f64)> = (0..n)
        .filter_map(|k| {
            trace
                .values
                .get(from + k)
                .map(|l| (k as f64 / STEPS_PER_DAY as f64, l / TARGET))
        })
        .collect();
    let top = runs
        .iter()
        .flat_map(|(_, o, _)| o.in_service.iter().take(n).map(|v| f64::from(*v)))
        .chain(needed.iter().map(|(_, v)| *v))
        .fold(0.0, f64::max)
        * 1.1;
    let root = BitMapBackend::new(path, (1600, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "{} (seed {}): instances in service vs needed at {TARGET} % target",
        trace.scenario, trace.seed
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..days as f64, 0f64..top.max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("days")
        .y_desc("instances")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .draw_series(
            trace
                .incidents
                .iter()
                .filter(|(a, b)| *b > from && *a < from + n)
                .map(|&(a, b)| {
                    let x0 = (a.max(from) - from) as f64 / STEPS_PER_DAY as f64;
                    let x1 = (b.min(from + n) - from) as f64 / STEPS_PER_DAY as f64;
                    Rectangle::new([(x0, 0.0), (x1, top)], INCIDENT.filled())
                }),
        )?
        .label("flash crowd (unforecastable)")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], INCIDENT.filled()));
    chart
        .draw_series(LineSeries::new(
            needed,
            RGBColor(60, 60, 60).stroke_width(2),
        ))?
        .label("needed: load / target")
        .legend(|(x, y)| {
            PathElement::new(
                vec![(x, y), (x + 18, y)],
                RGBColor(60, 60, 60).stroke_width(2),
            )
        });
    for (name, o, color) in runs {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                o.in_service
                    .iter()
                    .take(n)
                    .enumerate()
                    .map(|(k, v)| (k as f64 / STEPS_PER_DAY as f64, f64::from(*v))),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(
            o.fallback_steps
                .iter()
                .filter(|s| **s >= from && **s < from + n)
                .map(|s| {
                    let k = s - from;
                    let v = o.in_service.get(k).copied().unwrap_or(0);
                    Cross::new(
                        (k as f64 / STEPS_PER_DAY as f64, f64::from(v)),
                        6,
                        color.stroke_width(2),
                    )
                }),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

/// One labelled series: the values, the probationary period, the labelled windows, and each
/// detector's actions in its own lane below the series (crosses: alarms the gate skipped).
pub fn nab_series(
    path: &Path,
    s: &crate::nab::Series,
    runs: &[(crate::nab_detect::Detector, Vec<crate::detect::Alarm>)],
) -> PlotResult {
    let (Some(t0), Some(t1)) = (s.times.first(), s.times.last()) else {
        return Ok(());
    };
    let x = |t: i64| (t - t0) as f64 / 86_400.0;
    let span = x(*t1).max(1e-6);
    let lo = s.values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = s.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = (hi - lo).max(1e-9);
    let lane = range * 0.08;
    let bottom = lo - lane * (runs.len() as f64 + 0.5);
    let top = hi + range * 0.05;
    let root = BitMapBackend::new(path, (1400, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}/{}: labelled windows and each detector's actions",
                s.category, s.name
            ),
            ("sans-serif", 22),
        )
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..span, bottom..top)?;
    chart
        .configure_mesh()
        .x_desc("days from the first datapoint")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let p = crate::nab_score::probationary_rows(s.len());
    if let Some(tp) = s.times.get(p) {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, bottom), (x(*tp), top)],
                RGBColor(225, 225, 225).filled(),
            )))?
            .label("probationary (not scored)")
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 6), (x + 18, y + 6)],
                    RGBColor(225, 225, 225).filled(),
                )
            });
    }
    chart
        .draw_series(s.windows.iter().map(|&(a, b)| {
            Rectangle::new(
                [(x(s.times[a]), bottom), (x(s.times[b]), top)],
                INCIDENT.filled(),
            )
        }))?
        .label("labelled anomaly window")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], INCIDENT.filled()));
    chart
        .draw_series(LineSeries::new(
            s.times.iter().zip(&s.values).map(|(t, v)| (x(*t), *v)),
            TRACE.stroke_width(1),
        ))?
        .label("metric")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], TRACE.stroke_width(2)));
    let colors = [RGBColor(200, 30, 30), ACT, BAND, RGBColor(40, 40, 40)];
    for (k, ((d, alarms), color)) in runs.iter().zip(colors).enumerate() {
        let y = lo - lane * (k as f64 + 1.0);
        chart
            .draw_series(
                alarms
                    .iter()
                    .filter(|a| a.acted)
                    .map(|a| TriangleMarker::new((x(s.times[a.row]), y), 7, color.filled())),
            )?
            .label(format!("{} acts", d.name()))
            .legend(move |(x, y)| TriangleMarker::new((x + 9, y), 6, color.filled()));
        chart.draw_series(
            alarms
                .iter()
                .filter(|a| !a.acted)
                .map(|a| Cross::new((x(s.times[a.row]), y), 6, SKIP.stroke_width(2))),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
