//! Training: a [`Trainer`] built by one constructor for a new run and a resumed one, whose loop
//! is cut into named pieces (an epoch, a step, an evaluation when due, a checkpoint when due, the
//! finish). The step itself ([`step`]) and evaluation ([`eval`]) live beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::checkpoint::{self, Checkpoint, TrainState};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::device::{device, host_f32, host_reads, on_host};
use crate::error::{InputError, NonFiniteError};
use crate::model::{VqVae, to_vectors};
use crate::quantizer::Bottleneck;
use crate::records::{MetricsLog, Record};
use crate::report::table;
use crate::run::{RunDir, RunLock};

pub mod eval;
mod resume;
pub(crate) use resume::config_differences;
pub mod step;

pub mod eval_rows;
pub mod saved;
pub use eval::{
    EvalMetrics, Expected, batch_tensor, dense_codebook, evaluate, evaluate_on, expectations,
};
pub use eval_rows::{eval_record, info_rows, summary_rows};
pub use saved::{eval_run, load_run, reconstruct, reconstruct_grid};
pub use step::{Diverged, Loss, Pending, Scalars, StepMode, StepOutput, loss, train_step};

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

/// What may change when a run is resumed; everything else comes from its checkpoint.
#[derive(Clone, Debug, Default)]
pub struct ResumeOverrides {
    /// A new number of epochs (to extend a finished run).
    pub epochs: Option<usize>,
    /// Where the data now lives.
    pub data_dir: Option<PathBuf>,
}

/// The result of a training run.
#[derive(Debug)]
pub struct TrainOutcome {
    pub run_dir: PathBuf,
    pub step: u64,
    /// False when stopped early (Ctrl-C or `max_steps`); a checkpoint was saved.
    pub completed: bool,
    pub eval: Option<EvalMetrics>,
}

/// A model for a config: the codebook learns by gradient only when its quantizer says so, the
/// prior's logits only when the prior is learned.
pub fn new_model(cfg: &RunConfig, channels: usize, device: &Device) -> VqVae {
    let by_gradient = cfg.quantizer.codebook_by_gradient();
    let m = VqVae::seeded(
        channels,
        cfg.hidden(),
        &cfg.quantizer,
        device,
        cfg.training.seed,
    );
    let learned_prior = cfg.rate.prior == crate::quantizer::PriorKind::Learned;
    VqVae {
        quantizer: m.quantizer.with_codebook_grad(by_gradient),
        prior_logits: m.prior_logits.set_require_grad(learned_prior),
        ..m
    }
}

/// The codes of one batch: how many distinct, and their perplexity exp(H), from the sorted codes
/// (nothing the size of the code space).
struct BatchUsage {
    perplexity: f64,
    used: usize,
}

impl BatchUsage {
    fn of(indices: &[u32]) -> Self {
        let mut v = indices.to_vec();
        v.sort_unstable();
        let n = v.len().max(1) as f64;
        let runs = v.chunk_by(|a, b| a == b).map(|r| r.len() as f64);
        let (mut h, mut used) = (0.0f64, 0usize);
        for c in runs {
            let p = c / n;
            h -= p * p.ln();
            used += 1;
        }
        Self {
            perplexity: h.exp(),
            used,
        }
    }

    fn perplexity(&self) -> f64 {
        self.perplexity
    }

    fn used(&self) -> usize {
        self.used
    }
}

/// Everything a training loop carries.
pub struct Trainer {
    cfg: RunConfig,
    run: RunDir,
    device: Device,
    model: VqVae,
    optim: ModuleOptimizer,
    bottleneck: Bottleneck,
    state: TrainState,
    log: MetricsLog,
    data: Dataset,
    /// The newest checkpoint known finite (every checkpoint is: [`checkpoint::save`] refuses
    /// others); a non-finite step names it.
    last_checkpoint: Option<PathBuf>,
    last_eval: Option<EvalMetrics>,
    /// Non-finite losses of steps that did not read theirs (GPU training).
    pending: Pending,
    /// [`host_reads`] at the previous training record.
    reads_at_record: u64,
    /// This process owns the run directory while the trainer lives.
    _lock: RunLock,
}

/// How an epoch ended.
enum EpochEnd {
    Done,
    Stopped,
}

