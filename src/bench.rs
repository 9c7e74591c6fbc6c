//! Benchmark workloads, shared by `cargo bench` (criterion, `benches/`) and `vqib bench` (one case
//! a process, so that `bench/compare` can read its peak memory beside the PyTorch reference's).
//!
//! Cases, with their analytic flop counts (multiply-add = 2 flops):
//! * `assign`: hard assignment of N vectors to K codewords (distances, argmin, gather of z_q):
//!   2 N K D.
//! * `estep`: the soft-EM E-step (log-softmax over K, m samples a vector) and the expected counts
//!   and sums its M-step averages: 2 N K D.
//! * `train`: one optimizer step (forward, backward, Adam, EMA / M-step) of the model on a batch:
//!   3x the forward convolutions (the backward pass costs two forwards), plus 3x 2 N K D for the
//!   distances.
//! * `eval`: inference and the information quantities over a set of images: the forward
//!   convolutions plus 2 N K D twice (assignment and the soft posterior).

use std::time::Instant;

use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::RunConfig;
use crate::data::ImageSet;
use crate::device::{DeviceKind, device};
use crate::error::InputError;
use crate::kernels::assign::{self, Codebook, SoftOptions};
use crate::model::VqVae;
use crate::quantizer::{Bottleneck, QuantizerKind, sample_statistics};
use crate::train;

/// Latent vectors in the bottleneck cases: a batch of 128 images with 8x8 latents.
pub const N_VECTORS: usize = 8192;
/// Code dimension in the bottleneck cases.
pub const CODE_DIM: usize = 64;
/// Samples a vector in the E-step case (the CLI's default `--samples`).
pub const SAMPLES: usize = 10;

/// `n` values drawn from N(0, 1) (Box-Muller), deterministic in `seed`.
pub fn normal(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.gen_range(1e-12..1.0), rng.r#gen());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

/// Hard assignment: the nearest code of each row of `z` and the gathered codewords z_q.
pub fn assign_case(z: &[f32], cb: &Codebook) -> (Vec<u32>, Vec<f32>) {
    let idx = assign::nearest(z, cb);
    let d = cb.d;
    let mut zq = Vec::with_capacity(z.len());
    for &j in &idx {
        zq.extend_from_slice(&cb.e[j as usize * d..(j as usize + 1) * d]);
    }
    (idx, zq)
}

/// The soft-EM E-step and the expected counts `[K]` and sums `[K*D]` of its samples.
pub fn estep_case(z: &[f32], cb: &Codebook, m: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let s = assign::soft_assign(
        z,
        cb,
        &SoftOptions {
            tau: 1.0,
            samples: m,
            seed,
            log_r: None,
            labels: None,
        },
    );
    sample_statistics(z, &s.samples, m, cb.k, cb.d)
}

/// The two architectures benchmarked: MNIST-sized and CIFAR-10-sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelCase {
    /// 28x28x1, hidden 128, K 512, D 64 (the CLI's MNIST defaults).
    Mnist,
    /// 32x32x3, hidden 256, K 512, D 64 (the CLI's CIFAR-10 defaults).
    Cifar,
}

impl ModelCase {
    /// (channels, height, width, hidden).
    pub fn shape(self) -> (usize, usize, usize, usize) {
        match self {
            ModelCase::Mnist => (1, 28, 28, 128),
            ModelCase::Cifar => (3, 32, 32, 256),
        }
    }

