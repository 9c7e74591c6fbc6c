//! The bottleneck's section of a run's configuration: which quantizer, the size of its code
//! space, and its hyperparameters. It is at once the command line's flags (clap) and the
//! `quantizer` part of `config.json` (serde). The quantizer family owns it: `crate::config`
//! re-exports it and imports nothing back into `quantizer`.
//!
//! The code space ([`CodeSpace`]) follows from the quantizer and its flags:
//! * `vq`, `vq-ema`, `soft-em`, `sq`: K = `--codebook-size` codewords of dimension D =
//!   `--code-dim` (defaults 512 and 64);
//! * `fsq`: K = prod_c L_c for `--levels L_1,...,L_d`, D = d (default 8,5,5,5: 1000 codes);
//! * `lfq`: K = 2^D, D = `--code-dim` or log2 of `--codebook-size` (default 2^9 = 512);
//! * `rvq`: S = `--stages` codebooks (default 2) of K = `--codebook-size` codewords each; the
//!   code of a position is the S-tuple, K^S in all.
//!
//! [`QuantizerConfig::validate`] refuses a flag given to a quantizer that does not read it.

use serde::{Deserialize, Serialize};

use super::QuantizerKind;
use super::init::CodebookInit;
use crate::error::InputError;

/// The most codes a stage may have: FSQ's and LFQ's code spaces are bounded so that every code
/// fits a u32 with room, and a dense table of a stage's codes (a coding prior) stays at most
/// 128 MiB of f64.
pub const MAX_CODES: u64 = 1 << 24;

/// The most residual stages.
pub const MAX_STAGES: usize = 16;

/// FSQ's level sets recommended by Mentzer et al. (2023, Table 1) for 2^8 ... 2^16 codes.
pub const FSQ_LEVEL_SETS: &[(u32, &[usize])] = &[
    (8, &[8, 6, 5]),
    (10, &[8, 5, 5, 5]),
    (12, &[7, 5, 5, 5, 5]),
    (14, &[8, 8, 8, 6, 5]),
    (16, &[8, 8, 8, 5, 5, 5]),
];

/// How the decoder's gradient reaches z_e through a hard quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// z_e + sg(z_q - z_e): the gradient is copied unchanged (van den Oord et al. 2017).
    StraightThrough,
    /// The rotation trick (Fifty et al. 2024): z_q = sg(lambda R) z_e, the gradient rotated.
    Rotation,
}

impl Estimator {
    pub fn name(self) -> &'static str {
        match self {
            Estimator::StraightThrough => "straight-through",
            Estimator::Rotation => "rotation",
        }
    }
}

impl std::fmt::Display for Estimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How rvq's codebooks learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CodebookUpdate {
    /// By the codebook term's gradient (as vq).
    Gradient,
    /// By exponential moving averages of each stage's residuals (as vq-ema).
    Ema,
}

/// The size of a quantizer's code space: `stages` codes a position, each one of `size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeSpace {
    /// Codes a stage: K, the product of FSQ's levels, or 2^D for LFQ.
    pub size: u64,
    /// Codes a position (S for residual VQ, else 1).
    pub stages: usize,
}

impl CodeSpace {
    /// log of the number of S-tuples, S log K (nats): the rate of a uniform prior.
    pub fn log_size(&self) -> f64 {
        self.stages as f64 * (self.size as f64).ln()
    }

    /// The number of S-tuples as f64 (K^S may exceed every integer type).
    pub fn tuples(&self) -> f64 {
        (self.size as f64).powi(self.stages as i32)
    }
}

/// `512`, or `8^3` for S-tuples.
impl std::fmt::Display for CodeSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stages {
            1 => write!(f, "{}", self.size),
            s => write!(f, "{}^{s}", self.size),
        }
    }
}