impl Trainer {
    /// A new run in `dir` (which must not already hold one). Its first checkpoint, step 0, is
    /// written before training starts, so that a run that stops at any moment can be resumed.
    pub fn create(cfg: RunConfig, dir: &Path) -> anyhow::Result<Self> {
        let mut cfg = cfg.resolve()?;
        if cfg.data.dataset == crate::data::DatasetKind::Shapes {
            // Generated in memory: check before generating.
            let s = crate::data::SHAPES_SIZE;
            let n = cfg.data.shapes_train.saturating_add(cfg.data.shapes_test);
            cfg.check_memory([1, s, s], n)?;
        }
        let data = cfg.data.load(cfg.training.seed)?;
        cfg.check_memory(data.image_shape(), data.train.n + data.test.n)?;
        cfg.data.image_shape = Some(data.image_shape());
        // Where the data is, as an absolute path, so that resume and eval work from any
        // directory (--data-dir overrides it if the data moves).
        cfg.data.data_dir = cfg
            .data
            .data_dir
            .map(|d| std::fs::canonicalize(&d).unwrap_or(d));
        // The device before the run directory: a run that cannot start leaves nothing behind.
        let dev = device(cfg.training.device)?.autodiff();
        let run = RunDir::new(dir);
        let lock = run.create(&cfg)?;
        let mut t = Self::assemble(cfg, run, data, dev, None, lock)?;
        t.log.flush()?;
        t.checkpoint()?;
        Ok(t)
    }

    /// Continues the run in `dir` from its latest checkpoint, whose embedded config governs
    /// ([`resume::governing_config`]).
    pub fn resume(dir: &Path, overrides: ResumeOverrides) -> anyhow::Result<Self> {
        let run = RunDir::new(dir);
        let lock = run.open()?;
        if !run.has_checkpoint() {
            let steps = run.checkpoint_dirs();
            let latest = run.checkpoints().join("latest");
            return Err(match (steps.last(), run.holds_run()) {
                (Some(newest), _) => InputError::file(
                    &latest,
                    format!(
                        "is missing, but checkpoints are there ({}); name the one to resume from in it (e.g. `echo {newest} > {}`) and resume again",
                        steps.join(", "),
                        latest.display()
                    ),
                ),
                (None, true) => InputError::file(
                    dir,
                    "holds a run that stopped before its first checkpoint: nothing to resume; start it again with `vqib train --out` this directory",
                ),
                (None, false) => InputError::file(
                    dir,
                    "holds no vqib run (no config.json, no checkpoints/latest)",
                ),
            }
            .into());
        }
        let ck = run.load_latest()?;
        let cfg = resume::governing_config(&run, &ck, overrides)?;
        let data = cfg.data.load(cfg.training.seed)?;
        cfg.check_memory(data.image_shape(), data.train.n + data.test.n)?;
        let dev = device(cfg.training.device)?.autodiff();
        Self::assemble(cfg, run, data, dev, Some(ck), lock)
    }

    /// The one constructor: a fresh model and optimizer on the (autodiff) device `dev`, then,
    /// when resuming, the checkpoint's weights, optimizer, EMA and training state.
    fn assemble(
        cfg: RunConfig,
        run: RunDir,
        data: Dataset,
        dev: Device,
        ck: Option<Checkpoint>,
        lock: RunLock,
    ) -> anyhow::Result<Self> {
        let mut bottleneck = Bottleneck::new(&cfg.quantizer);
        let mut model = new_model(&cfg, data.image_shape()[0], &dev);
        let mut optim = cfg.training.optimizer().init();
        let mut state = TrainState {
            codebook_initialised: !bottleneck.starts_uninitialised(),
            ..Default::default()
        };
        let mut last_checkpoint = None;
        let log = match ck {
            None => run.open_log(None)?,
            Some(ck) => {
                restore(&ck, &mut model, &mut optim, &mut bottleneck, &dev)?;
                state = ck.state;
                bottleneck.dead_codes = state.dead_codes.take();
                last_checkpoint = Some(ck.dir);
                run.open_log(Some(state.step))?
            }
        };
        Ok(Self {
            cfg,
            run,
            device: dev,
            model,
            optim,
            bottleneck,
            state,
            log,
            data,
            last_checkpoint,
            last_eval: None,
            pending: Pending::default(),
            reads_at_record: host_reads(),
            _lock: lock,
        })
    }

    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    /// Trains to the configured number of epochs (or until stopped); then writes `eval.json`.
    pub fn fit(mut self, opts: &TrainOptions) -> anyhow::Result<TrainOutcome> {
        let bar = self.progress_bar(opts.progress);
        let clock = (Instant::now(), self.state.wall_time);
        let mut steps_here = 0u64;
        let mut stopped = false;
        while self.state.epoch < self.cfg.training.epochs {
            match self.epoch(opts, &bar, clock, &mut steps_here) {
                Ok(EpochEnd::Done) => self.end_epoch()?,
                Ok(EpochEnd::Stopped) => {
                    stopped = true;
                    break;
                }
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            }
        }
        bar.finish_and_clear();
        self.finish(stopped, opts)
    }

