//! The forward product as a direct convolution on CPUs with AVX-512F: no im2col copy and no
//! operand packing per tile. Same result as [`super::forward`]'s GEMM, `y[r, o] = Σ_(i, j, ci)
//! x[b, oy·sh − ph + i, ox·sw − pw + j, ci] · W[(i·kw + j)·c + ci, o]` (zero outside the image),
//! summed in another order.
//!
//! A register block holds [`R`] output positions by 64 output channels (24 accumulators of 16
//! lanes). For each kernel tap and each run of at most [`CB`] input channels, [`block_avx512`]
//! loads the block's partial sums, adds the run's rank-1 updates (a broadcast input value per
//! position, four vector loads of weights), and stores them back; a tap that falls in the zero
//! padding reads a buffer of zeros, so the input is never copied. The weights are reordered once
//! per call into `[oc / 64][tap][c][64]`, so that the `CB × 64` weights of one run (32 KiB) stay
//! in L1 while a tile of [`TILE`] output rows passes them; the GEMM route instead streams its
//! whole weight operand from L2 or beyond for every tile of im2col rows, which is where the
//! direct kernel wins (see [`preferred`]).
//!
//! Measured on an Intel Xeon (family 6 model 207, 2 cores, 2 MiB of L2 a core; `cargo bench --
//! conv`, BENCHMARKS.md): the microkernel alone with its operands in L1
//! (`conv/microkernel-l1`) at 238-241 GFLOP/s on one core, against a core peak of 245; the
//! whole CIFAR-10 layers at 397-400 GFLOP/s on two.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::forward::{add_bias, zeroed_chunks};
use super::im2col::{ConvGeom, decompose};

/// Output positions of a register block.
const R: usize = 6;
/// Output channels of a register block: four AVX-512 vectors.
const OB: usize = 64;
/// Input channels one call of [`block_avx512`] reduces over: its weights, `CB × OB` f32 (32 KiB), stay
/// in L1 across the tile's row blocks.
const CB: usize = 128;
/// Output rows a task on rayon's workers covers.
const TILE: usize = 128;

/// Whether the direct kernel can take `g`: on x86-64 with AVX-512F, output channels a multiple
/// of [`OB`], at least 16 input channels (fewer leave the register block's loads and stores of
/// partial sums as costly as its arithmetic), and not a pointwise kernel (which is one GEMM with
/// no im2col anyway).
pub(super) fn usable(g: &ConvGeom) -> bool {
    cpu_has_avx512f() && g.oc.is_multiple_of(OB) && g.c >= 16 && !g.pointwise()
}

/// Whether [`super::forward`] runs `g` by the direct kernel: where it is [`usable`] and the GEMM
/// route's weight operand (`kh·kw·c × oc` f32) exceeds this CPU's L2 cache. Measured on an
/// Intel Xeon with 2 MiB of L2 a core (`cargo bench -- conv`, the kernels alone, the same
/// command): the CIFAR-10 model's layers (2.25 and 4 MiB of weights) ran 9-11% faster direct
/// (368 -> 400 and 356 -> 397 GFLOP/s), the MNIST model's (0.56 and 1 MiB) 5% slower and even,
/// where the GEMM keeps its weights in L2 and the direct kernel's extra passes over its partial
/// sums cost more than they save. The one place that decides.
pub(super) fn preferred(g: &ConvGeom) -> bool {
    usable(g) && g.kkc() * g.oc * size_of::<f32>() > l2_cache_bytes()
}

/// The L2 data cache of one core, from Linux's `/sys/devices/system/cpu/cpu0/cache` (read once);
/// 1 MiB where it cannot be read.
fn l2_cache_bytes() -> usize {
    static L2: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *L2.get_or_init(|| {
        let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
        (0..8)
            .map(|i| dir.join(format!("index{i}")))
            .filter(|d| read(d.join("level")).is_some_and(|l| l.trim() == "2"))
            .filter(|d| read(d.join("type")).is_some_and(|t| t.trim() != "Instruction"))
            .find_map(|d| parse_cache_size(&read(d.join("size"))?))
            .unwrap_or(1 << 20)
    })
}

