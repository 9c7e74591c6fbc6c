//! Training, evaluation and reconstruction.
//!
//! One step: x -> z_e = enc(x) -> nearest codeword z_q (eq. 27) -> x_hat = dec(z_e + sg(z_q - z_e))
//! and the loss of seed eq. 24,
//! * `vq`:     mean (x_hat - x)^2 + mean (sg(z_e) - z_q)^2 + beta mean (z_e - sg(z_q))^2,
//! * `vq-ema`: mean (x_hat - x)^2 + beta mean (z_e - sg(z_q))^2, codebook by EMA.
//! Adam (PyTorch's defaults: betas 0.9/0.999, eps 1e-8) updates the encoder and decoder (and, for
//! `vq`, the codebook).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::assign::{Codebook, SoftOptions, soft_assign};
use crate::checkpoint::{self, TrainState, write_atomic};
use crate::config::{CodebookInit, DeviceKind, PriorKind, QuantizerKind, RateKind, RunConfig};
use crate::data::{self, DataSpec, Dataset, ImageSet};
use crate::error::{InputError, NonFiniteError};
use crate::info::{CodeHistogram, InfoAccumulator, InfoSummary, gaussian_nll, objectives};
use crate::model::{VqVae, from_vectors, to_vectors};
use crate::quantizer::{
    DeadCodeTracker, EmaCodebook, Quantized, host_f32, kmeans_pp, quantize, rate_terms,
    soft_quantize,
};
use crate::report::{MetricsLog, Record, table, write_grid};

