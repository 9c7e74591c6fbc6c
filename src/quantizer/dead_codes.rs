//! Dead-code restarts: a code unused for more than `--dead-code-steps` steps is re-seeded at a
//! random encoder output of the current batch (and its EMA state with it). [`DeviceDeadCodes`]
//! does the same on a GPU without reading anything back.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;

use super::EmaCodebook;
use super::ema::DeviceEma;
use crate::device::host_f32;

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

/// [`DeadCodeTracker`] on the device of the training step: the step each code was last assigned
/// (f32, exact to 2^24 steps) and the restart count live there, and a restart is a masked
/// select, so a step reads nothing back. Each step draws a candidate row of the batch for every
/// code (host random numbers, uploaded) and re-seeds the dead ones from them; which rows the
/// host tracker would pick differs (it draws only for the dead codes), the rule does not.
#[derive(Clone, Debug)]
pub struct DeviceDeadCodes {
    patience: u64,
    /// `[K]`.
    last_used: Tensor<1>,
    /// `[1]`.
    restarts: Tensor<1>,
}

impl DeviceDeadCodes {
    pub fn upload(t: &DeadCodeTracker, device: &Device) -> Self {
        let k = t.last_used.len();
        let last: Vec<f32> = t.last_used.iter().map(|&s| s as f32).collect();
        Self {
            patience: t.patience,
            last_used: Tensor::from_data(TensorData::new(last, [k]), device),
            restarts: Tensor::from_data(TensorData::new(vec![t.restarts as f32], [1]), device),
        }
    }

    /// The host form (one read).
    pub fn download(&self) -> DeadCodeTracker {
        let v = host_f32(Tensor::cat(
            vec![self.last_used.clone(), self.restarts.clone()],
            0,
        ));
        let (last, restarts) = v.split_at(v.len() - 1);
        DeadCodeTracker {
            patience: self.patience,
            last_used: last.iter().map(|&s| s as u64).collect(),
            restarts: restarts[0] as u64,
        }
    }

    /// Step `step`: the codes assigned in it (`indices`, `[N]`) are used now; codes unused for
    /// more than the patience are re-seeded in `codebook` (`[K, D]`) and `ema` from random rows
    /// of `z` (`[N, D]`). Returns the codebook.
    pub fn step(
        &mut self,
        indices: Tensor<1, Int>,
        step: u64,
        z: Tensor<2>,
        codebook: Tensor<2>,
        ema: Option<&mut DeviceEma>,
        rng: &mut impl Rng,
    ) -> Tensor<2> {
        let [k, d] = codebook.dims();
        let n = z.dims()[0];
        let used = super::one_hot(indices, k)
            .sum_dim(0)
            .reshape([k])
            .greater_elem(0.0);
        let last = self.last_used.clone().mask_fill(used, step as f32);
        // step - last_used > patience
        let dead = last.clone().lower_elem(step as f64 - self.patience as f64);
        let rows: Vec<i64> = (0..k).map(|_| rng.gen_range(0..n.max(1)) as i64).collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [k]), &z.device());
        let candidates = z.select(0, rows);
        self.last_used = last.mask_fill(dead.clone(), step as f32);
        self.restarts = self.restarts.clone() + dead.clone().float().sum();
        if let Some(e) = ema {
            e.reseed(dead.clone(), candidates.clone());
        }
        codebook.mask_where(dead.reshape([k, 1]).expand([k, d]), candidates)
    }
}
