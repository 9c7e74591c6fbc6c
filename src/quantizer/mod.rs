//! The bottleneck: every quantizer behind one interface, [`Quantizer`], one structured output,
//! [`QuantizerOutput`], and [`Bottleneck`], which adds what every quantizer shares (codebook
//! initialisation, dead-code restarts).
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
//! The family, one file each:
//! * [`vq`]: nearest codeword, codebook by the codebook term (van den Oord et al. 2017; eq. 24, 27).
//! * [`ema`]: nearest codeword, codebook by exponential moving averages (sonnet's
//!   `VectorQuantizerEMA`); the EMA state is shared with soft EM's M-step.
//! * [`soft_em`]: p(z|i) = softmax(-d^2 / tau) (eq. 28), Monte-Carlo samples, EMA M-step (Roy et
//!   al. 2018): the VIB side of the seed.
//! * [`rate`]: the prior r(z) and the rate terms H(p(Z|I), r) and KL(p(Z|I) || r) (eq. 22, 26).
//! * [`init`]: k-means++ codebook initialisation; [`dead_codes`]: dead-code restarts.
//!
//! Adding a quantizer is one new file implementing [`Quantizer`] and [`Registered`], its `mod`
//! line, and one line in the [`quantizers!`] list below; the training loop, the command line and
//! `compare` take it from there.

use burn::tensor::{Int, Tensor};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

pub mod config;
pub mod dead_codes;
pub mod ema;
pub mod fsq;
pub mod init;
pub mod lfq;
pub mod params;
pub mod rate;
pub mod rotation;
pub mod rvq;
pub mod soft_em;
pub mod sq;
pub mod vq;

#[cfg(test)]
mod tests;

pub use crate::device::on_host;
pub(crate) use crate::device::{host_f32, index_tensor};
pub use dead_codes::{DeadCodeTracker, DeviceDeadCodes};
pub use ema::{DeviceEma, EmaCodebook};
pub use init::{CodebookInit, kmeans_pp};
pub use rate::{PriorKind, RateKind, rate_terms};
pub use soft_em::{sample_statistics, soft_log_probs};
pub use vq::{DISTANCE_BUDGET, nearest, nearest_chunked, quantize, squared_distances};

pub use config::{CodeSpace, Estimator, QuantizerConfig};
pub use params::QuantizerParams;

/// The one structured result of every quantizer (as sonnet's quantizers return it).
pub struct QuantizerOutput {
    /// The decoder's input: z_e + sg(z_q - z_e), equal to z_q in value, passing the decoder's
    /// gradient to z_e unchanged (straight-through).
    pub z_st: Tensor<2>,
    /// z_q: the selected codeword (hard), or the mean of the sampled codewords (soft EM).
    pub z_q: Tensor<2>,
    /// The assigned (most probable) code of each row, `[N]`.
    pub indices: Tensor<1, Int>,
    /// Soft EM on the host: the m codes drawn for each row, `[N*m]`.
    pub samples: Option<Vec<u32>>,
    /// Soft EM on the device ([`Context::resident`]): the sample frequencies `[N, K]`, each of
    /// a row's m draws counting 1/m (z_q = weights e).
    pub weights: Option<Tensor<2>>,
    /// mean ||sg(z_e) - z_q||^2 over elements: moves the codebook only.
    pub codebook_loss: Tensor<1>,
    /// mean ||z_e - sg(z_q)||^2 over elements: moves the encoder only.
    pub commitment_loss: Tensor<1>,
    /// A quantizer's own further term of the loss, unweighted: lfq's entropy penalty, sq's
    /// KL term of its evidence lower bound.
    pub extra: Option<Tensor<1>>,
    /// The rows the codebook's moving averages take, detached, when they are not z_e's: rvq's
    /// residuals r_s, `[N*S, D]` (row i's stage s at i*S + s, as `indices`).
    pub ema_rows: Option<Tensor<2>>,
}

impl QuantizerOutput {
    /// The output for the codewords `z_q` (`[N, D]`) given to z_e and the codes `indices`: the
    /// straight-through input z_e + sg(z_q - z_e) and both loss terms (no samples, no weights).
    pub fn from_codewords(z_e: Tensor<2>, z_q: Tensor<2>, indices: Tensor<1, Int>) -> Self {
        Self::with_estimator(Estimator::StraightThrough, z_e, z_q, indices)
    }

