//! Evaluation over a whole data set: reconstruction error, the Gaussian distortion, and every
//! information quantity of [`crate::info`] under the model's own posterior (one-hot for hard
//! quantizers, softmax(-d^2 / tau) for soft EM) and under the common soft posterior
//! softmax(-d^2 / tau) of its codebook; the objectives L_VDIB and L_VIB (eq. 23, 18) under both.
//! What reads a saved run (`vqib eval`, `vqib reconstruct`) is [`super::saved`].
//!
//! Two distortions: [`evaluate`]'s `distortion` is the *training-time* one, the decoder applied to
//! what the quantizer gives it (for soft EM the mean of m sampled codewords); [`expectations`]
//! estimates the seed's, an expectation over the posterior ([`crate::distortion`]), and the
//! objectives with it, under the model's own posterior and the common soft one, and with the
//! tightest prior r = p(z) (eq. 14-17, where the KL term is I(I;Z)). Where the data carry labels,
//! I(Z;Y) under both posteriors ([`crate::info::Relevance`]).

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::config::RunConfig;
use crate::data::ImageSet;
use crate::device::{host_f32, host_u32, index_tensor, on_host};
use crate::distortion::{Estimate, ExpectedDistortion, draw_code_maps};
use crate::error::NonFiniteError;
use crate::info::counts::SparseCounts;
use crate::info::device as info_device;
use crate::info::{InfoAccumulator, InfoSummary, Relevance, gaussian_nll, objectives};
use crate::kernels::assign::{Codebook, SoftOptions, soft_assign};
use crate::model::VqVae;
use crate::quantizer::{self, Context, Posterior};

/// A batch of images as a tensor `[B, C, H, W]` in [0, 1].
pub fn batch_tensor(set: &ImageSet, idx: &[usize], device: &Device) -> Tensor<4> {
    let v = set.batch_f32(idx);
    Tensor::from_data(
        TensorData::new(v, [idx.len(), set.channels, set.height, set.width]),
        device,
    )
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
    /// Counts of the most probable code of each latent vector: by code where the code space is
    /// one codebook of at most 2^16 codes, else the counts of the codes (S-tuples) that occur,
    /// largest first.
    pub histogram: Vec<u64>,
    /// Residual VQ: H(Z_s) of each stage's codes, nats (`assigned` holds the joint H(Z_1..Z_S)
    /// of the tuple).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_entropies: Option<Vec<f64>>,
    /// I(Z;Y) of the codes under the model's own posterior and under the soft posterior, where
    /// the data carry labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevance: Option<Relevance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_relevance: Option<Relevance>,
    /// The seed's estimators with the expectation distortion ([`expectations`]): made for `vqib
    /// eval` and a finished run's `eval.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Expected>,
    /// The test split's code maps entropy-coded against the run's coding prior
    /// ([`crate::codec`]): made for `vqib eval` and a finished run's `eval.json`, not for the
    /// evaluations during training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coded: Option<crate::codec::CodedRate>,
    /// The checkpoint step this is the final evaluation of (`eval.json`): a run is finished when
    /// its latest checkpoint is at the configured end and `eval.json` is of that step
    /// ([`crate::run::RunDir::is_finished`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
}

/// The objectives with the seed's distortion, an expectation over the posterior, estimated from
/// `samples` code maps an image ([`crate::distortion`]); nats per image.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Expected {
    /// Code maps drawn per image (S, `--eval-samples`).
    pub samples: usize,
    /// -E_{z ~ p(Z|I)} log q(x|z) under the model's own posterior (for vq and vq-ema one-hot: the
    /// hard distortion, standard error 0).
    pub distortion: Estimate,
    /// The expected squared error per pixel under the own posterior.
    pub mse: Estimate,
    /// The same under the soft posterior softmax(-d^2 / tau), for every model.
    pub soft_distortion: Estimate,
    pub soft_mse: Estimate,
    /// distortion + beta L H(p(Z|I), r) (eq. 23) and + beta L KL(p(Z|I) || r) (eq. 18), own
    /// posterior.
    pub l_vdib: f64,
    pub l_vib: f64,
    /// The same under the soft posterior.
    pub soft_l_vdib: f64,
    pub soft_l_vib: f64,
    /// With the tightest prior, r = the aggregate marginal p(z) (eq. 14-17): the KL term is then
    /// I(I;Z), so L = distortion + beta L I(I;Z). Own and soft posterior.
    pub l_marginal: f64,
    pub soft_l_marginal: f64,
}

