//! NAB's score, as NAB computes it (numenta/NAB `nab/sweeper.py`, `nab/runner.py`):
//!
//! * The first `min(floor(0.15 · rows), 0.15 · 5000)` rows are probationary: nothing there is
//!   scored (detections ignored; a window only counts if it has a row after the probation).
//! * Inside a window of `width` rows ending at row `right`, a detection at row `i` is worth
//!   `tpWeight · S(−(right − i + 1) / width) / S(−1)`, where `S(x) = 2·sigmoid(−5x) − 1`
//!   (`−1` when `x ≥ 3`). Only the best (earliest) detection of a window counts; a window
//!   with none costs `−fnWeight`.
//! * Outside windows, a detection is worth `fpWeight · S(|prevRight − i| / (prevWidth − 1))`
//!   relative to the preceding window (`fpWeight · −1` before the first window): a false
//!   positive just after a window costs little, one far from any window costs `fpWeight`.
//! * Over a corpus: `100 · (raw − null) / (perfect − null)`, where `null` is the raw score of a
//!   detector that never fires (every window missed) and `perfect = windows · tpWeight`.
//!
//! Detections here are binary (an action at a row, or none): NAB's threshold sweep has
//! nothing to choose, so the scores are those of the detector as configured.

use crate::nab::CostMatrix;

/// NAB's probationary length for a series of `rows` rows.
pub fn probationary_rows(rows: usize) -> usize {
    (0.15 * rows as f64).floor().min(0.15 * 5000.0) as usize
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// NAB's scaled sigmoid of a relative position in (or past) a window.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position >= 3.0 {
        -1.0
    } else {
        2.0 * sigmoid(-5.0 * position) - 1.0
    }
}

/// The raw NAB score of one series and what it is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SeriesScore {
    pub raw: f64,
    /// Raw score of a detector that never fires: `−fnWeight ·` scored windows.
    pub null: f64,
    /// `tpWeight ·` windows (every window in the labels, as NAB counts them).
    pub perfect: f64,
}

impl SeriesScore {
    pub fn add(&mut self, o: &SeriesScore) {
        self.raw += o.raw;
        self.null += o.null;
        self.perfect += o.perfect;
    }

    /// `100 · (raw − null) / (perfect − null)`; `None` without windows (nothing to normalise by).
    pub fn normalised(&self) -> Option<f64> {
        let span = self.perfect - self.null;
        (span > 0.0).then(|| 100.0 * (self.raw - self.null) / span)
    }
}

