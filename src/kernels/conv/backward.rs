//! The backward products: the input gradient without col2im's scatter-add (the flipped
//! convolution for stride 1, the sub-pixel decomposition for larger strides), the weight
//! gradient `im2col(x)ᵀ · dy` and the bias gradient.

use rayon::prelude::*;

use super::forward::{add_bias, forward, mm, zeroed_chunks};
use super::im2col::{ConvGeom, decompose, im2col, weight_matrix};
use crate::kernels::gemm::Mat;

/// `a + b`, elementwise (partial sums of parallel reductions).
fn add_vecs(mut a: Vec<f32>, b: Vec<f32>) -> Vec<f32> {
    for (x, y) in a.iter_mut().zip(&b) {
        *x += y;
    }
    a
}

/// Column sums of `v` (`[_, ch]`): the gradient of a bias added to every row.
pub fn bias_grad(v: &[f32], ch: usize) -> Vec<f32> {
    v.par_chunks(ch * 1024)
        .fold(
            || vec![0.0f32; ch],
            |mut acc, part| {
                for row in part.chunks_exact(ch) {
                    for (a, x) in acc.iter_mut().zip(row) {
                        *a += x;
                    }
                }
                acc
            },
        )
        .reduce(|| vec![0.0f32; ch], add_vecs)
}

/// The input gradient of a stride-1 convolution is itself a convolution: of `dy` with the kernel
/// flipped in space and its channel axes swapped, padded by `k − 1 − p`. Returns that
/// convolution's geometry and weight matrix, or `None` when the stride is not 1 (or the padding
/// exceeds `k − 1`). Running it by [`forward`] avoids col2im's scatter-add.
fn flipped(g: &ConvGeom, w: &[f32]) -> Option<(ConvGeom, Vec<f32>)> {
    if g.sh != 1 || g.sw != 1 || g.ph >= g.kh || g.pw >= g.kw || g.pointwise() {
        return None;
    }
    let f = ConvGeom {
        h: g.oh(),
        w: g.ow(),
        c: g.oc,
        oc: g.c,
        ph: g.kh - 1 - g.ph,
        pw: g.kw - 1 - g.pw,
        ..*g
    };
    let (c, oc, kh, kw) = (g.c, g.oc, g.kh, g.kw);
    let mut m = vec![0.0; w.len()];
    // m is W for f: row (i, j, o) of f's im2col, column ci; the weight it carries is
    // w[o, ci, kh-1-i, kw-1-j].
    for i in 0..kh {
        for j in 0..kw {
            for o in 0..oc {
                let dst = &mut m[((i * kw + j) * oc + o) * c..][..c];
                for (ci, d) in dst.iter_mut().enumerate() {
                    *d = w[((o * c + ci) * kh + kh - 1 - i) * kw + kw - 1 - j];
                }
            }
        }
    }
    Some((f, m))
}

/// The input gradient `dx = col2im(dy · Wᵀ) (+ bias)` of the convolution `g` with weight `w`
/// (`[oc, c, kh, kw]`) for output gradient `dy` (`[b, oh, ow, oc]`), plus `bias` (`[c]`; the
/// transposed convolution's forward is this), `[b, h, w, c]`. Without col2im's scatter-add: for a
/// pointwise kernel `dy · Wᵀ` itself, when `kh·kw·c < oc` [`scatter_input_grad`], else for
/// stride 1 a convolution by [`forward`], for larger strides [`phase_input_grad`].
pub fn input_grad(g: &ConvGeom, dy: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(dy.len(), g.rows() * g.oc, "dy is [b, oh, ow, oc]");
    assert!(bias.is_none_or(|b| b.len() == g.c), "bias is [c]");
    if g.pointwise() {
        let (c, oc, tile) = (g.c, g.oc, g.tile_rows());
        let wm = weight_matrix(g, w);
        return zeroed_chunks(
            g.b * g.h * g.w * c,
            tile * c,
            || (),
            |_, t, dxt| {
                let (r0, n) = (t * tile, dxt.len() / c);
                mm(
                    n,
                    c,
                    oc,
                    dxt,
                    false,
                    Mat::rows(&dy[r0 * oc..], oc),
                    Mat::rows_t(&wm, oc),
                );
                add_bias(dxt, bias);
            },
        );
    }
    if g.kkc() < g.oc {
        return scatter_input_grad(g, dy, &weight_matrix(g, w), bias, g.tile_rows());
    }
    match flipped(g, w) {
        Some((f, m)) => {
            debug_assert_eq!((f.oh(), f.ow()), (g.h, g.w));
            forward(&f, dy, &m, bias)
        }
        None => phase_input_grad(g, dy, w, bias, g.tile_rows()),
    }
}