/// Sums over the batches of an evaluation.
#[derive(Default)]
struct Sums {
    sse: f64,
    codebook: f64,
    commitment: f64,
    pixels: usize,
    vectors: usize,
}

/// The random stream of an evaluation: soft-EM samples are drawn from a fixed seed, so an
/// evaluation is deterministic.
pub(super) fn eval_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x6576_616c)
}

/// The information quantities of softmax(-d^2 / tau) over the rows of `z`, by the fused kernel:
/// never N x K at once.
fn soft_info(
    z: &[f32],
    codebook: &Codebook,
    tau: f64,
    log_r: &[f64],
    labels: Option<(&[u32], usize)>,
) -> InfoAccumulator {
    let opts = SoftOptions {
        tau,
        samples: 0,
        seed: 0,
        log_r: Some(log_r),
        labels,
    };
    soft_assign(z, codebook, &opts)
        .info
        .expect("asked for the information quantities")
}

/// Evaluates `model` (inference mode) on `set` in batches of `batch`: on the CPU with the host
/// kernels, on a GPU streamed on the device ([`evaluate_on`]).
pub fn evaluate(
    cfg: &RunConfig,
    model: &VqVae,
    set: &ImageSet,
    batch: usize,
    device: &Device,
) -> anyhow::Result<EvalMetrics> {
    evaluate_on(cfg, model, set, batch, device, !on_host(device))
}

