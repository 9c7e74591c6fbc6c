//! Convolutions on the CPU as whole-batch GEMMs over channels-last (NHWC) activations.
//!
//! burn's `flex` backend runs a convolution as one small GEMM per image and its autodiff computes
//! the weight gradient as a convolution whose "batch" is the input channels, which comes out as
//! thousands of GEMMs a few columns wide. Here the three products of a convolution layer are each
//! a few large GEMMs over the whole batch, cut into row tiles that stay in cache:
//!
//! - forward: `y = im2col(x) · W` with `W[(i·kw + j)·C + c, o] = w[o, c, i, j]`,
//!   `im2col(x)[(b, oy, ox), (i, j, c)] = x[b, oy·sh − ph + i, ox·sw − pw + j, c]` (zero outside);
//! - input gradient: `dx = col2im(dy · Wᵀ)` (col2im, the adjoint of im2col, is a scatter-add).
//!   Computed without the scatter: for stride 1 it is the convolution of `dy` with the kernel
//!   flipped in space and its channel axes swapped, padded by `k − 1 − p`; for stride `s`, the
//!   input positions fall into `s²` residue classes, and each class is a small stride-1
//!   convolution of `dy` with the taps that reach it (the sub-pixel decomposition);
//! - weight gradient: `dW = im2col(x)ᵀ · dy`; bias gradient: the column sums of `dy`.
//!
//! A transposed convolution is the adjoint of a convolution: its forward is `col2im(x · Wᵀ)`, its
//! input gradient `im2col(dy) · W`, with the weight in PyTorch's `[in, out, kh, kw]` layout playing
//! the convolution's `[out, in, kh, kw]`. [`nhwc_conv2d`] and [`nhwc_conv_transpose2d`] are the
//! differentiable tensor ops (a burn backend extension with its own backward pass); the model uses
//! them on the CPU and burn's own convolutions on other devices.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Backend, Flex, backend_extension, tensor::FloatTensor};
use burn::tensor::{Tensor, TensorData};
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
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }

    /// Rows of one tile: [`TILE_ELEMS`] elements, at least 64 rows. Each tile's GEMM repacks the
    /// `[kh·kw·c, oc]` weight operand, which fewer rows do too often. Measured on the MNIST and
    /// CIFAR-10 models' training steps (images/s): at least 32 rows 855/176, 64 rows 895/184,
    /// 128 rows 835/181; 1 Mi elements a tile 840/179.
    fn tile_rows(&self) -> usize {
        (TILE_ELEMS / self.kkc().max(1)).clamp(64, 4096)
    }

    fn valid(&self) -> bool {
        self.b > 0
            && self.c > 0
            && self.oc > 0
            && self.sh > 0
            && self.sw > 0
            && self.h + 2 * self.ph >= self.kh
            && self.w + 2 * self.pw >= self.kw
    }
}

/// Calls `f(index in w, index in W)` for every weight, where `w` is `[oc, c, kh, kw]` (PyTorch's
/// conv layout) and `W` the GEMM operand `[kh·kw·c, oc]`. Blocks of output channels, so that each
/// (c, k) covers a contiguous run of `W`.
fn weight_pairs(g: &ConvGeom, mut f: impl FnMut(usize, usize)) {
    let (c, oc, kk) = (g.c, g.oc, g.kh * g.kw);
    for o0 in (0..oc).step_by(16) {
        for ci in 0..c {
            for k in 0..kk {
                for o in o0..(o0 + 16).min(oc) {
                    f((o * c + ci) * kk + k, (k * c + ci) * oc + o);
                }
            }
        }
    }
}

/// `w` `[oc, c, kh, kw]` (PyTorch's conv layout) as the GEMM operand `W` `[kh·kw·c, oc]`.
pub fn weight_matrix(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    assert_eq!(w.len(), g.oc * g.kkc(), "weight is [oc, c, kh, kw]");
    let mut m = vec![0.0; w.len()];
    weight_pairs(g, |wi, mi| m[mi] = w[wi]);
    m
}

/// The inverse of [`weight_matrix`]: `W` `[kh·kw·c, oc]` back to `[oc, c, kh, kw]`.
pub fn weight_from_matrix(g: &ConvGeom, m: &[f32]) -> Vec<f32> {
    assert_eq!(m.len(), g.oc * g.kkc(), "W is [kh*kw*c, oc]");
    let mut w = vec![0.0; m.len()];
    weight_pairs(g, |wi, mi| w[wi] = m[mi]);
    w
}

