use burn::optim::GradientsParams;

use super::*;
use crate::data;
use crate::quantizer::rate::{PriorKind, RateKind};
use crate::quantizer::{self, Context, QuantizerKind};

fn tiny(q: QuantizerKind) -> RunConfig {
    let mut cfg = RunConfig::default();
    cfg.quantizer = crate::quantizer::QuantizerConfig::small(q, 8);
    cfg.model.hidden = Some(8);
    cfg.training.lr = Some(1e-2);
    cfg.resolve().unwrap()
}

/// A model, its quantizer, the forward pass of one batch of 16 shapes, and the batch.
fn forward(
    cfg: &RunConfig,
) -> (
    VqVae,
    Box<dyn quantizer::Quantizer>,
    crate::model::ModelOutput,
    burn::tensor::Tensor<4>,
) {
    let dev = Device::flex().autodiff();
    let q = quantizer::build(&cfg.quantizer);
    let model = new_model(cfg, 1, &dev);
    let data = data::shapes(16, 4, 1);
    let idx: Vec<usize> = (0..16).collect();
    let x = batch_tensor(&data.train, &idx, &dev);
    let mut rng = StdRng::seed_from_u64(1);
    let ctx = Context::on(&dev, &mut rng);
    let f = model.forward(x.clone(), q.as_ref(), ctx);
    (model, q, f, x)
}

/// The same, and the loss.
fn forward_loss(cfg: &RunConfig) -> (VqVae, Loss) {
    let (model, q, f, x) = forward(cfg);
    let l = loss(cfg, &model, q.as_ref(), &f, x);
    (model, l)
}

/// Every parameter that should learn moves in one optimizer step; the EMA codebook does not.
#[test]
fn one_step_updates_the_right_parameters() {
    for &q in QuantizerKind::ALL {
        let cfg = tiny(q);
        let (model, l) = forward_loss(&cfg);
        let before = model.export();
        let mut optim = cfg.training.optimizer().init();
        let grads = GradientsParams::from_grads(l.total.backward(), &model);
        let model = optim.step(cfg.lr(), model, grads);
        let after = model.export();
        for (name, (_, v0)) in &before {
            let moved = v0.iter().zip(&after[name].1).any(|(a, b)| a != b);
            // The codebook learns by gradient for vq, rvq and sq (the others move it by EMA /
            // M-step, after the optimizer step); the prior only when learned.
            let by_gradient = matches!(
                q,
                QuantizerKind::Vq | QuantizerKind::Rvq | QuantizerKind::Sq
            );
            let should = !(name == "quantizer.codebook" && !by_gradient) && name != "prior.logits";
            // fsq at initialisation: small z_e round to the grid's centre, so the decoder's
            // first layer may see only zeros (and get no weight gradient) in one step.
            if q == QuantizerKind::Fsq && name == "decoder.conv_in.weight" {
                continue;
            }
            assert_eq!(moved, should, "{q}: parameter {name} moved={moved}");
        }
    }
}

/// compare trains every quantizer from the same initial weights for a given seed.
#[test]
fn same_seed_same_initialisation_across_quantizers() {
    let dev = Device::flex();
    let mk = |q, seed| {
        let mut cfg = tiny(q);
        cfg.training.seed = seed;
        new_model(&cfg, 1, &dev).export()
    };
    assert_eq!(mk(QuantizerKind::Vq, 1), mk(QuantizerKind::SoftEm, 1));
    assert_eq!(mk(QuantizerKind::VqEma, 1), mk(QuantizerKind::SoftEm, 1));
    assert_ne!(mk(QuantizerKind::Vq, 1), mk(QuantizerKind::Vq, 2));
    // And the same data order.
    assert_eq!(epoch_order(100, 1, 0), epoch_order(100, 1, 0));
    assert_ne!(epoch_order(100, 1, 0), epoch_order(100, 1, 1));
}

