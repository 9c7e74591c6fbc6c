//! The resolved configuration of a run, saved as `config.json` in the run directory and in the
//! metadata of every checkpoint.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::error::InputError;

/// Which quantizer sits in the bottleneck.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum QuantizerKind {
    /// Nearest codeword, codebook learned by the codebook loss (van den Oord et al. 2017).
    Vq,
    /// Nearest codeword, codebook by exponential moving averages (sonnet's VectorQuantizerEMA).
    VqEma,
    /// Soft EM (Roy et al. 2018): p(z|i) = softmax(-d^2/tau), Monte-Carlo samples, EMA M-step.
    SoftEm,
}

/// An explicit rate term added to the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RateKind {
    /// No rate term (the VQ-VAE losses as published).
    None,
    /// B * H(p(Z|I), r): the VDIB rate (seed eq. 22/25).
    Vdib,
    /// B * KL(p(Z|I) || r): the VIB rate (seed eq. 15/26).
    Vib,
}

/// The prior r(z) over codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PriorKind {
    /// r(z) = 1/K.
    Uniform,
    /// r = softmax(logits), logits trained with the rest.
    Learned,
}

/// How the codebook starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CodebookInit {
    /// Uniform in [-1/K, 1/K].
    Uniform,
    /// k-means++ seeding plus a few Lloyd iterations on the first batch of encoder outputs.
    Kmeans,
}

/// Where tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// burn's `flex` CPU backend.
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12); needs the `wgpu` cargo feature.
    Wgpu,
    /// burn's CUDA backend, first GPU; needs the `cuda` cargo feature.
    Cuda,
}

/// Everything that defines a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RunConfig {
    pub dataset: DatasetKind,
    pub data_dir: Option<PathBuf>,
    pub image_size: Option<usize>,
    /// Shapes data set sizes.
    pub shapes_train: usize,
    pub shapes_test: usize,
    /// Use only the first N training images (0 = all).
    pub train_limit: usize,
    /// Use only the first N test images (0 = all).
    pub test_limit: usize,
    /// `[channels, height, width]` of the images, filled in when the data is loaded.
    #[serde(default)]
    pub image_shape: Option<[usize; 3]>,

    pub quantizer: QuantizerKind,
    /// K, the number of codewords.
    pub codebook_size: usize,
    /// D, the dimension of a codeword.
    pub code_dim: usize,
    /// Channels of the convolutional layers.
    pub hidden: usize,
    /// Weight of the commitment term ||z_e - sg(z_q)||^2.
    pub beta: f64,
    /// EMA decay (vq-ema).
    pub ema_decay: f64,
    /// Laplace smoothing epsilon of the EMA counts (vq-ema).
    pub ema_epsilon: f64,
    pub init: CodebookInit,
    /// Re-seed a code unused for this many steps (0 = off).
    pub dead_code_steps: u64,
    /// Temperature tau of the soft posterior softmax(-d^2 / tau) (soft EM, rate terms, and the
    /// soft evaluation of every model).
    pub temperature: f64,
    /// Monte-Carlo samples per latent vector (soft EM).
    pub samples: usize,
    pub rate: RateKind,
    /// Weight B of the rate term.
    pub rate_weight: f64,
    pub prior: PriorKind,
    /// Standard deviation of the Gaussian decoder in the reported distortion term.
    pub sigma: f64,
    /// Evaluate on the test split every N steps too (0 = at each epoch's end only).
    pub eval_every: u64,

    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub device: DeviceKind,
    /// Log a training record every N steps.
    pub log_every: u64,
    /// Save a checkpoint every N steps (0 = at the end of each epoch only).
    pub checkpoint_every: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Shapes,
            data_dir: None,
            image_size: None,
            shapes_train: 4096,
            shapes_test: 512,
            train_limit: 0,
            test_limit: 0,
            image_shape: None,
            quantizer: QuantizerKind::Vq,
            codebook_size: 512,
            code_dim: 64,
            hidden: 128,
            beta: 0.25,
            ema_decay: 0.99,
            ema_epsilon: 1e-5,
            init: CodebookInit::Uniform,
            dead_code_steps: 0,
            temperature: 1.0,
            samples: 10,
            rate: RateKind::None,
            rate_weight: 1.0,
            prior: PriorKind::Uniform,
            sigma: 1.0,
            eval_every: 0,
            epochs: 2,
            batch_size: 128,
            lr: 2e-4,
            seed: 1,
            device: DeviceKind::Cpu,
            log_every: 10,
            checkpoint_every: 0,
        }
    }
}

impl RunConfig {
    /// Checks every value a model or a run cannot work with.
    pub fn validate(&self) -> Result<(), InputError> {
        let bad = |m: String| Err(InputError::config(m));
        if self.codebook_size == 0 {
            return bad("codebook size K must be at least 1 (got 0)".into());
        }
        if self.code_dim == 0 {
            return bad("code dimension D must be at least 1 (got 0)".into());
        }
        if self.hidden == 0 {
            return bad("--hidden must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!(
                "--lr must be positive and finite (got {})",
                self.lr
            ));
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return bad(format!(
                "--beta must be non-negative and finite (got {})",
                self.beta
            ));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad(format!(
                "--ema-decay must be in [0, 1) (got {})",
                self.ema_decay
            ));
        }
        if !(self.ema_epsilon > 0.0) {
            return bad(format!(
                "--ema-epsilon must be positive (got {})",
                self.ema_epsilon
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "--temperature must be positive and finite (got {})",
                self.temperature
            ));
        }
        if self.samples == 0 {
            return bad("--samples must be at least 1".into());
        }
        if !(self.rate_weight >= 0.0 && self.rate_weight.is_finite()) {
            return bad(format!(
                "--rate-weight must be non-negative and finite (got {})",
                self.rate_weight
            ));
        }
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return bad(format!(
                "--sigma must be positive and finite (got {})",
                self.sigma
            ));
        }
        if self.log_every == 0 {
            return bad("--log-every must be at least 1".into());
        }
        if self.dataset == DatasetKind::Shapes && (self.shapes_train == 0 || self.shapes_test == 0)
        {
            return bad("shapes data set sizes must be at least 1".into());
        }
        Ok(())
    }

    /// Reads and validates a `config.json`.
    pub fn load(path: &std::path::Path) -> Result<Self, InputError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InputError::file(path, format!("cannot read run config: {e}")))?;
        let cfg: RunConfig = serde_json::from_str(&text)
            .map_err(|e| InputError::file(path, format!("not a valid vqib run config: {e}")))?;
        cfg.validate()
            .map_err(|e| InputError::file(path, e.to_string()))?;
        Ok(cfg)
    }
}