/// Output row `r` = (b, oy, ox) as its image `b` and the input position `(oy·sh − ph, ox·sw − pw)`
/// that kernel tap (0, 0) reads (negative in the padding).
#[inline]
fn decompose(g: &ConvGeom, r: usize) -> (usize, isize, isize) {
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
fn im2col(g: &ConvGeom, x: &[f32], r0: usize, n: usize, col: &mut [f32]) {
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

/// Raises the gemm crate's threshold for packing the left operand in single-threaded calls from
/// 8 to 64 column blocks: here the left operand is the weight matrix, already column-major, and
/// packing it again for every block of im2col rows cost about a tenth of a forward convolution
/// (measured: 409 -> 458 GFLOP/s on the CIFAR-10 model's 4x4 convolution). A process-wide
/// setting of the gemm crate; it changes no result, only whether a copy is made.
fn tune_gemm() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| gemm::set_lhs_packing_threshold_single_thread(64));
}

/// A GEMM operand over a slice: pointer, (column stride, row stride), and the slice's length.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    cs: isize,
    rs: isize,
    len: usize,
}

impl Mat {
    /// A row-major `[_, cols]` matrix.
    fn rows(s: &[f32], cols: usize) -> Self {
        Mat {
            ptr: s.as_ptr(),
            cs: 1,
            rs: cols as isize,
            len: s.len(),
        }
    }

    /// The transpose of a row-major `[_, cols]` matrix.
    fn rows_t(s: &[f32], cols: usize) -> Self {
        Mat {
            ptr: s.as_ptr(),
            cs: cols as isize,
            rs: 1,
            len: s.len(),
        }
    }

    /// Whether a `rows x cols` matrix with these strides lies inside the slice.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        let last = (rows - 1) * self.rs as usize + (cols - 1) * self.cs as usize;
        last < self.len
    }
}