    /// Forward flops of the convolutions for one image (see [`crate::model`] for the layers).
    pub fn forward_flops(self, d: usize) -> f64 {
        let (c, h, w, hid) = self.shape();
        let (h2, w2, h4, w4) = (
            (h / 2) as f64,
            (w / 2) as f64,
            (h / 4) as f64,
            (w / 4) as f64,
        );
        let (c, hid, d) = (c as f64, hid as f64, d as f64);
        let conv = |pixels: f64, cin: f64, cout: f64, taps: f64| 2.0 * pixels * cin * cout * taps;
        let res = 2.0 * (conv(h4 * w4, hid, hid, 9.0) + conv(h4 * w4, hid, hid, 1.0));
        let encoder = conv(h2 * w2, c, hid, 16.0)
            + conv(h4 * w4, hid, hid, 16.0)
            + res
            + conv(h4 * w4, hid, d, 1.0);
        // A transposed conv does the work of the conv it transposes (counted on its input grid).
        let decoder = conv(h4 * w4, d, hid, 9.0)
            + res
            + conv(h4 * w4, hid, hid, 16.0)
            + conv(h2 * w2, hid, c, 16.0);
        encoder + decoder
    }

    /// Latent vectors an image.
    pub fn latents(self) -> usize {
        let (_, h, w, _) = self.shape();
        (h / 4) * (w / 4)
    }

    /// The run configuration of the case. Panics for `batch` 0; `vqib bench` refuses that first
    /// ([`check_args`]).
    pub fn config(self, quantizer: QuantizerKind, batch: usize) -> RunConfig {
        self.try_config(quantizer, batch)
            .expect("benchmark configurations are valid")
    }

    /// [`Self::config`], or why it is not valid.
    fn try_config(self, quantizer: QuantizerKind, batch: usize) -> Result<RunConfig, InputError> {
        let (_, _, _, hidden) = self.shape();
        let mut cfg = RunConfig::default();
        cfg.model.hidden = Some(hidden);
        cfg.quantizer = family_config(quantizer, 512);
        cfg.training.batch_size = Some(batch);
        cfg.resolve()
    }

    /// `n` random images of the case's shape.
    pub fn images(self, n: usize, seed: u64) -> ImageSet {
        let (c, h, w, _) = self.shape();
        let mut rng = StdRng::seed_from_u64(seed);
        ImageSet {
            pixels: (0..n * c * h * w).map(|_| rng.r#gen()).collect(),
            labels: None,
            n,
            channels: c,
            height: h,
            width: w,
        }
    }
}

/// Flops of one training step on `batch` images.
pub fn train_flops(case: ModelCase, batch: usize, k: usize, d: usize) -> f64 {
    let n = (batch * case.latents()) as f64;
    3.0 * (batch as f64 * case.forward_flops(d) + 2.0 * n * k as f64 * d as f64)
}

/// Flops of evaluating `images` images.
pub fn eval_flops(case: ModelCase, images: usize, k: usize, d: usize) -> f64 {
    let n = (images * case.latents()) as f64;
    images as f64 * case.forward_flops(d) + 2.0 * (2.0 * n * k as f64 * d as f64)
}

/// A model, its optimizer and one batch, stepped as the training loop steps them.
pub struct TrainBench {
    pub cfg: RunConfig,
    model: VqVae,
    optim: ModuleOptimizer,
    bottleneck: Bottleneck,
    x: Tensor<4>,
    step: u64,
    pending: train::Pending,
}

impl TrainBench {
    /// `device` is the autodiff device the model trains on.
    pub fn new(case: ModelCase, quantizer: QuantizerKind, batch: usize, device: &Device) -> Self {
        let cfg = case.config(quantizer, batch);
        let (c, h, w, _) = case.shape();
        let bottleneck = Bottleneck::new(&cfg.quantizer);
        let model = train::new_model(&cfg, c, device);
        let set = case.images(batch, 7);
        let idx: Vec<usize> = (0..batch).collect();
        let x = Tensor::from_data(
            TensorData::new(set.batch_f32(&idx), [batch, c, h, w]),
            device,
        );
        Self {
            optim: cfg.training.optimizer().init(),
            cfg,
            model,
            bottleneck,
            x,
            step: 0,
            pending: train::Pending::default(),
        }
    }

