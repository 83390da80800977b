//! Precision and recall of a match decision over labelled pairs (the cache's evaluations).

/// Counts of one decision over labelled pairs.
#[derive(Default, Clone, Copy)]
pub struct Score {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

impl Score {
    /// Scores `(predicted hit, should hit)` decisions.
    pub fn of(decisions: impl IntoIterator<Item = (bool, bool)>) -> Score {
        let mut s = Score::default();
        for decision in decisions {
            match decision {
                (true, true) => s.tp += 1,
                (true, false) => s.fp += 1,
                (false, true) => s.fn_ += 1,
                (false, false) => {}
            }
        }
        s
    }

    /// Correct hits / predicted hits (1.0 when nothing was predicted).
    pub fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }

    /// Correct hits / pairs that should hit.
    pub fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
}