/// A cache size as sysfs writes it (`2048K`, `1M`, or bytes).
fn parse_cache_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last()? {
        (i, 'K') => (&s[..i], 1 << 10),
        (i, 'M') => (&s[..i], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<usize>().ok()?.checked_mul(unit)
}

/// The forward convolution's kernel on this CPU for wide layers (at least 16 input channels,
/// output channels a multiple of 64, weights larger than the L2 cache): `direct avx512f`, else
/// `im2col+gemm` (as every other layer).
pub fn forward_family() -> &'static str {
    if cpu_has_avx512f() {
        "direct avx512f"
    } else {
        "im2col+gemm"
    }
}

/// Whether this CPU has AVX-512F (false off x86-64).
fn cpu_has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `wm` `[kh·kw·c, oc]` (rows `(tap, c)`) as `[oc / OB][tap][c][OB]`: each block of [`OB`]
/// output channels' weights contiguous, in the order the kernel reads them.
fn pack(g: &ConvGeom, wm: &[f32]) -> Vec<f32> {
    let (kkc, oc) = (g.kkc(), g.oc);
    let mut p = Vec::with_capacity(wm.len());
    for o0 in (0..oc).step_by(OB) {
        for k in 0..kkc {
            p.extend_from_slice(&wm[k * oc + o0..k * oc + o0 + OB]);
        }
    }
    p
}

/// Convolution forward by the direct kernel; arguments and result as [`super::forward`]. Call
/// only where [`usable`] holds.
pub(super) fn forward(g: &ConvGeom, x: &[f32], wm: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert!(
        usable(g),
        "the direct convolution cannot take {g:?} on this CPU"
    );
    let (kkc, oc, rows) = (g.kkc(), g.oc, g.rows());
    assert_eq!(x.len(), g.b * g.h * g.w * g.c, "x is [b, h, w, c]");
    assert_eq!(wm.len(), kkc * oc, "W is [kh*kw*c, oc]");
    assert!(bias.is_none_or(|b| b.len() == oc), "bias is [oc]");
    let wp = pack(g, wm);
    zeroed_chunks(
        rows * oc,
        TILE * oc,
        || (Vec::new(), vec![0.0f32; CB]),
        |(origin, zeros), t, yt| {
            let (r0, n) = (t * TILE, yt.len() / oc);
            origin.clear();
            origin.extend((r0..r0 + n).map(|r| decompose(g, r)));
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `usable` (asserted above) found AVX-512F on this CPU.
            unsafe {
                tile_avx512(g, x, &wp, origin, zeros, yt)
            };
            add_bias(yt, bias);
        },
    )
}