/// One residue class of input rows (or columns) under the stride: the positions `y` with
/// `(y + p) mod s = r`, each with `q = (y + p) div s`, and the kernel taps `r, r + s, ...` that
/// reach them. Output position `q − t` meets position `y` through tap `r + s·t`.
struct Phase {
    /// (y, q) for each position of the class.
    pos: Vec<(usize, isize)>,
    /// Number of taps.
    taps: usize,
    r: usize,
}

fn phases(n: usize, k: usize, s: usize, p: usize) -> Vec<Phase> {
    (0..s)
        .map(|r| Phase {
            pos: (0..n)
                .filter(|y| (y + p) % s == r)
                .map(|y| (y, ((y + p) / s) as isize))
                .collect(),
            taps: if r < k { (k - r).div_ceil(s) } else { 0 },
            r,
        })
        .collect()
}

/// One residue class `(ry, rx)` of input positions: its row and column [`Phase`]s and its
/// `[ty·tx·oc, c]` matrix, rows `(t, u, o)`, the weights of the taps that reach it.
struct Class<'a> {
    a: &'a Phase,
    b: &'a Phase,
    mat: Vec<f32>,
}

impl<'a> Class<'a> {
    fn new(g: &ConvGeom, w: &[f32], a: &'a Phase, b: &'a Phase) -> Self {
        let (c, oc, kh, kw) = (g.c, g.oc, g.kh, g.kw);
        let mut m = vec![0.0f32; a.taps * b.taps * oc * c];
        for t in 0..a.taps {
            for u in 0..b.taps {
                let (i, j) = (a.r + g.sh * t, b.r + g.sw * u);
                for o in 0..oc {
                    let dst = &mut m[((t * b.taps + u) * oc + o) * c..][..c];
                    for (ci, d) in dst.iter_mut().enumerate() {
                        *d = w[((o * c + ci) * kh + i) * kw + j];
                    }
                }
            }
        }
        Class { a, b, mat: m }
    }

    /// Writes the class's im2col rows of `dy` for the images `b0..b0 + nb` into `col`
    /// (`[_, ty·tx·oc]`): the row of position `(qy, qx)` holds `dy[qy − t, qx − u, ..]` (zero
    /// outside) at `(t, u)`.
    fn gather(&self, g: &ConvGeom, dy: &[f32], b0: usize, nb: usize, col: &mut [f32]) {
        let (a, b, oc) = (self.a, self.b, g.oc);
        let (oh, ow) = (g.oh(), g.ow());
        let kp = a.taps * b.taps * oc;
        let mut r = 0;
        for bi in b0..b0 + nb {
            for &(_, qy) in &a.pos {
                for &(_, qx) in &b.pos {
                    let row = &mut col[r * kp..(r + 1) * kp];
                    for t in 0..a.taps {
                        let oy = qy - t as isize;
                        for u in 0..b.taps {
                            let ox = qx - u as isize;
                            let d = &mut row[(t * b.taps + u) * oc..][..oc];
                            if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                d.fill(0.0);
                            } else {
                                let s = ((bi * oh + oy as usize) * ow + ox as usize) * oc;
                                d.copy_from_slice(&dy[s..s + oc]);
                            }
                        }
                    }
                    r += 1;
                }
            }
        }
    }

    /// Writes the class's rows `out` (`[_, c]`, in the order of [`Class::gather`]) plus `bias` to
    /// their places in `dxt`, the tile's `nb` images `[nb, h, w, c]`.
    fn scatter(&self, g: &ConvGeom, nb: usize, out: &[f32], dxt: &mut [f32], bias: Option<&[f32]>) {
        let c = g.c;
        let mut r = 0;
        for bl in 0..nb {
            for &(y, _) in &self.a.pos {
                for &(x, _) in &self.b.pos {
                    let d = &mut dxt[((bl * g.h + y) * g.w + x) * c..][..c];
                    d.copy_from_slice(&out[r * c..(r + 1) * c]);
                    add_bias(d, bias);
                    r += 1;
                }
            }
        }
    }
}

