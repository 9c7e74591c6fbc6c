//! The distortion term of the seed's objectives, as the seed defines it (eq. 18, 23): an
//! expectation over the posterior,
//!
//!   D = (1/N) sum_i E_{z ~ p(Z|I=i)} [ -log q(x_i | z) ],
//!
//! with z the code map of image i, each latent position drawn independently from its p(z|i),
//! and q(x|z) = N(x; dec(e_z), sigma^2 I) (so -log q = ||x - dec(e_z)||^2 / (2 sigma^2) +
//! (pixels/2) log(2 pi sigma^2), [`crate::info::gaussian_nll`]).
//!
//! Estimator (`--eval-samples S`): draw S code maps per image, decode each,
//! d_{i,s} = -log q(x_i | z_{i,s}); D^ = (1/N) sum_i dbar_i with dbar_i = (1/S) sum_s d_{i,s}, and
//! its Monte-Carlo standard error SE = sqrt(sum_i v_i / S) / N, v_i the sample variance of
//! d_{i,1..S} (the draws of different images are independent). SE falls as 1/sqrt(S). For a
//! one-hot posterior every draw is the hard code map: D^ is the hard distortion and SE = 0.
//!
//! This differs from the *training-time* distortion of soft EM, the decoder applied to the mean
//! of m sampled codewords (`--samples`), which is neither this expectation nor deterministic.

use crate::info::gaussian_nll;
use crate::kernels::assign::{Codebook, SoftOptions, SplitMix64, soft_assign};

/// A Monte-Carlo estimate: its mean and standard error.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub se: f64,
}

/// Streaming accumulator of the expected distortion (and squared error) over images.
#[derive(Clone, Debug, Default)]
pub struct ExpectedDistortion {
    images: usize,
    /// Draws per image of the last added image (all images must have the same).
    samples: usize,
    sum_mean: f64,
    sum_var: f64,
    sum_sse_mean: f64,
    sum_sse_var: f64,
    pixels: usize,
}

/// Mean and sample variance (0 for a single value) of `v`, in f64, shifted by the first value:
/// equal values give exactly that value and variance 0.
fn mean_var(v: &[f64]) -> (f64, f64) {
    let (n, x0) = (v.len() as f64, v[0]);
    let s: f64 = v.iter().map(|x| x - x0).sum();
    let s2: f64 = v.iter().map(|x| (x - x0).powi(2)).sum();
    let var = if v.len() > 1 {
        ((s2 - s * s / n) / (n - 1.0)).max(0.0)
    } else {
        0.0
    };
    (x0 + s / n, var)
}

impl ExpectedDistortion {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one image of `pixels` values: the squared errors `sse` of its S decoded code maps
    /// (S = 1 for a deterministic map).
    pub fn add_image(&mut self, sse: &[f64], pixels: usize, sigma: f64) {
        assert!(!sse.is_empty(), "at least one decoded code map");
        assert!(
            self.images == 0 || self.samples == sse.len(),
            "the same number of draws for every image"
        );
        let nll: Vec<f64> = sse
            .iter()
            .map(|&e| gaussian_nll(e, pixels, sigma))
            .collect();
        let (m, v) = mean_var(&nll);
        let (ms, vs) = mean_var(sse);
        self.sum_mean += m;
        self.sum_var += v;
        self.sum_sse_mean += ms / pixels as f64;
        self.sum_sse_var += vs / (pixels * pixels) as f64;
        self.samples = sse.len();
        self.pixels = pixels;
        self.images += 1;
    }

    pub fn images(&self) -> usize {
        self.images
    }

    fn estimate(&self, sum_mean: f64, sum_var: f64) -> Estimate {
        let n = self.images.max(1) as f64;
        Estimate {
            mean: sum_mean / n,
            se: (sum_var / self.samples.max(1) as f64).sqrt() / n,
        }
    }

    /// D^ and its standard error: nats per image.
    pub fn nll(&self) -> Estimate {
        self.estimate(self.sum_mean, self.sum_var)
    }

