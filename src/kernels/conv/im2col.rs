//! Convolution geometry, the GEMMs' weight layout, im2col and the row tiles.

use rayon::prelude::*;

/// Elements of an im2col tile a worker holds (256 KiB of f32), so that a tile stays in L2; but a
/// tile has at least 64 rows (see [`ConvGeom::tile_rows`]).
const TILE_ELEMS: usize = 1 << 16;

/// Geometry of a convolution over channels-last input `[b, h, w, c]` with `oc` output channels, a
/// `kh x kw` kernel, stride `(sh, sw)` and zero padding `(ph, pw)` on both sides (no dilation, one
/// group). The output is `[b, oh, ow, oc]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub oc: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
}

impl ConvGeom {
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.ph - self.kh) / self.sh + 1
    }

    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pw - self.kw) / self.sw + 1
    }

    /// Length of one im2col row: `kh · kw · c`.
    pub fn kkc(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// Output positions, the rows of the GEMMs: `b · oh · ow`.
    pub fn rows(&self) -> usize {
        self.b * self.oh() * self.ow()
    }

    /// A 1x1 kernel with stride 1 and no padding: im2col is the input itself.
    pub(super) fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }

    /// Rows of one tile: [`TILE_ELEMS`] elements, at least 64 rows. Each tile's GEMM repacks the
    /// `[kh·kw·c, oc]` weight operand, which fewer rows do too often. Measured on the MNIST and
    /// CIFAR-10 models' training steps (images/s): at least 32 rows 855/176, 64 rows 895/184,
    /// 128 rows 835/181; 1 Mi elements a tile 840/179.
    pub(super) fn tile_rows(&self) -> usize {
        (TILE_ELEMS / self.kkc().max(1)).clamp(64, 4096)
    }

    pub(super) fn valid(&self) -> bool {
        self.b > 0
            && self.c > 0
            && self.oc > 0
            && self.sh > 0
            && self.sw > 0
            && self.h + 2 * self.ph >= self.kh
            && self.w + 2 * self.pw >= self.kw
    }
}

/// Output channels a block of [`block_pairs`] covers.
const O_BLOCK: usize = 16;

/// Calls `f(index in w, index in W)` for every weight of the output channels
/// `o0..o0 + O_BLOCK` (fewer at the end), where `w` is `[oc, c, kh, kw]` (PyTorch's conv layout)
/// and `W` the GEMM operand `[kh·kw·c, oc]`: each (c, k) covers a contiguous run of `W`.
fn block_pairs(g: &ConvGeom, o0: usize, mut f: impl FnMut(usize, usize)) {
    let (c, oc, kk) = (g.c, g.oc, g.kh * g.kw);
    for ci in 0..c {
        for k in 0..kk {
            for o in o0..(o0 + O_BLOCK).min(oc) {
                f((o * c + ci) * kk + k, (k * c + ci) * oc + o);
            }
        }
    }
}

/// `w` `[oc, c, kh, kw]` (PyTorch's conv layout) as the GEMM operand `W` `[kh·kw·c, oc]`.
pub fn weight_matrix(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    assert_eq!(w.len(), g.oc * g.kkc(), "weight is [oc, c, kh, kw]");
    let mut m = vec![0.0; w.len()];
    for o0 in (0..g.oc).step_by(O_BLOCK) {
        block_pairs(g, o0, |wi, mi| m[mi] = w[wi]);
    }
    m
}

/// The inverse of [`weight_matrix`]: `W` `[kh·kw·c, oc]` back to `[oc, c, kh, kw]`, a block of
/// output channels a task on rayon's workers (a transpose that cost about 1% of a training step
/// on one thread).
pub fn weight_from_matrix(g: &ConvGeom, m: &[f32]) -> Vec<f32> {
    assert_eq!(m.len(), g.oc * g.kkc(), "W is [kh*kw*c, oc]");
    let block = O_BLOCK * g.kkc();
    let mut w = vec![0.0; m.len()];
    w.par_chunks_mut(block).enumerate().for_each(|(blk, wb)| {
        block_pairs(g, blk * O_BLOCK, |wi, mi| wb[wi - blk * block] = m[mi]);
    });
    w
}

/// Output row `r` = (b, oy, ox) as its image `b` and the input position `(oy·sh − ph, ox·sw − pw)`
/// that kernel tap (0, 0) reads (negative in the padding).
#[inline]
pub(super) fn decompose(g: &ConvGeom, r: usize) -> (usize, isize, isize) {
    let (oh, ow) = (g.oh(), g.ow());
    let bi = r / (oh * ow);
    let rem = r % (oh * ow);
    let (oy, ox) = (rem / ow, rem % ow);
    (
        bi,
        (oy * g.sh) as isize - g.ph as isize,
        (ox * g.sw) as isize - g.pw as isize,
    )
}

/// Writes the im2col rows `r0..r0 + n` of `x` (`[b, h, w, c]`) into `col` (`[n, kkc]`).
pub(super) fn im2col(g: &ConvGeom, x: &[f32], r0: usize, n: usize, col: &mut [f32]) {
    let (h, w, c, kkc) = (g.h as isize, g.w as isize, g.c, g.kkc());
    for ri in 0..n {
        let (bi, y0, x0) = decompose(g, r0 + ri);
        let dst = &mut col[ri * kkc..(ri + 1) * kkc];
        for i in 0..g.kh {
            let y = y0 + i as isize;
            let drow = &mut dst[i * g.kw * c..(i + 1) * g.kw * c];
            if y < 0 || y >= h {
                drow.fill(0.0);
                continue;
            }
            // Kernel columns j with 0 <= x0 + j < w are one contiguous run of the input row.
            let j0 = (-x0).clamp(0, g.kw as isize) as usize;
            let j1 = (w - x0).clamp(0, g.kw as isize) as usize;
            drow[..j0 * c].fill(0.0);
            if j1 > j0 {
                let src = ((bi as isize * h + y) * w + x0 + j0 as isize) as usize * c;
                drow[j0 * c..j1 * c].copy_from_slice(&x[src..src + (j1 - j0) * c]);
            }
            drow[j1.max(j0) * c..].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::testutil::{geoms, randv};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn weight_matrix_round_trips() {
        let mut rng = StdRng::seed_from_u64(1);
        for g in geoms() {
            let w = randv(g.oc * g.kkc(), &mut rng);
            assert_eq!(weight_from_matrix(&g, &weight_matrix(&g, &w)), w);
        }
    }
}
