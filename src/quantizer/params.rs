//! The quantizer's parameters, a burn module the quantizer family owns ([`QuantizerParams`]):
//! what a quantizer learns besides the encoder and the decoder. Which tensors exist follows from
//! the configuration ([`ParamShapes::of`]):
//!
//! | quantizer | `quantizer.codebook` | `quantizer.precision` |
//! |---|---|---|
//! | vq, vq-ema, soft-em | `[K, D]` | - |
//! | rvq | `[S*K, D]`, stage s in rows sK..(s+1)K | - |
//! | sq | `[K, D]` | `[1]`, theta: 1/sigma^2 = 1 + exp(theta) |
//! | fsq, lfq | - (an implicit grid) | - |
//!
//! The checkpoint names are the module paths (`quantizer.codebook`, `quantizer.precision`);
//! the residual stages' codebooks are one tensor, stage-major, as `[S*K, D]`.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::QuantizerKind;
use super::config::QuantizerConfig;

/// The shapes of a quantizer's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamShapes {
    /// `[rows, D]` of the codebook (S*K rows for rvq), when there is one.
    pub codebook: Option<[usize; 2]>,
    /// Whether there is a learned log-variance (sq).
    pub precision: bool,
}

impl ParamShapes {
    /// The shapes a (resolved or default) configuration gives.
    pub fn of(cfg: &QuantizerConfig) -> Self {
        Self {
            codebook: cfg
                .has_codebook()
                .then(|| [cfg.codebook_size() * cfg.stages(), cfg.code_dim()]),
            precision: cfg.kind == QuantizerKind::Sq,
        }
    }
}

/// sq's theta at the start: ln 20, a precision of 21 (SQ-VAE's `log_param_q_init`).
pub const SQ_THETA_START: f64 = 2.995_732_273_553_991;

/// A quantizer's learned parameters.
#[derive(Module, Debug)]
pub struct QuantizerParams {
    /// The codewords e (module docs), when the quantizer has a codebook.
    pub codebook: Option<Param<Tensor<2>>>,
    /// theta of a stochastic quantizer's posterior (sq), `[1]`: its precision 1/sigma^2 = 1 +
    /// exp(theta) (SQ-VAE's parametrisation: sigma^2 at most 1).
    pub precision: Option<Param<Tensor<1>>>,
}

impl QuantizerParams {
    /// Fresh parameters: the codebook uniform in [-1/K, 1/K] (K = rows per stage), theta = ln 20
    /// (sigma^2 = 1/21, SQ-VAE's start). Draws from `device`'s generator (the caller seeds it).
    pub fn init(shapes: ParamShapes, stages: usize, device: &Device) -> Self {
        let codebook = shapes.codebook.map(|[rows, d]| {
            let lim = 1.0 / (rows / stages.max(1)).max(1) as f64;
            Param::from_tensor(Tensor::<2>::random(
                [rows, d],
                Distribution::Uniform(-lim, lim),
                device,
            ))
        });
        let precision = shapes.precision.then(|| {
            Param::from_tensor(Tensor::<1>::from_data(
                TensorData::new(vec![SQ_THETA_START as f32], [1]),
                device,
            ))
        });
        Self {
            codebook,
            precision,
        }
    }

    /// The codebook `[rows, D]`. Panics for an implicit grid (fsq, lfq): only the quantizers
    /// that have one call it.
    pub fn codebook(&self) -> Tensor<2> {
        self.codebook
            .as_ref()
            .expect("this quantizer has a codebook")
            .val()
    }

    /// The codebook's values on the host, `[rows*D]` (empty without one).
    pub fn codebook_values(&self) -> Vec<f32> {
        self.codebook
            .as_ref()
            .map_or_else(Vec::new, |c| crate::device::host_f32(c.val()))
    }

    /// Sets whether the codebook learns by gradient.
    pub fn with_codebook_grad(mut self, by_gradient: bool) -> Self {
        self.codebook = self.codebook.map(|c| c.set_require_grad(by_gradient));
        self
    }

    /// Replaces the codebook's value (same parameter id, so optimizer state follows it).
    pub fn set_codebook(&mut self, values: Vec<f32>, device: &Device) {
        if let Some(c) = &self.codebook {
            let dims = c.val().dims();
            let t = Tensor::<2>::from_data(TensorData::new(values, dims), device);
            self.set_codebook_tensor(t);
        }
    }

    /// Sets sq's theta (same parameter id).
    pub fn set_precision(&mut self, theta: f32, device: &Device) {
        if let Some(p) = self.precision.take() {
            let t = Tensor::<1>::from_data(TensorData::new(vec![theta], [1]), device);
            let t = if p.val().is_require_grad() {
                t.require_grad()
            } else {
                t
            };
            self.precision = Some(Param::initialized(p.id, t));
        }
    }

    /// Replaces the codebook's value by a tensor computed on its device (no host round trip).
    pub fn set_codebook_tensor(&mut self, t: Tensor<2>) {
        if let Some(c) = self.codebook.take() {
            let require_grad = c.val().is_require_grad();
            let t = t.detach();
            let t = if require_grad { t.require_grad() } else { t };
            self.codebook = Some(Param::initialized(c.id, t));
        }
    }
}
