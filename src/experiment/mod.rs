//! `vqib compare`: the seed's experiment. Trains each quantizer with each seed on identical data
//! order and initialisation, then writes `report.html` (self-contained: inline SVG plots and the
//! runs' PNG grids), `report.md` and `summary.csv` with the final metrics (mean and standard
//! deviation over seeds) and two verdicts computed from the data:
//!
//! 1. soft EM reaches a higher code perplexity than `vq`;
//! 2. soft EM reaches a lower L_VIB (eq. 18) than `vq`.
//!
//! Also reachable as `vqib::compare`. Pieces:
//!
//! * this module: what to compare ([`CompareSpec`]), the runs ([`RunResult`]) and training or
//!   reusing them ([`run`], [`run_dir`]);
//! * [`stats`]: mean and standard deviation over seeds, runs grouped by quantizer, mean curves,
//!   the verdicts as typed values ([`Verdicts`], [`Verdict`], [`Claim`]), each decided on a column
//!   of the table;
//! * [`render`]: `summary.csv`, `report.md`, `report.html` (its body is the template
//!   `report.html` beside this file) and the terminal's summary ([`terminal_summary`]); it runs
//!   no model: the grids are those each run wrote where it finished;
//! * [`sweep`], [`sweep_table`], [`sweep_render`]: `vqib sweep`, its rows and `sweep.csv`, and
//!   `sweep.html`;
//! * shared by both reports: the metric table ([`crate::train::eval_rows::METRICS`]), the number
//!   formats ([`crate::report::fmt_stat`]), the page kit ([`page`]: the document, its style and
//!   script, tables in HTML, Markdown and CSV, colours) and the plots ([`plot`]).

pub mod page;
pub mod plot;
pub mod render;
pub mod stats;
pub mod sweep;
pub mod sweep_render;
pub mod sweep_table;

use std::path::{Path, PathBuf};

use crate::config::RunConfig;
use crate::error::InputError;
use crate::quantizer::QuantizerKind;
use crate::records::{Record, read_records};
use crate::run::RunDir;
use crate::train::{EvalMetrics, ResumeOverrides, TrainOptions, Trainer};

pub use render::terminal_summary;
pub use stats::{Claim, Verdict, Verdicts, mean_sd, verdicts};

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareSpec {
    /// Settings shared by every run (quantizer and seed are replaced per run).
    pub base: RunConfig,
    pub quantizers: Vec<QuantizerKind>,
    pub seeds: Vec<u64>,
    pub out: PathBuf,
    /// The command line, shown in the report.
    pub command: String,
}

/// One finished run.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub quantizer: QuantizerKind,
    pub seed: u64,
    pub dir: PathBuf,
    pub eval: EvalMetrics,
    pub curve: Vec<Record>,
}

pub fn quantizer_name(q: QuantizerKind) -> &'static str {
    q.name()
}

/// Trains (or, where a run already finished, reuses; where one stopped, resumes) every run, then
/// writes the reports. Returns the runs and the verdicts.
pub fn run(spec: &CompareSpec, opts: &TrainOptions) -> anyhow::Result<(Vec<RunResult>, Verdicts)> {
    if spec.quantizers.is_empty() || spec.seeds.is_empty() {
        return Err(InputError::config("compare needs at least one quantizer and one seed").into());
    }
    let base = shared_config(&spec.base)?;
    std::fs::create_dir_all(&spec.out)
        .map_err(|e| InputError::file(&spec.out, format!("cannot create: {e}")))?;
    let mut results = Vec::new();
    for &q in &spec.quantizers {
        for &seed in &spec.seeds {
            let run = RunDir::new(run_dir(&spec.out, q, seed));
            if opts.print_summary {
                eprintln!("== {q} seed {seed} -> {}", run.path().display());
            }
            let cfg = run_config(&base, q, seed);
            check_reusable(&cfg, &run)?;
            if !run.is_finished() {
                finish_run(cfg, &run, opts)?;
            }
            results.push(load_result(q, seed, &run)?);
        }
    }
    let verdicts = verdicts(&results);
    render::write_reports(spec, &results, &verdicts)?;
    Ok((results, verdicts))
}

/// The settings every run shares, checked: `base`, with four evaluations an epoch where it sets
/// none, so that the curves have points. The dependent defaults (the EMA decay of each
/// quantizer) are resolved per run, once its quantizer is set.
fn shared_config(base: &RunConfig) -> anyhow::Result<RunConfig> {
    let mut check = base.clone();
    check.quantizer = check.quantizer.for_kind(check.quantizer.kind);
    check.resolve()?;
    let mut base = base.clone();
    if base.training.eval_every == 0 {
        let n = base.data.load(base.training.seed)?.train.n;
        base.training.eval_every = (n.div_ceil(base.batch_size()) as u64 / 4).max(1);
    }
    Ok(base)
}

/// One run's configuration: the shared settings with its quantizer and seed.
fn run_config(base: &RunConfig, q: QuantizerKind, seed: u64) -> RunConfig {
    let mut cfg = base.clone();
    cfg.quantizer = cfg.quantizer.for_kind(q);
    cfg.training.seed = seed;
    cfg
}

/// A run directory an experiment reuses must hold the run it would train: its `config.json`
/// agrees with `cfg` in every setting but where the data live (and the image shape, which the
/// data fix). Otherwise exit 2 naming the directory and the settings.
pub(crate) fn check_reusable(cfg: &RunConfig, run: &RunDir) -> anyhow::Result<()> {
    if !run.config_path().is_file() {
        return Ok(());
    }
    let have = RunConfig::load(&run.config_path())?;
    let mut want = cfg.clone().resolve()?;
    want.data.data_dir = have.data.data_dir.clone();
    want.data.image_shape = have.data.image_shape;
    let diffs = crate::train::config_differences(&have, &want, "the run", "this command");
    if diffs.is_empty() {
        return Ok(());
    }
    Err(InputError::file(
        run.path(),
        format!(
            "holds a run with other settings than this command's ({}); give another --out or remove the directory",
            diffs.join("; ")
        ),
    )
    .into())
}