    /// One optimizer step as the trainer runs it; returns the loss when `read` (on a GPU a
    /// step that does not read leaves its work queued, as the trainer's non-logging steps do).
    pub fn step(&mut self, read: bool) -> Option<f32> {
        self.step += 1;
        let mode = train::StepMode::on(&self.x.device(), read);
        let out = train::train_step(
            &self.cfg,
            &mut self.model,
            &mut self.optim,
            &mut self.bottleneck,
            self.x.clone(),
            self.step,
            mode,
            &mut self.pending,
        );
        match out {
            Ok(o) => o.scalars.map(|s| s.loss),
            Err(s) => panic!("benchmark loss became non-finite: {s}"),
        }
    }
}

/// A model and a set of images to evaluate.
pub struct EvalBench {
    pub cfg: RunConfig,
    model: VqVae,
    set: ImageSet,
    device: Device,
}

impl EvalBench {
    pub fn new(case: ModelCase, quantizer: QuantizerKind, images: usize, device: &Device) -> Self {
        let cfg = case.config(quantizer, 128);
        let (c, _, _, _) = case.shape();
        Self {
            model: train::new_model(&cfg, c, device),
            cfg,
            set: case.images(images, 8),
            device: device.clone(),
        }
    }

    /// One evaluation of the whole set; returns its MSE.
    pub fn run(&self) -> f64 {
        train::evaluate(&self.cfg, &self.model, &self.set, 256, &self.device)
            .expect("evaluation")
            .mse
    }

    pub fn images(&self) -> usize {
        self.set.n
    }
}

/// What `vqib bench` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchCase {
    /// Hard assignment: distances, argmin, gather (N = 8192, D = 64).
    Assign,
    /// Soft-EM E-step and its expected counts and sums (N = 8192, D = 64, m = 10).
    Estep,
    /// A quantizer's bottleneck (`--quantizer`, a code space of about `--k` codes): its forward
    /// pass and its update after a step, on N = 8192 latent vectors (host path).
    Bottleneck,
    /// One training step (forward, backward, Adam, EMA / M-step).
    Train,
    /// Evaluation: inference and the information quantities.
    Eval,
    /// `vqib compress` of a batch: encoder, nearest code, ANS against the codes' marginal.
    Compress,
    /// `vqib decompress` of a batch: ANS decode, then the hard decode.
    Decompress,
    /// The entropy coder alone: ANS encode and decode of a batch's code maps.
    EntropyCode,
}

/// The `compress` / `decompress` workloads: a model (random weights, as in `eval`), a batch of
/// images, its code maps and an entropy model of their marginal.
pub struct CodecBench {
    model: VqVae,
    quantizer: Box<dyn crate::quantizer::Quantizer>,
    set: ImageSet,
    device: Device,
    entropy: crate::codec::EntropyModel,
    codes: Vec<u32>,
    grid: [usize; 2],
    words: Vec<u32>,
}

impl CodecBench {
    pub fn new(case: ModelCase, images: usize, device: &Device) -> Self {
        let cfg = case.config(QuantizerKind::Vq, 128);
        let (c, _, _, _) = case.shape();
        let model = train::new_model(&cfg, c, device);
        let set = case.images(images, 8);
        let idx: Vec<usize> = (0..set.n).collect();
        let quantizer = crate::quantizer::build(&cfg.quantizer);
        let (codes, grid) =
            model.codes(train::batch_tensor(&set, &idx, device), quantizer.as_ref());
        let mut counts = vec![0.5f64; model.k()];
        codes.iter().for_each(|&c| counts[c as usize] += 1.0);
        let entropy = crate::codec::EntropyModel::new(&counts).expect("a valid prior");
        let words = entropy.encode(&codes).expect("codes below K");
        Self {
            model,
            quantizer,
            set,
            device: device.clone(),
            entropy,
            codes,
            grid,
            words,
        }
    }

    /// Images to code map to payload; returns the payload's length in words.
    pub fn compress(&self) -> usize {
        let idx: Vec<usize> = (0..self.set.n).collect();
        let x = train::batch_tensor(&self.set, &idx, &self.device);
        let (codes, _) = self.model.codes(x, self.quantizer.as_ref());
        self.entropy.encode(&codes).expect("codes below K").len()
    }

