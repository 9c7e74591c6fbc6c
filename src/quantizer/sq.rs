//! `sq`: stochastic quantization trained by its evidence lower bound (the Gaussian SQ-VAE of
//! Takida et al. 2022, "SQ-VAE: Variational Bayes on Discrete Representation with Self-annealed
//! Stochastic Quantization", section 3), through a Gumbel-softmax relaxation (Jang et al. 2017).
//!
//! The posterior over the K codewords b_k of a latent z_e is the one of a Gaussian dequantization
//! p(z|z_q = b_k) = N(b_k, sigma^2 I) under a uniform prior, with sigma^2 learned as SQ-VAE
//! parametrises it: `quantizer.precision` holds theta, 1/sigma^2 = 1 + exp(theta) (so sigma^2 <= 1;
//! theta starts at ln 20, sigma^2 = 1/21):
//!
//! P(k|z_e) = softmax_k(-||z_e - b_k||^2 / (2 sigma^2))        (the seed's eq. 28, tau = 2 sigma^2)
//!
//! The KL term of the bound, with q(z|x) = N(z_e, sigma^2 I) and the uniform prior, is
//!
//! KL = E_P[||z_e - b_k||^2] / (2 sigma^2) - H(P(.|z_e)) + log K
//!    = log K - logsumexp_k(-||z_e - b_k||^2 / (2 sigma^2))      (>= 0),
//!
//! the sigma^2 of the encoder's Gaussian cancelling. It moves the encoder, the codebook and sigma.
//! The decoder gets the relaxed sample z_q = sum_k y_k b_k, y = softmax((log P + g) / t), g
//! Gumbel noise from the run's random stream, at the temperature
//!
//! t(step) = max(0.5, exp(-1e-4 step))                           (Jang et al.'s schedule),
//!
//! and 0.5 (the schedule's end) outside training. As sigma^2 shrinks the posterior tends to the
//! one-hot of the nearest codeword (the hard quantizer); the reconstruction term is what shrinks
//! it (SQ-VAE's self-annealing). The objective is SQ-VAE's Gaussian one with the decoder's
//! variance at its optimum, sigma_x^2 = MSE: per image (P/2) log MSE + sum over the L latents of
//! KL. Its gradient is that of MSE + sg(2 MSE L / P) mean_i KL_i (per pixel), which is the loss
//! vqib trains: the KL's weight falls with the reconstruction error (with sigma_x = 1, the seed's
//! distortion, the KL term outweighs a reconstruction of pixels in [0, 1] and every codeword
//! collapses onto z_e). There is no codebook or commitment term (the commitment
//! ||z_e - sg(z_q)||^2 is reported, not trained on). The assigned code is the posterior's mode.
//! Its own posterior is soft, so evaluation measures H(Z|I), I(I;Z) and the seed's expected
//! distortion as for soft EM.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::config::{CodeSpace, QuantizerConfig};
use super::soft_em::uniforms;
use super::{Context, Posterior, QuantizerKind, QuantizerOutput, QuantizerParams, Registered};

/// The Gumbel-softmax temperature at training step `step` (module docs); `None`: outside
/// training, the schedule's end.
pub fn gumbel_temperature(step: Option<u64>) -> f64 {
    match step {
        Some(s) => (-1e-4 * s as f64).exp().max(0.5),
        None => 0.5,
    }
}

/// 1/sigma^2 = 1 + exp(theta).
pub fn precision(theta: Tensor<1>) -> Tensor<1> {
    theta.exp().add_scalar(1.0)
}

/// log P(k|z) = log softmax(-||z - b_k||^2 / (2 sigma^2)) `[N, K]`, with 1/sigma^2 =
/// [`precision`] of `theta` (`[1]`), and the KL term log K - logsumexp(...) per row `[N, 1]`.
pub fn posterior(z: Tensor<2>, e: Tensor<2>, theta: Tensor<1>) -> (Tensor<2>, Tensor<2>) {
    let k = e.dims()[0];
    let d2 = super::vq::squared_distances(z, e);
    let inv = precision(theta).mul_scalar(0.5).reshape([1, 1]); // 1 / (2 sigma^2)
    let a = -(d2 * inv);
    let m = a.clone().max_dim(1).detach();
    let lse = (a.clone() - m.clone()).exp().sum_dim(1).log() + m;
    let kl = lse.clone().neg().add_scalar((k as f64).ln());
    (a - lse, kl)
}

/// The SQ-VAE quantizer.
#[derive(Debug)]
pub struct Sq {
    k: usize,
}

