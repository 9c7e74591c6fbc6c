//! Behaviour kept across the restructure of the crate: runs written by the vqib of commit ebb1551
//! (flat `config.json`, EMA state in f32) still load, evaluate and resume, and fixed-seed runs on
//! `shapes` give the metrics that version gave. The fixtures under `tests/fixtures/` were written
//! by that version's binary; `tests/fixtures/README.md` gives the commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use vqib::RunConfig;
use vqib::quantizer::QuantizerKind;
use vqib::train::{EvalMetrics, TrainOptions, Trainer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn vqib(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vqib"))
        .args(args)
        .output()
        .expect("vqib runs")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn read_eval(p: &Path) -> EvalMetrics {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Every number two evaluations report agrees to f32 round-off; the code histograms are equal.
fn assert_same(what: &str, a: &EvalMetrics, b: &EvalMetrics) {
    let close = |name: &str, x: f64, y: f64| {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1e-3),
            "{what}: {name} {x} vs {y}"
        );
    };
    close("mse", a.mse, b.mse);
    close("distortion", a.distortion, b.distortion);
    close("perplexity", a.perplexity, b.perplexity);
    close("codebook_loss", a.codebook_loss, b.codebook_loss);
    close("commitment_loss", a.commitment_loss, b.commitment_loss);
    close("l_vib", a.l_vib, b.l_vib);
    close("l_vdib", a.l_vdib, b.l_vdib);
    close("soft_l_vib", a.soft_l_vib, b.soft_l_vib);
    close(
        "h_z_given_i",
        a.assigned.h_z_given_i,
        b.assigned.h_z_given_i,
    );
    close("soft.mutual_info", a.soft.mutual_info, b.soft.mutual_info);
    close(
        "soft.cross_entropy",
        a.soft.cross_entropy,
        b.soft.cross_entropy,
    );
    assert_eq!(a.codes_used, b.codes_used, "{what}: codes used");
    assert_eq!(a.histogram, b.histogram, "{what}: code histogram");
}

/// A run directory written by the earlier vqib evaluates and resumes to the numbers that version
/// reached.
#[test]
fn runs_written_before_the_restructure_evaluate_and_resume() {
    for name in ["run-vq-ema", "run-soft-em"] {
        evaluates_and_resumes_as_written(&fixtures().join(name));
    }
}

/// Runs written by the version before the quantizer family (commit 1d4a669: nested
/// `config.json` with K and D as numbers, the codebook as a parameter of the model, f64 EMA
/// state; `tests/fixtures/make-before-family.sh`) evaluate and resume to that version's numbers.
#[test]
fn runs_written_before_the_quantizer_family_evaluate_and_resume() {
    for name in ["run-vq", "run-vq-ema"] {
        evaluates_and_resumes_as_written(&fixtures().join("before-family").join(name));
    }
}

/// `vqib eval` and `vqib resume` of a copy of the run `src` give its `expected-eval.json` and
/// `expected-resumed-eval.json`.
fn evaluates_and_resumes_as_written(src: &Path) {
    let name = src.file_name().unwrap().to_str().unwrap();
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join(name);
    copy_dir(src, &run);
    let o = vqib(&["eval", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_eval(&run.join("eval.json"));
    assert_same(
        &format!("{name} eval"),
        &got,
        &read_eval(&src.join("expected-eval.json")),
    );
    let o = vqib(&["resume", run.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read_eval(&run.join("eval.json"));
    let want = read_eval(&src.join("expected-resumed-eval.json"));
    assert_same(&format!("{name} resumed"), &got, &want);
    // The resumed run's config.json is still read (whichever layout it has).
    RunConfig::load(&run.join("config.json")).unwrap();
}

/// The configuration of the fixed-seed runs (as `tests/fixtures/README.md` gives it on the command
/// line of the earlier version).
fn fixed_seed_config(q: QuantizerKind) -> RunConfig {
    let mut c = RunConfig::default();
    c.data.shapes_train = 256;
    c.data.shapes_test = 64;
    c.quantizer.kind = q;
    c.quantizer.codebook_size = Some(16);
    c.quantizer.code_dim = Some(4);
    c.model.hidden = Some(8);
    c.training.batch_size = Some(32);
    c.training.epochs = 1;
    c.training.lr = Some(1e-3);
    c.training.seed = 5;
    // The default then (shapes now defaults to a k-means codebook).
    c.quantizer.init = Some(vqib::quantizer::init::CodebookInit::Uniform);
    c
}

/// Fixed-seed runs of every quantizer reach the metrics the earlier version reached.
#[test]
fn fixed_seed_runs_match_the_earlier_version() {
    // The quantizers the earlier version had (the family's newer members have no baseline).
    for q in [
        QuantizerKind::Vq,
        QuantizerKind::VqEma,
        QuantizerKind::SoftEm,
    ] {
        let d = tempfile::tempdir().unwrap();
        let out = Trainer::create(fixed_seed_config(q), &d.path().join("run"))
            .unwrap()
            .fit(&TrainOptions::default())
            .unwrap();
        let want = read_eval(&fixtures().join(format!("baseline/{q}.eval.json")));
        assert_same(&format!("{q}"), &out.eval.unwrap(), &want);
    }
}
