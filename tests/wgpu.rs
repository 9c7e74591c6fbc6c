//! The GPU code path: a few training steps on burn's wgpu backend must give the losses of the
//! same steps on the `flex` CPU backend. Runs over any Vulkan driver (CI installs Mesa's
//! lavapipe). Without an adapter the test is skipped, unless `VQIB_REQUIRE_WGPU=1` (set by
//! `.ci/run`), where that is a failure.
#![cfg(feature = "wgpu")]

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use vqib::RunConfig;
use vqib::device::DeviceKind;
use vqib::model::VqVae;
use vqib::quantizer::{self, Context, QuantizerKind};
use vqib::train;

fn steps(cfg: &RunConfig, mut model: VqVae, dev: &Device, n: usize) -> Vec<[f32; 3]> {
    let data = vqib::data::shapes(64, 8, 5);
    let mut optim = cfg.training.optimizer().init();
    let q = quantizer::build(&cfg.quantizer);
    let mut out = Vec::new();
    for s in 0..n {
        let idx: Vec<usize> = (s * 8..s * 8 + 8).collect();
        let mut rng = rand::SeedableRng::seed_from_u64(s as u64);
        let x = train::batch_tensor(&data.train, &idx, dev);
        let ctx = Context { rng: &mut rng };
        let f = model.forward(x.clone(), q.as_ref(), ctx);
        let loss = train::loss(cfg, &model, q.as_ref(), &f, x);
        let l = loss.total;
        let v: Vec<f32> = Tensor::cat(
            vec![
                l.clone().detach(),
                loss.recon.clone().detach(),
                f.q.commitment_loss.clone().detach(),
            ],
            0,
        )
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
        out.push([v[0], v[1], v[2]]);
        let g = GradientsParams::from_grads(l.backward(), &model);
        model = optim.step(cfg.training.lr, model, g);
    }
    out
}

#[test]
fn wgpu_training_steps_match_flex() {
    let wgpu = match vqib::device::device(DeviceKind::Wgpu) {
        Ok(d) => d,
        Err(e) => {
            if std::env::var("VQIB_REQUIRE_WGPU").is_ok_and(|v| v == "1") {
                panic!("wgpu device required but unavailable: {e}");
            }
            eprintln!("skipping: {e}");
            return;
        }
    };
    // vq with the VIB rate term and a learned prior: nearest-codeword search, straight-through,
    // both loss terms, the log-sum-exp soft posterior and the prior, forward and backward.
    let mut cfg = RunConfig::default();
    cfg.rate.kind = quantizer::RateKind::Vib;
    cfg.rate.prior = quantizer::PriorKind::Learned;
    cfg.rate.weight = 0.1;
    cfg.quantizer.kind = QuantizerKind::Vq;
    cfg.quantizer.codebook_size = 16;
    cfg.quantizer.code_dim = 4;
    cfg.model.hidden = Some(8);
    cfg.training.lr = 1e-3;
    let cfg = cfg.resolve().unwrap();
    let cpu = Device::flex().autodiff();
    let m_cpu = train::new_model(&cfg, 1, &cpu);
    let gpu = wgpu.autodiff();
    let mut m_gpu = train::new_model(&cfg, 1, &gpu);
    m_gpu
        .import(&m_cpu.export(), &gpu, std::path::Path::new("<cpu model>"))
        .unwrap();
    let a = steps(&cfg, m_cpu, &cpu, 4);
    let b = steps(&cfg, m_gpu, &gpu, 4);
    eprintln!("flex: {a:?}\nwgpu: {b:?}");
    for (x, y) in a.iter().zip(&b) {
        for j in 0..3 {
            let tol = 2e-3 * x[j].abs().max(1e-3);
            assert!((x[j] - y[j]).abs() <= tol, "flex {x:?} vs wgpu {y:?}");
        }
    }
}
