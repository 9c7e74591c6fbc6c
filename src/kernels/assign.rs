//! The bottleneck's kernels on the host: p(z|i) for a batch of encoder outputs against the whole
//! codebook, hard (seed eq. 27) and soft (seed eq. 28), fused and tiled so that the N x K
//! distance matrix is never held whole.
//!
//! Both kernels expand ||z_i - e_j||^2 = ||z_i||^2 - 2 z_i . e_j + ||e_j||^2 and drop the row
//! constant ||z_i||^2, which changes neither the argmin nor the softmax over j:
//!
//! * [`nearest`]: k_i = argmin_j (||e_j||^2 - 2 z_i . e_j) (eq. 27). Rows are split into blocks
//!   run in parallel; each block walks the codebook in chunks (one GEMM a chunk, then a running
//!   minimum), so a worker holds `rows x chunk` <= [`TILE_BUDGET`] distances. Ties go to the
//!   lower index, as in one argmin.
//! * [`soft_assign`]: a_ij = -(||e_j||^2 - 2 z_i . e_j) / tau, log p(j|i) = a_ij - log sum_j
//!   exp(a_ij) by log-sum-exp (eq. 28 with a temperature), then m codes drawn from p(.|i) by one
//!   sorted inverse-CDF scan, the most probable code, and (when asked) the information
//!   quantities of p(.|i) accumulated for [`crate::info::InfoAccumulator`]. A block holds whole
//!   rows: `rows x K` <= [`TILE_BUDGET`] (at least one row).
//!
//! Memory: N*D (inputs) + K*D (codebook) + N*m (samples) + one tile per worker. Work: the
//! 2 N K D flops of the distance GEMM (the `gemm` crate, the kernel burn's `flex` backend uses)
//! plus O(N K) for the scans. Samples are drawn from a per-row stream seeded by (seed, row), so
//! the result does not depend on the number of threads.

use rayon::prelude::*;

use super::gemm::{Mat, MatMut, matmul};
use crate::info::InfoAccumulator;

/// Most distances (f32) one worker holds at once: 1 Mi elements, 4 MiB.
pub const TILE_BUDGET: usize = 1 << 20;

/// Rows a hard-assignment block takes.
const HARD_ROWS: usize = 64;

/// Most rows a soft-assignment block takes.
const SOFT_ROWS: usize = 64;

/// A codebook `[K, D]` (row-major) with its squared norms.
pub struct Codebook<'a> {
    pub e: &'a [f32],
    pub k: usize,
    pub d: usize,
    e2: Vec<f32>,
}

impl<'a> Codebook<'a> {
    /// `e` holds K rows of D values. Panics unless K >= 1 and D >= 1 (callers check what the user
    /// gives: `--codebook-size` by [`crate::config::RunConfig::resolve`], `vqib bench --k` by
    /// [`crate::bench::check_args`]).
    pub fn new(e: &'a [f32], d: usize) -> Self {
        assert!(
            d > 0 && !e.is_empty() && e.len().is_multiple_of(d),
            "codebook is [K, D]"
        );
        let k = e.len() / d;
        let e2 = e
            .chunks_exact(d)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        Self { e, k, d, e2 }
    }
}

/// `out[r * kc + j] = z_r . e_(j0 + j)` for the `rows` rows of `z` and codewords j0..j0+kc: one
/// GEMM with `z` as [rows, d] (row-major), `e` read as the [d, kc] matrix e^T, and `out` as
/// [rows, kc] (row-major).
fn dot_tile(z: &[f32], rows: usize, cb: &Codebook, j0: usize, kc: usize, out: &mut [f32]) {
    let d = cb.d;
    let e = &cb.e[j0 * d..(j0 + kc) * d];
    matmul(
        rows,
        kc,
        d,
        MatMut::rows(out, kc),
        false,
        Mat::rows(z, d),
        Mat::rows_t(e, d),
    );
}