/// With a rate term and a learned prior, the prior's logits learn, and the rate term reaches
/// the encoder; the loss grows by B times the reported rate.
#[test]
fn rate_term_trains_the_learned_prior() {
    for rate in [RateKind::Vdib, RateKind::Vib] {
        let mut cfg = tiny(QuantizerKind::VqEma);
        cfg.rate.kind = rate;
        cfg.rate.weight = 0.5;
        cfg.rate.prior = PriorKind::Learned;
        let (model, q, f, x) = forward(&cfg);
        let l = loss(&cfg, &model, q.as_ref(), &f, x.clone());
        let mut plain_cfg = cfg.clone();
        plain_cfg.rate.kind = RateKind::None;
        // The same model, forward pass and batch without the rate term (one model: the device's
        // seeded generator is shared by tests running in parallel, so a second model made from
        // the same seed need not be the same).
        let plain = loss(&plain_cfg, &model, q.as_ref(), &f, x);
        let r = l.rate.clone().unwrap().into_scalar::<f32>();
        let diff = l.total.clone().into_scalar::<f32>() - plain.total.into_scalar::<f32>();
        assert!(
            (diff - 0.5 * r).abs() < 1e-5,
            "{rate:?}: {diff} vs {}",
            0.5 * r
        );
        if rate == RateKind::Vdib {
            // Uniform logits at the start: H(p, r) = log K.
            assert!((r - (8f32).ln()).abs() < 1e-4, "{r}");
        }
        let before = model.export();
        let grads = GradientsParams::from_grads(l.total.backward(), &model);
        let model = cfg.training.optimizer().init().step(cfg.lr(), model, grads);
        let after = model.export();
        assert_ne!(
            before["prior.logits"].1, after["prior.logits"].1,
            "{rate:?}: prior did not learn"
        );
        assert_eq!(
            before["quantizer.codebook"].1,
            after["quantizer.codebook"].1
        );
    }
}

/// A training step goes through the bottleneck: the EMA quantizers' codebook moves by their
/// update after the optimizer step, and the step reports typed scalars.
#[test]
fn train_step_moves_the_ema_codebook_and_reports_its_terms() {
    // The seed's three (the family's own loss terms are tested in their files).
    for q in [
        QuantizerKind::Vq,
        QuantizerKind::VqEma,
        QuantizerKind::SoftEm,
    ] {
        let cfg = tiny(q);
        let dev = Device::flex().autodiff();
        let mut b = Bottleneck::new(&cfg.quantizer);
        let mut model = new_model(&cfg, 1, &dev);
        let mut optim = cfg.training.optimizer().init();
        let data = data::shapes(16, 4, 1);
        let idx: Vec<usize> = (0..16).collect();
        let before = model.codebook_values();
        let out = train_step(
            &cfg,
            &mut model,
            &mut optim,
            &mut b,
            batch_tensor(&data.train, &idx, &dev),
            1,
            StepMode::on(&dev, false),
            &mut Pending::default(),
        )
        .unwrap();
        let scalars = out.scalars.expect("the CPU path reads every step");
        assert!(scalars.is_finite());
        assert_eq!(out.indices.unwrap().len(), 16 * 7 * 7);
        assert_ne!(model.codebook_values(), before, "{q}");
        let ema = b.quantizer.ema().map(|e| e.updates);
        assert_eq!(ema, (q != QuantizerKind::Vq).then_some(1), "{q}");
        let expect = scalars.recon
            + scalars.commitment * 0.25
            + if q == QuantizerKind::Vq {
                scalars.codebook
            } else {
                0.0
            };
        assert!((scalars.loss - expect).abs() < 1e-5, "{q}: {scalars:?}");
    }
}

/// A vq-ema run stopped mid-epoch and resumed ends exactly where the uninterrupted run ends: the
/// EMA state is checkpointed in f64 and the optimizer state, data order and sample streams are
/// restored.
#[test]
fn an_interrupted_ema_run_resumes_bit_exactly() {
    let mut cfg = tiny(QuantizerKind::VqEma);
    cfg.data.shapes_train = 64;
    cfg.data.shapes_test = 16;
    cfg.training.batch_size = Some(16);
    cfg.training.epochs = 2;
    cfg.quantizer.dead_code_steps = 2;
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let whole = Trainer::create(cfg.clone(), &a)
        .unwrap()
        .fit(&TrainOptions::default())
        .unwrap();
    let stop = TrainOptions {
        max_steps: Some(6),
        ..Default::default()
    };
    let first = Trainer::create(cfg, &b).unwrap().fit(&stop).unwrap();
    assert!(!first.completed);
    let resumed = Trainer::resume(&b, ResumeOverrides::default())
        .unwrap()
        .fit(&TrainOptions::default())
        .unwrap();
    assert_eq!((whole.step, resumed.step), (8, 8));
    let (x, y) = (whole.eval.unwrap(), resumed.eval.unwrap());
    assert_eq!(x.mse, y.mse);
    assert_eq!(x.histogram, y.histogram);
    let ck = |p: &Path| RunDir::new(p).load_latest().unwrap();
    let (ca, cb) = (ck(&a), ck(&b));
    assert_eq!(ca.tensors, cb.tensors, "weights differ");
    assert_eq!(ca.ema, cb.ema, "EMA state differs");
}

