//! Checkpoints: `model.safetensors` (its JSON header and bytes), a step directory through
//! `load_dir` (with `state.json`), `checkpoints/latest`, and the optimizer's burnpack file.

use rand::Rng;

use super::harness::{Tally, name_of, probe};
use super::mutator::{Field, Mutator};
use crate::checkpoint::{self, TrainState};
use crate::config::RunConfig;
use crate::model::NamedTensors;
use crate::quantizer::{DeadCodeTracker, EmaCodebook, QuantizerKind};

/// A small vqib checkpoint: config (vq-ema, K = 2, D = 3), two tensors, EMA state.
fn checkpoint_seed(step: u64) -> (Vec<u8>, RunConfig) {
    let mut t = NamedTensors::new();
    t.insert(
        "quantizer.codebook".into(),
        (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
    );
    t.insert(
        "encoder.conv1.weight".into(),
        (vec![2, 1, 2, 2], (0..8).map(|i| i as f32 * 0.25).collect()),
    );
    let mut cfg = RunConfig::default();
    cfg.quantizer.codebook_size = Some(2);
    cfg.quantizer.code_dim = Some(3);
    cfg.quantizer.kind = QuantizerKind::VqEma;
    let cfg = cfg.resolve().unwrap();
    let mut ema = EmaCodebook::new(2, 3, 0.99, 1e-5);
    ema.update(&[1.0, 2.0, 3.0], &[1]);
    let bytes = checkpoint::to_safetensors(&t, Some(&ema), &cfg, step).unwrap();
    (canonical_safetensors(&bytes), cfg)
}

/// The same safetensors file with its header's keys sorted (the metadata is written in hash-map
/// order), padded to 8 bytes: the same seed bytes every run.
fn canonical_safetensors(bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut h = serde_json::to_string(&header).unwrap().into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut v = (h.len() as u64).to_le_bytes().to_vec();
    v.extend(h);
    v.extend(&bytes[8 + n..]);
    v
}

/// The training state saved beside [`checkpoint_seed`]`(step)`.
fn state_seed(step: u64) -> String {
    let mut s = TrainState::default();
    s.step = step;
    s.epoch = 1;
    s.batch_in_epoch = 3;
    s.wall_time = 12.5;
    s.dead_codes = Some(DeadCodeTracker::new(2, 100, step - 2));
    s.codebook_initialised = true;
    serde_json::to_string_pretty(&s).unwrap()
}

/// Replaces the safetensors header by a JSON-mutated one and fixes its length prefix.
fn mutate_safetensors_header(m: &mut Mutator, seed: &[u8]) -> (Vec<u8>, String) {
    let n = u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&seed[8..8 + n]).unwrap();
    let (h, desc) = m.json(header);
    let mut v = (h.len() as u64).to_le_bytes().to_vec();
    v.extend(&h);
    v.extend(&seed[8 + n..]);
    (v, format!("header: {desc}"))
}

#[test]
fn fuzz_read_safetensors() {
    let d = tempfile::tempdir().unwrap();
    let (seed, cfg) = checkpoint_seed(42);
    let p = d.path().join("model.safetensors");
    std::fs::write(&p, &seed).unwrap();
    assert_eq!(checkpoint::read_safetensors(&p).unwrap().0, cfg);
    let mut m = Mutator::new(0x5afe);
    let mut t = Tally::new("read_safetensors");
    let (mut non_finite, mut first_non_finite) = (0, String::new());
    for case in 0..1000 {
        let (bytes, desc) = if case % 2 == 0 {
            mutate_safetensors_header(&mut m, &seed)
        } else {
            m.bytes(&seed, &[Field::Le64(0)])
        };
        std::fs::write(&p, &bytes).unwrap();
        let mut finite = true;
        let pr = probe(|| {
            checkpoint::read_safetensors(&p).map(|(_, tensors, ema, _)| {
                finite = tensors
                    .values()
                    .all(|(_, v)| v.iter().all(|x| x.is_finite()))
                    && ema.iter().all(|e| {
                        e.count_hidden
                            .iter()
                            .chain(&e.sum_hidden)
                            .all(|x| x.is_finite())
                    });
            })
        });
        if t.check(pr, &desc, &bytes, &["model.safetensors"], false)
            .is_ok()
            && !finite
        {
            non_finite += 1;
            if first_non_finite.is_empty() {
                first_non_finite = desc.clone();
            }
        }
    }
    t.report();
    eprintln!("fuzz read_safetensors: {non_finite} accepted checkpoints hold non-finite values");
    assert_eq!(non_finite, 0, "first: {first_non_finite}");
    assert!(t.accepted > 0 && t.rejected > 0);
}

