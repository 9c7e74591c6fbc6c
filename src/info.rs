//! Information quantities of an assignment p(z|i) of data points i (latent vectors z_e(x_i)) to
//! codes z, over a whole data set, streaming (memory independent of the data set's size).
//!
//! With N points, K codes and a prior r(z) (uniform unless learned), in nats:
//!
//! * marginal p(z) = (1/N) sum_i p(z|i)
//! * H(Z) = -sum_z p(z) log p(z)                           (seed eq. 19), plug-in; Miller–Madow
//!   corrected: H(Z) + (m - 1) / (2N), m = codes used
//! * perplexity = exp(H(Z))
//! * H(Z|I) = (1/N) sum_i H(p(.|i))                        (zero for a hard quantizer)
//! * I(I;Z) = H(Z) - H(Z|I)                                (seed eq. 13)
//! * H(p(Z|I), r) = -(1/N) sum_i sum_z p(z|i) log r(z)     (seed eq. 22/25, with its minus sign)
//! * KL(p(Z|I) || r) = H(p(Z|I), r) - H(Z|I)               (seed eq. 15/26)
//!
//! "Codes used" counts the codes that are the most probable code of at least one point (for a
//! hard quantizer: assigned at least once).

/// Entropy in nats of a probability vector; zero entries contribute 0 (0 log 0 = 0).
pub fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&q| q > 0.0)
        .map(|&q| q * q.ln())
        .sum::<f64>()
}

/// Streaming histogram of hard code assignments.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeHistogram {
    pub counts: Vec<u64>,
}

impl CodeHistogram {
    pub fn new(k: usize) -> Self {
        Self { counts: vec![0; k] }
    }

    /// Adds a batch of assigned code indices.
    pub fn add(&mut self, indices: &[u32]) {
        for &i in indices {
            self.counts[i as usize] += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Marginal p(z) = count(z) / N.
    pub fn marginal(&self) -> Vec<f64> {
        let n = self.total().max(1) as f64;
        self.counts.iter().map(|&c| c as f64 / n).collect()
    }

    /// Plug-in entropy H(Z) of the marginal, nats.
    pub fn entropy(&self) -> f64 {
        entropy(&self.marginal())
    }

    /// exp(H(Z)).
    pub fn perplexity(&self) -> f64 {
        self.entropy().exp()
    }

    /// Number of codes assigned at least once.
    pub fn used(&self) -> usize {
        self.counts.iter().filter(|&&c| c > 0).count()
    }

    /// Number of codes never assigned (K - used).
    pub fn dead(&self) -> usize {
        self.counts.len() - self.used()
    }
}

/// All information quantities of one assignment over a data set (nats per point).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InfoSummary {
    /// Number of points (latent vectors).
    pub n: u64,
    /// H(Z), plug-in.
    pub h_z: f64,
    /// H(Z), Miller–Madow corrected.
    pub h_z_miller_madow: f64,
    /// exp(H(Z)).
    pub perplexity: f64,
    pub codes_used: usize,
    /// H(Z|I).
    pub h_z_given_i: f64,
    /// I(I;Z) = H(Z) - H(Z|I).
    pub mutual_info: f64,
    /// H(p(Z|I), r).
    pub cross_entropy: f64,
    /// KL(p(Z|I) || r) = H(p(Z|I), r) - H(Z|I).
    pub kl: f64,
}

impl InfoSummary {
    /// The quantities in bits (n and codes used unchanged).
    pub fn bits(&self) -> InfoSummary {
        let b = std::f64::consts::LN_2;
        InfoSummary {
            h_z: self.h_z / b,
            h_z_miller_madow: self.h_z_miller_madow / b,
            h_z_given_i: self.h_z_given_i / b,
            mutual_info: self.mutual_info / b,
            cross_entropy: self.cross_entropy / b,
            kl: self.kl / b,
            ..self.clone()
        }
    }
}

/// Streaming accumulator of [`InfoSummary`] under a prior r(z).
#[derive(Clone, Debug)]
pub struct InfoAccumulator {
    log_r: Vec<f64>,
    sum_p: Vec<f64>,
    argmax_counts: Vec<u64>,
    sum_h: f64,
    sum_ce: f64,
    n: u64,
}

impl InfoAccumulator {
    /// With prior `log_r` (log r(z), length K).
    pub fn new(log_r: Vec<f64>) -> Self {
        let k = log_r.len();
        Self {
            log_r,
            sum_p: vec![0.0; k],
            argmax_counts: vec![0; k],
            sum_h: 0.0,
            sum_ce: 0.0,
            n: 0,
        }
    }

