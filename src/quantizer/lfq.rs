//! `lfq`: lookup-free quantization (Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer
//! is Key to Visual Generation" (MAGVIT-v2), section 3.1). No codebook: each of the D channels is
//! quantized to its sign, the code space is the corners {-1, 1}^D, K = 2^D:
//!
//! z_q,j = +1 if z_j > 0 else -1,   k = sum_j [z_j > 0] 2^j   (the code's bits are the signs),
//!
//! with the straight-through estimator z_e + sg(z_q - z_e). The loss adds to the commitment term
//! beta ||z_e - sg(z_q)||^2 the entropy penalty, weight `--entropy-weight` (lambda):
//!
//! L_ent = E_x[H(q(Z|x))] - gamma H(E_x[q(Z|x)]),   gamma = `--diversity-weight`,
//!
//! q(z|x) = softmax_z(-||z_e(x) - z||^2 / tau) over the corners (the soft posterior of the implicit
//! codebook, tau = `--temperature`). Over the corners the distance separates by channel, so
//! q(z|x) = prod_j q_j(z_j|x) with q_j(+1|x) = sigmoid(4 z_j / tau), and H(q(Z|x)) = sum_j
//! H_b(q_j): exact, with nothing K-sized. The batch's mean distribution is not a product; vqib
//! takes its entropy per bit, sum_j H_b(E_x q_j) (an upper bound of H(E_x q), equal when the bits
//! are independent over the batch), so no row holds 2^D entries.
//!
//! What the penalty estimates: with gamma = 1 and the exact batch entropy, E[H(q(Z|x))] -
//! H(E q) = H(Z|X) - H(Z) = -I(X; Z) under the soft assignment q, the seed's eq. 13 with its sign
//! turned: minimising the penalty maximises the information the codes carry (an encouragement to
//! spend bits, the opposite of a rate term); with the per-bit batch entropy it is -sum_j I(X;
//! Z_j) plus the bits' total correlation, a lower bound of -I(X; Z) (the per-bit informations
//! sum to at least I(X; Z) when the bits are conditionally independent given x, as they are
//! here). In the seed's terms LFQ is a deterministic bottleneck (hard codes, H(Z|I) = 0) whose
//! training loss carries an explicit information term.

use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Tensor, TensorData};

use super::config::{CodeSpace, QuantizerConfig};
use super::{Context, QuantizerKind, QuantizerOutput, QuantizerParams, Registered};

/// The code of each row of `z` (`[N*D]`): bit j is z_j > 0.
pub fn codes(z: &[f32], d: usize) -> Vec<u32> {
    z.chunks_exact(d)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(0u32, |k, (j, &v)| k | (((v > 0.0) as u32) << j))
        })
        .collect()
}

/// The corner of each code, `[N*D]`.
pub fn corners(codes: &[u32], d: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(codes.len() * d);
    for &k in codes {
        out.extend((0..d).map(|j| if (k >> j) & 1 == 1 { 1.0 } else { -1.0 }));
    }
    out
}

/// sum over the elements of the binary entropies H_b(sigmoid(a)), nats, per row `[N, 1]`: from
/// the logits a, log-domain (no log 0).
fn binary_entropy_rows(a: Tensor<2>) -> Tensor<2> {
    let (lp, lq) = (log_sigmoid(a.clone()), log_sigmoid(a.neg()));
    let h = -(lp.clone().exp() * lp + lq.clone().exp() * lq);
    h.sum_dim(1)
}

/// The entropy penalty E_x[H(q(Z|x))] - gamma sum_j H_b(E_x q_j) of z (`[N, D]`) at temperature
/// tau (module docs), nats.
pub fn entropy_penalty(z: Tensor<2>, tau: f64, gamma: f64) -> Tensor<1> {
    let a = z.mul_scalar(4.0 / tau);
    let per_sample = binary_entropy_rows(a.clone()).mean().reshape([1]);
    let p = burn::tensor::activation::sigmoid(a).mean_dim(0); // [1, D]
    let p = p.clamp(1e-12, 1.0 - 1e-7);
    let q = p.clone().neg().add_scalar(1.0);
    let batch = -(p.clone() * p.log() + q.clone() * q.log())
        .sum()
        .reshape([1]);
    per_sample - batch.mul_scalar(gamma)
}

/// The LFQ quantizer.
#[derive(Debug)]
pub struct Lfq {
    d: usize,
    beta: f64,
    tau: f64,
    entropy_weight: f64,
    gamma: f64,
}

impl Registered for Lfq {
    /// Nothing moves outside the gradient step.
    const CODEBOOK_BY_GRADIENT: bool = true;

    fn new(cfg: &QuantizerConfig) -> Self {
        Self {
            d: cfg.code_dim(),
            beta: cfg.beta,
            tau: cfg.temperature,
            entropy_weight: cfg.entropy_weight.unwrap_or(0.1),
            gamma: cfg.diversity_weight.unwrap_or(1.0),
        }
    }
}

/// `[1, D]` of 2^j.
fn bit_values(d: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = (0..d).map(|j| (1u32 << j) as f32).collect();
    Tensor::from_data(TensorData::new(v, [1, d]), device)
}

impl super::Quantizer for Lfq {
    fn kind(&self) -> QuantizerKind {
        QuantizerKind::Lfq
    }