    fn progress_bar(&self, show: bool) -> indicatif::ProgressBar {
        if !show {
            return indicatif::ProgressBar::hidden();
        }
        let per_epoch = self.data.train.n.div_ceil(self.cfg.batch_size());
        let total = (per_epoch as u64).saturating_mul(self.cfg.training.epochs as u64);
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
            )
            .expect("valid template"),
        );
        b.set_position(self.state.step);
        b
    }

    /// The remaining batches of the current epoch.
    fn epoch(
        &mut self,
        opts: &TrainOptions,
        bar: &indicatif::ProgressBar,
        (started, wall0): (Instant, f64),
        steps_here: &mut u64,
    ) -> anyhow::Result<EpochEnd> {
        let order = epoch_order(self.data.train.n, self.cfg.training.seed, self.state.epoch);
        let batches: Vec<&[usize]> = order.chunks(self.cfg.batch_size()).collect();
        while self.state.batch_in_epoch < batches.len() {
            if opts.stop.load(Ordering::SeqCst) || opts.max_steps.is_some_and(|m| *steps_here >= m)
            {
                return Ok(EpochEnd::Stopped);
            }
            let last = self.state.batch_in_epoch + 1 == batches.len();
            let out = self.step(batches[self.state.batch_in_epoch], last)?;
            self.state.wall_time = wall0 + started.elapsed().as_secs_f64();
            *steps_here += 1;
            let mid_epoch = self.state.batch_in_epoch < batches.len();
            self.after_step(&out, bar, mid_epoch)?;
        }
        Ok(EpochEnd::Done)
    }

    /// Whether step `step` reads its loss back: when it logs, evaluates or checkpoints, and at
    /// the end of an epoch (on the CPU every step does, at no cost).
    fn reads(&self, step: u64, last_of_epoch: bool) -> bool {
        let t = &self.cfg.training;
        let due = |every: u64| every > 0 && step % every == 0;
        step == 1
            || last_of_epoch
            || due(t.log_every)
            || due(t.eval_every)
            || due(t.checkpoint_every)
    }

    /// One optimizer step on a batch (initialising the codebook first when it waits for data).
    fn step(&mut self, idx: &[usize], last_of_epoch: bool) -> anyhow::Result<StepOutput> {
        let x = batch_tensor(&self.data.train, idx, &self.device);
        if !self.state.codebook_initialised {
            let z = host_f32(to_vectors(
                self.model.valid().encoder.forward(x.clone().inner()),
            ));
            let q = &self.cfg.quantizer;
            let d = q.code_dim();
            if self.bottleneck.init != crate::quantizer::CodebookInit::Uniform {
                let centres =
                    self.bottleneck
                        .initialise(&z, d, q.codebook_size(), self.cfg.training.seed);
                self.model.set_codebook(centres, &self.device);
            }
            let codebook = self.model.codebook_values();
            if let Some(theta) = self
                .bottleneck
                .quantizer
                .initial_precision(&z, &codebook, d)
            {
                self.model.quantizer.set_precision(theta, &self.device);
            }
            self.state.codebook_initialised = true;
        }
        let step = self.state.step + 1;
        let mode = StepMode::on(&self.device, self.reads(step, last_of_epoch));
        let out = train_step(
            &self.cfg,
            &mut self.model,
            &mut self.optim,
            &mut self.bottleneck,
            x,
            step,
            mode,
            &mut self.pending,
        )
        .map_err(|d| self.non_finite("non-finite loss", step, d.to_string()))?;
        self.state.step = step;
        self.state.batch_in_epoch += 1;
        Ok(out)
    }

    /// Training stops (exit 3) and names the newest finite checkpoint, which resumes.
    fn non_finite(&self, what: &'static str, step: u64, detail: String) -> anyhow::Error {
        let last = match &self.last_checkpoint {
            Some(p) => format!(
                "the newest finite checkpoint is {}; `vqib resume {}` continues from it (with the same settings it will likely diverge again)",
                p.display(),
                self.run.path().display()
            ),
            None => "no checkpoint was saved".into(),
        };
        NonFiniteError {
            what,
            step,
            detail: format!("{detail}; training stopped; {last}"),
        }
        .into()
    }

    /// A [`NonFiniteError`] from below (an evaluation, a refused checkpoint) as the trainer's:
    /// at this step, naming the newest finite checkpoint.
    fn name_good_checkpoint(&self, e: anyhow::Error) -> anyhow::Error {
        match e.downcast::<NonFiniteError>() {
            Ok(nf) => self.non_finite(nf.what, self.state.step, nf.detail),
            Err(e) => e,
        }
    }

    /// Progress, the training record when due, an evaluation and a checkpoint when due.
    fn after_step(
        &mut self,
        out: &StepOutput,
        bar: &indicatif::ProgressBar,
        mid_epoch: bool,
    ) -> anyhow::Result<()> {
        bar.inc(1);
        if let (Some(s), Some(indices)) = (out.scalars, &out.indices) {
            self.report_step(s, indices, bar)?;
        }
        let step = self.state.step;
        let every = self.cfg.training.eval_every;
        if every > 0 && step % every == 0 && mid_epoch {
            let m = self.evaluate()?;
            self.log_eval(&m, self.state.epoch)?;
        }
        let every = self.cfg.training.checkpoint_every;
        if every > 0 && step % every == 0 {
            self.log.flush()?;
            self.checkpoint()?;
        }
        Ok(())
    }

    /// The progress message and, when due, the training record of a step that read its loss.
    fn report_step(
        &mut self,
        s: Scalars,
        indices: &[u32],
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        let step = self.state.step;
        let hist = BatchUsage::of(indices);
        bar.set_message(format!(
            "epoch {}/{} loss {:.4} recon {:.4} ppl(batch) {:.1}",
            self.state.epoch + 1,
            self.cfg.training.epochs,
            s.loss,
            s.recon,
            hist.perplexity()
        ));
        if step % self.cfg.training.log_every == 0 || step == 1 {
            self.bottleneck.sync_dead_codes();
            let reads = host_reads();
            self.log.write(&Record {
                kind: "train".into(),
                step,
                epoch: self.state.epoch,
                wall_time: self.state.wall_time,
                loss: Some(s.loss as f64),
                recon_mse: Some(s.recon as f64),
                codebook_loss: Some(s.codebook as f64),
                commitment_loss: Some(s.commitment as f64),
                batch_perplexity: Some(hist.perplexity()),
                batch_codes_used: Some(hist.used()),
                restarts: self.restarts(),
                rate: s.rate.map(f64::from),
                host_reads: (!on_host(&self.device)).then(|| reads - self.reads_at_record),
                ..Default::default()
            })?;
            self.reads_at_record = host_reads();
        }
        Ok(())
    }

    fn restarts(&self) -> Option<u64> {
        self.bottleneck.dead_codes.as_ref().map(|d| d.restarts)
    }

    fn evaluate(&self) -> anyhow::Result<EvalMetrics> {
        let batch = self.cfg.batch_size().max(256);
        evaluate(
            &self.cfg,
            &self.model,
            &self.data.test,
            batch,
            &self.device.clone().inner(),
        )
        .map_err(|e| self.name_good_checkpoint(e))
    }

    fn log_eval(&mut self, m: &EvalMetrics, epoch: usize) -> anyhow::Result<()> {
        self.bottleneck.sync_dead_codes();
        let rec = eval_record(
            m,
            self.state.step,
            epoch,
            self.state.wall_time,
            self.restarts(),
        );
        self.log.write(&rec)
    }

    /// End of an epoch: evaluate on the test split and checkpoint.
    fn end_epoch(&mut self) -> anyhow::Result<()> {
        self.state.epoch += 1;
        self.state.batch_in_epoch = 0;
        let m = self.evaluate()?;
        self.log_eval(&m, self.state.epoch - 1)?;
        self.log.flush()?;
        self.checkpoint()?;
        self.last_eval = Some(m);
        Ok(())
    }

    /// Saves a checkpoint of the current step (the two newest are kept); a model or optimizer
    /// state that is not finite stops training instead.
    fn checkpoint(&mut self) -> anyhow::Result<()> {
        // Steps since the last read (a run stopped between logging steps) must have been finite.
        if let Some(d) = self.pending.check() {
            return Err(self.non_finite("non-finite loss", self.state.step, d));
        }
        self.bottleneck.sync();
        let state = TrainState {
            dead_codes: self.bottleneck.dead_codes.clone(),
            ..self.state.clone()
        };
        let dir = checkpoint::save(
            self.run.path(),
            &self.cfg,
            &self.model.export(),
            self.bottleneck.quantizer.ema(),
            &self.optim,
            &state,
            2,
        )
        .map_err(|e| self.name_good_checkpoint(e))?;
        self.last_checkpoint = Some(dir);
        Ok(())
    }

    /// A stopped run saves a checkpoint; a completed one writes `eval.json`; then the summary.
    fn finish(mut self, stopped: bool, opts: &TrainOptions) -> anyhow::Result<TrainOutcome> {
        self.log.flush()?;
        if !stopped && self.last_eval.is_none() && !self.run.is_finished() {
            // At its end but without the final evaluation of that checkpoint (killed between
            // the two, or a `vqib eval` of an earlier step wrote eval.json): make it now. A
            // finished run resumed with nothing to do changes nothing.
            self.last_eval = Some(self.evaluate()?);
        }
        if stopped {
            self.checkpoint()?;
        } else if let Some(mut m) = self.last_eval.take() {
            // The expected distortion and the rate in real bits of the final model (the model in
            // memory is the final checkpoint's: saved at the end of the epoch).
            let (model, dev) = (self.model.valid(), self.device.clone().inner());
            let (s, batch) = (
                self.cfg.training.eval_samples,
                self.cfg.batch_size().max(256),
            );
            let step = self.state.step;
            let done = saved::complete_final(
                &self.run, &self.cfg, &model, &self.data, &dev, batch, s, step, &mut m,
            );
            self.last_eval = Some(m);
            done.map_err(|e| self.name_good_checkpoint(e))?;
        }
        if opts.print_summary {
            self.print_summary(stopped);
        }
        Ok(TrainOutcome {
            run_dir: self.run.path().to_path_buf(),
            step: self.state.step,
            completed: !stopped,
            eval: self.last_eval,
        })
    }

    fn print_summary(&self, stopped: bool) {
        if let Some(m) = &self.last_eval {
            let space = self.cfg.quantizer.code_space().to_string();
            let mut rows = summary_rows(m, &space);
            rows.insert(0, ("quantizer", self.cfg.quantizer.kind.name().to_string()));
            rows.insert(1, ("steps", self.state.step.to_string()));
            rows.insert(
                2,
                ("training time (s)", format!("{:.1}", self.state.wall_time)),
            );
            println!("{}", table(&rows));
        }
        let dir = self.run.path().display();
        if stopped {
            println!(
                "stopped at step {} (checkpoint saved); continue with: vqib resume {dir}",
                self.state.step
            );
        }
        println!("run directory: {dir}");
    }
}

/// Loads a checkpoint's weights, optimizer state and EMA state. The optimizer state is
/// materialised on burn's default device (the binary pins that to the CPU) and moves to the
/// parameters' device on the next step.
fn restore(
    ck: &Checkpoint,
    model: &mut VqVae,
    optim: &mut ModuleOptimizer,
    bottleneck: &mut Bottleneck,
    dev: &Device,
) -> anyhow::Result<()> {
    let st = ck.dir.join("model.safetensors");
    model.import(&ck.tensors, dev, &st)?;
    let fresh = std::mem::replace(optim, ck.config.training.optimizer().init());
    *optim = checkpoint::read_optimizer(&ck.dir.join("optimizer.bpk"), fresh)?;
    if let Some(slot) = bottleneck.quantizer.ema_mut() {
        let ema = ck.ema.clone().ok_or_else(|| {
            InputError::file(&st, "checkpoint lacks the EMA state its quantizer needs")
        })?;
        *slot = ema;
    }
    Ok(())
}

/// The order of the training images in epoch `epoch`: a permutation fixed by the seed.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng =
        StdRng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    idx.shuffle(&mut rng);
    idx
}

#[cfg(test)]
mod tests;
