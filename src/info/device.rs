//! The information quantities of [`super`] streamed on a device (GPU evaluation): each batch's
//! sums are tensor operations on the device, kept there, and read back once per evaluation;
//! the host adds them up in f64 ([`totals`]) into an [`InfoAccumulator`].
//!
//! A batch of n points gives one row, [`row_len`] long:
//!
//! `[sum_i H(p(.|i)), sum_i H(p(.|i), r), sum_i p(z|i) (K), argmax counts (K), joint (K*C),
//! argmax joint (K*C)]`
//!
//! with H(p(.|i)) = -sum_z p log p from the log probabilities (exact where p underflows), the
//! cross entropy -sum_z p(z|i) log r(z) (with its minus sign, eq. 22/25), and the joints with the
//! labels' one-hot rows L `[n, C]` as p^T L (z-major, as the host's `z * C + y`). Within a batch
//! the sums are f32 (counts exact to 2^24 points a batch), across batches f64.

use burn::tensor::{Int, Tensor};

use super::InfoAccumulator;
use crate::quantizer::one_hot;

/// The length of a batch's row for K codes and C label classes (0: no labels).
pub fn row_len(k: usize, classes: usize) -> usize {
    2 + 2 * k + 2 * k * classes
}

/// The row of a batch of soft posteriors, given as log p(z|i) `[n, K]` (normalised rows), under
/// the prior log r `[K]`, with the labels' one-hot rows `[n, C]` where there are labels.
pub fn soft_row(log_p: Tensor<2>, log_r: &Tensor<1>, labels: Option<&Tensor<2>>) -> Tensor<1> {
    let [n, k] = log_p.dims();
    let p = log_p.clone().exp();
    let h = (p.clone() * log_p.clone()).sum().neg();
    let argmax = one_hot(log_p.argmax(1).reshape([n]), k);
    row(p, argmax, h, log_r, labels)
}

/// The row of a batch of hard (one-hot) posteriors at `codes` `[n]`.
pub fn hard_row(
    codes: Tensor<1, Int>,
    k: usize,
    log_r: &Tensor<1>,
    labels: Option<&Tensor<2>>,
) -> Tensor<1> {
    let h = Tensor::<1>::zeros([1], &codes.device());
    let p = one_hot(codes, k);
    row(p.clone(), p, h, log_r, labels)
}

fn row(
    p: Tensor<2>,
    argmax: Tensor<2>,
    h: Tensor<1>,
    log_r: &Tensor<1>,
    labels: Option<&Tensor<2>>,
) -> Tensor<1> {
    let k = p.dims()[1];
    let sum_p = p.clone().sum_dim(0).reshape([k]);
    let ce = (sum_p.clone() * log_r.clone()).sum().neg();
    let counts = argmax.clone().sum_dim(0).reshape([k]);
    let mut parts = vec![h, ce, sum_p, counts];
    if let Some(l) = labels {
        let c = l.dims()[1];
        parts.push(p.transpose().matmul(l.clone()).reshape([k * c]));
        parts.push(argmax.transpose().matmul(l.clone()).reshape([k * c]));
    }
    Tensor::cat(parts, 0)
}

/// Sums in f64 of consecutive rows of `len` values (the batches' rows, read back at once).
pub fn totals(values: &[f32], len: usize) -> Vec<f64> {
    let mut t = vec![0.0f64; len];
    for r in values.chunks_exact(len) {
        for (a, &v) in t.iter_mut().zip(r) {
            *a += v as f64;
        }
    }
    t
}

/// The accumulator of `n` points from the totals of their rows ([`totals`]) under the prior
/// `log_r` (f64, K) with `classes` label classes.
pub fn accumulator(log_r: Vec<f64>, classes: usize, n: u64, t: &[f64]) -> InfoAccumulator {
    let k = log_r.len();
    assert_eq!(t.len(), row_len(k, classes), "a row's totals");
    let count = |v: &[f64]| {
        v.iter()
            .map(|&x| x.round().max(0.0) as u64)
            .collect::<Vec<_>>()
    };
    let kc = k * classes;
    let (sum_p, rest) = t[2..].split_at(k);
    let (argmax, rest) = rest.split_at(k);
    let (joint, joint_argmax) = rest.split_at(kc);
    InfoAccumulator::from_totals(
        log_r,
        classes,
        n,
        t[0],
        t[1],
        sum_p.to_vec(),
        count(argmax),
        joint.to_vec(),
        count(joint_argmax),
    )
}