/// The bottleneck: quantizer, code space and hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct QuantizerConfig {
    /// Quantizer in the bottleneck.
    #[arg(id = "quantizer", long = "quantizer", value_enum, default_value = "vq")]
    pub kind: QuantizerKind,
    /// K, the number of codewords (a stage's, rvq; lfq: 2^D) [default: 512].
    #[arg(long)]
    pub codebook_size: Option<usize>,
    /// D, the dimension of a codeword [default: 64; fsq: the number of levels; lfq: log2 K].
    #[arg(long)]
    pub code_dim: Option<usize>,
    /// fsq: the levels of each latent channel, e.g. 8,5,5,5 (K = their product) [default:
    /// 8,5,5,5].
    #[arg(long, value_delimiter = ',', num_args = 1.., value_name = "L1,L2,...")]
    pub levels: Option<Vec<usize>>,
    /// rvq: number of residual stages S [default: 2].
    #[arg(long, value_name = "S")]
    pub stages: Option<usize>,
    /// vq, vq-ema, rvq: how the gradient passes the quantizer [default: straight-through].
    #[arg(long, value_enum)]
    pub estimator: Option<Estimator>,
    /// rvq: how its codebooks learn [default: gradient].
    #[arg(long, value_enum)]
    pub update: Option<CodebookUpdate>,
    /// lfq: weight of the entropy penalty [default: 0.1].
    #[arg(long)]
    pub entropy_weight: Option<f64>,
    /// lfq: gamma, weight of the batch entropy inside the penalty [default: 1].
    #[arg(long)]
    pub diversity_weight: Option<f64>,
    /// Weight of the commitment term ||z_e - sg(z_q)||^2.
    #[arg(long, default_value_t = 0.25)]
    pub beta: f64,
    /// EMA decay of the codebook [default: 0.99 for vq-ema, 0.999 for soft-em].
    #[arg(long)]
    pub ema_decay: Option<f64>,
    /// Laplace smoothing of the EMA counts.
    #[arg(long, default_value_t = 1e-5)]
    pub ema_epsilon: f64,
    /// Temperature tau of p(z|i) = softmax(-||z_e - e_z||^2 / tau) (soft-em, rate terms, soft
    /// evaluation).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Monte-Carlo samples per latent vector (soft-em).
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Codebook initialisation [default: the data set's: kmeans for shapes, uniform otherwise].
    #[arg(long, value_enum)]
    pub init: Option<CodebookInit>,
    /// Re-seed codes unused for N steps from random encoder outputs (0 = off).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub dead_code_steps: u64,
}

/// FSQ's default levels (2^10 in the paper's table).
pub const FSQ_DEFAULT_LEVELS: &[usize] = &[8, 5, 5, 5];

impl QuantizerConfig {
    /// EMA decay: `--ema-decay`, else the quantizer's own default.
    pub fn decay(&self) -> f64 {
        self.ema_decay
            .unwrap_or_else(|| self.kind.default_ema_decay())
    }

    /// FSQ's levels (`--levels`, else [`FSQ_DEFAULT_LEVELS`]); empty for other quantizers.
    pub fn fsq_levels(&self) -> Vec<usize> {
        match self.kind {
            QuantizerKind::Fsq => self
                .levels
                .clone()
                .unwrap_or_else(|| FSQ_DEFAULT_LEVELS.to_vec()),
            _ => Vec::new(),
        }
    }

    /// D, the dimension of z_e (the encoder's output channels).
    pub fn code_dim(&self) -> usize {
        match self.kind {
            QuantizerKind::Fsq => self.fsq_levels().len(),
            QuantizerKind::Lfq => self
                .code_dim
                .unwrap_or_else(|| self.codebook_size.map_or(9, |k| k.max(1).ilog2() as usize)),
            _ => self.code_dim.unwrap_or(64),
        }
    }

    /// K, the codes of a stage (saturating at u64::MAX for absurd flags, refused by
    /// [`Self::validate`]).
    pub fn codebook_size(&self) -> usize {
        let k = self.code_space().size;
        usize::try_from(k).unwrap_or(usize::MAX)
    }

    /// Residual stages S (1 except rvq).
    pub fn stages(&self) -> usize {
        match self.kind {
            QuantizerKind::Rvq => self.stages.unwrap_or(2),
            _ => 1,
        }
    }

    /// How rvq's codebooks learn (gradient unless `--update ema`).
    pub fn codebook_update(&self) -> CodebookUpdate {
        self.update.unwrap_or(CodebookUpdate::Gradient)
    }

