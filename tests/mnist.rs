//! Training on a slice of the real MNIST files (`../shared/data/mnist`, or `$VQIB_MNIST_DIR`).

use burn::tensor::Device;
mod common;
use common::mnist_dir;
use vqib::config::{CodebookInit, QuantizerKind, RunConfig};
use vqib::data::DatasetKind;
use vqib::train::{self, TrainOptions};

fn config(quantizer: QuantizerKind) -> RunConfig {
    RunConfig {
        dataset: DatasetKind::Mnist,
        data_dir: Some(mnist_dir()),
        train_limit: 9600,
        test_limit: 1000,
        quantizer,
        codebook_size: 128,
        code_dim: 16,
        hidden: 32,
        batch_size: 32,
        lr: 1e-3,
        epochs: 1,
        log_every: 50,
        seed: 3,
        ..Default::default()
    }
}

/// Test MSE of an untrained model with the same configuration.
fn untrained_mse(cfg: &RunConfig) -> f64 {
    let data = train::load_data(cfg).unwrap();
    let dev = Device::flex();
    let model = train::new_model(cfg, 1, &dev);
    train::evaluate(cfg, &model, &data.test, 250, &dev)
        .unwrap()
        .mse
}

#[test]
fn vq_and_vq_ema_learn_on_mnist() {
    for q in [QuantizerKind::Vq, QuantizerKind::VqEma] {
        let cfg = config(q);
        let before = untrained_mse(&cfg);
        let d = tempfile::tempdir().unwrap();
        let out =
            train::train_new(cfg.clone(), &d.path().join("run"), &TrainOptions::default()).unwrap();
        assert_eq!(out.step, 300);
        let m = out.eval.unwrap();
        eprintln!(
            "{q:?}: test MSE {before:.4} -> {:.4}, perplexity {:.1}, codes used {}",
            m.mse, m.perplexity, m.codes_used
        );
        assert!(
            m.mse < 0.35 * before,
            "{q:?}: test MSE {} not well below untrained {before}",
            m.mse
        );
        assert!(m.perplexity >= 1.0 && m.perplexity <= cfg.codebook_size as f64);
        // The training loss fell: last logged reconstruction error well below the first.
        let recs = vqib::report::read_records(&out.run_dir.join("metrics.jsonl")).unwrap();
        let train: Vec<_> = recs.iter().filter(|r| r.kind == "train").collect();
        let (first, last) = (
            train[0].recon_mse.unwrap(),
            train.last().unwrap().recon_mse.unwrap(),
        );
        assert!(last < 0.5 * first, "{q:?}: train recon {first} -> {last}");
    }
}

#[test]
fn kmeans_init_and_dead_code_restart_use_more_than_a_fifth_of_the_codes() {
    let mut cfg = config(QuantizerKind::Vq);
    cfg.init = CodebookInit::Kmeans;
    cfg.dead_code_steps = 20;
    let d = tempfile::tempdir().unwrap();
    let out =
        train::train_new(cfg.clone(), &d.path().join("run"), &TrainOptions::default()).unwrap();
    let m = out.eval.unwrap();
    let recs = vqib::report::read_records(&out.run_dir.join("metrics.jsonl")).unwrap();
    let restarts = recs.iter().filter_map(|r| r.restarts).max().unwrap_or(0);
    eprintln!(
        "kmeans+restart: codes used {} / {}, perplexity {:.1}, restarts {restarts}",
        m.codes_used, cfg.codebook_size, m.perplexity
    );
    assert!(
        m.codes_used * 5 > cfg.codebook_size,
        "only {} of {} codes used",
        m.codes_used,
        cfg.codebook_size
    );
    // Restarts are counted in the metrics.
    assert!(recs.iter().any(|r| r.restarts.is_some()));
}
