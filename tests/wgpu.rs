//! The GPU code path: training steps on burn's wgpu backend, resident on the device, must give
//! the losses and codebooks of the same steps on the `flex` CPU backend and read nothing back
//! between logging steps. Runs over any Vulkan driver (CI installs Mesa's
//! lavapipe). Without an adapter the test is skipped, unless `VQIB_REQUIRE_WGPU=1` (set by
//! `.ci/run`), where that is a failure.
#![cfg(feature = "wgpu")]

use burn::tensor::{Device, Tensor};
use vqib::RunConfig;
use vqib::device::DeviceKind;
use vqib::model::VqVae;
use vqib::quantizer::{self, Bottleneck, QuantizerKind};
use vqib::train::{self, Pending, StepMode};

/// The wgpu device, or None (skip) when there is none and none is required.
fn wgpu_device() -> Option<Device> {
    match vqib::device::device(DeviceKind::Wgpu) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("VQIB_REQUIRE_WGPU").is_ok_and(|v| v == "1") {
                panic!("wgpu device required but unavailable: {e}");
            }
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// Resident steps (`train_step` as the trainer runs it on a GPU) on `dev`: reads on steps 1 and
/// 4 only. Returns the losses of the reading steps, the device reads of the two steps between
/// them and of step 4, and the codebook and EMA codebook after step 4.
fn resident_steps(
    cfg: &RunConfig,
    mut model: VqVae,
    dev: &Device,
) -> (
    Vec<f32>,
    [u64; 3],
    Vec<f32>,
    Option<Vec<f32>>,
    train::EvalMetrics,
) {
    let data = vqib::data::shapes(32, 8, 5);
    let mut optim = cfg.training.optimizer().init();
    let mut b = Bottleneck::new(&cfg.quantizer);
    let mut pending = Pending::default();
    let (mut losses, mut reads) = (Vec::new(), [0; 2]);
    for step in 1..=4u64 {
        let idx: Vec<usize> = (0..8).map(|i| (step as usize * 8 + i) % 32).collect();
        let x = train::batch_tensor(&data.train, &idx, dev);
        let read = step == 1 || step == 4;
        let before = vqib::device::host_reads();
        let out = train::train_step(
            cfg,
            &mut model,
            &mut optim,
            &mut b,
            x,
            step,
            StepMode {
                read,
                resident: true,
            },
            &mut pending,
        )
        .unwrap();
        let made = vqib::device::host_reads() - before;
        match step {
            2 | 3 => reads[0] += made,
            4 => reads[1] = made,
            _ => {}
        }
        losses.extend(out.scalars.map(|s| s.loss));
    }
    b.sync();
    let before = vqib::device::host_reads();
    let m = train::evaluate(cfg, &model, &data.test, 4, &dev.clone().inner()).unwrap();
    let eval_reads = vqib::device::host_reads() - before;
    let ema = b.quantizer.ema().map(|e| e.codebook());
    (
        losses,
        [reads[0], reads[1], eval_reads],
        model.codebook_values(),
        ema,
        m,
    )
}

/// The device-resident step of every quantizer on wgpu: the same losses, codebook (after the
/// EMA update or M-step, with the dead-code tracker running) and EMA state as the same resident
/// step on the CPU; a step that reads nothing makes no read from the device (vqib counts its
/// own), a reading step makes exactly two (the loss terms with the device's non-finite count,
/// and the codes), and an evaluation streamed on the device one, with the CPU evaluation's
/// information quantities. Then the trainer (one test, so that it reuses the compiled kernels).
#[test]
fn wgpu_resident_steps_match_flex_and_the_trainer_reads_only_when_it_logs() {
    let Some(wgpu) = wgpu_device() else {
        return;
    };
    // Every quantizer, and rvq again with its EMA update.
    let mut rvq_ema = quantizer::QuantizerConfig::small(QuantizerKind::Rvq, 16);
    rvq_ema.update = Some(quantizer::config::CodebookUpdate::Ema);
    let configs = QuantizerKind::ALL
        .iter()
        .map(|&q| quantizer::QuantizerConfig::small(q, 16))
        .chain([rvq_ema]);
    for qc in configs {
        let q = qc.kind;
        let mut cfg = RunConfig::default();
        cfg.quantizer = qc;
        cfg.quantizer.dead_code_steps = 100;
        cfg.quantizer.samples = 4;
        cfg.model.hidden = Some(8);
        cfg.training.lr = Some(1e-3);
        if q == QuantizerKind::Vq {
            // With the VIB rate term and a learned prior: the log-sum-exp soft posterior and the
            // prior, forward and backward.
            cfg.rate.kind = quantizer::RateKind::Vib;
            cfg.rate.prior = quantizer::PriorKind::Learned;
            cfg.rate.weight = 0.1;
        }
        let cfg = cfg.resolve().unwrap();
        let cpu = Device::flex().autodiff();
        let m_cpu = train::new_model(&cfg, 1, &cpu);
        let gpu = wgpu.clone().autodiff();
        let mut m_gpu = train::new_model(&cfg, 1, &gpu);
        m_gpu
            .import(&m_cpu.export(), &gpu, std::path::Path::new("<cpu model>"))
            .unwrap();
        let a = resident_steps(&cfg, m_cpu, &cpu);
        let b = resident_steps(&cfg, m_gpu, &gpu);
        eprintln!(
            "{q}: flex losses {:?}, wgpu losses {:?}, wgpu reads {:?}",
            a.0, b.0, b.1
        );
        // The evaluation streams on the device for the quantizers with one codebook (one read);
        // fsq, lfq, rvq and sq are measured on the host (their codes counted in maps), reading
        // z_e batch by batch.
        let streamed = train::dense_codebook(&cfg) && q != QuantizerKind::Sq;
        assert_eq!(
            b.1[..2],
            [0, 2],
            "{q}: device reads of the non-reading steps, of a reading step"
        );
        if streamed {
            assert_eq!(b.1[2], 1, "{q}: device reads of an evaluation");
        }
        // The evaluation streamed on wgpu against the host evaluation on the CPU.
        let (x, y) = (&a.4, &b.4);
        assert_eq!(x.histogram, y.histogram, "{q}");
        for (u, v) in [
            (x.soft.h_z, y.soft.h_z),
            (x.soft.mutual_info, y.soft.mutual_info),
            (x.assigned.mutual_info, y.assigned.mutual_info),
            (x.assigned.kl, y.assigned.kl),
            (
                x.soft_relevance.as_ref().unwrap().i_zy,
                y.soft_relevance.as_ref().unwrap().i_zy,
            ),
        ] {
            assert!(
                (u - v).abs() <= 1e-3 * (1.0 + u.abs()),
                "{q}: evaluation {u} vs {v}"
            );
        }
        for (x, y) in a.0.iter().zip(&b.0) {
            assert!(
                (x - y).abs() <= 2e-3 * x.abs().max(1e-3),
                "{q}: flex {x} vs wgpu {y}"
            );
        }
        let close = |u: &[f32], v: &[f32]| {
            u.iter()
                .zip(v)
                .all(|(x, y)| (x - y).abs() <= 1e-3 * (1.0 + x.abs()))
        };
        assert!(close(&a.2, &b.2), "{q}: codebooks differ");
        match (&a.3, &b.3) {
            (Some(x), Some(y)) => assert!(close(x, y), "{q}: EMA states differ"),
            (None, None) => assert!(cfg.quantizer.codebook_by_gradient(), "{q}"),
            _ => panic!("{q}: EMA state on one side only"),
        }
    }
    trainer_reads_only_when_it_logs();
}

/// The device sampler on wgpu draws from p(z|i): chi-square of 20000 pooled draws against p
/// (7 degrees of freedom, 0.999 quantile 24.3); a code of probability 0 is never drawn.
#[test]
fn wgpu_sampler_draws_from_the_posterior() {
    let Some(wgpu) = wgpu_device() else {
        return;
    };
    let (n, m) = (500, 40);
    let p = [0.3f64, 0.2, 0.15, 0.1, 0.1, 0.08, 0.07, 0.0];
    let k = p.len();
    let row: Vec<f32> = p.iter().map(|&q| (q as f32).ln()).collect();
    let log_p = Tensor::<2>::from_data(burn::tensor::TensorData::new(row.repeat(n), [n, k]), &wgpu);
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(9);
    let u = quantizer::soft_em::uniforms(n, m, &mut rng, &wgpu);
    let w = quantizer::soft_em::sample_weights(log_p, u);
    let w: Vec<f32> = w.into_data().try_into_vec_as::<f32>().unwrap();
    let mut counts = vec![0.0f64; k];
    for (i, v) in w.iter().enumerate() {
        counts[i % k] += *v as f64 * m as f64;
    }
    let draws = (n * m) as f64;
    assert_eq!(counts[k - 1], 0.0, "{counts:?}");
    let chi2: f64 = (0..k - 1)
        .map(|c| (counts[c] - draws * p[c]).powi(2) / (draws * p[c]))
        .sum();
    assert!(chi2 < 24.3, "chi-square {chi2}: {counts:?}");
}

/// The trainer on wgpu: every train record says how many device reads it took since the last;
/// with a record every 2 steps, each is the reading step's two (the step between reads nothing).
fn trainer_reads_only_when_it_logs() {
    let mut cfg = RunConfig::default();
    cfg.data.dataset = vqib::data::DatasetKind::Shapes;
    cfg.data.shapes_train = 64;
    cfg.data.shapes_test = 8;
    cfg.quantizer.kind = QuantizerKind::SoftEm;
    cfg.quantizer.codebook_size = Some(16);
    cfg.quantizer.code_dim = Some(4);
    cfg.quantizer.samples = 4;
    cfg.model.hidden = Some(8);
    cfg.training.batch_size = Some(8);
    cfg.training.device = DeviceKind::Wgpu;
    cfg.training.log_every = 2;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let opts = train::TrainOptions {
        max_steps: Some(5),
        ..Default::default()
    };
    let out = train::Trainer::create(cfg, &run)
        .unwrap()
        .fit(&opts)
        .unwrap();
    assert_eq!(out.step, 5);
    let recs = vqib::records::read_records(&run.join("metrics.jsonl")).unwrap();
    let reads: Vec<(u64, Option<u64>)> = recs
        .iter()
        .filter(|r| r.kind == "train")
        .map(|r| (r.step, r.host_reads))
        .collect();
    assert_eq!(reads[1..], [(2, Some(2)), (4, Some(2))], "{reads:?}");
}