/// The burn device for a device kind (the autodiff decorator is added by the trainer).
pub fn device(kind: DeviceKind) -> Result<Device, InputError> {
    match kind {
        DeviceKind::Cpu => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => {
            let dev = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
            // Adapter selection panics inside wgpu when there is none: turn that into an error.
            let probe = std::panic::catch_unwind(|| {
                let t = Tensor::<1>::from_floats([1.0f32, 2.0], &dev);
                t.sum().into_scalar::<f32>()
            });
            match probe {
                Ok(v) if (v - 3.0).abs() < 1e-6 => Ok(dev),
                _ => Err(InputError::config(
                    "--device wgpu: no usable wgpu adapter (is a Vulkan driver installed? set XDG_RUNTIME_DIR)",
                )),
            }
        }
        #[cfg(not(feature = "wgpu"))]
        DeviceKind::Wgpu => Err(InputError::config(
            "--device wgpu needs vqib built with the `wgpu` cargo feature (cargo build --release --features wgpu)",
        )),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Ok(Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err(InputError::config(
            "--device cuda needs vqib built with the `cuda` cargo feature (cargo build --release --features cuda)",
        )),
    }
}

/// Loads the data set a config names (applying `train_limit` / `test_limit`).
pub fn load_data(cfg: &RunConfig) -> Result<Dataset, InputError> {
    let spec = DataSpec {
        kind: cfg.dataset,
        dir: cfg.data_dir.clone(),
        image_size: cfg.image_size,
        shapes_train: cfg.shapes_train,
        shapes_test: cfg.shapes_test,
        seed: cfg.seed,
    };
    let mut ds = data::load(&spec)?;
    if cfg.train_limit > 0 {
        ds.train = ds.train.take(cfg.train_limit);
    }
    if cfg.test_limit > 0 {
        ds.test = ds.test.take(cfg.test_limit);
    }
    if let Some(shape) = cfg.image_shape
        && shape != ds.image_shape()
    {
        return Err(InputError::config(format!(
            "the data has images of shape {:?} but the run was trained on {shape:?}",
            ds.image_shape()
        )));
    }
    Ok(ds)
}

/// A fresh model for a config (the codebook uniform in [-1/K, 1/K]).
pub fn new_model(cfg: &RunConfig, channels: usize, device: &Device) -> VqVae {
    device.seed(cfg.seed);
    let VqVae {
        encoder,
        decoder,
        codebook,
        prior_logits,
    } = VqVae::new(
        channels,
        cfg.hidden,
        cfg.codebook_size,
        cfg.code_dim,
        device,
    );
    VqVae {
        encoder,
        decoder,
        // vq-ema and soft-em move the codebook by their M-step, not by gradient.
        codebook: codebook.set_require_grad(cfg.quantizer == QuantizerKind::Vq),
        prior_logits: prior_logits.set_require_grad(cfg.prior == PriorKind::Learned),
    }
}

/// Forward pass through encoder, quantizer and decoder.
pub struct Forward {
    pub x_hat: Tensor<4>,
    pub z_e: Tensor<2>,
    pub q: Quantized,
    /// Soft EM: the Monte-Carlo samples (`[N*m]`).
    pub soft: Option<Vec<u32>>,
    /// mean (x_hat - x)^2.
    pub recon: Tensor<1>,
}

/// The forward pass; `rng` draws the soft-EM samples.
pub fn forward(cfg: &RunConfig, model: &VqVae, x: Tensor<4>, rng: &mut StdRng) -> Forward {
    let z = model.encoder.forward(x.clone());
    let [b, _, h, w] = z.dims();
    let z_e = to_vectors(z);
    let (q, soft) = match cfg.quantizer {
        QuantizerKind::SoftEm => {
            let s = soft_quantize(
                z_e.clone(),
                model.codebook.val(),
                cfg.temperature,
                cfg.samples,
                rng,
            );
            (s.q, Some(s.samples))
        }
        _ => (quantize(z_e.clone(), model.codebook.val()), None),
    };
    let x_hat = model.decoder.forward(from_vectors(q.z_st.clone(), b, h, w));
    let recon = (x_hat.clone() - x).square().mean();
    Forward {
        x_hat,
        z_e,
        q,
        soft,
        recon,
    }
}

/// The training loss and its explicit rate term (when `--rate` is not `none`).
pub struct Loss {
    pub total: Tensor<1>,
    pub rate: Option<Tensor<1>>,
}

/// The loss of eq. 24 for the configured quantizer, plus B * H(p(Z|I), r) (`--rate vdib`) or
/// B * KL(p(Z|I) || r) (`--rate vib`) with p(z|i) = softmax(-d^2 / tau).
pub fn loss(cfg: &RunConfig, model: &VqVae, f: &Forward) -> Loss {
    let commit = f.q.commitment_loss.clone().mul_scalar(cfg.beta);
    let base = match cfg.quantizer {
        QuantizerKind::Vq => f.recon.clone() + f.q.codebook_loss.clone() + commit,
        QuantizerKind::VqEma | QuantizerKind::SoftEm => f.recon.clone() + commit,
    };
    let rate = match cfg.rate {
        RateKind::None => None,
        kind => {
            let (ce, h) = rate_terms(
                f.z_e.clone(),
                model.codebook.val(),
                cfg.temperature,
                model.log_prior(),
            );
            Some(if kind == RateKind::Vdib { ce } else { ce - h })
        }
    };
    let total = match &rate {
        Some(r) => base + r.clone().mul_scalar(cfg.rate_weight),
        None => base,
    };
    Loss { total, rate }
}

/// A batch of images as a tensor `[B, C, H, W]` in [0, 1].
pub fn batch_tensor(set: &ImageSet, idx: &[usize], device: &Device) -> Tensor<4> {
    let v = set.batch_f32(idx);
    Tensor::from_data(
        TensorData::new(v, [idx.len(), set.channels, set.height, set.width]),
        device,
    )
}

fn host_u32(t: Tensor<1, burn::tensor::Int>) -> Vec<u32> {
    t.into_data()
        .try_into_vec_as::<i64>()
        .expect("int data")
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

/// Metrics over a whole evaluation set.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct EvalMetrics {
    pub images: usize,
    /// Latent vectors per image.
    pub latents: usize,
    /// Mean squared error per pixel, pixels in [0, 1].
    pub mse: f64,
    /// 10 log10(1 / mse), dB.
    pub psnr: f64,
    /// Gaussian decoder NLL per image, nats (sigma from the config).
    pub distortion: f64,
    /// H(Z) of the assigned codes over the whole set, nats (= `assigned.h_z`).
    pub entropy_nats: f64,
    /// exp(H(Z)) of the assigned codes.
    pub perplexity: f64,
    pub codes_used: usize,
    pub dead_codes: usize,
    pub codebook_loss: f64,
    pub commitment_loss: f64,
    /// Information quantities under the model's own posterior: one-hot for vq and vq-ema,
    /// softmax(-d^2 / tau) for soft-em.
    pub assigned: InfoSummary,
    /// Under the soft posterior softmax(-d^2 / tau) of the model's codebook, for every model.
    pub soft: InfoSummary,
    /// L_VDIB and L_VIB per image (eq. 23 and 18) under the assigned posterior, beta = `beta`.
    pub l_vdib: f64,
    pub l_vib: f64,
    /// The same under the soft posterior.
    pub soft_l_vdib: f64,
    pub soft_l_vib: f64,
    pub beta: f64,
    /// Counts of the most probable code of each latent vector.
    pub histogram: Vec<u64>,
}

/// Evaluates `model` (inference mode) on `set` in batches of `batch`. Soft-EM samples are drawn
/// from a fixed seed, so an evaluation is deterministic.
pub fn evaluate(
    cfg: &RunConfig,
    model: &VqVae,
    set: &ImageSet,
    batch: usize,
    device: &Device,
) -> anyhow::Result<EvalMetrics> {
    let model = model.valid();
    let k = model.k();
    let log_r: Vec<f64> = host_f32(model.log_prior())
        .into_iter()
        .map(|v| v as f64)
        .collect();
    let codebook = model.codebook_values();
    let codebook = Codebook::new(&codebook, model.d());
    let mut assigned = InfoAccumulator::new(log_r.clone());
    let mut soft = InfoAccumulator::new(log_r.clone());
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x6576_616c);
    let (mut sse, mut cb, mut cm, mut px, mut vecs) = (0.0f64, 0.0f64, 0.0f64, 0usize, 0usize);
    let idx: Vec<usize> = (0..set.n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_tensor(set, chunk, device);
        let f = forward(cfg, &model, x, &mut rng);
        let n_vec = f.z_e.dims()[0];
        let scalars = host_f32(Tensor::cat(
            vec![f.recon, f.q.codebook_loss, f.q.commitment_loss],
            0,
        ));
        let n_px = chunk.len() * set.image_len();
        sse += scalars[0] as f64 * n_px as f64;
        cb += scalars[1] as f64 * n_vec as f64;
        cm += scalars[2] as f64 * n_vec as f64;
        px += n_px;
        vecs += n_vec;
        // The soft posterior of every model, by the fused kernel: never N x K at once.
        let zv = host_f32(f.z_e.clone());
        let part = soft_assign(
            &zv,
            &codebook,
            &SoftOptions {
                tau: cfg.temperature,
                samples: 0,
                seed: 0,
                log_r: Some(&log_r),
            },
        )
        .info
        .expect("asked for the information quantities");
        soft.merge(&part);
        if cfg.quantizer != QuantizerKind::SoftEm {
            assigned.add_hard(&host_u32(f.q.indices));
        }
    }
    // Soft EM's own posterior is the soft one.
    if cfg.quantizer == QuantizerKind::SoftEm {
        assigned = soft.clone();
    }
    let mse = sse / px.max(1) as f64;
    if !mse.is_finite() {
        anyhow::bail!("evaluation produced a non-finite reconstruction error");
    }
    let images = set.n.max(1);
    let latents = vecs / images;
    let distortion = gaussian_nll(sse / images as f64, set.image_len(), cfg.sigma);
    let (a, s) = (assigned.summary(), soft.summary());
    let (l_vdib, l_vib) = objectives(distortion, &a, cfg.beta, latents);
    let (soft_l_vdib, soft_l_vib) = objectives(distortion, &s, cfg.beta, latents);
    let histogram = assigned.argmax_counts().to_vec();
    Ok(EvalMetrics {
        images: set.n,
        latents,
        mse,
        psnr: 10.0 * (1.0 / mse.max(1e-12)).log10(),
        distortion,
        entropy_nats: a.h_z,
        perplexity: a.perplexity,
        codes_used: a.codes_used,
        dead_codes: k - a.codes_used,
        codebook_loss: cb / vecs.max(1) as f64,
        commitment_loss: cm / vecs.max(1) as f64,
        assigned: a,
        soft: s,
        l_vdib,
        l_vib,
        soft_l_vdib,
        soft_l_vib,
        beta: cfg.beta,
        histogram,
    })
}