/// [`evaluate`], `resident`: every batch's sums (squared errors, loss terms, the information
/// quantities of [`crate::info::device`]) stay on the device and are read back once, at the end.
/// The device stream covers the quantizers with one codebook of at most [`DENSE_CODES`] codes
/// ([`dense_codebook`]) whose own posterior is hard or soft at the common temperature; the others
/// are measured on the host (z_e read batch by batch).
pub fn evaluate_on(
    cfg: &RunConfig,
    model: &VqVae,
    set: &ImageSet,
    batch: usize,
    device: &Device,
    resident: bool,
) -> anyhow::Result<EvalMetrics> {
    let model = model.valid();
    let q = quantizer::build(&cfg.quantizer);
    let own_soft = q.posterior() == Posterior::Soft;
    let (tau, tau_own) = (
        cfg.quantizer.temperature,
        q.soft_temperature(&model.quantizer),
    );
    // The device stream measures an own soft posterior at the common temperature only (soft
    // EM's; sq's has its own, 2 sigma^2).
    if resident && dense_codebook(cfg) && (!own_soft || tau_own == tau) {
        return evaluate_resident(cfg, &model, set, batch, device);
    }
    let grid = SoftGrid::of(cfg, &model, q.as_ref());
    let classes = set.classes();
    let with_classes = |acc: InfoAccumulator| match classes {
        Some(c) => acc.with_classes(c),
        None => acc,
    };
    let grid_log_r = grid.as_ref().map(|g| g.log_r.clone());
    let mut soft = grid_log_r
        .clone()
        .map(|l| with_classes(InfoAccumulator::new(l)));
    // The model's own posterior: soft (over its codebook, at its temperature), or hard, dense
    // over K when that is small, else counted in a map.
    let mut own = grid_log_r
        .clone()
        .filter(|_| own_soft && tau_own != tau)
        .map(|l| with_classes(InfoAccumulator::new(l)));
    let space = cfg.quantizer.code_space();
    let dense = dense_codebook(cfg);
    let log_r_full: Vec<f64> = host_f32(model.log_prior(space.stages))
        .into_iter()
        .map(f64::from)
        .collect();
    let mut hard_dense =
        (!own_soft && dense).then(|| with_classes(InfoAccumulator::new(log_r_full.clone())));
    let learned = cfg.rate.prior != quantizer::PriorKind::Uniform;
    let mut hard_sparse = (!own_soft && !dense).then(|| HardCodes::new(space, classes, learned));
    let mut rng = eval_rng(cfg.training.seed);
    let mut s = Sums::default();
    let idx: Vec<usize> = (0..set.n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_tensor(set, chunk, device);
        let ctx = Context {
            rng: &mut rng,
            resident: false,
            step: None,
        };
        let f = model.forward(x.clone(), q.as_ref(), ctx);
        let n_vec = f.z_e.dims()[0];
        let recon = (f.x_hat - x).square().mean();
        let v = host_f32(Tensor::cat(
            vec![recon, f.q.codebook_loss, f.q.commitment_loss],
            0,
        ));
        let n_px = chunk.len() * set.image_len();
        s.sse += v[0] as f64 * n_px as f64;
        s.codebook += v[1] as f64 * n_vec as f64;
        s.commitment += v[2] as f64 * n_vec as f64;
        s.pixels += n_px;
        s.vectors += n_vec;
        let z = host_f32(f.z_e);
        // The soft posterior of every model, with the joint of codes and labels.
        let labels = set.vector_labels(chunk, n_vec / chunk.len());
        let labels = labels.as_deref().zip(classes);
        if let (Some(g), Some(acc)) = (&grid, soft.as_mut()) {
            acc.merge(&soft_info(&z, &g.codebook(), tau, &g.log_r, labels));
        }
        if let (Some(g), Some(acc)) = (&grid, own.as_mut()) {
            acc.merge(&soft_info(&z, &g.codebook(), tau_own, &g.log_r, labels));
        }
        if let Some(acc) = hard_dense.as_mut() {
            acc.add_hard(&host_u32(f.q.indices), labels.map(|(l, _)| l));
        }
        if let Some(counts) = hard_sparse.as_mut() {
            let codes = q.codes(&z, &model.quantizer);
            counts.add(&codes, labels.map(|(l, _)| l), &log_r_full, learned);
        }
    }
    let assigned = match (hard_dense, hard_sparse, own, &soft) {
        (Some(acc), ..) => Info::of(&acc),
        (_, Some(counts), ..) => counts.info(),
        (_, _, Some(acc), _) => Info::of(&acc),
        (_, _, None, Some(acc)) => Info::of(acc),
        _ => anyhow::bail!("no posterior to measure for --quantizer {}", q.kind()),
    };
    // Without a soft grid (a code space too large to list) the soft columns repeat the own
    // posterior's figures.
    let soft = soft.as_ref().map_or_else(|| assigned.clone(), Info::of);
    summarise(cfg, set, space.tuples(), &s, assigned, soft)
}

/// The most codes a dense accumulator (and the device stream) holds: above it, hard codes are
/// counted in a map ([`HardCounts`]).
pub const DENSE_CODES: usize = 1 << 16;

/// The most codewords a soft posterior over an implicit grid or residual tuples is listed for
/// (every latent's distances to all of them are computed).
pub const SOFT_GRID_CODES: f64 = 4096.0;

/// Whether the quantizer's codes are the rows of one codebook of at most [`DENSE_CODES`] codes
/// (vq, vq-ema, soft-em, sq).
pub fn dense_codebook(cfg: &RunConfig) -> bool {
    let q = &cfg.quantizer;
    q.has_codebook() && q.stages() == 1 && q.codebook_size() <= DENSE_CODES
}

/// The codewords the soft posterior softmax(-||z_e - c||^2 / tau) is measured over: the
/// quantizer's codebook, or, for an implicit grid (fsq, lfq) and residual tuples, the codeword
/// of every code when there are at most [`SOFT_GRID_CODES`]; None when there are more.
struct SoftGrid {
    values: Vec<f32>,
    d: usize,
    /// Residual stages: row t of the grid is the tuple of t's mixed-radix digits.
    stages: usize,
    k: usize,
    /// log r over the grid's rows: the model's prior for its own codebook, else uniform.
    log_r: Vec<f64>,
}