/// The posteriors of `model` on `set`, computed here in f64 from the encoder's vectors, row by
/// row and without the information accumulator: (H(Z), H(Z|I)) of softmax(-d^2 / `tau`) (H(Z)
/// the entropy of the mean posterior, H(Z|I) the mean entropy of a row), and the counts of the
/// nearest codes.
fn posteriors_by_hand(
    model: &VqVae,
    set: &crate::data::ImageSet,
    tau: f64,
    dev: &Device,
) -> ((f64, f64), Vec<u64>) {
    let idx: Vec<usize> = (0..set.n).collect();
    let (z, _) = model.latents(batch_tensor(set, &idx, dev));
    let (k, d) = (model.k(), model.d());
    let codebook = model.codebook_values();
    let (mut mean, mut h_rows, mut nearest) = (vec![0.0f64; k], 0.0f64, vec![0u64; k]);
    let rows = z.len() / d;
    for row in z.chunks_exact(d) {
        let d2: Vec<f64> = codebook
            .chunks_exact(d)
            .map(|e| {
                row.iter()
                    .zip(e)
                    .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                    .sum()
            })
            .collect();
        let best = (0..k).min_by(|&a, &b| d2[a].total_cmp(&d2[b])).unwrap();
        nearest[best] += 1;
        // p_k = exp(-(d2_k - d2_min) / tau) / sum; ln p_k = -(d2_k - d2_min) / tau - ln sum.
        let logits: Vec<f64> = d2.iter().map(|&x| -(x - d2[best]) / tau).collect();
        let ln_sum = logits.iter().map(|l| l.exp()).sum::<f64>().ln();
        for (m, &l) in mean.iter_mut().zip(&logits) {
            let (ln_p, p) = (l - ln_sum, (l - ln_sum).exp());
            *m += p / rows as f64;
            h_rows -= p * ln_p / rows as f64;
        }
    }
    let h_mean = -mean
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f64>();
    ((h_mean, h_rows), nearest)
}

/// Sets the codebook of `model` to K of its latent vectors on `set`, each the farthest from those
/// already taken: distinct codewords that the data use (a new model's random codebook may be
/// nearest to every vector by one codeword).
fn spread_codebook(model: &mut VqVae, set: &crate::data::ImageSet, dev: &Device) {
    let idx: Vec<usize> = (0..set.n).collect();
    let (z, _) = model.latents(batch_tensor(set, &idx, dev));
    let d = model.d();
    let rows: Vec<&[f32]> = z.chunks_exact(d).collect();
    let dist = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum()
    };
    let mut taken = vec![0usize];
    while taken.len() < model.k() {
        let next = (0..rows.len())
            .max_by(|&a, &b| {
                let near = |i: usize| {
                    taken
                        .iter()
                        .map(|&t| dist(rows[i], rows[t]))
                        .fold(f64::INFINITY, f64::min)
                };
                near(a).total_cmp(&near(b))
            })
            .unwrap();
        taken.push(next);
    }
    let values = taken.iter().flat_map(|&t| rows[t].to_vec()).collect();
    model.set_codebook(values, dev);
}

/// H in nats of the distribution `counts` / sum.
fn entropy_of_counts(counts: &[u64]) -> f64 {
    let n = counts.iter().sum::<u64>() as f64;
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64 / n * (c as f64 / n).ln())
        .sum::<f64>()
}