/// Scores detections (row indices) on a series of `rows` rows with `windows` (inclusive row
/// ranges, ascending, not overlapping), following NAB's sweeper row by row.
pub fn score_series(
    rows: usize,
    windows: &[(usize, usize)],
    detections: &[usize],
    cost: &CostMatrix,
) -> SeriesScore {
    let probation = probationary_rows(rows);
    let max_tp = scaled_sigmoid(-1.0);
    let mut detected = vec![false; rows];
    for &d in detections {
        if let Some(x) = detected.get_mut(d) {
            *x = true;
        }
    }
    // Per window: None = not scored (entirely probationary), Some(best) otherwise.
    let mut best: Vec<Option<f64>> = vec![None; windows.len()];
    let mut fp = 0.0;
    let mut prev: Option<(usize, usize)> = None; // (right, width) of the preceding window
    let mut w = 0usize;
    for (i, hit) in detected.iter().enumerate() {
        while w < windows.len() && windows[w].1 < i {
            let (a, b) = windows[w];
            prev = Some((b, b - a + 1));
            w += 1;
        }
        let inside = windows.get(w).filter(|(a, _)| *a <= i).copied();
        if i < probation {
            continue;
        }
        match inside {
            Some((a, b)) => {
                let slot = &mut best[w];
                let floor = slot.unwrap_or(-cost.fn_);
                if *hit {
                    let width = (b - a + 1) as f64;
                    let position = -((b - i + 1) as f64) / width;
                    let score = scaled_sigmoid(position) * cost.tp / max_tp;
                    *slot = Some(floor.max(score));
                } else {
                    *slot = Some(floor);
                }
            }
            None if *hit => {
                let position = match prev {
                    Some((right, width)) if width > 1 => (i - right) as f64 / (width - 1) as f64,
                    _ => 3.0,
                };
                fp += scaled_sigmoid(position) * cost.fp;
            }
            None => {}
        }
    }
    let scored = best.iter().flatten().count() as f64;
    SeriesScore {
        raw: best.iter().flatten().sum::<f64>() + fp,
        null: -cost.fn_ * scored,
        perfect: cost.tp * windows.len() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nab::{LOW_FP, STANDARD};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn probation_is_nabs_rule() {
        assert_eq!(probationary_rows(20), 3);
        assert_eq!(probationary_rows(4033), 604);
        assert_eq!(probationary_rows(22_696), 750);
    }

    #[test]
    fn scaled_sigmoid_matches_nabs_documented_points() {
        assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-5);
        assert!((scaled_sigmoid(-0.5) - 0.84828).abs() < 1e-5);
        assert!(close(scaled_sigmoid(0.0), 0.0));
        assert!((scaled_sigmoid(1.0) + 0.98661).abs() < 1e-5);
        assert!(close(scaled_sigmoid(3.0), -1.0));
    }

    /// 20 rows, probation = floor(0.15 · 20) = 3 rows, one window over rows 10..=13 (4 rows).
    /// Detections: row 1 (probation: ignored), row 5 (before any window: −fpWeight), row 11
    /// (TP at position −(13 − 11 + 1)/4 = −0.75), row 12 (same window, later: ignored), row 17
    /// (FP at |13 − 17| / (4 − 1) = 4/3 past the window).
    /// By hand: TP = S(−0.75)/S(−1) = 0.954045/0.986614 = 0.966989; FP@17 = 0.11 · S(4/3) =
    /// 0.11 · −0.997459 = −0.109720; FP@5 = −0.11. Raw = 0.747269; null = −1, perfect = 1,
    /// normalised = 100 · 1.747269 / 2 = 87.363.
    #[test]
    fn hand_computed_nab_score() {
        let windows = [(10, 13)];
        let s = score_series(20, &windows, &[1, 5, 11, 12, 17], &STANDARD);
        assert!(close(s.raw, 0.747_268_711_377_938_5), "{}", s.raw);
        assert!(close(s.null, -1.0) && close(s.perfect, 1.0));
        assert!((s.normalised().unwrap() - 87.363_435_568_896_9).abs() < 1e-9);
        // Low-FP profile: the FP weights double.
        let s = score_series(20, &windows, &[11, 17], &LOW_FP);
        assert!(close(s.raw, 0.747_548_334_955_816_3), "{}", s.raw);
        // Nothing detected: the null score, normalised 0; the window's first row: ~100.
        let none = score_series(20, &windows, &[], &STANDARD);
        assert_eq!(none.normalised(), Some(0.0));
        let perfect = score_series(20, &windows, &[10], &STANDARD);
        assert!((perfect.normalised().unwrap() - 100.0).abs() < 1e-9);
    }

    proptest::proptest! {
        /// Any detections on any windows: finite, never above perfect, 0 for none.
        #[test]
        fn scores_are_bounded(
            rows in 1usize..400,
            cuts in proptest::collection::vec(0usize..400, 0..8),
            detections in proptest::collection::vec(0usize..450, 0..30),
        ) {
            let mut c: Vec<usize> = cuts.into_iter().filter(|x| *x < rows).collect();
            c.sort_unstable();
            c.dedup();
            let windows: Vec<(usize, usize)> = c.chunks(2).filter(|p| p.len() == 2).map(|p| (p[0], p[1])).collect();
            let s = score_series(rows, &windows, &detections, &STANDARD);
            proptest::prop_assert!(s.raw.is_finite());
            proptest::prop_assert!(s.raw <= s.perfect + 1e-9);
            if let Some(n) = s.normalised() {
                proptest::prop_assert!(n <= 100.0 + 1e-9);
            }
            let none = score_series(rows, &windows, &[], &STANDARD);
            proptest::prop_assert!((none.raw - none.null).abs() < 1e-12);
        }
    }

    #[test]
    fn windows_inside_the_probation_are_not_scored() {
        // 100 rows → 15 probationary; the first window ends at row 9.
        let s = score_series(100, &[(5, 9), (50, 59)], &[], &STANDARD);
        assert!(close(s.null, -1.0) && close(s.raw, -1.0));
        assert!(close(s.perfect, 2.0)); // NAB counts every labelled window in `perfect`
    }
}
