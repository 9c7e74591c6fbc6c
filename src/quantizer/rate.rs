//! The prior r(z) over codes and the rate terms of the seed, with p(z|i) = softmax(-d^2 / tau):
//!
//! H(p(Z|I), r) = -(1/N) sum_i sum_z p(z|i) log r(z)      (eq. 22/25, with the minus sign the
//!                                                          seed drops)
//! KL(p(Z|I) || r) = H(p(Z|I), r) - H(Z|I)                (eq. 26)
//!
//! `--rate vdib` adds B * H(p(Z|I), r) to the loss, `--rate vib` B * KL; r is uniform or the
//! softmax of trainable logits (`--prior learned`).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::soft_log_probs;

/// An explicit rate term added to the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RateKind {
    /// No rate term (the VQ-VAE losses as published).
    None,
    /// B * H(p(Z|I), r): the VDIB rate (seed eq. 22/25).
    Vdib,
    /// B * KL(p(Z|I) || r): the VIB rate (seed eq. 15/26).
    Vib,
}

/// The prior r(z) over codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PriorKind {
    /// r(z) = 1/K.
    Uniform,
    /// r = softmax(logits), logits trained with the rest.
    Learned,
}

/// The rate terms of the seed, per point, with p(z|i) = softmax(-d^2 / tau) differentiable in
/// z_e and the codebook and a prior log r(z) (`[K]`, differentiable when learned):
/// returns (H(p(Z|I), r), H(Z|I)) = (-(1/N) sum_i sum_z p log r, -(1/N) sum_i sum_z p log p).
/// KL(p(Z|I) || r) is their difference (eq. 26).
pub fn rate_terms(
    z_e: Tensor<2>,
    e: Tensor<2>,
    tau: f64,
    log_r: Tensor<1>,
) -> (Tensor<1>, Tensor<1>) {
    let lp = soft_log_probs(z_e, e, tau);
    let p = lp.clone().exp();
    let k = log_r.dims()[0];
    let ce = (p.clone() * log_r.reshape([1, k])).sum_dim(1).mean().neg();
    let h = (p * lp).sum_dim(1).mean().neg();
    (ce, h)
}

/// The rate term of the loss for `kind` (None for [`RateKind::None`]): H(p(Z|I), r) or KL.
/// The codebook `e` and the prior `log_r` are asked for only when there is a rate term.
pub fn rate_term(
    kind: RateKind,
    z_e: Tensor<2>,
    e: impl FnOnce() -> Tensor<2>,
    tau: f64,
    log_r: impl FnOnce() -> Tensor<1>,
) -> Option<Tensor<1>> {
    if kind == RateKind::None {
        return None;
    }
    let (ce, h) = rate_terms(z_e, e(), tau, log_r());
    Some(if kind == RateKind::Vdib { ce } else { ce - h })
}