impl Registered for Sq {
    const CODEBOOK_BY_GRADIENT: bool = true;

    fn new(cfg: &QuantizerConfig) -> Self {
        Self {
            k: cfg.codebook_size(),
        }
    }
}

impl super::Quantizer for Sq {
    fn kind(&self) -> QuantizerKind {
        QuantizerKind::Sq
    }

    fn code_space(&self) -> CodeSpace {
        CodeSpace {
            size: self.k as u64,
            stages: 1,
        }
    }

    /// The posterior, its KL term, and a relaxed sample, as tensor operations (the Gumbel
    /// uniforms come from the host stream, uploaded: no read back).
    fn forward(&self, z_e: Tensor<2>, params: &QuantizerParams, ctx: Context) -> QuantizerOutput {
        let [n, _] = z_e.dims();
        let e = params.codebook();
        let theta = params
            .precision
            .as_ref()
            .expect("sq has a precision parameter")
            .val();
        let (log_p, kl) = posterior(z_e.clone(), e.clone(), theta);
        let indices = log_p.clone().detach().argmax(1).reshape([n]);
        // The uniforms' largest value rounds to 1.0 in f32 (and log(-log 1) is -inf): clamped
        // inside (0, 1), the noise is bounded by about +-14.
        let u = uniforms(n, self.k, ctx.rng, &z_e.device()).clamp(1e-6, 1.0 - 1e-6);
        let gumbel = u.log().neg().log().neg();
        let t = gumbel_temperature(ctx.step);
        let y = softmax((log_p + gumbel).div_scalar(t), 1);
        let z_q = y.matmul(e);
        let mut out = QuantizerOutput::from_codewords(z_e, z_q.clone(), indices);
        out.z_st = z_q;
        out.codebook_loss = out.codebook_loss.detach().mul_scalar(0.0);
        out.extra = Some(kl.mean().reshape([1]));
        out
    }

    /// mean_i KL_i, unweighted (what [`Sq::loss_beside`] weighs).
    fn loss(&self, out: &QuantizerOutput) -> Tensor<1> {
        out.extra.clone().expect("sq's forward gives its KL term")
    }

    /// sg(2 MSE L / P) mean_i KL_i (module docs).
    fn loss_beside(
        &self,
        out: &QuantizerOutput,
        recon: &Tensor<1>,
        latents_per_pixel: f64,
    ) -> Tensor<1> {
        let weight = recon.clone().detach().mul_scalar(2.0 * latents_per_pixel);
        self.loss(out) * weight
    }

    fn posterior(&self) -> Posterior {
        Posterior::Soft
    }

    /// The maximum-likelihood sigma^2 of the dequantization N(b_k, sigma^2 I) with each row at
    /// its nearest codeword, sigma^2 = mean_i min_k ||z_i - b_k||^2 / D (at most 1/2, at least
    /// 1e-6), as theta = ln(1/sigma^2 - 1): the posterior starts at the data's scale, whatever
    /// the encoder's (at a fixed start the first encoder outputs are so small that every
    /// codeword is as likely, and no gradient reaches theta fast enough to leave that).
    fn initial_precision(&self, z: &[f32], codebook: &[f32], d: usize) -> Option<f32> {
        let codes =
            crate::kernels::assign::nearest(z, &crate::kernels::assign::Codebook::new(codebook, d));
        let n = codes.len().max(1);
        let total: f64 = z
            .chunks_exact(d)
            .zip(&codes)
            .map(|(row, &c)| {
                let e = &codebook[c as usize * d..(c as usize + 1) * d];
                row.iter()
                    .zip(e)
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>()
            })
            .sum();
        let s2 = (total / (n * d) as f64).clamp(1e-6, 0.5);
        Some((1.0 / s2 - 1.0).ln() as f32)
    }

