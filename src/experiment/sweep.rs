//! `vqib sweep`: a grid over the training options. Each of `--quantizers`, `--beta`,
//! `--rate-weight`, `--codebook-size`, `--temperature`, `--code-dim` and `--seeds` takes a list;
//! every combination is one point, one run directory `OUT/runs/NAME` ([`Point::name`]), trained
//! or reused or resumed by the machinery `compare` uses ([`super::finish_run`]).
//!
//! Outputs ([`collect`]): `sweep.csv`, one row a setting (a point without its seed): the options,
//! the seeds found, and the mean and standard deviation over seeds of every quantity of
//! [`METRICS`]; and `sweep.html` ([`super::sweep_render`]): rate-distortion curves, the
//! information plane, perplexity and codes used against K.
//!
//! Past one machine: [`list`] gives one `vqib train ...` command a point (the sweep's own train
//! options passed through verbatim, the point's options and `--out` added), `--shard I/N` trains
//! only the points whose index is I modulo N, and `--collect` reports whatever runs are finished.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

pub use super::sweep_table::{
    METRICS, Metric, Setting, SweepRow, Variant, rows, summary_table, sweep_csv,
};
use super::{RunResult, check_reusable, finish_run, load_result};
use crate::config::RunConfig;
use crate::error::InputError;
use crate::quantizer::{Estimator, QuantizerKind};
use crate::run::RunDir;
use crate::train::TrainOptions;

/// The list-valued options of a sweep; an empty list means the base configuration's value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Axes {
    pub quantizers: Vec<QuantizerKind>,
    pub beta: Vec<f64>,
    pub rate_weight: Vec<f64>,
    pub codebook_size: Vec<usize>,
    pub temperature: Vec<f64>,
    pub code_dim: Vec<usize>,
    /// fsq's level sets (`--levels` repeated, each a comma-separated set).
    pub levels: Vec<Vec<usize>>,
    /// rvq's stage counts.
    pub stages: Vec<usize>,
    /// The estimators of vq, vq-ema and rvq.
    pub estimator: Vec<Estimator>,
    pub seeds: Vec<u64>,
}

/// The clap ids of the train options a sweep takes as lists (beside `--quantizers` and
/// `--seeds`, which `compare` has too): fields of [`RunConfig`]'s sections.
/// The clap ids of the quantizer-specific train options that are not lists: each point's command
/// gets them only where its quantizer reads them ([`Point::flags`]), not from the shared flags.
const OWN_IDS: [&str; 3] = ["entropy_weight", "diversity_weight", "update"];

const LIST_IDS: [&str; 8] = [
    "beta",
    "rate_weight",
    "codebook_size",
    "temperature",
    "code_dim",
    "levels",
    "stages",
    "estimator",
];

/// `a` as a list-valued option: comma-separated (`--beta 0.1,0.25`), repeated (`--beta 0.1
/// --beta 0.25`) or both; each value read as a `T` (spaces around it allowed), an error naming
/// the value otherwise.
fn list_arg<T>(a: Arg) -> Arg
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
{
    let help = format!(
        "{} (a list: comma-separated or repeated, a point for each value)",
        a.get_help().map(ToString::to_string).unwrap_or_default()
    );
    a.action(ArgAction::Append)
        .value_delimiter(',')
        .value_name("LIST")
        .help(help)
        .value_parser(|v: &str| {
            v.trim()
                .parse::<T>()
                .map_err(|_| format!("cannot read {v:?} as a number"))
        })
}

/// `--seeds`: a count N (seeds 1..=N, as `compare`) or a comma-separated list of seeds. A count
/// above [`MAX_RUNS`] is refused before any list is made.
pub fn parse_seeds(v: &str) -> Result<Vec<u64>, InputError> {
    let seeds = v
        .split(',')
        .map(|x| {
            x.trim().parse::<u64>().map_err(|_| {
                InputError::config(format!("--seeds: cannot read {x:?} in the list {v:?}"))
            })
        })
        .collect::<Result<Vec<u64>, _>>()?;
    match seeds.as_slice() {
        [] | [0] => Err(InputError::config("--seeds must be at least 1")),
        [n] if !v.contains(',') => {
            check_runs("--seeds", *n)?;
            Ok((1..=*n).collect())
        }
        _ => Ok(seeds),
    }
}

