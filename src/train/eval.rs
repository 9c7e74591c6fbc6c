//! Evaluation over a whole data set: reconstruction error, the Gaussian distortion, and every
//! information quantity of [`crate::info`] under the model's own posterior (one-hot for hard
//! quantizers, softmax(-d^2 / tau) for soft EM) and under the common soft posterior
//! softmax(-d^2 / tau) of its codebook; the objectives L_VDIB and L_VIB (eq. 23, 18) under both.
//! Also what reads a saved run: `vqib eval` and `vqib reconstruct`.
//!
//! Two distortions: [`evaluate`]'s `distortion` is the *training-time* one, the decoder applied to
//! what the quantizer gives it (for soft EM the mean of m sampled codewords); [`expectations`]
//! estimates the seed's, an expectation over the posterior ([`crate::distortion`]), and the
//! objectives with it, under the model's own posterior and the common soft one, and with the
//! tightest prior r = p(z) (eq. 14-17, where the KL term is I(I;Z)). Where the data carry labels,
//! I(Z;Y) under both posteriors ([`crate::info::Relevance`]).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::config::RunConfig;
use crate::data::ImageSet;
use crate::device::{device_or_cpu, host_f32, host_u32, index_tensor, on_host};
use crate::distortion::{Estimate, ExpectedDistortion, draw_code_maps};
use crate::error::{InputError, NonFiniteError};
use crate::info::device as info_device;
use crate::info::{InfoAccumulator, InfoSummary, Relevance, gaussian_nll, objectives};
use crate::kernels::assign::{Codebook, SoftOptions, nearest, soft_assign};
use crate::model::VqVae;
use crate::quantizer::{self, Context, Posterior};
use crate::records::Record;
use crate::report::write_grid;
use crate::run::RunDir;

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
    /// Counts of the most probable code of each latent vector.
    pub histogram: Vec<u64>,
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
fn eval_rng(seed: u64) -> StdRng {
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
pub fn evaluate_on(
    cfg: &RunConfig,
    model: &VqVae,
    set: &ImageSet,
    batch: usize,
    device: &Device,
    resident: bool,
) -> anyhow::Result<EvalMetrics> {
    let model = model.valid();
    if resident {
        return evaluate_resident(cfg, &model, set, batch, device);
    }
    let q = quantizer::build(&cfg.quantizer);
    let own_soft = q.posterior() == Posterior::Soft;
    let log_r: Vec<f64> = host_f32(model.log_prior())
        .into_iter()
        .map(f64::from)
        .collect();
    let ev = model.codebook_values();
    let codebook = Codebook::new(&ev, model.d());
    let classes = set.classes();
    let with_classes = |acc: InfoAccumulator| match classes {
        Some(c) => acc.with_classes(c),
        None => acc,
    };
    let mut assigned = with_classes(InfoAccumulator::new(log_r.clone()));
    let mut soft = with_classes(InfoAccumulator::new(log_r.clone()));
    let mut rng = eval_rng(cfg.training.seed);
    let mut s = Sums::default();
    let idx: Vec<usize> = (0..set.n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_tensor(set, chunk, device);
        let ctx = Context {
            rng: &mut rng,
            resident: false,
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
        // The soft posterior of every model, with the joint of codes and labels.
        let labels = set.vector_labels(chunk, n_vec / chunk.len());
        let labels = labels.as_deref().zip(classes);
        let part = soft_info(
            &host_f32(f.z_e),
            &codebook,
            cfg.quantizer.temperature,
            &log_r,
            labels,
        );
        soft.merge(&part);
        if !own_soft {
            assigned.add_hard(&host_u32(f.q.indices), labels.map(|(l, _)| l));
        }
    }
    if own_soft {
        assigned = soft.clone();
    }
    summarise(cfg, set, model.k(), &s, &assigned, &soft)
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
    let log_r = model.log_prior();
    let codebook = model.codebook.val();
    let mut rng = eval_rng(cfg.training.seed);
    let (mut rows, mut pixels, mut vectors) = (vec![log_r.clone()], 0, 0);
    let idx: Vec<usize> = (0..set.n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_tensor(set, chunk, device);
        let ctx = Context {
            rng: &mut rng,
            resident: true,
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
    summarise(cfg, set, k, &s, &assigned, &soft)
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
    let own_soft = quantizer::build(&cfg.quantizer).posterior() == Posterior::Soft;
    let ev = model.codebook_values();
    let codebook = Codebook::new(&ev, model.d());
    let (px, sigma, tau) = (set.image_len(), cfg.model.sigma, cfg.quantizer.temperature);
    let mut rng = eval_rng(cfg.training.seed ^ 0x6578_7063);
    let (mut own, mut soft) = (ExpectedDistortion::new(), ExpectedDistortion::new());
    let idx: Vec<usize> = (0..set.n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let b = chunk.len();
        let x = batch_tensor(set, chunk, device);
        let (z, grid) = model.latents(x.clone());
        let maps = draw_code_maps(&z, &codebook, tau, samples, rng.next_u64());
        let sse: Vec<Vec<f64>> = maps
            .iter()
            .map(|map| image_sse(model.decode_codes(map, b, grid), &x))
            .collect();
        let hard = (!own_soft).then(|| {
            let codes = nearest(&z, &codebook);
            image_sse(model.decode_codes(&codes, b, grid), &x)
        });
        for i in 0..b {
            let draws: Vec<f64> = sse.iter().map(|v| v[i]).collect();
            soft.add_image(&draws, px, sigma);
            match &hard {
                Some(h) => own.add_image(&[h[i]], px, sigma),
                None => own.add_image(&draws, px, sigma),
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
    k: usize,
    s: &Sums,
    assigned: &InfoAccumulator,
    soft: &InfoAccumulator,
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
    let (a, so) = (assigned.summary(), soft.summary());
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
        dead_codes: k - a.codes_used,
        codebook_loss: s.codebook / s.vectors.max(1) as f64,
        commitment_loss: s.commitment / s.vectors.max(1) as f64,
        histogram: assigned.argmax_counts().to_vec(),
        coded: None,
        relevance: assigned.relevance(),
        soft_relevance: soft.relevance(),
        expected: None,
        assigned: a,
        soft: so,
        l_vdib,
        l_vib,
        soft_l_vdib,
        soft_l_vib,
        beta,
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
    let q = quantizer::build(&cfg.quantizer);
    let mut rng = eval_rng(cfg.training.seed);
    let ctx = Context::on(device, &mut rng);
    host_f32(
        model
            .forward(batch_tensor(set, idx, device), q.as_ref(), ctx)
            .x_hat,
    )
}

/// A run's latest checkpoint as an inference model, on the run's device (the CPU when that
/// device is not available here), with its configuration (`data_dir` replaces the data directory)
/// and its step.
pub fn load_run(
    run: &RunDir,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<(RunConfig, VqVae, Device, u64)> {
    let ck = run.load_latest()?;
    let step = ck.state.step;
    let mut cfg = ck.config;
    if data_dir.is_some() {
        cfg.data.data_dir = data_dir;
    }
    let st = ck.dir.join("model.safetensors");
    let c = cfg
        .data
        .image_shape
        .map(|s| s[0])
        .ok_or_else(|| InputError::file(&st, "checkpoint config lacks the image shape"))?;
    // A damaged config could ask for any size: check before allocating.
    cfg.check_memory(cfg.data.image_shape.unwrap_or([c, 4, 4]), 0)?;
    let dev = device_or_cpu(cfg.training.device);
    let mut model = super::new_model(&cfg, c, &dev);
    model.import(&ck.tensors, &dev, &st)?;
    Ok((cfg, model, dev, step))
}

/// `vqib reconstruct`: writes a PNG grid of the first `n` test images above their
/// reconstructions.
pub fn reconstruct_grid(
    run: &RunDir,
    out: &Path,
    n: usize,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (cfg, model, dev, _) = load_run(run, data_dir)?;
    let data = cfg.data.load(cfg.training.seed)?;
    let n = n.clamp(1, data.test.n);
    let idx: Vec<usize> = (0..n).collect();
    let rec = reconstruct(&cfg, &model, &data.test, &idx, &dev);
    let orig = data.test.batch_f32(&idx);
    let shape = data.image_shape();
    let scale = if shape[1] <= 32 { 3 } else { 1 };
    write_grid(out, &orig, &rec, n, shape, 16, scale)
}

/// `vqib eval`: test-set metrics of a run's latest checkpoint, written to `RUN/eval.json`.
/// `samples` replaces the run's `--eval-samples`.
pub fn eval_run(
    run: &RunDir,
    data_dir: Option<PathBuf>,
    samples: Option<usize>,
) -> anyhow::Result<(RunConfig, EvalMetrics)> {
    let (cfg, model, dev, step) = load_run(run, data_dir)?;
    let samples = samples.unwrap_or(cfg.training.eval_samples);
    if samples == 1 {
        return Err(InputError::config("--eval-samples must be 0 (off) or at least 2").into());
    }
    let data = cfg.data.load(cfg.training.seed)?;
    let at_step = |mut e: anyhow::Error| {
        if let Some(nf) = e.downcast_mut::<NonFiniteError>() {
            nf.step = step;
        }
        e
    };
    let mut m = evaluate(&cfg, &model, &data.test, 256, &dev).map_err(at_step)?;
    complete_final(run, &cfg, &model, &data, &dev, 256, samples, &mut m).map_err(at_step)?;
    Ok((cfg, m))
}

/// Completes the final evaluation `m` of `model` on the test split and writes it to
/// `RUN/eval.json` (a finished run's and `vqib eval`'s): the expected distortion from `samples`
/// code maps an image (0 skips it) and the coded rate.
#[allow(clippy::too_many_arguments)]
pub fn complete_final(
    run: &RunDir,
    cfg: &RunConfig,
    model: &VqVae,
    data: &crate::data::Dataset,
    dev: &Device,
    batch: usize,
    samples: usize,
    m: &mut EvalMetrics,
) -> anyhow::Result<()> {
    if samples > 0 {
        m.expected = Some(expectations(
            cfg, model, &data.test, batch, dev, samples, m,
        )?);
    }
    m.coded = Some(crate::codec::coded_rate(run, cfg, model, data, dev)?);
    run.write_eval(m)
}

/// The metrics log's record of an evaluation at training step `step` of epoch `epoch`.
pub fn eval_record(
    m: &EvalMetrics,
    step: u64,
    epoch: usize,
    wall_time: f64,
    restarts: Option<u64>,
) -> Record {
    Record {
        kind: "eval".into(),
        step,
        epoch,
        wall_time,
        recon_mse: Some(m.mse),
        codebook_loss: Some(m.codebook_loss),
        commitment_loss: Some(m.commitment_loss),
        perplexity: Some(m.perplexity),
        entropy_nats: Some(m.entropy_nats),
        codes_used: Some(m.codes_used),
        dead_codes: Some(m.dead_codes),
        psnr: Some(m.psnr),
        restarts,
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
    let mut rows = vec![
        ("test images", m.images.to_string()),
        ("reconstruction MSE", format!("{:.5}", m.mse)),
        ("PSNR (dB)", format!("{:.2}", m.psnr)),
        ("perplexity exp(H(Z))", format!("{:.2}", m.perplexity)),
        ("H(Z) (nats)", format!("{:.4}", m.entropy_nats)),
        ("codes used", format!("{} / {k}", m.codes_used)),
        ("dead codes", m.dead_codes.to_string()),
        ("codebook loss", format!("{:.5}", m.codebook_loss)),
        ("commitment loss", format!("{:.5}", m.commitment_loss)),
    ];
    let bits = |nats: f64| nats * m.latents as f64 / std::f64::consts::LN_2;
    rows.push((
        "L H(Z) / ln 2 (bits/image)",
        format!("{:.1}", bits(m.entropy_nats)),
    ));
    rows.push((
        "L H(p(Z|I), r) / ln 2 (bits/image)",
        format!("{:.1}", bits(m.assigned.cross_entropy)),
    ));
    if let Some(c) = &m.coded {
        rows.push(("coded bits/image", format!("{:.1}", c.bits_per_image)));
        rows.push(("coded bits/pixel", format!("{:.4}", c.bits_per_pixel)));
    }
    rows
}

/// Every information quantity of an evaluation, under the assigned and the soft posterior.
pub fn info_rows(m: &EvalMetrics, tau: f64) -> Vec<(String, String, String)> {
    let row = |name: &str, a: f64, s: f64| (name.to_string(), format!("{a:.4}"), format!("{s:.4}"));
    let (a, s) = (&m.assigned, &m.soft);
    let mut rows = vec![
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
            "distortion -log q(x|z) per image, training-time decode",
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
    ];
    let (r, sr) = (m.relevance.as_ref(), m.soft_relevance.as_ref());
    if let (Some(r), Some(sr)) = (r, sr) {
        rows.push(row("H(Y) of the labels (nats)", r.h_y, sr.h_y));
        rows.push(row("I(Z;Y) plug-in (nats)", r.i_zy, sr.i_zy));
        rows.push(row("H(Z|Y) (nats)", r.h_z_given_y, sr.h_z_given_y));
        rows.push(row(
            "I(Z;Y) of argmax codes, Miller-Madow",
            r.argmax_i_zy_miller_madow,
            sr.argmax_i_zy_miller_madow,
        ));
    }
    if let Some(e) = &m.expected {
        let est = |x: Estimate| format!("{:.4} ± {:.4}", x.mean, x.se);
        let est6 = |x: Estimate| format!("{:.6} ± {:.6}", x.mean, x.se);
        rows.push((
            format!("E -log q(x|z) per image ({} draws, ± s.e.)", e.samples),
            est(e.distortion),
            est(e.soft_distortion),
        ));
        rows.push(("E MSE (± s.e.)".into(), est6(e.mse), est6(e.soft_mse)));
        rows.push(row("L_VDIB, expected distortion", e.l_vdib, e.soft_l_vdib));
        rows.push(row("L_VIB, expected distortion", e.l_vib, e.soft_l_vib));
        rows.push(row(
            "L with r = p(z): distortion + beta L I(I;Z)",
            e.l_marginal,
            e.soft_l_marginal,
        ));
    }
    rows
}
