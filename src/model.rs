//! Encoder and decoder of van den Oord et al. (2017), and the VQ-VAE that joins them through a
//! codebook.
//!
//! Encoder: conv 4x4 stride 2 -> ReLU -> conv 4x4 stride 2 -> 2 residual blocks -> ReLU ->
//! conv 1x1 to D channels: z_e(x) on a grid of (H/4)x(W/4) (7x7 for 28x28, 8x8 for 32x32).
//! Residual block: x + conv1x1(ReLU(conv3x3(ReLU(x)))).
//! Decoder: conv 3x3 from D -> 2 residual blocks -> ReLU -> transposed conv 4x4 stride 2 -> ReLU
//! -> transposed conv 4x4 stride 2 to the image's channels (linear output; pixels in [0, 1]).
//!
//! On the CPU (`flex`) the layers run channels-last through [`crate::kernels::conv`]'s whole-batch GEMM
//! convolutions, each ReLU inside the op of the convolution that reads it; the public `forward`s
//! still take and return `[B, C, H, W]`.
//!
//! [`VqVae::forward`] is the whole pass: encoder -> quantizer -> decoder.
//!
//! Checkpoint tensor names are the parameters' module paths (PyTorch layouts: conv
//! `[out, in, kh, kw]`, transposed conv `[in, out, kh, kw]`; the quantizer's as
//! [`crate::quantizer::params`] lists them), with the prior renamed ([`RENAMED`]); export and
//! import walk the same module tree.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::InputError;
use crate::kernels::conv::{nhwc_conv_transpose2d, nhwc_conv2d, on_flex};
use crate::quantizer::config::QuantizerConfig;
use crate::quantizer::params::{ParamShapes, QuantizerParams};
use crate::quantizer::{Context, Quantizer, QuantizerOutput};

/// `[B, C, H, W]` <-> `[B, H, W, C]`.
fn to_nhwc(x: Tensor<4>) -> Tensor<4> {
    x.permute([0, 2, 3, 1])
}

fn to_nchw(x: Tensor<4>) -> Tensor<4> {
    x.permute([0, 3, 1, 2])
}

/// `c` applied to `x` (to `relu(x)` when `relu_x`), channels-last when `nhwc` (through
/// [`nhwc_conv2d`], which applies the ReLU itself), else `[B, C, H, W]`.
fn conv(c: &Conv2d, x: Tensor<4>, nhwc: bool, relu_x: bool) -> Tensor<4> {
    if !nhwc {
        return c.forward(if relu_x { relu(x) } else { x });
    }
    let pad = match c.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(t, l, b, r) if t == b && l == r => Some([t, l]),
        _ => None,
    };
    match pad {
        Some(pad) if c.dilation == [1, 1] && c.groups == 1 => nhwc_conv2d(
            x,
            c.weight.val(),
            c.bias.as_ref().map(|b| b.val()),
            c.stride,
            pad,
            relu_x,
        ),
        // Geometry the channels-last kernels do not cover: burn's convolution.
        _ => to_nhwc(c.forward(to_nchw(if relu_x { relu(x) } else { x }))),
    }
}

/// `c` applied to `x` (to `relu(x)` when `relu_x`), channels-last when `nhwc` (through
/// [`nhwc_conv_transpose2d`]).
fn deconv(c: &ConvTranspose2d, x: Tensor<4>, nhwc: bool, relu_x: bool) -> Tensor<4> {
    let x_in = |x: Tensor<4>| if relu_x { relu(x) } else { x };
    if !nhwc {
        return c.forward(x_in(x));
    }
    if c.dilation != [1, 1] || c.groups != 1 || c.padding_out != [0, 0] {
        return to_nhwc(c.forward(to_nchw(x_in(x))));
    }
    nhwc_conv_transpose2d(
        x,
        c.weight.val(),
        c.bias.as_ref().map(|b| b.val()),
        c.stride,
        c.padding,
        relu_x,
    )
}

#[derive(Module, Debug)]
pub struct ResBlock {
    pub conv3x3: Conv2d,
    pub conv1x1: Conv2d,
}