impl SoftGrid {
    fn of(cfg: &RunConfig, model: &VqVae, q: &dyn quantizer::Quantizer) -> Option<Self> {
        let space = cfg.quantizer.code_space();
        let d = model.d();
        let (k, stages) = (space.size as usize, space.stages);
        if cfg.quantizer.has_codebook() && stages == 1 {
            let log_r = host_f32(model.log_prior(1))
                .into_iter()
                .map(f64::from)
                .collect();
            return Some(Self {
                values: model.codebook_values(),
                d,
                stages,
                k,
                log_r,
            });
        }
        let rows = space.tuples();
        if rows > SOFT_GRID_CODES {
            return None;
        }
        let rows = rows as usize;
        let mut g = Self {
            values: Vec::new(),
            d,
            stages,
            k,
            log_r: vec![-(rows as f64).ln(); rows],
        };
        let all: Vec<u32> = (0..rows as u32).collect();
        g.values = q.codewords(&g.to_codes(&all), &model.quantizer);
        Some(g)
    }

    fn codebook(&self) -> Codebook<'_> {
        Codebook::new(&self.values, self.d)
    }

    /// The quantizer's codes of grid rows: the same numbers for one stage; for S stages row t's
    /// digits t_s in base K as the rows sK + t_s of the stacked codebooks.
    fn to_codes(&self, rows: &[u32]) -> Vec<u32> {
        if self.stages == 1 {
            return rows.to_vec();
        }
        let mut out = Vec::with_capacity(rows.len() * self.stages);
        for &t in rows {
            let mut t = t as usize;
            for s in 0..self.stages {
                out.push((s * self.k + t % self.k) as u32);
                t /= self.k;
            }
        }
        out
    }
}

/// The information figures of one posterior over a data set.
#[derive(Clone, Debug)]
struct Info {
    summary: InfoSummary,
    relevance: Option<Relevance>,
    histogram: Vec<u64>,
    stage_entropies: Option<Vec<f64>>,
}

impl Info {
    fn of(acc: &InfoAccumulator) -> Self {
        Self {
            summary: acc.summary(),
            relevance: acc.relevance(),
            histogram: acc.argmax_counts().to_vec(),
            stage_entropies: None,
        }
    }
}

/// Hard codes counted in maps ([`SparseCounts`]; memory follows the codes that occur, not K):
/// a position's code, or its S-tuple of stage codes, and each stage's codes apart.
struct HardCodes {
    stages: usize,
    classes: usize,
    /// S log K when the prior is uniform (the cross entropy of every point), else 0.
    uniform_ce: f64,
    joint: SparseCounts<Vec<u32>>,
    per_stage: Vec<SparseCounts<u32>>,
}

impl HardCodes {
    fn new(space: quantizer::CodeSpace, classes: Option<usize>, learned: bool) -> Self {
        let labelled = classes.is_some();
        let stages = space.stages;
        Self {
            stages,
            classes: classes.unwrap_or(0),
            uniform_ce: if learned { 0.0 } else { space.log_size() },
            joint: SparseCounts::new(labelled),
            per_stage: (0..stages).map(|_| SparseCounts::new(false)).collect(),
        }
    }

    /// `codes` `[N*S]`, a label a point; log r of a point is the sum of its stage codes' `log_r`
    /// entries when the prior is `learned`, else uniform (0 here: the uniform prior's cross
    /// entropy is added in [`HardCodes::info`]).
    fn add(&mut self, codes: &[u32], labels: Option<&[u32]>, log_r: &[f64], learned: bool) {
        for (i, t) in codes.chunks_exact(self.stages).enumerate() {
            let lr = if learned {
                t.iter().map(|&c| log_r[c as usize]).sum()
            } else {
                0.0
            };
            self.joint.add(t.to_vec(), labels.map(|l| l[i]), lr);
            for (s, &c) in self.per_stage.iter_mut().zip(t) {
                s.add(c, None, 0.0);
            }
        }
    }

