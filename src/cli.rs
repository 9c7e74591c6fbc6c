//! The subcommands. Their options come from the library's types: `train` flattens
//! [`RunConfig`] (every section's flags, docs and defaults), `bench` takes [`BenchArgs`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, CommandFactory, Parser, Subcommand};
use vqib::RunConfig;
use vqib::bench::BenchArgs;
use vqib::error::InputError;
use vqib::quantizer::QuantizerKind;
use vqib::report::{table, table3};
use vqib::run::RunDir;
use vqib::train::{self, ResumeOverrides, TrainOptions, Trainer};

#[derive(Parser)]
#[command(
    name = "vqib",
    version,
    about = "Train and study VQ-VAEs as information bottlenecks"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a VQ-VAE (`train --resume RUN` is an alias of `resume RUN`).
    Train(TrainCmd),
    /// Continue a run from its latest checkpoint; its configuration fixes every other setting.
    Resume(ResumeArgs),
    /// Evaluate a run's latest checkpoint on the test split; prints and saves RUN/eval.json.
    Eval {
        /// The run directory.
        run: PathBuf,
        /// Read the data from here instead of the run's --data-dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Code maps drawn per test image for the seed's expected distortion [default: the
        /// run's --eval-samples]; 0 skips it.
        #[arg(long, value_name = "S")]
        eval_samples: Option<usize>,
    },
    /// Train every quantizer with every seed and write report.html, report.md, summary.csv.
    /// Takes train's options for the shared settings; a finished run is reused, a stopped one
    /// resumed, so rerunning the command continues an interrupted comparison.
    Compare(CompareArgs),
    /// Train a grid of runs and report the trade-off: each of --quantizers, --beta,
    /// --rate-weight, --codebook-size, --temperature, --code-dim and --seeds takes a
    /// comma-separated list, every combination is a run (OUT/runs/NAME, reused when finished,
    /// resumed when stopped). Writes OUT/sweep.csv and OUT/sweep.html (rate-distortion curves,
    /// the information plane, perplexity and codes used against K). --list prints one
    /// `vqib train` command a point, --shard I/N trains only every N-th point from the I-th,
    /// --collect reports the finished runs. Takes train's other options for the shared settings.
    Sweep(SweepArgs),
    /// Measure one benchmark case in this process and print one JSON line: throughput, seconds a
    /// run, achieved GFLOP/s and peak memory (bench/compare runs it beside the PyTorch reference).
    Bench(BenchArgs),
    /// Entropy-code the code maps of images into a .vqz file (format in the README): the nearest
    /// code of every latent vector, ANS-coded against the run's learned prior or the code
    /// marginal of its training split. Prints bits per image and per pixel beside the bounds.
    Compress {
        /// The run directory (its newest checkpoint codes).
        run: PathBuf,
        /// A directory of PNG/JPEG images (resized to the run's image size).
        #[arg(long, conflicts_with = "split", required_unless_present = "split")]
        input: Option<PathBuf>,
        /// A split of the run's data set.
        #[arg(long, value_enum)]
        split: Option<SplitArg>,
        /// The .vqz file to write.
        #[arg(long)]
        out: PathBuf,
        /// Read the data from here instead of the run's --data-dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Also decode, and report the PSNR and the sizes of the images raw and as PNG.
        #[arg(long)]
        compare: bool,
    },
    /// Decode a .vqz file with the run that wrote it into PNGs 000000.png, ... in a new directory
    /// (the model's hard decode: the decoder on the nearest codewords).
    Decompress {
        /// The run directory.
        run: PathBuf,
        /// The .vqz file.
        file: PathBuf,
        /// The directory to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure a model trained elsewhere: the information quantities of the codes, latents
    /// (with their codebook) or posterior logits in a safetensors file, and their coded length.
    Measure(vqib::measure::MeasureArgs),
    /// Write a PNG grid: test images (top rows) above their reconstructions.
    Reconstruct {
        /// The run directory.
        run: PathBuf,
        /// Output PNG file.
        #[arg(long, default_value = "reconstructions.png")]
        out: PathBuf,
        /// Number of test images.
        #[arg(long, default_value_t = 16)]
        n: usize,
        /// Read the data from here instead of the run's --data-dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// A split of a run's data set.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SplitArg {
    Train,
    Test,
}

/// How this invocation drives a run (not part of the run's configuration).
#[derive(Args)]
struct DriveArgs {
    /// Stop (saving a checkpoint) after N steps in this invocation.
    #[arg(long, value_name = "N")]
    max_steps: Option<u64>,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl DriveArgs {
    fn options(&self, stop: &Arc<AtomicBool>) -> TrainOptions {
        TrainOptions {
            progress: !self.no_progress,
            stop: stop.clone(),
            max_steps: self.max_steps,
            print_summary: true,
        }
    }
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    config: RunConfig,
    /// Run directory [default: runs/DATASET-QUANTIZER, numbered if taken].
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    drive: DriveArgs,
}

/// `train`: [`TrainArgs`], or with `--resume RUN` the alias of `resume RUN`.
#[derive(Args)]
struct TrainCmd {
    #[command(flatten)]
    train: TrainArgs,
    /// Continue this run instead, as `vqib resume RUN` (only --epochs, --data-dir, --max-steps
    /// and --no-progress may be given with it).
    #[arg(long, value_name = "RUN")]
    resume: Option<PathBuf>,
}

/// The clap ids of `train --resume RUN`'s own flags, the ones `resume RUN` takes too.
const RESUME_IDS: [&str; 5] = ["resume", "epochs", "data_dir", "max_steps", "no_progress"];

#[derive(Args)]
struct ResumeArgs {
    /// The run directory.
    run: PathBuf,
    /// Train to this many epochs in all (extends a finished run).
    #[arg(long)]
    epochs: Option<usize>,
    /// Read the data from here (if it moved).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    drive: DriveArgs,
    /// Whatever else is on the command line (hidden): refused after parsing, naming the first,
    /// as a setting the run fixes (a flag of train) or as an unknown flag.
    #[arg(hide = true, allow_hyphen_values = true)]
    rest: Vec<OsString>,
}

/// `--quantizers`, of `compare` and `sweep`.
#[derive(Args)]
struct QuantizerList {
    /// Quantizers, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "vq,vq-ema,soft-em"
    )]
    quantizers: Vec<QuantizerKind>,
}