    /// [`QuantizerOutput::from_codewords`] with the decoder's input made by `estimator`
    /// (straight-through, or the rotation trick of [`rotation`]).
    pub fn with_estimator(
        estimator: Estimator,
        z_e: Tensor<2>,
        z_q: Tensor<2>,
        indices: Tensor<1, Int>,
    ) -> Self {
        let codebook_loss = (z_q.clone() - z_e.clone().detach()).square().mean();
        let commitment_loss = (z_e.clone() - z_q.clone().detach()).square().mean();
        let z_st = rotation::decoder_input(estimator, z_e, z_q.clone());
        Self {
            z_st,
            z_q,
            indices,
            samples: None,
            weights: None,
            codebook_loss,
            commitment_loss,
            extra: None,
            ema_rows: None,
        }
    }
}

/// What a forward pass may use beyond z_e and the codebook.
pub struct Context<'a> {
    /// The random stream of this pass (soft EM draws its sample seed, or on the device its
    /// uniforms, from it).
    pub rng: &'a mut StdRng,
    /// Keep everything on the tensors' device as tensor operations (GPU training: no read back
    /// to the host); otherwise the host kernels of [`crate::kernels::assign`] run (the fast path
    /// on the CPU).
    pub resident: bool,
    /// The training step this pass belongs to (annealing schedules, [`sq`]); None outside
    /// training.
    pub step: Option<u64>,
}

impl<'a> Context<'a> {
    /// The context for tensors on `device`: resident unless the device is host memory.
    pub fn on(device: &burn::tensor::Device, rng: &'a mut StdRng) -> Self {
        Self {
            rng,
            resident: !on_host(device),
            step: None,
        }
    }
}

/// The posterior p(z|i) a quantizer assigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posterior {
    /// One-hot on the quantizer's code ([`Quantizer::codes`]): H(Z|I) = 0 (eq. 27).
    Hard,
    /// softmax(-||z_e - e_z||^2 / tau) over the codebook (eq. 28): its log-probabilities are
    /// [`soft_log_probs`] of the codebook with the quantizer's temperature
    /// ([`Quantizer::soft_temperature`]).
    Soft,
}

/// A bottleneck between encoder and decoder. It owns its parameters ([`QuantizerParams`], in the
/// model), says how large its code space is ([`Quantizer::code_space`]) and which posterior it
/// assigns ([`Quantizer::posterior`]), and maps latents to codes and codes to codewords on the
/// host ([`Quantizer::codes`], [`Quantizer::codewords`]): evaluation, the codec and the reports
/// need to know nothing more of it.
pub trait Quantizer: std::fmt::Debug + Send + Sync {
    fn kind(&self) -> QuantizerKind;

    /// The size of the code space: K codes a stage, S stages.
    fn code_space(&self) -> CodeSpace;

    /// The forward pass: z_e `[N, D]` and the quantizer's parameters to the structured output.
    fn forward(&self, z_e: Tensor<2>, params: &QuantizerParams, ctx: Context) -> QuantizerOutput;

    /// This quantizer's terms of the training loss (eq. 24 without the reconstruction term).
    fn loss(&self, out: &QuantizerOutput) -> Tensor<1>;

    /// The terms of the training loss beside the reconstruction `recon` (mean squared error per
    /// pixel), with `latents_per_pixel` latent vectors an image per pixel value an image. By
    /// default [`Quantizer::loss`]; a quantizer whose objective weighs its terms against the
    /// reconstruction (sq) reads them.
    fn loss_beside(
        &self,
        out: &QuantizerOutput,
        recon: &Tensor<1>,
        latents_per_pixel: f64,
    ) -> Tensor<1> {
        let _ = (recon, latents_per_pixel);
        self.loss(out)
    }

    /// The posterior it assigns (what evaluation measures as its own).
    fn posterior(&self) -> Posterior {
        Posterior::Hard
    }

    /// The temperature tau of its soft posterior softmax(-d^2 / tau), when it is
    /// [`Posterior::Soft`]; the temperature of the common soft posterior otherwise.
    fn soft_temperature(&self, params: &QuantizerParams) -> f64 {
        let _ = params;
        1.0
    }

