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
//! hard quantizer: assigned at least once). Miller–Madow's m is that count: for a soft marginal,
//! whose every code has some mass, the correction is a count of argmax codes and not a property
//! of the soft distribution.
//!
//! Relevance (the information bottleneck's other axis), when each point carries a label y (the
//! class of its image; every latent vector of an image carries the image's label):
//!
//! * joint p(z, y) = (1/N) sum_{i: y_i = y} p(z|i); H(Y), H(Z, Y) plug-in
//! * I(Z;Y) = H(Z) + H(Y) - H(Z, Y) = H(Z) - H(Z|Y), H(Z|Y) = sum_y p(y) H(p(.|y))
//! * Miller–Madow: each entropy + (m - 1) / (2N), m its nonzero cells, over the argmax codes
//!   (counts); for a soft posterior only the plug-in value of its own joint is reported.

pub mod counts;
pub mod device;

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
    /// Label classes C (0: no labels, no joint).
    classes: usize,
    /// `[K * C]`: sum over the points of label y of p(z|i), at `z * C + y`.
    joint: Vec<f64>,
    /// `[K * C]`: counts of (most probable code, label).
    joint_argmax: Vec<u64>,
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
            classes: 0,
            joint: Vec::new(),
            joint_argmax: Vec::new(),
        }
    }

    /// Also accumulates the joint of codes and labels 0..`classes` (for I(Z;Y)): points are then
    /// added with their label.
    pub fn with_classes(mut self, classes: usize) -> Self {
        self.classes = classes;
        self.joint = vec![0.0; self.k() * classes];
        self.joint_argmax = vec![0; self.k() * classes];
        self
    }

    /// An accumulator from totals computed elsewhere ([`device`]'s stream): `sum_p` and
    /// `argmax_counts` `[K]`, `joint` and `joint_argmax` `[K * C]` (empty when `classes` is 0),
    /// the sums of H(p(.|i)) and of the cross entropies over the `n` points.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_totals(
        log_r: Vec<f64>,
        classes: usize,
        n: u64,
        sum_h: f64,
        sum_ce: f64,
        sum_p: Vec<f64>,
        argmax_counts: Vec<u64>,
        joint: Vec<f64>,
        joint_argmax: Vec<u64>,
    ) -> Self {
        let k = log_r.len();
        assert!(
            sum_p.len() == k && argmax_counts.len() == k,
            "totals over K codes"
        );
        assert!(joint.len() == k * classes && joint_argmax.len() == k * classes);
        Self {
            log_r,
            sum_p,
            argmax_counts,
            sum_h,
            sum_ce,
            n,
            classes,
            joint,
            joint_argmax,
        }
    }

    /// Label classes of the joint (0: none).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Adds a point's label to the joints: its p(z|i) (`w_z * inv_sum`, all K, or the one-hot
    /// code `argmax` when `w` is empty) and its most probable code.
    fn add_label(&mut self, w: &[f32], inv_sum: f64, argmax: usize, label: Option<u32>) {
        let (c, Some(y)) = (self.classes, label) else {
            return;
        };
        let y = y as usize;
        assert!(y < c, "label {y} outside 0..{c}");
        self.joint_argmax[argmax * c + y] += 1;
        if w.is_empty() {
            self.joint[argmax * c + y] += 1.0;
        } else {
            for (z, &wz) in w.iter().enumerate() {
                self.joint[z * c + y] += wz as f64 * inv_sum;
            }
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

    /// Adds points with one-hot p(z|i) at `indices`, with their labels where the accumulator
    /// keeps the joint (`labels[i]` of `indices[i]`).
    pub fn add_hard(&mut self, indices: &[u32], labels: Option<&[u32]>) {
        if let Some(l) = labels {
            assert_eq!(l.len(), indices.len(), "a label per point");
        }
        for (i, &c) in indices.iter().enumerate() {
            let c = c as usize;
            self.sum_p[c] += 1.0;
            self.argmax_counts[c] += 1;
            self.sum_ce -= self.log_r[c];
            self.add_label(&[], 1.0, c, labels.map(|l| l[i]));
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
    /// caller (the soft-assignment kernel has them from its log-sum-exp pass), and its label
    /// where the accumulator keeps the joint.
    pub fn add_weights(
        &mut self,
        w: &[f32],
        inv_sum: f64,
        h: f64,
        argmax: usize,
        label: Option<u32>,
    ) {
        self.add_label(w, inv_sum, argmax, label);
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
        assert_eq!(self.classes, other.classes, "joints over different labels");
        for (a, b) in self.joint.iter_mut().zip(&other.joint) {
            *a += b;
        }
        for (a, b) in self.joint_argmax.iter_mut().zip(&other.joint_argmax) {
            *a += b;
        }
    }

    /// I(Z;Y) and its parts (see the module docs), where the accumulator kept the joint.
    pub fn relevance(&self) -> Option<Relevance> {
        let c = self.classes;
        if c == 0 {
            return None;
        }
        let n = self.n.max(1) as f64;
        let pzy: Vec<f64> = self.joint.iter().map(|v| v / n).collect();
        let marg = |cells: &[f64]| {
            let mut py = vec![0.0; c];
            let mut pz = vec![0.0; self.k()];
            for (i, &v) in cells.iter().enumerate() {
                py[i % c] += v;
                pz[i / c] += v;
            }
            (pz, py)
        };
        let (pz, py) = marg(&pzy);
        let (h_z, h_y, h_zy) = (entropy(&pz), entropy(&py), entropy(&pzy));
        // Over the argmax codes: plug-in and Miller–Madow.
        let cz: Vec<f64> = self.joint_argmax.iter().map(|&v| v as f64 / n).collect();
        let (az, ay) = marg(&cz);
        let nz = |p: &[f64]| p.iter().filter(|&&v| v > 0.0).count().max(1) as f64 - 1.0;
        let plug = entropy(&az) + entropy(&ay) - entropy(&cz);
        let mm = plug + (nz(&az) + nz(&ay) - nz(&cz)) / (2.0 * n);
        Some(Relevance {
            classes: c,
            h_y,
            h_y_miller_madow: h_y + nz(&py) / (2.0 * n),
            i_zy: h_z + h_y - h_zy,
            h_z_given_y: h_zy - h_y,
            argmax_i_zy: plug,
            argmax_i_zy_miller_madow: mm,
        })
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

/// Relevance I(Z;Y) of the codes of one posterior for the labels, nats per point (module docs).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Relevance {
    /// Label classes C.
    pub classes: usize,
    /// H(Y), plug-in, and Miller–Madow corrected.
    pub h_y: f64,
    pub h_y_miller_madow: f64,
    /// I(Z;Y) plug-in under the posterior's own joint (soft for a soft posterior).
    pub i_zy: f64,
    /// H(Z|Y) under the same joint: I(Z;Y) = H(Z) - H(Z|Y).
    pub h_z_given_y: f64,
    /// I(Z;Y) of the most probable codes, plug-in and Miller–Madow (for a hard posterior, the
    /// same joint as `i_zy`).
    pub argmax_i_zy: f64,
    pub argmax_i_zy_miller_madow: f64,
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
        acc.add_hard(&(0..n as u32).collect::<Vec<_>>(), None);
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
        acc.add_hard(&[0, 0, 1, 2, 2, 2, 5], None);
        let s = acc.summary();
        close(s.h_z_miller_madow, s.h_z + (4.0 - 1.0) / (2.0 * 7.0), 1e-12);
    }

    /// Z independent of Y: I(Z;Y) = 0; Z a function of Y (one code a class): I(Z;Y) = H(Y).
    #[test]
    fn relevance_closed_forms() {
        let mut acc = InfoAccumulator::uniform(4).with_classes(2);
        // Each class uses every code equally often.
        let codes = [0u32, 1, 2, 3, 0, 1, 2, 3];
        let labels = [0u32, 0, 0, 0, 1, 1, 1, 1];
        acc.add_hard(&codes, Some(&labels));
        let r = acc.relevance().unwrap();
        close(r.i_zy, 0.0, 1e-12);
        close(r.argmax_i_zy, 0.0, 1e-12);
        close(r.h_y, 2f64.ln(), 1e-12);
        close(r.h_z_given_y, 4f64.ln(), 1e-12);
        // Miller–Madow: m_Z = 4, m_Y = 2, m_ZY = 8 cells.
        close(r.argmax_i_zy_miller_madow, (3.0 + 1.0 - 7.0) / 16.0, 1e-12);
        close(r.h_y_miller_madow, 2f64.ln() + 1.0 / 16.0, 1e-12);

        // z = 2y over three classes of sizes 1, 2, 5.
        let labels: Vec<u32> = [0, 1, 1, 2, 2, 2, 2, 2].to_vec();
        let codes: Vec<u32> = labels.iter().map(|y| 2 * y).collect();
        let mut acc = InfoAccumulator::uniform(6).with_classes(3);
        acc.add_hard(&codes, Some(&labels));
        let r = acc.relevance().unwrap();
        let h_y = entropy(&[1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0]);
        close(r.h_y, h_y, 1e-12);
        close(r.i_zy, h_y, 1e-12);
        close(r.argmax_i_zy, h_y, 1e-12);
        close(r.h_z_given_y, 0.0, 1e-12);
        // Without classes there is no relevance.
        assert!(InfoAccumulator::uniform(3).relevance().is_none());
    }

    /// Under a soft posterior: I(Z;Y) = H(Z) - H(Z|Y) with H(Z|Y) from the class conditionals,
    /// and the sum over the joint; streaming in two parts equals one pass.
    #[test]
    fn soft_relevance_is_h_z_minus_h_z_given_y() {
        let (k, c, n) = (5usize, 3usize, 40usize);
        let mut rng = crate::kernels::assign::SplitMix64::new(7, 0);
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let w: Vec<f64> = (0..k).map(|_| rng.next_f64() + 0.01).collect();
            let s: f64 = w.iter().sum();
            rows.push(w.iter().map(|v| (v / s) as f32).collect::<Vec<f32>>());
            labels.push((i * 7 % c) as u32);
        }
        let add = |acc: &mut InfoAccumulator, range: std::ops::Range<usize>| {
            for i in range {
                let row = &rows[i];
                let inv = 1.0 / row.iter().map(|&v| v as f64).sum::<f64>();
                let h = -row
                    .iter()
                    .map(|&v| v as f64 * inv * (v as f64 * inv).ln())
                    .sum::<f64>();
                let am = (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
                acc.add_weights(row, inv, h, am, Some(labels[i]));
            }
        };
        let mut whole = InfoAccumulator::uniform(k).with_classes(c);
        add(&mut whole, 0..n);
        let mut a = InfoAccumulator::uniform(k).with_classes(c);
        let mut b = InfoAccumulator::uniform(k).with_classes(c);
        add(&mut a, 0..17);
        add(&mut b, 17..n);
        a.merge(&b);
        let r = whole.relevance().unwrap();
        let r2 = a.relevance().unwrap();
        close(r.i_zy, r2.i_zy, 1e-12);
        close(r.argmax_i_zy, r2.argmax_i_zy, 1e-12);
        // Directly from the class conditionals.
        let mut joint = vec![vec![0.0f64; k]; c];
        for (row, &y) in rows.iter().zip(&labels) {
            let s: f64 = row.iter().map(|&v| v as f64).sum();
            for z in 0..k {
                joint[y as usize][z] += row[z] as f64 / s / n as f64;
            }
        }
        let mut h_z_given_y = 0.0;
        let mut mi = 0.0;
        let pz: Vec<f64> = (0..k).map(|z| joint.iter().map(|r| r[z]).sum()).collect();
        for row in &joint {
            let py: f64 = row.iter().sum();
            let cond: Vec<f64> = row.iter().map(|v| v / py).collect();
            h_z_given_y += py * entropy(&cond);
            for z in 0..k {
                mi += row[z] * (row[z] / (py * pz[z])).ln();
            }
        }
        close(r.h_z_given_y, h_z_given_y, 1e-9);
        close(r.i_zy, mi, 1e-9);
        close(r.i_zy, whole.summary().h_z - r.h_z_given_y, 1e-9);
        assert!(r.i_zy > 0.0 && r.i_zy < r.h_y);
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