/// The output rows `yt` (`[n, oc]`) whose [`decompose`]d origins are `origin`; `wp` from
/// [`pack`], `zeros` at least [`CB`] zeros.
///
/// # Safety
/// The CPU has AVX-512F. (Every pointer [`block_avx512`] reads or writes comes from a slice
/// bounds-checked here.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(
    g: &ConvGeom,
    x: &[f32],
    wp: &[f32],
    origin: &[(usize, isize, isize)],
    zeros: &[f32],
    yt: &mut [f32],
) {
    let (c, oc, kk) = (g.c, g.oc, g.kh * g.kw);
    let (h, w) = (g.h as isize, g.w as isize);
    let n = origin.len();
    assert!(oc.is_multiple_of(OB) && yt.len() == n * oc && zeros.len() >= CB);
    for o0 in (0..oc).step_by(OB) {
        for tap in 0..kk {
            let (i, j) = ((tap / g.kw) as isize, (tap % g.kw) as isize);
            for c0 in (0..c).step_by(CB) {
                let cb = CB.min(c - c0);
                let wblk = &wp[((o0 / OB * kk + tap) * c + c0) * OB..][..cb * OB];
                for b0 in (0..n).step_by(R) {
                    let m = R.min(n - b0);
                    // The input run each position reads at this tap (the last position repeated
                    // past `m`, computed and not stored), or zeros in the padding.
                    let src: [*const f32; R] = std::array::from_fn(|k| {
                        let (bi, y0, x0) = origin[b0 + k.min(m - 1)];
                        let (y, xx) = (y0 + i, x0 + j);
                        if y < 0 || y >= h || xx < 0 || xx >= w {
                            zeros[..cb].as_ptr()
                        } else {
                            let at = ((bi * g.h + y as usize) * g.w + xx as usize) * c + c0;
                            x[at..at + cb].as_ptr()
                        }
                    });
                    let out = yt[b0 * oc + o0..(b0 + m - 1) * oc + o0 + OB].as_mut_ptr();
                    // SAFETY: AVX-512F (this function's contract); each `src[k]` starts `cb`
                    // valid elements, `wblk` holds `cb · OB`, `out` rows `k < m` of stride `oc`
                    // hold `OB` each (the slices above).
                    unsafe {
                        block_avx512(src, cb, wblk.as_ptr(), out, oc, m, tap == 0 && c0 == 0)
                    };
                }
            }
        }
    }
}

/// For the `m` positions `k < m`: `out[k·oc ..][..OB] (+)= Σ_(ci < cb) src[k][ci] · w[ci·OB ..][..OB]`,
/// overwriting when `first`: `R × 4` accumulators of 16 lanes.
///
/// # Safety
/// The CPU has AVX-512F; every `src[k]` points at `cb` readable f32s, `w` at `cb · OB`, `out` at
/// `m` rows of stride `oc` with `OB` writable f32s each; `1 <= m <= R`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_avx512(
    src: [*const f32; R],
    cb: usize,
    w: *const f32,
    out: *mut f32,
    oc: usize,
    m: usize,
    first: bool,
) {
    // SAFETY (all the pointer arithmetic below): reads of `src[k] + ci` for `ci < cb`, of `w` up
    // to `cb · OB` and of `out` rows `k.min(m − 1) < m` with `OB` lanes, as the caller promises.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        if !first {
            for (k, a) in acc.iter_mut().enumerate() {
                for (v, a) in a.iter_mut().enumerate() {
                    *a = _mm512_loadu_ps(out.add(k.min(m - 1) * oc + 16 * v));
                }
            }
        }
        for ci in 0..cb {
            let wr = w.add(ci * OB);
            let wv = [
                _mm512_loadu_ps(wr),
                _mm512_loadu_ps(wr.add(16)),
                _mm512_loadu_ps(wr.add(32)),
                _mm512_loadu_ps(wr.add(48)),
            ];
            for (a, pk) in acc.iter_mut().zip(&src) {
                let xv = _mm512_set1_ps(*pk.add(ci));
                for (a, wv) in a.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(xv, *wv, *a);
                }
            }
        }
        for (k, a) in acc.iter().enumerate().take(m) {
            for (v, a) in a.iter().enumerate() {
                _mm512_storeu_ps(out.add(k * oc + 16 * v), *a);
            }
        }
    }
}