/// The seed's estimators on a model: for a hard quantizer the own-posterior expectation is the
/// hard decode (standard error 0), equal to the evaluation's distortion up to the rounding of the
/// straight-through estimator; for soft EM the own posterior is the soft one; the objectives are
/// the distortion plus beta L times their rate, the rates checked against the posteriors
/// recomputed here ([`posteriors_by_hand`]) under the model's uniform prior r = 1/K:
/// H(p(Z|I), r) = ln K, KL(p(Z|I) || r) = ln K - H(Z|I), and with r = p(z) the KL term is
/// I(I;Z) = H(Z) - H(Z|I) (for a hard posterior H(Z|I) = 0 and H(Z) is the code histogram's);
/// and I(Z;Y) is measured on the labelled shapes.
#[test]
fn expectations_and_relevance_of_an_evaluation() {
    let dev = Device::flex();
    let data = data::shapes(8, 24, 3);
    for q in [QuantizerKind::Vq, QuantizerKind::SoftEm] {
        let mut cfg = tiny(q);
        cfg.quantizer.temperature = 0.05;
        let mut model = new_model(&cfg, 1, &dev);
        spread_codebook(&mut model, &data.test, &dev);
        let m = evaluate(&cfg, &model, &data.test, 10, &dev).unwrap();
        let e = expectations(&cfg, &model, &data.test, 10, &dev, 6, &m).unwrap();
        let close =
            |a: f64, b: f64, tol: f64| assert!((a - b).abs() <= tol * b.abs(), "{a} vs {b}");
        // The rates of the objectives, nats a latent vector, against the posteriors by hand.
        assert_eq!(m.latents, 49, "28x28 shapes, 7x7 latents");
        let l = 0.25 * 49.0;
        let ln_k = 8f64.ln();
        let ((soft_h_z, soft_h_zi), nearest) =
            posteriors_by_hand(&model, &data.test, cfg.quantizer.temperature, &dev);
        let (own_h_z, own_h_zi) = if q == QuantizerKind::Vq {
            // The evaluation's code histogram is the nearest codes' (a code moved by rounding at
            // a near tie at most).
            let moved: u64 = m
                .histogram
                .iter()
                .zip(&nearest)
                .map(|(&a, &b)| a.abs_diff(b))
                .sum();
            assert!(moved <= 2, "{q}: {:?} vs {nearest:?}", m.histogram);
            (entropy_of_counts(&m.histogram), 0.0)
        } else {
            (soft_h_z, soft_h_zi)
        };
        let rate = |objective: f64, distortion: f64, want: f64, what: &str| {
            let got = (objective - distortion) / l;
            assert!(
                (got - want).abs() < 1e-6,
                "{q} {what}: rate {got}, by hand {want}"
            );
        };
        rate(e.l_vdib, e.distortion.mean, ln_k, "E L_VDIB");
        rate(e.l_vib, e.distortion.mean, ln_k - own_h_zi, "E L_VIB");
        rate(
            e.l_marginal,
            e.distortion.mean,
            own_h_z - own_h_zi,
            "E L (r = p(z))",
        );
        rate(e.soft_l_vdib, e.soft_distortion.mean, ln_k, "soft E L_VDIB");
        rate(
            e.soft_l_vib,
            e.soft_distortion.mean,
            ln_k - soft_h_zi,
            "soft E L_VIB",
        );
        rate(
            e.soft_l_marginal,
            e.soft_distortion.mean,
            soft_h_z - soft_h_zi,
            "soft E L (r = p(z))",
        );
        rate(m.l_vdib, m.distortion, ln_k, "L_VDIB");
        rate(m.l_vib, m.distortion, ln_k - own_h_zi, "L_VIB");
        rate(m.soft_l_vib, m.distortion, ln_k - soft_h_zi, "soft L_VIB");
        assert!(
            soft_h_zi > 1e-3,
            "{q}: the soft posterior spreads: {soft_h_zi}"
        );
        assert!(e.soft_distortion.se > 0.0, "{q}: sampled maps vary: {e:?}");
        if q == QuantizerKind::Vq {
            assert_eq!(e.distortion.se, 0.0);
            close(e.distortion.mean, m.distortion, 1e-5);
            close(e.mse.mean, m.mse, 1e-4);
        } else {
            assert_eq!(
                e.distortion, e.soft_distortion,
                "soft EM's own posterior is the soft one"
            );
        }
        // Batches of 10 and of 24 give the same estimate: the draws depend on the batch seed, so
        // compare through the standard errors.
        let e2 = expectations(&cfg, &model, &data.test, 24, &dev, 6, &m).unwrap();
        let se = (e.soft_distortion.se.powi(2) + e2.soft_distortion.se.powi(2)).sqrt();
        assert!((e.soft_distortion.mean - e2.soft_distortion.mean).abs() < 5.0 * se + 1e-9);
        let r = m.relevance.as_ref().expect("shapes carry labels");
        let sr = m.soft_relevance.as_ref().unwrap();
        assert_eq!(r.classes, data.test.classes().unwrap());
        for x in [r, sr] {
            assert!(x.i_zy >= -1e-12 && x.i_zy <= x.h_y + 1e-12, "{x:?}");
            close(
                x.i_zy + x.h_z_given_y,
                if std::ptr::eq(x, r) {
                    m.assigned.h_z
                } else {
                    m.soft.h_z
                },
                1e-9,
            );
        }
    }
    // One draw gives no standard error: refused.
    let cfg = tiny(QuantizerKind::Vq);
    let model = new_model(&cfg, 1, &dev);
    let m = evaluate(&cfg, &model, &data.test, 10, &dev).unwrap();
    assert!(expectations(&cfg, &model, &data.test, 10, &dev, 1, &m).is_err());
}

