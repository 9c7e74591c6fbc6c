//! Codebook initialisation: uniform in [-1/K, 1/K] (the model's own init), or k-means++ (Arthur &
//! Vassilvitskii 2007) plus Lloyd steps on the first batch of encoder outputs.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the codebook starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CodebookInit {
    /// Uniform in [-1/K, 1/K].
    Uniform,
    /// k-means++ seeding plus a few Lloyd iterations on the first batch of encoder outputs.
    Kmeans,
}

/// Squared distance between two rows.
pub(crate) fn dist2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means++ seeding (Arthur & Vassilvitskii 2007) of `k` centres from the `[N*D]` rows of
/// `data`, followed by `iters` Lloyd iterations. An empty cluster keeps its centre. With fewer
/// rows than centres, rows are reused with a small jitter.
pub fn kmeans_pp(data: &[f32], d: usize, k: usize, iters: usize, rng: &mut impl Rng) -> Vec<f32> {
    let n = data.len() / d;
    assert!(n > 0 && d > 0 && k > 0, "kmeans_pp needs data");
    let row = |i: usize| &data[i * d..(i + 1) * d];
    let mut centres = Vec::with_capacity(k * d);
    let first = rng.gen_range(0..n);
    centres.extend_from_slice(row(first));
    let mut best: Vec<f32> = (0..n).map(|i| dist2(row(i), row(first))).collect();
    for _ in 1..k {
        let total: f64 = best.iter().map(|&b| b as f64).sum();
        let pick = if total > 0.0 {
            let mut u = rng.r#gen::<f64>() * total;
            let mut pick = n - 1;
            for (i, &b) in best.iter().enumerate() {
                u -= b as f64;
                if u <= 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            rng.gen_range(0..n)
        };
        let c0 = centres.len();
        if total > 0.0 {
            centres.extend_from_slice(row(pick));
        } else {
            // Every row already coincides with a centre: reuse one with a jitter.
            centres.extend(row(pick).iter().map(|&v| v + rng.gen_range(-1e-3..1e-3f32)));
        }
        let c = &centres[c0..c0 + d];
        for (i, b) in best.iter_mut().enumerate() {
            *b = b.min(dist2(row(i), c));
        }
    }
    for _ in 0..iters {
        lloyd_step(data, d, &mut centres);
    }
    centres
}

/// One Lloyd iteration: every row to its nearest centre, each centre to the mean of its rows (an
/// empty cluster keeps its centre).
fn lloyd_step(data: &[f32], d: usize, centres: &mut [f32]) {
    let k = centres.len() / d;
    let mut sums = vec![0.0f64; k * d];
    let mut counts = vec![0usize; k];
    for r in data.chunks_exact(d) {
        let (mut bc, mut bd) = (0, f32::INFINITY);
        for c in 0..k {
            let dd = dist2(r, &centres[c * d..(c + 1) * d]);
            if dd < bd {
                (bc, bd) = (c, dd);
            }
        }
        counts[bc] += 1;
        for (s, &v) in sums[bc * d..(bc + 1) * d].iter_mut().zip(r) {
            *s += v as f64;
        }
    }
    for c in 0..k {
        if counts[c] > 0 {
            for j in 0..d {
                centres[c * d + j] = (sums[c * d + j] / counts[c] as f64) as f32;
            }
        }
    }
}