/// Index of the nearest codeword of each row of `z` (`[N, D]` row-major), seed eq. 27.
pub fn nearest(z: &[f32], cb: &Codebook) -> Vec<u32> {
    let chunk = (TILE_BUDGET / HARD_ROWS).max(1);
    nearest_tiled(z, cb, HARD_ROWS, chunk)
}

/// [`nearest`] with blocks of `rows` rows scanning the codebook `chunk` codewords at a time.
pub fn nearest_tiled(z: &[f32], cb: &Codebook, rows: usize, chunk: usize) -> Vec<u32> {
    let (d, k) = (cb.d, cb.k);
    assert!(z.len().is_multiple_of(d), "z is [N, D] with D = {d}");
    let n = z.len() / d;
    let (rows, chunk) = (rows.max(1), chunk.clamp(1, k));
    let mut out = vec![0u32; n];
    z.par_chunks(rows * d)
        .zip(out.par_chunks_mut(rows))
        .for_each_init(
            || {
                (
                    vec![0.0f32; rows * chunk],
                    vec![(f32::INFINITY, 0u32); rows],
                )
            },
            |(tile, best), (zb, ob)| {
                let r = ob.len();
                best[..r].fill((f32::INFINITY, 0));
                for j0 in (0..k).step_by(chunk) {
                    let kc = chunk.min(k - j0);
                    dot_tile(zb, r, cb, j0, kc, tile);
                    let e2 = &cb.e2[j0..j0 + kc];
                    for (i, b) in best[..r].iter_mut().enumerate() {
                        let (v, j) = row_min(&mut tile[i * kc..(i + 1) * kc], e2);
                        // Strictly smaller: a tie keeps the earlier chunk's (lower) index.
                        if v < b.0 {
                            *b = (v, (j0 + j) as u32);
                        }
                    }
                }
                for (o, b) in ob.iter_mut().zip(&best[..r]) {
                    *o = b.1;
                }
            },
        );
    out
}

