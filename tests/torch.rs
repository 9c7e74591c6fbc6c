//! Every quantizer's checkpoint loads into PyTorch modules named as the README's tensor table
//! (`load_state_dict(strict=True)`, `bench/reference/load_checkpoint.py`), and the codes PyTorch
//! computes by the README's definitions from the loaded tensors are vqib's, code for code.
//!
//! Needs a Python with torch: `VQIB_TORCH_PYTHON`, else `bench/.venv/bin/python` (what
//! `bench/compare` installs). Without one the test prints a notice and passes;
//! `VQIB_REQUIRE_TORCH=1` makes it fail instead.

use std::path::PathBuf;
use std::process::Command;

use vqib::config::RunConfig;
use vqib::quantizer::QuantizerKind;
use vqib::run::RunDir;
use vqib::train::{TrainOptions, Trainer, load_run};

fn torch_python() -> Option<PathBuf> {
    let candidates = std::env::var_os("VQIB_TORCH_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/.venv/bin/python")]);
    for p in candidates {
        let ok = Command::new(&p)
            .args(["-c", "import torch"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    None
}

#[test]
fn every_quantizer_loads_strictly_in_pytorch_and_codes_alike() {
    let Some(py) = torch_python() else {
        assert!(
            std::env::var_os("VQIB_REQUIRE_TORCH").is_none(),
            "VQIB_REQUIRE_TORCH is set but no Python with torch was found"
        );
        eprintln!(
            "skipped: no Python with torch (set VQIB_TORCH_PYTHON, or run bench/compare once)"
        );
        return;
    };
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/reference/load_checkpoint.py");
    let tmp = tempfile::tempdir().unwrap();
    let mut rvq_ema = vqib::quantizer::QuantizerConfig::small(QuantizerKind::Rvq, 16);
    rvq_ema.update = Some(vqib::quantizer::config::CodebookUpdate::Ema);
    let configs = QuantizerKind::ALL
        .iter()
        .map(|&q| vqib::quantizer::QuantizerConfig::small(q, 16))
        .chain([rvq_ema]);
    for (i, qc) in configs.enumerate() {
        let q = qc.kind;
        let mut cfg = RunConfig::default();
        cfg.quantizer = qc;
        cfg.model.hidden = Some(8);
        cfg.data.shapes_train = 64;
        cfg.data.shapes_test = 16;
        cfg.training.epochs = 1;
        cfg.training.eval_samples = 0;
        let dir = tmp.path().join(format!("{i}-{}", q.name()));
        Trainer::create(cfg, &dir)
            .unwrap()
            .fit(&TrainOptions::default())
            .unwrap();
        // Latent rows spread over the code space, and the codes vqib gives them.
        let (cfg, model, _, _) = load_run(&RunDir::new(&dir), None).unwrap();
        let d = cfg.quantizer.code_dim();
        let z = vqib::bench::normal(40 * d, 7);
        let quantizer = vqib::quantizer::build(&cfg.quantizer);
        let codes = quantizer.codes(&z, &model.quantizer);
        let rows: Vec<&[f32]> = z.chunks(d).collect();
        let latents = dir.join("latents.json");
        std::fs::write(
            &latents,
            serde_json::json!({"z": rows, "codes": codes}).to_string(),
        )
        .unwrap();
        let o = Command::new(&py)
            .arg(&script)
            .arg(&dir)
            .arg(&latents)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{q}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains("\"codes_match\": true"), "{q}: {out}");
    }
}