    /// The codebook k-means++ (+10 Lloyd steps) finds in the first batch's z_e (`[N*D]`): `[K*D]`
    /// (residual stages: `[S*K*D]`, each stage on the residuals of the ones before).
    fn initial_codebook(&self, z: &[f32], d: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
        kmeans_pp(z, d, k, 10, rng)
    }

    /// A parameter the first batch sets beside the codebook: sq's precision theta, from z_e
    /// (`[N*D]`) and the codebook (`[K*D]`) it starts with. None: nothing to set.
    fn initial_precision(&self, z: &[f32], codebook: &[f32], d: usize) -> Option<f32> {
        let _ = (z, codebook, d);
        None
    }

    /// The hard code of each row of z_e (`[N*D]` on the host): S codes a row, `[N*S]`. By
    /// default the nearest codeword of the codebook (eq. 27).
    fn codes(&self, z_e: &[f32], params: &QuantizerParams) -> Vec<u32> {
        let e = params.codebook_values();
        let d = params.codebook().dims()[1];
        crate::kernels::assign::nearest(z_e, &crate::kernels::assign::Codebook::new(&e, d))
    }

    /// The decoder's input for codes (`[N*S]`, as [`Quantizer::codes`] gives them): `[N*D]`. By
    /// default the codewords of the codebook.
    fn codewords(&self, codes: &[u32], params: &QuantizerParams) -> Vec<f32> {
        let e = params.codebook_values();
        let d = params.codebook().dims()[1];
        let mut v = Vec::with_capacity(codes.len() * d);
        for &c in codes {
            v.extend_from_slice(&e[c as usize * d..(c as usize + 1) * d]);
        }
        v
    }

    /// After an optimizer step: z_e of the batch (`[N*D]` on the host), its assigned codes and,
    /// for soft EM, its samples. Returns the new codebook `[K*D]` when the quantizer moved it.
    fn update(
        &mut self,
        _z_e: &[f32],
        _indices: &[u32],
        _samples: Option<&[u32]>,
    ) -> Option<Vec<f32>> {
        None
    }

    /// On the device: the weights `[N, K]` with which the rows of z_e enter the codebook's
    /// moving averages (one-hot of the assigned code for vq-ema, the sample frequencies for soft
    /// EM), or None when the codebook learns by gradient.
    fn ema_weights(&self, _out: &QuantizerOutput) -> Option<Tensor<2>> {
        None
    }

    /// The EMA state, for the quantizers that keep one (checkpointed with the weights).
    fn ema(&self) -> Option<&EmaCodebook> {
        None
    }

    fn ema_mut(&mut self) -> Option<&mut EmaCodebook> {
        None
    }
}

/// One-hot rows `[N, K]` of codes `[N]`, by comparison with 0..K on the codes' device (burn's
/// `one_hot` checks its input by reading it back to the host, a queue drain this avoids).
pub fn one_hot(indices: Tensor<1, Int>, k: usize) -> Tensor<2> {
    let n = indices.dims()[0];
    let codes = Tensor::<1, Int>::arange(0..k as i64, &indices.device()).reshape([1, k]);
    indices
        .reshape([n, 1])
        .expand([n, k])
        .equal(codes.expand([n, k]))
        .float()
}

/// How a quantizer type is registered in [`quantizers!`].
pub trait Registered: Quantizer + Sized + 'static {
    /// The EMA decay when `--ema-decay` is not given.
    const DEFAULT_EMA_DECAY: f64 = 0.99;
    /// Whether the codebook parameter learns by gradient; otherwise [`Quantizer::update`] moves
    /// it.
    const CODEBOOK_BY_GRADIENT: bool = false;
    fn new(cfg: &QuantizerConfig) -> Self;
}