/// Reconstructions of the images at `idx`, `[n, c, h, w]` flattened.
pub fn reconstruct(
    cfg: &RunConfig,
    model: &VqVae,
    set: &ImageSet,
    idx: &[usize],
    device: &Device,
) -> Vec<f32> {
    let model = model.valid();
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x6576_616c);
    host_f32(forward(cfg, &model, batch_tensor(set, idx, device), &mut rng).x_hat)
}

/// How a training run is driven.
#[derive(Clone)]
pub struct TrainOptions {
    /// Show a progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
    /// Set (by Ctrl-C) to stop: a checkpoint is saved and training returns.
    pub stop: Arc<AtomicBool>,
    /// Stop after this many optimizer steps in this process (for tests and smoke runs).
    pub max_steps: Option<u64>,
    /// Print the summary table.
    pub print_summary: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            progress: false,
            stop: Arc::new(AtomicBool::new(false)),
            max_steps: None,
            print_summary: false,
        }
    }
}

/// The result of a training run.
#[derive(Debug)]
pub struct TrainOutcome {
    pub run_dir: PathBuf,
    pub step: u64,
    /// False when stopped early (Ctrl-C or `max_steps`); a checkpoint was saved.
    pub completed: bool,
    pub eval: Option<EvalMetrics>,
    pub last_checkpoint: Option<PathBuf>,
}

/// Everything a training loop carries.
struct Run {
    cfg: RunConfig,
    dir: PathBuf,
    device: Device,
    model: VqVae,
    optim: ModuleOptimizer,
    ema: Option<EmaCodebook>,
    state: TrainState,
    log: MetricsLog,
    data: Dataset,
}

impl Run {
    fn save(&self) -> anyhow::Result<PathBuf> {
        checkpoint::save(
            &self.dir,
            &self.cfg,
            &self.model.export(),
            self.ema.as_ref(),
            &self.optim,
            &self.state,
            2,
        )
    }
}

