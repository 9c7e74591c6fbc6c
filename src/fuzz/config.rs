//! The run configuration (`config.json`, sectioned and flat) and the metrics log
//! (`metrics.jsonl`).

use std::path::Path;

use super::harness::{ALLOC_BOUND, Tally, probe};
use super::mutator::Mutator;
use crate::config::RunConfig;
use crate::quantizer::QuantizerKind;

fn config_seed() -> String {
    let mut cfg = RunConfig::default();
    cfg.quantizer.kind = QuantizerKind::SoftEm;
    cfg.quantizer.codebook_size = Some(16);
    serde_json::to_string_pretty(&cfg.resolve().unwrap()).unwrap()
}

/// What in an accepted configuration would make a run allocate more than [`ALLOC_BOUND`] (or
/// overflow computing it), if anything.
fn oversized(c: &RunConfig) -> Option<String> {
    let bound = ALLOC_BOUND as u128;
    let (q, m, d, t) = (&c.quantizer, &c.model, &c.data, &c.training);
    let checks = [
        (
            "codebook K x D x 8 bytes",
            q.codebook_size() as u128 * q.code_dim() as u128 * 8,
        ),
        (
            "hidden x hidden x 16 x 4 bytes",
            m.hidden.unwrap_or(0) as u128 * m.hidden.unwrap_or(0) as u128 * 64,
        ),
        (
            "batch x 32 x 32 x 3 x 4 bytes",
            t.batch_size.unwrap_or(0) as u128 * 12_288,
        ),
        (
            "samples x batch x 4 bytes",
            q.samples as u128 * t.batch_size.unwrap_or(0) as u128 * 4,
        ),
        ("shapes_train x 784 bytes", d.shapes_train as u128 * 784),
        ("shapes_test x 784 bytes", d.shapes_test as u128 * 784),
        (
            "eval_samples x 4 bytes (the codes drawn for one latent)",
            t.eval_samples as u128 * 4,
        ),
    ];
    checks
        .iter()
        .find(|(_, v)| *v > bound)
        .map(|(what, v)| format!("{what} = {v}"))
}

#[test]
fn fuzz_run_config() {
    let d = tempfile::tempdir().unwrap();
    let seed = config_seed();
    // The flat layout of earlier versions is a second seed.
    let flat: serde_json::Value = serde_json::from_str(&seed).unwrap();
    let mut flat_map = serde_json::Map::new();
    for (_, section) in flat.as_object().unwrap() {
        if let Some(o) = section.as_object() {
            flat_map.extend(o.clone());
        }
    }
    let flat = serde_json::to_string(&flat_map).unwrap();
    let p = d.path().join("config.json");
    std::fs::write(&p, &seed).unwrap();
    RunConfig::load(&p).unwrap();
    let mut m = Mutator::new(0xc0f);
    let mut t = Tally::new("RunConfig::load / from_json");
    let (mut huge, mut first_huge) = (0, String::new());
    for case in 0..1000 {
        let base = if case % 5 == 4 { &flat } else { &seed };
        let (bytes, desc) = if case % 3 == 2 {
            m.bytes(base.as_bytes(), &[])
        } else {
            m.json(base)
        };
        std::fs::write(&p, &bytes).unwrap();
        let mut cfg = None;
        if case % 2 == 0 {
            let pr = probe(|| RunConfig::load(&p).map(|c| cfg = Some(c)));
            let _ = t.check(pr, &desc, &bytes, &["config.json"], false);
        } else {
            let text = String::from_utf8_lossy(&bytes);
            let origin = Path::new("/some/run/config.json");
            let pr = probe(|| RunConfig::from_json(&text, origin).map(|c| cfg = Some(c)));
            let _ = t.check(pr, &desc, &bytes, &["/some/run/config.json"], false);
        }
        // Reading is bounded; an accepted configuration that asks a run for more memory than the
        // machine has is refused by the memory check that training and evaluation make before
        // they allocate.
        if let Some(c) = cfg.as_ref()
            && let Some(what) = oversized(c)
        {
            huge += 1;
            if first_huge.is_empty() {
                first_huge = format!("{desc}: {what}");
            }
            let shape = c.data.image_shape.unwrap_or([1, 28, 28]);
            assert!(
                c.check_memory(shape, 0).is_err(),
                "{desc}: {what} passes the memory check"
            );
        }
    }
    t.report();
    eprintln!(
        "fuzz RunConfig: {huge} accepted configurations ask for huge allocations, all refused by the memory check{}",
        if first_huge.is_empty() {
            String::new()
        } else {
            format!(" (first: {first_huge})")
        }
    );
    assert!(t.accepted > 0 && t.rejected > 0);
}