    /// With the uniform prior r(z) = 1/K.
    #[cfg(test)]
    pub(crate) fn uniform(k: usize) -> Self {
        Self::new(vec![-(k as f64).ln(); k])
    }

    pub fn k(&self) -> usize {
        self.log_r.len()
    }

    /// Adds points with one-hot p(z|i) at `indices`.
    pub fn add_hard(&mut self, indices: &[u32]) {
        for &c in indices {
            let c = c as usize;
            self.sum_p[c] += 1.0;
            self.argmax_counts[c] += 1;
            self.sum_ce -= self.log_r[c];
        }
        self.n += indices.len() as u64;
    }

    /// Adds points given by rows of log p(z|i) (`[N*K]`, each row normalised). Using the log
    /// probabilities keeps H(p(.|i)) exact where p is tiny.
    #[cfg(test)]
    pub(crate) fn add_log_probs(&mut self, log_p: &[f32]) {
        let k = self.k();
        for row in log_p.chunks_exact(k) {
            let (mut h, mut ce, mut best, mut best_v) = (0.0f64, 0.0f64, 0usize, f32::NEG_INFINITY);
            for (z, &lp) in row.iter().enumerate() {
                if lp > best_v {
                    (best, best_v) = (z, lp);
                }
                if lp == f32::NEG_INFINITY {
                    continue;
                }
                let lp = lp as f64;
                let p = lp.exp();
                self.sum_p[z] += p;
                h -= p * lp;
                ce -= p * self.log_r[z];
            }
            self.argmax_counts[best] += 1;
            self.sum_h += h;
            self.sum_ce += ce;
            self.n += 1;
        }
    }

    /// Adds one point whose p(z|i) = w_z * `inv_sum` (`w` unnormalised weights, `inv_sum` = 1 /
    /// sum w), with its entropy H(p(.|i)) = `h` and most probable code `argmax` computed by the
    /// caller (the soft-assignment kernel has them from its log-sum-exp pass).
    pub fn add_weights(&mut self, w: &[f32], inv_sum: f64, h: f64, argmax: usize) {
        let mut ce = 0.0f64;
        for ((s, &lr), &wz) in self.sum_p.iter_mut().zip(&self.log_r).zip(w) {
            let p = wz as f64 * inv_sum;
            *s += p;
            ce -= p * lr;
        }
        self.argmax_counts[argmax] += 1;
        self.sum_h += h;
        self.sum_ce += ce;
        self.n += 1;
    }

    /// Adds the points of `other` (accumulated under the same prior).
    pub fn merge(&mut self, other: &InfoAccumulator) {
        assert_eq!(self.k(), other.k(), "accumulators over different codebooks");
        for (a, b) in self.sum_p.iter_mut().zip(&other.sum_p) {
            *a += b;
        }
        for (a, b) in self.argmax_counts.iter_mut().zip(&other.argmax_counts) {
            *a += b;
        }
        self.sum_h += other.sum_h;
        self.sum_ce += other.sum_ce;
        self.n += other.n;
    }