/// Steps of `cfg` on the 16 shapes from `model`'s weights: the loss terms and codebook after each.
fn run_steps(cfg: &RunConfig, resident: bool, reads: &[bool]) -> Vec<(Option<Scalars>, Vec<f32>)> {
    let dev = Device::flex().autodiff();
    let mut b = Bottleneck::new(&cfg.quantizer);
    let mut model = new_model(cfg, 1, &dev);
    let mut optim = cfg.training.optimizer().init();
    let data = data::shapes(16, 4, 1);
    let idx: Vec<usize> = (0..16).collect();
    let mut pending = Pending::default();
    let mut out = Vec::new();
    for (s, &read) in reads.iter().enumerate() {
        let x = batch_tensor(&data.train, &idx, &dev);
        let mode = StepMode { read, resident };
        let o = train_step(
            cfg,
            &mut model,
            &mut optim,
            &mut b,
            x,
            s as u64 + 1,
            mode,
            &mut pending,
        )
        .unwrap();
        out.push((o.scalars, model.codebook_values()));
    }
    b.sync();
    if let (Some(e), Some(t)) = (b.quantizer.ema(), &b.dead_codes) {
        assert_eq!(e.updates, reads.len() as u64, "EMA updates");
        assert!(t.last_used.iter().all(|&l| l <= reads.len() as u64));
    }
    out
}

/// Four steps on the host path and on the resident one (reading at the first and the last):
/// the same losses and codebooks, and nothing reported by the steps that do not read.
fn host_and_resident_agree(cfg: &RunConfig) {
    let q = cfg.quantizer.kind;
    let host = run_steps(cfg, false, &[true; 4]);
    let dev = run_steps(cfg, true, &[true, false, false, true]);
    assert!(dev[1].0.is_none() && dev[2].0.is_none());
    for (s, (a, b)) in host.iter().zip(&dev).enumerate() {
        if let (Some(x), Some(y)) = (a.0, b.0) {
            assert!(
                (x.loss - y.loss).abs() < 1e-4 * x.loss.abs(),
                "{q} step {s}: {x} vs {y}"
            );
        }
        let diff =
            a.1.iter()
                .zip(&b.1)
                .filter(|(u, v)| (*u - *v).abs() > 1e-4)
                .count();
        assert_eq!(diff, 0, "{q} step {s}: codebook values differ");
    }
}

/// The device-resident step (tensor operations: nearest codeword, EMA update, dead-code
/// restarts, soft EM's sampler and M-step) gives the host step's losses and codebooks for the
/// deterministic quantizers; a step that does not read reports nothing and the next reading
/// step catches nothing wrong; soft EM's resident step learns.
#[test]
fn the_resident_step_matches_the_host_step() {
    for q in [QuantizerKind::Vq, QuantizerKind::VqEma] {
        let mut cfg = tiny(q);
        // The tracker runs (restarts themselves are compared in the quantizer's tests, since
        // the two paths draw their rows differently); no code stays unused for 100 steps.
        cfg.quantizer.dead_code_steps = 100;
        cfg.rate.kind = RateKind::Vib;
        cfg.rate.prior = PriorKind::Learned;
        cfg.rate.weight = 0.1;
        host_and_resident_agree(&cfg);
    }
    // The family's newer members: their forward passes are tensor operations on both paths
    // (rvq's search by the host kernel or on the device), so the paths agree step by step.
    for q in [
        QuantizerKind::Fsq,
        QuantizerKind::Lfq,
        QuantizerKind::Rvq,
        QuantizerKind::Sq,
    ] {
        host_and_resident_agree(&tiny(q));
    }
    // rvq with its EMA update and the dead-code tracker: the residuals' moving averages on the
    // device are the host's.
    let mut cfg = tiny(QuantizerKind::Rvq);
    cfg.quantizer.update = Some(crate::quantizer::config::CodebookUpdate::Ema);
    cfg.quantizer.dead_code_steps = 100;
    let moved = run_steps(&cfg, false, &[true; 2]);
    assert_ne!(moved[0].1, moved[1].1, "the EMA moves rvq's codebooks");
    host_and_resident_agree(&cfg);
    let cfg = tiny(QuantizerKind::SoftEm);
    let dev = run_steps(&cfg, true, &[true, false, true, true]);
    let first = dev[0].0.unwrap();
    let last = dev[3].0.unwrap();
    assert!(
        last.is_finite() && last.loss < first.loss,
        "{first} -> {last}"
    );
    assert_ne!(dev[0].1, dev[3].1, "the M-step moves the codebook");
}