    /// The expected squared error per pixel and its standard error.
    pub fn mse(&self) -> Estimate {
        self.estimate(self.sum_sse_mean, self.sum_sse_var)
    }
}

/// S code maps of the rows of `z` (`[N, D]`, the latent vectors of a batch), each row's code drawn
/// from p(z|i) = softmax(-||z_i - e_z||^2 / tau) independently of every other row and map:
/// `maps[s][i]`. The fused kernel draws a row's S codes as sorted draws; a uniform random
/// permutation of each row's draws makes them an i.i.d. sequence again, so map s is a draw of the
/// product posterior.
pub fn draw_code_maps(
    z: &[f32],
    cb: &Codebook,
    tau: f64,
    samples: usize,
    seed: u64,
) -> Vec<Vec<u32>> {
    let opts = SoftOptions {
        tau,
        samples,
        seed,
        log_r: None,
        labels: None,
    };
    let drawn = soft_assign(z, cb, &opts).samples;
    let n = z.len() / cb.d;
    let mut maps = vec![vec![0u32; n]; samples];
    let mut row = vec![0u32; samples];
    for i in 0..n {
        row.copy_from_slice(&drawn[i * samples..(i + 1) * samples]);
        let mut rng = SplitMix64::new(seed ^ 0x7065_726d, i as u64);
        for j in (1..samples).rev() {
            let r = (rng.next_u64() % (j as u64 + 1)) as usize;
            row.swap(j, r);
        }
        for (map, &c) in maps.iter_mut().zip(&row) {
            map[i] = c;
        }
    }
    maps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy problem: `l` positions a image, each with its own latent vector; the toy decoder
    /// adds the rows `v[z_l]` (`[K, P]`) of the drawn codes. Returns the latent vectors, the
    /// codebook and the exact posterior of each position.
    fn toy(l: usize, k: usize, d: usize, tau: f64) -> (Vec<f32>, Vec<f32>, Vec<Vec<f64>>) {
        let mut rng = SplitMix64::new(3, 0);
        let mut u = || rng.next_f64() as f32;
        let z: Vec<f32> = (0..l * d).map(|_| u() * 0.8).collect();
        let e: Vec<f32> = (0..k * d).map(|_| u()).collect();
        let post = (0..l)
            .map(|i| {
                let a: Vec<f64> = (0..k)
                    .map(|j| {
                        let d2: f64 = (0..d)
                            .map(|t| (z[i * d + t] as f64 - e[j * d + t] as f64).powi(2))
                            .sum();
                        -d2 / tau
                    })
                    .collect();
                let mx = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = a.iter().map(|x| (x - mx).exp()).sum();
                a.iter().map(|x| (x - mx).exp() / s).collect()
            })
            .collect();
        (z, e, post)
    }

    /// The estimate over `images` copies of the toy image with `samples` draws each.
    fn toy_estimate(samples: usize, images: usize, seed: u64) -> (Estimate, f64) {
        let (l, k, d, p) = (6, 5, 3, 4);
        let (z, e, post) = toy(l, k, d, 0.05);
        let v: Vec<f64> = (0..k * p)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.3)
            .collect();
        let x: Vec<f64> = (0..p).map(|i| 0.5 - 0.2 * i as f64).collect();
        // Closed form: E||x - sum_l v[z_l]||^2 = ||x - mu||^2 + sum_l sum_p Var_l(v[z]_p), the
        // positions independent.
        let mut exact = 0.0;
        for t in 0..p {
            let mut mu = 0.0;
            let mut var = 0.0;
            for pl in &post {
                let m1: f64 = (0..k).map(|j| pl[j] * v[j * p + t]).sum();
                let m2: f64 = (0..k).map(|j| pl[j] * v[j * p + t].powi(2)).sum();
                mu += m1;
                var += m2 - m1 * m1;
            }
            exact += (x[t] - mu).powi(2) + var;
        }
        let cb = Codebook::new(&e, d);
        // Every image repeats the toy's `l` positions.
        let zs: Vec<f32> = (0..images).flat_map(|_| z.iter().copied()).collect();
        let maps = draw_code_maps(&zs, &cb, 0.05, samples, seed);
        let mut acc = ExpectedDistortion::new();
        for img in 0..images {
            let sse: Vec<f64> = maps
                .iter()
                .map(|m| {
                    (0..p)
                        .map(|t| {
                            let xh: f64 = (0..l).map(|i| v[m[img * l + i] as usize * p + t]).sum();
                            (x[t] - xh).powi(2)
                        })
                        .sum()
                })
                .collect();
            acc.add_image(&sse, p, 1.0);
        }
        (acc.nll(), gaussian_nll(exact, p, 1.0))
    }

    /// The toy decoder's closed-form expectation is within 4 standard errors, and the standard
    /// error falls as 1/sqrt(S). Map-level dependence (every map taking each row's s-th sorted
    /// draw) would bias the cross terms of the squared error.
    #[test]
    fn the_estimate_matches_a_closed_form_and_its_error_falls_as_one_over_sqrt_s() {
        let (a, exact) = toy_estimate(400, 50, 1);
        assert!(a.se > 0.0);
        assert!(
            (a.mean - exact).abs() < 4.0 * a.se,
            "estimate {} ± {} vs exact {exact}",
            a.mean,
            a.se
        );
        let (b, _) = toy_estimate(100, 50, 2);
        let ratio = b.se / a.se;
        assert!(
            (1.7..2.3).contains(&ratio),
            "SE ratio for 4x the draws: {ratio}"
        );
    }

    /// A posterior so sharp that it is one-hot in f32: every draw is the nearest code, so the
    /// estimate is the hard distortion exactly, with standard error 0.
    #[test]
    fn a_one_hot_posterior_gives_the_hard_distortion_exactly() {
        let (z, e, _) = toy(6, 5, 3, 1.0);
        let cb = Codebook::new(&e, 3);
        let hard = crate::kernels::assign::nearest(&z, &cb);
        let maps = draw_code_maps(&z, &cb, 1e-9, 8, 5);
        assert!(maps.iter().all(|m| *m == hard), "{maps:?} vs {hard:?}");
        let sse = |m: &[u32]| m.iter().map(|&c| c as f64 * 0.5).sum::<f64>();
        let mut acc = ExpectedDistortion::new();
        acc.add_image(&maps.iter().map(|m| sse(m)).collect::<Vec<_>>(), 4, 1.0);
        let mut one = ExpectedDistortion::new();
        one.add_image(&[sse(&hard)], 4, 1.0);
        assert_eq!(
            acc.nll(),
            Estimate {
                mean: gaussian_nll(sse(&hard), 4, 1.0),
                se: 0.0
            }
        );
        assert_eq!(acc.nll(), one.nll());
        assert_eq!(acc.mse().mean, sse(&hard) / 4.0);
    }

    /// Each map's codes are distributed as p(z|i) (chi-square over the draws of one row).
    #[test]
    fn each_map_draws_from_the_posterior() {
        let (z, e, post) = toy(1, 5, 3, 0.05);
        let cb = Codebook::new(&e, 3);
        let s = 4000;
        let maps = draw_code_maps(&z, &cb, 0.05, s, 9);
        // The first half and the second half of the maps separately: the permutation leaves no
        // trace of the sorted order.
        for half in [&maps[..s / 2], &maps[s / 2..]] {
            let mut counts = [0f64; 5];
            for m in half {
                counts[m[0] as usize] += 1.0;
            }
            let n = half.len() as f64;
            let chi2: f64 = (0..5)
                .filter(|&j| post[0][j] * n > 5.0)
                .map(|j| (counts[j] - n * post[0][j]).powi(2) / (n * post[0][j]))
                .sum();
            // 4 degrees of freedom at most: the 99.9% point is 18.5.
            assert!(
                chi2 < 18.5,
                "chi-square {chi2}: {counts:?} vs {:?}",
                post[0]
            );
        }
    }
}
