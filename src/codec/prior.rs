//! The prior r(z) a run's code maps are coded with, and where it is kept.
//!
//! * A run with a learned prior (`--prior learned`) codes with it: r = softmax(logits), the r of
//!   its rate term (eq. 22).
//! * Otherwise r is the empirical code marginal of the training split under the checkpoint's
//!   model: every training image through the encoder, the nearest code of every latent vector
//!   counted, and r(z) = (n_z + 1/2) / (N + K/2) (the Krichevsky-Trofimov estimate: a code never
//!   seen keeps a probability of 1/(2N + K), so it can still be coded). The uniform prior of a
//!   VQ-VAE's rate term would cost log2 K bits a code whatever was learned; this one costs what
//!   the codes actually carry.
//!
//! The estimate is made once per checkpoint and kept in `RUN/code-prior.json` with the hash of
//! the model it belongs to and a CRC-32 of its probabilities (the checksum a `.vqz` file records).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::EntropyModel;
use crate::error::InputError;

/// Where a coding prior came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum PriorSource {
    /// The run's learned prior r(z).
    Learned,
    /// The code marginal of `codes` latent vectors of `images` training images.
    Empirical { images: usize, codes: u64 },
}

/// A coding prior. An empirical one is stored in `RUN/code-prior.json` as its code counts (exact
/// in JSON, where floats need not round-trip to the bit); the probabilities are derived from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodePrior {
    pub source: PriorSource,
    /// SHA-256 (hex) of the weights of the model the prior belongs to.
    pub model_hash: String,
    /// CRC-32 of `probabilities` as little-endian f64.
    pub checksum: u32,
    /// Empirical priors: the count of each code over the training split.
    #[serde(default)]
    pub counts: Vec<u64>,
    #[serde(skip)]
    pub probabilities: Vec<f64>,
}

/// The Krichevsky-Trofimov estimate (n_z + 1/2) / (N + K/2).
pub fn kt_probabilities(counts: &[u64]) -> Vec<f64> {
    let n: u64 = counts.iter().sum();
    let denom = n as f64 + counts.len() as f64 / 2.0;
    counts.iter().map(|&c| (c as f64 + 0.5) / denom).collect()
}

impl CodePrior {
    /// The Krichevsky-Trofimov estimate from code counts.
    pub fn empirical(counts: &[u64], images: usize, model_hash: String) -> Self {
        let codes = counts.iter().sum();
        let mut p = Self::new(
            PriorSource::Empirical { images, codes },
            kt_probabilities(counts),
            model_hash,
        );
        p.counts = counts.to_vec();
        p
    }

    /// A learned prior from its log-probabilities.
    pub fn learned(log_r: &[f64], model_hash: String) -> Self {
        let p = log_r.iter().map(|l| l.exp()).collect();
        Self::new(PriorSource::Learned, p, model_hash)
    }

    fn new(source: PriorSource, probabilities: Vec<f64>, model_hash: String) -> Self {
        Self {
            source,
            model_hash,
            checksum: checksum(&probabilities),
            counts: Vec::new(),
            probabilities,
        }
    }

    /// The coder's model of this prior, one a stage for `stages` residual stages.
    pub fn entropy_model(&self, stages: usize) -> Result<EntropyModel, String> {
        EntropyModel::staged(&self.probabilities, stages)
    }

    /// Reads `code-prior.json`, checking its checksum.
    pub fn load(path: &Path) -> Result<Self, InputError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InputError::file(path, format!("cannot read: {e}")))?;
        let mut p: Self = serde_json::from_str(&text)
            .map_err(|e| InputError::file(path, format!("not a vqib code prior: {e}")))?;
        if p.counts.is_empty() {
            return Err(InputError::file(path, "holds no code counts"));
        }
        p.probabilities = kt_probabilities(&p.counts);
        if checksum(&p.probabilities) != p.checksum {
            return Err(InputError::file(
                path,
                "checksum mismatch: the prior was changed or damaged",
            ));
        }
        Ok(p)
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        crate::io::write_json(path, self)
    }
}

/// CRC-32 of probabilities as little-endian f64.
pub fn checksum(p: &[f64]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for v in p {
        h.update(&v.to_le_bytes());
    }
    h.finalize()
}
