//! What reads a saved run: its latest checkpoint as an inference model ([`load_run`]), `vqib
//! eval` ([`eval_run`]) and `vqib reconstruct` ([`reconstruct_grid`]), and the completion of a
//! final evaluation written to `RUN/eval.json` ([`complete_final`]), shared with a finished run,
//! which also draws the run's reconstruction grid `RUN/reconstructions.png` ([`RECONSTRUCTIONS`]).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;

use super::eval::{EvalMetrics, batch_tensor, eval_rng, evaluate, expectations};
use crate::config::RunConfig;
use crate::data::ImageSet;
use crate::device::{device_or_cpu, host_f32};
use crate::error::{InputError, NonFiniteError};
use crate::model::VqVae;
use crate::quantizer::{self, Context};
use crate::report::write_grid;
use crate::run::RunDir;

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

/// The reconstruction grid a run writes where it finishes ([`complete_final`]), in the run
/// directory: its first 16 test images above their reconstructions by the final model. The
/// comparison's report embeds it.
pub const RECONSTRUCTIONS: &str = "reconstructions.png";

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
    write_reconstructions(out, &cfg, &model, &data.test, n, &dev)
}

/// Writes to `out` a PNG grid of the first `n` images of `set` (at least one, at most all)
/// above their reconstructions by `model`, 16 a row (pixels enlarged 3 times for images up to 32
/// pixels high).
fn write_reconstructions(
    out: &Path,
    cfg: &RunConfig,
    model: &VqVae,
    set: &ImageSet,
    n: usize,
    dev: &Device,
) -> anyhow::Result<()> {
    if set.n == 0 {
        return Err(InputError::config("the test split has no images to reconstruct").into());
    }
    let n = n.clamp(1, set.n);
    let idx: Vec<usize> = (0..n).collect();
    let rec = reconstruct(cfg, model, set, &idx, dev);
    let orig = set.batch_f32(&idx);
    let shape = [set.channels, set.height, set.width];
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
    let (mut cfg, model, dev, step) = load_run(run, data_dir)?;
    if let Some(s) = samples {
        cfg.training.eval_samples = s;
        cfg.validate()?;
        cfg.check_memory(cfg.data.image_shape.unwrap_or([1, 4, 4]), 0)?;
    }
    let samples = cfg.training.eval_samples;
    let data = cfg.data.load(cfg.training.seed)?;
    let at_step = |mut e: anyhow::Error| {
        if let Some(nf) = e.downcast_mut::<NonFiniteError>() {
            nf.step = step;
        }
        e
    };
    let mut m = evaluate(&cfg, &model, &data.test, 256, &dev).map_err(at_step)?;
    complete_final(run, &cfg, &model, &data, &dev, 256, samples, step, &mut m).map_err(at_step)?;
    Ok((cfg, m))
}

/// Completes the final evaluation `m` of `model` on the test split and writes it to
/// `RUN/eval.json` (a finished run's and `vqib eval`'s): the expected distortion from `samples`
/// code maps an image (0 skips it) and the coded rate; `step` is the checkpoint's. Before
/// `eval.json` (which makes the run finished), it draws the run's reconstruction grid
/// [`RECONSTRUCTIONS`], so that a finished run has one.
#[allow(clippy::too_many_arguments)]
pub fn complete_final(
    run: &RunDir,
    cfg: &RunConfig,
    model: &VqVae,
    data: &crate::data::Dataset,
    dev: &Device,
    batch: usize,
    samples: usize,
    step: u64,
    m: &mut EvalMetrics,
) -> anyhow::Result<()> {
    m.step = Some(step);
    if samples > 0 {
        m.expected = Some(expectations(
            cfg, model, &data.test, batch, dev, samples, m,
        )?);
    }
    m.coded = Some(crate::codec::coded_rate(run, cfg, model, data, dev)?);
    let grid = run.path().join(RECONSTRUCTIONS);
    write_reconstructions(&grid, cfg, model, &data.test, 16, dev)?;
    run.write_eval(m)
}
