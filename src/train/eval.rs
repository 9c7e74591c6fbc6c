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
use crate::info::device as info_device;
use crate::info::{InfoAccumulator, InfoSummary, Relevance, gaussian_nll, objectives};
use crate::kernels::assign::{Codebook, SoftOptions, nearest, soft_assign};
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
