//! `cargo bench --features wgpu` (or without the feature): criterion benchmarks of the bottleneck
//! kernels, one training step of both architectures, and evaluation. For the side-by-side
//! comparison with PyTorch, with memory, see `bench/compare`.
//!
//! Groups: `assign/K` and `estep/K` (N = 8192 vectors, D = 64, K in {512, 8192, 65536}),
//! `quantizer/Q-K` (every quantizer's forward pass and update at a code space of K = 2^9, 2^16),
//! `conv/LAYER-PRODUCT` (the CPU convolution kernels on the models' large layers, batch 128:
//! forward, input gradient and weight gradient, and `conv/microkernel-l1`, the direct forward
//! kernel's register block on one thread with its operands in L1; the throughput is in flops,
//! so criterion's "elem/s" reads as flop/s), `train/MODEL-QUANTIZER` (batch 128), `eval/MODEL` (1024 images), `codec/*` (compress,
//! decompress and the entropy coder alone, 256 MNIST images), and, with the `wgpu` feature
//! and a usable adapter, `train-wgpu/mnist-vq`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use std::hint::black_box;
use std::time::Duration;
use vqib::assign::Codebook;
use vqib::bench::{self, CODE_DIM, ModelCase, N_VECTORS, SAMPLES};
use vqib::device::{DeviceKind, device};
use vqib::quantizer::QuantizerKind;

fn bottleneck(c: &mut Criterion) {
    let z = bench::normal(N_VECTORS * CODE_DIM, 1);
    for (name, is_assign) in [("assign", true), ("estep", false)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(N_VECTORS as u64));
        for k in [512usize, 8192, 65536] {
            let e = bench::normal(k * CODE_DIM, 2);
            let cb = Codebook::new(&e, CODE_DIM);
            if k == 65536 {
                g.sample_size(10).measurement_time(Duration::from_secs(15));
            } else {
                g.sample_size(20).measurement_time(Duration::from_secs(5));
            }
            g.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, _| {
                let mut seed = 0;
                b.iter(|| {
                    if is_assign {
                        black_box(bench::assign_case(&z, &cb));
                    } else {
                        seed += 1;
                        black_box(bench::estep_case(&z, &cb, SAMPLES, seed));
                    }
                })
            });
        }
        g.finish();
    }
}

/// Every quantizer's bottleneck (forward and update) at a code space of 2^9, and the hard ones at
/// 2^16: fsq and lfq search no codebook, the others N x K distances a stage.
fn quantizers(c: &mut Criterion) {
    let mut g = c.benchmark_group("quantizer");
    g.throughput(Throughput::Elements(N_VECTORS as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for k in [512usize, 65536] {
        for &q in QuantizerKind::ALL {
            // At 2^16: the hard quantizers (soft EM's and sq's posteriors are N x K each step).
            if k > 512 && matches!(q, QuantizerKind::SoftEm | QuantizerKind::Sq) {
                continue;
            }
            let mut t = bench::QuantizerBench::new(q, k);
            g.bench_function(format!("{q}-{k}"), |b| b.iter(|| black_box(t.run())));
        }
    }
    g.finish();
}

fn training(c: &mut Criterion) {
    let dev = device(DeviceKind::Cpu).unwrap().autodiff();
    let mut g = c.benchmark_group("train");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(128));
    for model in [ModelCase::Mnist, ModelCase::Cifar] {
        for &q in QuantizerKind::ALL {
            let mut t = bench::TrainBench::new(model, q, 128, &dev);
            let id = format!("{}-{q}", format!("{model:?}").to_lowercase());
            g.bench_function(id, |b| b.iter(|| black_box(t.step(true))));
        }
    }
    g.finish();
    #[cfg(feature = "wgpu")]
    if let Ok(wdev) = device(DeviceKind::Wgpu) {
        let mut g = c.benchmark_group("train-wgpu");
        g.sample_size(10).measurement_time(Duration::from_secs(20));
        g.throughput(Throughput::Elements(128));
        let mut t =
            bench::TrainBench::new(ModelCase::Mnist, QuantizerKind::Vq, 128, &wdev.autodiff());
        g.bench_function("mnist-vq", |b| b.iter(|| black_box(t.step(true))));
        g.finish();
    }
}

fn evaluation(c: &mut Criterion) {
    let dev = device(DeviceKind::Cpu).unwrap();
    let mut g = c.benchmark_group("eval");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for model in [ModelCase::Mnist, ModelCase::Cifar] {
        let t = bench::EvalBench::new(model, QuantizerKind::Vq, 1024, &dev);
        g.throughput(Throughput::Elements(t.images() as u64));
        g.bench_function(format!("{model:?}").to_lowercase(), |b| {
            b.iter(|| black_box(t.run()))
        });
    }
    g.finish();
}

/// `codec/compress-mnist`, `codec/decompress-mnist`, `codec/entropy-mnist` (256 images; the
/// last is the ANS coder alone, to show its share).
fn codec(c: &mut Criterion) {
    let dev = device(DeviceKind::Cpu).unwrap();
    let mut g = c.benchmark_group("codec");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(256));
    let t = bench::CodecBench::new(ModelCase::Mnist, 256, &dev);
    g.bench_function("compress-mnist", |b| b.iter(|| black_box(t.compress())));
    g.bench_function("decompress-mnist", |b| b.iter(|| black_box(t.decompress())));
    g.bench_function("entropy-mnist", |b| b.iter(|| black_box(t.entropy_code())));
    g.finish();
}

