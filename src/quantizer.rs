//! The bottleneck: nearest-codeword assignment (seed eq. 27), the straight-through estimator,
//! the two VQ-VAE loss terms of seed eq. 24, the EMA codebook of `vq-ema`, k-means++
//! initialisation and dead-code restart.
//!
//! With a uniform prior r(z) the VDIB rate term H(p(Z|I), r) = log K is a constant (seed eq.
//! 25), so the VQ-VAE loss is the VDIB loss:
//!
//! L = ||x - dec(z_q)||^2 + ||sg(z_e) - z_q||^2 + beta ||z_e - sg(z_q)||^2      (eq. 24)
//!
//! with z_q = e_k, k = argmin_j ||z_e - e_j||^2 (eq. 27). The first term reaches the encoder
//! through the straight-through estimator z_e + sg(z_q - z_e); the codebook term moves only the
//! codebook, the commitment term only the encoder. All distances are computed in f32.
//!
//! Soft EM (Roy et al. 2018) replaces the hard assignment by p(z|i) = softmax(-d^2 / tau) (eq. 28,
//! computed by log-sum-exp), draws m codes from it, feeds the decoder the mean of their codewords,
//! and moves the codebook by an EMA M-step on the expected counts and sums: the VIB side of the
//! seed. [`rate_terms`] gives the explicit rate terms H(p(Z|I), r) and KL(p(Z|I) || r).

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;

use crate::assign::{self, Codebook, SoftOptions};

/// Squared Euclidean distances `[N, K]` between rows of `z` (`[N, D]`) and codewords `e`
/// (`[K, D]`): ||z||^2 - 2 z e^T + ||e||^2.
pub fn squared_distances(z: Tensor<2>, e: Tensor<2>) -> Tensor<2> {
    let z2 = z.clone().square().sum_dim(1); // [N, 1]
    let e2 = e.clone().square().sum_dim(1).transpose(); // [1, K]
    z2 + e2 - z.matmul(e.transpose()).mul_scalar(2.0)
}

/// Most distance-matrix elements [`nearest`] holds at once (64 MiB of f32).
pub const DISTANCE_BUDGET: usize = 1 << 24;

/// Whether tensors on `device` live in host memory (burn's `flex` backend), where the fused
/// kernels of [`crate::assign`] run on them directly.
pub fn on_host(device: &Device) -> bool {
    let flex = Device::flex();
    *device == flex || *device == flex.autodiff()
}

/// A tensor's values on the host.
pub(crate) fn host_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().expect("f32 data")
}

fn index_tensor(idx: &[u32], device: &Device) -> Tensor<1, Int> {
    Tensor::<1, Int>::from_data(
        TensorData::new(
            idx.iter().map(|&s| s as i64).collect::<Vec<_>>(),
            [idx.len()],
        ),
        device,
    )
}

/// Index of the nearest codeword for each row of `z` (seed eq. 27), `[N]`. On the CPU this is the
/// fused, tiled kernel [`assign::nearest`]; on other devices the codebook is scanned in chunks
/// once the N x K distance matrix would exceed [`DISTANCE_BUDGET`] elements, keeping a running
/// minimum. Either way ties go to the lower index, as in one argmin.
pub fn nearest(z: Tensor<2>, e: Tensor<2>) -> Tensor<1, Int> {
    let [n, d] = z.dims();
    let device = z.device();
    if on_host(&device) {
        let (zv, ev) = (host_f32(z), host_f32(e));
        return index_tensor(&assign::nearest(&zv, &Codebook::new(&ev, d)), &device);
    }
    let chunk = (DISTANCE_BUDGET / n.max(1)).max(1);
    nearest_chunked(z, e, chunk).reshape([n])
}