/// Trains a new run in `dir` (which must not already hold a run).
pub fn train_new(
    mut cfg: RunConfig,
    dir: &Path,
    opts: &TrainOptions,
) -> anyhow::Result<TrainOutcome> {
    cfg.validate()?;
    if dir.join("config.json").exists() {
        return Err(InputError::file(
            dir,
            "already holds a run (config.json exists); use --resume to continue it or choose another --out",
        )
        .into());
    }
    let data = load_data(&cfg)?;
    let [c, _, _] = data.image_shape();
    cfg.image_shape = Some(data.image_shape());
    // Record where the data is as an absolute path, so that resume and eval work from any
    // directory (--data-dir overrides it if the data moves).
    cfg.data_dir = cfg.data_dir.map(|d| std::fs::canonicalize(&d).unwrap_or(d));
    let base = device(cfg.device)?;
    let dev = base.clone().autodiff();
    std::fs::create_dir_all(dir)
        .map_err(|e| InputError::file(dir, format!("cannot create run directory: {e}")))?;
    write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&cfg)?.as_bytes(),
    )?;
    let model = new_model(&cfg, c, &dev);
    let ema = (cfg.quantizer != QuantizerKind::Vq).then(|| {
        EmaCodebook::new(
            cfg.codebook_size,
            cfg.code_dim,
            cfg.ema_decay,
            cfg.ema_epsilon,
        )
    });
    let state = TrainState {
        dead_codes: (cfg.dead_code_steps > 0)
            .then(|| DeadCodeTracker::new(cfg.codebook_size, cfg.dead_code_steps, 0)),
        codebook_initialised: cfg.init == CodebookInit::Uniform,
        ..Default::default()
    };
    let optim = AdamConfig::new().with_epsilon(1e-8).init();
    let log = MetricsLog::open(dir, None)?;
    let run = Run {
        cfg,
        dir: dir.to_path_buf(),
        device: dev,
        model,
        optim,
        ema,
        state,
        log,
        data,
    };
    run_loop(run, opts)
}

/// Continues the run in `dir` from its latest checkpoint. `epochs`, when given, replaces the
/// configured number of epochs (to extend a finished run); `data_dir` where the data now lives.
/// The optimizer state is materialised on burn's default device first (the binary pins that to
/// the CPU with `BURN_DEVICE=flex`) and moves to the parameters' device on the next step.
pub fn resume(
    dir: &Path,
    epochs: Option<usize>,
    data_dir: Option<PathBuf>,
    opts: &TrainOptions,
) -> anyhow::Result<TrainOutcome> {
    let ck = checkpoint::load_latest(dir)?;
    let mut cfg = ck.config.clone();
    let changed = epochs.is_some_and(|e| e != cfg.epochs)
        || data_dir
            .as_ref()
            .is_some_and(|d| Some(d) != cfg.data_dir.as_ref());
    if let Some(e) = epochs {
        cfg.epochs = e;
    }
    if data_dir.is_some() {
        cfg.data_dir = data_dir;
    }
    if changed {
        write_atomic(
            &dir.join("config.json"),
            serde_json::to_string_pretty(&cfg)?.as_bytes(),
        )?;
    }
    let data = load_data(&cfg)?;
    let base = device(cfg.device)?;
    let dev = base.autodiff();
    let [c, _, _] = data.image_shape();
    let mut model = new_model(&cfg, c, &dev);
    let st_path = ck.dir.join("model.safetensors");
    model.import(&ck.tensors, &dev, &st_path)?;
    let op = ck.dir.join("optimizer.bpk");
    let optim = AdamConfig::new()
        .with_epsilon(1e-8)
        .init()
        .load(&op)
        .map_err(|e| InputError::file(&op, format!("cannot load optimizer state: {e:?}")))?;
    if cfg.quantizer != QuantizerKind::Vq && ck.ema.is_none() {
        return Err(InputError::file(
            &st_path,
            "checkpoint lacks the EMA state its quantizer needs",
        )
        .into());
    }
    let log = MetricsLog::open(dir, Some(ck.state.step))?;
    let run = Run {
        cfg,
        dir: dir.to_path_buf(),
        device: dev,
        model,
        optim,
        ema: ck.ema,
        state: ck.state,
        log,
        data,
    };
    run_loop(run, opts)
}

fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng =
        StdRng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    idx.shuffle(&mut rng);
    idx
}

fn eval_record(r: &Run, m: &EvalMetrics) -> Record {
    Record {
        kind: "eval".into(),
        step: r.state.step,
        epoch: r.state.epoch,
        wall_time: r.state.wall_time,
        recon_mse: Some(m.mse),
        codebook_loss: Some(m.codebook_loss),
        commitment_loss: Some(m.commitment_loss),
        perplexity: Some(m.perplexity),
        entropy_nats: Some(m.entropy_nats),
        codes_used: Some(m.codes_used),
        dead_codes: Some(m.dead_codes),
        psnr: Some(m.psnr),
        restarts: r.state.dead_codes.as_ref().map(|d| d.restarts),
        h_z_given_i: Some(m.assigned.h_z_given_i),
        mutual_info: Some(m.assigned.mutual_info),
        cross_entropy: Some(m.assigned.cross_entropy),
        kl: Some(m.assigned.kl),
        distortion: Some(m.distortion),
        l_vdib: Some(m.l_vdib),
        l_vib: Some(m.l_vib),
        soft_perplexity: Some(m.soft.perplexity),
        soft_h_z_given_i: Some(m.soft.h_z_given_i),
        soft_mutual_info: Some(m.soft.mutual_info),
        soft_kl: Some(m.soft.kl),
        soft_l_vib: Some(m.soft_l_vib),
        h_z_miller_madow: Some(m.assigned.h_z_miller_madow),
        soft_h_z: Some(m.soft.h_z),
        soft_cross_entropy: Some(m.soft.cross_entropy),
        soft_l_vdib: Some(m.soft_l_vdib),
        ..Default::default()
    }
}

