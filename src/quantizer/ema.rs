//! `vq-ema`: the nearest codeword (eq. 27), the codebook by exponential moving averages
//! (sonnet's `VectorQuantizerEMA`) instead of the codebook term, so its loss is
//! beta ||z_e - sg(z_q)||^2 alone (eq. 24 without the codebook term). [`EmaCodebook`] is the
//! moving-average state, in f64 on the host; soft EM's M-step uses it too. [`DeviceEma`] is the
//! same state as f32 tensors on a GPU, updated there from per-row weights.

use burn::tensor::{Bool, Device, Tensor, TensorData};

use super::QuantizerParams;
use super::config::{CodeSpace, Estimator, QuantizerConfig};
use super::{Context, QuantizerKind, QuantizerOutput, Registered, vq};
use crate::device::host_f32;

/// Codebook by exponential moving averages (sonnet's `VectorQuantizerEMA`), in f64 on the host:
///
/// N_k <- EMA_decay(n_k),  m_k <- EMA_decay(sum_{i: k_i = k} z_e,i),
/// with zero-debiased averages hidden / (1 - decay^t) (t = number of updates), Laplace-smoothed
/// counts N'_k = (N_k + eps) / (sum N + K eps) * sum N, and e_k = m_k / N'_k.
#[derive(Clone, Debug, PartialEq)]
pub struct EmaCodebook {
    pub k: usize,
    pub d: usize,
    pub decay: f64,
    pub epsilon: f64,
    /// Biased ("hidden") EMA of counts, `[K]`.
    pub count_hidden: Vec<f64>,
    /// Biased EMA of sums, `[K*D]`.
    pub sum_hidden: Vec<f64>,
    /// Number of updates so far.
    pub updates: u64,
}

impl EmaCodebook {
    pub fn new(k: usize, d: usize, decay: f64, epsilon: f64) -> Self {
        Self {
            k,
            d,
            decay,
            epsilon,
            count_hidden: vec![0.0; k],
            sum_hidden: vec![0.0; k * d],
            updates: 0,
        }
    }

    /// One update from a batch: `z` is `[N*D]` row-major, `idx` the assigned codes. Returns the
    /// new codebook `[K*D]` (f32).
    pub fn update(&mut self, z: &[f32], idx: &[u32]) -> Vec<f32> {
        let (k, d) = (self.k, self.d);
        let mut counts = vec![0.0f64; k];
        let mut sums = vec![0.0f64; k * d];
        for (row, &c) in z.chunks_exact(d).zip(idx) {
            let c = c as usize;
            counts[c] += 1.0;
            for (s, &v) in sums[c * d..(c + 1) * d].iter_mut().zip(row) {
                *s += v as f64;
            }
        }
        self.apply(&counts, &sums)
    }

    /// One M-step from Monte-Carlo samples ([`super::soft_em::sample_statistics`]): `z` is
    /// `[N*D]`, `samples` is `[N*m]`. Returns the new codebook `[K*D]`.
    pub fn update_samples(&mut self, z: &[f32], samples: &[u32], m: usize) -> Vec<f32> {
        let (counts, sums) = super::soft_em::sample_statistics(z, samples, m, self.k, self.d);
        self.apply(&counts, &sums)
    }

    /// One update from expected counts `[K]` and sums `[K*D]` (soft EM's M-step). Returns the
    /// new codebook `[K*D]`.
    pub fn apply(&mut self, counts: &[f64], sums: &[f64]) -> Vec<f32> {
        self.updates += 1;
        let a = 1.0 - self.decay;
        for (h, v) in self.count_hidden.iter_mut().zip(counts) {
            *h -= (*h - v) * a;
        }
        for (h, v) in self.sum_hidden.iter_mut().zip(sums) {
            *h -= (*h - v) * a;
        }
        self.codebook()
    }