    /// Whether the codebook parameter learns by gradient (else the quantizer's update after the
    /// step moves it, or there is none).
    pub fn codebook_by_gradient(&self) -> bool {
        self.kind.codebook_by_gradient()
            && !(self.kind == QuantizerKind::Rvq && self.codebook_update() == CodebookUpdate::Ema)
    }

    /// How the gradient passes a hard quantizer.
    pub fn estimator(&self) -> Estimator {
        self.estimator.unwrap_or(Estimator::StraightThrough)
    }

    /// The code space this configuration gives.
    pub fn code_space(&self) -> CodeSpace {
        let size = match self.kind {
            QuantizerKind::Fsq => self
                .fsq_levels()
                .iter()
                .fold(1u64, |p, &l| p.saturating_mul(l as u64)),
            QuantizerKind::Lfq => 1u64.checked_shl(self.code_dim() as u32).unwrap_or(u64::MAX),
            _ => self.codebook_size.unwrap_or(512) as u64,
        };
        CodeSpace {
            size,
            stages: self.stages(),
        }
    }

    /// Whether the quantizer has a codebook of K codewords (every one but fsq and lfq).
    pub fn has_codebook(&self) -> bool {
        !matches!(self.kind, QuantizerKind::Fsq | QuantizerKind::Lfq)
    }

    /// Fills in the sizes (so that `config.json` states them): K and D always, and each
    /// quantizer's own defaults.
    pub fn resolve(&mut self) {
        let (k, d) = (self.codebook_size(), self.code_dim());
        if self.kind == QuantizerKind::Fsq {
            self.levels = Some(self.fsq_levels());
        }
        if self.kind == QuantizerKind::Rvq {
            self.stages = Some(self.stages());
            self.update = Some(self.codebook_update());
        }
        if self.kind == QuantizerKind::Lfq {
            self.entropy_weight.get_or_insert(0.1);
            self.diversity_weight.get_or_insert(1.0);
        }
        self.codebook_size = Some(k);
        self.code_dim = Some(d);
    }

    /// This configuration for another quantizer (a run of `compare` or `sweep`): the flags only
    /// `kind` reads are kept, the others' dropped; fsq derives K and D from its levels, lfq D
    /// from K (kept where it is a power of two), and a configuration of fsq or lfq leaves the
    /// others their own defaults.
    pub fn for_kind(&self, kind: QuantizerKind) -> Self {
        use QuantizerKind::*;
        let mut c = self.clone();
        if kind != self.kind {
            c.kind = kind;
            match kind {
                // fsq's sizes are its levels'.
                Fsq => (c.codebook_size, c.code_dim) = (None, None),
                // lfq keeps a K it can have (2^D, D <= 24) and derives D from it.
                Lfq => {
                    c.code_dim = None;
                    c.codebook_size = c
                        .codebook_size
                        .filter(|k| k.is_power_of_two() && (*k as u64) <= MAX_CODES);
                }
                _ if matches!(self.kind, Fsq | Lfq) => {
                    (c.codebook_size, c.code_dim) = (None, None);
                }
                _ => {}
            }
        }
        c.levels = c.levels.filter(|_| kind == Fsq);
        c.stages = c.stages.filter(|_| kind == Rvq);
        c.estimator = c.estimator.filter(|_| matches!(kind, Vq | VqEma | Rvq));
        c.update = c.update.filter(|_| kind == Rvq);
        if kind != Lfq {
            (c.entropy_weight, c.diversity_weight) = (None, None);
        }
        c
    }

    /// A small configuration of `kind` (tests and examples): D = 4, `k` codes a stage (k a
    /// power of two from 4 to 2^24); fsq at levels 3,3,2,2 (36 codes), lfq at D = log2 k, rvq
    /// with 2 stages.
    pub fn small(kind: QuantizerKind, k: usize) -> Self {
        let mut c = Self {
            codebook_size: Some(k),
            code_dim: Some(4),
            ..Default::default()
        }
        .for_kind(kind);
        match kind {
            QuantizerKind::Fsq => c.levels = Some(vec![3, 3, 2, 2]),
            QuantizerKind::Lfq => c.code_dim = Some(k.ilog2() as usize),
            QuantizerKind::Rvq => c.stages = Some(2),
            _ => {}
        }
        c
    }

