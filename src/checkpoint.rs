//! Checkpoints and atomic file writes.
//!
//! A checkpoint is a directory `RUN/checkpoints/step-00000123/` holding
//! * `model.safetensors`: every weight in PyTorch layout, f32 (names in
//!   [`crate::model::VqVae::export`]), the EMA state of `vq-ema` and `soft-em` in f64
//!   (`quantizer.ema_count_hidden` `[K]`, `quantizer.ema_sum_hidden` `[K, D]`, so that a resumed
//!   run continues bit-exactly; checkpoints of earlier versions hold it in f32 and still load), and
//!   metadata `format`, `step`, `config` (the run's JSON config) and `ema_updates`;
//! * `optimizer.bpk`: burn's Adam state (burnpack);
//! * `state.json`: where training stands (step, epoch, batch within the epoch, dead-code state).
//!
//! The directory is written under a temporary name and renamed into place, then the file
//! `RUN/checkpoints/latest` (also written by temp file + rename) names it. A crash at any moment
//! leaves the previous checkpoint intact and `latest` pointing at a complete one.
//!
//! Only finite checkpoints are written: [`save`] refuses (with a [`NonFiniteError`]) when any
//! weight, EMA statistic or Adam moment is NaN or infinite, so `latest` never names a checkpoint
//! that cannot be resumed. `latest` must name a `step-NNNNNNNN` directory inside `checkpoints/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{InputError, NonFiniteError};
use crate::io::{temp_name, write_atomic};
use crate::model::NamedTensors;
use crate::quantizer::{DeadCodeTracker, EmaCodebook};

/// Format tag stored in the safetensors metadata.
pub const FORMAT: &str = "vqib-checkpoint-1";

/// Checkpoint names of the EMA state (f64).
pub const EMA_COUNT: &str = "quantizer.ema_count_hidden";
pub const EMA_SUM: &str = "quantizer.ema_sum_hidden";

/// Where training stands, saved beside the weights.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: u64,
    /// Epoch in progress (0-based).
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub batch_in_epoch: usize,
    /// Seconds of training before this checkpoint (summed over resumed runs).
    pub wall_time: f64,
    /// Dead-code tracking, when enabled.
    pub dead_codes: Option<DeadCodeTracker>,
    /// Whether the codebook has been initialised (k-means init runs on the first batch).
    pub codebook_initialised: bool,
}

/// Everything in a checkpoint except the optimizer.
#[derive(Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub tensors: NamedTensors,
    pub ema: Option<EmaCodebook>,
    pub state: TrainState,
}

/// Serialises weights (+ EMA state) and metadata to safetensors bytes.
pub fn to_safetensors(
    tensors: &NamedTensors,
    ema: Option<&EmaCodebook>,
    config: &RunConfig,
    step: u64,
) -> anyhow::Result<Vec<u8>> {
    let mut all: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = tensors
        .iter()
        .map(|(n, (s, v))| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                Dtype::F32,
            )
        })
        .collect();
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("step".to_string(), step.to_string());
    meta.insert("config".to_string(), serde_json::to_string(config)?);
    if let Some(e) = ema {
        let f64s = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        all.push((
            EMA_COUNT.into(),
            vec![e.k],
            f64s(&e.count_hidden),
            Dtype::F64,
        ));
        all.push((
            EMA_SUM.into(),
            vec![e.k, e.d],
            f64s(&e.sum_hidden),
            Dtype::F64,
        ));
        meta.insert("ema_updates".to_string(), e.updates.to_string());
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = all
        .iter()
        .map(|(n, s, b, t)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(*t, s.clone(), b)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(safetensors::serialize(views, &Some(meta))?)
}

/// Reads a vqib safetensors file: weights, EMA state (when present) and the embedded config.
pub fn read_safetensors(
    path: &Path,
) -> Result<(RunConfig, NamedTensors, Option<EmaCodebook>, u64), InputError> {
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::file(path, format!("cannot read checkpoint: {e}")))?;
    let bad = |m: String| InputError::file(path, m);
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a readable safetensors file: {e:?}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("bad safetensors header: {e:?}")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(format!(
            "not a vqib checkpoint (metadata format is {:?})",
            meta.get("format")
        )));
    }
    // The embedded config (errors name this file).
    let config = RunConfig::from_json(meta.get("config").map(String::as_str).unwrap_or(""), path)?;
    let step: u64 = meta
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("checkpoint lacks its step".into()))?;
    let (tensors, ema) = read_tensors(&st, &config, &meta, path)?;
    // A checkpoint vqib wrote is finite; one that is not was damaged and cannot resume.
    if let Some(what) = first_non_finite_values(&tensors, ema.as_ref()) {
        return Err(bad(format!("damaged checkpoint: {what}")));
    }
    Ok((config, tensors, ema, step))
}

