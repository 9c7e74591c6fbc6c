//! Rate in real bits: code maps entropy-coded against a prior r(z), in a checked container.
//!
//! The seed's rate terms are code lengths: a code z drawn with probability r(z) costs
//! -log2 r(z) bits (eq. 22, 25: the cross entropy H(p(Z|I), r) is the expected length of a code
//! built for r). [`EntropyModel`] turns r into the fixed-point categorical model of the
//! `constriction` crate (24-bit precision: up to 2^24 codes, every code at least 2^-24), and
//! [`EntropyModel::encode`] / [`EntropyModel::decode`] run its ANS coder over a sequence of codes
//! and an end mark (so that the decoder knows where the codes end and checks their count); the
//! coded length stays within a fraction of a percent of sum(-log2 r(z)) plus the end mark (at
//! most 24 bits) and one 32-bit word.
//!
//! * [`format`]: the `.vqz` container (magic, version, model hash, shapes, prior checksum,
//!   payload, checksum), read without trusting a byte of it.
//! * [`prior`]: which r a run codes with (its learned prior, or the empirical code marginal of the
//!   training split, stored in the run directory) and how it is made.
//! * [`run`]: `vqib compress` / `vqib decompress`, and the coded rate of an evaluation.

pub mod format;
pub mod prior;
pub mod run;

use constriction::stream::model::DefaultContiguousCategoricalEntropyModel;
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};

pub use format::{Container, FORMAT_VERSION, MAGIC};
pub use prior::{CodePrior, PriorSource};
pub use run::{CodedRate, coded_rate, compress_run, decompress_run};

/// A prior over K codes as a fixed-point categorical model for the ANS coder. With K = 1 every
/// code map is certain and costs nothing (no model is built).
///
/// Residual stages ([`EntropyModel::staged`]): S priors, one a stage, over the S blocks of K
/// codes (stage s's code k is the code sK + k); a code map's i-th code belongs to stage i mod S
/// and is coded with that stage's prior, so a tuple costs sum_s -log2 r_s(k_s).
pub struct EntropyModel {
    probabilities: Vec<f64>,
    /// Codes a stage (K; the whole table for one stage).
    k: usize,
    models: Vec<DefaultContiguousCategoricalEntropyModel>,
}

impl EntropyModel {
    /// The model for `probabilities` (non-negative, finite, at least one positive; normalised
    /// here). Every code keeps a nonzero fixed-point probability, so any code can be coded.
    pub fn new(probabilities: &[f64]) -> Result<Self, String> {
        Self::staged(probabilities, 1)
    }

    /// One model a stage: `probabilities` holds `stages` blocks of equal length, each
    /// normalised on its own.
    pub fn staged(probabilities: &[f64], stages: usize) -> Result<Self, String> {
        let stages = stages.max(1);
        if probabilities.is_empty() {
            return Err("a prior over 0 codes (must be 1 to 2^24)".into());
        }
        if probabilities.len() % stages != 0 {
            return Err(format!(
                "a prior over {} codes does not split into {stages} stages",
                probabilities.len()
            ));
        }
        let k = probabilities.len() / stages;
        let mut all = Vec::with_capacity(probabilities.len());
        let mut models = Vec::new();
        for block in probabilities.chunks(k.max(1)) {
            let (p, m) = Self::stage(block)?;
            all.extend(p);
            models.extend(m);
        }
        Ok(Self {
            probabilities: all,
            k,
            models,
        })
    }

    /// One stage's normalised probabilities and its model (none for K = 1).
    fn stage(
        probabilities: &[f64],
    ) -> Result<(Vec<f64>, Option<DefaultContiguousCategoricalEntropyModel>), String> {
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
        Ok((probabilities, model))
    }

    /// Codes in all (S*K).
    pub fn k(&self) -> usize {
        self.probabilities.len()
    }