impl ResBlock {
    pub fn new(ch: usize, device: &Device) -> Self {
        Self {
            conv3x3: Conv2dConfig::new([ch, ch], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            conv1x1: Conv2dConfig::new([ch, ch], [1, 1]).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.run(x, false)
    }

    /// [`Self::forward`] on `[B, H, W, C]` when `nhwc`.
    fn run(&self, x: Tensor<4>, nhwc: bool) -> Tensor<4> {
        let h = conv(&self.conv3x3, x.clone(), nhwc, true);
        x + conv(&self.conv1x1, h, nhwc, true)
    }
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub res1: ResBlock,
    pub res2: ResBlock,
    pub pre_vq: Conv2d,
}

impl Encoder {
    pub fn new(in_ch: usize, hidden: usize, d: usize, device: &Device) -> Self {
        let down = |i, o| {
            Conv2dConfig::new([i, o], [4, 4])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: down(in_ch, hidden),
            conv2: down(hidden, hidden),
            res1: ResBlock::new(hidden, device),
            res2: ResBlock::new(hidden, device),
            pre_vq: Conv2dConfig::new([hidden, d], [1, 1]).init(device),
        }
    }

    /// `[B, C, H, W]` -> z_e `[B, D, H/4, W/4]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let nhwc = on_flex(&x.device());
        self.forward_layout(x, nhwc)
    }

    /// [`Self::forward`], through the channels-last kernels when `nhwc` (flex only).
    pub(crate) fn forward_layout(&self, x: Tensor<4>, nhwc: bool) -> Tensor<4> {
        let x = if nhwc { to_nhwc(x) } else { x };
        let h = conv(&self.conv1, x, nhwc, false);
        let h = conv(&self.conv2, h, nhwc, true);
        let h = self.res2.run(self.res1.run(h, nhwc), nhwc);
        let z = conv(&self.pre_vq, h, nhwc, true);
        if nhwc { to_nchw(z) } else { z }
    }
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub res1: ResBlock,
    pub res2: ResBlock,
    pub deconv1: ConvTranspose2d,
    pub deconv2: ConvTranspose2d,
}

impl Decoder {
    pub fn new(out_ch: usize, hidden: usize, d: usize, device: &Device) -> Self {
        let up = |i, o| {
            ConvTranspose2dConfig::new([i, o], [4, 4])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .init(device)
        };
        Self {
            conv_in: Conv2dConfig::new([d, hidden], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            res1: ResBlock::new(hidden, device),
            res2: ResBlock::new(hidden, device),
            deconv1: up(hidden, hidden),
            deconv2: up(hidden, out_ch),
        }
    }

    /// z_q `[B, D, h, w]` -> reconstruction `[B, C, 4h, 4w]`.
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let nhwc = on_flex(&z.device());
        self.forward_layout(z, nhwc)
    }

    /// [`Self::forward`], through the channels-last kernels when `nhwc` (flex only).
    pub(crate) fn forward_layout(&self, z: Tensor<4>, nhwc: bool) -> Tensor<4> {
        let z = if nhwc { to_nhwc(z) } else { z };
        let h = conv(&self.conv_in, z, nhwc, false);
        let h = self.res2.run(self.res1.run(h, nhwc), nhwc);
        let h = deconv(&self.deconv1, h, nhwc, true);
        let x = deconv(&self.deconv2, h, nhwc, true);
        if nhwc { to_nchw(x) } else { x }
    }
}

/// Encoder, the quantizer's parameters (its codebook, when it has one:
/// [`crate::quantizer::params`]), decoder, and the logits of the prior r(z) over a stage's codes
/// (`[S*K]`, stage-major; all zero, and frozen, for the uniform prior).
#[derive(Module, Debug)]
pub struct VqVae {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub quantizer: QuantizerParams,
    pub prior_logits: Param<Tensor<1>>,
}

/// A tensor as stored in a checkpoint: name, PyTorch shape, f32 values (row-major).
pub type NamedTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Checkpoint names that differ from the module path of their parameter; every other tensor is
/// named by its path (`encoder.conv1.weight`, ...). This and the module structure are the one
/// list of checkpoint names, used by both [`VqVae::export`] and [`VqVae::import`].
const RENAMED: &[(&str, &str)] = &[("prior_logits", "prior.logits")];

/// The checkpoint name of the parameter at module path `path`.
fn checkpoint_name(path: &[String]) -> String {
    let p = path.join(".");
    RENAMED
        .iter()
        .find(|(from, _)| *from == p)
        .map_or(p, |(_, to)| to.to_string())
}

/// Collects every float parameter under its checkpoint name.
struct Exporter {
    path: Vec<String>,
    out: NamedTensors,
}

impl ModuleVisitor for Exporter {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let t = p.val();
        let dims = t.dims().to_vec();
        let values = crate::device::host_f32(t);
        self.out.insert(checkpoint_name(&self.path), (dims, values));
    }
}

/// Replaces every float parameter by the tensor of its checkpoint name (same shape, same id,
/// same `require_grad`); the first problem is kept.
struct Importer<'a> {
    path: Vec<String>,
    src: &'a NamedTensors,
    device: &'a Device,
    origin: &'a std::path::Path,
    error: Option<InputError>,
}

