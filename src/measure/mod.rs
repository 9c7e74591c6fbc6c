//! `vqib measure FILE`: the information quantities of a model trained elsewhere, from a
//! safetensors file of its latents, codes or posterior logits.
//!
//! The file holds one of
//!
//! * `z_e` (`[N, D]` or `[B, h, w, D]`, float) with `codebook` (`[K, D]`): p(z|i) one-hot on the
//!   nearest codeword (hard, seed eq. 27) or softmax(-||z_e - e_z||^2 / tau) (soft, eq. 28), by
//!   the assignment kernels `vqib eval` uses ([`crate::kernels::assign`], in float32);
//! * `codes` (`[B, h, w]` or `[B, h, w, S]`, integers): hard codes of a quantizer, possibly with an
//!   implicit code space (`--code-space`) and S stages (residual or product quantizers);
//! * `logits` (`[N, K]` or `[B, h, w, K]`, float): p(z|i) = softmax(logits / tau) (soft), or
//!   one-hot on the most probable code (hard);
//!
//! and optionally `labels` (`[B]` integers: every latent vector of an image carries its label) and
//! a prior r(z) of the rate terms, `prior` (`[K]` probabilities) or `log_prior` (`[K]` natural
//! log-probabilities), used as given after a check that it sums to 1 within 1e-3 (otherwise r is
//! uniform, 1/K).
//!
//! The quantities are [`crate::info`]'s, accumulated by [`InfoAccumulator`] as `vqib eval`
//! accumulates them (or, for hard codes in a code space large against the data, by
//! [`crate::info::counts::SparseCounts`], which equals it), plus the ideal coded length of the argmax code map
//! under the Krichevsky-Trofimov marginal of its own counts ([`crate::info::counts::kt_bits`]). The file is
//! read `--chunk-rows` latent vectors at a time ([`file::SafetensorsFile`]): memory follows the
//! chunk, the codebook and K (or the codes that occur), never N.

mod accumulate;
pub mod file;
mod plan;
mod render;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use self::file::SafetensorsFile;
pub use self::render::render;
use crate::error::InputError;
use crate::info::{InfoSummary, Relevance};

/// The posterior p(z|i) measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PosteriorKind {
    /// One-hot: the nearest codeword of z_e, the most probable code of logits, or the codes.
    Hard,
    /// softmax(-||z_e - e_z||^2 / tau), or softmax(logits / tau).
    Soft,
}

/// Which tensor of the file is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum InputKind {
    #[value(name = "z_e")]
    #[serde(rename = "z_e")]
    ZE,
    #[value(name = "codes")]
    #[serde(rename = "codes")]
    Codes,
    #[value(name = "logits")]
    #[serde(rename = "logits")]
    Logits,
}

impl InputKind {
    fn name(self) -> &'static str {
        match self {
            InputKind::ZE => "z_e",
            InputKind::Codes => "codes",
            InputKind::Logits => "logits",
        }
    }
}

/// `vqib measure`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct MeasureArgs {
    /// A safetensors file holding `z_e` with `codebook`, or `codes`, or `logits`; optionally
    /// `labels` and `prior` (probabilities) or `log_prior` (log-probabilities).
    pub file: PathBuf,
    /// p(z|i): hard (one-hot on the nearest codeword, or the most probable code) or soft
    /// (softmax(-||z_e - e_z||^2 / tau), or softmax(logits / tau)) [default: hard for z_e and
    /// codes, soft for logits].
    #[arg(long, value_enum)]
    pub posterior: Option<PosteriorKind>,
    /// tau of the soft posterior [default: 1].
    #[arg(long, value_name = "TAU")]
    pub temperature: Option<f64>,
    /// The code space of `codes`: K, or one K a stage for [B, h, w, S] codes (K1,K2,...)
    /// [default: the prior's length, else the largest code + 1].
    #[arg(long, value_name = "K", value_delimiter = ',')]
    pub code_space: Vec<u64>,
    /// The tensor to measure where the file holds more than one of z_e, codes and logits.
    #[arg(long, value_enum)]
    pub input: Option<InputKind>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Latent vectors read at a time: memory follows this, not the file's size (for z_e rounded
    /// up to whole blocks of the assignment kernels, 64 rows, so that the results do not depend
    /// on it).
    #[arg(long, value_name = "N", default_value_t = 65536)]
    pub chunk_rows: usize,
}

