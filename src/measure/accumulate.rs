//! The file read chunk by chunk into the statistics of its code maps: [`InfoAccumulator`] (as
//! `vqib eval` accumulates), or [`SparseCounts`] for hard codes in a code space large against
//! the data and for the tuples of staged codes.

use std::collections::HashMap;
use std::hash::Hash;

use super::file::SafetensorsFile;
use super::plan::{Plan, check_code, dense};
use super::{CodeMap, Coded, InputKind, PosteriorKind};
use crate::error::InputError;
use crate::info::counts::{SparseCounts, kt_bits};
use crate::info::{InfoAccumulator, InfoSummary, Relevance};
use crate::kernels::assign::{Codebook, SoftOptions, nearest, soft_assign};

/// r(z) of one code map.
#[derive(Clone)]
enum LogR {
    Uniform(f64),
    Table(Vec<f64>),
}

impl LogR {
    fn at(&self, z: u64) -> f64 {
        match self {
            LogR::Uniform(l) => *l,
            LogR::Table(t) => t[z as usize],
        }
    }
}

/// The statistics of one code map.
enum Acc {
    Dense(InfoAccumulator),
    Sparse(SparseCounts<u64>, LogR),
}

impl Acc {
    fn new(k: u64, n: usize, classes: Option<usize>, log_r: LogR, soft: bool) -> Self {
        if soft || dense(k, n, classes.unwrap_or(0)) {
            let table = match log_r {
                LogR::Table(t) => t,
                LogR::Uniform(l) => vec![l; k as usize],
            };
            let acc = InfoAccumulator::new(table);
            Acc::Dense(match classes {
                Some(c) => acc.with_classes(c),
                None => acc,
            })
        } else {
            Acc::Sparse(SparseCounts::new(classes.is_some()), log_r)
        }
    }

    fn add_hard(&mut self, codes: &[u64], labels: Option<&[u32]>) {
        match self {
            Acc::Dense(a) => {
                let c: Vec<u32> = codes.iter().map(|&c| c as u32).collect();
                a.add_hard(&c, labels);
            }
            Acc::Sparse(s, r) => {
                for (i, &c) in codes.iter().enumerate() {
                    s.add(c, labels.map(|l| l[i]), r.at(c));
                }
            }
        }
    }

    fn totals(&self, classes: Option<usize>) -> Totals {
        match self {
            Acc::Dense(a) => Totals {
                info: a.summary(),
                relevance: a.relevance(),
                counts: a.argmax_counts().to_vec(),
                sparse: false,
            },
            Acc::Sparse(c, _) => Totals::sparse(c, classes),
        }
    }

    fn dense(&mut self) -> &mut InfoAccumulator {
        match self {
            Acc::Dense(a) => a,
            Acc::Sparse(..) => unreachable!("soft posteriors are dense"),
        }
    }
}

/// The tuple (Z_1, ..., Z_S) of S stages, counted by key: a mixed-radix number where the tuple
/// space fits 128 bits, the tuple itself otherwise.
enum Joint {
    Radix(SparseCounts<u128>, Vec<u128>),
    Tuple(SparseCounts<Vec<u64>>),
}