    /// Checks the code space and that every quantizer-specific flag belongs to this quantizer.
    pub fn validate(&self) -> Result<(), InputError> {
        let kind = self.kind;
        let only = |given: bool, flag: &str, owners: &[QuantizerKind]| {
            if given && !owners.contains(&kind) {
                let names: Vec<&str> = owners.iter().map(|q| q.name()).collect();
                Err(InputError::config(format!(
                    "{flag} applies to {} only, not to --quantizer {kind}",
                    names.join(", ")
                )))
            } else {
                Ok(())
            }
        };
        use QuantizerKind::*;
        only(self.levels.is_some(), "--levels", &[Fsq])?;
        only(self.stages.is_some(), "--stages", &[Rvq])?;
        only(self.estimator.is_some(), "--estimator", &[Vq, VqEma, Rvq])?;
        only(self.update.is_some(), "--update", &[Rvq])?;
        only(self.entropy_weight.is_some(), "--entropy-weight", &[Lfq])?;
        only(
            self.diversity_weight.is_some(),
            "--diversity-weight",
            &[Lfq],
        )?;
        let bad = |m: String| Err(InputError::config(m));
        match kind {
            Fsq => {
                let levels = self.fsq_levels();
                if levels.is_empty() {
                    return bad("--levels must name at least one level count".into());
                }
                if let Some(l) = levels.iter().find(|&&l| l < 2) {
                    return bad(format!(
                        "--levels: every channel needs at least 2 levels (got {l})"
                    ));
                }
                let k = self.code_space().size;
                if k > MAX_CODES {
                    return bad(format!(
                        "--levels: the product of the levels must be at most 2^24 = {MAX_CODES} (got {})",
                        levels
                            .iter()
                            .map(|l| l.to_string())
                            .collect::<Vec<_>>()
                            .join("x")
                    ));
                }
                if let Some(d) = self.code_dim.filter(|&d| d != levels.len()) {
                    return bad(format!(
                        "--code-dim {d} disagrees with --levels: fsq's code dimension is the number of levels ({})",
                        levels.len()
                    ));
                }
                if let Some(kk) = self.codebook_size.filter(|&kk| kk as u64 != k) {
                    return bad(format!(
                        "--codebook-size {kk} disagrees with --levels: fsq's code space is the product of the levels ({k})"
                    ));
                }
            }
            Lfq => {
                let d = self.code_dim();
                if d == 0 || d > 24 {
                    return bad(format!(
                        "lfq's code dimension D must be 1 to 24 (K = 2^D at most 2^24; got {d})"
                    ));
                }
                if let Some(k) = self.codebook_size
                    && (k as u64) != 1u64 << d
                {
                    return bad(format!(
                        "--codebook-size {k}: lfq's code space is 2^D with D = --code-dim {d} (a power of two: {})",
                        1u64 << d
                    ));
                }
            }
            _ => {
                let k = self.codebook_size.unwrap_or(512);
                if k == 0 {
                    return bad(
                        "codebook size K (--codebook-size) must be at least 1 (got 0)".into(),
                    );
                }
                if k as u64 > u32::MAX as u64 {
                    return bad(format!(
                        "codebook size K (--codebook-size) must be at most 2^32 - 1 (codes are u32) (got {k})"
                    ));
                }
                if self.code_dim == Some(0) {
                    return bad("code dimension D (--code-dim) must be at least 1 (got 0)".into());
                }
            }
        }
        if kind == Rvq {
            let s = self.stages();
            if s == 0 || s > MAX_STAGES {
                return bad(format!("--stages must be 1 to {MAX_STAGES} (got {s})"));
            }
        }
        for (flag, v) in [
            ("--entropy-weight", self.entropy_weight),
            ("--diversity-weight", self.diversity_weight),
        ] {
            if let Some(v) = v
                && !(v >= 0.0 && v.is_finite())
            {
                return bad(format!("{flag} must be non-negative and finite (got {v})"));
            }
        }
        Ok(())
    }
}