/// The microkernel alone, `calls` times on this thread, with its operands in L1 (one tap of
/// [`CB`] input channels for [`R`] positions, fed back into the same accumulators): the flops
/// done (0 without AVX-512F). `cargo bench -- conv/microkernel-l1` sets the whole convolutions
/// against it (BENCHMARKS.md).
#[doc(hidden)]
pub fn microkernel_in_l1(calls: usize) -> usize {
    if !cpu_has_avx512f() {
        return 0;
    }
    let x = vec![0.5f32; R * CB];
    let w = vec![0.25f32; CB * OB];
    let mut out = vec![0.0f32; R * OB];
    let src: [*const f32; R] = std::array::from_fn(|k| x[k * CB..].as_ptr());
    for _ in 0..calls {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F checked above; `src[k]` starts `CB` elements of `x`, `w` holds
        // `CB · OB`, `out` `R` rows of `OB`.
        unsafe {
            block_avx512(src, CB, w.as_ptr(), out.as_mut_ptr(), OB, R, false)
        };
        std::hint::black_box(&mut out);
    }
    calls * R * CB * OB * 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::im2col::weight_matrix;
    use crate::kernels::conv::testutil::{naive, randv};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// The direct forward against the definition, on [`test_geoms`].
    #[test]
    fn direct_forward_matches_the_definition() {
        if !cpu_has_avx512f() {
            eprintln!("no AVX-512F on this CPU: the direct kernel is not used, nothing to test");
            return;
        }
        let mut rng = StdRng::seed_from_u64(7);
        for g in test_geoms() {
            assert!(usable(&g));
            assert_ne!(g.rows() % R, 0, "{g:?}: a ragged register block");
            let x = randv(g.b * g.h * g.w * g.c, &mut rng);
            let w = randv(g.oc * g.kkc(), &mut rng);
            let bias = randv(g.oc, &mut rng);
            let want = naive(&g, &x, &w);
            let y = forward(&g, &x, &weight_matrix(&g, &w), Some(&bias));
            for (k, (a, b)) in y.iter().zip(&want).enumerate() {
                let b = b + bias[k % g.oc];
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{g:?}: {a} vs {b}");
            }
        }
    }

    /// 3x3 "same", 4x4 stride 2 with the padding on every border, a non-square kernel with
    /// stride 3, input channels that leave a short last run of [`CB`] (200 = 128 + 72), ragged
    /// last tiles and register blocks, two blocks of output channels.
    fn test_geoms() -> Vec<ConvGeom> {
        let g = |b, h, w, c, oc, kh, kw, s, p| ConvGeom {
            b,
            h,
            w,
            c,
            oc,
            kh,
            kw,
            sh: s,
            sw: s,
            ph: p,
            pw: p,
        };
        vec![
            g(5, 8, 8, 64, 64, 3, 3, 1, 1),
            g(5, 10, 9, 32, 128, 4, 4, 2, 1),
            g(3, 7, 11, 200, 64, 5, 3, 3, 2),
            g(7, 7, 7, 16, 64, 3, 3, 1, 1),
        ]
    }

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("2048K\n"), Some(2 << 20));
        assert_eq!(parse_cache_size("1M"), Some(1 << 20));
        assert_eq!(parse_cache_size("524288"), Some(1 << 19));
        assert_eq!(parse_cache_size("K"), None);
        assert_eq!(parse_cache_size(""), None);
        assert!(l2_cache_bytes() >= 1 << 16, "an L2 of at least 64 KiB");
    }

    /// Where it cannot take a layer: output channels not a multiple of 64, fewer than 16 input
    /// channels, a pointwise kernel.
    #[test]
    fn direct_takes_only_its_layers() {
        let g = ConvGeom {
            b: 1,
            h: 8,
            w: 8,
            c: 64,
            oc: 64,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            ph: 1,
            pw: 1,
        };
        assert_eq!(usable(&g), cpu_has_avx512f());
        // 147 KiB of weights stay in any L2: the GEMM route; 2304 x 2048 f32 (18 MiB) exceed it.
        assert!(!preferred(&g));
        assert_eq!(
            preferred(&ConvGeom {
                c: 256,
                oc: 2048,
                ..g
            }),
            cpu_has_avx512f()
        );
        assert!(!usable(&ConvGeom { oc: 96, ..g }));
        assert!(!usable(&ConvGeom { c: 8, ..g }));
        assert!(!usable(&ConvGeom {
            kh: 1,
            kw: 1,
            ph: 0,
            pw: 0,
            ..g
        }));
    }
}