    fn code_space(&self) -> CodeSpace {
        CodeSpace {
            size: 1u64 << self.d,
            stages: 1,
        }
    }

    /// Signs, their code, the commitment term and the entropy penalty, as tensor operations
    /// (any device, no host read).
    fn forward(&self, z_e: Tensor<2>, _params: &QuantizerParams, _ctx: Context) -> QuantizerOutput {
        let [n, d] = z_e.dims();
        let bits = z_e.clone().detach().greater_elem(0.0).float();
        let z_q = bits.clone().mul_scalar(2.0).sub_scalar(1.0);
        let indices = (bits * bit_values(d, &z_e.device()).expand([n, d]))
            .sum_dim(1)
            .add_scalar(0.5)
            .reshape([n])
            .int();
        let penalty = entropy_penalty(z_e.clone(), self.tau, self.gamma);
        let mut out = QuantizerOutput::from_codewords(z_e, z_q, indices);
        out.codebook_loss = out.codebook_loss.detach().mul_scalar(0.0);
        out.extra = Some(penalty);
        out
    }

    /// beta ||z_e - sg(z_q)||^2 + lambda L_ent.
    fn loss(&self, out: &QuantizerOutput) -> Tensor<1> {
        let commit = out.commitment_loss.clone().mul_scalar(self.beta);
        match &out.extra {
            Some(p) => commit + p.clone().mul_scalar(self.entropy_weight),
            None => commit,
        }
    }

    fn soft_temperature(&self, _params: &QuantizerParams) -> f64 {
        self.tau
    }

    fn codes(&self, z_e: &[f32], _params: &QuantizerParams) -> Vec<u32> {
        codes(z_e, self.d)
    }

    fn codewords(&self, codes: &[u32], _params: &QuantizerParams) -> Vec<f32> {
        corners(codes, self.d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The code's bits are the signs, corners invert codes.
    #[test]
    fn index_is_the_bits() {
        let z = [0.3f32, -1.0, 2.0, -0.1, -0.2, 0.5];
        assert_eq!(codes(&z, 3), vec![0b101, 0b100]);
        assert_eq!(corners(&[0b101], 3), vec![1.0, -1.0, 1.0]);
        let all: Vec<u32> = (0..16).collect();
        assert_eq!(codes(&corners(&all, 4), 4), all);
    }

    /// The penalty on a small batch against its closed form, in f64 by hand; and the per-sample
    /// entropy against the entropy of the full softmax over the 2^D corners (the factorisation is
    /// exact).
    #[test]
    fn entropy_penalty_closed_form() {
        let dev = Device::flex();
        let zv = [0.2f32, -0.4, 0.0, 0.7, -0.1, 0.05];
        let (n, d, tau, gamma) = (3usize, 2usize, 0.5f64, 0.7f64);
        let z = Tensor::<2>::from_data(TensorData::new(zv.to_vec(), [n, d]), &dev);
        let got = crate::device::host_f32(entropy_penalty(z, tau, gamma))[0] as f64;
        let hb = |p: f64| -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
        let sig = |a: f64| 1.0 / (1.0 + (-a).exp());
        let mut per_sample = 0.0;
        let mut mean = vec![0.0; d];
        for i in 0..n {
            // Full softmax over the 4 corners, from distances.
            let logits: Vec<f64> = (0..1u32 << d)
                .map(|k| {
                    -(0..d)
                        .map(|j| {
                            let c = if (k >> j) & 1 == 1 { 1.0 } else { -1.0 };
                            (zv[i * d + j] as f64 - c).powi(2)
                        })
                        .sum::<f64>()
                        / tau
                })
                .collect();
            let m = logits.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
            let h: f64 = -logits
                .iter()
                .map(|l| {
                    let p = (l - m).exp() / z;
                    p * p.ln()
                })
                .sum::<f64>();
            let factored: f64 = (0..d)
                .map(|j| hb(sig(4.0 * zv[i * d + j] as f64 / tau)))
                .sum();
            assert!(
                (h - factored).abs() < 1e-9,
                "the per-sample entropy factorises"
            );
            per_sample += h / n as f64;
            for j in 0..d {
                mean[j] += sig(4.0 * zv[i * d + j] as f64 / tau) / n as f64;
            }
        }
        let want = per_sample - gamma * mean.iter().map(|&p| hb(p)).sum::<f64>();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    /// The device forward gives the host's codes; the entropy penalty reaches the encoder.
    #[test]
    fn forward_codes_and_penalty_gradient() {
        let dev = Device::flex().autodiff();
        let cfg = QuantizerConfig {
            kind: QuantizerKind::Lfq,
            code_dim: Some(5),
            ..Default::default()
        };
        let q = <Lfq as Registered>::new(&cfg);
        let z = Tensor::<2>::random([40, 5], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let params = QuantizerParams {
            codebook: None,
            precision: None,
        };
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let ctx = Context {
            rng: &mut rng,
            resident: false,
            step: None,
        };
        let out = super::super::Quantizer::forward(&q, z.clone(), &params, ctx);
        let zv = crate::device::host_f32(z.clone().detach());
        assert_eq!(crate::device::host_u32(out.indices.clone()), codes(&zv, 5));
        let grads = out.extra.clone().unwrap().backward();
        let g = crate::device::host_f32(z.grad(&grads).unwrap().into());
        assert!(g.iter().any(|v| v.abs() > 1e-6));
    }
}