/// A run of an experiment stopped before its end because this invocation was asked to stop
/// (`--max-steps`): not an error of the input or a bug; the command exits 0 after saying how to
/// continue.
#[derive(Debug)]
pub struct StoppedEarly(pub PathBuf);

impl std::fmt::Display for StoppedEarly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped during {} (checkpoint saved); rerun the same command to continue",
            self.0.display()
        )
    }
}

impl std::error::Error for StoppedEarly {}

/// Trains the run to its end: resumes it from its latest checkpoint, or starts it anew (the
/// machinery `compare` and `sweep` share). A directory whose run never reached a checkpoint is
/// started anew by [`Trainer::create`], under the run's lock (so a run just starting there is
/// never removed from under it). A stop requested by `opts` is [`StoppedEarly`].
pub(crate) fn finish_run(cfg: RunConfig, run: &RunDir, opts: &TrainOptions) -> anyhow::Result<()> {
    let o = TrainOptions {
        print_summary: false,
        ..opts.clone()
    };
    let trainer = if run.has_checkpoint() {
        Trainer::resume(run.path(), ResumeOverrides::default())?
    } else {
        Trainer::create(cfg, run.path())?
    };
    if !trainer.fit(&o)?.completed {
        return Err(StoppedEarly(run.path().to_path_buf()).into());
    }
    Ok(())
}

/// A finished run as its directory holds it: the final evaluation and the evaluation curve.
pub(crate) fn load_result(
    quantizer: QuantizerKind,
    seed: u64,
    run: &RunDir,
) -> anyhow::Result<RunResult> {
    let eval: EvalMetrics = run.read_eval()?;
    let curve = read_records(&run.metrics_jsonl())?
        .into_iter()
        .filter(|r| r.kind == "eval")
        .collect();
    Ok(RunResult {
        quantizer,
        seed,
        dir: run.path().to_path_buf(),
        eval,
        curve,
    })
}

/// Where the compare output of `out` keeps a finished run.
pub fn run_dir(out: &Path, q: QuantizerKind, seed: u64) -> PathBuf {
    out.join("runs")
        .join(format!("{}-seed{seed}", quantizer_name(q)))
}

/// A run with the given final perplexity and L_VIB (with the training-time and the expected
/// distortion alike), for the tests of the statistics and reports.
#[cfg(test)]
pub(crate) fn fake_result(q: QuantizerKind, seed: u64, perplexity: f64, l_vib: f64) -> RunResult {
    // Distortion 1, beta 0.25, one latent vector an image: L_VIB = 1 + kl / 4.
    let info = crate::info::InfoSummary {
        n: 1,
        h_z: perplexity.ln(),
        h_z_miller_madow: perplexity.ln(),
        perplexity,
        codes_used: 1,
        h_z_given_i: 0.0,
        mutual_info: perplexity.ln(),
        cross_entropy: (l_vib - 1.0) * 4.0,
        kl: (l_vib - 1.0) * 4.0,
    };
    // The expected distortion is 1 too: E L_VIB = L_VIB, and with r = p(z) the rate is
    // beta L I(I;Z) = ln(perplexity) / 4.
    let est = |mean| crate::distortion::Estimate { mean, se: 0.0 };
    let l_marginal = 1.0 + 0.25 * perplexity.ln();
    let expected = crate::train::Expected {
        samples: 4,
        distortion: est(1.0),
        mse: est(0.01),
        soft_distortion: est(1.0),
        soft_mse: est(0.01),
        l_vdib: l_vib,
        l_vib,
        soft_l_vdib: l_vib,
        soft_l_vib: l_vib,
        l_marginal,
        soft_l_marginal: l_marginal,
    };
    let eval = EvalMetrics {
        stage_entropies: None,
        images: 1,
        latents: 1,
        mse: 0.01,
        psnr: 20.0,
        distortion: 1.0,
        entropy_nats: perplexity.ln(),
        perplexity,
        codes_used: 1,
        dead_codes: 0,
        codebook_loss: 0.0,
        commitment_loss: 0.0,
        assigned: info.clone(),
        soft: info,
        l_vdib: l_vib,
        l_vib,
        soft_l_vdib: l_vib,
        soft_l_vib: l_vib,
        beta: 0.25,
        histogram: vec![1],
        coded: None,
        relevance: None,
        soft_relevance: None,
        expected: Some(expected),
        step: None,
    };
    RunResult {
        quantizer: q,
        seed,
        dir: PathBuf::new(),
        eval,
        curve: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dirs_name_quantizer_and_seed() {
        let d = run_dir(Path::new("out"), QuantizerKind::SoftEm, 3);
        assert_eq!(d, Path::new("out/runs/soft-em-seed3"));
    }

    /// Each run resolves its own quantizer's EMA decay, unless the shared settings fix one.
    #[test]
    fn soft_em_gets_the_slower_ema_decay_unless_set() {
        let mut base = RunConfig::default();
        let decay = |base: &RunConfig, q| {
            let c = run_config(base, q, 7).resolve().unwrap();
            assert_eq!((c.quantizer.kind, c.training.seed), (q, 7));
            c.ema_decay()
        };
        assert_eq!(decay(&base, QuantizerKind::SoftEm), 0.999);
        assert_eq!(decay(&base, QuantizerKind::VqEma), 0.99);
        base.quantizer.ema_decay = Some(0.9);
        assert_eq!(decay(&base, QuantizerKind::SoftEm), 0.9);
    }
}
