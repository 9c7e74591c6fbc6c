//! Tests of the quantizer family: assignment against brute force, the straight-through and
//! loss-term gradients, the EMA and M-step updates, k-means++, dead codes, the rate terms.

use super::init::dist2;
use super::soft_em::soft_quantize;
use super::*;
use burn::tensor::{Device, Distribution, TensorData};
use rand::SeedableRng;
use rand::{Rng, RngCore};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

#[test]
fn distances_and_argmin_match_brute_force() {
    let dev = Device::flex();
    let (n, k, d) = (97, 33, 7);
    let z = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
    let e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev);
    let (zv, ev) = (values(z.clone()), values(e.clone()));
    let dist = values(squared_distances(z.clone(), e.clone()));
    let idx: Vec<i64> = nearest(z, e).into_data().try_into_vec_as::<i64>().unwrap();
    for i in 0..n {
        let mut best = (0usize, f32::INFINITY);
        for j in 0..k {
            let bf = dist2(&zv[i * d..(i + 1) * d], &ev[j * d..(j + 1) * d]);
            assert!(
                (dist[i * k + j] - bf).abs() < 1e-4 * (1.0 + bf),
                "d[{i},{j}]"
            );
            if bf < best.1 {
                best = (j, bf);
            }
        }
        assert_eq!(idx[i] as usize, best.0, "row {i}");
    }
}