/// The ideal coded length of a code map under the Krichevsky-Trofimov marginal of its own
/// counts, r(z) = (n_z + 1/2) / (N + K/2): sum over the latent vectors of -log2 r(z), bits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coded {
    pub bits: f64,
    pub bits_per_vector: f64,
    /// Where the file says which vectors make an image.
    pub bits_per_image: Option<f64>,
}

/// The measurements of one code map (or of the tuple of S stages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeMap {
    /// "codes", "stage 2", "joint" (the tuple (Z_1, ..., Z_S)).
    pub name: String,
    /// K (absent where the tuple space K_1 ... K_S exceeds 2^64).
    pub code_space: Option<u64>,
    pub log2_code_space: f64,
    /// Nats per latent vector, under the file's posterior; `info.codes_used` counts the codes
    /// that are the most probable code of some vector (for hard codes: distinct codes).
    pub info: InfoSummary,
    /// The same in bits.
    pub info_bits: InfoSummary,
    /// I(Z;Y) and its parts (nats), where the file has labels.
    pub relevance: Option<Relevance>,
    /// The argmax code map's ideal coded length.
    pub coded: Coded,
    /// L H(Z) / ln 2 and L H(p(Z|I), r) / ln 2, bits an image (L vectors an image).
    pub h_z_bits_per_image: Option<f64>,
    pub cross_entropy_bits_per_image: Option<f64>,
    /// K is not small against N (10 K > N): the plug-in H(Z) is biased low.
    pub undersampled: bool,
    /// The codes were counted in a hash map (K large against N), not in K-sized arrays.
    pub counted_sparse: bool,
    /// Counts of the most probable code of each vector, where kept in a K-sized array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Vec<u64>>,
}

/// What `vqib measure` reports (and writes with `--json`). Information quantities in nats,
/// `info_bits` and `coded` in bits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub file: String,
    pub input: InputKind,
    /// The measured tensor's shape and dtype.
    pub shape: Vec<usize>,
    pub dtype: String,
    pub posterior: PosteriorKind,
    /// tau, for a soft posterior.
    pub temperature: Option<f64>,
    /// "uniform", "prior" or "log_prior" (the file's tensor).
    pub prior: String,
    /// N, latent vectors.
    pub vectors: u64,
    pub images: Option<u64>,
    pub vectors_per_image: Option<u64>,
    /// Distinct labels, where the file has labels.
    pub label_classes: Option<usize>,
    /// The code map (S = 1), or the tuple of the S stages.
    #[serde(flatten)]
    pub map: CodeMap,
    /// Each stage of [B, h, w, S] codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<CodeMap>,
    /// What the reader should know (a code space taken from the data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Most values a chunk holds (besides the rows' count): 16 Mi.
const CHUNK_VALUES: usize = 1 << 24;
/// Hard codes are counted in a hash map past this code space (or past 4 N).
const DENSE_K: u64 = 1 << 20;
/// Most cells (K x label classes) of a dense joint of codes and labels.
const DENSE_JOINT: u64 = 1 << 26;
/// Most distinct labels.
const MAX_CLASSES: usize = 1 << 20;