/// The channels-last convolution kernels alone on the models' large layers (batch 128): each
/// product's achieved flop rate, to set against the core's peak (BENCHMARKS.md).
fn convolutions(c: &mut Criterion) {
    use vqib::kernels::conv::{
        ConvGeom, backward_weight, forward, input_grad, microkernel_in_l1, weight_matrix,
    };
    let geom = |h, c, k, s| ConvGeom {
        b: 128,
        h,
        w: h,
        c,
        oc: c,
        kh: k,
        kw: k,
        sh: s,
        sw: s,
        ph: 1,
        pw: 1,
    };
    let mut g = c.benchmark_group("conv");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for (name, cg) in [
        ("mnist-3x3", geom(7, 128, 3, 1)),
        ("mnist-4x4s2", geom(14, 128, 4, 2)),
        ("cifar-3x3", geom(8, 256, 3, 1)),
        ("cifar-4x4s2", geom(16, 256, 4, 2)),
        // The first layer, from an image's one channel (K = 16): the decoder's last layer is its
        // adjoint, so its forward is this layer's input gradient.
        (
            "mnist-first",
            ConvGeom {
                c: 1,
                ..geom(28, 128, 4, 2)
            },
        ),
    ] {
        let x = bench::normal(cg.b * cg.h * cg.w * cg.c, 1);
        let w = bench::normal(cg.oc * cg.kkc(), 2);
        let dy = bench::normal(cg.rows() * cg.oc, 3);
        let wm = weight_matrix(&cg, &w);
        g.throughput(Throughput::Elements(
            (2 * cg.rows() * cg.kkc() * cg.oc) as u64,
        ));
        g.bench_function(format!("{name}-forward"), |b| {
            b.iter(|| black_box(forward(&cg, &x, &wm, None)))
        });
        g.bench_function(format!("{name}-input-grad"), |b| {
            b.iter(|| black_box(input_grad(&cg, &dy, &w, None)))
        });
        g.bench_function(format!("{name}-weight-grad"), |b| {
            b.iter(|| black_box(backward_weight(&cg, &x, &dy)))
        });
    }
    // The direct forward kernel's microkernel with its operands in L1, on one thread: the
    // ceiling the forward products above reach for (absent without AVX-512F).
    if microkernel_in_l1(1) > 0 {
        g.throughput(Throughput::Elements(1000 * microkernel_in_l1(1) as u64));
        g.bench_function("microkernel-l1", |b| {
            b.iter(|| black_box(microkernel_in_l1(1000)))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bottleneck,
    quantizers,
    convolutions,
    training,
    evaluation,
    codec
);

// criterion_main!, plus the allocator setting that the vqib binary makes.
fn main() {
    vqib::alloc::keep_freed_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