/// Bytes a run of `c` on `images` images of `shape` holds at once, at the least, by part: each
/// part a lower bound (one f32 conv layer, the first activation, the drawn codes as u32, ...),
/// computed in `f64` so that no product wraps. `test` is the number of test images.
fn least_memory(
    c: &RunConfig,
    [ch, h, w]: [usize; 3],
    images: usize,
    test: usize,
) -> Vec<(&'static str, f64)> {
    let (q, t) = (&c.quantizer, &c.training);
    let (ch, h, w) = (ch as f64, h as f64, w as f64);
    let (hid, k, dim, b) = (
        c.hidden() as f64,
        q.codebook_size() as f64,
        q.code_dim() as f64,
        c.batch_size() as f64,
    );
    // Latent vectors of one image (the model downsamples by 4).
    let grid = (h / 4.0).floor() * (w / 4.0).floor();
    // The final evaluation's batches: at least 256 images, at most the test split.
    let eval_images = b.max(256.0).min(test as f64);
    let mut parts = vec![
        ("the images (u8)", images as f64 * ch * h * w),
        ("the codebook (K x D f32)", 4.0 * k * dim),
        ("one hidden x hidden 4x4 conv (f32)", 64.0 * hid * hid),
        (
            "the first activation of a batch (f32)",
            4.0 * b * hid * (h / 2.0).floor() * (w / 2.0).floor(),
        ),
        ("the latents of a batch (f32)", 4.0 * b * grid * dim),
    ];
    if t.eval_samples >= 2 {
        parts.push((
            "the code maps of the expected distortion (eval_samples x latents, u32)",
            4.0 * t.eval_samples as f64 * eval_images * grid,
        ));
    }
    if q.kind == QuantizerKind::SoftEm {
        parts.push((
            "the codes drawn for a batch (samples x latents, u32)",
            4.0 * q.samples as f64 * b * grid,
        ));
        parts.push((
            "the codes drawn for an evaluation batch (samples x latents, u32)",
            4.0 * q.samples as f64 * eval_images * grid,
        ));
    }
    parts
}