#[test]
fn straight_through_passes_the_decoder_gradient_unchanged() {
    let dev = Device::flex().autodiff();
    let (n, k, d) = (20, 5, 3);
    let z_e = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let q = quantize(z_e.clone(), e.clone(), false);
    // A nonlinear "decoder" loss of the quantized vectors.
    let w = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
    let loss = (q.z_st.clone() * w.clone()).tanh().sum();
    let g = loss.backward();
    let g_ze = values(z_e.grad(&g).expect("z_e gets the gradient"));
    // The same loss as a function of z_q itself, differentiated at z_q.
    let zq_leaf = Tensor::<2>::from_data(q.z_q.clone().detach().into_data(), &dev).require_grad();
    let g2 = (zq_leaf.clone() * w).tanh().sum().backward();
    let g_zq = values(zq_leaf.grad(&g2).unwrap());
    for (a, b) in g_ze.iter().zip(&g_zq) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    // The reconstruction path gives the codebook nothing.
    assert!(
        e.grad(&g)
            .map(|t| values(t).iter().all(|&v| v == 0.0))
            .unwrap_or(true)
    );
    // In value z_st is z_q.
    let (st, zq) = (values(q.z_st), values(q.z_q));
    for (a, b) in st.iter().zip(&zq) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn codebook_term_moves_codebook_only_commitment_moves_encoder_only() {
    let dev = Device::flex().autodiff();
    let (n, k, d) = (16, 4, 3);
    let z_e = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let nonzero = |t: Option<Tensor<2>>| {
        t.map(|t| values(t).iter().any(|&v| v != 0.0))
            .unwrap_or(false)
    };

    let q = quantize(z_e.clone(), e.clone(), false);
    let g = q.codebook_loss.backward();
    assert!(nonzero(e.grad(&g)), "codebook term must reach the codebook");
    assert!(
        !nonzero(z_e.grad(&g)),
        "codebook term must not reach the encoder"
    );

    let q = quantize(z_e.clone(), e.clone(), false);
    let g = q.commitment_loss.backward();
    assert!(
        nonzero(z_e.grad(&g)),
        "commitment term must reach the encoder"
    );
    assert!(
        !nonzero(e.grad(&g)),
        "commitment term must not reach the codebook"
    );

    // The commitment gradient is 2 (z_e - z_q) / (N D): check against the closed form.
    let q = quantize(z_e.clone(), e.clone(), false);
    let zq = values(q.z_q.clone());
    let g = q.commitment_loss.backward();
    let gz = values(z_e.grad(&g).unwrap());
    let zv = values(z_e.clone());
    for i in 0..n * d {
        let want = 2.0 * (zv[i] - zq[i]) / (n * d) as f32;
        assert!((gz[i] - want).abs() < 1e-6);
    }
}

#[test]
fn codebook_loss_gradient_matches_finite_differences() {
    let dev = Device::flex();
    let (n, k, d) = (12, 4, 2);
    // Well-separated codewords and rows near them, so that a small perturbation of the
    // codebook does not change any assignment (the loss is smooth there).
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let e0: Vec<f32> = vec![0.0, 0.0, 3.0, 0.0, 0.0, 3.0, 3.0, 3.0];
    let z: Vec<f32> = (0..n)
        .flat_map(|i| {
            let c = i % k;
            [
                e0[2 * c] + rng.gen_range(-0.5..0.5f32),
                e0[2 * c + 1] + rng.gen_range(-0.5..0.5f32),
            ]
        })
        .collect();
    let ad = dev.clone().autodiff();
    let loss_at = |ev: &[f32]| -> f32 {
        let zt = Tensor::<2>::from_data(TensorData::new(z.clone(), [n, d]), &dev);
        let et = Tensor::<2>::from_data(TensorData::new(ev.to_vec(), [k, d]), &dev);
        quantize(zt, et, false).codebook_loss.into_scalar::<f32>()
    };
    let et = Tensor::<2>::from_data(TensorData::new(e0.clone(), [k, d]), &ad).require_grad();
    let zt = Tensor::<2>::from_data(TensorData::new(z.clone(), [n, d]), &ad);
    let g = quantize(zt, et.clone(), false).codebook_loss.backward();
    let ge = values(et.grad(&g).unwrap());
    let h = 1e-2f32;
    for i in 0..k * d {
        let (mut p, mut m) = (e0.clone(), e0.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (loss_at(&p) - loss_at(&m)) / (2.0 * h);
        assert!((fd - ge[i]).abs() < 2e-3, "param {i}: fd {fd} vs {}", ge[i]);
    }
}

#[test]
fn ema_update_matches_hand_computation() {
    // K = 2, D = 2, decay 0.5, eps 0.1.
    let mut ema = EmaCodebook::new(2, 2, 0.5, 0.1);
    let z = [1.0f32, 2.0, 3.0, 4.0, 10.0, 20.0];
    let idx = [0u32, 0, 1];
    let cb = ema.update(&z, &idx);
    // t=1: hidden counts (1, 0.5), debias 0.5 -> counts (2, 1), n = 3.
    // smoothed = (c + 0.1) / (3 + 0.2) * 3 -> (1.96875, 0.984375)
    // sums hidden (2, 3, 5, 10) -> debiased (4, 6, 10, 20)
    let s0 = 2.1 / 3.2 * 3.0;
    let s1 = 1.1 / 3.2 * 3.0;
    let want = [4.0 / s0, 6.0 / s0, 10.0 / s1, 20.0 / s1];
    for (a, b) in cb.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
    }
    // t=2: a batch that uses only code 1.
    let cb = ema.update(&[0.0, 2.0], &[1]);
    // hidden counts: (1*0.5, 0.5*0.5 + 0.5) = (0.5, 0.75); debias 0.75 -> (2/3, 1)
    // hidden sums: (1, 1.5, 2.5, 5 + 1) ; debiased -> (4/3, 2, 10/3, 8)
    let n = 2.0 / 3.0 + 1.0;
    let s0 = (2.0 / 3.0 + 0.1) / (n + 0.2) * n;
    let s1 = (1.0 + 0.1) / (n + 0.2) * n;
    let want = [(4.0 / 3.0) / s0, 2.0 / s0, (10.0 / 3.0) / s1, 8.0 / s1];
    for (a, b) in cb.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn ema_with_decay_zero_is_the_batch_mean() {
    let mut ema = EmaCodebook::new(3, 1, 0.0, 1e-12);
    let cb = ema.update(&[1.0, 3.0, 10.0], &[2, 2, 0]);
    assert!((cb[2] - 2.0).abs() < 1e-5 && (cb[0] - 10.0).abs() < 1e-5 && cb[1] == 0.0);
}

#[test]
fn kmeans_pp_finds_separated_clusters() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let centres = [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
    let mut data = Vec::new();
    for i in 0..400 {
        let c = centres[i % 4];
        data.push(c[0] + rng.gen_range(-0.5..0.5));
        data.push(c[1] + rng.gen_range(-0.5..0.5));
    }
    let got = kmeans_pp(&data, 2, 4, 5, &mut rng);
    for c in centres {
        let best = (0..4)
            .map(|j| dist2(&c, &got[j * 2..j * 2 + 2]))
            .fold(f32::INFINITY, f32::min);
        assert!(best < 0.1, "no centre near {c:?}: {got:?}");
    }
    // More centres than rows still works.
    let few = kmeans_pp(&data[..4], 2, 5, 2, &mut rng);
    assert_eq!(few.len(), 10);
    assert!(few.iter().all(|v| v.is_finite()));
}

#[test]
fn dead_codes_are_restarted_from_batch_rows() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut t = DeadCodeTracker::new(3, 2, 0);
    t.observe(&[0, 1], 1);
    t.observe(&[0], 3);
    assert_eq!(t.dead(3), vec![2]);
    assert_eq!(t.dead(4), vec![1, 2]);
    let mut cb = vec![0.0f32; 6];
    let z = [5.0f32, 5.0, 7.0, 7.0];
    let mut ema = EmaCodebook::new(3, 2, 0.9, 1e-5);
    let r = t.restart(4, &mut cb, &z, 2, Some(&mut ema), &mut rng);
    assert_eq!(r, vec![1, 2]);
    assert_eq!(t.restarts, 2);
    for c in [1, 2] {
        assert!(cb[c * 2] == 5.0 || cb[c * 2] == 7.0);
    }
    assert!(t.dead(4).is_empty());
    assert!(DeadCodeTracker::new(3, 0, 0).dead(100).is_empty());
}

#[test]
fn soft_log_probs_are_normalised_and_stable() {
    let dev = Device::flex();
    // Far-away points: a naive softmax of -d^2 would underflow to 0/0.
    let z = Tensor::<2>::from_data(
        TensorData::new(vec![1000.0f32, 0.0, 1001.0, 1.0], [2, 2]),
        &dev,
    );
    let e = Tensor::<2>::from_data(
        TensorData::new(vec![0.0f32, 0.0, 1.0, 0.0, 0.0, 1.0], [3, 2]),
        &dev,
    );
    let lp = values(soft_log_probs(z, e, 1.0));
    for row in lp.chunks(3) {
        assert!(row.iter().all(|v| v.is_finite()), "{row:?}");
        let total: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }
}

#[test]
fn m_step_with_decay_zero_is_the_weighted_mean() {
    let mut ema = EmaCodebook::new(3, 2, 0.0, 1e-12);
    // Two rows, m = 2 samples each: row 0 -> codes (0, 1), row 1 -> codes (1, 1).
    let z = [1.0f32, 2.0, 3.0, 6.0];
    let cb = ema.update_samples(&z, &[0, 1, 1, 1], 2);
    // Code 0: weight 1/2 on row 0 -> mean (1, 2). Code 1: weights 1/2 (row 0) + 1 (row 1).
    let w = [0.5f64, 1.0];
    let want1 = [
        (w[0] * 1.0 + w[1] * 3.0) / 1.5,
        (w[0] * 2.0 + w[1] * 6.0) / 1.5,
    ];
    for (a, b) in cb[..4].iter().zip([1.0, 2.0, want1[0], want1[1]]) {
        assert!((*a as f64 - b).abs() < 1e-5, "{cb:?}");
    }
    assert_eq!(&cb[4..], &[0.0, 0.0]);
}

#[test]
fn one_sample_at_small_temperature_is_vq_ema() {
    let dev = Device::flex();
    dev.seed(5);
    let (n, k, d) = (200, 16, 3);
    let z = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
    let e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev);
    let hard = quantize(z.clone(), e.clone(), false);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let soft = soft_quantize(z.clone(), e.clone(), 1e-6, 1, rng.next_u64());
    let soft_samples = soft.samples.clone().unwrap();
    let idx: Vec<u32> = values(hard.indices.float())
        .iter()
        .map(|&v| v as u32)
        .collect();
    assert_eq!(soft_samples, idx);
    assert_eq!(values(soft.z_q), values(hard.z_q));
    // And the M-steps agree.
    let zv = values(z);
    let mut a = EmaCodebook::new(k, d, 0.9, 1e-5);
    let mut b = a.clone();
    assert_eq!(a.update(&zv, &idx), b.update_samples(&zv, &soft_samples, 1));
}