/// Reads the file chunk by chunk into the code map's statistics: the map (or the joint of the
/// stages) and the stages.
pub(super) fn accumulate(
    f: &SafetensorsFile,
    p: &Plan,
) -> Result<(CodeMap, Vec<CodeMap>), InputError> {
    let classes = p.labels.as_ref().map(HashMap::len);
    let soft = p.posterior == PosteriorKind::Soft;
    let log_r_of = |k: u64| match &p.log_r {
        Some((t, _)) => LogR::Table(t.clone()),
        None => LogR::Uniform(-(k as f64).ln()),
    };
    let mut accs: Vec<Acc> =
        p.k.iter()
            .map(|&k| Acc::new(k, p.n, classes, log_r_of(k), soft))
            .collect();
    let stages = p.k.len();
    let mut joint = (stages > 1).then(|| {
        let radix = p.k.iter().try_fold(1u128, |a, &k| a.checked_mul(k as u128));
        match radix {
            Some(_) => Joint::Radix(
                SparseCounts::new(classes.is_some()),
                p.k.iter().map(|&k| k as u128).collect(),
            ),
            None => Joint::Tuple(SparseCounts::new(classes.is_some())),
        }
    });
    let joint_log_r = -p.k.iter().map(|&k| (k as f64).ln()).sum::<f64>();
    let codebook: Vec<f32> = if p.input == InputKind::ZE {
        let cb = f.get("codebook").unwrap();
        f.read_f32("codebook", 0, cb.numel)?
    } else {
        Vec::new()
    };
    let cb = (p.input == InputKind::ZE).then(|| Codebook::new(&codebook, p.row_len));
    let dense_log_r: Vec<f64> = match (&accs[0], soft) {
        (Acc::Dense(_), true) => match log_r_of(p.k[0]) {
            LogR::Table(t) => t,
            LogR::Uniform(l) => vec![l; p.k[0] as usize],
        },
        _ => Vec::new(),
    };
    let name = p.input.name();
    let mut weights = Vec::new();
    for r0 in (0..p.n).step_by(p.chunk) {
        let rows = p.chunk.min(p.n - r0);
        let labels = chunk_labels(f, p, r0, rows)?;
        let lab = labels.as_deref();
        let e0 = r0 * p.row_len;
        let len = rows * p.row_len;
        match p.input {
            InputKind::ZE => {
                let z = f.read_f32(name, e0, len)?;
                let cb = cb.as_ref().unwrap();
                if soft {
                    let opts = SoftOptions {
                        tau: p.tau,
                        samples: 0,
                        seed: 0,
                        log_r: Some(&dense_log_r),
                        labels: lab.zip(classes),
                    };
                    let part = soft_assign(&z, cb, &opts)
                        .info
                        .expect("asked for the information quantities");
                    accs[0].dense().merge(&part);
                } else {
                    let codes: Vec<u64> = nearest(&z, cb).into_iter().map(u64::from).collect();
                    accs[0].add_hard(&codes, lab);
                }
            }
            InputKind::Logits => {
                let l = f.read_f64(name, e0, len)?;
                if soft {
                    let acc = accs[0].dense();
                    for (i, row) in l.chunks_exact(p.row_len).enumerate() {
                        let (h, inv, am) = softmax_row(row, p.tau, &mut weights);
                        acc.add_weights(&weights, inv, h, am, lab.map(|l| l[i]));
                    }
                } else {
                    let codes: Vec<u64> = l
                        .chunks_exact(p.row_len)
                        .map(|row| argmax(row) as u64)
                        .collect();
                    accs[0].add_hard(&codes, lab);
                }
            }
            InputKind::Codes => {
                let v = f.read_int(name, e0, len)?;
                for (i, &c) in v.iter().enumerate() {
                    let k = p.k[i % stages];
                    if c < 0 || c >= k as i128 {
                        check_code(f, e0 + i, c, Some(k))?;
                    }
                }
                let mut stage = vec![0u64; rows];
                for (s, acc) in accs.iter_mut().enumerate() {
                    for (r, c) in stage.iter_mut().enumerate() {
                        *c = v[r * stages + s] as u64;
                    }
                    acc.add_hard(&stage, lab);
                }
                if let Some(j) = joint.as_mut() {
                    for (r, tuple) in v.chunks_exact(stages).enumerate() {
                        let y = lab.map(|l| l[r]);
                        match j {
                            Joint::Radix(s, radix) => {
                                let key = tuple
                                    .iter()
                                    .zip(radix.iter())
                                    .fold(0u128, |a, (&c, &k)| a * k + c as u128);
                                s.add(key, y, joint_log_r);
                            }
                            Joint::Tuple(s) => {
                                s.add(tuple.iter().map(|&c| c as u64).collect(), y, joint_log_r)
                            }
                        }
                    }
                }
            }
        }
    }
    let maps: Vec<CodeMap> = accs
        .iter()
        .zip(&p.k)
        .enumerate()
        .map(|(s, (acc, &k))| {
            let name = match (stages, p.input) {
                (1, i) => i.name().to_string(),
                _ => format!("stage {}", s + 1),
            };
            code_map(p, name, Some(k), (k as f64).log2(), acc.totals(classes))
        })
        .collect();
    let Some(joint) = joint else {
        return Ok((maps.into_iter().next().unwrap(), Vec::new()));
    };
    let log2_k: f64 = p.k.iter().map(|&k| (k as f64).log2()).sum();
    let space = p.k.iter().try_fold(1u64, |a, &k| a.checked_mul(k));
    let totals = match &joint {
        Joint::Radix(s, _) => Totals::sparse(s, classes),
        Joint::Tuple(s) => Totals::sparse(s, classes),
    };
    let j = code_map(p, "joint".into(), space, log2_k, totals);
    Ok((j, maps))
}