    /// Bias correction 1 - decay^t.
    fn debias(&self) -> f64 {
        1.0 - self.decay.powi(self.updates.min(i32::MAX as u64) as i32)
    }

    /// The codebook implied by the current averages, `[K*D]` (f32).
    pub fn codebook(&self) -> Vec<f32> {
        let (k, d) = (self.k, self.d);
        let db = self.debias().max(f64::MIN_POSITIVE);
        let counts: Vec<f64> = self.count_hidden.iter().map(|h| h / db).collect();
        let n: f64 = counts.iter().sum();
        let mut out = vec![0.0f32; k * d];
        for c in 0..k {
            let smoothed = (counts[c] + self.epsilon) / (n + k as f64 * self.epsilon) * n;
            for j in 0..d {
                let m = self.sum_hidden[c * d + j] / db;
                out[c * d + j] = if smoothed > 0.0 {
                    (m / smoothed) as f32
                } else {
                    0.0
                };
            }
        }
        out
    }

    /// Starts the averages at `centres` (`[K*D]`), as if each had been seen once.
    pub fn start_at(&mut self, centres: &[f32]) {
        self.updates = 1;
        let a = 1.0 - self.decay;
        self.count_hidden.iter_mut().for_each(|c| *c = a);
        self.sum_hidden
            .iter_mut()
            .zip(centres)
            .for_each(|(s, &v)| *s = a * v as f64);
    }

    /// Re-seeds code `c` at `v`, as if it had been seen once with value `v`.
    pub fn reseed(&mut self, c: usize, v: &[f32]) {
        let db = self.debias();
        self.count_hidden[c] = db;
        for (h, &x) in self.sum_hidden[self.d * c..self.d * (c + 1)]
            .iter_mut()
            .zip(v)
        {
            *h = x as f64 * db;
        }
    }
}

/// [`EmaCodebook`] as f32 tensors on the device of the training step (GPU training), with the
/// same update: the batch's counts and sums come from weights w `[N, K]` (one-hot of the
/// assigned code, or soft EM's sample frequencies) as n = sum_i w_i and s = w^T z_e, so the
/// update is two reductions and one matrix product, and nothing leaves the device. The host
/// state is the checkpointed form: [`DeviceEma::upload`] and [`DeviceEma::download`] convert.
#[derive(Clone, Debug)]
pub struct DeviceEma {
    decay: f64,
    epsilon: f64,
    /// `[K]`.
    count_hidden: Tensor<1>,
    /// `[K, D]`.
    sum_hidden: Tensor<2>,
    updates: u64,
}

impl DeviceEma {
    /// The host state `e` on `device`.
    pub fn upload(e: &EmaCodebook, device: &Device) -> Self {
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        Self {
            decay: e.decay,
            epsilon: e.epsilon,
            count_hidden: Tensor::from_data(TensorData::new(f(&e.count_hidden), [e.k]), device),
            sum_hidden: Tensor::from_data(TensorData::new(f(&e.sum_hidden), [e.k, e.d]), device),
            updates: e.updates,
        }
    }

    /// Writes the state into the host form `e` (one read).
    pub fn download(&self, e: &mut EmaCodebook) {
        let k = e.k;
        let v = host_f32(Tensor::cat(
            vec![
                self.count_hidden.clone(),
                self.sum_hidden.clone().reshape([k * e.d]),
            ],
            0,
        ));
        e.count_hidden = v[..k].iter().map(|&x| x as f64).collect();
        e.sum_hidden = v[k..].iter().map(|&x| x as f64).collect();
        e.updates = self.updates;
    }

    /// One update from a batch: z `[N, D]`, weights `[N, K]`. Returns the new codebook `[K, D]`.
    pub fn update(&mut self, z: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
        let k = w.dims()[1];
        let counts = w.clone().sum_dim(0).reshape([k]);
        let sums = w.transpose().matmul(z);
        self.updates += 1;
        let a = 1.0 - self.decay;
        self.count_hidden =
            self.count_hidden.clone() - (self.count_hidden.clone() - counts).mul_scalar(a);
        self.sum_hidden = self.sum_hidden.clone() - (self.sum_hidden.clone() - sums).mul_scalar(a);
        self.codebook()
    }

