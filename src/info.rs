//! Information quantities of the code assignment.
//!
//! For a hard quantizer p(z|i) is one-hot, so the marginal over a data set is the normalised
//! histogram of assigned codes, p(z) = count(z) / N, and
//!
//! * H(Z) = -sum_z p(z) log p(z)            (seed eq. 19; nats)
//! * perplexity = exp(H(Z))                 (the effective number of codes used)
//! * H(Z|I) = 0, so I(I;Z) = H(Z) - H(Z|I) = H(Z).
//!
//! [`CodeHistogram`] accumulates counts batch by batch (constant memory in the data set's size),
//! so the perplexity reported for an evaluation is that of the whole set, not an average of
//! per-batch perplexities (which is biased low).

/// Entropy in nats of a probability vector; zero entries contribute 0 (0 log 0 = 0).
pub fn entropy(p: &[f64]) -> f64 {
    -p.iter().filter(|&&q| q > 0.0).map(|&q| q * q.ln()).sum::<f64>()
}

/// Streaming histogram of code assignments over a data set.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_code_has_entropy_log_k() {
        let mut h = CodeHistogram::new(16);
        let idx: Vec<u32> = (0..16 * 5).map(|i| i % 16).collect();
        h.add(&idx);
        assert!((h.entropy() - 16f64.ln()).abs() < 1e-12);
        assert!((h.perplexity() - 16.0).abs() < 1e-9);
        assert_eq!((h.used(), h.dead()), (16, 0));
    }

    #[test]
    fn collapsed_code_has_zero_entropy_and_streaming_matches_whole() {
        let mut h = CodeHistogram::new(8);
        h.add(&[3; 100]);
        assert_eq!(h.entropy(), 0.0);
        assert_eq!((h.used(), h.dead()), (1, 7));
        // Two batches give the same histogram as one.
        let (a, b) = ([0u32, 1, 1, 2], [2u32, 2, 7]);
        let mut s = CodeHistogram::new(8);
        s.add(&a);
        s.add(&b);
        let mut w = CodeHistogram::new(8);
        w.add(&[a.as_slice(), b.as_slice()].concat());
        assert_eq!(s, w);
        // p = (1/7, 2/7, 3/7, 1/7)
        let p = [1.0 / 7.0, 2.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0];
        let want: f64 = -p.iter().map(|q: &f64| q * q.ln()).sum::<f64>();
        assert!((s.entropy() - want).abs() < 1e-12);
    }
}