/// Whether the row kernels ([`row_min`], [`row_softmax`]) take their AVX2+FMA path on this CPU
/// (the one place that decides; `vqib bench` reports it).
pub fn rows_use_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Turns `g` (dot products) into `e2 - 2 g` in place and returns its minimum and first position.
fn row_min(g: &mut [f32], e2: &[f32]) -> (f32, usize) {
    #[cfg(target_arch = "x86_64")]
    if rows_use_avx2() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { row_min_avx2(g, e2) };
    }
    row_min_generic(g, e2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_min_avx2(g: &mut [f32], e2: &[f32]) -> (f32, usize) {
    row_min_generic(g, e2)
}

#[inline(always)]
fn row_min_generic(g: &mut [f32], e2: &[f32]) -> (f32, usize) {
    let mut lanes = [f32::INFINITY; 8];
    let mut gc = g.chunks_exact_mut(8);
    let mut ec = e2.chunks_exact(8);
    for (gs, es) in (&mut gc).zip(&mut ec) {
        for l in 0..8 {
            let v = es[l] - 2.0 * gs[l];
            gs[l] = v;
            lanes[l] = if v < lanes[l] { v } else { lanes[l] };
        }
    }
    let mut min = lanes.iter().copied().fold(f32::INFINITY, f32::min);
    for (gv, &ev) in gc.into_remainder().iter_mut().zip(ec.remainder()) {
        *gv = ev - 2.0 * *gv;
        min = min.min(*gv);
    }
    // NaN distances never compare below: report them as the first code, never a silent skip.
    let pos = g.iter().position(|&v| v == min).unwrap_or(0);
    (min, pos)
}

/// Options of [`soft_assign`].
#[derive(Clone, Copy, Debug)]
pub struct SoftOptions<'a> {
    /// tau in p(z|i) = softmax(-||z_i - e_z||^2 / tau).
    pub tau: f64,
    /// Codes drawn per row (0: none).
    pub samples: usize,
    /// Seeds the per-row sample streams.
    pub seed: u64,
    /// When given (log r(z), length K), the information quantities are accumulated under it.
    pub log_r: Option<&'a [f64]>,
    /// With `log_r`: a label per row and the number of classes, for the joint of codes and
    /// labels (I(Z;Y), [`InfoAccumulator::relevance`]).
    pub labels: Option<(&'a [u32], usize)>,
}

/// The soft assignment of a batch: samples, most probable codes, information quantities.
pub struct SoftAssignment {
    /// `[N * m]`: the m codes drawn for row i at `i*m..(i+1)*m`, in increasing order.
    pub samples: Vec<u32>,
    /// `[N]`: argmax_z p(z|i) (the first on ties).
    pub argmax: Vec<u32>,
    /// The points' information quantities, when `log_r` was given.
    pub info: Option<InfoAccumulator>,
}

/// Per-worker state of [`soft_assign`].
struct SoftWorker {
    tile: Vec<f32>,
    blocks: Vec<f64>,
    uniforms: Vec<f64>,
    info: Option<InfoAccumulator>,
}

/// Soft assignment of the rows of `z` (`[N, D]`) to `cb` (seed eq. 28): see the module docs.
pub fn soft_assign(z: &[f32], cb: &Codebook, opts: &SoftOptions) -> SoftAssignment {
    let rows = (TILE_BUDGET / cb.k).clamp(1, SOFT_ROWS);
    soft_assign_tiled(z, cb, opts, rows)
}

/// [`soft_assign`] with blocks of `rows` rows.
pub fn soft_assign_tiled(
    z: &[f32],
    cb: &Codebook,
    opts: &SoftOptions,
    rows: usize,
) -> SoftAssignment {
    let (d, k, m) = (cb.d, cb.k, opts.samples);
    assert!(z.len().is_multiple_of(d), "z is [N, D] with D = {d}");
    if let Some(lr) = opts.log_r {
        assert_eq!(lr.len(), k, "log r(z) has K entries");
    }
    let n = z.len() / d;
    let rows = rows.max(1);
    // A chunk size of 0 is not allowed: with m = 0 the samples buffer has one dummy per row.
    let ms = m.max(1);
    let mut samples = vec![0u32; n * ms];
    let mut argmax = vec![0u32; n];
    let job = SoftJob {
        cb,
        opts,
        rows,
        scale: (1.0 / opts.tau) as f32,
    };
    let new_worker = || SoftWorker {
        tile: vec![0.0; rows * k],
        blocks: Vec::with_capacity(k.div_ceil(BLOCK)),
        uniforms: vec![0.0; m],
        info: opts.log_r.map(|lr| new_info(lr, opts)),
    };
    let infos: Vec<Option<InfoAccumulator>> = z
        .par_chunks(rows * d)
        .zip(samples.par_chunks_mut(rows * ms))
        .zip(argmax.par_chunks_mut(rows))
        .enumerate()
        .fold(new_worker, |mut w, (block, ((zb, sb), ab))| {
            job.block(&mut w, block, zb, sb, ab);
            w
        })
        .map(|w| w.info)
        .collect();
    if let Some((l, _)) = opts.labels {
        assert_eq!(l.len(), n, "a label per row");
    }
    let info = opts.log_r.map(|lr| {
        let mut total = new_info(lr, opts);
        for part in infos.iter().flatten() {
            total.merge(part);
        }
        total
    });
    samples.truncate(n * m);
    SoftAssignment {
        samples,
        argmax,
        info,
    }
}

/// An empty accumulator under `log_r`, keeping the joint with the labels where given.
fn new_info(log_r: &[f64], opts: &SoftOptions) -> InfoAccumulator {
    let acc = InfoAccumulator::new(log_r.to_vec());
    match opts.labels {
        Some((_, classes)) => acc.with_classes(classes),
        None => acc,
    }
}

/// What every block of [`soft_assign_tiled`] shares.
struct SoftJob<'a> {
    cb: &'a Codebook<'a>,
    opts: &'a SoftOptions<'a>,
    /// Rows a block takes (the last may take fewer).
    rows: usize,
    /// 1 / tau.
    scale: f32,
}

