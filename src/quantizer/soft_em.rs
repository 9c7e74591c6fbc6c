//! `soft-em`: soft EM (Roy et al. 2018), the VIB side of the seed. The E-step is the posterior
//!
//! p(z|i) = softmax_z(-||z_e(x_i) - e_z||^2 / tau)                               (eq. 28)
//!
//! (the denominator over z_e(x_i), as eq. 28 should read), computed by log-sum-exp. m codes are
//! drawn from it for each latent vector; the decoder gets the mean of their codewords
//! (straight-through to the encoder), the loss is beta ||z_e - sg(z_q)||^2, and the M-step moves
//! the codebook by EMAs of the expected counts and sums ([`EmaCodebook::apply`]).

use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, RngCore};

use super::QuantizerParams;
use super::config::{CodeSpace, QuantizerConfig};
use super::{
    Context, EmaCodebook, Posterior, QuantizerKind, QuantizerOutput, Registered, host_f32,
    index_tensor, squared_distances,
};
use crate::kernels::assign::{self, Codebook, SoftOptions};

/// log p(z|i) = log softmax_z(-||z_i - e_z||^2 / tau) (seed eq. 28 with a temperature), `[N, K]`,
/// by log-sum-exp: a - max(a) - log sum exp(a - max(a)), a = -d^2 / tau. Differentiable in `z`
/// and `e`.
pub fn soft_log_probs(z: Tensor<2>, e: Tensor<2>, tau: f64) -> Tensor<2> {
    let a = squared_distances(z, e).div_scalar(-tau);
    let shifted = a.clone() - a.max_dim(1).detach();
    let lse = shifted.clone().exp().sum_dim(1).log();
    shifted - lse
}

/// Monte-Carlo soft-EM quantization: m codes drawn from p(z|i) by the fused kernel
/// [`assign::soft_assign`] (the N x K matrix of p is never held whole, nor copied off the
/// device; only z_e and the codebook go to the host), z_q the mean of their codewords. The
/// codebook gets no gradient. `indices` holds the most probable code of each row, `samples`
/// (`[N*m]`) the draws for the M-step.
pub fn soft_quantize(
    z_e: Tensor<2>,
    e: Tensor<2>,
    tau: f64,
    m: usize,
    seed: u64,
) -> QuantizerOutput {
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
            seed,
            log_r: None,
            labels: None,
        },
    );
    let z_q = e
        .select(0, index_tensor(&s.samples, &device))
        .reshape([n, m, d])
        .mean_dim(1)
        .reshape([n, d]);
    let indices = index_tensor(&s.argmax, &device);
    QuantizerOutput {
        samples: Some(s.samples),
        ..QuantizerOutput::from_codewords(z_e, z_q, indices)
    }
}

/// Monte-Carlo soft-EM quantization as tensor operations on the device ([`Context::resident`]):
/// the E-step [`soft_log_probs`], m draws per row by [`sample_weights`] from uniforms of the
/// host stream `rng` (uploaded, so a seed fixes the draws on every device), z_q = w e (the mean
/// of the drawn codewords), and `weights` = w for the M-step. Nothing is read back.
pub fn soft_quantize_resident(
    z_e: Tensor<2>,
    e: Tensor<2>,
    tau: f64,
    m: usize,
    rng: &mut impl Rng,
) -> QuantizerOutput {
    let n = z_e.dims()[0];
    let e = e.detach();
    let log_p = soft_log_probs(z_e.clone().detach(), e.clone(), tau);
    let indices = log_p.clone().argmax(1).reshape([n]);
    let u = uniforms(n, m, rng, &z_e.device());
    let w = sample_weights(log_p, u);
    let z_q = w.clone().matmul(e);
    QuantizerOutput {
        weights: Some(w),
        ..QuantizerOutput::from_codewords(z_e, z_q, indices)
    }
}

/// `[N, m]` uniforms in (0, 1) (24 random bits, centred in their cell) from `rng`, on `device`.
pub fn uniforms(
    n: usize,
    m: usize,
    rng: &mut impl Rng,
    device: &burn::tensor::Device,
) -> Tensor<2> {
    let scale = 1.0 / (1u32 << 24) as f32;
    let u: Vec<f32> = (0..n * m)
        .map(|_| ((rng.next_u32() >> 8) as f32 + 0.5) * scale)
        .collect();
    Tensor::from_data(TensorData::new(u, [n, m]), device)
}