/// Declares [`QuantizerKind`] (the `--quantizer` values, kebab-case) and [`build`] from one list.
macro_rules! quantizers {
    ($($(#[$doc:meta])* $variant:ident = $name:literal => $ty:ty),* $(,)?) => {
        /// Which quantizer sits in the bottleneck.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
        pub enum QuantizerKind {
            $($(#[$doc])* #[serde(rename = $name)] #[value(name = $name)] $variant,)*
        }

        impl QuantizerKind {
            /// Every registered quantizer, in registration order.
            pub const ALL: &'static [QuantizerKind] = &[$(QuantizerKind::$variant),*];

            /// The name on the command line and in every output.
            pub fn name(self) -> &'static str {
                match self {
                    $(QuantizerKind::$variant => $name,)*
                }
            }

            /// Whether the codebook parameter learns by gradient (else the quantizer's update
            /// moves it).
            pub fn codebook_by_gradient(self) -> bool {
                match self {
                    $(QuantizerKind::$variant => <$ty as Registered>::CODEBOOK_BY_GRADIENT,)*
                }
            }

            /// The EMA decay used when none is given.
            pub fn default_ema_decay(self) -> f64 {
                match self {
                    $(QuantizerKind::$variant => <$ty as Registered>::DEFAULT_EMA_DECAY,)*
                }
            }
        }

        /// The quantizer a configuration names.
        pub fn build(cfg: &QuantizerConfig) -> Box<dyn Quantizer> {
            match cfg.kind {
                $(QuantizerKind::$variant => Box::new(<$ty as Registered>::new(cfg)),)*
            }
        }
    };
}

quantizers! {
    /// Nearest codeword, codebook learned by the codebook loss (van den Oord et al. 2017).
    Vq = "vq" => vq::Vq,
    /// Nearest codeword, codebook by exponential moving averages (sonnet's VectorQuantizerEMA).
    VqEma = "vq-ema" => ema::VqEma,
    /// Soft EM (Roy et al. 2018): p(z|i) = softmax(-d^2/tau), Monte-Carlo samples, EMA M-step.
    SoftEm = "soft-em" => soft_em::SoftEm,
    /// Finite scalar quantization (Mentzer et al. 2023): each channel bounded and rounded to
    /// its levels; no codebook.
    Fsq = "fsq" => fsq::Fsq,
    /// Lookup-free quantization (Yu et al. 2023): the sign of each channel, K = 2^D, with an
    /// entropy penalty.
    Lfq = "lfq" => lfq::Lfq,
    /// Residual VQ (Zeghidour et al. 2021): S codebooks, each quantizing the residual of the
    /// stages before it.
    Rvq = "rvq" => rvq::Rvq,
    /// Stochastic quantization (SQ-VAE, Takida et al. 2022): a Gaussian posterior over the
    /// codebook with a learned variance, trained by its evidence lower bound through a
    /// Gumbel-softmax relaxation.
    Sq = "sq" => sq::Sq,
}

impl std::fmt::Display for QuantizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A quantizer with what every bottleneck shares: codebook initialisation (k-means++ on the first
/// batch, [`init`]) and dead-code restarts ([`dead_codes`]).
///
/// On a GPU its state (the EMA averages, the dead-code tracker) lives on the device as well
/// ([`Bottleneck::after_step_resident`]); the host copies in `quantizer` and `dead_codes` are the
/// checkpointed form and are brought up to date by [`Bottleneck::sync`].
#[derive(Debug)]
pub struct Bottleneck {
    pub quantizer: Box<dyn Quantizer>,
    pub dead_codes: Option<DeadCodeTracker>,
    pub init: CodebookInit,
    resident: Option<Resident>,
}

/// The device copies of a bottleneck's state.
#[derive(Debug)]
struct Resident {
    ema: Option<DeviceEma>,
    dead: Option<DeviceDeadCodes>,
}

impl Bottleneck {
    /// A fresh bottleneck for a configuration.
    pub fn new(cfg: &QuantizerConfig) -> Self {
        Self {
            quantizer: build(cfg),
            dead_codes: (cfg.dead_code_steps > 0 && cfg.has_codebook()).then(|| {
                DeadCodeTracker::new(cfg.codebook_size() * cfg.stages(), cfg.dead_code_steps, 0)
            }),
            // A resolved configuration always names it; a bare one means no data-dependent init.
            // An implicit grid (fsq, lfq) has nothing to initialise.
            init: match cfg.init {
                Some(init) if cfg.has_codebook() => init,
                _ => CodebookInit::Uniform,
            },
            resident: None,
        }
    }

    /// Whether the codebook (or, for sq, its precision) still waits for its data-dependent
    /// initialisation.
    pub fn starts_uninitialised(&self) -> bool {
        self.init != CodebookInit::Uniform || self.quantizer.kind() == QuantizerKind::Sq
    }

    /// k-means++ (+10 Lloyd steps) on the first batch of encoder outputs `z` (`[N*D]`); the EMA
    /// state, if any, starts as if each centre had been seen once. Returns the codebook.
    pub fn initialise(&mut self, z: &[f32], d: usize, k: usize, seed: u64) -> Vec<f32> {
        use rand::SeedableRng;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6b6d_6561_6e73);
        let centres = self.quantizer.initial_codebook(z, d, k, &mut rng);
        if let Some(e) = self.quantizer.ema_mut() {
            e.start_at(&centres);
        }
        self.resident = None;
        centres
    }

    /// Whether [`Bottleneck::after_step`] needs the batch's z_e on the host.
    pub fn needs_z(&self) -> bool {
        self.quantizer.ema().is_some() || self.dead_codes.is_some()
    }

    /// After an optimizer step (number `step`): the quantizer's own update (EMA / M-step), then
    /// dead-code restarts from random rows of z_e. `codebook` gives the current codebook when a
    /// restart needs it. Returns the new codebook `[K*D]` when it changed.
    pub fn after_step(
        &mut self,
        z: &[f32],
        indices: &[u32],
        samples: Option<&[u32]>,
        step: u64,
        rng: &mut StdRng,
        codebook: impl FnOnce() -> Vec<f32>,
    ) -> Option<Vec<f32>> {
        let mut new = self.quantizer.update(z, indices, samples);
        if let Some(t) = self.dead_codes.as_mut() {
            t.observe(indices, step);
            if !t.dead(step).is_empty() {
                let mut cb = new.take().unwrap_or_else(codebook);
                let d = cb.len() / t.last_used.len();
                t.restart(step, &mut cb, z, d, self.quantizer.ema_mut(), rng);
                new = Some(cb);
            }
        }
        new
    }

    /// [`Bottleneck::after_step`] on the device, as tensor operations, reading nothing back: the
    /// quantizer's moving averages from its [`Quantizer::ema_weights`], then dead-code restarts.
    /// `z` is the batch's z_e `[N, D]` (detached), `out` the step's quantizer output, `codebook`
    /// the current codebook. Returns the new codebook `[K, D]` when it may have changed. The
    /// device state is made from the host state on first use.
    pub fn after_step_resident(
        &mut self,
        z: Tensor<2>,
        out: &QuantizerOutput,
        step: u64,
        rng: &mut StdRng,
        codebook: Tensor<2>,
    ) -> Option<Tensor<2>> {
        let device = z.device();
        let r = self.resident.get_or_insert_with(|| Resident {
            ema: self.quantizer.ema().map(|e| DeviceEma::upload(e, &device)),
            dead: self
                .dead_codes
                .as_ref()
                .map(|t| DeviceDeadCodes::upload(t, &device)),
        });
        let mut new = match (self.quantizer.ema_weights(out), r.ema.as_mut()) {
            (Some(w), Some(e)) => Some(e.update(z.clone(), w)),
            _ => None,
        };
        if let Some(dc) = r.dead.as_mut() {
            let cb = new.take().unwrap_or(codebook);
            new = Some(dc.step(out.indices.clone(), step, z, cb, r.ema.as_mut(), rng));
        }
        new
    }

    /// Brings the host state (EMA averages, dead-code tracker) up to date with the device's
    /// (one read each); nothing to do on the CPU.
    pub fn sync(&mut self) {
        if let Some(Resident { ema: Some(d), .. }) = &self.resident
            && let Some(e) = self.quantizer.ema_mut()
        {
            d.download(e);
        }
        self.sync_dead_codes();
    }

    /// [`Bottleneck::sync`] of the dead-code tracker alone (its restart count is logged).
    pub fn sync_dead_codes(&mut self) {
        if let Some(Resident { dead: Some(d), .. }) = &self.resident {
            self.dead_codes = Some(d.download());
        }
    }
}