/// The input gradient of a strided convolution as `sh·sw` small convolutions, one for each
/// residue class of input positions under the stride (the sub-pixel decomposition): position
/// `(y, x)` of class `(ry, rx)` is `Σ_{t,u,o} dy[qy − t, qx − u, o] · w[o, c, ry + sh·t, rx + sw·u]`,
/// an im2col row of `dy` times a `[taps·oc, c]` matrix, written straight to its place in `dx`.
/// Workers own whole images; tiles hold about `tile` rows.
fn phase_input_grad(
    g: &ConvGeom,
    dy: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    tile: usize,
) -> Vec<f32> {
    let (c, oc) = (g.c, g.oc);
    assert_eq!(dy.len(), g.rows() * oc, "dy is [b, oh, ow, oc]");
    assert_eq!(w.len(), oc * g.kkc(), "weight is [oc, c, kh, kw]");
    assert!(bias.is_none_or(|b| b.len() == c), "bias is [c]");
    let py = phases(g.h, g.kh, g.sh, g.ph);
    let px = phases(g.w, g.kw, g.sw, g.pw);
    let classes: Vec<Class> = py
        .iter()
        .flat_map(|a| px.iter().map(move |b| (a, b)))
        .map(|(a, b)| Class::new(g, w, a, b))
        .collect();
    let img = g.h * g.w * c;
    let imgs = (tile / (g.h * g.w)).max(1);
    zeroed_chunks(
        g.b * img,
        imgs * img,
        || (Vec::new(), Vec::new()),
        |(col, out): &mut (Vec<f32>, Vec<f32>), ti, dxt| {
            let b0 = ti * imgs;
            let nb = dxt.len() / img;
            for cl in &classes {
                let rows = nb * cl.a.pos.len() * cl.b.pos.len();
                let kp = cl.a.taps * cl.b.taps * oc;
                if rows == 0 {
                    continue;
                }
                out.resize(rows * c, 0.0);
                if kp == 0 {
                    out.fill(0.0);
                } else {
                    col.resize(rows * kp, 0.0);
                    cl.gather(g, dy, b0, nb, col);
                    mm(
                        rows,
                        c,
                        kp,
                        out,
                        false,
                        Mat::rows(col, kp),
                        Mat::rows(&cl.mat, c),
                    );
                }
                cl.scatter(g, nb, out, dxt, bias);
            }
        },
    )
}

/// Convolution weight gradient: `dW = im2col(x)ᵀ · dy`, `[kh·kw·c, oc]` (see
/// [`weight_from_matrix`](super::weight_from_matrix)).
pub fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    backward_weight_tiled(g, x, dy, g.tile_rows())
}

/// [`backward_weight`] in tiles of `tile` rows. Each worker sums the tiles of one contiguous
/// share of the rows into an accumulator of its own, and the shares are added at the end: one
/// `[kh·kw·c, oc]` accumulator a thread, where a rayon `fold` made one for every piece its
/// splitting left (zeroing them was 3% of the MNIST model's training step, measured by `perf`).
fn backward_weight_tiled(g: &ConvGeom, x: &[f32], dy: &[f32], tile: usize) -> Vec<f32> {
    let (kkc, oc, rows) = (g.kkc(), g.oc, g.rows());
    assert_eq!(x.len(), g.b * g.h * g.w * g.c, "x is [b, h, w, c]");
    assert_eq!(dy.len(), rows * oc, "dy is [b, oh, ow, oc]");
    let tile = tile.clamp(1, rows.max(1));
    let tiles = rows.div_ceil(tile);
    let shares = rayon::current_num_threads().clamp(1, tiles.max(1));
    (0..shares)
        .into_par_iter()
        .map(|s| {
            let mut acc = vec![0.0f32; kkc * oc];
            let mut col = Vec::new();
            for t in (s * tiles / shares)..((s + 1) * tiles / shares) {
                let r0 = t * tile;
                let n = tile.min(rows - r0);
                let a = if g.pointwise() {
                    Mat::rows_t(&x[r0 * kkc..], kkc)
                } else {
                    col.resize(tile * kkc, 0.0);
                    im2col(g, x, r0, n, &mut col);
                    Mat::rows_t(&col, kkc)
                };
                mm(kkc, oc, n, &mut acc, true, a, Mat::rows(&dy[r0 * oc..], oc));
            }
            acc
        })
        .reduce_with(add_vecs)
        .unwrap_or_else(|| vec![0.0f32; kkc * oc])
}