    /// Adds points given by rows of p(z|i) (`[N*K]`).
    #[cfg(test)]
    pub(crate) fn add_probs(&mut self, p: &[f64]) {
        let lp: Vec<f32> = p
            .iter()
            .map(|&q| {
                if q > 0.0 {
                    q.ln() as f32
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        self.add_log_probs(&lp);
    }

    /// Marginal p(z).
    pub fn marginal(&self) -> Vec<f64> {
        let n = self.n.max(1) as f64;
        self.sum_p.iter().map(|s| s / n).collect()
    }

    /// Counts of the most probable code of each point.
    pub fn argmax_counts(&self) -> &[u64] {
        &self.argmax_counts
    }

    pub fn summary(&self) -> InfoSummary {
        let n = self.n.max(1) as f64;
        let h_z = entropy(&self.marginal());
        let used = self.argmax_counts.iter().filter(|&&c| c > 0).count();
        let h_zi = self.sum_h / n;
        let ce = self.sum_ce / n;
        InfoSummary {
            n: self.n,
            h_z,
            h_z_miller_madow: h_z + (used.max(1) as f64 - 1.0) / (2.0 * n),
            perplexity: h_z.exp(),
            codes_used: used,
            h_z_given_i: h_zi,
            mutual_info: h_z - h_zi,
            cross_entropy: ce,
            kl: ce - h_zi,
        }
    }
}

/// The seed's two objectives for one data set, per image: the distortion term is the negative
/// log-likelihood of the image under a Gaussian decoder N(x_hat, sigma^2 I) (nats), the rate term
/// is `latents` (latent vectors per image) times the per-vector rate:
/// * L_VDIB = distortion + beta * latents * H(p(Z|I), r)      (eq. 23)
/// * L_VIB  = distortion + beta * latents * KL(p(Z|I) || r)   (eq. 18)
pub fn objectives(distortion: f64, info: &InfoSummary, beta: f64, latents: usize) -> (f64, f64) {
    let l = latents as f64;
    (
        distortion + beta * l * info.cross_entropy,
        distortion + beta * l * info.kl,
    )
}

/// Gaussian negative log-likelihood of an image of `pixels` values with squared error `sse`
/// under N(x_hat, sigma^2 I): sse / (2 sigma^2) + (pixels / 2) log(2 pi sigma^2).
pub fn gaussian_nll(sse: f64, pixels: usize, sigma: f64) -> f64 {
    let s2 = sigma * sigma;
    sse / (2.0 * s2) + 0.5 * pixels as f64 * (2.0 * std::f64::consts::PI * s2).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn uniform_code_has_entropy_log_k() {
        let mut h = CodeHistogram::new(16);
        let idx: Vec<u32> = (0..16 * 5).map(|i| i % 16).collect();
        h.add(&idx);
        close(h.entropy(), 16f64.ln(), 1e-12);
        close(h.perplexity(), 16.0, 1e-9);
        assert_eq!((h.used(), h.dead()), (16, 0));
    }

    #[test]
    fn collapsed_code_has_zero_entropy_and_streaming_matches_whole() {
        let mut h = CodeHistogram::new(8);
        h.add(&[3; 100]);
        assert_eq!(h.entropy(), 0.0);
        assert_eq!((h.used(), h.dead()), (1, 7));
        let (a, b) = ([0u32, 1, 1, 2], [2u32, 2, 7]);
        let mut s = CodeHistogram::new(8);
        s.add(&a);
        s.add(&b);
        let mut w = CodeHistogram::new(8);
        w.add(&[a.as_slice(), b.as_slice()].concat());
        assert_eq!(s, w);
        let p = [1.0 / 7.0, 2.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0];
        let want: f64 = -p.iter().map(|q: &f64| q * q.ln()).sum::<f64>();
        close(s.entropy(), want, 1e-12);
    }

    #[test]
    fn uniform_posterior_gives_log_k_conditional_entropy_and_zero_information() {
        let k = 8;
        let mut acc = InfoAccumulator::uniform(k);
        acc.add_probs(&vec![1.0 / k as f64; 5 * k]);
        let s = acc.summary();
        close(s.h_z_given_i, (k as f64).ln(), 1e-6);
        close(s.h_z, (k as f64).ln(), 1e-6);
        close(s.mutual_info, 0.0, 1e-6);
        close(s.kl, 0.0, 1e-6);
        close(s.cross_entropy, (k as f64).ln(), 1e-6);
    }

    #[test]
    fn distinct_one_hot_codes_give_log_n_and_zero_conditional_entropy() {
        let n = 6;
        let mut acc = InfoAccumulator::uniform(10);
        acc.add_hard(&(0..n as u32).collect::<Vec<_>>());
        let s = acc.summary();
        close(s.h_z, (n as f64).ln(), 1e-12);
        close(s.h_z_given_i, 0.0, 1e-12);
        close(s.mutual_info, (n as f64).ln(), 1e-12);
        assert_eq!(s.codes_used, n);
        // The same through add_probs with one-hot rows.
        let mut acc2 = InfoAccumulator::uniform(10);
        let mut rows = vec![0.0; n * 10];
        for i in 0..n {
            rows[i * 10 + i] = 1.0;
        }
        acc2.add_probs(&rows);
        let s2 = acc2.summary();
        close(s2.h_z, s.h_z, 1e-9);
        close(s2.cross_entropy, s.cross_entropy, 1e-9);
    }

    #[test]
    fn known_joint_distribution_gives_its_mutual_information() {
        // Two points (p(i) = 1/2) with p(z|i=0) = (0.9, 0.1), p(z|i=1) = (0.2, 0.8).
        // p(z) = (0.55, 0.45); I = H(Z) - H(Z|I).
        let mut acc = InfoAccumulator::uniform(2);
        acc.add_probs(&[0.9, 0.1, 0.2, 0.8]);
        let s = acc.summary();
        let h = |p: &[f64]| -p.iter().map(|q| q * q.ln()).sum::<f64>();
        let want = h(&[0.55, 0.45]) - 0.5 * (h(&[0.9, 0.1]) + h(&[0.2, 0.8]));
        close(s.mutual_info, want, 1e-7);
        // From the joint directly: sum p(i,z) log p(i,z) / (p(i) p(z)).
        let joint: [[f64; 2]; 2] = [[0.45, 0.05], [0.1, 0.4]];
        let pz: [f64; 2] = [0.55, 0.45];
        let mut mi = 0.0;
        for (i, row) in joint.iter().enumerate() {
            for (z, &pij) in row.iter().enumerate() {
                mi += pij * (pij / (0.5 * pz[z])).ln();
            }
            let _ = i;
        }
        close(s.mutual_info, mi, 1e-7);
        assert!(s.bits().mutual_info > s.mutual_info);
    }

    #[test]
    fn kl_is_cross_entropy_minus_conditional_entropy_under_a_learned_prior() {
        let r = [0.5f64, 0.3, 0.2];
        let mut acc = InfoAccumulator::new(r.iter().map(|x| x.ln()).collect());
        let rows = [0.7, 0.2, 0.1, 0.1, 0.1, 0.8, 0.3, 0.3, 0.4];
        acc.add_probs(&rows);
        let s = acc.summary();
        // Direct KL: (1/N) sum_i sum_z p log(p / r).
        let mut kl = 0.0;
        let mut ce = 0.0;
        for row in rows.chunks(3) {
            for z in 0..3 {
                kl += row[z] * (row[z] / r[z]).ln() / 3.0;
                ce -= row[z] * r[z].ln() / 3.0;
            }
        }
        close(s.kl, kl, 1e-6);
        close(s.cross_entropy, ce, 1e-6);
        close(s.kl, s.cross_entropy - s.h_z_given_i, 1e-6);
        assert!(
            s.cross_entropy > 0.0,
            "the cross entropy carries its minus sign"
        );
    }

    #[test]
    fn miller_madow_is_plug_in_plus_m_minus_one_over_2n() {
        let mut acc = InfoAccumulator::uniform(10);
        acc.add_hard(&[0, 0, 1, 2, 2, 2, 5]);
        let s = acc.summary();
        close(s.h_z_miller_madow, s.h_z + (4.0 - 1.0) / (2.0 * 7.0), 1e-12);
    }

    #[test]
    fn gaussian_nll_closed_form() {
        // sigma = 1, one pixel, zero error: 0.5 log(2 pi).
        close(
            gaussian_nll(0.0, 1, 1.0),
            0.5 * (2.0 * std::f64::consts::PI).ln(),
            1e-12,
        );
        close(
            gaussian_nll(4.0, 2, 2.0) - gaussian_nll(0.0, 2, 2.0),
            0.5,
            1e-12,
        );
        let info = InfoSummary {
            n: 1,
            h_z: 0.0,
            h_z_miller_madow: 0.0,
            perplexity: 1.0,
            codes_used: 1,
            h_z_given_i: 0.5,
            mutual_info: 0.0,
            cross_entropy: 2.0,
            kl: 1.5,
        };
        let (vdib, vib) = objectives(10.0, &info, 0.5, 4);
        close(vdib, 14.0, 1e-12);
        close(vib, 13.0, 1e-12);
    }
}