/// Draws from the rows of log p (`[N, K]`, normalised) by inversion, one draw per column of the
/// uniforms `u` (`[N, m]`): code = #{k : F_k < u F_K}, F the cumulative sum of p (scaling u by
/// F_K makes the f32 sum's rounding harmless; zero-probability codes are never drawn). Returns
/// the sample frequencies `[N, K]`, each draw counting 1/m. The same distribution as the host
/// sampler's [`assign::soft_assign`]. All of a row's draws are one broadcast comparison
/// `[N, m, K]` (in chunks of draws of at most [`super::DISTANCE_BUDGET`] elements), a handful of
/// kernels a step however large m is.
pub fn sample_weights(log_p: Tensor<2>, u: Tensor<2>) -> Tensor<2> {
    sample_weights_within(log_p, u, super::DISTANCE_BUDGET)
}

/// [`sample_weights`] holding at most `budget` elements of the comparison at once.
pub(crate) fn sample_weights_within(log_p: Tensor<2>, u: Tensor<2>, budget: usize) -> Tensor<2> {
    let [n, k] = log_p.dims();
    let m = u.dims()[1];
    let cdf = log_p.exp().cumsum(1);
    let total = cdf.clone().slice([0..n, k - 1..k]);
    let cdf = cdf.reshape([n, 1, k]);
    let per_chunk = (budget / (n * k).max(1)).clamp(1, m);
    let codes = Tensor::<1, Int>::arange(0..k as i64, &u.device()).reshape([1, 1, k]);
    let mut w: Option<Tensor<2>> = None;
    for s in (0..m).step_by(per_chunk) {
        let mc = per_chunk.min(m - s);
        let target = u
            .clone()
            .slice([0..n, s..s + mc])
            .mul(total.clone())
            .reshape([n, mc, 1]);
        let drawn = cdf
            .clone()
            .expand([n, mc, k])
            .lower(target.expand([n, mc, k]))
            .int()
            .sum_dim(2)
            .clamp_max(k as i64 - 1); // [n, mc, 1]
        let hits = drawn
            .expand([n, mc, k])
            .equal(codes.clone().expand([n, mc, k]))
            .float()
            .sum_dim(1)
            .reshape([n, k]);
        w = Some(match w {
            None => hits,
            Some(acc) => acc + hits,
        });
    }
    w.expect("at least one sample").div_scalar(m as f64)
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

/// The soft-EM quantizer.
#[derive(Debug)]
pub struct SoftEm {
    beta: f64,
    tau: f64,
    samples: usize,
    ema: EmaCodebook,
}

impl Registered for SoftEm {
    /// Roy et al. average the M-step more slowly.
    const DEFAULT_EMA_DECAY: f64 = 0.999;

    fn new(cfg: &QuantizerConfig) -> Self {
        Self {
            beta: cfg.beta,
            tau: cfg.temperature,
            samples: cfg.samples,
            ema: EmaCodebook::new(
                cfg.codebook_size(),
                cfg.code_dim(),
                cfg.decay(),
                cfg.ema_epsilon,
            ),
        }
    }
}

impl super::Quantizer for SoftEm {
    fn kind(&self) -> QuantizerKind {
        QuantizerKind::SoftEm
    }

    fn code_space(&self) -> CodeSpace {
        CodeSpace {
            size: self.ema.k as u64,
            stages: 1,
        }
    }

    fn soft_temperature(&self, _params: &QuantizerParams) -> f64 {
        self.tau
    }

    fn forward(&self, z_e: Tensor<2>, params: &QuantizerParams, ctx: Context) -> QuantizerOutput {
        let codebook = params.codebook();
        if ctx.resident {
            return soft_quantize_resident(z_e, codebook, self.tau, self.samples, ctx.rng);
        }
        let seed = ctx.rng.next_u64();
        soft_quantize(z_e, codebook, self.tau, self.samples, seed)
    }

    /// beta ||z_e - sg(z_q)||^2.
    fn loss(&self, out: &QuantizerOutput) -> Tensor<1> {
        out.commitment_loss.clone().mul_scalar(self.beta)
    }

    fn posterior(&self) -> Posterior {
        Posterior::Soft
    }

    /// The M-step: each of the m samples of row i counts 1/m towards its code's expected count
    /// and adds z_i / m to its expected sum.
    fn update(
        &mut self,
        z_e: &[f32],
        _indices: &[u32],
        samples: Option<&[u32]>,
    ) -> Option<Vec<f32>> {
        let samples = samples.expect("soft EM's forward pass returns its samples");
        Some(self.ema.update_samples(z_e, samples, self.samples))
    }

    /// The sample frequencies.
    fn ema_weights(&self, out: &QuantizerOutput) -> Option<Tensor<2>> {
        out.weights.clone()
    }

    fn ema(&self) -> Option<&EmaCodebook> {
        Some(&self.ema)
    }

    fn ema_mut(&mut self) -> Option<&mut EmaCodebook> {
        Some(&mut self.ema)
    }
}
