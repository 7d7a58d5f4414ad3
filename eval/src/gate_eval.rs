//! The anomaly gate against the static threshold: a CloudWatch-like alarm (2 of 2 datapoints
//! above 80 %) fires on the trace; the static policy acts on every firing, the gate policy
//! asks `anomaly::assess` first, with exactly the history windows the function fetches.

use crate::traces::{Trace, STEP};
use selfheal_core::anomaly::{assess, Assessment, Direction, GateSettings, Judgement, Point};

pub const THRESHOLD: f64 = 80.0;
/// Datapoints that must breach (out of as many) for the alarm to fire.
pub const DATAPOINTS: usize = 2;
/// Recent history fetched along with the references (as in reboot-instance).
pub const RECENT_SECS: i64 = 3 * 3600;

/// One OK → ALARM transition.
#[derive(Debug, Clone)]
pub struct Firing {
    pub step: usize,
    /// The incident it fired in, if any (ground truth).
    pub incident: Option<usize>,
    pub assessment: Assessment,
}

impl Firing {
    pub fn gate_acts(&self) -> bool {
        self.assessment.judgement != Judgement::Expected
    }
}

/// Steps at which the static alarm goes from OK to ALARM.
pub fn firings(values: &[f64]) -> Vec<usize> {
    let breach = |i: usize| values.get(i).is_some_and(|v| *v > THRESHOLD);
    let alarm = |i: usize| i + 1 >= DATAPOINTS && (0..DATAPOINTS).all(|k| breach(i - k));
    (0..values.len())
        .filter(|&i| alarm(i) && !(i > 0 && alarm(i - 1)))
        .collect()
}

/// The datapoints the function's port would return at step `i`: recent hours and the
/// reference windows, never the future.
pub fn fetched_history(trace: &Trace, i: usize, settings: &GateSettings) -> Vec<Point> {
    let t = trace.time(i);
    let mut windows = vec![(t - RECENT_SECS, t)];
    windows.extend(settings.reference_windows(t));
    let mut out = Vec::new();
    for (start, end) in windows {
        let lo = ((start - trace.time(0)).max(0) + STEP - 1) / STEP;
        let hi = ((end - trace.time(0)) / STEP).min(i as i64);
        for j in lo.max(0)..=hi {
            if let Some(v) = trace.values.get(j as usize) {
                out.push(Point::new(trace.time(j as usize), *v));
            }
        }
    }
    out
}

/// Every firing at or after `from` step, assessed by the gate.
pub fn replay(trace: &Trace, from: usize, settings: &GateSettings) -> Vec<Firing> {
    firings(&trace.values)
        .into_iter()
        .filter(|&i| i >= from)
        .map(|i| {
            let breaching: Vec<f64> = (0..DATAPOINTS)
                .filter_map(|k| i.checked_sub(k).and_then(|j| trace.values.get(j).copied()))
                .collect();
            let history = fetched_history(trace, i, settings);
            let assessment = assess(
                trace.time(i),
                &breaching,
                &history,
                Direction::Above,
                settings,
            );
            Firing {
                step: i,
                incident: trace.incident_at(i),
                assessment,
            }
        })
        .collect()
}

/// Counts for one policy over a set of traces.
#[derive(Debug, Default, Clone, Copy)]
pub struct Score {
    pub actions: usize,
    pub true_actions: usize,
    pub incidents: usize,
    pub caught: usize,
    pub weeks: f64,
}

impl Score {
    pub fn false_actions(&self) -> usize {
        self.actions - self.true_actions
    }
    pub fn precision(&self) -> f64 {
        if self.actions == 0 {
            1.0
        } else {
            self.true_actions as f64 / self.actions as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.incidents == 0 {
            1.0
        } else {
            self.caught as f64 / self.incidents as f64
        }
    }
    pub fn false_per_week(&self) -> f64 {
        if self.weeks > 0.0 {
            self.false_actions() as f64 / self.weeks
        } else {
            0.0
        }
    }
    pub fn add(&mut self, o: &Score) {
        self.actions += o.actions;
        self.true_actions += o.true_actions;
        self.incidents += o.incidents;
        self.caught += o.caught;
        self.weeks += o.weeks;
    }
}

/// Scores the static policy (acts on every firing) and the gate policy on one trace.
pub fn score(trace: &Trace, from: usize, firings: &[Firing], weeks: f64) -> (Score, Score) {
    let incidents: Vec<usize> = trace
        .incidents
        .iter()
        .enumerate()
        .filter(|(_, (a, _))| *a >= from)
        .map(|(k, _)| k)
        .collect();
    let tally = |acts: &dyn Fn(&Firing) -> bool| {
        let acted: Vec<&Firing> = firings.iter().filter(|f| acts(f)).collect();
        Score {
            actions: acted.len(),
            true_actions: acted.iter().filter(|f| f.incident.is_some()).count(),
            incidents: incidents.len(),
            caught: incidents
                .iter()
                .filter(|k| acted.iter().any(|f| f.incident == Some(**k)))
                .count(),
            weeks,
        }
    };
    (tally(&|_| true), tally(&|f| f.gate_acts()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firings_need_two_breaching_points_and_a_transition() {
        let v = [10.0, 90.0, 10.0, 90.0, 90.0, 90.0, 10.0, 95.0, 95.0];
        assert_eq!(firings(&v), vec![4, 8]);
    }

    #[test]
    fn history_never_includes_the_future() {
        let t = crate::traces::cpu_trace("monday-peak", 1, 5);
        let i = 4 * crate::traces::STEPS_PER_WEEK + 100;
        let h = fetched_history(&t, i, &GateSettings::default());
        assert!(h.iter().all(|p| p.at <= t.time(i)));
        // 3 h recent (37 points) + 10 windows of ±15 min (7 points each).
        assert_eq!(h.len(), 37 + 70);
    }
}