#[test]
fn rate_term_gradients_match_finite_differences() {
    let dev = Device::flex();
    let (n, k, d) = (5, 4, 2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let zv: Vec<f32> = (0..n * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let ev: Vec<f32> = (0..k * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let rv: Vec<f32> = vec![0.1, 0.2, 0.3, 0.4];
    let log_r = |dev: &Device| {
        Tensor::<1>::from_data(
            TensorData::new(rv.iter().map(|r| r.ln()).collect::<Vec<f32>>(), [k]),
            dev,
        )
    };
    let eval = |zz: &[f32], which: usize| -> f64 {
        let z = Tensor::<2>::from_data(TensorData::new(zz.to_vec(), [n, d]), &dev);
        let e = Tensor::<2>::from_data(TensorData::new(ev.clone(), [k, d]), &dev);
        let (ce, h) = rate_terms(z, e, 0.7, log_r(&dev));
        let v = if which == 0 { ce } else { ce - h };
        v.into_scalar::<f32>() as f64
    };
    let ad = dev.clone().autodiff();
    for which in [0, 1] {
        let z = Tensor::<2>::from_data(TensorData::new(zv.clone(), [n, d]), &ad).require_grad();
        let e = Tensor::<2>::from_data(TensorData::new(ev.clone(), [k, d]), &ad);
        let (ce, h) = rate_terms(z.clone(), e, 0.7, log_r(&ad));
        let v = if which == 0 { ce } else { ce - h };
        let g = values(z.grad(&v.backward()).unwrap());
        let step = 1e-2f32;
        for i in 0..n * d {
            let (mut p, mut m) = (zv.clone(), zv.clone());
            p[i] += step;
            m[i] -= step;
            let fd = (eval(&p, which) - eval(&m, which)) / (2.0 * step as f64);
            assert!(
                (fd - g[i] as f64).abs() < 2e-3 + 2e-2 * fd.abs(),
                "term {which} coord {i}: fd {fd} vs {}",
                g[i]
            );
        }
    }
}

#[test]
fn learned_prior_converges_to_the_empirical_marginal() {
    use burn::module::{Module, Param};
    use burn::optim::{AdamConfig, GradientsParams};
    #[derive(Module, Debug)]
    struct Prior {
        logits: Param<Tensor<1>>,
    }
    let dev = Device::flex().autodiff();
    let k = 4;
    // A fixed assignment of 3 points.
    let p = vec![
        0.7f32, 0.2, 0.1, 0.0, 0.1, 0.1, 0.8, 0.0, 0.25, 0.25, 0.25, 0.25,
    ];
    let marginal: Vec<f32> = (0..k)
        .map(|z| (p[z] + p[k + z] + p[2 * k + z]) / 3.0)
        .collect();
    let pt = Tensor::<2>::from_data(TensorData::new(p, [3, k]), &dev);
    let mut prior = Prior {
        logits: Param::from_tensor(Tensor::zeros([k], &dev)),
    };
    let mut optim = AdamConfig::new().init();
    for _ in 0..600 {
        let log_r = burn::tensor::activation::log_softmax(prior.logits.val(), 0).reshape([1, k]);
        let ce = (pt.clone() * log_r).sum_dim(1).mean().neg();
        let g = GradientsParams::from_grads(ce.backward(), &prior);
        prior = optim.step(0.05, prior, g);
    }
    let r = values(burn::tensor::activation::softmax(prior.logits.val(), 0));
    for (a, b) in r.iter().zip(&marginal) {
        assert!((a - b).abs() < 0.02, "r {r:?} vs marginal {marginal:?}");
    }
}

#[test]
fn cpu_tensors_take_the_host_kernel() {
    assert!(on_host(&Device::flex()));
    assert!(on_host(&Device::flex().autodiff()));
    // And the host kernel agrees with the tensor argmin.
    let dev = Device::flex();
    dev.seed(4);
    let z = Tensor::<2>::random([64, 6], Distribution::Normal(0.0, 1.0), &dev);
    let e = Tensor::<2>::random([20, 6], Distribution::Normal(0.0, 1.0), &dev);
    let host: Vec<i64> = nearest(z.clone(), e.clone())
        .into_data()
        .try_into_vec_as()
        .unwrap();
    let tensor: Vec<i64> = squared_distances(z, e)
        .argmin(1)
        .into_data()
        .try_into_vec_as()
        .unwrap();
    assert_eq!(host, tensor);
}

#[test]
fn chunked_nearest_matches_the_whole_distance_matrix() {
    let dev = Device::flex();
    dev.seed(8);
    let (n, k, d) = (300, 100, 5);
    let z = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
    let mut e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev);
    // Duplicate codewords across chunk boundaries: ties must go to the lower index.
    e = e
        .clone()
        .slice_assign([37..38, 0..d], e.clone().slice([3..4, 0..d]));
    let whole: Vec<i64> = squared_distances(z.clone(), e.clone())
        .argmin(1)
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    for chunk in [1, 7, 32, 99, 100, 1000] {
        let got: Vec<i64> = nearest_chunked(z.clone(), e.clone(), chunk)
            .into_data()
            .try_into_vec_as::<i64>()
            .unwrap();
        assert_eq!(got, whole, "chunk {chunk}");
    }
    assert!(
        !whole.contains(&37),
        "code 37 duplicates code 3 and must never win"
    );
}

/// Every registered quantizer builds from its kind, reports it, and spells its name one way on
/// the command line, in JSON and in outputs.
#[test]
fn registered_quantizers_build_and_name_themselves_one_way() {
    use clap::ValueEnum;
    let names: Vec<&str> = QuantizerKind::ALL.iter().map(|q| q.name()).collect();
    assert_eq!(
        names,
        ["vq", "vq-ema", "soft-em", "fsq", "lfq", "rvq", "sq"]
    );
    for &q in QuantizerKind::ALL {
        let mut cfg = crate::config::QuantizerConfig::default();
        cfg.kind = q;
        let built = build(&cfg);
        assert_eq!(built.kind(), q);
        assert_eq!(q.to_string(), q.name());
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            format!("\"{}\"", q.name())
        );
        assert_eq!(QuantizerKind::from_str(q.name(), false).unwrap(), q);
        // Only the gradient-trained codebook lacks EMA state.
        assert_eq!(built.ema().is_none(), q.codebook_by_gradient(), "{q}");
        let soft = built.posterior() == Posterior::Soft;
        assert_eq!(
            soft,
            matches!(q, QuantizerKind::SoftEm | QuantizerKind::Sq),
            "{q}"
        );
    }
    assert_eq!(QuantizerKind::SoftEm.default_ema_decay(), 0.999);
    assert_eq!(QuantizerKind::VqEma.default_ema_decay(), 0.99);
}

/// The bottleneck restarts a dead code after the quantizer's own update, in the codebook it
/// returns and in the EMA state.
#[test]
fn bottleneck_restarts_dead_codes_after_the_ema_update() {
    let mut cfg = crate::config::QuantizerConfig::default();
    cfg.kind = QuantizerKind::VqEma;
    cfg.codebook_size = Some(3);
    cfg.code_dim = Some(2);
    cfg.dead_code_steps = 1;
    let mut b = Bottleneck::new(&cfg);
    let z = [1.0f32, 1.0, 2.0, 2.0];
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    // Step 1: code 0 takes both rows; nothing is dead yet.
    let cb = b
        .after_step(&z, &[0, 0], None, 1, &mut rng, || unreachable!())
        .unwrap();
    assert_eq!(b.dead_codes.as_ref().unwrap().restarts, 0);
    assert_eq!(cb.len(), 6);
    // Step 3: codes 1 and 2 are unused for 2 > 1 steps: both restart at rows of z.
    let cb = b
        .after_step(&z, &[0, 0], None, 3, &mut rng, || unreachable!())
        .unwrap();
    assert_eq!(b.dead_codes.as_ref().unwrap().restarts, 2);
    for c in 1..3 {
        let row = &cb[2 * c..2 * c + 2];
        assert!(row == [1.0, 1.0] || row == [2.0, 2.0], "code {c}: {row:?}");
    }
    // The EMA state was re-seeded too: its codebook has the restarted codes.
    let ema = b.quantizer.ema().unwrap().codebook();
    for (a, e) in cb[2..].iter().zip(&ema[2..]) {
        assert!((a - e).abs() < 1e-4, "{cb:?} vs {ema:?}");
    }
}

fn tensor2(v: &[f32], shape: [usize; 2], dev: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), dev)
}