    fn debias(&self) -> f64 {
        1.0 - self.decay.powi(self.updates.min(i32::MAX as u64) as i32)
    }

    /// The codebook of the current averages, `[K, D]`: as [`EmaCodebook::codebook`].
    pub fn codebook(&self) -> Tensor<2> {
        let [k, d] = self.sum_hidden.dims();
        let db = self.debias().max(f64::MIN_POSITIVE);
        let counts = self.count_hidden.clone().div_scalar(db);
        let n = counts.clone().sum(); // [1]
        let smoothed = counts
            .add_scalar(self.epsilon)
            .div(n.clone().add_scalar(k as f64 * self.epsilon))
            .mul(n)
            .reshape([k, 1]);
        let empty = smoothed.clone().lower_equal_elem(0.0);
        let safe = smoothed.mask_fill(empty.clone(), 1.0);
        self.sum_hidden
            .clone()
            .div_scalar(db)
            .div(safe)
            .mask_fill(empty.expand([k, d]), 0.0)
    }

    /// Re-seeds the codes marked in `dead` (`[K]`) at the rows of `values` (`[K, D]`), as if
    /// each had been seen once with that value ([`EmaCodebook::reseed`]).
    pub fn reseed(&mut self, dead: Tensor<1, Bool>, values: Tensor<2>) {
        let [k, d] = self.sum_hidden.dims();
        let db = self.debias();
        self.count_hidden = self.count_hidden.clone().mask_fill(dead.clone(), db);
        let rows = dead.reshape([k, 1]).expand([k, d]);
        self.sum_hidden = self
            .sum_hidden
            .clone()
            .mask_where(rows, values.mul_scalar(db));
    }
}

/// The EMA quantizer.
#[derive(Debug)]
pub struct VqEma {
    beta: f64,
    estimator: Estimator,
    ema: EmaCodebook,
}

impl Registered for VqEma {
    fn new(cfg: &QuantizerConfig) -> Self {
        Self {
            beta: cfg.beta,
            estimator: cfg.estimator(),
            ema: EmaCodebook::new(
                cfg.codebook_size(),
                cfg.code_dim(),
                cfg.decay(),
                cfg.ema_epsilon,
            ),
        }
    }
}

impl super::Quantizer for VqEma {
    fn kind(&self) -> QuantizerKind {
        QuantizerKind::VqEma
    }

    fn code_space(&self) -> CodeSpace {
        CodeSpace {
            size: self.ema.k as u64,
            stages: 1,
        }
    }

    fn forward(&self, z_e: Tensor<2>, params: &QuantizerParams, ctx: Context) -> QuantizerOutput {
        vq::quantize_with(self.estimator, z_e, params.codebook(), ctx.resident)
    }

    /// beta ||z_e - sg(z_q)||^2.
    fn loss(&self, out: &QuantizerOutput) -> Tensor<1> {
        out.commitment_loss.clone().mul_scalar(self.beta)
    }

    fn update(
        &mut self,
        z_e: &[f32],
        indices: &[u32],
        _samples: Option<&[u32]>,
    ) -> Option<Vec<f32>> {
        Some(self.ema.update(z_e, indices))
    }

    /// One-hot of the assigned code.
    fn ema_weights(&self, out: &QuantizerOutput) -> Option<Tensor<2>> {
        Some(super::one_hot(out.indices.clone(), self.ema.k))
    }

    fn ema(&self) -> Option<&EmaCodebook> {
        Some(&self.ema)
    }

    fn ema_mut(&mut self) -> Option<&mut EmaCodebook> {
        Some(&mut self.ema)
    }
}
