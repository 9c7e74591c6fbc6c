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
//!
//! The pieces: `im2col.rs` (the geometry, the weight layout, im2col and the row tiles),
//! `forward.rs` (the forward product, and the GEMM call all of them make through the checked
//! wrapper of `kernels/gemm.rs`), `backward.rs` (the input, weight and bias gradients); here, the
//! tensor ops and their backward pass.

mod backward;
mod direct;
mod forward;
mod im2col;
#[cfg(test)]
mod testutil;

pub use backward::{backward_weight, bias_grad, input_grad};
pub use direct::{forward_family, microkernel_in_l1};
pub use forward::forward;
pub use im2col::{ConvGeom, weight_from_matrix, weight_matrix};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Backend, Flex, backend_extension, tensor::FloatTensor};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Custom tensor ops, routed by burn's dispatch to the `flex` backend, with or without autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait ConvBackend: Backend {
    /// `transposed == false`: the convolution of `x` `[b, h, w, c]` with `w` `[oc, c, kh, kw]`
    /// plus `bias` `[oc]`, giving `[b, oh, ow, oc]`. `transposed == true`: its adjoint, from `x`
    /// `[b, oh, ow, oc]` to `[b, h, w, c]`, with the same `w` (PyTorch's transposed-conv layout
    /// `[in, out, kh, kw]`), plus `bias` `[c]`. With `relu_input`, the op applies to `relu(x)`
    /// instead of `x` (NaN kept, as burn's `relu`), and its input gradient is masked by relu's.
    fn vqib_conv_nhwc(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geom: ConvGeom,
        transposed: bool,
        relu_input: bool,
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

/// Whether ReLU passes `v` (and its gradient) on: `v > 0` or NaN, as burn's `relu`, which
/// PyTorch's NaN propagation follows.
fn relu_passes(v: f32) -> bool {
    v.is_nan() || v > 0.0
}

/// `relu(x)` of a tensor, on rayon's workers: `x` where [`relu_passes`], else 0. burn-flex's own
/// `relu` and its backward run on one thread, which left the other core idle for about a
/// twentieth of a training step; here they are part of the convolution that reads them.
fn relu_dense(x: &FloatTensor<Flex>) -> FloatTensor<Flex> {
    let x = dense(x);
    let out: Vec<f32> = elems(&x)
        .par_iter()
        .with_min_len(1 << 14)
        .map(|&v| if relu_passes(v) { v } else { 0.0 })
        .collect();
    burn::backend::flex::FlexTensor::from_data(TensorData::new(out, x.layout().shape().clone()))
}

/// relu's backward in place: `dx` kept where `relu(x)` (`xr`) [`relu_passes`], else 0.
fn relu_mask(dx: &mut [f32], xr: &[f32]) {
    dx.par_chunks_mut(1 << 14)
        .zip(xr.par_chunks(1 << 14))
        .for_each(|(d, x)| {
            for (d, &v) in d.iter_mut().zip(x) {
                if !relu_passes(v) {
                    *d = 0.0;
                }
            }
        });
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
        relu_input: bool,
    ) -> FloatTensor<Self> {
        let x = if relu_input { relu_dense(&x) } else { x };
        flex_conv(&x, &w, &bias, &geom, transposed)
    }
}

/// The backward pass of [`ConvBackend::vqib_conv_nhwc`]: the input gradient of a convolution is
/// its adjoint (and the other way round), the weight gradient `im2col(x)ᵀ · dy`, the bias gradient
/// the column sums of `dy`; with `relu_input`, the input gradient masked by relu's.
#[derive(Debug)]
struct ConvNhwcBackward;