    /// 2 sigma^2 = 2 / (1 + exp(theta)) (one read of the parameter).
    fn soft_temperature(&self, params: &QuantizerParams) -> f64 {
        let theta = params
            .precision
            .as_ref()
            .map_or(super::params::SQ_THETA_START, |p| {
                crate::device::host_f32(p.val())[0] as f64
            });
        2.0 / (1.0 + theta.exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantizer::Quantizer;
    use burn::module::Param;
    use burn::tensor::{Device, Distribution, TensorData};
    use rand::SeedableRng;

    fn params(e: Tensor<2>, theta: f32, dev: &Device) -> QuantizerParams {
        QuantizerParams {
            codebook: Some(Param::from_tensor(e)),
            precision: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![theta], [1]),
                dev,
            ))),
        }
    }

    /// Posterior rows sum to 1; the KL term equals E_P[d^2]/(2 sigma^2) - H(P) + log K computed
    /// from its parts, and is non-negative.
    #[test]
    fn posterior_rows_sum_to_one_and_kl_identity() {
        let dev = Device::flex();
        let z = Tensor::<2>::random([20, 3], Distribution::Normal(0.0, 1.0), &dev);
        let e = Tensor::<2>::random([7, 3], Distribution::Normal(0.0, 1.0), &dev);
        let theta = 0.3f32;
        let (log_p, kl) = posterior(
            z.clone(),
            e.clone(),
            Tensor::from_data(TensorData::new(vec![theta], [1]), &dev),
        );
        let lp = crate::device::host_f32(log_p);
        let kl = crate::device::host_f32(kl);
        let d2 = crate::device::host_f32(crate::quantizer::squared_distances(z, e));
        let s2 = 1.0 / (1.0 + (theta as f64).exp());
        for i in 0..20 {
            let row = &lp[i * 7..(i + 1) * 7];
            let total: f64 = row.iter().map(|&l| (l as f64).exp()).sum();
            assert!((total - 1.0).abs() < 1e-5);
            let ed2: f64 = row
                .iter()
                .zip(&d2[i * 7..])
                .map(|(&l, &d)| (l as f64).exp() * d as f64)
                .sum();
            let h: f64 = -row
                .iter()
                .map(|&l| (l as f64).exp() * l as f64)
                .sum::<f64>();
            let want = ed2 / (2.0 * s2) - h + 7f64.ln();
            assert!((kl[i] as f64 - want).abs() < 1e-4, "{} vs {want}", kl[i]);
            assert!(kl[i] > -1e-5);
        }
    }

    /// The temperature schedule: 1 at step 0, exp(-1e-4 t) on the way, 0.5 from ln 2 / 1e-4 on.
    #[test]
    fn temperature_schedule() {
        assert_eq!(gumbel_temperature(Some(0)), 1.0);
        assert!((gumbel_temperature(Some(1000)) - (-0.1f64).exp()).abs() < 1e-12);
        assert_eq!(gumbel_temperature(Some(7000)), 0.5);
        assert_eq!(gumbel_temperature(None), 0.5);
    }

    /// As sigma^2 shrinks (theta grows) the posterior tends to the one-hot of the nearest codeword: its
    /// entropy falls towards 0 and its mode is vq's code.
    #[test]
    fn small_variance_tends_to_the_hard_quantizer() {
        let dev = Device::flex();
        let z = Tensor::<2>::random([30, 4], Distribution::Normal(0.0, 1.0), &dev);
        let e = Tensor::<2>::random([9, 4], Distribution::Normal(0.0, 1.0), &dev);
        let hard = crate::device::host_u32(crate::quantizer::nearest(z.clone(), e.clone()));
        let mut last = f64::INFINITY;
        for theta in [-2.0f32, 0.0, 3.0, 8.0] {
            let (log_p, _) = posterior(
                z.clone(),
                e.clone(),
                Tensor::from_data(TensorData::new(vec![theta], [1]), &dev),
            );
            let lp = crate::device::host_f32(log_p.clone());
            let h: f64 = -lp.iter().map(|&l| (l as f64).exp() * l as f64).sum::<f64>() / 30.0;
            assert!(h <= last + 1e-9, "entropy {h} grew from {last}");
            last = h;
            if theta == 8.0 {
                assert!(h < 1e-3, "entropy {h} at sigma^2 = 1/(1 + e^8)");
                assert_eq!(crate::device::host_u32(log_p.argmax(1).reshape([30])), hard);
            }
        }
        // The forward pass: KL reaches theta and the codebook.
        let dev = Device::flex().autodiff();
        let e = Tensor::<2>::random([9, 4], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let p = params(e.clone(), 0.0, &dev);
        let q = <Sq as Registered>::new(&QuantizerConfig {
            kind: QuantizerKind::Sq,
            codebook_size: Some(9),
            code_dim: Some(4),
            ..Default::default()
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let z = Tensor::<2>::random([30, 4], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let out = q.forward(
            z.clone(),
            &p,
            Context {
                rng: &mut rng,
                resident: false,
                step: Some(1),
            },
        );
        let g = (q.loss(&out) + out.z_st.sum()).backward();
        let theta = p.precision.as_ref().unwrap();
        assert!(theta.val().grad(&g).is_some());
        assert!(e.grad(&g).is_some() && z.grad(&g).is_some());
    }
}