/// The labels (dense ids) of rows `r0..r0 + rows`, read from `labels` `[B]`.
fn chunk_labels(
    f: &SafetensorsFile,
    p: &Plan,
    r0: usize,
    rows: usize,
) -> Result<Option<Vec<u32>>, InputError> {
    let (Some(ids), Some(per)) = (&p.labels, p.per_image) else {
        return Ok(None);
    };
    let (i0, i1) = (r0 / per, (r0 + rows - 1) / per + 1);
    let v = f.read_int("labels", i0, i1 - i0)?;
    let id = |i: usize| {
        ids.get(&v[i - i0])
            .copied()
            .ok_or_else(|| f.error("labels", "changed while it was read"))
    };
    (r0..r0 + rows)
        .map(|r| id(r / per))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// softmax(`row` / tau) as f32 weights into `w` with 1 / their sum, its entropy (nats, from the
/// logits in f64) and its most probable code (the first on ties).
fn softmax_row(row: &[f64], tau: f64, w: &mut Vec<f32>) -> (f64, f64, usize) {
    let am = argmax(row);
    let max = row[am] / tau;
    w.clear();
    let (mut s, mut sb) = (0.0f64, 0.0f64);
    for &l in row {
        let b = l / tau - max;
        let e = b.exp();
        s += e;
        sb += e * b;
        w.push(e as f32);
    }
    let inv = 1.0 / w.iter().map(|&x| x as f64).sum::<f64>();
    (s.ln() - sb / s, inv, am)
}

/// Index of the first largest value.
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// The statistics of one code map: its summary, relevance and argmax code counts (all K, or
/// those that occur where `sparse`).
struct Totals {
    info: InfoSummary,
    relevance: Option<Relevance>,
    counts: Vec<u64>,
    sparse: bool,
}

impl Totals {
    fn sparse<K: Hash + Eq + Ord + Clone>(s: &SparseCounts<K>, classes: Option<usize>) -> Self {
        Totals {
            info: s.summary(),
            relevance: classes.and_then(|c| s.relevance(c)),
            counts: s.counts(),
            sparse: true,
        }
    }
}

/// Most codes a histogram in the output holds.
const HISTOGRAM_K: usize = 1 << 16;

fn code_map(p: &Plan, name: String, code_space: Option<u64>, log2_k: f64, t: Totals) -> CodeMap {
    let bits = kt_bits(&t.counts, log2_k);
    let ln2 = std::f64::consts::LN_2;
    let per_image = |per_vector: f64| p.per_image.map(|l| per_vector * l as f64);
    let info = t.info;
    CodeMap {
        name,
        code_space,
        log2_code_space: log2_k,
        info_bits: info.bits(),
        relevance: t.relevance,
        coded: Coded {
            bits,
            bits_per_vector: bits / p.n as f64,
            bits_per_image: p.images.map(|b| bits / b as f64),
        },
        h_z_bits_per_image: per_image(info.h_z / ln2),
        cross_entropy_bits_per_image: per_image(info.cross_entropy / ln2),
        undersampled: log2_k + 10f64.log2() > (p.n as f64).log2(),
        counted_sparse: t.sparse,
        histogram: (!t.sparse && t.counts.len() <= HISTOGRAM_K).then_some(t.counts),
        info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_row_of_equal_logits_is_uniform() {
        let mut w = Vec::new();
        let (h, inv, am) = softmax_row(&[0.5; 8], 2.0, &mut w);
        assert!((h - 8f64.ln()).abs() < 1e-15);
        assert_eq!((inv, am), (1.0 / 8.0, 0));
        let (h, _, am) = softmax_row(&[0.0, 50.0, 0.0], 1.0, &mut w);
        assert!(h < 1e-18 && am == 1, "{h}");
    }
}