    /// Stages S.
    pub fn stages(&self) -> usize {
        self.probabilities.len() / self.k.max(1)
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
    /// [`Self::decode`] pops them in order, on top of an end mark ([`END_MARK`], pushed first and
    /// so popped last).
    ///
    /// The end mark is what lets the decoder check the count. The coder starts from state 0, and
    /// pushing code 0 (cumulative probability 0) onto a state below its probability leaves the
    /// state as it was: without the mark, trailing 0 codes cost nothing and a stream of n codes
    /// also decodes as n + 1000 codes. The mark leaves the state at r(0) in fixed point (not 0);
    /// from a state that large no push leaves it unchanged and none brings it back to 0, so the
    /// decoder's state is 0 exactly after it has popped the mark. The mark costs 24 + log2 r(0)
    /// bits (at most 24) a stream.
    pub fn encode(&self, codes: &[u32]) -> Result<Vec<u32>, String> {
        let (k, s) = (self.k, self.stages());
        for (i, &c) in codes.iter().enumerate() {
            let stage = i % s;
            if (c as usize) < stage * k || c as usize >= (stage + 1) * k {
                return Err(match s {
                    1 => format!("code {c} is not below K = {k}"),
                    _ => format!(
                        "code {c} at position {i} is not of stage {stage} ({}..{})",
                        stage * k,
                        (stage + 1) * k
                    ),
                });
            }
        }
        if self.models.is_empty() {
            return Ok(Vec::new());
        }
        let err = |e: &dyn std::fmt::Debug| format!("entropy coder: {e:?}");
        let mut coder = DefaultAnsCoder::new();
        coder
            .encode_symbol(END_MARK, &self.models[0])
            .map_err(|e| err(&e))?;
        for (i, &c) in codes.iter().enumerate().rev() {
            let stage = i % s;
            coder
                .encode_symbol(c as usize - stage * k, &self.models[stage])
                .map_err(|e| err(&e))?;
        }
        coder.into_compressed().map_err(|e| err(&e))
    }

    /// Decodes `n` codes from `words`, which must be exactly what [`Self::encode`] wrote for `n`
    /// codes: a stream that runs out (reaches its end mark) before `n` codes, or holds more than
    /// `n` codes before its end mark, is an error; nothing is returned from it. With K = 1 the
    /// payload must be empty, and any `n` is accepted (bound it before: the caller allocates
    /// `n` codes).
    pub fn decode(&self, words: Vec<u32>, n: usize) -> Result<Vec<u32>, String> {
        let (k, s) = (self.k, self.stages());
        if self.models.is_empty() {
            return match words.is_empty() {
                true => Ok((0..n).map(|i| ((i % s) * k) as u32).collect()),
                false => Err("payload present for a single-code prior".into()),
            };
        }
        let model = &self.models[0];
        let mut coder = DefaultAnsCoder::from_compressed(words)
            .map_err(|_| "payload is not an ANS stream (its last word is zero)".to_string())?;
        let err = |e| format!("entropy decoder: {e:?}");
        // Empty (state 0) before a code is decoded: the previous symbol was the end mark.
        let ran_out = |i: usize| {
            format!(
                "the payload ends after {} codes, but the header declares {n}",
                i.saturating_sub(1)
            )
        };
        let mut out = Vec::with_capacity(n.min(1 << 24));
        for i in 0..n {
            if coder.is_empty() {
                return Err(ran_out(i));
            }
            let stage = i % s;
            let c = coder.decode_symbol(&self.models[stage]).map_err(err)?;
            out.push((stage * k + c) as u32);
        }
        if coder.is_empty() {
            return Err(ran_out(n));
        }
        if coder.decode_symbol(model).map_err(err)? != END_MARK || !coder.is_empty() {
            return Err(format!(
                "the payload holds more than the {n} codes the header declares (or is damaged)"
            ));
        }
        Ok(out)
    }
}

/// The symbol that ends every ANS stream (any code but 0 would do; code 1 costs least: pushed
/// onto the empty coder it leaves the state at the fixed-point r(0)).
const END_MARK: usize = 1;

/// Bits in a payload of `words` 32-bit words.
pub fn payload_bits(words: usize) -> f64 {
    32.0 * words as f64
}

#[cfg(test)]
pub(crate) mod tests;
