//! The forward product `y = im2col(x) · W (+ bias)` in row tiles, and the GEMM call the
//! convolution kernels share.

use rayon::prelude::*;

use super::direct;
use super::im2col::{ConvGeom, im2col};
use crate::kernels::gemm::{Mat, MatMut, matmul, tune_gemm};

/// `dst[m, n] (row-major, row stride n) = (acc ? dst : 0) + a[m, k] · b[k, n]`, on this thread.
///
/// Called as the transposed product `dstᵀ = bᵀ · aᵀ`: gemm's kernels store column-major
/// destinations directly and read column-major operands without repacking, and the transposes of
/// these row-major matrices are column-major.
pub(super) fn mm(m: usize, n: usize, k: usize, dst: &mut [f32], acc: bool, a: Mat, b: Mat) {
    assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    tune_gemm();
    matmul(n, m, k, MatMut::rows_t(dst, n), acc, b.t(), a.t());
}

/// A vector of `n` f32s made in chunks of `chunk` elements on rayon's workers: each worker zeroes
/// its chunk, then `f(state, chunk index, chunk)` writes it (`state` from `init`, one a worker, as
/// rayon's `for_each_init`). It replaces `vec![0.0; n]` followed by `par_chunks_mut`: on memory
/// that malloc recycles, `vec!`'s calloc is a memset on the calling thread while the other
/// workers wait (4-5% of the MNIST model's training step by `perf`); here the zeroing is shared
/// and leaves the chunk in cache for `f`.
pub(super) fn zeroed_chunks<S>(
    n: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let mut v = Vec::<f32>::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(init, |state, (t, c)| {
            for e in c.iter_mut() {
                e.write(0.0);
            }
            // SAFETY: every element of `c` was written just above, and `MaybeUninit<f32>` has
            // the layout of `f32`.
            let c = unsafe { &mut *(c as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
            f(state, t, c);
        });
    // SAFETY: the chunks cover the first `n` elements, each written above (had a worker
    // panicked, the panic would have left this function before this line).
    unsafe { v.set_len(n) };
    v
}

/// Adds `bias` to every row of `rows` (`[_, bias.len()]`).
pub(super) fn add_bias(rows: &mut [f32], bias: Option<&[f32]>) {
    if let Some(bias) = bias {
        for row in rows.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

/// Convolution forward: `y = im2col(x) · W (+ bias)`; `x` `[b, h, w, c]`, `wm` from
/// [`weight_matrix`](super::weight_matrix), `bias` `[oc]`, `y` `[b, oh, ow, oc]`. By the direct
/// kernel where [`direct::preferred`] (AVX-512F, weights larger than the L2 cache), else as
/// im2col tiles and GEMMs.
pub fn forward(g: &ConvGeom, x: &[f32], wm: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    if direct::preferred(g) {
        return direct::forward(g, x, wm, bias);
    }
    forward_tiled(g, x, wm, bias, g.tile_rows())
}

/// [`forward`] in tiles of `tile` output rows.
fn forward_tiled(
    g: &ConvGeom,
    x: &[f32],
    wm: &[f32],
    bias: Option<&[f32]>,
    tile: usize,
) -> Vec<f32> {
    let (kkc, oc, rows) = (g.kkc(), g.oc, g.rows());
    assert_eq!(x.len(), g.b * g.h * g.w * g.c, "x is [b, h, w, c]");
    assert_eq!(wm.len(), kkc * oc, "W is [kh*kw*c, oc]");
    assert!(bias.is_none_or(|b| b.len() == oc), "bias is [oc]");
    let tile = tile.max(1);
    zeroed_chunks(
        rows * oc,
        tile * oc,
        Vec::new,
        |col: &mut Vec<f32>, t, yt| {
            let (r0, n) = (t * tile, yt.len() / oc);
            let a = if g.pointwise() {
                Mat::rows(&x[r0 * kkc..], kkc)
            } else {
                col.resize(tile * kkc, 0.0);
                im2col(g, x, r0, n, col);
                Mat::rows(col, kkc)
            };
            mm(n, oc, kkc, yt, false, a, Mat::rows(wm, oc));
            add_bias(yt, bias);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::im2col::weight_matrix;
    use crate::kernels::conv::testutil::{geoms, naive, randv};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Every element of `zeroed_chunks`' vector is zeroed before `f` sees it, and `f` sees each
    /// chunk once with its index (a ragged last chunk included).
    #[test]
    fn zeroed_chunks_zeroes_and_covers() {
        let v = zeroed_chunks(
            1000,
            64,
            || (),
            |_, t, c| {
                assert!(c.iter().all(|&x| x == 0.0));
                assert_eq!(c.len(), if t == 15 { 1000 - 15 * 64 } else { 64 });
                if t % 2 == 0 {
                    c.fill(t as f32);
                }
            },
        );
        assert_eq!(v.len(), 1000);
        for (i, &x) in v.iter().enumerate() {
            let t = i / 64;
            assert_eq!(x, if t % 2 == 0 { t as f32 } else { 0.0 }, "element {i}");
        }
        assert!(zeroed_chunks(0, 8, || (), |_, _, _| panic!("no chunks")).is_empty());
    }

    /// forward against the definition, at the production tile size and at small tiles that
    /// leave a ragged last tile.
    #[test]
    fn forward_matches_the_definition() {
        let mut rng = StdRng::seed_from_u64(2);
        for g in geoms() {
            let x = randv(g.b * g.h * g.w * g.c, &mut rng);
            let w = randv(g.oc * g.kkc(), &mut rng);
            let wm = weight_matrix(&g, &w);
            let want = naive(&g, &x, &w);
            for tile in [g.tile_rows(), 7, 50] {
                let y = forward_tiled(&g, &x, &wm, None, tile);
                for (a, b) in y.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                        "{g:?}/{tile}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