/// `load_dir` on a valid `model.safetensors` and a mutated `state.json` (and, in a quarter of the
/// cases, a mutated `model.safetensors` beside a valid `state.json`).
#[test]
fn fuzz_load_dir() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("step-00000042");
    std::fs::create_dir(&dir).unwrap();
    let (model, _) = checkpoint_seed(42);
    let state = state_seed(42);
    let mp = dir.join("model.safetensors");
    let sp = dir.join("state.json");
    std::fs::write(&mp, &model).unwrap();
    std::fs::write(&sp, &state).unwrap();
    assert_eq!(checkpoint::load_dir(&dir).unwrap().state.step, 42);
    let mut m = Mutator::new(0x57a7e);
    let mut t = Tally::new("load_dir");
    let (mut inconsistent, mut first_inconsistent) = (0, String::new());
    for case in 0..800 {
        let (p, bytes, desc) = if case % 4 == 3 {
            let (b, desc) = m.bytes(&model, &[Field::Le64(0)]);
            (&mp, b, format!("model.safetensors: {desc}"))
        } else if case % 4 == 2 {
            let (b, desc) = m.bytes(state.as_bytes(), &[]);
            (&sp, b, format!("state.json bytes: {desc}"))
        } else {
            let (b, desc) = m.json(&state);
            (&sp, b, format!("state.json: {desc}"))
        };
        std::fs::write(p, &bytes).unwrap();
        let mut tracked = None;
        let pr = probe(|| {
            checkpoint::load_dir(&dir).map(|ck| {
                let k = ck.config.quantizer.codebook_size();
                tracked = ck.state.dead_codes.map(|dc| (dc.last_used.len(), k));
            })
        });
        let ok = t.check(pr, &desc, &bytes, &[&name_of(p)], false).is_ok();
        // Found by this test, fixed in `load_dir`: a `dead_codes.last_used` whose length is
        // not K made training index out of bounds or divide by zero.
        if let (true, Some((len, k))) = (ok, tracked)
            && len != k
        {
            inconsistent += 1;
            if first_inconsistent.is_empty() {
                first_inconsistent = format!("{desc}: last_used has {len} entries, K = {k}");
            }
        }
        std::fs::write(&mp, &model).unwrap();
        std::fs::write(&sp, &state).unwrap();
    }
    t.report();
    eprintln!(
        "fuzz load_dir: {inconsistent} accepted states track dead codes for other than K codes"
    );
    assert_eq!(inconsistent, 0, "first: {first_inconsistent}");
    assert!(t.accepted > 0 && t.rejected > 0);
}