    /// Payload to codes to images; returns the first pixel.
    pub fn decompress(&self) -> f32 {
        let codes = self
            .entropy
            .decode(self.words.clone(), self.codes.len())
            .expect("decodes");
        let x = self
            .model
            .decode_codes(&codes, self.quantizer.as_ref(), self.set.n, self.grid);
        crate::quantizer::host_f32(x)[0]
    }

    /// ANS encode and decode of the code maps alone.
    pub fn entropy_code(&self) -> usize {
        let w = self.entropy.encode(&self.codes).expect("codes below K");
        self.entropy
            .decode(w, self.codes.len())
            .expect("decodes")
            .len()
    }

    pub fn images(&self) -> usize {
        self.set.n
    }
}

/// The options of `vqib bench`. [`run_case`] checks the counts first ([`check_args`]): `--k`,
/// `--batch` and `--iters` at least 1, and what `--k` (assign, estep) or `--batch` (the other
/// cases) sizes must fit in the memory available.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum)]
    pub case: BenchCase,
    /// Codebook size (assign, estep).
    #[arg(long, default_value_t = 512)]
    pub k: usize,
    /// Architecture (train, eval).
    #[arg(long, value_enum, default_value = "mnist")]
    pub model: ModelCase,
    /// Quantizer (train, eval).
    #[arg(long, value_enum, default_value = "vq")]
    pub quantizer: QuantizerKind,
    /// Batch size (train) or number of images (eval).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed runs (after the warm-up runs), at least 1.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed runs first (may be 0).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Device (train, eval).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
}

