//! The `vqib` command line: `train`, `eval`, `compare`, `reconstruct`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use vqib::config::{PriorKind, RateKind};
use vqib::data::DatasetKind;
use vqib::error::{InputError, NonFiniteError};
use vqib::report::table;
use vqib::report::table3;
use vqib::train::{self, TrainOptions};
use vqib::{CodebookInit, DeviceKind, QuantizerKind, RunConfig};

#[derive(Parser)]
#[command(
    name = "vqib",
    version,
    about = "Train and study VQ-VAEs as information bottlenecks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a VQ-VAE (or continue one with --resume RUN_DIR).
    Train(TrainArgs),
    /// Evaluate a run's latest checkpoint on the test split; prints and saves RUN/eval.json.
    Eval {
        /// The run directory.
        run: PathBuf,
        /// Read the data from here instead of the run's --data-dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Train every quantizer with every seed and write report.html, report.md, summary.csv.
    /// Takes train's options for the shared settings; a finished run is reused, a stopped one
    /// resumed, so rerunning the command continues an interrupted comparison.
    Compare {
        /// Quantizers to compare, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "vq,vq-ema,soft-em"
        )]
        quantizers: Vec<QuantizerKind>,
        /// Number of seeds (1..=N).
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Measure one benchmark case in this process and print one JSON line: throughput, seconds a
    /// run, achieved GFLOP/s and peak memory (bench/compare runs it beside the PyTorch reference).
    Bench(BenchArgs),
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

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchCase {
    /// Hard assignment: distances, argmin, gather (N = 8192, D = 64).
    Assign,
    /// Soft-EM E-step and its expected counts and sums (N = 8192, D = 64, m = 10).
    Estep,
    /// One training step (forward, backward, Adam, EMA / M-step).
    Train,
    /// Evaluation: inference and the information quantities.
    Eval,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, value_enum)]
    case: BenchCase,
    /// Codebook size (assign, estep).
    #[arg(long, default_value_t = 512)]
    k: usize,
    /// Architecture (train, eval).
    #[arg(long, value_enum, default_value = "mnist")]
    model: vqib::bench::ModelCase,
    /// Quantizer (train, eval).
    #[arg(long, value_enum, default_value = "vq")]
    quantizer: QuantizerKind,
    /// Batch size (train) or number of images (eval).
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Timed runs (after the warm-up runs).
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Device (train, eval).
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
}