    fn info(&self) -> Info {
        let mut summary = self.joint.summary();
        summary.cross_entropy += self.uniform_ce;
        summary.kl += self.uniform_ce;
        let mut histogram = self.joint.counts();
        histogram.sort_unstable_by(|a, b| b.cmp(a));
        Info {
            summary,
            relevance: self.joint.relevance(self.classes),
            histogram,
            stage_entropies: (self.stages > 1)
                .then(|| self.per_stage.iter().map(|s| s.summary().h_z).collect()),
        }
    }
}

/// [`evaluate_on`] streamed on the device: one read per evaluation.
fn evaluate_resident(
    cfg: &RunConfig,
    model: &VqVae,
    set: &ImageSet,
    batch: usize,
    device: &Device,
) -> anyhow::Result<EvalMetrics> {
    let q = quantizer::build(&cfg.quantizer);
    let own_soft = q.posterior() == Posterior::Soft;
    let (k, classes) = (model.k(), set.classes().unwrap_or(0));
    let log_r = model.log_prior(1);
    let codebook = model.quantizer.codebook();
    let mut rng = eval_rng(cfg.training.seed);
    let (mut rows, mut pixels, mut vectors) = (vec![log_r.clone()], 0, 0);
    let idx: Vec<usize> = (0..set.n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_tensor(set, chunk, device);
        let ctx = Context {
            rng: &mut rng,
            resident: true,
            step: None,
        };
        let f = model.forward(x.clone(), q.as_ref(), ctx);
        let n_vec = f.z_e.dims()[0];
        let labels = set
            .vector_labels(chunk, n_vec / chunk.len())
            .map(|l| quantizer::one_hot(index_tensor(&l, device), classes));
        let log_p = quantizer::soft_log_probs(f.z_e, codebook.clone(), cfg.quantizer.temperature);
        let mut parts = vec![
            (f.x_hat - x).square().sum(),
            f.q.codebook_loss.mul_scalar(n_vec as f64),
            f.q.commitment_loss.mul_scalar(n_vec as f64),
            info_device::soft_row(log_p, &log_r, labels.as_ref()),
        ];
        if !own_soft {
            parts.push(info_device::hard_row(
                f.q.indices,
                k,
                &log_r,
                labels.as_ref(),
            ));
        }
        rows.push(Tensor::cat(parts, 0));
        pixels += chunk.len() * set.image_len();
        vectors += n_vec;
    }
    let v = host_f32(Tensor::cat(rows, 0));
    let (log_r, v) = v.split_at(k);
    let log_r: Vec<f64> = log_r.iter().map(|&x| x as f64).collect();
    let info_len = info_device::row_len(k, classes);
    let t = info_device::totals(v, 3 + info_len * if own_soft { 1 } else { 2 });
    let s = Sums {
        sse: t[0],
        codebook: t[1],
        commitment: t[2],
        pixels,
        vectors,
    };
    let n = vectors as u64;
    let soft = info_device::accumulator(log_r.clone(), classes, n, &t[3..3 + info_len]);
    let assigned = if own_soft {
        soft.clone()
    } else {
        info_device::accumulator(log_r, classes, n, &t[3 + info_len..])
    };
    summarise(cfg, set, k as f64, &s, Info::of(&assigned), Info::of(&soft))
}

/// Per-image squared errors of `x_hat` against `x` (`[B, C, H, W]`), in f64.
fn image_sse(x_hat: Tensor<4>, x: &Tensor<4>) -> Vec<f64> {
    let [b, c, h, w] = x.dims();
    let e = (x_hat - x.clone())
        .square()
        .reshape([b, c * h * w])
        .sum_dim(1);
    host_f32(e).into_iter().map(f64::from).collect()
}

