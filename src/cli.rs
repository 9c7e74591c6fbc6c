//! The subcommands. Their options come from the library's types: `train` flattens
//! [`RunConfig`] (every section's flags, docs and defaults), `bench` takes [`BenchArgs`].

use std::ffi::OsString;
use std::path::PathBuf;
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
    Train(TrainArgs),
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

/// The arguments of the command line as clap should see them: `sweep`'s list-valued train
/// options (`--beta 0.1,0.25`, ...) taken out ([`vqib::experiment::sweep::Axes`] reads them).
pub fn prepare_args(mut args: Vec<OsString>) -> Result<Vec<OsString>, InputError> {
    if arg_is(&args, 1, "sweep") {
        vqib::experiment::sweep::Axes::take_from_args(&mut args)?;
    }
    Ok(args)
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

/// Whether argument `i` is `word` (arguments need not be UTF-8: paths may be any bytes).
fn arg_is(args: &[OsString], i: usize, word: &str) -> bool {
    args.get(i).and_then(|a| a.to_str()) == Some(word)
}

/// `train --resume RUN ...` is `resume RUN ...`.
pub fn rewrite_resume_alias(mut args: Vec<OsString>) -> Vec<OsString> {
    if !arg_is(&args, 1, "train") {
        return args;
    }
    let at = args.iter().position(|a| {
        a.to_str()
            .is_some_and(|a| a == "--resume" || a.starts_with("--resume="))
    });
    if let Some(i) = at {
        let inline = args[i]
            .to_str()
            .and_then(|a| a.strip_prefix("--resume="))
            .map(OsString::from);
        let dir = match inline {
            Some(d) => {
                args.remove(i);
                d
            }
            None if i + 1 < args.len() => {
                args.remove(i);
                args.remove(i)
            }
            None => return args,
        };
        args[1] = "resume".into();
        args.insert(2, dir);
    }
    args
}

/// A flag `resume` does not take: say why, instead of clap's bare "unexpected argument".
pub fn explain_resume_error(args: &[OsString], e: &clap::Error) -> Option<String> {
    if !arg_is(args, 1, "resume") || e.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let flag = e.get(clap::error::ContextKind::InvalidArg)?.to_string();
    let name = flag.split('=').next().unwrap_or(&flag);
    let is_train_flag = Cli::command()
        .find_subcommand("train")
        .is_some_and(|t| {
            t.get_arguments().any(|a| {
                a.get_long()
                    .is_some_and(|l| name.strip_prefix("--") == Some(l))
            })
        });
    if !is_train_flag {
        return Some(format!(
            "unknown flag {flag}: resume takes only --epochs, --data-dir, --max-steps and --no-progress (see `vqib resume --help`)"
        ));
    }
    let run = args.get(2).map(PathBuf::from).unwrap_or_default();
    Some(format!(
        "{flag} cannot be changed when resuming: {} fixes it (only --epochs, --data-dir, --max-steps and --no-progress may be given)",
        RunDir::new(run).config_path().display()
    ))
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

/// Runs the parsed command; `matches` tells which flags were given explicitly.
/// `raw_args` is the command line as given (before [`prepare_args`]).
pub fn run(
    cli: Cli,
    matches: &clap::ArgMatches,
    raw_args: &[OsString],
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Train(a) => {
            let out = a.out.clone().unwrap_or_else(|| default_out(&a.config));
            let trainer = Trainer::create(a.config, &out)?;
            finish_training(trainer.fit(&a.drive.options(&stop))?.run_dir, &stop)
        }
        Cmd::Resume(a) => {
            let overrides = ResumeOverrides {
                epochs: a.epochs,
                data_dir: a.data_dir,
            };
            let trainer = Trainer::resume(&a.run, overrides)?;
            finish_training(trainer.fit(&a.drive.options(&stop))?.run_dir, &stop)
        }
        Cmd::Compare(a) => compare(a, matches, &stop),
        Cmd::Sweep(a) => sweep(a, matches, raw_args, &stop),
        Cmd::Eval {
            run,
            data_dir,
            eval_samples,
        } => {
            let run = RunDir::new(run);
            let (cfg, m) = train::eval_run(&run, data_dir, eval_samples)?;
            println!(
                "{}",
                table(&train::summary_rows(&m, cfg.quantizer.codebook_size))
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

fn sweep(
    a: SweepArgs,
    matches: &clap::ArgMatches,
    raw_args: &[OsString],
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    use vqib::experiment::sweep::{self, Axes, SweepSpec};
    refuse_single(matches, "sweep")?;
    let mut args = raw_args.to_vec();
    let mut axes = Axes::take_from_args(&mut args)?;
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
        command: command_line(raw_args),
        train_args: sweep::train_args(
            &args
                .iter()
                .skip(2)
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
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
    if let Err(e) = vqib::experiment::run(&spec, &a.train.drive.options(stop)) {
        return stopped_or(e, out, stop);
    }
    println!("{}", std::fs::read_to_string(out.join("report.md"))?);
    println!("report: {}", out.join("report.html").display());
    Ok(())
}