/// [`nearest`] scanning the codebook `chunk` codewords at a time; `[N, 1]`.
pub fn nearest_chunked(z: Tensor<2>, e: Tensor<2>, chunk: usize) -> Tensor<2, Int> {
    let [k, d] = e.dims();
    if k <= chunk {
        return squared_distances(z, e).argmin(1);
    }
    let mut best: Option<(Tensor<2>, Tensor<2, Int>)> = None;
    for start in (0..k).step_by(chunk.max(1)) {
        let end = (start + chunk).min(k);
        let dist = squared_distances(z.clone(), e.clone().slice([start..end, 0..d]));
        let (dmin, imin) = dist.min_dim_with_indices(1);
        let imin = imin.add_scalar(start as i64);
        best = Some(match best {
            None => (dmin, imin),
            Some((bd, bi)) => {
                let better = dmin.clone().lower(bd.clone());
                (
                    bd.mask_where(better.clone(), dmin),
                    bi.mask_where(better, imin),
                )
            }
        });
    }
    best.expect("k > chunk >= 1").1
}

/// One structured result of a hard quantization, as sonnet's `VectorQuantizer` returns it.
pub struct Quantized {
    /// z_e + sg(z_q - z_e): equals z_q in value, passes the decoder's gradient to z_e unchanged.
    pub z_st: Tensor<2>,
    /// z_q, the selected codewords (gradient reaches the codebook).
    pub z_q: Tensor<2>,
    /// Assigned code of each row.
    pub indices: Tensor<1, Int>,
    /// mean ||sg(z_e) - z_q||^2 over elements: moves the codebook only.
    pub codebook_loss: Tensor<1>,
    /// mean ||z_e - sg(z_q)||^2 over elements: moves the encoder only.
    pub commitment_loss: Tensor<1>,
}

/// Nearest-codeword quantization of `z_e` (`[N, D]`) with codebook `e` (`[K, D]`).
pub fn quantize(z_e: Tensor<2>, e: Tensor<2>) -> Quantized {
    let indices = nearest(z_e.clone().detach(), e.clone().detach());
    let z_q = e.select(0, indices.clone());
    let codebook_loss = (z_q.clone() - z_e.clone().detach()).square().mean();
    let commitment_loss = (z_e.clone() - z_q.clone().detach()).square().mean();
    let z_st = z_e.clone() + (z_q.clone() - z_e).detach();
    Quantized {
        z_st,
        z_q,
        indices,
        codebook_loss,
        commitment_loss,
    }
}

/// log p(z|i) = log softmax_z(-||z_i - e_z||^2 / tau) (seed eq. 28 with a temperature), `[N, K]`,
/// by log-sum-exp: a - max(a) - log sum exp(a - max(a)), a = -d^2 / tau. Differentiable in `z`
/// and `e`.
pub fn soft_log_probs(z: Tensor<2>, e: Tensor<2>, tau: f64) -> Tensor<2> {
    let a = squared_distances(z, e).div_scalar(-tau);
    let shifted = a.clone() - a.max_dim(1).detach();
    let lse = shifted.clone().exp().sum_dim(1).log();
    shifted - lse
}

/// Monte-Carlo soft-EM quantization (Roy et al. 2018; the seed's eq. 28): m codes are drawn
/// from p(z|i) = softmax(-||z_e,i - e_z||^2 / tau) by the fused kernel [`assign::soft_assign`]
/// (the N x K matrix of p is never held whole, nor copied off the device), the decoder input is
/// the mean of their codewords (straight-through to the encoder), and the commitment term is
/// mean ||z_e - sg(z_q)||^2. The codebook gets no gradient: the M-step
/// ([`EmaCodebook::update_samples`]) moves it. `indices` holds the most probable code of each
/// row; `samples` (`[N*m]`) is returned for the M-step.
pub struct SoftQuantized {
    pub q: Quantized,
    pub samples: Vec<u32>,
}

