//! Dead-code restarts: a code unused for more than `--dead-code-steps` steps is re-seeded at a
//! random encoder output of the current batch (and its EMA state with it).

use rand::Rng;

use super::EmaCodebook;

/// Tracks, for each code, the last step it was assigned, and re-seeds codes unused for more
/// than `patience` steps from random encoder outputs of the current batch.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeadCodeTracker {
    pub patience: u64,
    pub last_used: Vec<u64>,
    pub restarts: u64,
}

impl DeadCodeTracker {
    pub fn new(k: usize, patience: u64, step: u64) -> Self {
        Self {
            patience,
            last_used: vec![step; k],
            restarts: 0,
        }
    }

    pub fn observe(&mut self, idx: &[u32], step: u64) {
        for &i in idx {
            self.last_used[i as usize] = step;
        }
    }

    /// Codes unused for more than `patience` steps at `step` (empty when off).
    pub fn dead(&self, step: u64) -> Vec<usize> {
        if self.patience == 0 {
            return Vec::new();
        }
        (0..self.last_used.len())
            .filter(|&c| step.saturating_sub(self.last_used[c]) > self.patience)
            .collect()
    }

    /// Re-seeds dead codes in `codebook` (`[K*D]`) from random rows of `z` (`[N*D]`); returns the
    /// codes re-seeded. `ema`, when given, is re-seeded too.
    pub fn restart(
        &mut self,
        step: u64,
        codebook: &mut [f32],
        z: &[f32],
        d: usize,
        mut ema: Option<&mut EmaCodebook>,
        rng: &mut impl Rng,
    ) -> Vec<usize> {
        let dead = self.dead(step);
        let n = z.len() / d;
        if n == 0 {
            return Vec::new();
        }
        for &c in &dead {
            let r = rng.gen_range(0..n);
            let v = &z[r * d..(r + 1) * d];
            codebook[c * d..(c + 1) * d].copy_from_slice(v);
            if let Some(e) = ema.as_deref_mut() {
                e.reseed(c, v);
            }
            self.last_used[c] = step;
        }
        self.restarts += dead.len() as u64;
        dead
    }
}
