//! Hard code maps counted in hash maps, for code spaces too large for K-sized arrays (an
//! implicit code space of 2^24 or more, the K^S tuples of S stages): memory follows the codes
//! that occur, never K.
//!
//! The quantities are those of [`InfoAccumulator`] over one-hot posteriors, computed in the same
//! order (codes ascending, then labels ascending) so that they equal the dense accumulator's
//! exactly: the summary through [`InfoAccumulator::from_totals`] over the codes that occur, the
//! relevance by [`InfoAccumulator::relevance`]'s formulas over the cells that occur.

use std::collections::HashMap;
use std::hash::Hash;

use crate::info::{InfoAccumulator, InfoSummary, Relevance, entropy};

/// Counts of hard codes (and of (code, label) cells where the points carry labels).
#[derive(Clone, Debug)]
pub struct SparseCounts<K> {
    counts: HashMap<K, u64>,
    joint: HashMap<(K, u32), u64>,
    labelled: bool,
    n: u64,
    /// The sum over the points of -log r(z).
    sum_ce: f64,
}

impl<K: Hash + Eq + Ord + Clone> SparseCounts<K> {
    /// Counts for points without labels, or (`labelled`) each with a label.
    pub fn new(labelled: bool) -> Self {
        Self {
            counts: HashMap::new(),
            joint: HashMap::new(),
            labelled,
            n: 0,
            sum_ce: 0.0,
        }
    }

    /// Adds a point with code `key`, its label (where counted with labels), and log r(key).
    pub fn add(&mut self, key: K, label: Option<u32>, log_r: f64) {
        if self.labelled {
            let y = label.expect("a label per point");
            *self.joint.entry((key.clone(), y)).or_insert(0) += 1;
        }
        *self.counts.entry(key).or_insert(0) += 1;
        self.sum_ce -= log_r;
        self.n += 1;
    }

    pub fn n(&self) -> u64 {
        self.n
    }

    /// The counts of the codes that occur, in code order.
    pub fn counts(&self) -> Vec<u64> {
        let mut c: Vec<(&K, &u64)> = self.counts.iter().collect();
        c.sort_unstable_by(|a, b| a.0.cmp(b.0));
        c.into_iter().map(|(_, &n)| n).collect()
    }

    /// The information quantities (H(Z|I) = 0 for hard codes).
    pub fn summary(&self) -> InfoSummary {
        let c = self.counts();
        let m = c.len();
        InfoAccumulator::from_totals(
            vec![0.0; m],
            0,
            self.n,
            0.0,
            self.sum_ce,
            c.iter().map(|&v| v as f64).collect(),
            c,
            Vec::new(),
            Vec::new(),
        )
        .summary()
    }

    /// I(Z;Y) and its parts, where the points carry labels: [`InfoAccumulator::relevance`] of
    /// the same one-hot points, `classes` the label classes reported.
    pub fn relevance(&self, classes: usize) -> Option<Relevance> {
        if !self.labelled {
            return None;
        }
        let n = self.n.max(1) as f64;
        let mut cells: Vec<(&(K, u32), &u64)> = self.joint.iter().collect();
        cells.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let pzy: Vec<f64> = cells.iter().map(|(_, v)| **v as f64 / n).collect();
        let mut pz: Vec<f64> = Vec::new();
        let mut py: Vec<f64> = vec![0.0; classes];
        let mut last: Option<&K> = None;
        for (cell, c) in &cells {
            let (z, v) = (&cell.0, **c as f64 / n);
            if last != Some(z) {
                pz.push(0.0);
                last = Some(z);
            }
            *pz.last_mut().unwrap() += v;
            py[cell.1 as usize] += v;
        }
        let (h_z, h_y, h_zy) = (entropy(&pz), entropy(&py), entropy(&pzy));
        let nz = |p: &[f64]| p.iter().filter(|&&v| v > 0.0).count().max(1) as f64 - 1.0;
        let plug = h_z + h_y - h_zy;
        Some(Relevance {
            classes,
            h_y,
            h_y_miller_madow: h_y + nz(&py) / (2.0 * n),
            i_zy: plug,
            h_z_given_y: h_zy - h_y,
            argmax_i_zy: plug,
            argmax_i_zy_miller_madow: plug + (nz(&pz) + nz(&py) - nz(&pzy)) / (2.0 * n),
        })
    }
}

/// The ideal length in bits, sum over the points of -log2 r(z), of a code map with code counts
/// `counts` (those that occur) over a code space of 2^`log2_k` codes, under the
/// Krichevsky-Trofimov estimate r(z) = (n_z + 1/2) / (N + K/2) of those same counts
/// ([`crate::codec::prior::kt_probabilities`], the codec's prior).
pub fn kt_bits(counts: &[u64], log2_k: f64) -> f64 {
    let n: u64 = counts.iter().sum();
    // log2(N + K/2) without forming K (which may be K^S, past f64's range).
    let (a, b) = ((n as f64).log2(), log2_k - 1.0);
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    let log2_denom = hi + (lo - hi).exp2().ln_1p() / std::f64::consts::LN_2;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64 * (log2_denom - (c as f64 + 0.5).log2()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }

    /// The hash-map counts give the dense accumulator's numbers, to the last bit where the
    /// order of the sums is the same.
    #[test]
    fn sparse_counts_equal_the_dense_accumulator() {
        let k = 37usize;
        let mut rng = crate::kernels::assign::SplitMix64::new(3, 0);
        let log_r: Vec<f64> = {
            let w: Vec<f64> = (0..k).map(|_| rng.next_f64() + 0.1).collect();
            let s: f64 = w.iter().sum();
            w.iter().map(|v| (v / s).ln()).collect()
        };
        let codes: Vec<u32> = (0..500)
            .map(|_| ((rng.next_f64().powi(3)) * k as f64) as u32)
            .collect();
        let labels: Vec<u32> = codes
            .iter()
            .map(|&c| (c % 3 + (rng.next_u64() % 2) as u32) % 4)
            .collect();
        let mut dense = InfoAccumulator::new(log_r.clone()).with_classes(4);
        dense.add_hard(&codes, Some(&labels));
        let mut sparse = SparseCounts::new(true);
        for (&c, &y) in codes.iter().zip(&labels) {
            sparse.add(c as u64, Some(y), log_r[c as usize]);
        }
        assert_eq!(sparse.summary(), dense.summary());
        let (a, b) = (sparse.relevance(4).unwrap(), dense.relevance().unwrap());
        for (x, y) in [
            (a.h_y, b.h_y),
            (a.h_y_miller_madow, b.h_y_miller_madow),
            (a.i_zy, b.i_zy),
            (a.h_z_given_y, b.h_z_given_y),
            (a.argmax_i_zy, b.argmax_i_zy),
            (a.argmax_i_zy_miller_madow, b.argmax_i_zy_miller_madow),
        ] {
            close(x, y);
        }
        let nonzero: Vec<u64> = dense
            .argmax_counts()
            .iter()
            .copied()
            .filter(|&c| c > 0)
            .collect();
        assert_eq!(sparse.counts(), nonzero);
        // The KT length from the codec's own probabilities.
        let p = crate::codec::prior::kt_probabilities(dense.argmax_counts());
        let want: f64 = codes.iter().map(|&c| -p[c as usize].log2()).sum();
        close(kt_bits(&sparse.counts(), (k as f64).log2()), want);
        // A code space past f64's range still gives a finite length.
        assert!(kt_bits(&[3, 4], 2000.0).is_finite());
    }
}