impl SoftJob<'_> {
    /// Block `block` of [`soft_assign_tiled`]: the rows `zb` of z, their samples `sb` (m a row)
    /// and most probable codes `ab`, the information quantities into `w.info`.
    fn block(&self, w: &mut SoftWorker, block: usize, zb: &[f32], sb: &mut [u32], ab: &mut [u32]) {
        let (cb, opts, rows, scale) = (self.cb, self.opts, self.rows, self.scale);
        let (k, m) = (cb.k, opts.samples);
        let r = ab.len();
        dot_tile(zb, r, cb, 0, k, &mut w.tile);
        for i in 0..r {
            let row = &mut w.tile[i * k..(i + 1) * k];
            let st = row_softmax(row, &cb.e2, scale, &mut w.blocks);
            ab[i] = st.argmax as u32;
            let global = (block * rows + i) as u64;
            if m > 0 {
                let mut rng = SplitMix64::new(opts.seed, global);
                draw_sorted(
                    row,
                    &w.blocks,
                    st.sum,
                    &mut rng,
                    &mut w.uniforms,
                    &mut sb[i * m..(i + 1) * m],
                );
            }
            if let Some(acc) = w.info.as_mut() {
                // H(p(.|i)) = log S - sum_j q_j b_j with b = a - max a, q = exp(b) / S.
                let inv = 1.0 / st.sum;
                let h = st.sum.ln() - st.pb * inv;
                let label = opts.labels.map(|(l, _)| l[global as usize]);
                acc.add_weights(row, inv, h, st.argmax, label);
            }
        }
    }
}

/// What one pass over a row of [`row_softmax`] leaves besides the weights.
struct RowStats {
    /// S = sum_j exp(b_j), b = a - max a.
    sum: f64,
    /// sum_j exp(b_j) b_j.
    pb: f64,
    argmax: usize,
}

/// Turns the dot products `g` of one row into the weights exp(a_j - max a), a_j = (2 g_j -
/// ||e_j||^2) * scale, in place.
fn row_softmax(g: &mut [f32], e2: &[f32], scale: f32, blocks: &mut Vec<f64>) -> RowStats {
    #[cfg(target_arch = "x86_64")]
    if rows_use_avx2() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { row_softmax_avx2(g, e2, scale, blocks) };
    }
    row_softmax_generic(g, e2, scale, blocks)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_softmax_avx2(g: &mut [f32], e2: &[f32], scale: f32, blocks: &mut Vec<f64>) -> RowStats {
    row_softmax_generic(g, e2, scale, blocks)
}

#[inline(always)]
fn row_softmax_generic(g: &mut [f32], e2: &[f32], scale: f32, blocks: &mut Vec<f64>) -> RowStats {
    // Pass 1: a_j and its maximum.
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut gc = g.chunks_exact_mut(8);
    let mut ec = e2.chunks_exact(8);
    for (gs, es) in (&mut gc).zip(&mut ec) {
        for l in 0..8 {
            let a = (2.0 * gs[l] - es[l]) * scale;
            gs[l] = a;
            lanes[l] = if a > lanes[l] { a } else { lanes[l] };
        }
    }
    let mut max = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (gv, &ev) in gc.into_remainder().iter_mut().zip(ec.remainder()) {
        *gv = (2.0 * *gv - ev) * scale;
        max = max.max(*gv);
    }
    let argmax = g.iter().position(|&v| v == max).unwrap_or(0);
    // Pass 2: b = a - max, w = exp(b), the sums of w over blocks of BLOCK codes (for the
    // sampler), S = sum w, and sum w b.
    blocks.clear();
    let (mut sum, mut pb) = (0.0f64, 0.0f64);
    let mut bc = g.chunks_exact_mut(BLOCK);
    for blk in &mut bc {
        let (mut s, mut sb) = ([0.0f32; 8], [0.0f32; 8]);
        for gs in blk.chunks_exact_mut(8) {
            for l in 0..8 {
                let b = gs[l] - max;
                let w = exp_nonpositive(b);
                gs[l] = w;
                s[l] += w;
                sb[l] += w * b;
            }
        }
        let bs: f32 = s.iter().sum();
        blocks.push(bs as f64);
        sum += bs as f64;
        pb += sb.iter().sum::<f32>() as f64;
    }
    let rest = bc.into_remainder();
    if !rest.is_empty() {
        let mut bs = 0.0f64;
        for gv in rest {
            let b = *gv - max;
            let w = exp_nonpositive(b);
            *gv = w;
            bs += w as f64;
            pb += (w * b) as f64;
        }
        blocks.push(bs);
        sum += bs;
    }
    RowStats { sum, pb, argmax }
}