#[derive(Args)]
struct CompareArgs {
    #[command(flatten)]
    quantizers: QuantizerList,
    /// Number of seeds (1..=N).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Args)]
struct SweepArgs {
    #[command(flatten)]
    quantizers: QuantizerList,
    /// Seeds: a count N (seeds 1..=N) or a comma-separated list (`--seeds 3,7`).
    #[arg(long, default_value = "1", value_name = "N|LIST")]
    seeds: String,
    /// Print one `vqib train ...` command a point and exit.
    #[arg(long, conflicts_with_all = ["shard", "collect"])]
    list: bool,
    /// Train only share I of N (0 <= I < N): the points whose index is I modulo N; no report.
    #[arg(long, value_name = "I/N", conflicts_with = "collect")]
    shard: Option<String>,
    /// Train nothing: write sweep.csv and sweep.html from the finished runs.
    #[arg(long)]
    collect: bool,
    #[command(flatten)]
    train: TrainArgs,
}

/// The command line's grammar: [`Cli`]'s, `sweep`'s list-valued train options taking lists
/// ([`Axes::list_args`](vqib::experiment::sweep::Axes::list_args)), and train's `--quantizer`
/// and `--seed` hidden from the help of `compare` and `sweep`, which take lists instead (and
/// refuse them: [`refuse_single`]).
pub fn command() -> clap::Command {
    let hide_single = |c: clap::Command| {
        c.mut_arg("quantizer", |a| a.hide(true))
            .mut_arg("seed", |a| a.hide(true))
    };
    Cli::command()
        .mut_subcommand("sweep", vqib::experiment::sweep::Axes::list_args)
        .mut_subcommand("sweep", hide_single)
        .mut_subcommand("compare", hide_single)
}

/// Training was interrupted (Ctrl-C); a checkpoint was saved in the run directory.
#[derive(Debug)]
pub struct Interrupted(pub PathBuf);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted; checkpoint saved in {}", self.0.display())
    }
}

impl std::error::Error for Interrupted {}

/// Refuses a flag given to `resume RUN` or `train --resume RUN`: one of train's (RUN's
/// config.json fixes it) or an unknown one.
fn refuse_on_resume(flag: &str, run: &Path) -> InputError {
    let name = flag.split('=').next().unwrap_or(flag);
    let cmd = command();
    let is_train_flag = cmd.find_subcommand("train").is_some_and(|t| {
        t.get_arguments().any(|a| {
            a.get_long()
                .is_some_and(|l| name.strip_prefix("--") == Some(l))
        })
    });
    if !is_train_flag {
        let what = if name.starts_with('-') {
            "unknown flag"
        } else {
            "unexpected argument"
        };
        return InputError::config(format!(
            "{what} {flag}: resume takes only --epochs, --data-dir, --max-steps and --no-progress (see `vqib resume --help`)"
        ));
    }
    InputError::config(format!(
        "{name} cannot be changed when resuming: {} fixes it (only --epochs, --data-dir, --max-steps and --no-progress may be given)",
        RunDir::new(run).config_path().display()
    ))
}