/// `dst[m, n] (row-major, row stride n) = (acc ? dst : 0) + a[m, k] · b[k, n]`, on this thread.
///
/// Called as the transposed product `dstᵀ = bᵀ · aᵀ`: gemm's kernels store column-major
/// destinations directly and read column-major operands without repacking, and the transposes of
/// these row-major matrices are column-major.
fn mm(m: usize, n: usize, k: usize, dst: &mut [f32], acc: bool, a: Mat, b: Mat) {
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
    assert!(
        a.covers(m, k) && b.covers(k, n),
        "GEMM operand outside its slice"
    );
    tune_gemm();
    // SAFETY: dst holds m x n elements, a and b lie inside their slices (both checked above).
    unsafe {
        gemm::gemm(
            n,
            m,
            k,
            dst.as_mut_ptr(),
            n as isize,
            1,
            acc,
            b.ptr,
            b.rs,
            b.cs,
            a.ptr,
            a.rs,
            a.cs,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Adds `bias` to every row of `rows` (`[_, bias.len()]`).
fn add_bias(rows: &mut [f32], bias: Option<&[f32]>) {
    if let Some(bias) = bias {
        for row in rows.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

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

/// Convolution forward: `y = im2col(x) · W (+ bias)`; `x` `[b, h, w, c]`, `wm` from
/// [`weight_matrix`], `bias` `[oc]`, `y` `[b, oh, ow, oc]`.
pub fn forward(g: &ConvGeom, x: &[f32], wm: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
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
    let mut y = vec![0.0f32; rows * oc];
    y.par_chunks_mut(tile * oc).enumerate().for_each_init(
        Vec::new,
        |col: &mut Vec<f32>, (t, yt)| {
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
    );
    y
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
/// pointwise kernel `dy · Wᵀ` itself, for stride 1 a convolution by [`forward`], for larger
/// strides [`phase_input_grad`].
pub fn input_grad(g: &ConvGeom, dy: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(dy.len(), g.rows() * g.oc, "dy is [b, oh, ow, oc]");
    assert!(bias.is_none_or(|b| b.len() == g.c), "bias is [c]");
    if g.pointwise() {
        let (c, oc, tile) = (g.c, g.oc, g.tile_rows());
        let wm = weight_matrix(g, w);
        let mut dx = vec![0.0f32; g.b * g.h * g.w * c];
        dx.par_chunks_mut(tile * c)
            .enumerate()
            .for_each(|(t, dxt)| {
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
            });
        return dx;
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
    let (c, oc, kh, kw) = (g.c, g.oc, g.kh, g.kw);
    let (oh, ow) = (g.oh(), g.ow());
    assert_eq!(dy.len(), g.rows() * oc, "dy is [b, oh, ow, oc]");
    assert_eq!(w.len(), oc * g.kkc(), "weight is [oc, c, kh, kw]");
    assert!(bias.is_none_or(|b| b.len() == c), "bias is [c]");
    let py = phases(g.h, kh, g.sh, g.ph);
    let px = phases(g.w, kw, g.sw, g.pw);
    // Per class: the [ty·tx·oc, c] matrix, rows (t, u, o).
    let mats: Vec<Vec<f32>> = py
        .iter()
        .flat_map(|a| px.iter().map(move |b| (a, b)))
        .map(|(a, b)| {
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
            m
        })
        .collect();
    let img = g.h * g.w * c;
    let imgs = (tile / (g.h * g.w)).max(1);
    let mut dx = vec![0.0f32; g.b * img];
    dx.par_chunks_mut(imgs * img).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(col, out): &mut (Vec<f32>, Vec<f32>), (ti, dxt)| {
            let b0 = ti * imgs;
            let nb = dxt.len() / img;
            for (ci, (a, b)) in py
                .iter()
                .flat_map(|a| px.iter().map(move |b| (a, b)))
                .enumerate()
            {
                let rows = nb * a.pos.len() * b.pos.len();
                let kp = a.taps * b.taps * oc;
                if rows == 0 {
                    continue;
                }
                out.resize(rows * c, 0.0);
                if kp == 0 {
                    out.fill(0.0);
                } else {
                    col.resize(rows * kp, 0.0);
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
                                        if oy < 0
                                            || ox < 0
                                            || oy >= oh as isize
                                            || ox >= ow as isize
                                        {
                                            d.fill(0.0);
                                        } else {
                                            let s =
                                                ((bi * oh + oy as usize) * ow + ox as usize) * oc;
                                            d.copy_from_slice(&dy[s..s + oc]);
                                        }
                                    }
                                }
                                r += 1;
                            }
                        }
                    }
                    mm(
                        rows,
                        c,
                        kp,
                        out,
                        false,
                        Mat::rows(col, kp),
                        Mat::rows(&mats[ci], c),
                    );
                }
                let mut r = 0;
                for bl in 0..nb {
                    for &(y, _) in &a.pos {
                        for &(x, _) in &b.pos {
                            let d = &mut dxt[((bl * g.h + y) * g.w + x) * c..][..c];
                            d.copy_from_slice(&out[r * c..(r + 1) * c]);
                            add_bias(d, bias);
                            r += 1;
                        }
                    }
                }
            }
        },
    );
    dx
}

/// Convolution weight gradient: `dW = im2col(x)ᵀ · dy`, `[kh·kw·c, oc]` (see [`weight_from_matrix`]).
pub fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    backward_weight_tiled(g, x, dy, g.tile_rows())
}

/// [`backward_weight`] in tiles of `tile` rows.
fn backward_weight_tiled(g: &ConvGeom, x: &[f32], dy: &[f32], tile: usize) -> Vec<f32> {
    let (kkc, oc, rows) = (g.kkc(), g.oc, g.rows());
    assert_eq!(x.len(), g.b * g.h * g.w * g.c, "x is [b, h, w, c]");
    assert_eq!(dy.len(), rows * oc, "dy is [b, oh, ow, oc]");
    let tile = tile.clamp(1, rows.max(1));
    let tiles = rows.div_ceil(tile);
    (0..tiles)
        .into_par_iter()
        .fold(
            || (vec![0.0f32; kkc * oc], Vec::new()),
            |(mut acc, mut col): (Vec<f32>, Vec<f32>), t| {
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
                (acc, col)
            },
        )
        .map(|(acc, _)| acc)
        .reduce(|| vec![0.0f32; kkc * oc], add_vecs)
}

/// Custom tensor ops, routed by burn's dispatch to the `flex` backend, with or without autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait ConvBackend: Backend {
    /// `transposed == false`: the convolution of `x` `[b, h, w, c]` with `w` `[oc, c, kh, kw]`
    /// plus `bias` `[oc]`, giving `[b, oh, ow, oc]`. `transposed == true`: its adjoint, from `x`
    /// `[b, oh, ow, oc]` to `[b, h, w, c]`, with the same `w` (PyTorch's transposed-conv layout
    /// `[in, out, kh, kw]`), plus `bias` `[c]`.
    fn vqib_conv_nhwc(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
        transposed: bool,
    ) -> FloatTensor<Self>;
}