/// Huge counts on every value of the run configuration that sizes memory or the step count,
/// one at a time, for a hard and a soft quantizer: `resolve` and `check_memory` (what `train`
/// does before it allocates) either refuse the configuration or describe a run that fits: its
/// least memory ([`least_memory`]) within what the machine has, and its step count
/// (epochs x batches an epoch) within a u64. Never a panic or an allocation over the bound.
/// Every failing case is listed before the test fails.
#[test]
fn fuzz_run_config_huge_counts() {
    use crate::data::DatasetKind;
    use crate::error::InputError;
    type Set = fn(&mut RunConfig, usize);
    let fields: [(&str, Set); 14] = [
        ("--eval-samples", |c, v| c.training.eval_samples = v),
        ("--samples", |c, v| c.quantizer.samples = v),
        ("--batch-size", |c, v| c.training.batch_size = Some(v)),
        ("--hidden", |c, v| c.model.hidden = Some(v)),
        ("--code-dim", |c, v| c.quantizer.code_dim = Some(v)),
        ("--codebook-size", |c, v| {
            c.quantizer.codebook_size = Some(v)
        }),
        ("--shapes-train", |c, v| c.data.shapes_train = v),
        ("--shapes-test", |c, v| c.data.shapes_test = v),
        ("--epochs", |c, v| c.training.epochs = v),
        ("--image-size", |c, v| {
            // Sizes the images of a folder data set (the shapes are always 28x28).
            c.data.dataset = DatasetKind::Folder;
            c.data.image_size = Some(v);
        }),
        ("--eval-every", |c, v| c.training.eval_every = v as u64),
        ("--log-every", |c, v| c.training.log_every = v as u64),
        ("--checkpoint-every", |c, v| {
            c.training.checkpoint_every = v as u64
        }),
        ("--dead-code-steps", |c, v| {
            c.quantizer.dead_code_steps = v as u64
        }),
    ];
    let huge = [usize::MAX, u32::MAX as usize, 1 << 40, 1e9 as usize];
    let have = crate::device::available_memory().map(|m| m as f64);
    // The images the memory check is given: the shapes (train + test, as `Trainer::create`), or
    // a folder of 1000 images (a tenth of them the test split) at `--image-size`.
    let data = |c: &RunConfig| match c.data.image_size {
        Some(s) if c.data.dataset == DatasetKind::Folder => ([3, s, s], 1000, 100),
        _ => (
            [1, crate::data::SHAPES_SIZE, crate::data::SHAPES_SIZE],
            c.data.shapes_train.saturating_add(c.data.shapes_test),
            c.data.shapes_test,
        ),
    };
    let mut t = Tally::new("RunConfig::resolve + check_memory (huge counts)");
    let mut failures = Vec::new();
    let mut unnamed = Vec::new();
    for kind in [QuantizerKind::Vq, QuantizerKind::SoftEm] {
        let mut base = RunConfig::default();
        base.quantizer.kind = kind;
        // The control: the default run is accepted and fits.
        let (shape, images, _) = data(&base);
        base.clone()
            .resolve()
            .unwrap()
            .check_memory(shape, images)
            .unwrap();
        for (flag, set) in fields {
            for v in huge {
                let mut cfg = base.clone();
                set(&mut cfg, v);
                let (shape, images, test) = data(&cfg);
                let desc = format!("{} {flag} {v}", kind.name());
                let mut accepted = None;
                let pr = probe(|| {
                    let c = cfg.clone().resolve()?;
                    c.check_memory(shape, images)?;
                    accepted = Some(c);
                    Ok::<(), InputError>(())
                });
                if let Err(panic) = &pr.result {
                    failures.push(format!("{desc}: PANIC {panic}"));
                    continue;
                }
                if pr.largest > ALLOC_BOUND {
                    failures.push(format!("{desc}: an allocation of {} bytes", pr.largest));
                    continue;
                }
                if let Ok(Err(msg)) = &pr.result
                    && !msg.contains(flag)
                {
                    unnamed.push(format!("{desc}: {msg}"));
                }
                let _ = t.check(pr, &desc, desc.as_bytes(), &[""], false);
                let Some(c) = accepted else { continue };
                let steps_per_epoch = (images - test).div_ceil(c.batch_size()) as u64;
                if (c.training.epochs as u64)
                    .checked_mul(steps_per_epoch)
                    .is_none()
                {
                    failures.push(format!(
                        "{desc}: accepted, but {} epochs x {steps_per_epoch} steps overflow the u64 step counter",
                        c.training.epochs
                    ));
                }
                let parts = least_memory(&c, shape, images, test);
                let need: f64 = parts.iter().map(|p| p.1).sum();
                if let Some(have) = have
                    && need > have
                {
                    let (what, most) = parts.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
                    failures.push(format!(
                        "{desc}: accepted, but the run needs at least {need:.3e} bytes ({what}: {most:.3e}); {have:.3e} are available"
                    ));
                }
            }
        }
    }
    t.report();
    eprintln!(
        "fuzz huge counts: {} refusals do not name the flag{}",
        unnamed.len(),
        unnamed
            .first()
            .map_or(String::new(), |u| format!(" (first: {u})"))
    );
    assert!(
        failures.is_empty(),
        "{} cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(t.accepted > 0 && t.rejected > 0);
}

/// `read_records` skips only a torn last line, refuses any other line it cannot parse naming the
/// file and the line, and reads a missing file as empty; errors that do not name the file are
/// counted.
#[test]
fn fuzz_read_records() {
    use crate::records::{Record, read_records};
    let d = tempfile::tempdir().unwrap();
    let mut seed = String::new();
    for step in 1..=6u64 {
        let r = Record {
            kind: if step % 3 == 0 { "eval" } else { "train" }.into(),
            step,
            epoch: (step / 4) as usize,
            wall_time: step as f64 * 0.5,
            loss: Some(1.0 / step as f64),
            recon_mse: Some(0.01 * step as f64),
            ..Default::default()
        };
        seed.push_str(&serde_json::to_string(&r).unwrap());
        seed.push('\n');
    }
    let p = d.path().join("metrics.jsonl");
    std::fs::write(&p, &seed).unwrap();
    assert_eq!(read_records(&p).unwrap().len(), 6);
    let mut m = Mutator::new(0x3ec);
    let mut t = Tally::new("read_records");
    for case in 0..600 {
        let (bytes, desc) = if case % 2 == 0 {
            m.json(&seed)
        } else {
            m.bytes(seed.as_bytes(), &[])
        };
        std::fs::write(&p, &bytes).unwrap();
        let pr = probe(|| read_records(&p).map_err(|e| format!("{e:#}")));
        // Any message passes `check`; whether it names the file is counted below.
        if let Err(msg) = t.check(pr, &desc, &bytes, &[""], false)
            && !msg.contains("metrics.jsonl")
        {
            t.unnamed += 1;
        }
    }
    t.report();
    assert!(t.accepted > 0 && t.rejected > 0);
    assert_eq!(t.unnamed, 0, "an error that does not name metrics.jsonl");
}