pub fn soft_quantize(
    z_e: Tensor<2>,
    e: Tensor<2>,
    tau: f64,
    m: usize,
    rng: &mut impl Rng,
) -> SoftQuantized {
    let [n, d] = z_e.dims();
    let device = z_e.device();
    let e = e.detach();
    let (zv, ev) = (host_f32(z_e.clone().detach()), host_f32(e.clone()));
    let s = assign::soft_assign(
        &zv,
        &Codebook::new(&ev, d),
        &SoftOptions {
            tau,
            samples: m,
            seed: rng.next_u64(),
            log_r: None,
        },
    );
    let z_q = e
        .select(0, index_tensor(&s.samples, &device))
        .reshape([n, m, d])
        .mean_dim(1)
        .reshape([n, d]);
    let indices = index_tensor(&s.argmax, &device);
    let codebook_loss = (z_q.clone() - z_e.clone().detach()).square().mean();
    let commitment_loss = (z_e.clone() - z_q.clone()).square().mean();
    let z_st = z_e.clone() + (z_q.clone() - z_e).detach();
    SoftQuantized {
        q: Quantized {
            z_st,
            z_q,
            indices,
            codebook_loss,
            commitment_loss,
        },
        samples: s.samples,
    }
}

/// The rate terms of the seed, per point, with p(z|i) = softmax(-d^2 / tau) differentiable in
/// z_e and the codebook and a prior log r(z) (`[K]`, differentiable when learned):
/// returns (H(p(Z|I), r), H(Z|I)) = (-(1/N) sum_i sum_z p log r, -(1/N) sum_i sum_z p log p).
/// KL(p(Z|I) || r) is their difference (eq. 26).
pub fn rate_terms(
    z_e: Tensor<2>,
    e: Tensor<2>,
    tau: f64,
    log_r: Tensor<1>,
) -> (Tensor<1>, Tensor<1>) {
    let lp = soft_log_probs(z_e, e, tau);
    let p = lp.clone().exp();
    let k = log_r.dims()[0];
    let ce = (p.clone() * log_r.reshape([1, k])).sum_dim(1).mean().neg();
    let h = (p * lp).sum_dim(1).mean().neg();
    (ce, h)
}

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

    /// One M-step from Monte-Carlo samples: each of the m samples of row i counts 1/m towards
    /// its code's expected count and adds z_i / m to its expected sum. `z` is `[N*D]`,
    /// `samples` is `[N*m]`. Returns the new codebook `[K*D]`.
    pub fn update_samples(&mut self, z: &[f32], samples: &[u32], m: usize) -> Vec<f32> {
        let (counts, sums) = sample_statistics(z, samples, m, self.k, self.d);
        self.apply(&counts, &sums)
    }

    fn apply(&mut self, counts: &[f64], sums: &[f64]) -> Vec<f32> {
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

/// The soft-EM M-step's statistics from Monte-Carlo samples: expected counts `[K]` and sums
/// `[K*D]`, each of the m samples of row i counting 1/m towards its code and adding z_i / m to
/// its sum. `z` is `[N*D]`, `samples` is `[N*m]`.
pub fn sample_statistics(
    z: &[f32],
    samples: &[u32],
    m: usize,
    k: usize,
    d: usize,
) -> (Vec<f64>, Vec<f64>) {
    let w = 1.0 / m as f64;
    let mut counts = vec![0.0f64; k];
    let mut sums = vec![0.0f64; k * d];
    for (row, s) in z.chunks_exact(d).zip(samples.chunks_exact(m)) {
        for &c in s {
            let c = c as usize;
            counts[c] += w;
            for (acc, &v) in sums[c * d..(c + 1) * d].iter_mut().zip(row) {
                *acc += w * v as f64;
            }
        }
    }
    (counts, sums)
}

/// Squared distance between two rows.
fn dist2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means++ seeding (Arthur & Vassilvitskii 2007) of `k` centres from the `[N*D]` rows of
/// `data`, followed by `iters` Lloyd iterations. An empty cluster keeps its centre. With fewer
/// rows than centres, rows are reused with a small jitter.
pub fn kmeans_pp(data: &[f32], d: usize, k: usize, iters: usize, rng: &mut impl Rng) -> Vec<f32> {
    let n = data.len() / d;
    assert!(n > 0 && d > 0 && k > 0, "kmeans_pp needs data");
    let row = |i: usize| &data[i * d..(i + 1) * d];
    let mut centres = Vec::with_capacity(k * d);
    let first = rng.gen_range(0..n);
    centres.extend_from_slice(row(first));
    let mut best: Vec<f32> = (0..n).map(|i| dist2(row(i), row(first))).collect();
    for _ in 1..k {
        let total: f64 = best.iter().map(|&b| b as f64).sum();
        let pick = if total > 0.0 {
            let mut u = rng.r#gen::<f64>() * total;
            let mut pick = n - 1;
            for (i, &b) in best.iter().enumerate() {
                u -= b as f64;
                if u <= 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            rng.gen_range(0..n)
        };
        let c0 = centres.len();
        if total > 0.0 {
            centres.extend_from_slice(row(pick));
        } else {
            // Every row already coincides with a centre: reuse one with a jitter.
            centres.extend(row(pick).iter().map(|&v| v + rng.gen_range(-1e-3..1e-3f32)));
        }
        let c = &centres[c0..c0 + d];
        for (i, b) in best.iter_mut().enumerate() {
            *b = b.min(dist2(row(i), c));
        }
    }
    for _ in 0..iters {
        let mut sums = vec![0.0f64; k * d];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            let r = row(i);
            let (mut bc, mut bd) = (0, f32::INFINITY);
            for c in 0..k {
                let dd = dist2(r, &centres[c * d..(c + 1) * d]);
                if dd < bd {
                    (bc, bd) = (c, dd);
                }
            }
            counts[bc] += 1;
            for (s, &v) in sums[bc * d..(bc + 1) * d].iter_mut().zip(r) {
                *s += v as f64;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..d {
                    centres[c * d + j] = (sums[c * d + j] / counts[c] as f64) as f32;
                }
            }
        }
    }
    centres
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};
    use rand::SeedableRng;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn distances_and_argmin_match_brute_force() {
        let dev = Device::flex();
        let (n, k, d) = (97, 33, 7);
        let z = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
        let e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev);
        let (zv, ev) = (values(z.clone()), values(e.clone()));
        let dist = values(squared_distances(z.clone(), e.clone()));
        let idx: Vec<i64> = nearest(z, e).into_data().try_into_vec_as::<i64>().unwrap();
        for i in 0..n {
            let mut best = (0usize, f32::INFINITY);
            for j in 0..k {
                let bf = dist2(&zv[i * d..(i + 1) * d], &ev[j * d..(j + 1) * d]);
                assert!(
                    (dist[i * k + j] - bf).abs() < 1e-4 * (1.0 + bf),
                    "d[{i},{j}]"
                );
                if bf < best.1 {
                    best = (j, bf);
                }
            }
            assert_eq!(idx[i] as usize, best.0, "row {i}");
        }
    }

    #[test]
    fn straight_through_passes_the_decoder_gradient_unchanged() {
        let dev = Device::flex().autodiff();
        let (n, k, d) = (20, 5, 3);
        let z_e = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let q = quantize(z_e.clone(), e.clone());
        // A nonlinear "decoder" loss of the quantized vectors.
        let w = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
        let loss = (q.z_st.clone() * w.clone()).tanh().sum();
        let g = loss.backward();
        let g_ze = values(z_e.grad(&g).expect("z_e gets the gradient"));
        // The same loss as a function of z_q itself, differentiated at z_q.
        let zq_leaf =
            Tensor::<2>::from_data(q.z_q.clone().detach().into_data(), &dev).require_grad();
        let g2 = (zq_leaf.clone() * w).tanh().sum().backward();
        let g_zq = values(zq_leaf.grad(&g2).unwrap());
        for (a, b) in g_ze.iter().zip(&g_zq) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // The reconstruction path gives the codebook nothing.
        assert!(
            e.grad(&g)
                .map(|t| values(t).iter().all(|&v| v == 0.0))
                .unwrap_or(true)
        );
        // In value z_st is z_q.
        let (st, zq) = (values(q.z_st), values(q.z_q));
        for (a, b) in st.iter().zip(&zq) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn codebook_term_moves_codebook_only_commitment_moves_encoder_only() {
        let dev = Device::flex().autodiff();
        let (n, k, d) = (16, 4, 3);
        let z_e = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let nonzero = |t: Option<Tensor<2>>| {
            t.map(|t| values(t).iter().any(|&v| v != 0.0))
                .unwrap_or(false)
        };

        let q = quantize(z_e.clone(), e.clone());
        let g = q.codebook_loss.backward();
        assert!(nonzero(e.grad(&g)), "codebook term must reach the codebook");
        assert!(
            !nonzero(z_e.grad(&g)),
            "codebook term must not reach the encoder"
        );

        let q = quantize(z_e.clone(), e.clone());
        let g = q.commitment_loss.backward();
        assert!(
            nonzero(z_e.grad(&g)),
            "commitment term must reach the encoder"
        );
        assert!(
            !nonzero(e.grad(&g)),
            "commitment term must not reach the codebook"
        );

        // The commitment gradient is 2 (z_e - z_q) / (N D): check against the closed form.
        let q = quantize(z_e.clone(), e.clone());
        let zq = values(q.z_q.clone());
        let g = q.commitment_loss.backward();
        let gz = values(z_e.grad(&g).unwrap());
        let zv = values(z_e.clone());
        for i in 0..n * d {
            let want = 2.0 * (zv[i] - zq[i]) / (n * d) as f32;
            assert!((gz[i] - want).abs() < 1e-6);
        }
    }

    #[test]
    fn codebook_loss_gradient_matches_finite_differences() {
        let dev = Device::flex();
        let (n, k, d) = (12, 4, 2);
        // Well-separated codewords and rows near them, so that a small perturbation of the
        // codebook does not change any assignment (the loss is smooth there).
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let e0: Vec<f32> = vec![0.0, 0.0, 3.0, 0.0, 0.0, 3.0, 3.0, 3.0];
        let z: Vec<f32> = (0..n)
            .flat_map(|i| {
                let c = i % k;
                [
                    e0[2 * c] + rng.gen_range(-0.5..0.5f32),
                    e0[2 * c + 1] + rng.gen_range(-0.5..0.5f32),
                ]
            })
            .collect();
        let ad = dev.clone().autodiff();
        let loss_at = |ev: &[f32]| -> f32 {
            let zt = Tensor::<2>::from_data(TensorData::new(z.clone(), [n, d]), &dev);
            let et = Tensor::<2>::from_data(TensorData::new(ev.to_vec(), [k, d]), &dev);
            quantize(zt, et).codebook_loss.into_scalar::<f32>()
        };
        let et = Tensor::<2>::from_data(TensorData::new(e0.clone(), [k, d]), &ad).require_grad();
        let zt = Tensor::<2>::from_data(TensorData::new(z.clone(), [n, d]), &ad);
        let g = quantize(zt, et.clone()).codebook_loss.backward();
        let ge = values(et.grad(&g).unwrap());
        let h = 1e-2f32;
        for i in 0..k * d {
            let (mut p, mut m) = (e0.clone(), e0.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (loss_at(&p) - loss_at(&m)) / (2.0 * h);
            assert!((fd - ge[i]).abs() < 2e-3, "param {i}: fd {fd} vs {}", ge[i]);
        }
    }

    #[test]
    fn ema_update_matches_hand_computation() {
        // K = 2, D = 2, decay 0.5, eps 0.1.
        let mut ema = EmaCodebook::new(2, 2, 0.5, 0.1);
        let z = [1.0f32, 2.0, 3.0, 4.0, 10.0, 20.0];
        let idx = [0u32, 0, 1];
        let cb = ema.update(&z, &idx);
        // t=1: hidden counts (1, 0.5), debias 0.5 -> counts (2, 1), n = 3.
        // smoothed = (c + 0.1) / (3 + 0.2) * 3 -> (1.96875, 0.984375)
        // sums hidden (2, 3, 5, 10) -> debiased (4, 6, 10, 20)
        let s0 = 2.1 / 3.2 * 3.0;
        let s1 = 1.1 / 3.2 * 3.0;
        let want = [4.0 / s0, 6.0 / s0, 10.0 / s1, 20.0 / s1];
        for (a, b) in cb.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
        // t=2: a batch that uses only code 1.
        let cb = ema.update(&[0.0, 2.0], &[1]);
        // hidden counts: (1*0.5, 0.5*0.5 + 0.5) = (0.5, 0.75); debias 0.75 -> (2/3, 1)
        // hidden sums: (1, 1.5, 2.5, 5 + 1) ; debiased -> (4/3, 2, 10/3, 8)
        let n = 2.0 / 3.0 + 1.0;
        let s0 = (2.0 / 3.0 + 0.1) / (n + 0.2) * n;
        let s1 = (1.0 + 0.1) / (n + 0.2) * n;
        let want = [(4.0 / 3.0) / s0, 2.0 / s0, (10.0 / 3.0) / s1, 8.0 / s1];
        for (a, b) in cb.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn ema_with_decay_zero_is_the_batch_mean() {
        let mut ema = EmaCodebook::new(3, 1, 0.0, 1e-12);
        let cb = ema.update(&[1.0, 3.0, 10.0], &[2, 2, 0]);
        assert!((cb[2] - 2.0).abs() < 1e-5 && (cb[0] - 10.0).abs() < 1e-5 && cb[1] == 0.0);
    }

    #[test]
    fn kmeans_pp_finds_separated_clusters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let centres = [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
        let mut data = Vec::new();
        for i in 0..400 {
            let c = centres[i % 4];
            data.push(c[0] + rng.gen_range(-0.5..0.5));
            data.push(c[1] + rng.gen_range(-0.5..0.5));
        }
        let got = kmeans_pp(&data, 2, 4, 5, &mut rng);
        for c in centres {
            let best = (0..4)
                .map(|j| dist2(&c, &got[j * 2..j * 2 + 2]))
                .fold(f32::INFINITY, f32::min);
            assert!(best < 0.1, "no centre near {c:?}: {got:?}");
        }
        // More centres than rows still works.
        let few = kmeans_pp(&data[..4], 2, 5, 2, &mut rng);
        assert_eq!(few.len(), 10);
        assert!(few.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn dead_codes_are_restarted_from_batch_rows() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut t = DeadCodeTracker::new(3, 2, 0);
        t.observe(&[0, 1], 1);
        t.observe(&[0], 3);
        assert_eq!(t.dead(3), vec![2]);
        assert_eq!(t.dead(4), vec![1, 2]);
        let mut cb = vec![0.0f32; 6];
        let z = [5.0f32, 5.0, 7.0, 7.0];
        let mut ema = EmaCodebook::new(3, 2, 0.9, 1e-5);
        let r = t.restart(4, &mut cb, &z, 2, Some(&mut ema), &mut rng);
        assert_eq!(r, vec![1, 2]);
        assert_eq!(t.restarts, 2);
        for c in [1, 2] {
            assert!(cb[c * 2] == 5.0 || cb[c * 2] == 7.0);
        }
        assert!(t.dead(4).is_empty());
        assert!(DeadCodeTracker::new(3, 0, 0).dead(100).is_empty());
    }

    #[test]
    fn soft_log_probs_are_normalised_and_stable() {
        let dev = Device::flex();
        // Far-away points: a naive softmax of -d^2 would underflow to 0/0.
        let z = Tensor::<2>::from_data(
            TensorData::new(vec![1000.0f32, 0.0, 1001.0, 1.0], [2, 2]),
            &dev,
        );
        let e = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 1.0, 0.0, 0.0, 1.0], [3, 2]),
            &dev,
        );
        let lp = values(soft_log_probs(z, e, 1.0));
        for row in lp.chunks(3) {
            assert!(row.iter().all(|v| v.is_finite()), "{row:?}");
            let total: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
            assert!((total - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn m_step_with_decay_zero_is_the_weighted_mean() {
        let mut ema = EmaCodebook::new(3, 2, 0.0, 1e-12);
        // Two rows, m = 2 samples each: row 0 -> codes (0, 1), row 1 -> codes (1, 1).
        let z = [1.0f32, 2.0, 3.0, 6.0];
        let cb = ema.update_samples(&z, &[0, 1, 1, 1], 2);
        // Code 0: weight 1/2 on row 0 -> mean (1, 2). Code 1: weights 1/2 (row 0) + 1 (row 1).
        let w = [0.5f64, 1.0];
        let want1 = [
            (w[0] * 1.0 + w[1] * 3.0) / 1.5,
            (w[0] * 2.0 + w[1] * 6.0) / 1.5,
        ];
        for (a, b) in cb[..4].iter().zip([1.0, 2.0, want1[0], want1[1]]) {
            assert!((*a as f64 - b).abs() < 1e-5, "{cb:?}");
        }
        assert_eq!(&cb[4..], &[0.0, 0.0]);
    }

    #[test]
    fn one_sample_at_small_temperature_is_vq_ema() {
        let dev = Device::flex();
        dev.seed(5);
        let (n, k, d) = (200, 16, 3);
        let z = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
        let e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev);
        let hard = quantize(z.clone(), e.clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let soft = soft_quantize(z.clone(), e.clone(), 1e-6, 1, &mut rng);
        let idx: Vec<u32> = values(hard.indices.float())
            .iter()
            .map(|&v| v as u32)
            .collect();
        assert_eq!(soft.samples, idx);
        assert_eq!(values(soft.q.z_q), values(hard.z_q));
        // And the M-steps agree.
        let zv = values(z);
        let mut a = EmaCodebook::new(k, d, 0.9, 1e-5);
        let mut b = a.clone();
        assert_eq!(a.update(&zv, &idx), b.update_samples(&zv, &soft.samples, 1));
    }

    #[test]
    fn rate_term_gradients_match_finite_differences() {
        let dev = Device::flex();
        let (n, k, d) = (5, 4, 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let zv: Vec<f32> = (0..n * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let ev: Vec<f32> = (0..k * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let rv: Vec<f32> = vec![0.1, 0.2, 0.3, 0.4];
        let log_r = |dev: &Device| {
            Tensor::<1>::from_data(
                TensorData::new(rv.iter().map(|r| r.ln()).collect::<Vec<f32>>(), [k]),
                dev,
            )
        };
        let eval = |zz: &[f32], which: usize| -> f64 {
            let z = Tensor::<2>::from_data(TensorData::new(zz.to_vec(), [n, d]), &dev);
            let e = Tensor::<2>::from_data(TensorData::new(ev.clone(), [k, d]), &dev);
            let (ce, h) = rate_terms(z, e, 0.7, log_r(&dev));
            let v = if which == 0 { ce } else { ce - h };
            v.into_scalar::<f32>() as f64
        };
        let ad = dev.clone().autodiff();
        for which in [0, 1] {
            let z = Tensor::<2>::from_data(TensorData::new(zv.clone(), [n, d]), &ad).require_grad();
            let e = Tensor::<2>::from_data(TensorData::new(ev.clone(), [k, d]), &ad);
            let (ce, h) = rate_terms(z.clone(), e, 0.7, log_r(&ad));
            let v = if which == 0 { ce } else { ce - h };
            let g = values(z.grad(&v.backward()).unwrap());
            let step = 1e-2f32;
            for i in 0..n * d {
                let (mut p, mut m) = (zv.clone(), zv.clone());
                p[i] += step;
                m[i] -= step;
                let fd = (eval(&p, which) - eval(&m, which)) / (2.0 * step as f64);
                assert!(
                    (fd - g[i] as f64).abs() < 2e-3 + 2e-2 * fd.abs(),
                    "term {which} coord {i}: fd {fd} vs {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn learned_prior_converges_to_the_empirical_marginal() {
        use burn::module::{Module, Param};
        use burn::optim::{AdamConfig, GradientsParams};
        #[derive(Module, Debug)]
        struct Prior {
            logits: Param<Tensor<1>>,
        }
        let dev = Device::flex().autodiff();
        let k = 4;
        // A fixed assignment of 3 points.
        let p = vec![
            0.7f32, 0.2, 0.1, 0.0, 0.1, 0.1, 0.8, 0.0, 0.25, 0.25, 0.25, 0.25,
        ];
        let marginal: Vec<f32> = (0..k)
            .map(|z| (p[z] + p[k + z] + p[2 * k + z]) / 3.0)
            .collect();
        let pt = Tensor::<2>::from_data(TensorData::new(p, [3, k]), &dev);
        let mut prior = Prior {
            logits: Param::from_tensor(Tensor::zeros([k], &dev)),
        };
        let mut optim = AdamConfig::new().init();
        for _ in 0..600 {
            let log_r =
                burn::tensor::activation::log_softmax(prior.logits.val(), 0).reshape([1, k]);
            let ce = (pt.clone() * log_r).sum_dim(1).mean().neg();
            let g = GradientsParams::from_grads(ce.backward(), &prior);
            prior = optim.step(0.05, prior, g);
        }
        let r = values(burn::tensor::activation::softmax(prior.logits.val(), 0));
        for (a, b) in r.iter().zip(&marginal) {
            assert!((a - b).abs() < 0.02, "r {r:?} vs marginal {marginal:?}");
        }
    }

    #[test]
    fn cpu_tensors_take_the_host_kernel() {
        assert!(on_host(&Device::flex()));
        assert!(on_host(&Device::flex().autodiff()));
        // And the host kernel agrees with the tensor argmin.
        let dev = Device::flex();
        dev.seed(4);
        let z = Tensor::<2>::random([64, 6], Distribution::Normal(0.0, 1.0), &dev);
        let e = Tensor::<2>::random([20, 6], Distribution::Normal(0.0, 1.0), &dev);
        let host: Vec<i64> = nearest(z.clone(), e.clone())
            .into_data()
            .try_into_vec_as()
            .unwrap();
        let tensor: Vec<i64> = squared_distances(z, e)
            .argmin(1)
            .into_data()
            .try_into_vec_as()
            .unwrap();
        assert_eq!(host, tensor);
    }

    #[test]
    fn chunked_nearest_matches_the_whole_distance_matrix() {
        let dev = Device::flex();
        dev.seed(8);
        let (n, k, d) = (300, 100, 5);
        let z = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
        let mut e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev);
        // Duplicate codewords across chunk boundaries: ties must go to the lower index.
        e = e
            .clone()
            .slice_assign([37..38, 0..d], e.clone().slice([3..4, 0..d]));
        let whole: Vec<i64> = squared_distances(z.clone(), e.clone())
            .argmin(1)
            .into_data()
            .try_into_vec_as::<i64>()
            .unwrap();
        for chunk in [1, 7, 32, 99, 100, 1000] {
            let got: Vec<i64> = nearest_chunked(z.clone(), e.clone(), chunk)
                .into_data()
                .try_into_vec_as::<i64>()
                .unwrap();
            assert_eq!(got, whole, "chunk {chunk}");
        }
        assert!(
            !whole.contains(&37),
            "code 37 duplicates code 3 and must never win"
        );
    }
}