/// (case name, seconds a run, items a run, unit, flops a run).
type Measured = (String, f64, usize, &'static str, f64);

fn bottleneck_case(b: &BenchArgs) -> Measured {
    let z = normal(N_VECTORS * CODE_DIM, 1);
    let e = normal(b.k * CODE_DIM, 2);
    let cb = Codebook::new(&e, CODE_DIM);
    let flops = 2.0 * (N_VECTORS * b.k * CODE_DIM) as f64;
    let (name, secs) = if b.case == BenchCase::Assign {
        let secs = time_it(b.warmup, b.iters, || {
            std::hint::black_box(assign_case(&z, &cb));
        });
        ("assign", secs)
    } else {
        let mut seed = 0;
        let secs = time_it(b.warmup, b.iters, || {
            seed += 1;
            std::hint::black_box(estep_case(&z, &cb, SAMPLES, seed));
        });
        ("estep", secs)
    };
    (
        format!("{name} K={}", b.k),
        secs,
        N_VECTORS,
        "vectors",
        flops,
    )
}

/// The quantizer `q` at a code space of about `k` codes, as the benchmarks compare them: K = k
/// codewords of dimension [`CODE_DIM`] (vq, vq-ema, soft-em, sq); fsq at the level set of the
/// paper's table nearest log2 k (8,8,8 for 512); lfq at D = log2 k; rvq with 3 stages of about
/// k^(1/3) codewords (8 for 512), so that its tuples number about k.
pub fn family_config(q: QuantizerKind, k: usize) -> crate::config::QuantizerConfig {
    use crate::quantizer::config::FSQ_LEVEL_SETS;
    let mut c = crate::config::QuantizerConfig {
        codebook_size: Some(k),
        code_dim: Some(CODE_DIM),
        ..Default::default()
    }
    .for_kind(q);
    let bits = (k.max(2) as f64).log2().round() as u32;
    match q {
        QuantizerKind::Fsq => {
            c.levels = Some(if k == 512 {
                vec![8, 8, 8]
            } else {
                let (_, l) = FSQ_LEVEL_SETS
                    .iter()
                    .min_by_key(|(b, _)| b.abs_diff(bits))
                    .expect("a level set");
                l.to_vec()
            });
        }
        QuantizerKind::Lfq => {
            (c.codebook_size, c.code_dim) = (None, Some(bits.clamp(1, 24) as usize));
        }
        QuantizerKind::Rvq => {
            c.stages = Some(3);
            c.codebook_size = Some(((k as f64).cbrt().round() as usize).max(2));
        }
        _ => {}
    }
    c
}

/// A quantizer's bottleneck on N = 8192 random latents, on the host ([`BenchCase::Bottleneck`],
/// `cargo bench`'s `quantizer/*`): [`QuantizerBench::run`] is its forward pass and its update
/// after a step (EMA, M-step).
pub struct QuantizerBench {
    pub cfg: crate::config::QuantizerConfig,
    z: Vec<f32>,
    zt: burn::tensor::Tensor<2>,
    params: crate::quantizer::QuantizerParams,
    bottleneck: crate::quantizer::Bottleneck,
    codebook: Vec<f32>,
    rng: StdRng,
    step: u64,
}

impl QuantizerBench {
    /// `q` at a code space of about `k` codes ([`family_config`]).
    pub fn new(q: QuantizerKind, k: usize) -> Self {
        use crate::quantizer::{Bottleneck, QuantizerParams, params::ParamShapes};
        let cfg = family_config(q, k);
        let d = cfg.code_dim();
        let dev = burn::tensor::Device::flex();
        let z = normal(N_VECTORS * d, 1);
        let zt = burn::tensor::Tensor::<2>::from_data(
            burn::tensor::TensorData::new(z.clone(), [N_VECTORS, d]),
            &dev,
        );
        let params = QuantizerParams::init(ParamShapes::of(&cfg), cfg.stages(), &dev);
        let codebook = params.codebook_values();
        Self {
            bottleneck: Bottleneck::new(&cfg),
            cfg,
            z,
            zt,
            params,
            codebook,
            rng: StdRng::seed_from_u64(3),
            step: 0,
        }
    }

    /// One forward pass and update; returns the number of codes read back.
    pub fn run(&mut self) -> usize {
        use crate::quantizer::Context;
        self.step += 1;
        let ctx = Context {
            rng: &mut self.rng,
            resident: false,
            step: Some(self.step),
        };
        let out = self
            .bottleneck
            .quantizer
            .forward(self.zt.clone(), &self.params, ctx);
        let codes = crate::device::host_u32(out.indices.clone());
        let mut r = StdRng::seed_from_u64(self.step);
        let codebook = &self.codebook;
        std::hint::black_box(self.bottleneck.after_step(
            &self.z,
            &codes,
            out.samples.as_deref(),
            self.step,
            &mut r,
            || codebook.clone(),
        ));
        std::hint::black_box(out.z_st);
        codes.len()
    }

    /// The distance work of the quantizers that search a codebook (2 N K D a stage); fsq and
    /// lfq search nothing.
    pub fn flops(&self) -> f64 {
        let c = &self.cfg;
        if c.has_codebook() {
            2.0 * (N_VECTORS * c.codebook_size() * c.stages() * c.code_dim()) as f64
        } else {
            0.0
        }
    }
}

/// [`BenchCase::Bottleneck`].
fn quantizer_case(b: &BenchArgs) -> Measured {
    let mut t = QuantizerBench::new(b.quantizer, b.k);
    let secs = time_it(b.warmup, b.iters, || {
        std::hint::black_box(t.run());
    });
    let space = t.cfg.code_space();
    (
        format!(
            "bottleneck {} K={}^{}",
            b.quantizer.name(),
            space.size,
            space.stages
        ),
        secs,
        N_VECTORS,
        "vectors",
        t.flops(),
    )
}

fn model_case(b: &BenchArgs) -> anyhow::Result<Measured> {
    let m = format!("{:?}", b.model).to_lowercase();
    let q = b.quantizer.name();
    if b.case == BenchCase::Train {
        let dev = device(b.device)?.autodiff();
        let mut t = TrainBench::new(b.model, b.quantizer, b.batch, &dev);
        // Reads as the trainer at its default --log-every 10, and at the end of the warm-up and
        // of the timed steps, so that the time covers the queued work.
        let (mut i, end) = (0, b.warmup + b.iters.max(1));
        let secs = time_it(b.warmup, b.iters, || {
            i += 1;
            std::hint::black_box(t.step(i == b.warmup || i == end || i % 10 == 0));
        });
        let flops = train_flops(b.model, b.batch, t.cfg.quantizer.codebook_size(), CODE_DIM);
        return Ok((format!("train {m} {q}"), secs, b.batch, "images", flops));
    }
    let dev = device(b.device)?;
    if matches!(
        b.case,
        BenchCase::Compress | BenchCase::Decompress | BenchCase::EntropyCode
    ) {
        let t = CodecBench::new(b.model, b.batch, &dev);
        let secs = time_it(b.warmup, b.iters, || match b.case {
            BenchCase::Compress => drop(std::hint::black_box(t.compress())),
            BenchCase::Decompress => drop(std::hint::black_box(t.decompress())),
            _ => drop(std::hint::black_box(t.entropy_code())),
        });
        let name = format!("{:?}", b.case).to_lowercase();
        return Ok((format!("{name} {m}"), secs, t.images(), "images", 0.0));
    }
    let t = EvalBench::new(b.model, b.quantizer, b.batch, &dev);
    let secs = time_it(b.warmup, b.iters, || {
        std::hint::black_box(t.run());
    });
    let flops = eval_flops(
        b.model,
        t.images(),
        t.cfg.quantizer.codebook_size(),
        CODE_DIM,
    );
    Ok((format!("eval {m} {q}"), secs, t.images(), "images", flops))
}

/// Refuses, naming the flag, a count of `b` that is 0 (`--k`, `--batch`, `--iters`; `--warmup`
/// may be 0) or that sizes more memory than the machine has (the estimate of `memory_needed`, against
/// [`crate::device::available_memory`]; where that is unknown, more than an allocation can
/// hold).
pub fn check_args(b: &BenchArgs) -> Result<(), InputError> {
    for (flag, value) in [("--k", b.k), ("--batch", b.batch), ("--iters", b.iters)] {
        if value == 0 {
            return Err(InputError::config(format!(
                "{flag} must be at least 1 (got 0)"
            )));
        }
    }
    let (flag, value, need) = memory_needed(b)?;
    let have = crate::device::available_memory().map(|m| m as f64);
    if need > have.unwrap_or(isize::MAX as f64) {
        const GIB: f64 = (1u64 << 30) as f64;
        let have = have.map_or("an allocation can hold".to_string(), |h| {
            format!("{:.1} GiB are available", h / GIB)
        });
        return Err(InputError::config(format!(
            "{flag} {value} needs about {:.1} GiB of memory, but {have}; use a smaller {flag}",
            need / GIB
        )));
    }
    Ok(())
}

/// The flag whose count sizes the case's memory, its value, and about how many bytes the case
/// holds: for `assign` and `estep` the codebook, its norms, the E-step's sums and counts and a
/// row of distances a thread; for the model cases [`RunConfig::memory_needed`] of the images
/// (`train`: a batch of them; `eval`: all of them, evaluated 256 at a time; the codecs: all of
/// them in one batch, with their code maps).
fn memory_needed(b: &BenchArgs) -> Result<(&'static str, usize, f64), InputError> {
    let sum = |parts: Vec<(&str, f64)>| parts.iter().map(|p| p.1).sum::<f64>();
    let (c, h, w, _) = b.model.shape();
    let images = b.batch as f64;
    let need = match b.case {
        BenchCase::Assign | BenchCase::Estep | BenchCase::Bottleneck => {
            let threads = rayon::current_num_threads() as f64;
            let per_code = (CODE_DIM * (4 + 8) + 4 + 8) as f64 + 4.0 * threads;
            return Ok(("--k", b.k, b.k as f64 * per_code));
        }
        BenchCase::Train => sum(b
            .model
            .try_config(b.quantizer, b.batch)?
            .memory_needed([c, h, w], b.batch)),
        BenchCase::Eval => {
            let cfg = b.model.try_config(b.quantizer, 256)?;
            sum(cfg.memory_needed([c, h, w], b.batch)) + 8.0 * images
        }
        BenchCase::Compress | BenchCase::Decompress | BenchCase::EntropyCode => {
            let cfg = b.model.try_config(QuantizerKind::Vq, b.batch)?;
            sum(cfg.memory_needed([c, h, w], b.batch)) + 16.0 * images * b.model.latents() as f64
        }
    };
    Ok(("--batch", b.batch, need))
}

/// Measures one case in this process: the JSON line `vqib bench` prints (seconds a run, items a
/// second, achieved GFLOP/s, peak and starting resident memory). Arguments [`check_args`]
/// refuses are an [`InputError`].
pub fn run_case(b: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    check_args(b)?;
    let (rss0, _) = rss_mib();
    let threads = rayon::current_num_threads();
    let (name, secs, items, unit, flops) = match b.case {
        BenchCase::Assign | BenchCase::Estep => bottleneck_case(b),
        BenchCase::Bottleneck => quantizer_case(b),
        _ => model_case(b)?,
    };
    let (_, peak) = rss_mib();
    Ok(serde_json::json!({
        "impl": "vqib",
        "case": name,
        "threads": threads,
        "secs_per_run": secs,
        "items_per_s": items as f64 / secs,
        "unit": unit,
        "gflops": flops / secs / 1e9,
        "peak_rss_mib": peak,
        "base_rss_mib": rss0,
        "kernels": kernel_families(),
    }))
}

/// The instruction-set family of the CPU kernels this process runs, picked at run time the way
/// the kernels pick them: `gemm` is the gemm crate's (`avx512f` where the CPU has AVX-512F, as its
/// `x86-v4` feature is on; else `fma`; else `scalar`), `assign` is `kernels::assign`'s distance,
/// argmin and softmax rows (`avx2+fma`, else `generic`), `conv` the forward convolution of the
/// models' wide layers ([`crate::kernels::conv::forward_family`]). Other architectures report
/// `generic`.
pub fn kernel_families() -> serde_json::Value {
    #[cfg(target_arch = "x86_64")]
    let gemm = if std::arch::is_x86_feature_detected!("avx512f") {
        "avx512f"
    } else if std::arch::is_x86_feature_detected!("fma") {
        "fma"
    } else {
        "scalar"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let gemm = "generic";
    let assign = if crate::kernels::assign::rows_use_avx2() {
        "avx2+fma"
    } else {
        "generic"
    };
    let conv = crate::kernels::conv::forward_family();
    serde_json::json!({ "gemm": gemm, "assign": assign, "conv": conv })
}

/// Resident set size of this process and its high-water mark, MiB (Linux; zeros elsewhere).
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs `f` `warmup` times, then `iters` times; returns the mean seconds a run.
pub fn time_it(warmup: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters.max(1) {
        f();
    }
    t.elapsed().as_secs_f64() / iters.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analytic count equals 2 x (weights of each conv) x (the grid it slides over), read off
    /// the model's own parameter shapes.
    #[test]
    fn forward_flops_match_the_parameter_shapes() {
        let dev = Device::flex();
        for case in [ModelCase::Mnist, ModelCase::Cifar] {
            let (c, h, w, hid) = case.shape();
            let model = VqVae::new(c, hid, 16, CODE_DIM, &dev);
            let (g2, g4) = ((h / 2 * w / 2) as f64, (h / 4 * w / 4) as f64);
            let mut total = 0.0;
            for (name, (shape, _)) in model.export() {
                if !name.ends_with(".weight") {
                    continue;
                }
                let grid =
                    if name.starts_with("encoder.conv1") || name.starts_with("decoder.deconv2") {
                        g2
                    } else {
                        g4
                    };
                total += 2.0 * shape.iter().product::<usize>() as f64 * grid;
            }
            let got = case.forward_flops(CODE_DIM);
            assert!(
                (got - total).abs() < 1e-6 * total,
                "{case:?}: {got} vs {total}"
            );
        }
    }

    /// The training-step workload learns: repeated steps on its batch lower the loss.
    #[test]
    fn train_bench_steps_lower_the_loss() {
        let dev = Device::flex().autodiff();
        let mut t = TrainBench::new(ModelCase::Mnist, QuantizerKind::SoftEm, 4, &dev);
        t.cfg.training.lr = Some(1e-3);
        let first = t.step(true).unwrap();
        let mut last = first;
        for _ in 0..8 {
            last = t.step(true).unwrap();
        }
        assert!(last.is_finite() && last < first, "loss {first} -> {last}");
    }

    fn args(case: BenchCase) -> BenchArgs {
        BenchArgs {
            case,
            k: 512,
            model: ModelCase::Mnist,
            quantizer: QuantizerKind::Vq,
            batch: 128,
            iters: 5,
            warmup: 0,
            device: DeviceKind::Cpu,
        }
    }

    /// Zero counts and counts that would not fit in memory are refused, naming the flag; the
    /// defaults pass, and a count a case does not use is not held against it.
    #[test]
    fn bench_counts_are_checked_naming_the_flag() {
        let all = [
            BenchCase::Assign,
            BenchCase::Estep,
            BenchCase::Train,
            BenchCase::Eval,
            BenchCase::Compress,
            BenchCase::Decompress,
            BenchCase::EntropyCode,
        ];
        for case in all {
            check_args(&args(case)).unwrap();
            for (flag, set) in [
                ("--k", (|b: &mut BenchArgs| b.k = 0) as fn(&mut BenchArgs)),
                ("--batch", |b| b.batch = 0),
                ("--iters", |b| b.iters = 0),
            ] {
                let mut b = args(case);
                set(&mut b);
                let e = check_args(&b).unwrap_err().to_string();
                assert!(
                    e.contains(flag) && e.contains("at least 1"),
                    "{case:?}: {e}"
                );
            }
            let uses_k = matches!(case, BenchCase::Assign | BenchCase::Estep);
            for (flag, huge, used) in [
                (
                    "--k",
                    BenchArgs {
                        k: usize::MAX / 2,
                        ..args(case)
                    },
                    uses_k,
                ),
                (
                    "--batch",
                    BenchArgs {
                        batch: usize::MAX / 2,
                        ..args(case)
                    },
                    !uses_k,
                ),
            ] {
                match check_args(&huge) {
                    Err(e) => {
                        let e = e.to_string();
                        assert!(used, "{case:?}: {flag} is not used, yet: {e}");
                        assert!(e.contains(flag) && e.contains("GiB"), "{case:?}: {e}");
                    }
                    Ok(()) => assert!(!used, "{case:?}: a huge {flag} passed"),
                }
            }
        }
    }

    #[test]
    fn estep_statistics_count_every_sample() {
        let z = normal(100 * 8, 3);
        let e = normal(32 * 8, 4);
        let cb = Codebook::new(&e, 8);
        let (counts, sums) = estep_case(&z, &cb, 5, 1);
        assert!((counts.iter().sum::<f64>() - 100.0).abs() < 1e-9);
        // The sums add up to the sum of the rows (each row's samples weigh 1/m each).
        for j in 0..8 {
            let want: f64 = z.chunks(8).map(|r| r[j] as f64).sum();
            let got: f64 = (0..32).map(|c| sums[c * 8 + j]).sum();
            assert!((got - want).abs() < 1e-4, "dim {j}: {got} vs {want}");
        }
        let (idx, zq) = assign_case(&z, &cb);
        assert_eq!(idx.len(), 100);
        assert_eq!(&zq[..8], &e[idx[0] as usize * 8..idx[0] as usize * 8 + 8]);
    }
}
