//! One training step: x -> [`VqVae::forward`] (encoder -> quantizer -> decoder) -> the loss of
//! seed eq. 24 for the configured quantizer, plus an explicit rate term when asked:
//!
//! L = mean (x_hat - x)^2 + L_quantizer + B * rate,
//!
//! L_quantizer = mean (sg(z_e) - z_q)^2 + beta mean (z_e - sg(z_q))^2 (`vq`), or
//! beta mean (z_e - sg(z_q))^2 (`vq-ema`, `soft-em`, whose codebook moves by EMA / M-step);
//! rate = H(p(Z|I), r) (`--rate vdib`) or KL(p(Z|I) || r) (`--rate vib`), p(z|i) =
//! softmax(-d^2 / tau). With a uniform r and no rate term this is the VDIB loss, whose rate
//! H(p(Z|I), r) = log K is constant (eq. 23-25). Adam updates the encoder, decoder and (for `vq`)
//! codebook; then the quantizer's own update and dead-code restarts run ([`Bottleneck::after_step`]).

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::RunConfig;
use crate::model::{ModelOutput, VqVae};
use crate::quantizer::rate::rate_term;
use crate::quantizer::{Bottleneck, Context, Quantizer, host_f32, host_u32};

/// The scalar terms of a step's loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scalars {
    pub loss: f32,
    pub recon: f32,
    pub codebook: f32,
    pub commitment: f32,
    /// The explicit rate term, when `--rate` is not `none`.
    pub rate: Option<f32>,
}

impl Scalars {
    pub fn is_finite(&self) -> bool {
        [self.loss, self.recon, self.codebook, self.commitment]
            .iter()
            .chain(self.rate.as_ref())
            .all(|v| v.is_finite())
    }
}

impl std::fmt::Display for Scalars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss={} recon={} codebook={} commitment={}",
            self.loss, self.recon, self.codebook, self.commitment
        )?;
        if let Some(r) = self.rate {
            write!(f, " rate={r}")?;
        }
        Ok(())
    }
}

/// What one optimizer step reports.
#[derive(Clone, Debug)]
pub struct StepOutput {
    pub scalars: Scalars,
    /// The assigned (most probable) code of each latent vector of the batch.
    pub indices: Vec<u32>,
}

/// The training loss and its parts.
pub struct Loss {
    pub total: Tensor<1>,
    /// mean (x_hat - x)^2.
    pub recon: Tensor<1>,
    /// The explicit rate term (when `--rate` is not `none`), before its weight B.
    pub rate: Option<Tensor<1>>,
}

/// The loss of a forward pass `f` of `x` (module docs).
pub fn loss(
    cfg: &RunConfig,
    model: &VqVae,
    q: &dyn Quantizer,
    f: &ModelOutput,
    x: Tensor<4>,
) -> Loss {
    let recon = (f.x_hat.clone() - x).square().mean();
    let base = recon.clone() + q.loss(&f.q);
    let rate = rate_term(
        cfg.rate.kind,
        f.z_e.clone(),
        model.codebook.val(),
        cfg.quantizer.temperature,
        model.log_prior(),
    );
    let total = match &rate {
        Some(r) => base + r.clone().mul_scalar(cfg.rate.weight),
        None => base,
    };
    Loss { total, recon, rate }
}

/// The random stream of step `step` (soft-EM samples, dead-code restarts).
pub fn step_rng(seed: u64, step: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// One optimizer step on the batch `x` (step number `step`, from 1): forward, loss, backward,
/// Adam, then the codebook updates outside the gradient step. A non-finite loss leaves the model
/// untouched and returns its scalars as the error.
pub fn train_step(
    cfg: &RunConfig,
    model: &mut VqVae,
    optim: &mut ModuleOptimizer,
    bottleneck: &mut Bottleneck,
    x: Tensor<4>,
    step: u64,
    device: &Device,
) -> Result<StepOutput, Scalars> {
    let mut rng = step_rng(cfg.training.seed, step);
    let ctx = Context { rng: &mut rng };
    let f = model.forward(x.clone(), bottleneck.quantizer.as_ref(), ctx);
    let l = loss(cfg, model, bottleneck.quantizer.as_ref(), &f, x);
    let scalars = read_scalars(&l, &f);
    if !scalars.is_finite() {
        return Err(scalars);
    }
    let indices = host_u32(f.q.indices.clone());
    let z_host = if bottleneck.needs_z() {
        host_f32(f.z_e.clone().detach())
    } else {
        Vec::new()
    };
    let grads = GradientsParams::from_grads(l.total.backward(), &*model);
    *model = optim.step(cfg.training.lr, model.clone(), grads);
    let new_codebook = bottleneck.after_step(
        &z_host,
        &indices,
        f.q.samples.as_deref(),
        step,
        &mut rng,
        || model.codebook_values(),
    );
    if let Some(cb) = new_codebook {
        model.set_codebook(cb, device);
    }
    Ok(StepOutput { scalars, indices })
}

/// The loss terms on the host, in one transfer.
fn read_scalars(l: &Loss, f: &ModelOutput) -> Scalars {
    let mut parts = vec![
        l.total.clone().detach(),
        l.recon.clone().detach(),
        f.q.codebook_loss.clone().detach(),
        f.q.commitment_loss.clone().detach(),
    ];
    if let Some(r) = &l.rate {
        parts.push(r.clone().detach());
    }
    let v = host_f32(Tensor::cat(parts, 0));
    Scalars {
        loss: v[0],
        recon: v[1],
        codebook: v[2],
        commitment: v[3],
        rate: v.get(4).copied(),
    }
}