/// `train --resume RUN ...` as `resume RUN ...`: refuses any flag but [`RESUME_IDS`] given on
/// the command line (the first given), and takes `--epochs` only when given.
fn resume_alias(
    a: TrainArgs,
    run: &Path,
    matches: &clap::ArgMatches,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let m = matches
        .subcommand_matches("train")
        .expect("train was matched");
    let cmd = command();
    let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let fixed = cmd
        .find_subcommand("train")
        .expect("train is a subcommand")
        .get_arguments()
        .map(|arg| (arg.get_id().as_str(), arg.get_long()))
        .filter(|(id, _)| !RESUME_IDS.contains(id) && given(id))
        .min_by_key(|(id, _)| m.index_of(id));
    if let Some((id, long)) = fixed {
        let flag = format!("--{}", long.unwrap_or(id));
        return Err(refuse_on_resume(&flag, run).into());
    }
    let overrides = ResumeOverrides {
        epochs: given("epochs").then_some(a.config.training.epochs),
        data_dir: a.config.data.data_dir,
    };
    let trainer = Trainer::resume(run, overrides)?;
    finish_training(trainer.fit(&a.drive.options(stop))?.run_dir, stop)
}

fn default_out(cfg: &RunConfig) -> PathBuf {
    let dataset = clap::ValueEnum::to_possible_value(&cfg.data.dataset)
        .map(|p| p.get_name().to_string())
        .unwrap_or_default();
    let base = format!("runs/{dataset}-{}", cfg.quantizer.kind);
    let mut p = PathBuf::from(&base);
    let mut i = 2;
    while p.exists() {
        p = PathBuf::from(format!("{base}-{i}"));
        i += 1;
    }
    p
}