impl Importer<'_> {
    fn value<const D: usize>(
        &self,
        name: &str,
        want: [usize; D],
    ) -> Result<TensorData, InputError> {
        let (shape, vals) = self.src.get(name).ok_or_else(|| {
            InputError::file(self.origin, format!("checkpoint lacks tensor `{name}`"))
        })?;
        if shape[..] != want[..] {
            return Err(InputError::file(
                self.origin,
                format!(
                    "tensor `{name}` has shape {shape:?}, the model expects {want:?} (does the run config match?)"
                ),
            ));
        }
        Ok(TensorData::new(vals.clone(), want))
    }
}

impl ModuleMapper for Importer<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return p;
        }
        let name = checkpoint_name(&self.path);
        let (id, t, _) = p.consume();
        let require_grad = t.is_require_grad();
        match self.value(&name, t.dims()) {
            Ok(data) => {
                let t = Tensor::<D>::from_data(data, self.device);
                Param::initialized(id, if require_grad { t.require_grad() } else { t })
            }
            Err(e) => {
                self.error = Some(e);
                Param::initialized(id, t)
            }
        }
    }
}

/// What [`VqVae::forward`] returns.
pub struct ModelOutput {
    /// The reconstruction `[B, C, H, W]`.
    pub x_hat: Tensor<4>,
    /// z_e as one row per latent position, `[B*h*w, D]`.
    pub z_e: Tensor<2>,
    /// The quantizer's structured output.
    pub q: QuantizerOutput,
}