/// The seed's estimators over `set` ([`Expected`]): `samples` (S >= 2) code maps an image drawn
/// from the soft posterior softmax(-d^2 / tau), and for a hard quantizer its own one-hot
/// posterior (one decode: every draw is the hard code map); `m` is the evaluation of the same
/// model on `set`, whose rate terms the objectives take.
pub fn expectations(
    cfg: &RunConfig,
    model: &VqVae,
    set: &ImageSet,
    batch: usize,
    device: &Device,
    samples: usize,
    m: &EvalMetrics,
) -> anyhow::Result<Expected> {
    anyhow::ensure!(
        samples >= 2,
        "the expectation needs at least 2 code maps an image"
    );
    let model = model.valid();
    let q = quantizer::build(&cfg.quantizer);
    let own_soft = q.posterior() == Posterior::Soft;
    let grid = SoftGrid::of(cfg, &model, q.as_ref());
    let (px, sigma, tau) = (set.image_len(), cfg.model.sigma, cfg.quantizer.temperature);
    let tau_own = q.soft_temperature(&model.quantizer);
    let mut rng = eval_rng(cfg.training.seed ^ 0x6578_7063);
    let (mut own, mut soft) = (ExpectedDistortion::new(), ExpectedDistortion::new());
    let idx: Vec<usize> = (0..set.n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let b = chunk.len();
        let x = batch_tensor(set, chunk, device);
        let (z, hw) = model.latents(x.clone());
        // S code maps drawn from softmax(-d^2 / t) over the grid, each decoded: per-image SSEs.
        let mut draw = |t: f64| -> Option<Vec<Vec<f64>>> {
            let g = grid.as_ref()?;
            let maps = draw_code_maps(&z, &g.codebook(), t, samples, rng.next_u64());
            Some(
                maps.iter()
                    .map(|map| {
                        let codes = g.to_codes(map);
                        image_sse(model.decode_codes(&codes, q.as_ref(), b, hw), &x)
                    })
                    .collect(),
            )
        };
        let common = draw(tau);
        let own_draws = match own_soft {
            true if tau_own == tau => common.clone(),
            true => draw(tau_own),
            false => {
                let codes = q.codes(&z, &model.quantizer);
                Some(vec![image_sse(
                    model.decode_codes(&codes, q.as_ref(), b, hw),
                    &x,
                )])
            }
        };
        let own_draws = own_draws.expect("a soft posterior has its codebook");
        for i in 0..b {
            let mine: Vec<f64> = own_draws.iter().map(|v| v[i]).collect();
            own.add_image(&mine, px, sigma);
            match &common {
                Some(c) => soft.add_image(&c.iter().map(|v| v[i]).collect::<Vec<_>>(), px, sigma),
                // No grid to draw from: the soft figures repeat the own posterior's.
                None => soft.add_image(&mine, px, sigma),
            }
        }
    }
    let (d, sd) = (own.nll(), soft.nll());
    for (what, e) in [("own", d), ("soft", sd)] {
        if !(e.mean.is_finite() && e.se.is_finite()) {
            return Err(NonFiniteError {
                what: "non-finite evaluation",
                step: 0,
                detail: format!("the expected distortion under the {what} posterior is {e:?}"),
            }
            .into());
        }
    }
    let l = m.latents as f64 * m.beta;
    let (a, so) = (&m.assigned, &m.soft);
    Ok(Expected {
        samples,
        distortion: d,
        mse: own.mse(),
        soft_distortion: sd,
        soft_mse: soft.mse(),
        l_vdib: d.mean + l * a.cross_entropy,
        l_vib: d.mean + l * a.kl,
        soft_l_vdib: sd.mean + l * so.cross_entropy,
        soft_l_vib: sd.mean + l * so.kl,
        l_marginal: d.mean + l * a.mutual_info,
        soft_l_marginal: sd.mean + l * so.mutual_info,
    })
}

