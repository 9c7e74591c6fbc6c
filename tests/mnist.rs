//! Training on a slice of the real MNIST files (`../shared/data/mnist`, or `$VQIB_MNIST_DIR`).

use burn::tensor::Device;
mod common;
use common::mnist_dir;
use vqib::RunConfig;
use vqib::data::DatasetKind;
use vqib::quantizer::{CodebookInit, QuantizerKind};
use vqib::train::{self, TrainOptions, Trainer};

fn config(quantizer: QuantizerKind, mnist: &std::path::Path) -> RunConfig {
    let mut c = RunConfig::default();
    c.data.dataset = DatasetKind::Mnist;
    c.data.data_dir = Some(mnist.to_path_buf());
    c.data.train_limit = 9600;
    c.data.test_limit = 1000;
    c.quantizer.kind = quantizer;
    c.quantizer.codebook_size = Some(128);
    c.quantizer.code_dim = Some(16);
    c.model.hidden = Some(32);
    c.training.batch_size = Some(32);
    c.training.lr = Some(1e-3);
    c.training.epochs = 1;
    c.training.log_every = 50;
    c.training.seed = 3;
    c.resolve().unwrap()
}

fn train_new(cfg: RunConfig, dir: &std::path::Path) -> train::TrainOutcome {
    Trainer::create(cfg, dir)
        .unwrap()
        .fit(&TrainOptions::default())
        .unwrap()
}

/// Test MSE of an untrained model with the same configuration.
fn untrained_mse(cfg: &RunConfig) -> f64 {
    let data = cfg.data.load(cfg.training.seed).unwrap();
    let dev = Device::flex();
    let model = train::new_model(cfg, 1, &dev);
    train::evaluate(cfg, &model, &data.test, 250, &dev)
        .unwrap()
        .mse
}

#[test]
fn vq_and_vq_ema_learn_on_mnist() {
    let Some(mnist) = mnist_dir() else { return };
    for q in [QuantizerKind::Vq, QuantizerKind::VqEma] {
        let cfg = config(q, &mnist);
        let before = untrained_mse(&cfg);
        let d = tempfile::tempdir().unwrap();
        let out = train_new(cfg.clone(), &d.path().join("run"));
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
        assert!(m.perplexity >= 1.0 && m.perplexity <= cfg.quantizer.codebook_size() as f64);
        // The training loss fell: last logged reconstruction error well below the first.
        let recs = vqib::records::read_records(&out.run_dir.join("metrics.jsonl")).unwrap();
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
    let Some(mnist) = mnist_dir() else { return };
    let mut cfg = config(QuantizerKind::Vq, &mnist);
    cfg.quantizer.init = Some(CodebookInit::Kmeans);
    cfg.quantizer.dead_code_steps = 20;
    let d = tempfile::tempdir().unwrap();
    let out = train_new(cfg.clone(), &d.path().join("run"));
    let m = out.eval.unwrap();
    let recs = vqib::records::read_records(&out.run_dir.join("metrics.jsonl")).unwrap();
    let restarts = recs.iter().filter_map(|r| r.restarts).max().unwrap_or(0);
    eprintln!(
        "kmeans+restart: codes used {} / {}, perplexity {:.1}, restarts {restarts}",
        m.codes_used,
        cfg.quantizer.codebook_size(),
        m.perplexity
    );
    assert!(
        m.codes_used * 5 > cfg.quantizer.codebook_size(),
        "only {} of {} codes used",
        m.codes_used,
        cfg.quantizer.codebook_size()
    );
    // Codes unused for 20 steps were restarted, and the metrics count them: the count never
    // falls from one record to the next.
    assert!(restarts > 0, "no dead code was restarted");
    let counts: Vec<u64> = recs.iter().filter_map(|r| r.restarts).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
}