/// Summary rows of an evaluation.
pub fn summary_rows(m: &EvalMetrics, k: usize) -> Vec<(&'static str, String)> {
    vec![
        ("test images", m.images.to_string()),
        ("reconstruction MSE", format!("{:.5}", m.mse)),
        ("PSNR (dB)", format!("{:.2}", m.psnr)),
        ("perplexity exp(H(Z))", format!("{:.2}", m.perplexity)),
        ("H(Z) (nats)", format!("{:.4}", m.entropy_nats)),
        ("codes used", format!("{} / {k}", m.codes_used)),
        ("dead codes", m.dead_codes.to_string()),
        ("codebook loss", format!("{:.5}", m.codebook_loss)),
        ("commitment loss", format!("{:.5}", m.commitment_loss)),
    ]
}

/// Every information quantity of an evaluation, under the assigned and the soft posterior.
pub fn info_rows(m: &EvalMetrics, tau: f64) -> Vec<(String, String, String)> {
    let row = |name: &str, a: f64, s: f64| (name.to_string(), format!("{a:.4}"), format!("{s:.4}"));
    let (a, s) = (&m.assigned, &m.soft);
    vec![
        row("H(Z) plug-in (nats)", a.h_z, s.h_z),
        row(
            "H(Z) Miller-Madow (nats)",
            a.h_z_miller_madow,
            s.h_z_miller_madow,
        ),
        row("perplexity exp(H(Z))", a.perplexity, s.perplexity),
        (
            "codes used".into(),
            a.codes_used.to_string(),
            s.codes_used.to_string(),
        ),
        row("H(Z|I) (nats)", a.h_z_given_i, s.h_z_given_i),
        row("I(I;Z) (nats)", a.mutual_info, s.mutual_info),
        row("H(p(Z|I), r) (nats)", a.cross_entropy, s.cross_entropy),
        row("KL(p(Z|I) || r) (nats)", a.kl, s.kl),
        row("H(Z) (bits)", a.bits().h_z, s.bits().h_z),
        row("H(Z|I) (bits)", a.bits().h_z_given_i, s.bits().h_z_given_i),
        row("I(I;Z) (bits)", a.bits().mutual_info, s.bits().mutual_info),
        row(
            "H(p(Z|I), r) (bits)",
            a.bits().cross_entropy,
            s.bits().cross_entropy,
        ),
        row("KL(p(Z|I) || r) (bits)", a.bits().kl, s.bits().kl),
        row(
            "distortion -log q(x|z) per image",
            m.distortion,
            m.distortion,
        ),
        row("MSE", m.mse, m.mse),
        row(
            &format!("L_VDIB per image (beta {})", m.beta),
            m.l_vdib,
            m.soft_l_vdib,
        ),
        row(
            &format!("L_VIB per image (beta {})", m.beta),
            m.l_vib,
            m.soft_l_vib,
        ),
        (
            "".into(),
            "assigned p(z|i)".into(),
            format!("softmax(-d^2/{tau})"),
        ),
    ]
}

/// What one optimizer step reports.
pub struct StepOutput {
    /// loss, recon, codebook, commitment, and the rate term when there is one.
    pub scalars: Vec<f32>,
    /// The assigned (most probable) code of each latent vector of the batch.
    pub indices: Vec<u32>,
}