/// The most runs one `compare` or `sweep` may describe (points x seeds): each is a run
/// directory, and at minutes a run, more is not a grid anyone trains.
pub const MAX_RUNS: u64 = 10_000;

/// Refuses a run count above [`MAX_RUNS`], naming the flags that make it.
pub fn check_runs(flags: &str, runs: u64) -> Result<(), InputError> {
    if runs > MAX_RUNS {
        return Err(InputError::config(format!(
            "{flags}: {runs} runs; a comparison or sweep may have at most {MAX_RUNS} (points x seeds)"
        )));
    }
    Ok(())
}

/// Refuses a list that names a value twice (it would count one run as several).
pub fn no_duplicates<T: PartialEq + std::fmt::Display>(
    flag: &str,
    values: &[T],
) -> Result<(), InputError> {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(InputError::config(format!(
                "{flag} lists {v} twice; give each value once"
            )));
        }
    }
    Ok(())
}

/// `--shard I/N`: the I-th (0-based) of N shares.
pub fn parse_shard(v: &str) -> Result<(usize, usize), InputError> {
    let bad = || InputError::config(format!("--shard {v:?}: expected I/N with 0 <= I < N"));
    let (i, n) = v.split_once('/').ok_or_else(bad)?;
    let (i, n) = (
        i.trim().parse::<usize>().map_err(|_| bad())?,
        n.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

impl Axes {
    /// Checks the lists: no value twice in any, and at most [`MAX_RUNS`] points in the grid.
    pub fn validate(&self) -> Result<(), InputError> {
        no_duplicates("--quantizers", &self.quantizers)?;
        no_duplicates("--beta", &self.beta)?;
        no_duplicates("--rate-weight", &self.rate_weight)?;
        no_duplicates("--codebook-size", &self.codebook_size)?;
        no_duplicates("--temperature", &self.temperature)?;
        no_duplicates("--code-dim", &self.code_dim)?;
        let sets: Vec<String> = self
            .levels
            .iter()
            .map(|l| {
                l.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        no_duplicates("--levels", &sets)?;
        no_duplicates("--stages", &self.stages)?;
        no_duplicates("--estimator", &self.estimator)?;
        no_duplicates("--seeds", &self.seeds)?;
        let runs = [
            self.quantizers.len(),
            self.beta.len(),
            self.rate_weight.len(),
            self.codebook_size.len(),
            self.temperature.len(),
            self.code_dim.len(),
            self.levels.len(),
            self.stages.len(),
            self.estimator.len(),
            self.seeds.len(),
        ]
        .iter()
        .try_fold(1u64, |acc, &n| acc.checked_mul(n.max(1) as u64))
        .unwrap_or(u64::MAX);
        check_runs("the sweep's lists", runs)
    }

    /// Makes the list-valued train options of `sweep` (a command that flattens [`RunConfig`])
    /// take lists ([`list_arg`]): `--beta`, `--rate-weight`, `--codebook-size`, `--temperature`,
    /// `--code-dim`, `--stages` and `--estimator`, and `--levels` repeated (a level set each).
    /// Their single first value still fills the base configuration.
    pub fn list_args(sweep: Command) -> Command {
        sweep
            .mut_arg("beta", list_arg::<f64>)
            .mut_arg("rate_weight", list_arg::<f64>)
            .mut_arg("codebook_size", list_arg::<usize>)
            .mut_arg("temperature", list_arg::<f64>)
            .mut_arg("code_dim", list_arg::<usize>)
            .mut_arg("stages", list_arg::<usize>)
            .mut_arg("estimator", |a| a.action(ArgAction::Append).value_delimiter(','))
            .mut_arg("levels", |a| {
                a.action(ArgAction::Append).help(
                    "fsq: a level set, e.g. 8,5,5,5; repeat the flag for a list of sets, a point for each",
                )
            })
    }

    /// The lists given on the command line of a command made by [`Axes::list_args`], in the
    /// order given; an option not given is an empty list (the base configuration's value).
    /// `quantizers` and `seeds` are left empty, for the caller.
    pub fn from_matches(m: &ArgMatches) -> Axes {
        fn given<T: Clone + Send + Sync + 'static>(m: &ArgMatches, id: &str) -> Vec<T> {
            if m.value_source(id) != Some(ValueSource::CommandLine) {
                return Vec::new();
            }
            m.get_many::<T>(id).into_iter().flatten().cloned().collect()
        }
        Axes {
            beta: given(m, "beta"),
            rate_weight: given(m, "rate_weight"),
            codebook_size: given(m, "codebook_size"),
            temperature: given(m, "temperature"),
            code_dim: given(m, "code_dim"),
            levels: if m.value_source("levels") == Some(ValueSource::CommandLine) {
                m.get_occurrences::<usize>("levels")
                    .into_iter()
                    .flatten()
                    .map(|o| o.copied().collect())
                    .collect()
            } else {
                Vec::new()
            },
            stages: given(m, "stages"),
            estimator: given(m, "estimator"),
            ..Axes::default()
        }
    }
}

/// The variants of `q` the axes give: fsq's level sets, rvq's stages with the estimators, the
/// estimators of vq and vq-ema; one default variant where the lists are empty or do not apply.
fn variants(a: &Axes, q: QuantizerKind) -> Vec<Variant> {
    fn opt<T: Clone>(v: &[T]) -> Vec<Option<T>> {
        if v.is_empty() {
            vec![None]
        } else {
            v.iter().cloned().map(Some).collect()
        }
    }
    let levels = if q == QuantizerKind::Fsq {
        opt(&a.levels)
    } else {
        vec![None]
    };
    let stages = if q == QuantizerKind::Rvq {
        opt(&a.stages)
    } else {
        vec![None]
    };
    let estimators = if matches!(
        q,
        QuantizerKind::Vq | QuantizerKind::VqEma | QuantizerKind::Rvq
    ) {
        opt(&a.estimator)
    } else {
        vec![None]
    };
    let mut out = Vec::new();
    for l in &levels {
        for &s in &stages {
            for &e in &estimators {
                out.push(Variant {
                    levels: l.clone(),
                    stages: s,
                    estimator: e,
                });
            }
        }
    }
    out
}

/// One point of the grid: a setting and a seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub setting: Setting,
    pub seed: u64,
}

impl Point {
    /// The run directory's name: every option and the seed, so that a grid extended later finds
    /// the runs it already has.
    pub fn name(&self) -> String {
        let s = &self.setting;
        format!(
            "{}-k{}-d{}-beta{}-rw{}-tau{}{}-seed{}",
            s.quantizer.name(),
            s.k,
            s.d,
            s.beta,
            s.rate_weight,
            s.tau,
            s.variant.suffix(),
            self.seed
        )
    }

    /// The base configuration with this point's options.
    pub fn config(&self, base: &RunConfig) -> RunConfig {
        let s = &self.setting;
        let mut c = base.clone();
        c.quantizer = c.quantizer.for_kind(s.quantizer);
        let v = &s.variant;
        if v.levels.is_some() {
            c.quantizer.levels = v.levels.clone();
        }
        c.quantizer.stages = v.stages.or(c.quantizer.stages);
        c.quantizer.estimator = v.estimator.or(c.quantizer.estimator);
        // The grid's sizes: fsq's code space is its levels' (it takes none), lfq's is 2^D (it
        // takes K).
        match s.quantizer {
            QuantizerKind::Fsq => {}
            QuantizerKind::Lfq => c.quantizer.codebook_size = Some(s.k),
            _ => {
                c.quantizer.codebook_size = Some(s.k);
                c.quantizer.code_dim = Some(s.d);
            }
        }
        c.quantizer.beta = s.beta;
        c.rate.weight = s.rate_weight;
        c.quantizer.temperature = s.tau;
        c.training.seed = self.seed;
        c
    }

    /// The quantizer-specific flags of the base configuration that this point's quantizer reads
    /// (lfq's penalty weights, rvq's update), as `vqib train` flags.
    pub fn own_flags(&self, base: &RunConfig) -> Vec<String> {
        let q = base.quantizer.for_kind(self.setting.quantizer);
        let mut out = Vec::new();
        for (flag, v) in [
            ("--entropy-weight", q.entropy_weight),
            ("--diversity-weight", q.diversity_weight),
        ] {
            if let Some(v) = v {
                out.extend([flag.to_string(), v.to_string()]);
            }
        }
        if let Some(u) = q.update {
            let name = match u {
                crate::quantizer::config::CodebookUpdate::Gradient => "gradient",
                crate::quantizer::config::CodebookUpdate::Ema => "ema",
            };
            out.extend(["--update".to_string(), name.to_string()]);
        }
        out
    }

    /// This point's options as `vqib train` flags.
    pub fn flags(&self) -> Vec<String> {
        let s = &self.setting;
        [
            ("--quantizer", s.quantizer.name().to_string()),
            ("--codebook-size", s.k.to_string()),
            ("--code-dim", s.d.to_string()),
            ("--beta", s.beta.to_string()),
            ("--rate-weight", s.rate_weight.to_string()),
            ("--temperature", s.tau.to_string()),
            ("--seed", self.seed.to_string()),
        ]
        .into_iter()
        .chain(s.variant.levels.as_ref().map(|l| {
            let set: Vec<String> = l.iter().map(|v| v.to_string()).collect();
            ("--levels", set.join(","))
        }))
        .chain(s.variant.stages.map(|n| ("--stages", n.to_string())))
        .chain(s.variant.estimator.map(|e| ("--estimator", e.to_string())))
        .flat_map(|(f, v)| [f.to_string(), v])
        .collect()
    }
}

/// What to sweep.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// Settings shared by every point (the options of the axes are replaced per point).
    pub base: RunConfig,
    pub axes: Axes,
    pub out: PathBuf,
    /// The command line, shown in the report.
    pub command: String,
    /// The sweep's train options as given (without its own flags and the axes), for `--list`.
    pub train_args: Vec<String>,
}

/// The train options given on the command line of `sweep` (matched as `m`), as `vqib train`
/// words (`--flag`, then its values as text) in the order given: every option whose value
/// source is the command line but the sweep's `own` (clap ids) and the axes ([`LIST_IDS`]).
/// For [`SweepSpec::list`].
pub fn train_args(sweep: &Command, m: &ArgMatches, own: &[&str]) -> Vec<String> {
    let mut given: Vec<(usize, Vec<String>)> = Vec::new();
    for a in sweep.get_arguments() {
        let id = a.get_id().as_str();
        let Some(long) = a.get_long() else { continue };
        if own.contains(&id)
            || LIST_IDS.contains(&id)
            || OWN_IDS.contains(&id)
            || m.value_source(id) != Some(ValueSource::CommandLine)
        {
            continue;
        }
        let flag = format!("--{long}");
        let words = match m.get_raw_occurrences(id) {
            Some(occurrences) if a.get_action().takes_values() => occurrences
                .flat_map(|values| {
                    std::iter::once(flag.clone())
                        .chain(values.map(|v| v.to_string_lossy().into_owned()))
                })
                .collect(),
            _ => vec![flag],
        };
        given.push((m.index_of(id).unwrap_or(usize::MAX), words));
    }
    given.sort_by_key(|(i, _)| *i);
    given.into_iter().flat_map(|(_, w)| w).collect()
}

impl SweepSpec {
    /// Every point of the grid, quantizers outermost, seeds innermost.
    pub fn points(&self) -> Vec<Point> {
        let (b, a) = (&self.base, &self.axes);
        let or = |v: &Vec<f64>, d: f64| if v.is_empty() { vec![d] } else { v.clone() };
        let or_u = |v: &Vec<usize>, d: usize| if v.is_empty() { vec![d] } else { v.clone() };
        let quantizers = if a.quantizers.is_empty() {
            vec![b.quantizer.kind]
        } else {
            a.quantizers.clone()
        };
        let seeds = if a.seeds.is_empty() {
            vec![b.training.seed]
        } else {
            a.seeds.clone()
        };
        let mut out = Vec::new();
        for &quantizer in &quantizers {
            for variant in variants(a, quantizer) {
                // The sizes this quantizer has by default when the grid gives none (fsq: its levels';
                // lfq: 2^D): a base configuration of another quantizer does not set them.
                let mut own = b.quantizer.for_kind(quantizer);
                if variant.levels.is_some() {
                    own.levels = variant.levels.clone();
                }
                let ks = match quantizer {
                    QuantizerKind::Fsq => vec![own.codebook_size()],
                    _ => or_u(&a.codebook_size, own.codebook_size()),
                };
                for &k in &ks {
                    let ds = match quantizer {
                        QuantizerKind::Fsq => vec![own.code_dim()],
                        QuantizerKind::Lfq => vec![k.max(1).ilog2() as usize],
                        _ => or_u(&a.code_dim, own.code_dim()),
                    };
                    for &d in &ds {
                        for &beta in &or(&a.beta, b.quantizer.beta) {
                            for &rate_weight in &or(&a.rate_weight, b.rate.weight) {
                                for &tau in &or(&a.temperature, b.quantizer.temperature) {
                                    for &seed in &seeds {
                                        out.push(Point {
                                            setting: Setting {
                                                quantizer,
                                                k,
                                                d,
                                                beta,
                                                rate_weight,
                                                tau,
                                                variant: variant.clone(),
                                            },
                                            seed,
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Where a point's run lives.
    pub fn run_dir(&self, p: &Point) -> PathBuf {
        self.out.join("runs").join(p.name())
    }

    /// One `vqib train ...` command a point.
    pub fn list(&self) -> Vec<String> {
        self.points()
            .iter()
            .map(|p| {
                let mut words = vec!["vqib".to_string(), "train".to_string()];
                words.extend(self.train_args.iter().cloned());
                words.extend(p.flags());
                words.extend(p.own_flags(&self.base));
                words.push("--out".into());
                words.push(self.run_dir(p).display().to_string());
                words
                    .iter()
                    .map(|w| shell_word(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

/// `w` quoted for a POSIX shell where it needs it.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The points of share `i` of `n`: those whose index in the grid is `i` modulo `n`.
pub fn shard(points: Vec<Point>, (i, n): (usize, usize)) -> Vec<Point> {
    points
        .into_iter()
        .enumerate()
        .filter(|(j, _)| j % n == i)
        .map(|(_, p)| p)
        .collect()
}

/// Trains (or reuses, or resumes) the points of the grid, or of one share of it.
pub fn train(
    spec: &SweepSpec,
    share: Option<(usize, usize)>,
    opts: &TrainOptions,
) -> anyhow::Result<()> {
    let points = spec.points();
    let total = points.len();
    let mine = match share {
        Some(s) => shard(points, s),
        None => points,
    };
    for (i, p) in mine.iter().enumerate() {
        let run = RunDir::new(spec.run_dir(p));
        if opts.print_summary {
            eprintln!(
                "== point {}/{} of {total}: {} -> {}",
                i + 1,
                mine.len(),
                p.name(),
                run.path().display()
            );
        }
        let cfg = p.config(&spec.base);
        check_reusable(&cfg, &run)?;
        if !run.is_finished() {
            finish_run(cfg, &run, opts)?;
        }
    }
    Ok(())
}

/// A finished point.
#[derive(Clone, Debug)]
pub struct PointResult {
    pub point: Point,
    pub run: RunResult,
}

/// What [`collect`] found.
#[derive(Clone, Debug)]
pub struct Collected {
    pub results: Vec<PointResult>,
    /// Points without a finished run, by run directory.
    pub missing: Vec<PathBuf>,
    pub rows: Vec<SweepRow>,
}

/// Reads every finished point and writes `sweep.csv` and `sweep.html` into `spec.out`.
pub fn collect(spec: &SweepSpec) -> anyhow::Result<Collected> {
    let points = spec.points();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for p in points {
        let run = RunDir::new(spec.run_dir(&p));
        if run.is_finished() {
            check_reusable(&p.config(&spec.base), &run)?;
            let r = load_result(p.setting.quantizer, p.seed, &run)?;
            results.push(PointResult { point: p, run: r });
        } else {
            missing.push(run.path().to_path_buf());
        }
    }
    let rows = rows(
        results
            .iter()
            .map(|r| (&r.point.setting, r.point.seed, &r.run.eval)),
    );
    std::fs::create_dir_all(&spec.out)
        .map_err(|e| InputError::file(&spec.out, format!("cannot create: {e}")))?;
    crate::io::write_atomic(&spec.out.join("sweep.csv"), &sweep_csv(&rows)?)?;
    let page = super::sweep_render::SweepPage {
        command: &spec.command,
        points: results.len() + missing.len(),
        finished: results.len(),
        missing: &missing,
    };
    let html = super::sweep_render::sweep_html(&page, &rows)?;
    crate::io::write_atomic(&spec.out.join("sweep.html"), html.as_bytes())?;
    Ok(Collected {
        results,
        missing,
        rows,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::quantizer::QuantizerKind::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    /// A command that parses as `vqib sweep` does: [`RunConfig`]'s options with the lists of
    /// [`Axes::list_args`], two flags of the sweep's own and one pass-through flag.
    fn sweep_command() -> Command {
        use clap::Args;
        Axes::list_args(
            RunConfig::augment_args(Command::new("sweep"))
                .arg(Arg::new("out").long("out"))
                .arg(Arg::new("list").long("list").action(ArgAction::SetTrue))
                .arg(
                    Arg::new("no_progress")
                        .long("no-progress")
                        .action(ArgAction::SetTrue),
                ),
        )
    }

    fn parse(words: &[&str]) -> Result<ArgMatches, clap::Error> {
        sweep_command().try_get_matches_from(std::iter::once("sweep").chain(words.iter().copied()))
    }

    #[test]
    fn list_options_take_lists_in_every_spelling() {
        let m = parse(&[
            "--beta",
            "0.1,0.25",
            "--hidden",
            "8",
            "--codebook-size=8,16",
            "--temperature",
            "2",
            "--code-dim",
            "4",
            "--code-dim",
            "8",
            "--rate-weight",
            " 0.5",
            "--beta=1",
        ])
        .unwrap();
        let axes = Axes::from_matches(&m);
        assert_eq!(axes.beta, [0.1, 0.25, 1.0]);
        assert_eq!(axes.codebook_size, [8, 16]);
        assert_eq!(axes.temperature, [2.0]);
        assert_eq!(axes.code_dim, [4, 8]);
        assert_eq!(axes.rate_weight, [0.5]);
        // The base configuration still reads (a list's first value; the axes replace it).
        let base = <RunConfig as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        assert_eq!((base.model.hidden, base.quantizer.beta), (Some(8), 0.1));
        // An option not given is no axis: the base configuration's default.
        let m = parse(&["--hidden", "8"]).unwrap();
        assert_eq!(Axes::from_matches(&m), Axes::default());
        let base = <RunConfig as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        assert_eq!(base.quantizer.beta, 0.25);
    }

    #[test]
    fn bad_lists_are_refused_naming_the_option() {
        use clap::error::ErrorKind;
        for (bad, kind, needles) in [
            (
                &["--beta", "0.1,x"][..],
                ErrorKind::ValueValidation,
                &["--beta", "\"x\""][..],
            ),
            (
                &["--codebook-size", "8,-1"],
                ErrorKind::ValueValidation,
                &["--codebook-size", "\"-1\""],
            ),
            (
                &["--code-dim", "4,"],
                ErrorKind::ValueValidation,
                &["--code-dim"],
            ),
            (&["--beta"], ErrorKind::InvalidValue, &["--beta"]),
            // A flag that only starts alike is no list.
            (&["--betas", "1"], ErrorKind::UnknownArgument, &["--betas"]),
            // `--` ends the options: what follows is a positional, and the sweep takes none.
            (
                &["--", "--beta", "1"],
                ErrorKind::UnknownArgument,
                &["--beta"],
            ),
        ] {
            let e = parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert_eq!(e.kind(), kind, "{bad:?}: {e}");
            for n in needles {
                assert!(e.to_string().contains(n), "{bad:?}: {e}");
            }
        }
    }

    #[test]
    fn train_args_are_the_given_train_options_in_their_order() {
        let m = parse(&[
            "--lr=1e-3",
            "--out",
            "x",
            "--beta",
            "0.1,0.25",
            "--no-progress",
            "--list",
            "--hidden",
            "8",
        ])
        .unwrap();
        assert_eq!(
            train_args(&sweep_command(), &m, &["out", "list"]),
            args("--lr 1e-3 --no-progress --hidden 8")
        );
        let m = parse(&["--list"]).unwrap();
        assert!(train_args(&sweep_command(), &m, &["out", "list"]).is_empty());
    }

    #[test]
    fn seeds_and_shards() {
        assert_eq!(parse_seeds("3").unwrap(), [1, 2, 3]);
        assert_eq!(parse_seeds("3,7").unwrap(), [3, 7]);
        assert_eq!(parse_seeds("5,").ok(), None);
        assert!(parse_seeds("0").is_err() && parse_seeds("a").is_err());
        assert_eq!(parse_shard("1/4").unwrap(), (1, 4));
        for bad in ["4/4", "0/0", "1", "a/2", "-1/2"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    pub(crate) fn spec() -> SweepSpec {
        let m = parse(&[
            "--beta", "0.1,0.25", "--hidden", "8", "--out=x", "--list", "--lr", "1e-3",
        ])
        .unwrap();
        let mut axes = Axes::from_matches(&m);
        axes.quantizers = vec![Vq, SoftEm];
        axes.codebook_size = vec![8, 16, 32];
        axes.seeds = vec![1, 2];
        SweepSpec {
            base: RunConfig::default(),
            axes,
            out: PathBuf::from("out"),
            command: String::new(),
            train_args: train_args(&sweep_command(), &m, &["out", "list"]),
        }
    }

    #[test]
    fn the_grid_its_shares_and_its_commands() {
        let s = spec();
        assert_eq!(s.train_args, args("--hidden 8 --lr 1e-3"));
        let points = s.points();
        assert_eq!(points.len(), 2 * 3 * 2 * 2);
        // Quantizers outermost, seeds innermost; every point differs.
        assert_eq!(points[0].name(), "vq-k8-d64-beta0.1-rw1-tau1-seed1");
        assert_eq!(points[1].name(), "vq-k8-d64-beta0.1-rw1-tau1-seed2");
        assert_eq!(points[2].name(), "vq-k8-d64-beta0.25-rw1-tau1-seed1");
        assert_eq!(points[23].name(), "soft-em-k32-d64-beta0.25-rw1-tau1-seed2");
        let mut names: Vec<String> = points.iter().map(Point::name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 24);
        // The shares partition the grid.
        let shares: Vec<Vec<Point>> = (0..5).map(|i| shard(points.clone(), (i, 5))).collect();
        assert_eq!(shares.iter().map(Vec::len).sum::<usize>(), 24);
        assert_eq!(shares[1][0], points[1]);
        assert_eq!(shares[1][1], points[6]);
        // A point's configuration and its train command say the same.
        let c = points[23].config(&s.base);
        assert_eq!(
            (
                c.quantizer.kind,
                c.quantizer.codebook_size(),
                c.quantizer.beta,
                c.training.seed
            ),
            (SoftEm, 32, 0.25, 2)
        );
        let cmd = &s.list()[23];
        assert_eq!(
            cmd,
            "vqib train --hidden 8 --lr 1e-3 --quantizer soft-em --codebook-size 32 --code-dim 64 --beta 0.25 --rate-weight 1 --temperature 1 --seed 2 --out out/runs/soft-em-k32-d64-beta0.25-rw1-tau1-seed2"
        );
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}