/// Adds the im2col rows `r0..r0 + n` in `col` back into `dx`, the images `b0..` of
/// `[b, h, w, c]`: col2im, the adjoint of [`im2col`].
fn col2im_add(g: &ConvGeom, col: &[f32], r0: usize, n: usize, dx: &mut [f32], b0: usize) {
    let (h, w, c, kkc) = (g.h as isize, g.w as isize, g.c, g.kkc());
    for ri in 0..n {
        let (bi, y0, x0) = decompose(g, r0 + ri);
        let src = &col[ri * kkc..(ri + 1) * kkc];
        for i in 0..g.kh {
            let y = y0 + i as isize;
            if y < 0 || y >= h {
                continue;
            }
            let j0 = (-x0).clamp(0, g.kw as isize) as usize;
            let j1 = (w - x0).clamp(0, g.kw as isize) as usize;
            if j1 <= j0 {
                continue;
            }
            let dst = (((bi - b0) as isize * h + y) * w + x0 + j0 as isize) as usize * c;
            let s = &src[(i * g.kw + j0) * c..(i * g.kw + j1) * c];
            for (d, v) in dx[dst..dst + s.len()].iter_mut().zip(s) {
                *d += v;
            }
        }
    }
}

/// The input gradient `dx = col2im(dy · Wᵀ) (+ bias)` as written: one GEMM into the im2col
/// matrix of `dx` (`[rows, kh·kw·c]`), then col2im's scatter-add; `wm` from [`weight_matrix`].
/// [`input_grad`] takes it when `kh·kw·c < oc`: that matrix is then smaller than `dy`, as for the
/// transposed convolution back to an image's 1 or 3 channels, where the gather of
/// [`phase_input_grad`] would copy `dy` once for each tap and feed a GEMM only `c` columns wide
/// (measured on the MNIST model's last layer: 7.8 ms a step that way). Workers own whole images
/// (about `tile` rows, at least 16 tiles when the batch allows), so the scatter-adds never
/// overlap.
fn scatter_input_grad(
    g: &ConvGeom,
    dy: &[f32],
    wm: &[f32],
    bias: Option<&[f32]>,
    tile: usize,
) -> Vec<f32> {
    let (kkc, oc) = (g.kkc(), g.oc);
    assert_eq!(dy.len(), g.rows() * oc, "dy is [b, oh, ow, oc]");
    assert_eq!(wm.len(), kkc * oc, "W is [kh*kw*c, oc]");
    assert!(bias.is_none_or(|b| b.len() == g.c), "bias is [c]");
    let img_rows = g.oh() * g.ow();
    let img = g.h * g.w * g.c;
    let imgs = (tile.max(1) / img_rows.max(1)).clamp(1, g.b.div_ceil(16).max(1));
    // The scatter-add adds into the zeros of zeroed_chunks, written (not read) first: a first read
    // of fresh memory would map the shared zero page, making the first write a copy-on-write
    // fault with a TLB shootdown on every core (about a tenth of a training step, measured).
    zeroed_chunks(
        g.b * img,
        imgs * img,
        Vec::new,
        |col: &mut Vec<f32>, t, dxt| {
            let b0 = t * imgs;
            let n = dxt.len() / img * img_rows;
            let r0 = b0 * img_rows;
            col.resize(n * kkc, 0.0);
            let a = Mat::rows(&dy[r0 * oc..], oc);
            mm(n, kkc, oc, col, false, a, Mat::rows_t(wm, oc));
            col2im_add(g, col, r0, n, dxt, b0);
            add_bias(dxt, bias);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::im2col::weight_from_matrix;
    use crate::kernels::conv::testutil::{dot, geoms, naive, randv};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The reference input gradient: col2im(dy · Wᵀ) with col2im's scatter-add, at the
    /// production tile size.
    fn backward_input(g: &ConvGeom, dy: &[f32], wm: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        scatter_input_grad(g, dy, wm, bias, g.tile_rows())
    }

    /// The input gradient is the adjoint of the convolution (<conv(x), dy> = <x, dx> for the
    /// reference scatter-add dx and for [`input_grad`]), and the weight gradient is the derivative
    /// of the bilinear form <conv(x; W), dy> in W.
    #[test]
    fn gradients_are_adjoint_and_match_the_definition() {
        let mut rng = StdRng::seed_from_u64(2);
        for g in geoms() {
            let x = randv(g.b * g.h * g.w * g.c, &mut rng);
            let w = randv(g.oc * g.kkc(), &mut rng);
            let wm = weight_matrix(&g, &w);
            let want = naive(&g, &x, &w);
            let dy = randv(want.len(), &mut rng);
            let l = dot(&want, &dy);
            // The production tile size, and small tiles that leave a ragged last tile.
            for tile in [g.tile_rows(), 7, 50] {
                for dx in [
                    scatter_input_grad(&g, &dy, &wm, None, tile),
                    input_grad(&g, &dy, &w, None),
                ] {
                    assert_eq!(dx.len(), x.len());
                    let r = dot(&x, &dx);
                    assert!(
                        (l - r).abs() < 1e-3 * (1.0 + l.abs()),
                        "{g:?}/{tile}: adjoint {l} vs {r}"
                    );
                }
                let r = dot(&wm, &backward_weight_tiled(&g, &x, &dy, tile));
                assert!(
                    (l - r).abs() < 1e-3 * (1.0 + l.abs()),
                    "{g:?}/{tile}: dW {l} vs {r}"
                );
            }
            let dwm = backward_weight(&g, &x, &dy);
            // and dW itself against the definition: perturbing one weight entry changes
            // <y, dy> by dW times the step (exactly, the form is linear in W).
            let idx = rng.gen_range(0..w.len());
            let mut w2 = w.clone();
            w2[idx] += 0.5;
            let l2 = dot(&naive(&g, &x, &w2), &dy);
            let dw = weight_from_matrix(&g, &dwm);
            assert!(
                ((l2 - l) / 0.5 - dw[idx] as f64).abs() < 1e-2,
                "{g:?}: dW[{idx}]"
            );
        }
    }

    /// The input gradient by the flipped convolution (stride 1) and by residue classes (larger
    /// strides) equals the scatter-add one, with a bias, for several tilings.
    #[test]
    fn input_gradient_without_scatter_matches() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut covered = 0;
        let mut covered_scatter = 0;
        for g in geoms().into_iter().chain([ConvGeom {
            b: 2,
            h: 6,
            w: 5,
            c: 3,
            oc: 4,
            kh: 3,
            kw: 2,
            sh: 1,
            sw: 1,
            ph: 2,
            pw: 0,
        }]) {
            let w = randv(g.oc * g.kkc(), &mut rng);
            let dy = randv(g.rows() * g.oc, &mut rng);
            let bias = randv(g.c, &mut rng);
            let want = backward_input(&g, &dy, &weight_matrix(&g, &w), Some(&bias));
            covered += usize::from(flipped(&g, &w).is_some());
            let check = |got: &[f32]| {
                assert_eq!(got.len(), want.len());
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{g:?}: {a} vs {b}");
                }
            };
            check(&input_grad(&g, &dy, &w, Some(&bias)));
            if g.kkc() < g.oc {
                covered_scatter += 1;
            }
            if g.sh > 1 || g.sw > 1 {
                for tile in [1, 70] {
                    check(&phase_input_grad(&g, &dy, &w, Some(&bias), tile));
                }
            }
        }
        assert_eq!(
            covered, 3,
            "the two 3x3 and the 3x2 geometries take the flipped path"
        );
        assert_eq!(covered_scatter, 2, "two geometries take the scatter path");
    }
}