impl Backward<Flex, 3> for ConvNhwcBackward {
    /// Contiguous x (`relu(x)` with `relu_input`), the weight, the geometry, transposed,
    /// relu_input.
    type State = (FloatTensor<Flex>, FloatTensor<Flex>, ConvGeom, bool, bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, w, g, tr, relu_input) = ops.state;
        let grad = dense(&grad);
        let dy = elems(&grad);
        if let Some(node) = node_x {
            let w = dense(&w);
            let (mut dx, shape) = if tr {
                let wm = weight_matrix(&g, elems(&w));
                (forward(&g, dy, &wm, None), [g.b, g.oh(), g.ow(), g.oc])
            } else {
                (input_grad(&g, dy, elems(&w), None), [g.b, g.h, g.w, g.c])
            };
            if relu_input {
                relu_mask(&mut dx, elems(&x));
            }
            grads.register::<Flex>(node.id, flex_tensor(dx, shape));
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
        relu_input: bool,
    ) -> FloatTensor<Self> {
        let xd = dense(x.primitive());
        let xd = if relu_input { relu_dense(&xd) } else { xd };
        let out = flex_conv(&xd, w.primitive(), bias.primitive(), &geom, transposed);
        match ConvNhwcBackward
            .prepare::<C>([x.node(), w.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            // The state keeps x (or relu(x)) contiguous, so that the backward pass reads it
            // without a copy.
            OpsKind::Tracked(prep) => {
                prep.finish((xd, w.into_primitive(), geom, transposed, relu_input), out)
            }
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
/// [`on_flex`]). With `relu_input`, the convolution of `relu(x)` (one op: the ReLU and its
/// backward run on rayon's workers).
pub fn nhwc_conv2d(
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
    relu_input: bool,
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
        relu_input,
    );
    Tensor::from_dispatch(out)
}

/// Transposed convolution of channels-last `x` `[b, h, w, cin]` with `w` `[cin, cout, kh, kw]`
/// (PyTorch's layout) plus `bias` `[cout]` (zero when `None`), stride and padding as PyTorch's
/// `ConvTranspose2d` (no output padding): `[b, (h−1)·sh − 2ph + kh, (w−1)·sw − 2pw + kw, cout]`.
/// Differentiable in `x`, `w` and `bias`. With `relu_input`, of `relu(x)`, as [`nhwc_conv2d`].
pub fn nhwc_conv_transpose2d(
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
    relu_input: bool,
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
        relu_input,
    );
    Tensor::from_dispatch(out)
}
#[cfg(test)]
mod tests {
    use super::testutil::{geoms, randv};
    use super::*;
    use burn::tensor::module::{conv_transpose2d, conv2d};
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
    use burn::tensor::{Device, Distribution};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn tensor(v: Vec<f32>, shape: [usize; 4], dev: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(v, shape), dev)
    }

    /// Whether `a` is within `tol · (1 + max |b|)` of `b` everywhere: sums of thousands of
    /// products (512 channels x 9 taps) round at about 1e-6 of their size.
    fn close(a: Tensor<4>, b: Tensor<4>, tol: f32) -> bool {
        let scale = 1.0 + b.clone().abs().max().into_scalar::<f32>();
        let d = (a - b).abs().max().into_scalar::<f32>();
        if d > tol * scale {
            eprintln!("max difference {d}, scale {scale}");
        }
        d <= tol * scale
    }

    fn bias(n: usize, rng: &mut StdRng, dev: &Device) -> Tensor<1> {
        Tensor::<1>::from_data(TensorData::new(randv(n, rng), [n]), dev).require_grad()
    }

    fn max_diff1(a: Tensor<1>, b: Tensor<1>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// `relu(x)` when `relu_input`, by burn's own ReLU (the reference for the fused one).
    fn input(x: &Tensor<4>, relu_input: bool) -> Tensor<4> {
        if relu_input {
            burn::tensor::activation::relu(x.clone())
        } else {
            x.clone()
        }
    }

    /// The differentiable op against burn's own conv2d and its autodiff, values and gradients,
    /// with and without the ReLU on its input (whose gradient must be masked).
    #[test]
    fn conv2d_op_matches_burn() {
        let dev = Device::flex().autodiff();
        let mut rng = StdRng::seed_from_u64(3);
        for (g, relu_input) in geoms().into_iter().flat_map(|g| [(g, false), (g, true)]) {
            let xs = randv(g.b * g.c * g.h * g.w, &mut rng);
            let ws = randv(g.oc * g.kkc(), &mut rng);
            let x = tensor(xs, [g.b, g.c, g.h, g.w], &dev).require_grad();
            let w = tensor(ws, [g.oc, g.c, g.kh, g.kw], &dev).require_grad();
            let b = bias(g.oc, &mut rng, &dev);
            let opts = ConvOptions::new([g.sh, g.sw], [g.ph, g.pw], [1, 1], 1);
            let want = conv2d(input(&x, relu_input), w.clone(), Some(b.clone()), opts);
            let dy = Tensor::<4>::random(want.dims(), Distribution::Default, &dev);
            let gw = (want.clone() * dy.clone()).sum().backward();
            let got = nhwc_conv2d(
                x.clone().permute([0, 2, 3, 1]),
                w.clone(),
                Some(b.clone()),
                [g.sh, g.sw],
                [g.ph, g.pw],
                relu_input,
            )
            .permute([0, 3, 1, 2]);
            assert!(close(got.clone(), want, 3e-5), "{g:?}");
            let gg = (got * dy).sum().backward();
            let (dx, dxw) = (x.grad(&gg).unwrap(), x.grad(&gw).unwrap());
            assert!(close(dx, dxw, 3e-5), "{g:?} relu {relu_input}: dx differs");
            let (dw, dww) = (w.grad(&gg).unwrap(), w.grad(&gw).unwrap());
            assert!(close(dw, dww, 3e-4), "{g:?} relu {relu_input}: dw differs");
            let d = max_diff1(b.grad(&gg).unwrap(), b.grad(&gw).unwrap());
            assert!(d < 1e-3, "{g:?} relu {relu_input}: dbias differs by {d}");
        }
    }

    /// The transposed op against burn's conv_transpose2d, values and gradients, with and without
    /// the ReLU on its input.
    #[test]
    fn conv_transpose2d_op_matches_burn() {
        let dev = Device::flex().autodiff();
        let mut rng = StdRng::seed_from_u64(4);
        for ((b, h, w, cin, cout, k, s, p), relu_input) in [
            (
                3usize, 7usize, 7usize, 16usize, 8usize, 4usize, 2usize, 1usize,
            ),
            (2, 5, 4, 6, 1, 4, 2, 1),
            (2, 6, 6, 5, 3, 3, 1, 1),
            // The input gradient is the convolution from 256 to 512 channels, 4.5 MiB of
            // weights: the direct kernel's on AVX-512F CPUs.
            (1, 3, 4, 512, 256, 3, 1, 1),
        ]
        .into_iter()
        .flat_map(|c| [(c, false), (c, true)])
        {
            let x = tensor(randv(b * cin * h * w, &mut rng), [b, cin, h, w], &dev).require_grad();
            let wt =
                tensor(randv(cin * cout * k * k, &mut rng), [cin, cout, k, k], &dev).require_grad();
            let bs = bias(cout, &mut rng, &dev);
            let opts = ConvTransposeOptions::new([s, s], [p, p], [0, 0], [1, 1], 1);
            let want = conv_transpose2d(input(&x, relu_input), wt.clone(), Some(bs.clone()), opts);
            let dy = Tensor::<4>::random(want.dims(), Distribution::Default, &dev);
            let gw = (want.clone() * dy.clone()).sum().backward();
            let x_nhwc = x.clone().permute([0, 2, 3, 1]);
            let got = nhwc_conv_transpose2d(
                x_nhwc,
                wt.clone(),
                Some(bs.clone()),
                [s, s],
                [p, p],
                relu_input,
            )
            .permute([0, 3, 1, 2]);
            assert_eq!(got.dims(), want.dims());
            assert!(close(got.clone(), want, 3e-5));
            let gg = (got * dy).sum().backward();
            assert!(close(x.grad(&gg).unwrap(), x.grad(&gw).unwrap(), 3e-5));
            assert!(close(wt.grad(&gg).unwrap(), wt.grad(&gw).unwrap(), 3e-4));
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
        let y = nhwc_conv2d(x.clone(), w.clone(), Some(b.clone()), [1, 1], [1, 1], false);
        // the centre sees all 9 positions x 2 channels, a corner 4 x 2; plus the bias
        let v = y.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v, vec![8.5, 12.5, 8.5, 12.5, 18.5, 12.5, 8.5, 12.5, 8.5]);
        // relu(-x) is 0 (and relu(NaN) NaN, as burn's): only the bias is left, or NaN.
        let y = nhwc_conv2d(-x.clone(), w.clone(), Some(b.clone()), [1, 1], [1, 1], true);
        assert_eq!(y.into_data().try_to_vec::<f32>().unwrap(), vec![0.5; 9]);
        let nan = Tensor::<4>::full([1, 3, 3, 2], f32::NAN, &dev);
        let y = nhwc_conv2d(nan, w, Some(b), [1, 1], [1, 1], true);
        assert!(y.into_data().iter::<f32>().all(f32::is_nan));
    }
}