/// `latest_dir` with a mutated `checkpoints/latest`: whatever it holds, the result is a
/// `step-*` directory inside `checkpoints/` or an error naming `latest`.
#[test]
fn fuzz_latest_dir() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let root = checkpoint::checkpoints_dir(&run);
    for step in ["step-00000007", "step-00000042"] {
        let p = root.join(step);
        std::fs::create_dir_all(&p).unwrap();
        for f in ["model.safetensors", "optimizer.bpk", "state.json"] {
            std::fs::write(p.join(f), b"x").unwrap();
        }
    }
    // Directories outside checkpoints/ that a hostile `latest` could point at.
    std::fs::create_dir_all(d.path().join("elsewhere/step-00000099")).unwrap();
    let latest = root.join("latest");
    std::fs::write(&latest, "step-00000042").unwrap();
    assert_eq!(
        checkpoint::latest_dir(&run).unwrap(),
        root.join("step-00000042")
    );
    let abs = d
        .path()
        .join("elsewhere/step-00000099")
        .display()
        .to_string();
    let crafted: Vec<Vec<u8>> = [
        "",
        "\n",
        "   ",
        "..",
        "../..",
        "../../..",
        "../../../../../../../../etc",
        "/",
        "/etc",
        "/tmp",
        abs.as_str(),
        "step-00000042/../..",
        "step-00000042/..",
        "step-00000042/../../elsewhere/step-00000099",
        "./step-00000042",
        "step-00000042\n",
        " step-00000042 ",
        "step-00000042\0",
        "step-0000004\0",
        "step-99999999",
        "step--1",
        "step-",
        "step-18446744073709551616",
        "step-00000042\nstep-00000007",
        "STEP-00000042",
        "latest",
        ".",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([
        "a".repeat(300).into_bytes(),
        format!("step-{}", "9".repeat(5000)).into_bytes(),
        "x".repeat(100_000).into_bytes(),
        "../".repeat(2000).into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x80],
    ])
    .collect();
    let mut m = Mutator::new(0x1a7e5);
    let mut t = Tally::new("latest_dir");
    for case in 0..500 {
        let (bytes, desc) = if case < crafted.len() {
            (crafted[case].clone(), format!("crafted {case}"))
        } else if case % 3 == 0 {
            let n = m.rng.gen_range(0..200);
            let b: Vec<u8> = (0..n).map(|_| m.rng.r#gen()).collect();
            (b, format!("{n} random bytes"))
        } else {
            m.bytes(b"step-00000042", &[])
        };
        std::fs::write(&latest, &bytes).unwrap();
        let mut got = None;
        let pr = probe(|| checkpoint::latest_dir(&run).map(|p| got = Some(p)));
        let named = latest.display().to_string();
        let r = t.check(pr, &desc, &bytes, &[&named], false);
        if r.is_ok() {
            let got = got.expect("Ok carries the directory");
            let inside = got.parent() == Some(root.as_path())
                && got
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"));
            if !inside {
                t.fail(
                    &desc,
                    &bytes,
                    format!("latest_dir left checkpoints/: {}", got.display()),
                );
            }
        }
    }
    t.report();
    assert!(t.accepted > 0 && t.rejected > 0);
}

/// A small linear layer with constant weights and parameter ids 1, 2 (as
/// `VqVae::with_stable_ids`), so that the optimizer's seed bytes are the same every run.
fn small_linear() -> burn::nn::Linear {
    use burn::module::Module;
    use burn::tensor::Device;
    burn::nn::LinearConfig::new(4, 3)
        .with_initializer(burn::nn::Initializer::Constant { value: 0.25 })
        .init(&Device::flex().autodiff())
        .map(&mut crate::model::StableIds::default())
}

/// One Adam step of `optim` on [`small_linear`].
fn step_small_linear(optim: &mut burn::optim::ModuleOptimizer) -> burn::nn::Linear {
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor};
    let lin = small_linear();
    let x = Tensor::<2>::ones([2, 4], &Device::flex().autodiff());
    let loss = lin.forward(x).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &lin);
    optim.step(1e-3, lin, grads)
}

/// Seed bytes of a real optimizer: Adam after one step on [`small_linear`]. burn writes the
/// parameters in hash-map order (two layouts for two parameters), so the smallest of 32
/// serialisations is taken: the same bytes every run.
fn optimizer_seed() -> Vec<u8> {
    (0..32)
        .map(|_| {
            let mut optim = RunConfig::default().training.optimizer().init();
            step_small_linear(&mut optim);
            optim.into_bytes().unwrap().to_vec()
        })
        .min()
        .unwrap()
}