/// One optimizer step on the batch `x` (step number `step`, from 1): forward, loss, backward,
/// Adam, then the codebook updates outside the gradient step (EMA / soft-EM M-step, dead-code
/// restarts). A non-finite loss leaves the model untouched and returns the scalars as the error.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    cfg: &RunConfig,
    model: &mut VqVae,
    optim: &mut ModuleOptimizer,
    ema: Option<&mut EmaCodebook>,
    dead_codes: Option<&mut DeadCodeTracker>,
    x: Tensor<4>,
    step: u64,
    device: &Device,
) -> Result<StepOutput, Vec<f32>> {
    let mut ema = ema;
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let f = forward(cfg, model, x, &mut rng);
    let Loss { total: l, rate } = loss(cfg, model, &f);
    let mut parts = vec![
        l.clone().detach(),
        f.recon.clone().detach(),
        f.q.codebook_loss.clone().detach(),
        f.q.commitment_loss.clone().detach(),
    ];
    if let Some(rt) = &rate {
        parts.push(rt.clone().detach());
    }
    let scalars = host_f32(Tensor::cat(parts, 0));
    if scalars.iter().any(|v| !v.is_finite()) {
        return Err(scalars);
    }
    let indices = host_u32(f.q.indices.clone());
    let need_z = ema.is_some() || dead_codes.is_some();
    let z_host = if need_z {
        host_f32(f.z_e.clone().detach())
    } else {
        Vec::new()
    };

    let grads = GradientsParams::from_grads(l.backward(), &*model);
    *model = optim.step(cfg.lr, model.clone(), grads);

    // Codebook state updates outside the gradient step.
    let mut codebook: Option<Vec<f32>> = None;
    if let Some(e) = ema.as_deref_mut() {
        codebook = Some(match &f.soft {
            Some(samples) => e.update_samples(&z_host, samples, cfg.samples),
            None => e.update(&z_host, &indices),
        });
    }
    if let Some(t) = dead_codes {
        t.observe(&indices, step);
        if !t.dead(step).is_empty() {
            let mut cb = codebook.take().unwrap_or_else(|| model.codebook_values());
            t.restart(step, &mut cb, &z_host, cfg.code_dim, ema, &mut rng);
            codebook = Some(cb);
        }
    }
    if let Some(cb) = codebook {
        model.set_codebook(cb, device);
    }
    Ok(StepOutput { scalars, indices })
}

fn run_loop(mut r: Run, opts: &TrainOptions) -> anyhow::Result<TrainOutcome> {
    let n = r.data.train.n;
    let bs = r.cfg.batch_size;
    let batches_per_epoch = n.div_ceil(bs);
    let total_steps = (batches_per_epoch * r.cfg.epochs) as u64;
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(total_steps);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
            )
            .expect("valid template"),
        );
        b.set_position(r.state.step);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let wall0 = r.state.wall_time;
    let mut steps_here = 0u64;
    let mut last_ckpt: Option<PathBuf> = None;
    let mut last_eval: Option<EvalMetrics> = None;
    let mut stopped = false;

    'epochs: while r.state.epoch < r.cfg.epochs {
        let order = epoch_order(n, r.cfg.seed, r.state.epoch);
        let batches: Vec<&[usize]> = order.chunks(bs).collect();
        while r.state.batch_in_epoch < batches.len() {
            if opts.stop.load(Ordering::SeqCst) || opts.max_steps.is_some_and(|m| steps_here >= m) {
                stopped = true;
                break 'epochs;
            }
            let idx = batches[r.state.batch_in_epoch];
            let x = batch_tensor(&r.data.train, idx, &r.device);

            if !r.state.codebook_initialised {
                // k-means++ on the first batch of encoder outputs.
                let z = host_f32(to_vectors(
                    r.model.valid().encoder.forward(x.clone().inner()),
                ));
                let mut rng = StdRng::seed_from_u64(r.cfg.seed ^ 0x6b6d_6561_6e73);
                let centres = kmeans_pp(&z, r.cfg.code_dim, r.cfg.codebook_size, 10, &mut rng);
                if let Some(e) = r.ema.as_mut() {
                    // Start the averages as if each centre had been seen once.
                    e.updates = 1;
                    let a = 1.0 - e.decay;
                    e.count_hidden.iter_mut().for_each(|c| *c = a);
                    e.sum_hidden
                        .iter_mut()
                        .zip(&centres)
                        .for_each(|(s, &v)| *s = a * v as f64);
                }
                r.model.set_codebook(centres, &r.device);
                r.state.codebook_initialised = true;
            }

            let step = r.state.step + 1;
            let out = train_step(
                &r.cfg,
                &mut r.model,
                &mut r.optim,
                r.ema.as_mut(),
                r.state.dead_codes.as_mut(),
                x,
                step,
                &r.device,
            );
            let (scalars, indices) = match out {
                Ok(o) => (o.scalars, o.indices),
                Err(scalars) => {
                    bar.abandon();
                    return Err(NonFiniteError {
                        step,
                        detail: format!(
                            "loss={} recon={} codebook={} commitment={}; training stopped, the last good checkpoint is {}",
                            scalars[0],
                            scalars[1],
                            scalars[2],
                            scalars[3],
                            last_ckpt
                                .as_ref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_else(|| "none (no checkpoint saved yet)".into())
                        ),
                    }
                    .into());
                }
            };

            r.state.step = step;
            r.state.batch_in_epoch += 1;
            r.state.wall_time = wall0 + started.elapsed().as_secs_f64();
            steps_here += 1;

            let mut hist = CodeHistogram::new(r.cfg.codebook_size);
            hist.add(&indices);
            bar.inc(1);
            bar.set_message(format!(
                "epoch {}/{} loss {:.4} recon {:.4} ppl(batch) {:.1}",
                r.state.epoch + 1,
                r.cfg.epochs,
                scalars[0],
                scalars[1],
                hist.perplexity()
            ));
            if step % r.cfg.log_every == 0 || step == 1 {
                r.log.write(&Record {
                    kind: "train".into(),
                    step,
                    epoch: r.state.epoch,
                    wall_time: r.state.wall_time,
                    loss: Some(scalars[0] as f64),
                    recon_mse: Some(scalars[1] as f64),
                    codebook_loss: Some(scalars[2] as f64),
                    commitment_loss: Some(scalars[3] as f64),
                    batch_perplexity: Some(hist.perplexity()),
                    batch_codes_used: Some(hist.used()),
                    restarts: r.state.dead_codes.as_ref().map(|d| d.restarts),
                    rate: scalars.get(4).map(|&v| v as f64),
                    ..Default::default()
                })?;
            }
            if r.cfg.eval_every > 0
                && step % r.cfg.eval_every == 0
                && r.state.batch_in_epoch < batches.len()
            {
                let m = evaluate(
                    &r.cfg,
                    &r.model,
                    &r.data.test,
                    bs.max(256),
                    &r.device.clone().inner(),
                )?;
                let rec = eval_record(&r, &m);
                r.log.write(&rec)?;
            }
            if r.cfg.checkpoint_every > 0 && step % r.cfg.checkpoint_every == 0 {
                r.log.flush()?;
                last_ckpt = Some(r.save()?);
            }
        }
        // End of epoch: evaluate on the test set and checkpoint.
        r.state.epoch += 1;
        r.state.batch_in_epoch = 0;
        let m = evaluate(
            &r.cfg,
            &r.model,
            &r.data.test,
            bs.max(256),
            &r.device.clone().inner(),
        )?;
        let mut rec = eval_record(&r, &m);
        rec.epoch = r.state.epoch - 1;
        r.log.write(&rec)?;
        r.log.flush()?;
        last_ckpt = Some(r.save()?);
        last_eval = Some(m);
    }
    bar.finish_and_clear();
    r.log.flush()?;
    if stopped {
        last_ckpt = Some(r.save()?);
    }
    let completed = !stopped;
    if completed {
        if let Some(m) = &last_eval {
            write_atomic(
                &r.dir.join("eval.json"),
                serde_json::to_string_pretty(m)?.as_bytes(),
            )?;
        }
    }
    if opts.print_summary {
        if let Some(m) = &last_eval {
            let mut rows = summary_rows(m, r.cfg.codebook_size);
            rows.insert(
                0,
                ("quantizer", format!("{:?}", r.cfg.quantizer).to_lowercase()),
            );
            rows.insert(1, ("steps", r.state.step.to_string()));
            rows.insert(
                2,
                ("training time (s)", format!("{:.1}", r.state.wall_time)),
            );
            println!("{}", table(&rows));
        }
        if stopped {
            println!(
                "stopped at step {} (checkpoint saved); continue with: vqib train --resume {}",
                r.state.step,
                r.dir.display()
            );
        }
        println!("run directory: {}", r.dir.display());
    }
    Ok(TrainOutcome {
        run_dir: r.dir,
        step: r.state.step,
        completed,
        eval: last_eval,
        last_checkpoint: last_ckpt,
    })
}

