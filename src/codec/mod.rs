//! Rate in real bits: code maps entropy-coded against a prior r(z), in a checked container.
//!
//! The seed's rate terms are code lengths: a code z drawn with probability r(z) costs
//! -log2 r(z) bits (eq. 22, 25: the cross entropy H(p(Z|I), r) is the expected length of a code
//! built for r). [`EntropyModel`] turns r into the fixed-point categorical model of the
//! `constriction` crate (24-bit precision: up to 2^24 codes, every code at least 2^-24), and
//! [`EntropyModel::encode`] / [`EntropyModel::decode`] run its ANS coder over a sequence of codes;
//! the coded length stays within a fraction of a percent of sum(-log2 r(z)) plus one 32-bit word.
//!
//! * [`format`]: the `.vqz` container (magic, version, model hash, shapes, prior checksum,
//!   payload, checksum), read without trusting a byte of it.
//! * [`prior`]: which r a run codes with (its learned prior, or the empirical code marginal of the
//!   training split, stored in the run directory) and how it is made.
//! * [`run`]: `vqib compress` / `vqib decompress`, and the coded rate of an evaluation.

pub mod format;
pub mod prior;
pub mod run;

use constriction::stream::Decode;
use constriction::stream::model::DefaultContiguousCategoricalEntropyModel;
use constriction::stream::stack::DefaultAnsCoder;

pub use format::{Container, FORMAT_VERSION, MAGIC};
pub use prior::{CodePrior, PriorSource};
pub use run::{CodedRate, coded_rate, compress_run, decompress_run};

/// A prior over K codes as a fixed-point categorical model for the ANS coder. With K = 1 every
/// code map is certain and costs nothing (no model is built).
pub struct EntropyModel {
    probabilities: Vec<f64>,
    model: Option<DefaultContiguousCategoricalEntropyModel>,
}

impl EntropyModel {
    /// The model for `probabilities` (non-negative, finite, at least one positive; normalised
    /// here). Every code keeps a nonzero fixed-point probability, so any code can be coded.
    pub fn new(probabilities: &[f64]) -> Result<Self, String> {
        let k = probabilities.len();
        if k == 0 || k > 1 << 24 {
            return Err(format!("a prior over {k} codes (must be 1 to 2^24)"));
        }
        if probabilities.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err("a prior with a negative or non-finite probability".into());
        }
        let total: f64 = probabilities.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return Err("a prior whose probabilities sum to 0".into());
        }
        let probabilities: Vec<f64> = probabilities.iter().map(|p| p / total).collect();
        let model = if k == 1 {
            None
        } else {
            let m =
                DefaultContiguousCategoricalEntropyModel::from_floating_point_probabilities_fast(
                    &probabilities,
                    None,
                )
                .map_err(|()| "a prior the coder cannot quantize".to_string())?;
            Some(m)
        };
        Ok(Self {
            probabilities,
            model,
        })
    }

    pub fn k(&self) -> usize {
        self.probabilities.len()
    }

    /// r(z), normalised.
    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    /// The ideal code length of `codes` in bits: sum over the codes of -log2 r(z).
    pub fn ideal_bits(&self, codes: &[u32]) -> f64 {
        codes
            .iter()
            .map(|&c| -self.probabilities[c as usize].log2())
            .sum()
    }

    /// ANS-codes `codes` (each below K) into 32-bit words. Codes are pushed in reverse, so that
    /// [`Self::decode`] pops them in order.
    pub fn encode(&self, codes: &[u32]) -> Result<Vec<u32>, String> {
        let k = self.k();
        if let Some(c) = codes.iter().find(|&&c| c as usize >= k) {
            return Err(format!("code {c} is not below K = {k}"));
        }
        let Some(model) = &self.model else {
            return Ok(Vec::new());
        };
        let mut coder = DefaultAnsCoder::new();
        coder
            .encode_iid_symbols_reverse(codes.iter().map(|&c| c as usize), model)
            .map_err(|e| format!("entropy coder: {e:?}"))?;
        coder
            .into_compressed()
            .map_err(|e| format!("entropy coder: {e:?}"))
    }

    /// Decodes `n` codes from `words`; the words must be exactly what [`Self::encode`] wrote
    /// (checked: nothing may be left over).
    pub fn decode(&self, words: Vec<u32>, n: usize) -> Result<Vec<u32>, String> {
        let Some(model) = &self.model else {
            return match words.is_empty() {
                true => Ok(vec![0; n]),
                false => Err("payload present for a single-code prior".into()),
            };
        };
        let mut coder = DefaultAnsCoder::from_compressed(words)
            .map_err(|_| "payload is not an ANS stream (its last word is zero)".to_string())?;
        let mut out = Vec::with_capacity(n.min(1 << 24));
        for s in coder.decode_iid_symbols(n, model) {
            out.push(s.map_err(|e| format!("entropy decoder: {e:?}"))? as u32);
        }
        if !coder.is_empty() {
            return Err("payload holds more than the declared codes".into());
        }
        Ok(out)
    }
}

/// Bits in a payload of `words` 32-bit words.
pub fn payload_bits(words: usize) -> f64 {
    32.0 * words as f64
}

#[cfg(test)]
mod tests;