/// burn's random generator is shared by every user of a device in the process: seeding it and
/// drawing a model's initial weights happen under this lock, so that two models made from one
/// seed are the same even when other threads make models at the same time.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl VqVae {
    /// A model for images with `channels` channels, `hidden` conv channels, and one codebook of
    /// K codewords of dimension D (vq's parameters) starting uniform in [-1/K, 1/K].
    pub fn new(channels: usize, hidden: usize, k: usize, d: usize, device: &Device) -> Self {
        let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
        let shapes = ParamShapes {
            codebook: Some([k, d]),
            precision: false,
        };
        Self::draw(channels, hidden, shapes, [k, 1, d], device)
    }

    /// A model for the quantizer `q` configures, its weights drawn from `device`'s generator
    /// seeded with `seed` (reproducible).
    pub fn seeded(
        channels: usize,
        hidden: usize,
        q: &QuantizerConfig,
        device: &Device,
        seed: u64,
    ) -> Self {
        let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(seed);
        let size = [q.codebook_size(), q.stages(), q.code_dim()];
        Self::draw(channels, hidden, ParamShapes::of(q), size, device)
    }

    /// Draws the quantizer's parameters first (the order of earlier versions, whose first draw
    /// was the codebook), then encoder and decoder. `[k, s, d]`: codes a stage, stages, D.
    fn draw(
        channels: usize,
        hidden: usize,
        shapes: ParamShapes,
        [k, s, d]: [usize; 3],
        device: &Device,
    ) -> Self {
        let quantizer = QuantizerParams::init(shapes, s, device);
        let model = Self {
            encoder: Encoder::new(channels, hidden, d, device),
            decoder: Decoder::new(channels, hidden, d, device),
            quantizer,
            prior_logits: Param::from_tensor(Tensor::zeros([k * s], device)),
        };
        model.with_stable_ids()
    }

    /// Gives every parameter an id from its position (0, 1, 2, ...), so that optimizer state
    /// saved by one process finds its parameters in another.
    pub fn with_stable_ids(self) -> Self {
        self.map(&mut StableIds::default())
    }

    /// encoder -> quantizer -> decoder: x `[B, C, H, W]` to z_e, the quantizer's output and the
    /// reconstruction dec(z_e + sg(z_q - z_e)).
    pub fn forward(&self, x: Tensor<4>, quantizer: &dyn Quantizer, ctx: Context) -> ModelOutput {
        let z = self.encoder.forward(x);
        let [b, _, h, w] = z.dims();
        let z_e = to_vectors(z);
        let q = quantizer.forward(z_e.clone(), &self.quantizer, ctx);
        let x_hat = self.decoder.forward(from_vectors(q.z_st.clone(), b, h, w));
        ModelOutput { x_hat, z_e, q }
    }

    /// log r(z) = log softmax(logits), `[K]`; with `stages` S > 1 one prior a stage, each
    /// normalised over its K entries (`[S*K]`, stage-major).
    pub fn log_prior(&self, stages: usize) -> Tensor<1> {
        let logits = self.prior_logits.val();
        let n = logits.dims()[0];
        let s = stages.max(1);
        let per_stage = logits.reshape([s, n / s]);
        burn::tensor::activation::log_softmax(per_stage, 1).reshape([n])
    }

    /// Codes the prior r(z) covers: K, or S*K for residual stages (one prior a stage).
    pub fn k(&self) -> usize {
        self.prior_logits.val().dims()[0]
    }

    /// D, the channels of z_e.
    pub fn d(&self) -> usize {
        self.encoder.pre_vq.weight.val().dims()[0]
    }

    /// All weights under their checkpoint names, in PyTorch layouts.
    pub fn export(&self) -> NamedTensors {
        let mut e = Exporter {
            path: Vec::new(),
            out: NamedTensors::new(),
        };
        self.visit(&mut e);
        e.out
    }

    /// Loads every weight from `src` (names and shapes as [`export`](Self::export) writes them);
    /// `origin` names the file in errors.
    pub fn import(
        &mut self,
        src: &NamedTensors,
        device: &Device,
        origin: &std::path::Path,
    ) -> Result<(), InputError> {
        let mut im = Importer {
            path: Vec::new(),
            src,
            device,
            origin,
            error: None,
        };
        *self = self.clone().map(&mut im);
        im.error.map_or(Ok(()), Err)
    }

    /// Replaces the codebook's value (same parameter id, so optimizer state follows it).
    pub fn set_codebook(&mut self, values: Vec<f32>, device: &Device) {
        self.quantizer.set_codebook(values, device);
    }

    /// Replaces the codebook's value by a tensor computed on its device (no host round trip).
    pub fn set_codebook_tensor(&mut self, t: Tensor<2>) {
        self.quantizer.set_codebook_tensor(t);
    }

    /// The code map of a batch: the quantizer's hard code of every latent vector (seed eq. 27;
    /// for soft EM the most probable code of p(z|i) = softmax(-||z_e - e_z||^2 / tau)), S codes a
    /// position for residual stages, batch-major (image, row, column, stage), and the grid
    /// `[h, w]` of one image.
    pub fn codes(&self, x: Tensor<4>, q: &dyn Quantizer) -> (Vec<u32>, [usize; 2]) {
        let (zv, grid) = self.latents(x);
        (q.codes(&zv, &self.quantizer), grid)
    }

    /// The latent vectors z_e of a batch on the host, `[B*h*w, D]` batch-major (image, row,
    /// column), and the grid `[h, w]` of one image.
    pub fn latents(&self, x: Tensor<4>) -> (Vec<f32>, [usize; 2]) {
        let z = self.encoder.forward(x);
        let [_, _, h, w] = z.dims();
        (crate::quantizer::host_f32(to_vectors(z)), [h, w])
    }

    /// The hard decode: the decoder on the codewords of `codes`, laid out as `b` grids of
    /// `[h, w]` (the inverse layout of [`Self::codes`]).
    pub fn decode_codes(
        &self,
        codes: &[u32],
        q: &dyn Quantizer,
        b: usize,
        [h, w]: [usize; 2],
    ) -> Tensor<4> {
        let v = q.codewords(codes, &self.quantizer);
        let rows = b * h * w;
        let device = self.prior_logits.device();
        let t = Tensor::from_data(TensorData::new(v, [rows, self.d()]), &device);
        self.decoder.forward(from_vectors(t, b, h, w))
    }

    /// Codebook values, `[rows*D]` row-major (empty for an implicit grid).
    pub fn codebook_values(&self) -> Vec<f32> {
        self.quantizer.codebook_values()
    }
}

/// Renumbers a module's parameters 1, 2, 3, ... in visiting order ([`VqVae::with_stable_ids`]).
#[derive(Default)]
pub(crate) struct StableIds(u64);

impl ModuleMapper for StableIds {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, t, mapper) = p.consume();
        self.0 += 1;
        Param::from_mapped_value(ParamId::from(self.0), t, mapper)
    }
}

/// `[B, D, h, w]` -> `[B*h*w, D]` (one row per latent position, batch-major).
pub fn to_vectors(z: Tensor<4>) -> Tensor<2> {
    let [b, d, h, w] = z.dims();
    z.permute([0, 2, 3, 1]).reshape([b * h * w, d])
}