/// `t` with its elements contiguous from offset 0 of the returned tensor's view (a clone when
/// they already are).
fn dense(t: &FloatTensor<Flex>) -> FloatTensor<Flex> {
    if t.layout().is_contiguous() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// The f32 elements of a tensor from [`dense`].
fn elems(t: &FloatTensor<Flex>) -> &[f32] {
    let (off, n) = (t.layout().start_offset(), t.layout().num_elements());
    &t.storage::<f32>()[off..off + n]
}

fn flex_tensor<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> FloatTensor<Flex> {
    burn::backend::flex::FlexTensor::from_data(TensorData::new(v, shape))
}

/// The op's value; `x` contiguous (see [`dense`]).
fn flex_conv(
    x: &FloatTensor<Flex>,
    w: &FloatTensor<Flex>,
    bias: &FloatTensor<Flex>,
    g: &ConvGeom,
    tr: bool,
) -> FloatTensor<Flex> {
    let (x, w, bias) = (dense(x), dense(w), dense(bias));
    let bias = Some(elems(&bias));
    if tr {
        flex_tensor(
            input_grad(g, elems(&x), elems(&w), bias),
            [g.b, g.h, g.w, g.c],
        )
    } else {
        let wm = weight_matrix(g, elems(&w));
        flex_tensor(
            forward(g, elems(&x), &wm, bias),
            [g.b, g.oh(), g.ow(), g.oc],
        )
    }
}

impl ConvBackend for Flex {
    fn vqib_conv_nhwc(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
        transposed: bool,
    ) -> FloatTensor<Self> {
        flex_conv(&x, &w, &bias, &geom, transposed)
    }
}

/// The backward pass of [`ConvBackend::vqib_conv_nhwc`]: the input gradient of a convolution is
/// its adjoint (and the other way round), the weight gradient `im2col(x)ᵀ · dy`, the bias gradient
/// the column sums of `dy`.
#[derive(Debug)]
struct ConvNhwcBackward;

impl Backward<Flex, 3> for ConvNhwcBackward {
    /// Contiguous x, the weight, the geometry, transposed.
    type State = (FloatTensor<Flex>, FloatTensor<Flex>, ConvGeom, bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, w, g, tr) = ops.state;
        let grad = dense(&grad);
        let dy = elems(&grad);
        if let Some(node) = node_x {
            let w = dense(&w);
            let dx = if tr {
                let wm = weight_matrix(&g, elems(&w));
                flex_tensor(forward(&g, dy, &wm, None), [g.b, g.oh(), g.ow(), g.oc])
            } else {
                flex_tensor(input_grad(&g, dy, elems(&w), None), [g.b, g.h, g.w, g.c])
            };
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_w {
            let xs = elems(&x);
            // For the transposed op, dy is on the convolution's input side and x on its output side.
            let dwm = if tr {
                backward_weight(&g, dy, xs)
            } else {
                backward_weight(&g, xs, dy)
            };
            let dw = weight_from_matrix(&g, &dwm);
            grads.register::<Flex>(node.id, flex_tensor(dw, [g.oc, g.c, g.kh, g.kw]));
        }
        if let Some(node) = node_b {
            let ch = if tr { g.c } else { g.oc };
            grads.register::<Flex>(node.id, flex_tensor(bias_grad(dy, ch), [ch]));
        }
    }
}

impl<C: CheckpointStrategy> ConvBackend for Autodiff<Flex, C> {
    fn vqib_conv_nhwc(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
        transposed: bool,
    ) -> FloatTensor<Self> {
        let xd = dense(x.primitive());
        let out = flex_conv(&xd, w.primitive(), bias.primitive(), &geom, transposed);
        match ConvNhwcBackward
            .prepare::<C>([x.node(), w.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            // The state keeps x contiguous, so that the backward pass reads it without a copy.
            OpsKind::Tracked(prep) => prep.finish((xd, w.into_primitive(), geom, transposed), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// Whether `device` is burn's `flex` CPU device (with or without autodiff), where these ops run.
pub fn on_flex(device: &burn::tensor::Device) -> bool {
    crate::quantizer::on_host(device)
}

fn check(g: &ConvGeom) {
    assert!(g.valid(), "invalid convolution geometry {g:?}");
}

/// Convolution of channels-last `x` `[b, h, w, c]` with `w` `[oc, c, kh, kw]` (PyTorch's layout)
/// plus `bias` `[oc]` (zero when `None`), stride `stride`, zero padding `padding` on each side:
/// `[b, oh, ow, oc]`. Differentiable in `x`, `w` and `bias`. Runs on the `flex` device only (see
/// [`on_flex`]).
pub fn nhwc_conv2d(
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<4> {
    let [b, h, wd, c] = x.dims();
    let [oc, wc, kh, kw] = w.dims();
    assert_eq!(c, wc, "conv: x has {c} channels, the weight expects {wc}");
    let g = ConvGeom {
        b,
        h,
        w: wd,
        c,
        oc,
        kh,
        kw,
        sh: stride[0],
        sw: stride[1],
        ph: padding[0],
        pw: padding[1],
    };
    check(&g);
    let bias = bias.unwrap_or_else(|| Tensor::zeros([oc], &x.device()));
    let out = <burn::backend::Dispatch as ConvBackend>::vqib_conv_nhwc(
        x.into_dispatch(),
        w.into_dispatch(),
        bias.into_dispatch(),
        g,
        false,
    );
    Tensor::from_dispatch(out)
}

/// Transposed convolution of channels-last `x` `[b, h, w, cin]` with `w` `[cin, cout, kh, kw]`
/// (PyTorch's layout) plus `bias` `[cout]` (zero when `None`), stride and padding as PyTorch's
/// `ConvTranspose2d` (no output padding): `[b, (h−1)·sh − 2ph + kh, (w−1)·sw − 2pw + kw, cout]`.
/// Differentiable in `x`, `w` and `bias`.
pub fn nhwc_conv_transpose2d(
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<4> {
    let [b, h, wd, cin] = x.dims();
    let [win, cout, kh, kw] = w.dims();
    assert_eq!(
        cin, win,
        "conv_transpose: x has {cin} channels, the weight expects {win}"
    );
    // The output size, (n − 1)·s + k − 2p, must be positive.
    let out = |n: usize, s: usize, k: usize, p: usize| {
        ((n.max(1) - 1) * s + k)
            .checked_sub(2 * p)
            .filter(|&o| o > 0)
            .unwrap_or_else(|| panic!("conv_transpose: padding {p} leaves no output"))
    };
    let g = ConvGeom {
        b,
        h: out(h, stride[0], kh, padding[0]),
        w: out(wd, stride[1], kw, padding[1]),
        c: cout,
        oc: cin,
        kh,
        kw,
        sh: stride[0],
        sw: stride[1],
        ph: padding[0],
        pw: padding[1],
    };
    check(&g);
    assert_eq!((g.oh(), g.ow()), (h, wd), "conv_transpose geometry {g:?}");
    let bias = bias.unwrap_or_else(|| Tensor::zeros([cout], &x.device()));
    let out = <burn::backend::Dispatch as ConvBackend>::vqib_conv_nhwc(
        x.into_dispatch(),
        w.into_dispatch(),
        bias.into_dispatch(),
        g,
        true,
    );
    Tensor::from_dispatch(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::{conv_transpose2d, conv2d};
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
    use burn::tensor::{Device, Distribution};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn randv(n: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    /// The definition, one output element at a time.
    fn naive(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
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
                                    let xi =
                                        ((b * g.h + yy as usize) * g.w + xx as usize) * g.c + c;
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

    // The reference input gradient: col2im(dy · Wᵀ) with col2im's scatter-add, in tiles of
    // whole images.

    /// Adds the im2col rows `r0..r0 + n` in `col` back into `dx`, the images `b0..` of
    /// `[b, h, w, c]` (the adjoint of [`im2col`]).
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

    /// Convolution input gradient: `dx = col2im(dy · Wᵀ) (+ bias)`; `dy` `[b, oh, ow, oc]`, `dx`
    /// `[b, h, w, c]`, `bias` `[c]` (for the transposed convolution, whose forward this is).
    /// Workers own whole images, so the scatter-adds never overlap.
    fn backward_input(g: &ConvGeom, dy: &[f32], wm: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        backward_input_tiled(g, dy, wm, bias, g.tile_rows())
    }

    /// [`backward_input`] in tiles of about `tile` rows (whole images, at least one).
    fn backward_input_tiled(
        g: &ConvGeom,
        dy: &[f32],
        wm: &[f32],
        bias: Option<&[f32]>,
        tile: usize,
    ) -> Vec<f32> {
        let (kkc, oc) = (g.kkc(), g.oc);
        let tile = tile.max(1);
        assert_eq!(dy.len(), g.rows() * oc, "dy is [b, oh, ow, oc]");
        assert_eq!(wm.len(), kkc * oc, "W is [kh*kw*c, oc]");
        assert!(bias.is_none_or(|b| b.len() == g.c), "bias is [c]");
        let img_rows = g.oh() * g.ow();
        let img = g.h * g.w * g.c;
        let imgs = (tile / img_rows).max(1);
        let mut dx = vec![0.0f32; g.b * img];
        if g.pointwise() {
            dx.par_chunks_mut(tile * kkc)
                .enumerate()
                .for_each(|(t, dxt)| {
                    let (r0, n) = (t * tile, dxt.len() / kkc);
                    let a = Mat::rows(&dy[r0 * oc..], oc);
                    mm(n, kkc, oc, dxt, false, a, Mat::rows_t(wm, oc));
                    add_bias(dxt, bias);
                });
            return dx;
        }
        dx.par_chunks_mut(imgs * img).enumerate().for_each_init(
            Vec::new,
            |col: &mut Vec<f32>, (t, dxt)| {
                let b0 = t * imgs;
                let n = dxt.len() / img * img_rows;
                let r0 = b0 * img_rows;
                col.resize(imgs * img_rows * kkc, 0.0);
                let a = Mat::rows(&dy[r0 * oc..], oc);
                mm(n, kkc, oc, col, false, a, Mat::rows_t(wm, oc));
                // Write before the scatter-add reads: dx comes from calloc, and a first read would map
                // the shared zero page, making the first write a copy-on-write fault with a TLB
                // shootdown on every core (about a tenth of a training step, measured).
                dxt.fill(0.0);
                col2im_add(g, col, r0, n, dxt, b0);
                add_bias(dxt, bias);
            },
        );
        dx
    }

    fn geoms() -> Vec<ConvGeom> {
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
        ]
    }

    #[test]
    fn weight_matrix_round_trips() {
        let mut rng = StdRng::seed_from_u64(1);
        for g in geoms() {
            let w = randv(g.oc * g.kkc(), &mut rng);
            assert_eq!(weight_from_matrix(&g, &weight_matrix(&g, &w)), w);
        }
    }

    /// forward against the definition; the input gradient is its adjoint
    /// (<conv(x), dy> = <x, dx> for the reference scatter-add dx and for [`input_grad`]), and the
    /// weight gradient is the derivative of
    /// the bilinear form <conv(x; W), dy> in W.
    #[test]
    fn kernels_match_the_definition_and_are_adjoint() {
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
                let y = forward_tiled(&g, &x, &wm, None, tile);
                for (a, b) in y.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                        "{g:?}/{tile}: {a} vs {b}"
                    );
                }
                for dx in [
                    backward_input_tiled(&g, &dy, &wm, None, tile),
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
            if g.sh > 1 || g.sw > 1 {
                for tile in [1, 70] {
                    check(&phase_input_grad(&g, &dy, &w, Some(&bias), tile));
                }
            }
        }
        assert_eq!(
            covered, 2,
            "the 3x3 and the 3x2 geometries take the flipped path"
        );
    }

    fn tensor(v: Vec<f32>, shape: [usize; 4], dev: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(v, shape), dev)
    }

    fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    fn bias(n: usize, rng: &mut StdRng, dev: &Device) -> Tensor<1> {
        Tensor::<1>::from_data(TensorData::new(randv(n, rng), [n]), dev).require_grad()
    }

    fn max_diff1(a: Tensor<1>, b: Tensor<1>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// The differentiable op against burn's own conv2d and its autodiff, values and gradients.
    #[test]
    fn conv2d_op_matches_burn() {
        let dev = Device::flex().autodiff();
        let mut rng = StdRng::seed_from_u64(3);
        for g in geoms() {
            let xs = randv(g.b * g.c * g.h * g.w, &mut rng);
            let ws = randv(g.oc * g.kkc(), &mut rng);
            let x = tensor(xs, [g.b, g.c, g.h, g.w], &dev).require_grad();
            let w = tensor(ws, [g.oc, g.c, g.kh, g.kw], &dev).require_grad();
            let b = bias(g.oc, &mut rng, &dev);
            let opts = ConvOptions::new([g.sh, g.sw], [g.ph, g.pw], [1, 1], 1);
            let want = conv2d(x.clone(), w.clone(), Some(b.clone()), opts);
            let dy = Tensor::<4>::random(want.dims(), Distribution::Default, &dev);
            let gw = (want.clone() * dy.clone()).sum().backward();
            let got = nhwc_conv2d(
                x.clone().permute([0, 2, 3, 1]),
                w.clone(),
                Some(b.clone()),
                [g.sh, g.sw],
                [g.ph, g.pw],
            )
            .permute([0, 3, 1, 2]);
            assert!(max_diff(got.clone(), want) < 1e-4, "{g:?}");
            let gg = (got * dy).sum().backward();
            let d = max_diff(x.grad(&gg).unwrap(), x.grad(&gw).unwrap());
            assert!(d < 1e-4, "{g:?}: dx differs by {d}");
            let d = max_diff(w.grad(&gg).unwrap(), w.grad(&gw).unwrap());
            assert!(d < 1e-3, "{g:?}: dw differs by {d}");
            let d = max_diff1(b.grad(&gg).unwrap(), b.grad(&gw).unwrap());
            assert!(d < 1e-3, "{g:?}: dbias differs by {d}");
        }
    }

    /// The transposed op against burn's conv_transpose2d, values and gradients.
    #[test]
    fn conv_transpose2d_op_matches_burn() {
        let dev = Device::flex().autodiff();
        let mut rng = StdRng::seed_from_u64(4);
        for (b, h, w, cin, cout, k, s, p) in [
            (
                3usize, 7usize, 7usize, 16usize, 8usize, 4usize, 2usize, 1usize,
            ),
            (2, 5, 4, 6, 1, 4, 2, 1),
            (2, 6, 6, 5, 3, 3, 1, 1),
        ] {
            let x = tensor(randv(b * cin * h * w, &mut rng), [b, cin, h, w], &dev).require_grad();
            let wt =
                tensor(randv(cin * cout * k * k, &mut rng), [cin, cout, k, k], &dev).require_grad();
            let bs = bias(cout, &mut rng, &dev);
            let opts = ConvTransposeOptions::new([s, s], [p, p], [0, 0], [1, 1], 1);
            let want = conv_transpose2d(x.clone(), wt.clone(), Some(bs.clone()), opts);
            let dy = Tensor::<4>::random(want.dims(), Distribution::Default, &dev);
            let gw = (want.clone() * dy.clone()).sum().backward();
            let x_nhwc = x.clone().permute([0, 2, 3, 1]);
            let got = nhwc_conv_transpose2d(x_nhwc, wt.clone(), Some(bs.clone()), [s, s], [p, p])
                .permute([0, 3, 1, 2]);
            assert_eq!(got.dims(), want.dims());
            assert!(max_diff(got.clone(), want) < 1e-4);
            let gg = (got * dy).sum().backward();
            assert!(max_diff(x.grad(&gg).unwrap(), x.grad(&gw).unwrap()) < 1e-4);
            assert!(max_diff(wt.grad(&gg).unwrap(), wt.grad(&gw).unwrap()) < 1e-3);
            assert!(max_diff1(bs.grad(&gg).unwrap(), bs.grad(&gw).unwrap()) < 1e-3);
        }
    }

    /// Without autodiff the op routes to the plain flex implementation.
    #[test]
    fn runs_without_autodiff() {
        let dev = Device::flex();
        let x = Tensor::<4>::ones([1, 3, 3, 2], &dev);
        let w = Tensor::<4>::ones([1, 2, 3, 3], &dev);
        let b = Tensor::<1>::from_floats([0.5], &dev);
        let y = nhwc_conv2d(x, w, Some(b), [1, 1], [1, 1]);
        // the centre sees all 9 positions x 2 channels, a corner 4 x 2; plus the bias
        let v = y.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v, vec![8.5, 12.5, 8.5, 12.5, 18.5, 12.5, 8.5, 12.5, 8.5]);
    }
}
