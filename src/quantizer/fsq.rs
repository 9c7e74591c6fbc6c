//! `fsq`: finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE
//! Made Simple", section 3 and appendix A). No codebook: each of the d channels of z_e is bounded
//! and rounded to L_c levels, the code space is the grid of K = prod_c L_c points.
//!
//! f(z)_c = tanh(z_c + s_c) h_c - o_c,   h_c = (L_c - 1)(1 + 1e-3) / 2,
//! o_c = 0 (L_c odd) or 1/2 (L_c even),  s_c = atanh(o_c / h_c) (so f(0) = 0; the paper
//! writes tan, whose value is within 1e-2 of it)
//! z_q,c = round(f(z)_c) / w_c,  w_c = floor(L_c / 2)            (in [-1, 1])
//!
//! The rounding passes the gradient straight through: z_st = f(z)/w + sg(z_q - f(z)/w), so the
//! encoder learns through the bound. The code is the mixed-radix number of the levels,
//! k = sum_c (round(f(z)_c) + w_c) prod_{c' < c} L_{c'} (digit 0 is channel 0). There is no
//! codebook term and no commitment term (both reported as 0): the loss is the reconstruction's.
//! In the seed's terms a deterministic bottleneck (H(Z|I) = 0) with a uniform prior: rate log K.

use burn::tensor::{Device, Tensor, TensorData};

use super::config::{CodeSpace, QuantizerConfig};
use super::{Context, QuantizerKind, QuantizerOutput, QuantizerParams, Registered};

/// FSQ's constants for a level set.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub levels: Vec<usize>,
}

impl Grid {
    pub fn new(levels: Vec<usize>) -> Self {
        Self { levels }
    }

    /// h_c, o_c, s_c and w_c of a channel (module docs).
    fn channel(l: usize) -> (f64, f64, f64, f64) {
        let half_l = (l as f64 - 1.0) * (1.0 + 1e-3) / 2.0;
        let offset = if l % 2 == 1 { 0.0 } else { 0.5 };
        let shift = (offset / half_l).atanh();
        (half_l, offset, shift, (l / 2) as f64)
    }

    /// The number of grid points K.
    pub fn size(&self) -> u64 {
        self.levels.iter().map(|&l| l as u64).product()
    }

    /// round(f(z)_c) for one value of channel c, as f(z) computes it in f32.
    fn rounded(&self, c: usize, z: f32) -> f32 {
        let (h, o, s, _) = Self::channel(self.levels[c]);
        ((z + s as f32).tanh() * h as f32 - o as f32).round_ties_even()
    }

    /// The code of each row of `z` (`[N*d]`).
    pub fn codes(&self, z: &[f32]) -> Vec<u32> {
        let d = self.levels.len();
        z.chunks_exact(d)
            .map(|row| {
                let mut k = 0u64;
                let mut radix = 1u64;
                for (c, &v) in row.iter().enumerate() {
                    let (_, _, _, w) = Self::channel(self.levels[c]);
                    let digit = (self.rounded(c, v) as f64 + w) as u64;
                    k += digit * radix;
                    radix *= self.levels[c] as u64;
                }
                k as u32
            })
            .collect()
    }

    /// The grid point of each code, `[N*d]` (the inverse of [`Grid::codes`] on the grid).
    pub fn points(&self, codes: &[u32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(codes.len() * self.levels.len());
        for &k in codes {
            let mut k = k as u64;
            for &l in &self.levels {
                let (_, _, _, w) = Self::channel(l);
                let digit = k % l as u64;
                k /= l as u64;
                out.push(((digit as f64 - w) / w) as f32);
            }
        }
        out
    }

    /// A row `[1, d]` of one constant a channel.
    fn row(&self, f: impl Fn(usize) -> f64, device: &Device) -> Tensor<2> {
        let v: Vec<f32> = (0..self.levels.len()).map(|c| f(c) as f32).collect();
        Tensor::from_data(TensorData::new(v, [1, self.levels.len()]), device)
    }

    /// The forward pass on z_e `[N, d]`, as tensor operations (any device, no host read).
    pub fn quantize(&self, z_e: Tensor<2>) -> QuantizerOutput {
        let [n, d] = z_e.dims();
        let device = z_e.device();
        let ch = |c: usize| Self::channel(self.levels[c]);
        let (h, o) = (
            self.row(|c| ch(c).0, &device),
            self.row(|c| ch(c).1, &device),
        );
        let (s, w) = (
            self.row(|c| ch(c).2, &device),
            self.row(|c| ch(c).3, &device),
        );
        let radix: Vec<f64> = self
            .levels
            .iter()
            .scan(1.0f64, |r, &l| {
                let here = *r;
                *r *= l as f64;
                Some(here)
            })
            .collect();
        let basis = self.row(|c| radix[c], &device);
        let bounded = (z_e.clone() + s.expand([n, d])).tanh() * h.expand([n, d]) - o.expand([n, d]);
        let rounded = bounded.clone().detach().round();
        let w = w.expand([n, d]);
        let scaled = bounded / w.clone();
        let z_q = rounded.clone() / w.clone();
        let z_st = scaled.clone() + (z_q.clone() - scaled).detach();
        let indices = ((rounded + w) * basis.expand([n, d]))
            .sum_dim(1)
            .add_scalar(0.5)
            .reshape([n])
            .int();
        let zero = Tensor::<1>::zeros([1], &device);
        QuantizerOutput {
            z_st,
            z_q,
            indices,
            samples: None,
            weights: None,
            codebook_loss: zero.clone(),
            commitment_loss: zero,
            extra: None,
            ema_rows: None,
        }
    }
}

/// The FSQ quantizer.
#[derive(Debug)]
pub struct Fsq {
    grid: Grid,
}

impl Registered for Fsq {
    /// Nothing moves outside the gradient step.
    const CODEBOOK_BY_GRADIENT: bool = true;