/// The metrics from the sums and accumulators of an evaluation.
fn summarise(
    cfg: &RunConfig,
    set: &ImageSet,
    codes: f64,
    s: &Sums,
    assigned: Info,
    soft: Info,
) -> anyhow::Result<EvalMetrics> {
    let mse = s.sse / s.pixels.max(1) as f64;
    if !mse.is_finite() {
        return Err(NonFiniteError {
            what: "non-finite evaluation",
            step: 0,
            detail: format!("the reconstruction error on {} test images is {mse}", set.n),
        }
        .into());
    }
    let images = set.n.max(1);
    let latents = s.vectors / images;
    let beta = cfg.quantizer.beta;
    let distortion = gaussian_nll(s.sse / images as f64, set.image_len(), cfg.model.sigma);
    let (a, so) = (assigned.summary, soft.summary);
    let (l_vdib, l_vib) = objectives(distortion, &a, beta, latents);
    let (soft_l_vdib, soft_l_vib) = objectives(distortion, &so, beta, latents);
    Ok(EvalMetrics {
        images: set.n,
        latents,
        mse,
        psnr: 10.0 * (1.0 / mse.max(1e-12)).log10(),
        distortion,
        entropy_nats: a.h_z,
        perplexity: a.perplexity,
        codes_used: a.codes_used,
        // Saturating: K^S tuples may exceed every integer type.
        dead_codes: (codes - a.codes_used as f64).clamp(0.0, usize::MAX as f64) as usize,
        codebook_loss: s.codebook / s.vectors.max(1) as f64,
        commitment_loss: s.commitment / s.vectors.max(1) as f64,
        histogram: assigned.histogram,
        stage_entropies: assigned.stage_entropies,
        coded: None,
        relevance: assigned.relevance,
        soft_relevance: soft.relevance,
        expected: None,
        step: None,
        assigned: a,
        soft: so,
        l_vdib,
        l_vib,
        soft_l_vdib,
        soft_l_vib,
        beta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantizer::CodeSpace;

    /// A hand-made map of residual tuples (S = 2, K = 3, stage s's codes as sK + k): the joint
    /// entropy of the tuple, each stage's, the uniform prior's cross entropy S ln K, the tuples
    /// used and I(Z;Y) of labels that are a function of the tuple, against closed forms.
    #[test]
    fn hard_tuples_against_closed_forms() {
        let space = CodeSpace { size: 3, stages: 2 };
        let mut h = HardCodes::new(space, Some(2), false);
        // (0,0) x2, (0,1) x1, (1,2) x1, (2,2) x4; label 1 for the tuples with stage-0 code 2.
        let tuples = [(0, 0, 2), (0, 1, 1), (1, 2, 1), (2, 2, 4)];
        let (mut codes, mut labels) = (Vec::new(), Vec::new());
        for (a, b, n) in tuples {
            for _ in 0..n {
                codes.extend([a, 3 + b]);
                labels.push(u32::from(a == 2));
            }
        }
        h.add(&codes, Some(&labels), &[], false);
        let info = h.info();
        let ent = |p: &[f64]| -p.iter().map(|v| v * v.ln()).sum::<f64>();
        let joint = ent(&[2.0 / 8.0, 1.0 / 8.0, 1.0 / 8.0, 4.0 / 8.0]);
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(info.summary.h_z, joint);
        close(info.summary.mutual_info, joint);
        close(info.summary.h_z_given_i, 0.0);
        close(info.summary.cross_entropy, 2.0 * 3f64.ln());
        assert_eq!(info.summary.codes_used, 4);
        let stages = info.stage_entropies.expect("per-stage entropies");
        close(stages[0], ent(&[3.0 / 8.0, 1.0 / 8.0, 4.0 / 8.0]));
        close(stages[1], ent(&[2.0 / 8.0, 1.0 / 8.0, 5.0 / 8.0]));
        assert_eq!(info.histogram, [4, 2, 1, 1]);
        // The label is a function of the tuple: I(Z;Y) = H(Y).
        let r = info.relevance.expect("labels");
        close(r.i_zy, ent(&[4.0 / 8.0, 4.0 / 8.0]));
    }
}
