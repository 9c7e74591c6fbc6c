//! The metrics log of a run: `metrics.jsonl` and `metrics.csv`, one [`Record`] a line. The schema
//! is declared once ([`record_schema!`]): the struct, its JSON fields and the CSV columns all come
//! from that one list, so a new metric is one line there (and one in the README).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::io::write_atomic;

/// Declares [`Record`] (the fixed fields, then one optional field a metric) and its CSV columns.
macro_rules! record_schema {
    ($($(#[$doc:meta])* $name:ident : $ty:ty),* $(,)?) => {
        /// One line of the metrics log. `kind` is `train` (a training step; its perplexity is
        /// that of one batch, biased low, and is labelled `batch_perplexity`) or `eval` (the
        /// whole test set).
        #[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
        pub struct Record {
            pub kind: String,
            pub step: u64,
            pub epoch: usize,
            /// Seconds of training so far.
            pub wall_time: f64,
            $(
                $(#[$doc])*
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }

        /// The CSV header's columns, in order.
        pub const CSV_COLUMNS: &[&str] = &["kind", "step", "epoch", "wall_time", $(stringify!($name)),*];

        impl Record {
            /// The record as one CSV line (empty cells for absent metrics).
            pub fn csv_line(&self) -> String {
                let cells: Vec<String> = vec![
                    self.kind.clone(),
                    self.step.to_string(),
                    self.epoch.to_string(),
                    format!("{:.3}", self.wall_time),
                    $(self.$name.map(|v| v.to_string()).unwrap_or_default(),)*
                ];
                cells.join(",")
            }
        }
    };
}

record_schema! {
    loss: f64,
    /// Mean squared reconstruction error, pixels in [0, 1].
    recon_mse: f64,
    codebook_loss: f64,
    commitment_loss: f64,
    batch_perplexity: f64,
    batch_codes_used: usize,
    /// Dead-code restarts so far.
    restarts: u64,
    /// Train records on a GPU: reads from the device since the previous train record (the
    /// reading step's own; steps that log nothing make none).
    host_reads: u64,
    /// exp(H(Z)) over the whole evaluation set.
    perplexity: f64,
    /// H(Z) in nats over the whole evaluation set.
    entropy_nats: f64,
    codes_used: usize,
    dead_codes: usize,
    psnr: f64,
    /// The explicit rate term of the loss (train records, `--rate vdib|vib`).
    rate: f64,
    /// Eval records: information quantities under the assigned posterior (nats per latent).
    h_z_given_i: f64,
    mutual_info: f64,
    cross_entropy: f64,
    kl: f64,
    /// Gaussian decoder NLL per image.
    distortion: f64,
    l_vdib: f64,
    l_vib: f64,
    /// Eval records: under the soft posterior softmax(-d^2/tau).
    soft_perplexity: f64,
    soft_h_z_given_i: f64,
    soft_mutual_info: f64,
    soft_kl: f64,
    soft_l_vib: f64,
    h_z_miller_madow: f64,
    soft_h_z: f64,
    soft_cross_entropy: f64,
    soft_l_vdib: f64,
}

/// Appends records to `metrics.jsonl` and `metrics.csv` in a run directory.
pub struct MetricsLog {
    jsonl: (std::fs::File, PathBuf),
    csv: (std::fs::File, PathBuf),
}

/// Appends `line` to a log file; a failure names the file.
fn append(file: &mut (std::fs::File, PathBuf), line: &str) -> Result<(), InputError> {
    writeln!(file.0, "{line}").map_err(|e| InputError::file(&file.1, format!("cannot write: {e}")))
}

impl MetricsLog {
    /// Opens the logs at `jsonl` and `csv`. When `keep_up_to` is given (a resumed run), records
    /// after that step (written after the checkpoint the run resumes from) are dropped first, so
    /// that the log reads as one uninterrupted run.
    pub fn open(jsonl: &Path, csv: &Path, keep_up_to: Option<u64>) -> anyhow::Result<Self> {
        let mut kept: Vec<Record> = Vec::new();
        if let Some(step) = keep_up_to {
            kept = read_records(jsonl)?
                .into_iter()
                .filter(|r| r.step <= step)
                .collect();
        }
        let mut j = String::new();
        let mut c = format!("{}\n", CSV_COLUMNS.join(","));
        for r in &kept {
            j.push_str(&serde_json::to_string(r)?);
            j.push('\n');
            c.push_str(&r.csv_line());
            c.push('\n');
        }
        write_atomic(jsonl, j.as_bytes())?;
        write_atomic(csv, c.as_bytes())?;
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(p)
                .map(|f| (f, p.to_path_buf()))
                .map_err(|e| InputError::file(p, format!("cannot open for appending: {e}")))
        };
        Ok(Self {
            jsonl: open(jsonl)?,
            csv: open(csv)?,
        })
    }

    pub fn write(&mut self, r: &Record) -> anyhow::Result<()> {
        append(&mut self.jsonl, &serde_json::to_string(r)?)?;
        append(&mut self.csv, &r.csv_line())?;
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        for (f, p) in [&mut self.jsonl, &mut self.csv] {
            f.flush()
                .map_err(|e| InputError::file(&*p, format!("cannot write: {e}")))?;
        }
        Ok(())
    }
}

/// Reads a `metrics.jsonl` (a missing file reads as empty; a torn last line is skipped).
pub fn read_records(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(InputError::file(path, format!("cannot read: {e}")).into()),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_resume_drops_records_after_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(
            &d.path().join("metrics.jsonl"),
            &d.path().join("metrics.csv"),
            None,
        )
        .unwrap();
        for step in 1..=5 {
            log.write(&Record {
                kind: "train".into(),
                step,
                loss: Some(step as f64),
                ..Default::default()
            })
            .unwrap();
        }
        log.flush().unwrap();
        drop(log);
        let mut log = MetricsLog::open(
            &d.path().join("metrics.jsonl"),
            &d.path().join("metrics.csv"),
            Some(3),
        )
        .unwrap();
        log.write(&Record {
            kind: "train".into(),
            step: 4,
            loss: Some(0.5),
            ..Default::default()
        })
        .unwrap();
        log.flush().unwrap();
        let recs = read_records(&d.path().join("metrics.jsonl")).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.step).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(recs[3].loss, Some(0.5));
        let csv = std::fs::read_to_string(d.path().join("metrics.csv")).unwrap();
        assert_eq!(csv.lines().count(), 5);
        assert!(csv.starts_with("kind,step,epoch"));
        assert_eq!(
            csv.lines().nth(4).unwrap().split(',').count(),
            CSV_COLUMNS.len()
        );
    }

    /// The CSV columns are the JSON fields: every metric set in a record appears under its name.
    #[test]
    fn csv_columns_follow_the_json_fields() {
        let r = Record {
            kind: "eval".into(),
            step: 3,
            soft_l_vdib: Some(1.5),
            codes_used: Some(7),
            ..Default::default()
        };
        let cells: Vec<String> = r.csv_line().split(',').map(String::from).collect();
        assert_eq!(cells.len(), CSV_COLUMNS.len());
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        for (col, cell) in CSV_COLUMNS.iter().zip(&cells) {
            match json.get(*col) {
                Some(v) if *col != "wall_time" => {
                    assert_eq!(&v.to_string().trim_matches('"'), cell, "{col}")
                }
                Some(_) => {}
                None => assert!(cell.is_empty(), "{col} = {cell}"),
            }
        }
    }
}