    fn new(cfg: &QuantizerConfig) -> Self {
        Self {
            grid: Grid::new(cfg.fsq_levels()),
        }
    }
}

impl super::Quantizer for Fsq {
    fn kind(&self) -> QuantizerKind {
        QuantizerKind::Fsq
    }

    fn code_space(&self) -> CodeSpace {
        CodeSpace {
            size: self.grid.size(),
            stages: 1,
        }
    }

    fn forward(&self, z_e: Tensor<2>, _params: &QuantizerParams, _ctx: Context) -> QuantizerOutput {
        self.grid.quantize(z_e)
    }

    /// No codebook or commitment term: 0.
    fn loss(&self, out: &QuantizerOutput) -> Tensor<1> {
        out.codebook_loss.clone()
    }

    fn codes(&self, z_e: &[f32], _params: &QuantizerParams) -> Vec<u32> {
        self.grid.codes(z_e)
    }

    fn codewords(&self, codes: &[u32], _params: &QuantizerParams) -> Vec<f32> {
        self.grid.points(codes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The grid of each channel has L_c points, evenly spaced in [-1, 1]; every code's point
    /// maps back to its code (the mixed-radix round trip), over the whole code space.
    #[test]
    fn grid_and_mixed_radix_round_trip() {
        for levels in [
            vec![8, 5, 5, 5],
            vec![3, 4],
            vec![2, 2, 2],
            vec![7, 5, 5, 5, 5],
        ] {
            let g = Grid::new(levels.clone());
            let k = g.size() as u32;
            let codes: Vec<u32> = (0..k).collect();
            let pts = g.points(&codes);
            // The latent that the bound takes to each grid point (its inverse, atanh), coded.
            let z: Vec<f32> = pts
                .iter()
                .enumerate()
                .map(|(i, &p)| {
                    let (h, o, s, w) = Grid::channel(levels[i % levels.len()]);
                    (((p as f64 * w + o) / h).atanh() - s) as f32
                })
                .collect();
            assert_eq!(g.codes(&z), codes, "{levels:?}");
            for (c, &l) in levels.iter().enumerate() {
                let mut vals: Vec<f32> =
                    pts.iter().skip(c).step_by(levels.len()).copied().collect();
                vals.sort_by(f32::total_cmp);
                vals.dedup();
                assert_eq!(vals.len(), l, "channel {c} of {levels:?}");
                let step = vals[1] - vals[0];
                assert!(vals.windows(2).all(|p| (p[1] - p[0] - step).abs() < 1e-6));
                assert!(vals[0] >= -1.0 && *vals.last().unwrap() <= 1.0);
                // w = floor(L/2): odd L is symmetric, even L reaches -1 and stops one step short.
                assert_eq!(vals[0], -1.0);
            }
        }
    }

    /// The device forward pass gives the host's codes and the grid points of its codes; the
    /// gradient passes the rounding (it is the bound's derivative, h_c (1 - tanh^2) / w_c).
    #[test]
    fn forward_agrees_with_host_and_gradient_passes_rounding() {
        let dev = Device::flex().autodiff();
        let g = Grid::new(vec![8, 5, 5, 5]);
        let z = Tensor::<2>::random([64, 4], Distribution::Normal(0.0, 2.0), &dev).require_grad();
        let out = g.quantize(z.clone());
        let zv = crate::device::host_f32(z.clone().detach());
        let codes = crate::device::host_u32(out.indices.clone());
        assert_eq!(codes, g.codes(&zv));
        let zq = crate::device::host_f32(out.z_q.clone());
        assert_eq!(zq, g.points(&codes));
        let grads = out.z_st.sum().backward();
        let got = crate::device::host_f32(z.grad(&grads).unwrap().into());
        for (i, (&gz, &v)) in got.iter().zip(&zv).enumerate() {
            let (h, _, s, w) = Grid::channel(g.levels[i % 4]);
            let t = (v as f64 + s).tanh();
            let want = h * (1.0 - t * t) / w;
            assert!(
                (gz as f64 - want).abs() < 1e-4 * (1.0 + want),
                "{i}: {gz} vs {want}"
            );
            assert!(
                gz > 0.0 || want < 1e-6,
                "the gradient must pass the rounding"
            );
        }
    }
}
