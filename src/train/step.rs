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
use crate::device::{host_f32, host_u32, on_host};
use crate::model::{ModelOutput, VqVae};
use crate::quantizer::rate::rate_term;
use crate::quantizer::{Bottleneck, Context, Quantizer};

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
    /// The loss terms, when the step read them ([`StepMode::read`]).
    pub scalars: Option<Scalars>,
    /// The assigned (most probable) code of each latent vector of the batch, when read.
    pub indices: Option<Vec<u32>>,
}

/// How a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepMode {
    /// Read the loss terms and codes back to the host (and check the loss there). A step that
    /// does not read counts a non-finite loss on the device instead ([`Pending`]); the next
    /// reading step reports it. Always true on the CPU path.
    pub read: bool,
    /// Keep the step on the device: quantizers and codebook updates as tensor operations
    /// ([`crate::quantizer::Context::resident`], [`Bottleneck::after_step_resident`]).
    pub resident: bool,
}

impl StepMode {
    /// The mode for `device`: resident unless it is host memory; reading when asked (always on
    /// the host, where a read costs nothing).
    pub fn on(device: &Device, read: bool) -> Self {
        let resident = !on_host(device);
        Self {
            read: read || !resident,
            resident,
        }
    }
}

/// Steps that did not read their loss, and how many of them were not finite, counted on the
/// device.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    non_finite: Option<Tensor<1>>,
    /// The first such step.
    since: Option<u64>,
}

impl Pending {
    /// Reads the count of the unread steps (one read, none when every step was read): a
    /// description of them when some loss was not finite.
    pub fn check(&mut self) -> Option<String> {
        let count = self.non_finite.take()?;
        let since = self.since.take();
        let n = host_f32(count)[0] as u64;
        (n > 0).then(|| unread_message(n, since))
    }

    fn add(&mut self, total: &Tensor<1>, step: u64) {
        let bad = total.clone().detach().is_finite().bool_not().float();
        self.non_finite = Some(match self.non_finite.take() {
            Some(n) => n + bad,
            None => bad,
        });
        self.since.get_or_insert(step);
    }
}

/// A step found a non-finite loss: its own, or one of the unread steps before it.
#[derive(Clone, Debug)]
pub struct Diverged {
    /// The loss terms of the reading step.
    pub scalars: Scalars,
    /// Unread steps since `since` whose loss was not finite.
    pub unread_non_finite: u64,
    pub since: Option<u64>,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.scalars)?;
        if self.unread_non_finite > 0 {
            write!(
                f,
                "; {}",
                unread_message(self.unread_non_finite, self.since)
            )?;
        }
        Ok(())
    }
}

/// `n` non-finite losses among the steps not read since `since`.
fn unread_message(n: u64, since: Option<u64>) -> String {
    let from = since.map_or(String::new(), |s| format!(" from step {s} on"));
    format!("{n} of the steps{from} (whose loss is checked on the device) had a non-finite loss")
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
    let [b, c, h, w] = x.dims();
    let latents_per_pixel = f.z_e.dims()[0] as f64 / (b * c * h * w).max(1) as f64;
    let recon = (f.x_hat.clone() - x).square().mean();
    let base = recon.clone() + q.loss_beside(&f.q, &recon, latents_per_pixel);
    let rate = rate_term(
        cfg.rate.kind,
        f.z_e.clone(),
        || model.quantizer.codebook(),
        cfg.quantizer.temperature,
        || model.log_prior(cfg.quantizer.stages()),
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
/// Adam, then the codebook updates outside the gradient step. A reading step whose loss (or an
/// earlier unread step's) is not finite leaves the model untouched and returns the error. A
/// resident step that does not read makes no read from the device at all.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    cfg: &RunConfig,
    model: &mut VqVae,
    optim: &mut ModuleOptimizer,
    bottleneck: &mut Bottleneck,
    x: Tensor<4>,
    step: u64,
    mode: StepMode,
    pending: &mut Pending,
) -> Result<StepOutput, Diverged> {
    let device = x.device();
    let mut rng = step_rng(cfg.training.seed, step);
    let ctx = Context {
        rng: &mut rng,
        resident: mode.resident,
        step: Some(step),
    };
    let f = model.forward(x.clone(), bottleneck.quantizer.as_ref(), ctx);
    let l = loss(cfg, model, bottleneck.quantizer.as_ref(), &f, x);
    let (scalars, indices) = if mode.read {
        let (scalars, unread) = read_scalars(&l, &f, pending.non_finite.take());
        let since = pending.since.take();
        if !scalars.is_finite() || unread > 0 {
            return Err(Diverged {
                scalars,
                unread_non_finite: unread,
                since,
            });
        }
        (Some(scalars), Some(host_u32(f.q.indices.clone())))
    } else {
        pending.add(&l.total, step);
        (None, None)
    };
    // The rows the codebook updates take: z_e, or the quantizer's own (rvq's residuals).
    let rows =
        f.q.ema_rows
            .clone()
            .unwrap_or_else(|| f.z_e.clone().detach());
    let z_host = (!mode.resident && bottleneck.needs_z()).then(|| host_f32(rows.clone()));
    let grads = GradientsParams::from_grads(l.total.backward(), &*model);
    *model = optim.step(cfg.lr(), model.clone(), grads);
    if mode.resident {
        if let Some(codebook) = model.quantizer.codebook.as_ref().map(|c| c.val()) {
            let cb = bottleneck.after_step_resident(rows, &f.q, step, &mut rng, codebook);
            if let Some(cb) = cb {
                model.set_codebook_tensor(cb);
            }
        }
    } else {
        let indices = indices.as_deref().expect("the host path reads every step");
        let new_codebook = bottleneck.after_step(
            z_host.as_deref().unwrap_or_default(),
            indices,
            f.q.samples.as_deref(),
            step,
            &mut rng,
            || model.codebook_values(),
        );
        if let Some(cb) = new_codebook {
            model.set_codebook(cb, &device);
        }
    }
    Ok(StepOutput { scalars, indices })
}

/// The loss terms on the host, with the count of earlier unread non-finite steps, in one read.
fn read_scalars(l: &Loss, f: &ModelOutput, unread: Option<Tensor<1>>) -> (Scalars, u64) {
    let mut parts = vec![
        l.total.clone().detach(),
        l.recon.clone().detach(),
        f.q.codebook_loss.clone().detach(),
        f.q.commitment_loss.clone().detach(),
    ];
    let has_unread = unread.is_some();
    parts.extend(unread);
    if let Some(r) = &l.rate {
        parts.push(r.clone().detach());
    }
    let v = host_f32(Tensor::cat(parts, 0));
    let (unread, rate_at) = if has_unread { (v[4] as u64, 5) } else { (0, 4) };
    let scalars = Scalars {
        loss: v[0],
        recon: v[1],
        codebook: v[2],
        commitment: v[3],
        rate: v.get(rate_at).copied(),
    };
    (scalars, unread)
}