#[derive(Args)]
struct TrainArgs {
    /// Continue the run in this directory from its latest checkpoint; its config.json fixes every
    /// setting but --epochs (to extend it), --data-dir (if the data moved) and --max-steps.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Data set.
    #[arg(long, value_enum, default_value = "shapes")]
    dataset: DatasetKind,
    /// Directory holding the data set's files.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Folder data sets: resize every image to SIZE x SIZE.
    #[arg(long, value_name = "SIZE")]
    image_size: Option<usize>,
    /// Quantizer in the bottleneck.
    #[arg(long, value_enum, default_value = "vq")]
    quantizer: QuantizerKind,
    /// K, the number of codewords.
    #[arg(long, default_value_t = 512)]
    codebook_size: usize,
    /// D, the dimension of a codeword.
    #[arg(long, default_value_t = 64)]
    code_dim: usize,
    /// Channels of the conv layers [default: 128, 256 for cifar10].
    #[arg(long)]
    hidden: Option<usize>,
    /// Weight of the commitment term.
    #[arg(long, default_value_t = 0.25)]
    beta: f64,
    /// EMA decay of the codebook [default: 0.99 for vq-ema, 0.999 for soft-em].
    #[arg(long)]
    ema_decay: Option<f64>,
    /// Laplace smoothing of the EMA counts.
    #[arg(long, default_value_t = 1e-5)]
    ema_epsilon: f64,
    /// Temperature tau of p(z|i) = softmax(-||z_e - e_z||^2 / tau) (soft-em, rate terms, soft
    /// evaluation).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Monte-Carlo samples per latent vector (soft-em).
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// Explicit rate term: B * H(p(Z|I), r) (vdib) or B * KL(p(Z|I) || r) (vib).
    #[arg(long, value_enum, default_value = "none")]
    rate: RateKind,
    /// B, the weight of the rate term.
    #[arg(long, default_value_t = 1.0)]
    rate_weight: f64,
    /// The prior r(z): uniform, or a learned categorical (softmax of trainable logits).
    #[arg(long, value_enum, default_value = "uniform")]
    prior: PriorKind,
    /// Standard deviation of the Gaussian decoder in the reported distortion term.
    #[arg(long, default_value_t = 1.0)]
    sigma: f64,
    /// Also evaluate on the test split every N steps (0 = at each epoch's end only).
    #[arg(long, default_value_t = 0, value_name = "N")]
    eval_every: u64,
    /// Codebook initialisation.
    #[arg(long, value_enum, default_value = "uniform")]
    init: CodebookInit,
    /// Re-seed codes unused for N steps from random encoder outputs (0 = off).
    #[arg(long, default_value_t = 0, value_name = "N")]
    dead_code_steps: u64,
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where tensors live.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// Run directory [default: runs/DATASET-QUANTIZER, numbered if taken].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use only the first N training images (0 = all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    train_limit: usize,
    /// Use only the first N test images (0 = all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    test_limit: usize,
    /// Shapes data set: number of generated training / test images.
    #[arg(long, default_value_t = 4096)]
    shapes_train: usize,
    #[arg(long, default_value_t = 512)]
    shapes_test: usize,
    /// Log a training record every N steps.
    #[arg(long, default_value_t = 10, value_name = "N")]
    log_every: u64,
    /// Also checkpoint every N steps (0 = at each epoch's end only).
    #[arg(long, default_value_t = 0, value_name = "N")]
    checkpoint_every: u64,
    /// Stop (saving a checkpoint) after N steps in this invocation.
    #[arg(long, value_name = "N")]
    max_steps: Option<u64>,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn value_name<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn default_out(dataset: DatasetKind, q: QuantizerKind) -> PathBuf {
    let base = format!("runs/{}-{}", value_name(&dataset), value_name(&q));
    let mut p = PathBuf::from(&base);
    let mut i = 2;
    while p.exists() {
        p = PathBuf::from(format!("{base}-{i}"));
        i += 1;
    }
    p
}

fn config_from(a: &TrainArgs) -> RunConfig {
    RunConfig {
        dataset: a.dataset,
        data_dir: a.data_dir.clone(),
        image_size: a.image_size,
        shapes_train: a.shapes_train,
        shapes_test: a.shapes_test,
        train_limit: a.train_limit,
        test_limit: a.test_limit,
        image_shape: None,
        quantizer: a.quantizer,
        codebook_size: a.codebook_size,
        code_dim: a.code_dim,
        hidden: a.hidden.unwrap_or(if a.dataset == DatasetKind::Cifar10 {
            256
        } else {
            128
        }),
        beta: a.beta,
        ema_decay: a
            .ema_decay
            .unwrap_or(if a.quantizer == QuantizerKind::SoftEm {
                0.999
            } else {
                0.99
            }),
        ema_epsilon: a.ema_epsilon,
        init: a.init,
        dead_code_steps: a.dead_code_steps,
        temperature: a.temperature,
        samples: a.samples,
        rate: a.rate,
        rate_weight: a.rate_weight,
        prior: a.prior,
        sigma: a.sigma,
        eval_every: a.eval_every,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        device: a.device,
        log_every: a.log_every,
        checkpoint_every: a.checkpoint_every,
    }
}

/// Flags of `train` given on the command line (not defaults).
fn explicit_train_flags(m: &clap::ArgMatches) -> Vec<String> {
    let Some((name @ ("train" | "compare"), sub)) = m.subcommand() else {
        return Vec::new();
    };
    let cmd = <Cli as clap::CommandFactory>::command();
    let args: Vec<String> = cmd
        .find_subcommand(name)
        .map(|t| {
            t.get_arguments()
                .map(|a| a.get_id().as_str().to_string())
                .collect()
        })
        .unwrap_or_default();
    sub.ids()
        .filter(|id| args.iter().any(|a| a == id.as_str()))
        .filter(|id| sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect()
}

/// Flags that may accompany `--resume`; every other setting comes from the run's config.json.
const RESUME_FLAGS: &[&str] = &["resume", "epochs", "data_dir", "no_progress", "max_steps"];

fn run(cli: Cli, explicit: Vec<String>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Train(a) => {
            let opts = TrainOptions {
                progress: !a.no_progress,
                stop: stop.clone(),
                max_steps: a.max_steps,
                print_summary: true,
            };
            let outcome = match &a.resume {
                Some(dir) => {
                    let fixed: Vec<String> = explicit
                        .iter()
                        .filter(|f| !RESUME_FLAGS.contains(&f.as_str()))
                        .map(|f| format!("--{}", f.replace('_', "-")))
                        .collect();
                    if !fixed.is_empty() {
                        return Err(InputError::config(format!(
                            "{} cannot be changed when resuming: {} fixes it (only --epochs, --data-dir, --max-steps and --no-progress may be given with --resume)",
                            fixed.join(", "),
                            dir.join("config.json").display()
                        ))
                        .into());
                    }
                    let given = |f: &str| explicit.iter().any(|e| e == f);
                    let epochs = given("epochs").then_some(a.epochs);
                    let data_dir = if given("data_dir") {
                        a.data_dir.clone()
                    } else {
                        None
                    };
                    train::resume(dir, epochs, data_dir, &opts)?
                }
                None => {
                    let cfg = config_from(&a);
                    let out = a
                        .out
                        .clone()
                        .unwrap_or_else(|| default_out(a.dataset, a.quantizer));
                    train::train_new(cfg, &out, &opts)?
                }
            };
            if stop.load(Ordering::SeqCst) {
                anyhow::bail!(Interrupted(outcome.run_dir));
            }
            Ok(())
        }
        Cmd::Compare {
            quantizers,
            seeds,
            train: a,
        } => {
            for flag in ["resume", "quantizer", "seed"] {
                if explicit.iter().any(|e| e == flag) {
                    return Err(InputError::config(format!(
                        "compare does not take --{flag} (use --quantizers and --seeds)"
                    ))
                    .into());
                }
            }
            if seeds == 0 {
                return Err(InputError::config("--seeds must be at least 1").into());
            }
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/compare"));
            let spec = vqib::compare::CompareSpec {
                base: config_from(&a),
                quantizers,
                seeds: (1..=seeds).collect(),
                out: out.clone(),
                ema_decay: a.ema_decay,
                command: std::env::args().collect::<Vec<_>>().join(" "),
            };
            let opts = TrainOptions {
                progress: !a.no_progress,
                stop: stop.clone(),
                max_steps: a.max_steps,
                print_summary: true,
            };
            if let Err(e) = vqib::compare::run(&spec, &opts) {
                if stop.load(Ordering::SeqCst) {
                    anyhow::bail!(Interrupted(out));
                }
                return Err(e);
            }
            println!("{}", std::fs::read_to_string(out.join("report.md"))?);
            println!("report: {}", out.join("report.html").display());
            Ok(())
        }
        Cmd::Eval { run, data_dir } => {
            let (cfg, m) = train::eval_run(&run, data_dir)?;
            println!("{}", table(&train::summary_rows(&m, cfg.codebook_size)));
            println!("information quantities per latent vector, objectives per image:");
            println!("{}", table3(&train::info_rows(&m, cfg.temperature)));
            println!("saved {}", run.join("eval.json").display());
            Ok(())
        }
        Cmd::Bench(b) => bench(&b),
        Cmd::Reconstruct {
            run,
            out,
            n,
            data_dir,
        } => {
            train::reconstruct_grid(&run, &out, n, data_dir)?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

#[derive(Debug)]
struct Interrupted(PathBuf);
impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted; checkpoint saved in {}", self.0.display())
    }
}
impl std::error::Error for Interrupted {}

fn bench(b: &BenchArgs) -> anyhow::Result<()> {
    use vqib::assign::Codebook;
    use vqib::bench::{self, CODE_DIM, N_VECTORS, SAMPLES};
    let (rss0, _) = bench::rss_mib();
    let threads = rayon::current_num_threads();
    let (name, secs, items, unit, flops) = match b.case {
        BenchCase::Assign | BenchCase::Estep => {
            let z = bench::normal(N_VECTORS * CODE_DIM, 1);
            let e = bench::normal(b.k * CODE_DIM, 2);
            let cb = Codebook::new(&e, CODE_DIM);
            let flops = 2.0 * (N_VECTORS * b.k * CODE_DIM) as f64;
            let secs = if b.case == BenchCase::Assign {
                bench::time_it(b.warmup, b.iters, || {
                    std::hint::black_box(bench::assign_case(&z, &cb));
                })
            } else {
                let mut seed = 0;
                bench::time_it(b.warmup, b.iters, || {
                    seed += 1;
                    std::hint::black_box(bench::estep_case(&z, &cb, SAMPLES, seed));
                })
            };
            let name = if b.case == BenchCase::Assign {
                "assign"
            } else {
                "estep"
            };
            (
                format!("{name} K={}", b.k),
                secs,
                N_VECTORS,
                "vectors",
                flops,
            )
        }
        BenchCase::Train => {
            let dev = train::device(b.device)?.autodiff();
            let mut t = bench::TrainBench::new(b.model, b.quantizer, b.batch, &dev);
            let secs = bench::time_it(b.warmup, b.iters, || {
                std::hint::black_box(t.step());
            });
            let flops = bench::train_flops(b.model, b.batch, t.cfg.codebook_size, CODE_DIM);
            let q = format!("{:?}", b.quantizer).to_lowercase();
            let m = format!("{:?}", b.model).to_lowercase();
            (format!("train {m} {q}"), secs, b.batch, "images", flops)
        }
        BenchCase::Eval => {
            let dev = train::device(b.device)?;
            let t = bench::EvalBench::new(b.model, b.quantizer, b.batch, &dev);
            let secs = bench::time_it(b.warmup, b.iters, || {
                std::hint::black_box(t.run());
            });
            let flops = bench::eval_flops(b.model, t.images(), t.cfg.codebook_size, CODE_DIM);
            let q = format!("{:?}", b.quantizer).to_lowercase();
            let m = format!("{:?}", b.model).to_lowercase();
            (format!("eval {m} {q}"), secs, t.images(), "images", flops)
        }
    };
    let (_, peak) = bench::rss_mib();
    let line = serde_json::json!({
        "impl": "vqib",
        "case": name,
        "threads": threads,
        "secs_per_run": secs,
        "items_per_s": items as f64 / secs,
        "unit": unit,
        "gflops": flops / secs / 1e9,
        "peak_rss_mib": peak,
        "base_rss_mib": rss0,
    });
    println!("{line}");
    Ok(())
}

fn main() -> ExitCode {
    // Reuse freed buffers across training steps instead of faulting fresh pages in (see alloc).
    vqib::alloc::keep_freed_memory();
    // burn materialises loaded optimizer state on its default device, which prefers a GPU when one
    // is compiled in; keep that on the CPU (the state moves to the parameters' device on the next
    // step). Set before any other thread exists.
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: no other thread has been started yet.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let explicit = explicit_train_flags(&matches);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C exits at once.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: saving a checkpoint, then stopping (Ctrl-C again to quit now)");
        });
    }
    match run(cli, explicit, stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<InputError>().is_some() {
                ExitCode::from(2)
            } else if e.downcast_ref::<Interrupted>().is_some() {
                ExitCode::from(130)
            } else if e.downcast_ref::<NonFiniteError>().is_some() {
                ExitCode::from(3)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