/// Loads a run's latest checkpoint into an inference model, on the run's device (the CPU when
/// that device is not available here). `data_dir` replaces the data directory of the config.
pub fn load_run(
    run: &Path,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<(RunConfig, VqVae, Device)> {
    let ck = checkpoint::load_latest(run)?;
    let mut cfg = ck.config;
    if data_dir.is_some() {
        cfg.data_dir = data_dir;
    }
    let st = ck.dir.join("model.safetensors");
    let c = cfg
        .image_shape
        .map(|s| s[0])
        .ok_or_else(|| InputError::file(&st, "checkpoint config lacks the image shape"))?;
    let dev = device(cfg.device).unwrap_or_else(|e| {
        eprintln!("warning: {e}; using the CPU");
        Device::flex()
    });
    let mut model = new_model(&cfg, c, &dev);
    model.import(&ck.tensors, &dev, &st)?;
    Ok((cfg, model, dev))
}

/// `vqib reconstruct`: writes a PNG grid of the first `n` test images above their
/// reconstructions.
pub fn reconstruct_grid(
    run: &Path,
    out: &Path,
    n: usize,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (cfg, model, dev) = load_run(run, data_dir)?;
    let data = load_data(&cfg)?;
    let n = n.clamp(1, data.test.n);
    let idx: Vec<usize> = (0..n).collect();
    let rec = reconstruct(&cfg, &model, &data.test, &idx, &dev);
    let orig = data.test.batch_f32(&idx);
    let shape = data.image_shape();
    let scale = if shape[1] <= 32 { 3 } else { 1 };
    write_grid(out, &orig, &rec, n, shape, 16, scale)
}

/// `vqib eval`: test-set metrics of a run's latest checkpoint, written to `RUN/eval.json`.
pub fn eval_run(run: &Path, data_dir: Option<PathBuf>) -> anyhow::Result<(RunConfig, EvalMetrics)> {
    let (cfg, model, dev) = load_run(run, data_dir)?;
    let data = load_data(&cfg)?;
    let m = evaluate(&cfg, &model, &data.test, 256, &dev)?;
    write_atomic(
        &run.join("eval.json"),
        serde_json::to_string_pretty(&m)?.as_bytes(),
    )?;
    Ok((cfg, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every parameter that should learn moves in one optimizer step; the EMA codebook does not.
    #[test]
    fn one_step_updates_the_right_parameters() {
        for q in [
            QuantizerKind::Vq,
            QuantizerKind::VqEma,
            QuantizerKind::SoftEm,
        ] {
            let cfg = RunConfig {
                quantizer: q,
                codebook_size: 8,
                code_dim: 4,
                hidden: 8,
                lr: 1e-2,
                ..Default::default()
            };
            let dev = Device::flex().autodiff();
            let model = new_model(&cfg, 1, &dev);
            let before = model.export();
            let data = data::shapes(16, 4, 1);
            let idx: Vec<usize> = (0..16).collect();
            let mut rng = StdRng::seed_from_u64(1);
            let f = forward(
                &cfg,
                &model,
                batch_tensor(&data.train, &idx, &dev),
                &mut rng,
            );
            let l = loss(&cfg, &model, &f).total;
            let mut optim = AdamConfig::new().init();
            let grads = GradientsParams::from_grads(l.backward(), &model);
            let model = optim.step(cfg.lr, model, grads);
            let after = model.export();
            for (name, (_, v0)) in &before {
                let moved = v0.iter().zip(&after[name].1).any(|(a, b)| a != b);
                let should = !(name == "quantizer.codebook" && q != QuantizerKind::Vq)
                    && name != "prior.logits";
                assert_eq!(moved, should, "{q:?}: parameter {name} moved={moved}");
            }
        }
    }

    /// compare trains every quantizer from the same initial weights for a given seed.
    #[test]
    fn same_seed_same_initialisation_across_quantizers() {
        let dev = Device::flex();
        let mk = |q, seed| {
            let cfg = RunConfig {
                quantizer: q,
                seed,
                codebook_size: 8,
                code_dim: 4,
                hidden: 8,
                ..Default::default()
            };
            new_model(&cfg, 1, &dev).export()
        };
        assert_eq!(mk(QuantizerKind::Vq, 1), mk(QuantizerKind::SoftEm, 1));
        assert_eq!(mk(QuantizerKind::VqEma, 1), mk(QuantizerKind::SoftEm, 1));
        assert_ne!(mk(QuantizerKind::Vq, 1), mk(QuantizerKind::Vq, 2));
        // And the same data order.
        assert_eq!(epoch_order(100, 1, 0), epoch_order(100, 1, 0));
        assert_ne!(epoch_order(100, 1, 0), epoch_order(100, 1, 1));
    }

    /// With a rate term and a learned prior, the prior's logits learn, and the rate term reaches
    /// the encoder; the loss grows by B times the reported rate.
    #[test]
    fn rate_term_trains_the_learned_prior() {
        for rate in [RateKind::Vdib, RateKind::Vib] {
            let cfg = RunConfig {
                quantizer: QuantizerKind::VqEma,
                rate,
                rate_weight: 0.5,
                prior: PriorKind::Learned,
                codebook_size: 8,
                code_dim: 4,
                hidden: 8,
                lr: 1e-2,
                ..Default::default()
            };
            let dev = Device::flex().autodiff();
            let model = new_model(&cfg, 1, &dev);
            let data = data::shapes(16, 4, 1);
            let idx: Vec<usize> = (0..16).collect();
            let mut rng = StdRng::seed_from_u64(1);
            let f = forward(
                &cfg,
                &model,
                batch_tensor(&data.train, &idx, &dev),
                &mut rng,
            );
            let l = loss(&cfg, &model, &f);
            let plain = loss(
                &RunConfig {
                    rate: RateKind::None,
                    ..cfg.clone()
                },
                &model,
                &f,
            )
            .total;
            let r = l.rate.clone().unwrap().into_scalar::<f32>();
            let diff = l.total.clone().into_scalar::<f32>() - plain.into_scalar::<f32>();
            assert!(
                (diff - 0.5 * r).abs() < 1e-5,
                "{rate:?}: {diff} vs {}",
                0.5 * r
            );
            if rate == RateKind::Vdib {
                // Uniform logits at the start: H(p, r) = log K.
                assert!((r - (8f32).ln()).abs() < 1e-4, "{r}");
            }
            let before = model.export();
            let grads = GradientsParams::from_grads(l.total.backward(), &model);
            let model = AdamConfig::new().init().step(cfg.lr, model, grads);
            let after = model.export();
            assert_ne!(
                before["prior.logits"].1, after["prior.logits"].1,
                "{rate:?}: prior did not learn"
            );
            assert_eq!(
                before["quantizer.codebook"].1,
                after["quantizer.codebook"].1
            );
        }
    }
}