/// exp(x) for x <= 0 in f32, branch-free so that it vectorises: x = n ln 2 + r with |r| <= ln 2 / 2
/// (Cody-Waite), exp(r) by its degree-6 Taylor polynomial (relative error < 2e-7), scaled by
/// 2^n through the exponent bits. Inputs below -87 (where exp underflows f32's normal range)
/// return exp(-87) ~ 1.6e-38, a weight no sum can see.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = if x > -87.0 { x } else { -87.0 };
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let e = (t.to_bits() as i32 - MAGIC.to_bits() as i32 + 127) << 23;
    f32::from_bits(e as u32) * p
}

/// Codes a block of the sampler's running sums.
const BLOCK: usize = 64;

/// Draws `out.len()` codes from the weights `w` (total `sum`, block sums `blocks` over runs of
/// [`BLOCK`] codes): sorted uniforms on [0, sum), one scan over the block sums, and a scan inside
/// the blocks that a uniform falls in. A uniform that rounding puts past the weights of its block
/// takes the block's last code of positive weight (the row's, past the last block).
fn draw_sorted(
    w: &[f32],
    blocks: &[f64],
    sum: f64,
    rng: &mut SplitMix64,
    u: &mut [f64],
    out: &mut [u32],
) {
    for v in u.iter_mut() {
        *v = rng.next_f64() * sum;
    }
    u.sort_unstable_by(f64::total_cmp);
    let (mut t, mut base, mut last) = (0usize, 0.0f64, 0usize);
    for (b, &bs) in blocks.iter().enumerate() {
        if t == u.len() {
            return;
        }
        let j0 = b * BLOCK;
        let ws = &w[j0..(j0 + BLOCK).min(w.len())];
        let end = base + bs;
        if bs > 0.0 && u[t] < end {
            let mut acc = base;
            for (j, &wj) in ws.iter().enumerate() {
                if wj <= 0.0 {
                    continue;
                }
                last = j0 + j;
                acc += wj as f64;
                while t < u.len() && u[t] < acc {
                    out[t] = last as u32;
                    t += 1;
                }
            }
            while t < u.len() && u[t] < end {
                out[t] = last as u32;
                t += 1;
            }
        } else if bs > 0.0 {
            last = j0 + ws.iter().rposition(|&x| x > 0.0).unwrap_or(0);
        }
        base = end;
    }
    out[t..].fill(last as u32);
}