/// Runs the parsed command; `matches` (of [`command`]) tells which flags were given explicitly.
pub fn run(cli: Cli, matches: &clap::ArgMatches, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Train(TrainCmd {
            train: a,
            resume: Some(run),
        }) => resume_alias(a, &run, matches, &stop),
        Cmd::Train(TrainCmd {
            train: a,
            resume: None,
        }) => {
            let out = a.out.clone().unwrap_or_else(|| default_out(&a.config));
            let trainer = Trainer::create(a.config, &out)?;
            finish_training(trainer.fit(&a.drive.options(&stop))?.run_dir, &stop)
        }
        Cmd::Resume(a) => {
            if let Some(first) = a.rest.first() {
                return Err(refuse_on_resume(&first.to_string_lossy(), &a.run).into());
            }
            let overrides = ResumeOverrides {
                epochs: a.epochs,
                data_dir: a.data_dir,
            };
            let trainer = Trainer::resume(&a.run, overrides)?;
            finish_training(trainer.fit(&a.drive.options(&stop))?.run_dir, &stop)
        }
        Cmd::Compare(a) => compare(a, matches, &stop),
        Cmd::Sweep(a) => sweep(a, matches, &stop),
        Cmd::Eval {
            run,
            data_dir,
            eval_samples,
        } => {
            let run = RunDir::new(run);
            let (cfg, m) = train::eval_run(&run, data_dir, eval_samples)?;
            println!(
                "{}",
                table(&train::summary_rows(
                    &m,
                    &cfg.quantizer.code_space().to_string()
                ))
            );
            println!("information quantities per latent vector, objectives per image:");
            println!(
                "{}",
                table3(&train::info_rows(&m, cfg.quantizer.temperature))
            );
            println!("saved {}", run.eval_json().display());
            Ok(())
        }
        Cmd::Bench(b) => {
            println!("{}", vqib::bench::run_case(&b)?);
            Ok(())
        }
        Cmd::Compress {
            run,
            input,
            split,
            out,
            data_dir,
            compare,
        } => {
            use vqib::codec::run::Source;
            let source = match (input, split) {
                (Some(d), _) => Source::Dir(d),
                (None, Some(SplitArg::Train)) => Source::Train,
                (None, _) => Source::Test,
            };
            let c = vqib::codec::compress_run(&RunDir::new(run), &source, &out, data_dir, compare)?;
            println!("{}", table(&vqib::codec::run::rate_rows(&c)));
            println!("wrote {}", out.display());
            Ok(())
        }
        Cmd::Decompress { run, file, out } => {
            let n = vqib::codec::decompress_run(&RunDir::new(run), &file, &out)?;
            println!("wrote {n} images to {}", out.display());
            Ok(())
        }
        Cmd::Measure(a) => vqib::measure::run(&a),
        Cmd::Reconstruct {
            run,
            out,
            n,
            data_dir,
        } => {
            train::reconstruct_grid(&RunDir::new(run), &out, n, data_dir)?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// An experiment's run did not finish: Ctrl-C ([`Interrupted`], exit 130), a requested stop
/// (`--max-steps`: said, exit 0), or an error.
fn stopped_or(e: anyhow::Error, out: PathBuf, stop: &AtomicBool) -> anyhow::Result<()> {
    if stop.load(Ordering::SeqCst) {
        anyhow::bail!(Interrupted(out));
    }
    if let Some(s) = e.downcast_ref::<vqib::experiment::StoppedEarly>() {
        println!("{s}");
        return Ok(());
    }
    Err(e)
}

fn finish_training(run_dir: PathBuf, stop: &AtomicBool) -> anyhow::Result<()> {
    if stop.load(Ordering::SeqCst) {
        anyhow::bail!(Interrupted(run_dir));
    }
    Ok(())
}

/// The command line as text, for the reports (arguments that are not UTF-8 shown lossily).
fn command_line(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `compare` and `sweep` take lists of quantizers and seeds, not one.
fn refuse_single(matches: &clap::ArgMatches, cmd: &str) -> Result<(), InputError> {
    let given = |id: &str| {
        matches
            .subcommand_matches(cmd)
            .is_some_and(|m| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
    };
    for (id, flag) in [("quantizer", "--quantizer"), ("seed", "--seed")] {
        if given(id) {
            return Err(InputError::config(format!(
                "{cmd} does not take {flag} (use --quantizers and --seeds)"
            )));
        }
    }
    Ok(())
}

/// The clap ids of `sweep`'s own options (not passed on to the `vqib train` commands of
/// `--list`).
const SWEEP_IDS: [&str; 6] = ["quantizers", "seeds", "list", "shard", "collect", "out"];

fn sweep(a: SweepArgs, matches: &clap::ArgMatches, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    use vqib::experiment::sweep::{self, Axes, SweepSpec};
    refuse_single(matches, "sweep")?;
    let m = matches
        .subcommand_matches("sweep")
        .expect("sweep was matched");
    let cmd = command();
    let mut axes = Axes::from_matches(m);
    axes.quantizers = a.quantizers.quantizers;
    axes.seeds = sweep::parse_seeds(&a.seeds)?;
    axes.validate()?;
    let share = a.shard.as_deref().map(sweep::parse_shard).transpose()?;
    let out = a
        .train
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/sweep"));
    let spec = SweepSpec {
        base: a.train.config,
        axes,
        out: out.clone(),
        command: command_line(&std::env::args_os().collect::<Vec<_>>()),
        train_args: sweep::train_args(
            cmd.find_subcommand("sweep").expect("sweep is a subcommand"),
            m,
            &SWEEP_IDS,
        ),
    };
    // Every point's configuration is checked before anything is trained.
    for p in spec.points() {
        p.config(&spec.base).resolve()?;
    }
    if a.list {
        for line in spec.list() {
            println!("{line}");
        }
        return Ok(());
    }
    if !a.collect {
        if let Err(e) = sweep::train(&spec, share, &a.train.drive.options(stop)) {
            return stopped_or(e, out, stop);
        }
        if let Some((i, n)) = share {
            println!(
                "share {i}/{n} finished; `vqib sweep ... --collect` with the same options writes the report"
            );
            return Ok(());
        }
    }
    let c = sweep::collect(&spec)?;
    println!("{}", sweep::summary_table(&c.rows));
    println!(
        "{} of {} points finished; wrote {} and {}",
        c.results.len(),
        c.results.len() + c.missing.len(),
        out.join("sweep.csv").display(),
        out.join("sweep.html").display()
    );
    Ok(())
}

fn compare(
    a: CompareArgs,
    matches: &clap::ArgMatches,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    refuse_single(matches, "compare")?;
    if a.seeds == 0 {
        return Err(InputError::config("--seeds must be at least 1").into());
    }
    use vqib::experiment::sweep::{check_runs, no_duplicates};
    no_duplicates("--quantizers", &a.quantizers.quantizers)?;
    check_runs(
        "--quantizers x --seeds",
        a.seeds.saturating_mul(a.quantizers.quantizers.len() as u64),
    )?;
    let out = a
        .train
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/compare"));
    let spec = vqib::experiment::CompareSpec {
        base: a.train.config,
        quantizers: a.quantizers.quantizers,
        seeds: (1..=a.seeds).collect(),
        out: out.clone(),
        command: command_line(&std::env::args_os().collect::<Vec<_>>()),
    };
    let (results, verdicts) = match vqib::experiment::run(&spec, &a.train.drive.options(stop)) {
        Ok(r) => r,
        Err(e) => return stopped_or(e, out, stop),
    };
    print!(
        "{}",
        vqib::experiment::terminal_summary(&results, &verdicts, &out)
    );
    Ok(())
}