/// `vqib measure`: measures the file, prints the table, writes the JSON.
pub fn run(args: &MeasureArgs) -> anyhow::Result<()> {
    let m = measure(args)?;
    print!("{}", render(&m));
    if let Some(p) = &args.json {
        crate::io::write_json(p, &m)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// Measures `args.file` (no output).
pub fn measure(args: &MeasureArgs) -> Result<Measurement, InputError> {
    let f = SafetensorsFile::open(&args.file)?;
    let plan = plan::plan(&f, args)?;
    let classes = plan.labels.as_ref().map(HashMap::len);
    let (map, stages) = accumulate::accumulate(&f, &plan)?;
    let t = f.get(plan.input.name()).expect("planned");
    Ok(Measurement {
        file: args.file.display().to_string(),
        input: plan.input,
        shape: t.shape.clone(),
        dtype: t.dtype.name(),
        posterior: plan.posterior,
        temperature: (plan.posterior == PosteriorKind::Soft).then_some(plan.tau),
        prior: plan
            .log_r
            .as_ref()
            .map_or("uniform", |(_, s)| s)
            .to_string(),
        vectors: plan.n as u64,
        images: plan.images.map(|b| b as u64),
        vectors_per_image: plan.per_image.map(|l| l as u64),
        label_classes: classes,
        map,
        stages,
        notes: plan.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::assign::SplitMix64;

    fn args(file: PathBuf) -> MeasureArgs {
        MeasureArgs {
            file,
            posterior: None,
            temperature: None,
            code_space: Vec::new(),
            input: None,
            json: None,
            chunk_rows: 3,
        }
    }

    /// Truncated files, flipped header bytes and edited header numbers: `measure` answers each
    /// with a result or an [`InputError`], never a panic or a huge allocation.
    #[test]
    fn damaged_files_are_input_errors() {
        use safetensors::{Dtype, tensor::TensorView};
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let i32s = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (z, e) = (f32s(&[0.5; 24]), f32s(&[0.0, 1.0, 1.0, 0.0, 2.0, 2.0]));
        let (codes, labels) = (i32s(&[0, 1, 2, 1, 0, 2, 2, 2]), i32s(&[1, 0]));
        let files: Vec<Vec<u8>> = vec![
            safetensors::serialize(
                [
                    (
                        "z_e",
                        TensorView::new(Dtype::F32, vec![2, 3, 2, 2], &z).unwrap(),
                    ),
                    (
                        "codebook",
                        TensorView::new(Dtype::F32, vec![3, 2], &e).unwrap(),
                    ),
                    (
                        "labels",
                        TensorView::new(Dtype::I32, vec![2], &labels).unwrap(),
                    ),
                ],
                &None,
            )
            .unwrap(),
            safetensors::serialize(
                [
                    (
                        "codes",
                        TensorView::new(Dtype::I32, vec![2, 2, 1, 2], &codes).unwrap(),
                    ),
                    (
                        "labels",
                        TensorView::new(Dtype::I32, vec![2], &labels).unwrap(),
                    ),
                ],
                &None,
            )
            .unwrap(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.safetensors");
        let mut rng = SplitMix64::new(20, 0);
        let numbers = [
            "0",
            "1",
            "7",
            "1099511627776",
            "18446744073709551615",
            "-1",
            "1e3",
        ];
        let (mut ok, mut refused) = (0, 0);
        for t in 0..600 {
            let src = &files[t % 2];
            let hl = u64::from_le_bytes(src[..8].try_into().unwrap()) as usize;
            let mut b = src.clone();
            match t % 3 {
                0 => b.truncate(rng.next_u64() as usize % src.len()),
                1 => {
                    for _ in 0..1 + rng.next_u64() % 3 {
                        let i = rng.next_u64() as usize % (8 + hl);
                        b[i] = rng.next_u64() as u8;
                    }
                }
                _ => {
                    let h = std::str::from_utf8(&src[8..8 + hl]).unwrap();
                    let digits: Vec<usize> = h
                        .char_indices()
                        .filter(|(_, c)| c.is_ascii_digit())
                        .map(|(i, _)| i)
                        .collect();
                    let at = digits[rng.next_u64() as usize % digits.len()];
                    let n = numbers[rng.next_u64() as usize % numbers.len()];
                    let h = format!("{}{n}{}", &h[..at], &h[at + 1..]);
                    b = (h.len() as u64).to_le_bytes().to_vec();
                    b.extend(h.as_bytes());
                    b.extend(&src[8 + hl..]);
                }
            }
            std::fs::write(&path, &b).unwrap();
            match measure(&args(path.clone())) {
                Ok(_) => ok += 1,
                Err(InputError::File { path: p, .. }) => {
                    assert_eq!(p, path);
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused > 300 && ok >= 5, "{ok} measured, {refused} refused");
    }
}