/// Sets one small CBOR integer (one byte, 0..=23) inside a tensor's `shape`, `data_offsets` or
/// `param_id` of a burnpack's metadata to another small integer: the file stays well-formed, so
/// these mutants test what the loader checks, not what the parser refuses.
fn cbor_small_int(m: &mut Mutator, seed: &[u8]) -> (Vec<u8>, String) {
    let mut spots = Vec::new();
    for key in [&b"shape"[..], b"data_offsets", b"param_id"] {
        for (i, w) in seed.windows(key.len()).enumerate() {
            if w == key {
                // The value: a small int, or an array (0x80..=0x97) of items of which the
                // small ints (< 24) are candidates.
                let at = i + key.len();
                match seed.get(at) {
                    Some(&b) if b < 24 => spots.push(at),
                    Some(&b) if (0x80..=0x97).contains(&b) => {
                        let mut j = at + 1;
                        for _ in 0..(b - 0x80) {
                            match seed.get(j) {
                                Some(&x) if x < 24 => spots.push(j),
                                _ => {}
                            }
                            j += match seed.get(j) {
                                Some(0x19) => 3,
                                Some(0x1a) => 5,
                                Some(0x18) => 2,
                                _ => 1,
                            };
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let mut v = seed.to_vec();
    if spots.is_empty() {
        return (v, "cbor: no small ints".into());
    }
    let at = spots[m.pos(spots.len())];
    let new = m.rng.gen_range(0..24u8);
    let old = v[at];
    v[at] = new;
    (v, format!("cbor small int at {at}: {old} -> {new}"))
}

#[test]
fn fuzz_read_optimizer() {
    let d = tempfile::tempdir().unwrap();
    let seed = optimizer_seed();
    let p = d.path().join("optimizer.bpk");
    std::fs::write(&p, &seed).unwrap();
    let fresh = || RunConfig::default().training.optimizer().init();
    // burn materialises the state on `Device::default()`: with `--features wgpu` that is a GPU
    // adapter (the binary pins it to the CPU through BURN_DEVICE; a test cannot set the
    // environment safely). Without an adapter even the valid seed is refused; then only the
    // properties are checked, not that some mutants load.
    let seed_loads = match checkpoint::read_optimizer(&p, fresh()) {
        Ok(mut o) => {
            step_small_linear(&mut o);
            true
        }
        Err(e) => {
            eprintln!("fuzz read_optimizer: the valid seed does not load here: {e}");
            false
        }
    };
    // Header fields of the burnpack container: magic, version, metadata size.
    let fields = [Field::Le32(0), Field::Le16(4), Field::Le32(6)];
    let mut m = Mutator::new(0x0b7);
    let mut t = Tally::new("read_optimizer");
    // Accepted states are also stepped once with the model they were saved from: a state that
    // loads but breaks the next step is counted (reported, not failed: the step is burn's).
    let (mut stepped, mut step_panics, mut first_step_panic) = (0, 0, String::new());
    let (mut reshaped, mut first_reshaped, mut non_finite) = (0, String::new(), 0);
    let mut first_non_finite = String::new();
    for case in 0..600 {
        let (bytes, desc) = if case % 4 == 3 {
            cbor_small_int(&mut m, &seed)
        } else {
            m.bytes(&seed, &fields)
        };
        std::fs::write(&p, &bytes).unwrap();
        let mut loaded = None;
        let pr = probe(|| checkpoint::read_optimizer(&p, fresh()).map(|o| loaded = Some(o)));
        let _ = t.check(pr, &desc, &bytes, &["optimizer.bpk"], true);
        if let Some(mut o) = loaded {
            stepped += 1;
            let mut shapes = None;
            let pr = probe(|| {
                let lin = step_small_linear(&mut o);
                let bias = lin.bias.as_ref().map(|b| b.val().dims().to_vec());
                let vals = lin
                    .weight
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap_or_default();
                shapes = Some((lin.weight.val().dims().to_vec(), bias, vals));
                Ok::<(), String>(())
            });
            match (pr.result, shapes) {
                (Err(panic), _) => {
                    step_panics += 1;
                    if first_step_panic.is_empty() {
                        first_step_panic = format!("{desc}: {panic}");
                    }
                }
                (Ok(_), Some((w, b, vals))) => {
                    if w != [4, 3] || b.as_deref() != Some(&[3][..]) {
                        reshaped += 1;
                        if first_reshaped.is_empty() {
                            first_reshaped = format!("{desc}: weight {w:?}, bias {b:?}");
                        }
                    } else if vals.iter().any(|v| !v.is_finite()) {
                        non_finite += 1;
                        if first_non_finite.is_empty() {
                            first_non_finite = desc.clone();
                        }
                    }
                }
                (Ok(_), None) => unreachable!(),
            }
        }
    }
    t.report();
    eprintln!(
        "fuzz read_optimizer: {stepped} accepted states stepped: {step_panics} panicked in the step, \
         {reshaped} changed a parameter's shape, {non_finite} made a weight non-finite"
    );
    for (what, first) in [
        ("panic", &first_step_panic),
        ("reshape", &first_reshaped),
        ("non-finite weight", &first_non_finite),
    ] {
        if !first.is_empty() {
            eprintln!("fuzz read_optimizer: first {what}: {first}");
        }
    }
    // A finite but extreme Adam state may still drive a weight to infinity in the step: the
    // training loop's guards catch that (exit 3); a reader must not panic or reshape.
    assert_eq!(
        (step_panics, reshaped),
        (0, 0),
        "{first_step_panic} {first_reshaped}"
    );
    assert!(t.rejected > 0 && (t.accepted > 0 || !seed_loads));
}