/// A non-finite loss on a step that does not read is reported by the next step that does (or by
/// the check a checkpoint makes), naming the first unread step.
#[test]
fn an_unread_non_finite_loss_is_caught_at_the_next_read() {
    let mut cfg = tiny(QuantizerKind::VqEma);
    cfg.training.lr = Some(1e30);
    let dev = Device::flex().autodiff();
    let mut b = Bottleneck::new(&cfg.quantizer);
    let mut model = new_model(&cfg, 1, &dev);
    let mut optim = cfg.training.optimizer().init();
    let data = data::shapes(16, 4, 1);
    let idx: Vec<usize> = (0..16).collect();
    let mut pending = Pending::default();
    let mut caught = None;
    for step in 1..=6 {
        if step == 6 {
            // What a checkpoint after the unread steps finds (a run stopped between logs).
            let found = pending
                .clone()
                .check()
                .expect("non-finite losses were counted");
            assert!(found.contains("from step 1 on"), "{found}");
        }
        let x = batch_tensor(&data.train, &idx, &dev);
        let mode = StepMode {
            read: step == 6,
            resident: true,
        };
        if let Err(d) = train_step(
            &cfg,
            &mut model,
            &mut optim,
            &mut b,
            x,
            step,
            mode,
            &mut pending,
        ) {
            caught = Some((step, d));
        }
    }
    let (step, d) = caught.expect("the divergence is caught");
    assert_eq!(step, 6);
    assert!(d.unread_non_finite > 0 && d.since == Some(1), "{d}");
    assert!(d.to_string().contains("from step 1 on"), "{d}");
}

/// The evaluation streamed on the device (tensor operations, one read) gives the host
/// evaluation's information quantities, relevance, histogram and loss terms; for the hard
/// quantizers also its reconstruction error and loss terms (soft EM's decodes draw their samples
/// differently).
#[test]
fn the_resident_evaluation_matches_the_host_evaluation() {
    let data = data::shapes(16, 24, 3);
    for q in [QuantizerKind::VqEma, QuantizerKind::SoftEm] {
        let mut cfg = tiny(q);
        cfg.quantizer.temperature = 0.5;
        let dev = Device::flex();
        let model = new_model(&cfg, 1, &dev.clone().autodiff());
        let host = evaluate_on(&cfg, &model, &data.test, 10, &dev, false).unwrap();
        let res = evaluate_on(&cfg, &model, &data.test, 10, &dev, true).unwrap();
        let close = |a: f64, b: f64, what: &str| {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                "{q} {what}: {a} vs {b}"
            );
        };
        for (x, y, name) in [
            (&host.assigned, &res.assigned, "own"),
            (&host.soft, &res.soft, "soft"),
        ] {
            assert_eq!((x.n, x.codes_used), (y.n, y.codes_used), "{q} {name}");
            close(x.h_z, y.h_z, "H(Z)");
            close(x.h_z_given_i, y.h_z_given_i, "H(Z|I)");
            close(x.mutual_info, y.mutual_info, "I(I;Z)");
            close(x.cross_entropy, y.cross_entropy, "H(p, r)");
            close(x.kl, y.kl, "KL");
        }
        for (x, y) in [
            (&host.relevance, &res.relevance),
            (&host.soft_relevance, &res.soft_relevance),
        ] {
            let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
            close(x.i_zy, y.i_zy, "I(Z;Y)");
            close(
                x.argmax_i_zy_miller_madow,
                y.argmax_i_zy_miller_madow,
                "I(Z;Y) MM",
            );
            close(x.h_y, y.h_y, "H(Y)");
        }
        assert_eq!(host.histogram, res.histogram, "{q}");
        if q != QuantizerKind::SoftEm {
            close(host.mse, res.mse, "mse");
            close(host.commitment_loss, res.commitment_loss, "commitment");
        }
    }
}