/// Values of an f32 or f64 tensor, as f64.
fn f64_values(view: &safetensors::tensor::TensorView) -> Option<Vec<f64>> {
    match view.dtype() {
        Dtype::F64 => Some(
            view.data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ),
        Dtype::F32 => Some(f32_values(view).into_iter().map(f64::from).collect()),
        _ => None,
    }
}

fn f32_values(view: &safetensors::tensor::TensorView) -> Vec<f32> {
    view.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The weights (f32) and the EMA state (f64, or f32 as earlier versions wrote it).
fn read_tensors(
    st: &SafeTensors,
    config: &RunConfig,
    meta: &HashMap<String, String>,
    path: &Path,
) -> Result<(NamedTensors, Option<EmaCodebook>), InputError> {
    let bad = |m: String| InputError::file(path, m);
    let mut tensors = NamedTensors::new();
    let mut ema: HashMap<String, (Vec<usize>, Vec<f64>)> = HashMap::new();
    for (name, view) in st.tensors() {
        if name == EMA_COUNT || name == EMA_SUM {
            let vals = f64_values(&view).ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` has dtype {:?}, expected F64",
                    view.dtype()
                ))
            })?;
            ema.insert(name, (view.shape().to_vec(), vals));
        } else if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor `{name}` has dtype {:?}, expected F32",
                view.dtype()
            )));
        } else {
            tensors.insert(name, (view.shape().to_vec(), f32_values(&view)));
        }
    }
    let (Some((cs, cv)), Some((ss, sv))) = (ema.remove(EMA_COUNT), ema.remove(EMA_SUM)) else {
        return Ok((tensors, None));
    };
    // The codebook's rows: K, or S*K for residual stages.
    let (k, d) = (
        config.quantizer.codebook_size() * config.quantizer.stages(),
        config.quantizer.code_dim(),
    );
    if cs != vec![k] || ss != vec![k, d] {
        return Err(bad(format!(
            "EMA state has shapes {cs:?} and {ss:?}, expected [{k}] and [{k}, {d}]"
        )));
    }
    let updates = meta
        .get("ema_updates")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let ema = EmaCodebook {
        k,
        d,
        decay: config.ema_decay(),
        epsilon: config.quantizer.ema_epsilon,
        count_hidden: cv,
        sum_hidden: sv,
        updates,
    };
    Ok((tensors, Some(ema)))
}

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// Where in a checkpoint's content the first non-finite value sits, if anywhere: the weights,
/// the EMA state and the optimizer state (`optimizer`: burnpack bytes).
pub fn first_non_finite(
    tensors: &NamedTensors,
    ema: Option<&EmaCodebook>,
    optimizer: &[u8],
) -> Option<String> {
    let count = |v: &[f32]| v.iter().filter(|x| !x.is_finite()).count();
    let mut bad: Vec<String> = first_non_finite_values(tensors, ema).into_iter().collect();
    match optimizer_values(optimizer) {
        Ok(values) => {
            let n: usize = values.iter().map(|(_, v)| count(v)).sum();
            if n > 0 {
                bad.push(format!("the Adam state holds {n} non-finite values"));
            }
        }
        Err(e) => bad.push(format!("the Adam state is unreadable ({e})")),
    }
    (!bad.is_empty()).then(|| bad.join("; "))
}

/// The non-finite values among the weights and the EMA state, described.
fn first_non_finite_values(tensors: &NamedTensors, ema: Option<&EmaCodebook>) -> Option<String> {
    let count = |v: &[f32]| v.iter().filter(|x| !x.is_finite()).count();
    let mut bad: Vec<String> = Vec::new();
    let hit: Vec<(&String, usize)> = tensors
        .iter()
        .map(|(name, (_, v))| (name, count(v)))
        .filter(|(_, n)| *n > 0)
        .collect();
    if let Some((first, _)) = hit.first() {
        let n: usize = hit.iter().map(|h| h.1).sum();
        let all: usize = tensors.values().map(|(_, v)| v.len()).sum();
        bad.push(format!(
            "{n} of {all} weights are not finite, in {} tensors (`{first}` first)",
            hit.len()
        ));
    }
    if let Some(e) = ema {
        let n = e.count_hidden.iter().chain(&e.sum_hidden);
        let n = n.filter(|x| !x.is_finite()).count();
        if n > 0 {
            bad.push(format!("the EMA state holds {n} non-finite values"));
        }
    }
    (!bad.is_empty()).then(|| bad.join("; "))
}

/// The f32 tensors of a burnpack optimizer record, by name; an error for a malformed record or
/// a tensor without a parameter id (which burn's loader would panic on).
fn optimizer_values(bytes: &[u8]) -> Result<Vec<(String, Vec<f32>)>, String> {
    use burn_pack::DType;
    let reader = burn_pack::Reader::from_bytes(burn_pack::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| format!("{e:?}"))?;
    let tensors = reader.into_tensors().map_err(|e| format!("{e:?}"))?;
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let (name, dtype, _, param, data) = t.into_parts().map_err(|e| format!("{e:?}"))?;
        if param.is_none() {
            return Err(format!("tensor `{name}` names no parameter"));
        }
        let v = match dtype {
            DType::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => return Err(format!("tensor `{name}` has dtype {other:?}")),
        };
        out.push((name, v));
    }
    Ok(out)
}

/// Loads burn's optimizer state from `optimizer.bpk` into `fresh` (a new optimizer of the run's
/// configuration). The file is checked first, and burn's loader runs behind `catch_unwind`, so
/// that a damaged file is an error naming it, never a panic.
pub fn read_optimizer(
    path: &Path,
    fresh: burn::optim::ModuleOptimizer,
) -> Result<burn::optim::ModuleOptimizer, InputError> {
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::file(path, format!("cannot read optimizer state: {e}")))?;
    let bad = |m: String| InputError::file(path, format!("not a readable optimizer state: {m}"));
    let values = optimizer_values(&bytes).map_err(bad)?;
    let n: usize = values
        .iter()
        .map(|(_, v)| v.iter().filter(|x| !x.is_finite()).count())
        .sum();
    if n > 0 {
        return Err(bad(format!("damaged: {n} non-finite values")));
    }
    let load =
        std::panic::AssertUnwindSafe(|| fresh.from_bytes(burn_pack::Bytes::from_bytes_vec(bytes)));
    match std::panic::catch_unwind(load) {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(e)) => Err(bad(format!("{e:?}"))),
        Err(_) => Err(bad("burn could not load it".into())),
    }
}

/// Saves a checkpoint of `step`; keeps the newest `keep` checkpoints. Returns its directory.
/// Refuses, with a [`NonFiniteError`] and without touching the directory, when anything it
/// would hold is not finite.
pub fn save(
    run: &Path,
    config: &RunConfig,
    tensors: &NamedTensors,
    ema: Option<&EmaCodebook>,
    optimizer: &burn::optim::ModuleOptimizer,
    state: &TrainState,
    keep: usize,
) -> anyhow::Result<PathBuf> {
    let optim = optimizer
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("serialising the optimizer state: {e:?}"))?;
    if let Some(what) = first_non_finite(tensors, ema, &optim) {
        return Err(NonFiniteError {
            what: "non-finite weights",
            step: state.step,
            detail: format!("not saving a checkpoint of step {}: {what}", state.step),
        }
        .into());
    }
    let root = checkpoints_dir(run);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| InputError::file(p, format!("cannot write checkpoint: {e}"))
    };
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(temp_name(&name));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let written = (|| -> anyhow::Result<()> {
        let st = to_safetensors(tensors, ema, config, state.step)?;
        write_atomic(&tmp.join("model.safetensors"), &st)?;
        write_atomic(&tmp.join("optimizer.bpk"), &optim)?;
        let state = serde_json::to_string_pretty(state)?;
        write_atomic(&tmp.join("state.json"), state.as_bytes())?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let fin = root.join(&name);
    // A checkpoint of the same step (end of epoch, then Ctrl-C) is moved aside, not deleted,
    // until the new one is in place.
    let old = root.join(format!(".{name}.old-{}", std::process::id()));
    if fin.exists() {
        std::fs::rename(&fin, &old).map_err(io(&fin))?;
    }
    std::fs::rename(&tmp, &fin).map_err(io(&fin))?;
    write_atomic(&root.join("latest"), name.as_bytes())?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    prune(&root, keep);
    Ok(fin)
}

/// Keeps the newest `keep` step directories (newest by step number, not by name), and always the
/// one `latest` names.
fn prune(root: &Path, keep: usize) {
    let latest = read_latest(&root.join("latest")).ok();
    let all = step_dirs(root);
    let old = all.len().saturating_sub(keep);
    for (_, p) in &all[..old] {
        if latest.is_some() && p.file_name().and_then(|n| n.to_str()) == latest.as_deref() {
            continue;
        }
        let _ = std::fs::remove_dir_all(p);
    }
}

/// The checkpoint directories `step-NNNNNNNN` in `root` (a run's `checkpoints/`) with their
/// steps, oldest first: ordered by the step number, so that `step-100000000` comes after
/// `step-99999999`.
pub fn step_dirs(root: &Path) -> Vec<(u64, PathBuf)> {
    let mut all: Vec<(u64, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let p = e.ok()?.path();
            Some((step_of(&p)?, p))
        })
        .filter(|(_, p)| p.is_dir())
        .collect();
    all.sort();
    all
}

/// The step of a checkpoint directory named `step-NNNNNNNN`.
fn step_of(p: &Path) -> Option<u64> {
    let name = p.file_name()?.to_str()?;
    parse_step_name(name)
}

/// `step-NNNNNNNN` (eight or more digits) -> N.
fn parse_step_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    (digits.len() >= 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The directory of the newest checkpoint of a run.
pub fn latest_dir(run: &Path) -> Result<PathBuf, InputError> {
    if !run.is_dir() {
        return Err(InputError::file(run, "run directory does not exist"));
    }
    let latest = checkpoints_dir(run).join("latest");
    let name = read_latest(&latest)?;
    let dir = checkpoints_dir(run).join(&name);
    if dir.is_dir() {
        return Ok(dir);
    }
    // Interrupted between moving a checkpoint aside and putting its successor in place: fall
    // back to the newest (highest step) complete checkpoint.
    let complete = |p: &Path| {
        ["model.safetensors", "optimizer.bpk", "state.json"]
            .iter()
            .all(|f| p.join(f).is_file())
    };
    let newest = step_dirs(&checkpoints_dir(run))
        .into_iter()
        .rev()
        .find(|(_, p)| complete(p));
    match newest {
        Some((_, p)) => {
            eprintln!(
                "warning: {} names {}, which is missing; using {}",
                latest.display(),
                dir.display(),
                p.display()
            );
            Ok(p)
        }
        None => Err(InputError::file(
            &latest,
            format!("names checkpoint {} which does not exist", dir.display()),
        )),
    }
}

/// The checkpoint name in `latest`: at most a few bytes are read, and it must be a
/// `step-NNNNNNNN` name (no path: `latest` never leads out of `checkpoints/`).
fn read_latest(latest: &Path) -> Result<String, InputError> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(latest)
        .and_then(|f| f.take(64).read_to_string(&mut text))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => InputError::file(
                latest,
                "is not text; it must name a step-NNNNNNNN checkpoint",
            ),
            _ => InputError::file(latest, format!("no checkpoint to load ({e})")),
        })?;
    let name = text.trim();
    if parse_step_name(name).is_none() {
        let shown: String = name.chars().take(40).collect();
        return Err(InputError::file(
            latest,
            format!(
                "names {shown:?}, which is not a checkpoint directory of this run (expected step-NNNNNNNN)"
            ),
        ));
    }
    Ok(name.to_string())
}

/// Loads the newest checkpoint of a run (weights, EMA state, training state; not the optimizer).
pub fn load_latest(run: &Path) -> Result<Checkpoint, InputError> {
    let dir = latest_dir(run)?;
    load_dir(&dir)
}

/// Loads a checkpoint directory.
pub fn load_dir(dir: &Path) -> Result<Checkpoint, InputError> {
    let (config, tensors, ema, step) = read_safetensors(&dir.join("model.safetensors"))?;
    let sp = dir.join("state.json");
    let state: TrainState = serde_json::from_str(
        &std::fs::read_to_string(&sp)
            .map_err(|e| InputError::file(&sp, format!("cannot read: {e}")))?,
    )
    .map_err(|e| InputError::file(&sp, format!("not a valid training state: {e}")))?;
    let k = config.quantizer.codebook_size() * config.quantizer.stages();
    if let Some(dc) = &state.dead_codes
        && dc.last_used.len() != k
    {
        return Err(InputError::file(
            &sp,
            format!(
                "dead-code state tracks {} codes but the codebook has K = {k}",
                dc.last_used.len()
            ),
        ));
    }
    if state.step != step {
        return Err(InputError::file(
            &sp,
            format!(
                "step {} disagrees with model.safetensors (step {step})",
                state.step
            ),
        ));
    }
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        config,
        tensors,
        ema,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_roundtrip_with_ema_and_config() {
        let mut t = NamedTensors::new();
        t.insert(
            "quantizer.codebook".into(),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        );
        let mut cfg = RunConfig::default();
        cfg.quantizer.codebook_size = Some(2);
        cfg.quantizer.code_dim = Some(3);
        cfg.quantizer.kind = crate::quantizer::QuantizerKind::VqEma;
        let cfg = cfg.resolve().unwrap();
        let mut ema = EmaCodebook::new(2, 3, 0.99, 1e-5);
        ema.update(&[1.0, 2.0, 3.0], &[1]);
        let bytes = to_safetensors(&t, Some(&ema), &cfg, 42).unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let (c2, t2, e2, step) = read_safetensors(&p).unwrap();
        assert_eq!((c2, t2, step), (cfg, t, 42));
        let e2 = e2.unwrap();
        assert_eq!(e2.updates, 1);
        // The EMA state comes back bit-exactly (f64).
        assert_eq!(e2, ema);
    }

    #[test]
    fn unreadable_checkpoints_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("broken.safetensors");
        std::fs::write(&p, b"garbage that is not safetensors").unwrap();
        let e = read_safetensors(&p).unwrap_err().to_string();
        assert!(
            e.contains("broken.safetensors") && e.contains("safetensors"),
            "{e}"
        );
        let e = load_latest(&d.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("does not exist"), "{e}");
        let e = load_latest(d.path()).unwrap_err().to_string();
        assert!(e.contains("latest") && e.contains("no checkpoint"), "{e}");
    }

    /// Makes `checkpoints/NAME` directories (complete: the three files) and `latest`.
    fn make_checkpoints(run: &Path, names: &[&str], latest: &str) -> PathBuf {
        let root = checkpoints_dir(run);
        for name in names {
            let p = root.join(name);
            std::fs::create_dir_all(&p).unwrap();
            for f in ["model.safetensors", "optimizer.bpk", "state.json"] {
                std::fs::write(p.join(f), b"x").unwrap();
            }
        }
        write_atomic(&root.join("latest"), latest.as_bytes()).unwrap();
        root
    }

    fn names_in(root: &Path) -> Vec<String> {
        step_dirs(root)
            .into_iter()
            .map(|(_, p)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// Past step 99,999,999 the names grow a digit: the order is by step, not by name.
    #[test]
    fn prune_keeps_the_newest_by_step_past_eight_digits() {
        let d = tempfile::tempdir().unwrap();
        let root = make_checkpoints(
            d.path(),
            &["step-99999999", "step-100000000", "step-100000001"],
            "step-100000001",
        );
        assert_eq!(
            names_in(&root),
            ["step-99999999", "step-100000000", "step-100000001"]
        );
        prune(&root, 2);
        assert_eq!(names_in(&root), ["step-100000000", "step-100000001"]);
        assert_eq!(latest_dir(d.path()).unwrap(), root.join("step-100000001"));
    }

    /// The checkpoint `latest` names is never pruned, even when it is not among the newest.
    #[test]
    fn prune_never_deletes_the_checkpoint_latest_names() {
        let d = tempfile::tempdir().unwrap();
        let root = make_checkpoints(
            d.path(),
            &["step-00000005", "step-00000009", "step-00000012"],
            "step-00000005",
        );
        prune(&root, 1);
        assert_eq!(names_in(&root), ["step-00000005", "step-00000012"]);
        assert_eq!(latest_dir(d.path()).unwrap(), root.join("step-00000005"));
    }

    /// With `latest` naming a missing checkpoint, the fallback is the highest step.
    #[test]
    fn the_fallback_for_a_missing_latest_is_the_highest_step() {
        let d = tempfile::tempdir().unwrap();
        let root = make_checkpoints(
            d.path(),
            &["step-99999999", "step-100000000"],
            "step-100000001",
        );
        assert_eq!(latest_dir(d.path()).unwrap(), root.join("step-100000000"));
    }

    #[test]
    fn a_missing_latest_falls_back_to_the_newest_complete_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let root = checkpoints_dir(d.path());
        for (name, complete) in [
            ("step-00000005", true),
            ("step-00000009", true),
            ("step-00000012", false),
        ] {
            let p = root.join(name);
            std::fs::create_dir_all(&p).unwrap();
            let files: &[&str] = if complete {
                &["model.safetensors", "optimizer.bpk", "state.json"]
            } else {
                &["state.json"]
            };
            for f in files {
                std::fs::write(p.join(f), b"x").unwrap();
            }
        }
        write_atomic(&root.join("latest"), b"step-00000010").unwrap();
        assert_eq!(latest_dir(d.path()).unwrap(), root.join("step-00000009"));
        write_atomic(&root.join("latest"), b"step-00000005").unwrap();
        assert_eq!(latest_dir(d.path()).unwrap(), root.join("step-00000005"));
    }
}