/// `[B*h*w, D]` -> `[B, D, h, w]`, the inverse of [`to_vectors`].
pub fn from_vectors(v: Tensor<2>, b: usize, h: usize, w: usize) -> Tensor<4> {
    let d = v.dims()[1];
    v.reshape([b, h, w, d]).permute([0, 3, 1, 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_28_and_32() {
        let dev = Device::flex();
        let m = VqVae::new(1, 8, 16, 4, &dev);
        let z = m.encoder.forward(Tensor::zeros([2, 1, 28, 28], &dev));
        assert_eq!(z.dims(), [2, 4, 7, 7]);
        assert_eq!(m.decoder.forward(z).dims(), [2, 1, 28, 28]);
        let m = VqVae::new(3, 8, 16, 4, &dev);
        let z = m.encoder.forward(Tensor::zeros([2, 3, 32, 32], &dev));
        assert_eq!(z.dims(), [2, 4, 8, 8]);
        assert_eq!(m.decoder.forward(z).dims(), [2, 3, 32, 32]);
    }

    /// The channels-last path (conv's kernels) and burn's convolutions give the same
    /// reconstruction and the same gradient for every parameter.
    #[test]
    fn channels_last_path_matches_burn_convolutions() {
        let dev = Device::flex().autodiff();
        for (c, hw) in [(1usize, 28usize), (3, 32)] {
            let m = VqVae::new(c, 8, 16, 4, &dev);
            let x = Tensor::<4>::random([3, c, hw, hw], Distribution::Default, &dev);
            let run = |nhwc: bool| {
                let z = m.encoder.forward_layout(x.clone(), nhwc);
                let y = m.decoder.forward_layout(z, nhwc);
                let loss = (y.clone() - x.clone()).powf_scalar(2.0).mean();
                (y, loss.backward())
            };
            let ((ya, ga), (yb, gb)) = (run(true), run(false));
            let d: f32 = (ya - yb).abs().max().into_scalar();
            assert!(d < 1e-5, "reconstructions differ by {d}");
            let pa = burn::optim::GradientsParams::from_grads(ga, &m);
            let pb = burn::optim::GradientsParams::from_grads(gb, &m);
            let mut n = 0;
            for (name, p) in [
                ("conv1", &m.encoder.conv1.weight),
                ("conv2", &m.encoder.conv2.weight),
                ("res", &m.encoder.res1.conv3x3.weight),
                ("pre_vq", &m.encoder.pre_vq.weight),
                ("conv_in", &m.decoder.conv_in.weight),
                ("deconv1", &m.decoder.deconv1.weight),
                ("deconv2", &m.decoder.deconv2.weight),
            ] {
                let a = pa.get::<4>(p.id).expect("a gradient");
                let b = pb.get::<4>(p.id).expect("a gradient");
                let scale: f32 = b.clone().abs().max().into_scalar();
                let d: f32 = (a - b).abs().max().into_scalar();
                assert!(
                    d <= 1e-4 * scale.max(1e-3),
                    "{name}: gradients differ by {d}"
                );
                n += 1;
            }
            let b = &m.decoder.deconv2.bias.as_ref().unwrap();
            let (a, bb) = (pa.get::<1>(b.id).unwrap(), pb.get::<1>(b.id).unwrap());
            let d: f32 = (a - bb).abs().max().into_scalar();
            assert!(d < 1e-5, "deconv2 bias gradients differ by {d}");
            assert_eq!(n, 7);
        }
    }

    #[test]
    fn export_names_and_pytorch_layouts() {
        let m = VqVae::new(3, 8, 16, 4, &Device::flex());
        let t = m.export();
        assert_eq!(t["encoder.conv1.weight"].0, vec![8, 3, 4, 4]); // [out, in, kh, kw]
        assert_eq!(t["decoder.deconv2.weight"].0, vec![8, 3, 4, 4]); // [in, out, kh, kw]
        assert_eq!(t["decoder.deconv2.bias"].0, vec![3]);
        assert_eq!(t["decoder.conv_in.weight"].0, vec![8, 4, 3, 3]);
        assert_eq!(t["quantizer.codebook"].0, vec![16, 4]);
        assert_eq!(t["prior.logits"].0, vec![16]);
        assert_eq!(t.len(), 2 * 14 + 2);
    }

    #[test]
    fn vector_layout_roundtrip() {
        let dev = Device::flex();
        let z = Tensor::<4>::random([2, 3, 4, 5], Distribution::Default, &dev);
        let v = to_vectors(z.clone());
        // Row (b=1, y=2, x=3) holds z[1, :, 2, 3].
        let row = v
            .clone()
            .slice([1 * 20 + 2 * 5 + 3..1 * 20 + 2 * 5 + 4, 0..3])
            .reshape([3]);
        let col = z.clone().slice([1..2, 0..3, 2..3, 3..4]).reshape([3]);
        assert_eq!(row.to_data(), col.to_data());
        assert_eq!(from_vectors(v, 2, 4, 5).to_data(), z.to_data());
    }
}
