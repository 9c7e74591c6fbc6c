//! What the kernels' tests share: random data, the definition of a convolution, and test
//! geometries.

use super::ConvGeom;
use rand::Rng;
use rand::rngs::StdRng;

pub(super) fn randv(n: usize, rng: &mut StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

pub(super) fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// The definition, one output element at a time.
pub(super) fn naive(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (oh, ow) = (g.oh(), g.ow());
    let mut y = vec![0.0f32; g.rows() * g.oc];
    for b in 0..g.b {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..g.oc {
                    let mut s = 0.0f64;
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            let yy = (oy * g.sh + i) as isize - g.ph as isize;
                            let xx = (ox * g.sw + j) as isize - g.pw as isize;
                            if yy < 0 || xx < 0 || yy >= g.h as isize || xx >= g.w as isize {
                                continue;
                            }
                            for c in 0..g.c {
                                let xi = ((b * g.h + yy as usize) * g.w + xx as usize) * g.c + c;
                                let wi = ((o * g.c + c) * g.kh + i) * g.kw + j;
                                s += x[xi] as f64 * w[wi] as f64;
                            }
                        }
                    }
                    y[((b * oh + oy) * ow + ox) * g.oc + o] = s as f32;
                }
            }
        }
    }
    y
}

pub(super) fn geoms() -> Vec<ConvGeom> {
    let g = |b, h, w, c, oc, k, s, p| ConvGeom {
        b,
        h,
        w,
        c,
        oc,
        kh: k,
        kw: k,
        sh: s,
        sw: s,
        ph: p,
        pw: p,
    };
    vec![
        // 3x3 "same" with several row tiles (kkc 576 -> 113 rows a tile, 192 rows).
        g(3, 8, 8, 64, 5, 3, 1, 1),
        // 4x4 stride 2 (the encoder's downsampling), 3 tiles, odd sizes.
        g(12, 10, 9, 32, 7, 4, 2, 1),
        // 1x1 pointwise.
        g(2, 5, 6, 9, 4, 1, 1, 0),
        // non-square kernel footprint at the border: 5x5 kernel, padding 2, stride 3.
        g(2, 7, 11, 3, 6, 5, 3, 2),
        // kh·kw·c < oc, as the decoder's last (transposed) layer to 1 and 3 channels: the input
        // gradient by col2im's scatter-add; 19 images leave a ragged last tile.
        g(19, 12, 10, 1, 24, 4, 2, 1),
        g(5, 9, 9, 3, 64, 4, 2, 1),
        // 512 channels in and out, 9 MiB of weights, more than any core's L2: the direct kernel's
        // layer on AVX-512F CPUs, for the forward product and (by the flipped convolution) the
        // input gradient.
        g(1, 3, 4, 512, 512, 3, 1, 1),
    ]
}