/// SplitMix64 (Steele et al. 2014): a small counter-based stream, one per (seed, row).
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut s = Self(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        s.next_u64();
        s
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.gen_range(-1.0..1.0f32)).collect()
    }

    fn dist2(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum()
    }

    /// log p(z|i) by the definition, in f64.
    fn log_probs(z: &[f32], e: &[f32], d: usize, tau: f64) -> Vec<Vec<f64>> {
        z.chunks(d)
            .map(|zi| {
                let a: Vec<f64> = e.chunks(d).map(|ej| -dist2(zi, ej) / tau).collect();
                let max = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + a.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                a.iter().map(|v| v - lse).collect()
            })
            .collect()
    }

    #[test]
    fn exp_is_accurate_to_a_few_ulp() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let got = exp_nonpositive(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1e4) > 0.0 && exp_nonpositive(-1e4) < 1e-37);
    }

    #[test]
    fn nearest_matches_brute_force_for_every_tiling() {
        let (n, k, d) = (203, 97, 7);
        let z = random(n * d, 1);
        let mut e = random(k * d, 2);
        // Code 60 duplicates code 5: ties go to the lower index, across chunks too.
        let dup: Vec<f32> = e[5 * d..6 * d].to_vec();
        e[60 * d..61 * d].copy_from_slice(&dup);
        let cb = Codebook::new(&e, d);
        let brute: Vec<Vec<f64>> = z
            .chunks(d)
            .map(|zi| e.chunks(d).map(|ej| dist2(zi, ej)).collect())
            .collect();
        for (rows, chunk) in [(1, 1), (3, 7), (64, 16), (64, 97), (500, 1000)] {
            let got = nearest_tiled(&z, &cb, rows, chunk);
            for (i, &j) in got.iter().enumerate() {
                let row = &brute[i];
                let best = row.iter().cloned().fold(f64::INFINITY, f64::min);
                // The chosen code is the nearest up to f32 rounding of the expansion.
                assert!(
                    row[j as usize] <= best + 1e-5,
                    "rows {rows} chunk {chunk} row {i}"
                );
                assert_ne!(j, 60, "a duplicate of a lower code must never win");
            }
            assert_eq!(got, nearest(&z, &cb), "rows {rows} chunk {chunk}");
        }
    }

    #[test]
    fn soft_information_quantities_match_the_definition() {
        let (n, k, d, tau) = (150, 40, 5, 0.7);
        let z = random(n * d, 3);
        let e = random(k * d, 4);
        let mut rng = StdRng::seed_from_u64(5);
        let r: Vec<f64> = (0..k).map(|_| rng.gen_range(0.1..1.0)).collect();
        let total: f64 = r.iter().sum();
        let log_r: Vec<f64> = r.iter().map(|v| (v / total).ln()).collect();
        let lp = log_probs(&z, &e, d, tau);
        let mut want = InfoAccumulator::new(log_r.clone());
        let flat: Vec<f32> = lp.iter().flatten().map(|&v| v as f32).collect();
        want.add_log_probs(&flat);
        let want = want.summary();
        let cb = Codebook::new(&e, d);
        for rows in [1, 7, 64] {
            let opts = SoftOptions {
                tau,
                samples: 0,
                seed: 0,
                log_r: Some(&log_r),
                labels: None,
            };
            let s = soft_assign_tiled(&z, &cb, &opts, rows);
            assert!(s.samples.is_empty());
            let got = s.info.unwrap().summary();
            assert_eq!(got.n, n as u64);
            for (name, a, b) in [
                ("H(Z)", got.h_z, want.h_z),
                ("H(Z|I)", got.h_z_given_i, want.h_z_given_i),
                ("CE", got.cross_entropy, want.cross_entropy),
                ("KL", got.kl, want.kl),
                ("I(I;Z)", got.mutual_info, want.mutual_info),
            ] {
                assert!((a - b).abs() < 2e-5, "rows {rows}: {name} {a} vs {b}");
            }
            // The most probable codes.
            for (i, &j) in s.argmax.iter().enumerate() {
                let best = lp[i].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                assert!(lp[i][j as usize] >= best - 1e-5, "row {i}");
            }
        }
    }

    #[test]
    fn uniform_assignment_has_entropy_log_k() {
        // Every codeword at the same distance from z: p(.|i) is uniform, H(Z|I) = log K, I = 0.
        let k = 64;
        let e: Vec<f32> = (0..k)
            .flat_map(|j| {
                let t = j as f32 * std::f32::consts::TAU / k as f32;
                [t.cos(), t.sin()]
            })
            .collect();
        let z = vec![0.0f32; 2 * 10];
        let log_r = vec![-(k as f64).ln(); k];
        let s = soft_assign(
            &z,
            &Codebook::new(&e, 2),
            &SoftOptions {
                tau: 1.0,
                samples: 3,
                seed: 1,
                log_r: Some(&log_r),
                labels: None,
            },
        );
        let info = s.info.unwrap().summary();
        let lk = (k as f64).ln();
        assert!((info.h_z_given_i - lk).abs() < 1e-5, "{}", info.h_z_given_i);
        assert!((info.h_z - lk).abs() < 1e-5);
        assert!(info.mutual_info.abs() < 1e-5 && info.kl.abs() < 1e-5);
        assert_eq!(s.samples.len(), 30);
    }

    #[test]
    fn samples_follow_p_chi_square() {
        // One row z = 0 and 1-D codewords e_j = sqrt(c - log p_j): p(j|0) = p_j at tau = 1.
        let p = [0.05f64, 0.1, 0.15, 0.3, 0.4];
        let c = 10.0;
        let e: Vec<f32> = p.iter().map(|q| (c - q.ln()).sqrt() as f32).collect();
        let m = 20_000;
        let s = soft_assign(
            &[0.0],
            &Codebook::new(&e, 1),
            &SoftOptions {
                tau: 1.0,
                samples: m,
                seed: 2024,
                log_r: None,
                labels: None,
            },
        );
        let mut counts = [0f64; 5];
        for &j in &s.samples {
            counts[j as usize] += 1.0;
        }
        let chi2: f64 = counts
            .iter()
            .zip(&p)
            .map(|(o, q)| (o - q * m as f64).powi(2) / (q * m as f64))
            .sum();
        // 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
        assert!(chi2 < 18.47, "chi-square {chi2} for counts {counts:?}");
        assert_eq!(s.argmax, vec![4]);
    }

    #[test]
    fn samples_do_not_depend_on_tiling_or_threads() {
        let (n, k, d) = (300, 50, 4);
        let z = random(n * d, 6);
        let e = random(k * d, 7);
        let cb = Codebook::new(&e, d);
        let opts = SoftOptions {
            tau: 0.3,
            samples: 5,
            seed: 99,
            log_r: None,
            labels: None,
        };
        let base = soft_assign(&z, &cb, &opts);
        for rows in [1, 13, 300] {
            let s = soft_assign_tiled(&z, &cb, &opts, rows);
            assert_eq!(s.samples, base.samples, "rows {rows}");
            assert_eq!(s.argmax, base.argmax);
        }
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let s = one.install(|| soft_assign(&z, &cb, &opts));
        assert_eq!(s.samples, base.samples);
        let other = soft_assign(&z, &cb, &SoftOptions { seed: 100, ..opts });
        assert_ne!(other.samples, base.samples, "the seed must matter");
    }

    #[test]
    fn far_away_points_stay_finite() {
        // -d^2 of about -2e6: a naive softmax would give 0/0.
        let e = [0.0f32, 0.0, 1.0, 0.0, 0.0, 1.0];
        let z = [1000.0f32, 0.0, 1001.0, 1.0];
        let log_r = vec![-(3f64).ln(); 3];
        let s = soft_assign(
            &z,
            &Codebook::new(&e, 2),
            &SoftOptions {
                tau: 1.0,
                samples: 4,
                seed: 0,
                log_r: Some(&log_r),
                labels: None,
            },
        );
        assert_eq!(s.argmax, vec![1, 1]);
        assert!(s.samples.iter().all(|&j| j == 1));
        let info = s.info.unwrap().summary();
        assert!(info.h_z_given_i.is_finite() && info.h_z_given_i.abs() < 1e-6);
        assert!((info.cross_entropy - 3f64.ln()).abs() < 1e-9);
    }
}
