//! What the file holds and how `vqib measure` will read it: the flags and the header checked,
//! the labels' distinct values and the prior read, the memory checked, before any latent vector
//! is read.

use std::collections::{BTreeSet, HashMap};

use super::file::{SafetensorsFile, position};
use super::{
    CHUNK_VALUES, DENSE_JOINT, DENSE_K, InputKind, MAX_CLASSES, MeasureArgs, PosteriorKind,
};
use crate::error::InputError;
use crate::kernels::assign::TILE_BUDGET;

/// Most stages of [B, h, w, S] codes.
const MAX_STAGES: usize = 4096;

/// What the file holds and how to read it, checked before anything is read past the header.
pub(super) struct Plan {
    pub(super) input: InputKind,
    pub(super) posterior: PosteriorKind,
    pub(super) tau: f64,
    /// Rows (latent vectors) and values a row (D, S or K).
    pub(super) n: usize,
    pub(super) row_len: usize,
    pub(super) images: Option<usize>,
    pub(super) per_image: Option<usize>,
    /// Code space of each stage (one for z_e and logits).
    pub(super) k: Vec<u64>,
    /// Dense label id of each label value, where the file has labels.
    pub(super) labels: Option<HashMap<i128, u32>>,
    /// log r(z) from the file, and the tensor it came from.
    pub(super) log_r: Option<(Vec<f64>, &'static str)>,
    pub(super) chunk: usize,
    pub(super) notes: Vec<String>,
}

/// Checks the flags and the file's header, and reads the labels' values and the prior.
pub(super) fn plan(f: &SafetensorsFile, args: &MeasureArgs) -> Result<Plan, InputError> {
    if args.chunk_rows == 0 {
        return Err(InputError::config("--chunk-rows must be at least 1"));
    }
    if let Some(t) = args.temperature
        && !(t.is_finite() && t > 0.0)
    {
        return Err(InputError::config(format!(
            "--temperature {t}: must be a positive number"
        )));
    }
    if args.code_space.contains(&0) {
        return Err(InputError::config("--code-space: a code space of 0 codes"));
    }
    let input = pick_input(f, args.input)?;
    let name = input.name();
    let t = f.get(name).expect("picked from the file");
    let (shape, dt) = (t.shape.clone(), t.dtype.clone());
    let want_float = input != InputKind::Codes;
    if (want_float && !dt.is_float()) || (!want_float && !dt.is_int()) {
        let what = if want_float {
            "float32 or float64 (float16, bfloat16)"
        } else {
            "integers (int8 to int64, uint8 to uint64)"
        };
        return Err(f.error(name, format!("dtype {}: must be {what}", dt.name())));
    }
    let ranks: &[usize] = if input == InputKind::Codes {
        &[3, 4]
    } else {
        &[2, 4]
    };
    if !ranks.contains(&shape.len()) {
        let want = match input {
            InputKind::ZE => "[N, D] or [B, h, w, D]",
            InputKind::Codes => "[B, h, w] or [B, h, w, S]",
            InputKind::Logits => "[N, K] or [B, h, w, K]",
        };
        return Err(f.error(name, format!("shape {shape:?}: must be {want}")));
    }
    let row_len = match input {
        InputKind::Codes if shape.len() == 3 => 1,
        _ => *shape.last().unwrap(),
    };
    let n: usize = shape.iter().product::<usize>() / row_len.max(1);
    if n == 0 || row_len == 0 {
        return Err(f.error(
            name,
            format!("shape {shape:?} holds no latent vectors (N = 0, or no values a vector)"),
        ));
    }
    let (mut images, mut per_image) = match shape.len() {
        2 => (None, None),
        _ => (Some(shape[0]), Some(shape[1] * shape[2])),
    };
    let posterior = args.posterior.unwrap_or(match input {
        InputKind::Logits => PosteriorKind::Soft,
        _ => PosteriorKind::Hard,
    });
    if input == InputKind::Codes && posterior == PosteriorKind::Soft {
        return Err(InputError::config(
            "--posterior soft needs z_e with codebook, or logits: codes are hard",
        ));
    }
    if args.temperature.is_some() && posterior == PosteriorKind::Hard {
        return Err(InputError::config(
            "--temperature applies to a soft posterior (--posterior soft)",
        ));
    }
    let mut notes = Vec::new();
    let mut k = match input {
        InputKind::ZE => {
            let cb = f.get("codebook").ok_or_else(|| {
                f.error(
                    "codebook",
                    "missing: z_e needs its codebook [K, D] beside it",
                )
            })?;
            if !cb.dtype.is_float() {
                return Err(f.error(
                    "codebook",
                    format!("dtype {}: must be float32 or float64", cb.dtype.name()),
                ));
            }
            if cb.shape.len() != 2 || cb.shape[1] != row_len || cb.shape[0] == 0 {
                return Err(f.error(
                    "codebook",
                    format!(
                        "shape {:?}: must be [K, D] with K >= 1 and D = {row_len}, the last \
                         dimension of z_e {shape:?}",
                        cb.shape
                    ),
                ));
            }
            if cb.shape[0] as u64 > u32::MAX as u64 {
                return Err(f.error("codebook", "more than 2^32 - 1 codewords"));
            }
            vec![cb.shape[0] as u64]
        }
        InputKind::Logits => vec![row_len as u64],
        InputKind::Codes => Vec::new(),
    };
    if !args.code_space.is_empty() && input != InputKind::Codes && args.code_space != k {
        return Err(InputError::config(format!(
            "--code-space {}: {name} fixes the code space at K = {}",
            join(&args.code_space),
            k[0]
        )));
    }
    // Labels: a dense id for each distinct value.
    let labels = match f.get("labels") {
        None => None,
        Some(l) => {
            if !l.dtype.is_int() || l.shape.len() != 1 {
                return Err(f.error(
                    "labels",
                    format!(
                        "{} {:?}: must be [B] integers, one label an image",
                        l.dtype.name(),
                        l.shape
                    ),
                ));
            }
            let b = l.shape[0];
            match images {
                Some(imgs) if imgs != b => {
                    return Err(f.error(
                        "labels",
                        format!("{b} labels for the {imgs} images of {name} {shape:?}"),
                    ));
                }
                Some(_) => {}
                None => {
                    if b == 0 || !n.is_multiple_of(b) {
                        return Err(f.error(
                            "labels",
                            format!(
                                "{b} labels for the {n} vectors of {name} {shape:?}: the \
                                 vectors must split evenly into the labelled images"
                            ),
                        ));
                    }
                    (images, per_image) = (Some(b), Some(n / b));
                }
            }
            Some(label_ids(f, b)?)
        }
    };
    let stages = if input == InputKind::Codes {
        row_len
    } else {
        1
    };
    if stages > MAX_STAGES {
        return Err(f.error(
            name,
            format!("shape {shape:?}: {stages} stages, more than {MAX_STAGES}"),
        ));
    }
    let prior_name = match (f.get("prior").is_some(), f.get("log_prior").is_some()) {
        (true, true) => {
            return Err(f.error(
                "log_prior",
                "the file holds both `prior` and `log_prior`: keep one",
            ));
        }
        (true, false) => Some("prior"),
        (false, true) => Some("log_prior"),
        (false, false) => None,
    };
    if let Some(p) = prior_name
        && stages > 1
    {
        return Err(f.error(
            p,
            format!("a prior is over one code space; codes {shape:?} have {stages} stages"),
        ));
    }
    if input == InputKind::Codes {
        k = if !args.code_space.is_empty() {
            match args.code_space.len() {
                1 => vec![args.code_space[0]; stages],
                s if s == stages => args.code_space.clone(),
                s => {
                    return Err(InputError::config(format!(
                        "--code-space: {s} values for the {stages} stages of codes {shape:?}"
                    )));
                }
            }
        } else if let Some(p) = prior_name {
            let len = f.get(p).unwrap().shape.first().copied().unwrap_or(0);
            vec![len.max(1) as u64]
        } else {
            let k = largest_codes(f, stages)?;
            notes.push(format!(
                "code space taken as the largest code + 1 (K = {}): give the quantizer's \
                 --code-space for the uniform prior's rate terms and the coded length",
                join(&k)
            ));
            k
        };
    }
    let log_r = match prior_name {
        None => None,
        Some(p) => Some((read_prior(f, p, k[0])?, p)),
    };
    let tau = args.temperature.unwrap_or(1.0);
    let mut chunk = args.chunk_rows.min((CHUNK_VALUES / row_len).max(1));
    if input == InputKind::ZE {
        // Whole blocks of the assignment kernels (64 rows; a soft block takes at most
        // TILE_BUDGET / K rows): every chunk size then sums the same distance GEMMs.
        let soft_rows = (TILE_BUDGET / k[0] as usize).clamp(1, 64);
        let block = 64 * soft_rows / gcd(64, soft_rows);
        chunk = chunk.div_ceil(block) * block;
    }
    let chunk = chunk.min(n);
    let plan = Plan {
        input,
        posterior,
        tau,
        n,
        row_len,
        images,
        per_image,
        k,
        labels,
        log_r,
        chunk,
        notes,
    };
    check_memory(f, &plan)?;
    Ok(plan)
}

/// The one of z_e, codes, logits the file holds (or `--input` names).
fn pick_input(f: &SafetensorsFile, asked: Option<InputKind>) -> Result<InputKind, InputError> {
    let all = [InputKind::ZE, InputKind::Codes, InputKind::Logits];
    let present: Vec<InputKind> = all
        .into_iter()
        .filter(|k| f.get(k.name()).is_some())
        .collect();
    match (asked, present.as_slice()) {
        (Some(k), _) if present.contains(&k) => Ok(k),
        (Some(k), _) => Err(f.error(k.name(), "not in the file (--input names it)")),
        (None, [one]) => Ok(*one),
        (None, []) => Err(InputError::file(
            f.path(),
            format!(
                "holds none of the tensors `z_e` (with `codebook`), `codes`, `logits` (it \
                 holds: {})",
                if f.names().is_empty() {
                    "nothing".to_string()
                } else {
                    f.names().join(", ")
                }
            ),
        )),
        (None, many) => Err(InputError::file(
            f.path(),
            format!(
                "holds more than one of {}: say which with --input",
                many.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Dense ids (in the labels' order) of the distinct values of `labels` `[b]`, read in chunks.
fn label_ids(f: &SafetensorsFile, b: usize) -> Result<HashMap<i128, u32>, InputError> {
    let mut seen = BTreeSet::new();
    for e0 in (0..b).step_by(CHUNK_VALUES) {
        let v = f.read_int("labels", e0, CHUNK_VALUES.min(b - e0))?;
        for (i, &y) in v.iter().enumerate() {
            if y < 0 {
                return Err(f.error(
                    "labels",
                    format!("label {y} at [{}]: labels are non-negative", e0 + i),
                ));
            }
            seen.insert(y);
            if seen.len() > MAX_CLASSES {
                return Err(f.error("labels", "more than 2^20 distinct labels"));
            }
        }
    }
    Ok(seen
        .into_iter()
        .enumerate()
        .map(|(i, y)| (y, i as u32))
        .collect())
}

/// Largest code + 1 of each stage of `codes`, read in chunks; a negative code is an error.
fn largest_codes(f: &SafetensorsFile, stages: usize) -> Result<Vec<u64>, InputError> {
    let numel = f.get("codes").unwrap().numel;
    let mut max = vec![0i128; stages];
    let step = (CHUNK_VALUES / stages).max(1) * stages;
    for e0 in (0..numel).step_by(step) {
        let v = f.read_int("codes", e0, step.min(numel - e0))?;
        for (i, &c) in v.iter().enumerate() {
            if !(0..1 << 63).contains(&c) {
                check_code(f, e0 + i, c, None)?;
            }
            let s = (e0 + i) % stages;
            max[s] = max[s].max(c);
        }
    }
    Ok(max.into_iter().map(|m| m as u64 + 1).collect())
}

/// Code `c` at flat element `e` of `codes` is in 0..`k` (`k` None: in 0..2^63).
pub(super) fn check_code(
    f: &SafetensorsFile,
    e: usize,
    c: i128,
    k: Option<u64>,
) -> Result<(), InputError> {
    let shape = &f.get("codes").unwrap().shape;
    if c < 0 {
        return Err(f.error(
            "codes",
            format!("code {c} at {}: codes are non-negative", position(shape, e)),
        ));
    }
    let k = k.unwrap_or(1 << 63);
    if c >= k as i128 {
        let stage = if shape.len() == 4 {
            format!(" of stage {}", e % shape[3] + 1)
        } else {
            String::new()
        };
        return Err(f.error(
            "codes",
            format!(
                "code {c} at {} is outside the code space 0..{k}{stage} (--code-space)",
                position(shape, e)
            ),
        ));
    }
    Ok(())
}

/// log r(z) from tensor `name` (`prior`: probabilities; `log_prior`: log-probabilities), `[k]`.
fn read_prior(f: &SafetensorsFile, name: &str, k: u64) -> Result<Vec<f64>, InputError> {
    let t = f.get(name).unwrap();
    if !t.dtype.is_float() || t.shape.len() != 1 || t.shape[0] as u64 != k {
        return Err(f.error(
            name,
            format!(
                "{} {:?}: must be [K] floats, K = {k} the code space",
                t.dtype.name(),
                t.shape
            ),
        ));
    }
    let v = f.read_f64(name, 0, k as usize)?;
    let log_r: Vec<f64> = if name == "prior" {
        if let Some(i) = v.iter().position(|&p| p <= 0.0) {
            return Err(f.error(
                name,
                format!(
                    "r(z) = {} at [{i}]: every code needs r(z) > 0 (the rate terms would be \
                     infinite)",
                    v[i]
                ),
            ));
        }
        v.iter().map(|p| p.ln()).collect()
    } else {
        v
    };
    let max = log_r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + log_r.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    if lse.abs() > 1e-3 {
        return Err(f.error(
            name,
            format!(
                "sums to {:.6}, not 1 (within 1e-3){}",
                lse.exp(),
                if name == "prior" {
                    "; log-probabilities go in `log_prior`"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(log_r)
}

/// Whether a hard code map over `k` codes is counted in K-sized arrays.
pub(super) fn dense(k: u64, n: usize, classes: usize) -> bool {
    k <= DENSE_K && k <= 4 * n as u64 && k * classes.max(1) as u64 <= DENSE_JOINT
}

/// The memory the measurement takes, against what is available: the codebook, the prior, the
/// dense accumulators (a soft posterior's, one a worker thread) and a chunk.
fn check_memory(f: &SafetensorsFile, p: &Plan) -> Result<(), InputError> {
    let c = p.labels.as_ref().map_or(0, HashMap::len) as u64;
    let threads = rayon::current_num_threads() as u64 + 1;
    let mut parts: Vec<(String, f64)> = Vec::new();
    let k0 = p.k[0];
    if p.input == InputKind::ZE {
        parts.push((
            format!("the codebook [{k0}, {}]", p.row_len),
            (k0 * p.row_len as u64 * 4) as f64,
        ));
    }
    if p.log_r.is_some() {
        parts.push((format!("the prior [{k0}]"), (k0 * 16) as f64));
    }
    if p.posterior == PosteriorKind::Soft {
        if k0 * c.max(1) > DENSE_JOINT * 4 {
            return Err(f.error(
                "labels",
                format!(
                    "the soft joint of {k0} codes and {c} label classes has more than 2^28 cells"
                ),
            ));
        }
        let per = k0 as f64 * (16.0 + 16.0 * c as f64 + 64.0 * 4.0);
        parts.push((
            format!("{threads} soft accumulators of {k0} codes x {c} labels"),
            per * threads as f64,
        ));
    } else {
        let dense_bytes: f64 =
            p.k.iter()
                .filter(|&&k| dense(k, p.n, c as usize))
                .map(|&k| k as f64 * (24.0 + 16.0 * c as f64))
                .sum();
        parts.push(("the code counts".into(), dense_bytes));
    }
    parts.push((
        format!("a chunk of {} vectors", p.chunk),
        (p.chunk * p.row_len * 24 + p.chunk * 16) as f64,
    ));
    let total: f64 = parts.iter().map(|(_, b)| b).sum();
    if let Some(avail) = crate::device::available_memory()
        && total > avail as f64
    {
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let gib = |b: f64| b / (1u64 << 30) as f64;
        return Err(InputError::file(
            f.path(),
            format!(
                "measuring it needs about {:.2} GiB ({}), more than the {:.2} GiB available",
                gib(total),
                parts
                    .iter()
                    .take(2)
                    .map(|(w, b)| format!("{w}: {:.2} GiB", gib(*b)))
                    .collect::<Vec<_>>()
                    .join(", "),
                gib(avail as f64)
            ),
        ));
    }
    Ok(())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

pub(super) fn join(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}