/// The device EMA ([`DeviceEma`], f32 tensors, counts and sums from weights by a matrix product)
/// follows the host EMA (f64 loops) through several updates, from one-hot weights (vq-ema) and
/// from sample frequencies (soft EM's M-step), with empty codes; its state comes back intact.
#[test]
fn the_device_ema_follows_the_host_ema() {
    let dev = Device::flex();
    let (n, k, d, m) = (40, 6, 3, 4);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut host = EmaCodebook::new(k, d, 0.9, 1e-5);
    host.start_at(&(0..k * d).map(|i| i as f32 * 0.1).collect::<Vec<_>>());
    let mut device = DeviceEma::upload(&host, &dev);
    for step in 0..5 {
        let z: Vec<f32> = (0..n * d).map(|_| rng.r#gen::<f32>()).collect();
        // Codes 0..4 only: codes 4 and 5 stay empty and their codewords decay.
        let (want, got) = if step % 2 == 0 {
            let idx: Vec<u32> = (0..n).map(|_| rng.gen_range(0..4)).collect();
            let w = one_hot(index_tensor(&idx, &dev), k);
            (
                host.update(&z, &idx),
                device.update(tensor2(&z, [n, d], &dev), w),
            )
        } else {
            let s: Vec<u32> = (0..n * m).map(|_| rng.gen_range(0..4)).collect();
            let mut w = vec![0.0f32; n * k];
            for (i, c) in s.iter().enumerate() {
                w[(i / m) * k + *c as usize] += 1.0 / m as f32;
            }
            (
                host.update_samples(&z, &s, m),
                device.update(tensor2(&z, [n, d], &dev), tensor2(&w, [n, k], &dev)),
            )
        };
        let got = values(got);
        for (a, b) in want.iter().zip(&got) {
            assert!(
                (a - b).abs() < 1e-5 * (1.0 + a.abs()),
                "step {step}: {want:?} vs {got:?}"
            );
        }
    }
    let mut back = EmaCodebook::new(k, d, 0.9, 1e-5);
    device.download(&mut back);
    assert_eq!(back.updates, host.updates);
    for (a, b) in back.sum_hidden.iter().zip(&host.sum_hidden) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let (mut dead, rows) = (vec![false; k], tensor2(&vec![7.0; k * d], [k, d], &dev));
    dead[5] = true;
    device.reseed(Tensor::from_data(TensorData::new(dead, [k]), &dev), rows);
    host.reseed(5, &[7.0; 3]);
    let (want, got) = (host.codebook(), values(device.codebook()));
    assert!(got[15..].iter().all(|v| (v - 7.0).abs() < 1e-3), "{got:?}");
    for (a, b) in want.iter().zip(&got) {
        assert!(
            (a - b).abs() < 1e-5 * (1.0 + a.abs()),
            "{want:?} vs {got:?}"
        );
    }
}

/// The device sampler draws from p(z|i): a chi-square test of the pooled draws of rows with the
/// same posterior against it (K - 1 = 7 degrees of freedom; the 0.999 quantile is 24.3), a code
/// of probability zero is never drawn, each row's weights sum to 1, and drawing in chunks
/// changes nothing.
#[test]
fn the_device_sampler_draws_from_the_posterior() {
    let dev = Device::flex();
    let (n, m) = (500, 40);
    let p = [0.3f64, 0.2, 0.15, 0.1, 0.1, 0.08, 0.07, 0.0];
    let k = p.len();
    let row: Vec<f32> = p.iter().map(|&q| (q as f32).ln()).collect();
    let log_p = tensor2(&row.repeat(n), [n, k], &dev);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let u = soft_em::uniforms(n, m, &mut rng, &dev);
    let w = values(soft_em::sample_weights(log_p.clone(), u.clone()));
    // In chunks of 3 draws (the last one of 1): the same draws.
    let chunked = values(soft_em::sample_weights_within(log_p, u, n * k * 3));
    assert_eq!(w, chunked);
    for r in w.chunks(k) {
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let draws = (n * m) as f64;
    let mut counts = vec![0.0f64; k];
    for (i, v) in w.iter().enumerate() {
        counts[i % k] += *v as f64 * m as f64;
    }
    assert_eq!(counts[k - 1], 0.0, "a code of probability 0 was drawn");
    let chi2: f64 = (0..k - 1)
        .map(|c| (counts[c] - draws * p[c]).powi(2) / (draws * p[c]))
        .sum();
    assert!(
        chi2 < 24.3,
        "chi-square {chi2} with 7 degrees of freedom: {counts:?}"
    );
}

/// The device dead-code tracker restarts the codes the host tracker would (unused for more than
/// the patience), at rows of z, re-seeds their EMA state, and comes back as the host form.
#[test]
fn device_dead_codes_restart_the_codes_the_host_tracker_would() {
    let dev = Device::flex();
    let (k, d) = (5, 2);
    let z = tensor2(&[1.0, 1.0, 2.0, 2.0, 3.0, 3.0], [3, d], &dev);
    let mut host = DeadCodeTracker::new(k, 2, 0);
    let mut tracker = DeviceDeadCodes::upload(&host, &dev);
    let mut ema_host = EmaCodebook::new(k, d, 0.9, 1e-5);
    ema_host.start_at(&[0.0; 10]);
    let mut ema = DeviceEma::upload(&ema_host, &dev);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut cb = tensor2(&[-1.0; 10], [k, d], &dev);
    let uses: [&[u32]; 4] = [&[0, 1, 1], &[0, 0, 2], &[0, 2, 2], &[1, 1, 1]];
    for (s, used) in uses.iter().enumerate() {
        let step = s as u64 + 1;
        host.observe(used, step);
        let want = host.dead(step);
        cb = tracker.step(
            index_tensor(used, &dev),
            step,
            z.clone(),
            cb,
            Some(&mut ema),
            &mut rng,
        );
        host.restart(
            step,
            &mut vec![0.0; k * d],
            &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0],
            d,
            None,
            &mut rng,
        );
        let got = values(cb.clone());
        let restarted: Vec<usize> = (0..k).filter(|&c| got[c * d] != -1.0).collect();
        assert_eq!(restarted, want, "step {step}: {got:?}");
        for &c in &want {
            let row = &got[c * d..c * d + d];
            assert!(
                [1.0, 2.0, 3.0].contains(&row[0]) && row[0] == row[1],
                "{row:?}"
            );
        }
        cb = cb.clone().mask_fill(cb.clone().greater_elem(-1.0), -1.0);
    }
    // Codes 3 and 4 restart at step 3 (unused since step 0, 3 - 0 > 2); nothing else.
    let back = tracker.download();
    assert_eq!(back, host);
    assert_eq!(host.restarts, 2);
    // The EMA of a restarted code sits at its new codeword.
    let e = values(ema.codebook());
    assert!(
        [1.0f32, 2.0, 3.0]
            .iter()
            .any(|v| (v - e[3 * d]).abs() < 1e-3),
        "{e:?}"
    );
}
