//! `vq`: the nearest codeword (seed eq. 27) with the straight-through estimator, the codebook
//! learned by the codebook term of eq. 24 (van den Oord et al. 2017):
//!
//! L_q = ||sg(z_e) - z_q||^2 + beta ||z_e - sg(z_q)||^2,  z_q = e_k, k = argmin_j ||z_e - e_j||^2.

use burn::tensor::{Int, Tensor};

use super::config::{CodeSpace, Estimator, QuantizerConfig};
use super::{
    Context, QuantizerKind, QuantizerOutput, QuantizerParams, Registered, host_f32, index_tensor,
    on_host,
};
use crate::kernels::assign::{self, Codebook};

/// Squared Euclidean distances `[N, K]` between rows of `z` (`[N, D]`) and codewords `e`
/// (`[K, D]`): ||z||^2 - 2 z e^T + ||e||^2.
pub fn squared_distances(z: Tensor<2>, e: Tensor<2>) -> Tensor<2> {
    let z2 = z.clone().square().sum_dim(1); // [N, 1]
    let e2 = e.clone().square().sum_dim(1).transpose(); // [1, K]
    z2 + e2 - z.matmul(e.transpose()).mul_scalar(2.0)
}

/// Most distance-matrix elements [`nearest`] holds at once (64 MiB of f32).
pub const DISTANCE_BUDGET: usize = 1 << 24;

/// Index of the nearest codeword for each row of `z` (seed eq. 27), `[N]`. On the CPU this is the
/// fused, tiled kernel [`assign::nearest`]; on other devices the codebook is scanned in chunks
/// once the N x K distance matrix would exceed [`DISTANCE_BUDGET`] elements, keeping a running
/// minimum. Either way ties go to the lower index, as in one argmin.
pub fn nearest(z: Tensor<2>, e: Tensor<2>) -> Tensor<1, Int> {
    let d = z.dims()[1];
    let device = z.device();
    if on_host(&device) {
        let (zv, ev) = (host_f32(z), host_f32(e));
        return index_tensor(&assign::nearest(&zv, &Codebook::new(&ev, d)), &device);
    }
    nearest_resident(z, e)
}

/// [`nearest`] as tensor operations on the tensors' device (no host round trip), scanning the
/// codebook in chunks of at most [`DISTANCE_BUDGET`] distance elements.
pub fn nearest_resident(z: Tensor<2>, e: Tensor<2>) -> Tensor<1, Int> {
    let n = z.dims()[0];
    let chunk = (DISTANCE_BUDGET / n.max(1)).max(1);
    nearest_chunked(z, e, chunk).reshape([n])
}

/// [`nearest`] scanning the codebook `chunk` codewords at a time; `[N, 1]`.
pub fn nearest_chunked(z: Tensor<2>, e: Tensor<2>, chunk: usize) -> Tensor<2, Int> {
    let [k, d] = e.dims();
    if k <= chunk {
        return squared_distances(z, e).argmin(1);
    }
    let mut best: Option<(Tensor<2>, Tensor<2, Int>)> = None;
    for start in (0..k).step_by(chunk.max(1)) {
        let end = (start + chunk).min(k);
        let dist = squared_distances(z.clone(), e.clone().slice([start..end, 0..d]));
        let (dmin, imin) = dist.min_dim_with_indices(1);
        let imin = imin.add_scalar(start as i64);
        best = Some(match best {
            None => (dmin, imin),
            Some((bd, bi)) => {
                let better = dmin.clone().lower(bd.clone());
                (
                    bd.mask_where(better.clone(), dmin),
                    bi.mask_where(better, imin),
                )
            }
        });
    }
    best.expect("k > chunk >= 1").1
}

/// Nearest-codeword quantization of `z_e` (`[N, D]`) with codebook `e` (`[K, D]`): z_q, the
/// straight-through z_e + sg(z_q - z_e), and both terms of eq. 24 (unweighted). `resident`:
/// the search as tensor operations on the device ([`Context::resident`]).
pub fn quantize(z_e: Tensor<2>, e: Tensor<2>, resident: bool) -> QuantizerOutput {
    quantize_with(Estimator::StraightThrough, z_e, e, resident)
}

/// [`quantize`] with the decoder's input made by `estimator` ([`super::rotation`]).
pub fn quantize_with(
    estimator: Estimator,
    z_e: Tensor<2>,
    e: Tensor<2>,
    resident: bool,
) -> QuantizerOutput {
    let (z, cb) = (z_e.clone().detach(), e.clone().detach());
    let indices = if resident {
        nearest_resident(z, cb)
    } else {
        nearest(z, cb)
    };
    let z_q = e.select(0, indices.clone());
    QuantizerOutput::with_estimator(estimator, z_e, z_q, indices)
}

/// The VQ-VAE quantizer: codebook by gradient of ||sg(z_e) - z_q||^2.
#[derive(Debug)]
pub struct Vq {
    beta: f64,
    estimator: Estimator,
    space: CodeSpace,
}

impl Registered for Vq {
    const CODEBOOK_BY_GRADIENT: bool = true;

    fn new(cfg: &QuantizerConfig) -> Self {
        Self {
            beta: cfg.beta,
            estimator: cfg.estimator(),
            space: cfg.code_space(),
        }
    }
}

impl super::Quantizer for Vq {
    fn kind(&self) -> QuantizerKind {
        QuantizerKind::Vq
    }

    fn code_space(&self) -> CodeSpace {
        self.space
    }

    fn forward(&self, z_e: Tensor<2>, params: &QuantizerParams, ctx: Context) -> QuantizerOutput {
        quantize_with(self.estimator, z_e, params.codebook(), ctx.resident)
    }

    /// ||sg(z_e) - z_q||^2 + beta ||z_e - sg(z_q)||^2 (eq. 24).
    fn loss(&self, out: &QuantizerOutput) -> Tensor<1> {
        out.codebook_loss.clone() + out.commitment_loss.clone().mul_scalar(self.beta)
    }
}
