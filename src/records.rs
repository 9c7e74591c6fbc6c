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
            /// The record as one CSV line, without its line break (empty cells for absent
            /// metrics; written by the `csv` crate, which quotes a cell where it must).
            pub fn csv_line(&self) -> String {
                csv_line([
                    self.kind.clone(),
                    self.step.to_string(),
                    self.epoch.to_string(),
                    format!("{:.3}", self.wall_time),
                    $(self.$name.map(|v| v.to_string()).unwrap_or_default(),)*
                ])
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

/// `fields` as one CSV record (RFC 4180, by the `csv` crate), without its line break.
fn csv_line<I: IntoIterator<Item = T>, T: AsRef<[u8]>>(fields: I) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(fields)
        .expect("a CSV record of UTF-8 text, written to memory");
    let mut line = String::from_utf8(w.into_inner().expect("written to memory"))
        .expect("CSV of UTF-8 fields is UTF-8");
    line.pop();
    line
}

/// `metrics.csv`'s header line, with its line break.
fn csv_header() -> String {
    csv_line(CSV_COLUMNS) + "\n"
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
    /// Opens the logs at `jsonl` and `csv`. Without `keep_up_to` (a new run) both start empty
    /// (the CSV with its header). With it (a resumed run), the records after that step (written
    /// after the checkpoint the run resumes from) and a torn last line are dropped, so that the
    /// log reads as one uninterrupted run; the records kept stay byte for byte as they were
    /// (their lines are copied, never re-serialised). A file is rewritten (atomically) only when
    /// that changes it: a resume with nothing to drop leaves both files untouched. `metrics.csv`
    /// follows `metrics.jsonl`: its line of each kept record is kept where it is there (same kind,
    /// step and epoch, all columns), written from the record where not. A line of `metrics.jsonl`
    /// that is not a record, other than a torn last line, is an error naming the file and the
    /// line, and neither file is touched.
    pub fn open(jsonl: &Path, csv: &Path, keep_up_to: Option<u64>) -> anyhow::Result<Self> {
        match keep_up_to {
            None => {
                write_atomic(jsonl, b"")?;
                write_atomic(csv, csv_header().as_bytes())?;
            }
            Some(step) => keep_records_up_to(jsonl, csv, step)?,
        }
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

/// The resume half of [`MetricsLog::open`]: keeps the records up to `step`, writing a file only
/// when its content changes.
fn keep_records_up_to(jsonl: &Path, csv: &Path, step: u64) -> Result<(), InputError> {
    let old_jsonl = read_if_present(jsonl)?;
    let lines = parse_log(jsonl, old_jsonl.as_deref().unwrap_or_default())?;
    let kept: Vec<&Line> = lines.iter().filter(|l| l.record.step <= step).collect();
    let mut new_jsonl = Vec::new();
    for l in &kept {
        new_jsonl.extend_from_slice(l.text);
        new_jsonl.push(b'\n');
    }
    if old_jsonl.as_deref() != Some(&new_jsonl[..]) {
        write_atomic(jsonl, &new_jsonl)?;
    }
    let old_csv = read_if_present(csv)?;
    let new_csv = csv_for(&kept, old_csv.as_deref().unwrap_or_default());
    if old_csv.as_deref() != Some(&new_csv[..]) {
        write_atomic(csv, &new_csv)?;
    }
    Ok(())
}

/// `metrics.csv` for the records `kept`: the header, then each record's line of `old` (the CSV
/// as it is) where that line is there in order, complete and of the same record, else the line
/// written from the record.
fn csv_for(kept: &[&Line], old: &[u8]) -> Vec<u8> {
    let header = csv_header();
    let old_lines: Vec<&[u8]> = old
        .strip_prefix(header.as_bytes())
        .map(|rest| {
            rest.split_inclusive(|&b| b == b'\n')
                .filter(|l| l.ends_with(b"\n"))
                .collect()
        })
        .unwrap_or_default();
    let mut out = header.into_bytes();
    let mut next = 0;
    for Line { record: r, .. } in kept {
        match old_lines.get(next) {
            Some(l) if is_line_of(l, r) => {
                out.extend_from_slice(l);
                next += 1;
            }
            _ => {
                out.extend_from_slice(r.csv_line().as_bytes());
                out.push(b'\n');
            }
        }
    }
    out
}

/// Whether `line` (one line of `metrics.csv`, with its line break) is a complete line of the
/// record `r`: one CSV record of every column, whose kind, step and epoch are `r`'s.
fn is_line_of(line: &[u8], r: &Record) -> bool {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line);
    let mut records = reader.records();
    let (Some(Ok(cells)), None) = (records.next(), records.next()) else {
        return false;
    };
    cells.len() == CSV_COLUMNS.len()
        && cells
            .iter()
            .take(3)
            .eq([r.kind.as_str(), &r.step.to_string(), &r.epoch.to_string()])
}

/// The bytes of `path`, `None` when it does not exist.
fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, InputError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(InputError::file(path, format!("cannot read: {e}"))),
    }
}

/// One complete line of a metrics log: its text (without the newline) and its record.
struct Line<'a> {
    text: &'a [u8],
    record: Record,
}

/// The records of a metrics log, line by line. A last line without its newline that is not a
/// record is one torn by a kill while it was being appended: it is left out. Any other line that
/// is not a record is an error naming the file and the line number.
fn parse_log<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<Line<'a>>, InputError> {
    let mut lines = Vec::new();
    for (i, piece) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let text = piece.strip_suffix(b"\n");
        match serde_json::from_slice::<Record>(text.unwrap_or(piece)) {
            Ok(record) => lines.push(Line {
                text: text.unwrap_or(piece),
                record,
            }),
            // A torn last line (the only piece without a newline is the last).
            Err(_) if text.is_none() => {}
            Err(e) => {
                let why = e.to_string();
                let why = why.split(" at line ").next().unwrap_or(&why);
                return Err(InputError::file(
                    path,
                    format!(
                        "line {} is not a metrics record ({why}, column {}); only an unfinished last line is skipped",
                        i + 1,
                        e.column()
                    ),
                ));
            }
        }
    }
    Ok(lines)
}

/// Reads a `metrics.jsonl`: a missing file reads as empty, a torn last line (no newline, not a
/// record: a kill while it was being appended) is skipped, and any other line that is not a
/// record is an error naming the file and the line number.
pub fn read_records(path: &Path) -> anyhow::Result<Vec<Record>> {
    let bytes = read_if_present(path)?.unwrap_or_default();
    Ok(parse_log(path, &bytes)?
        .into_iter()
        .map(|l| l.record)
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

    /// Lines as another version (or a hand) may have written them: numbers with more digits than
    /// a float keeps, so that re-serialising a parsed record would change them.
    fn hand_lines(steps: &[u64]) -> String {
        steps
            .iter()
            .map(|s| {
                format!(
                    "{{\"kind\":\"train\",\"step\":{s},\"epoch\":0,\"wall_time\":0.30000000000000000001,\"loss\":1.10000000000000000000{s}}}\n"
                )
            })
            .collect()
    }

    /// The inode of a file: a file rewritten (written to a temporary and renamed) gets a new one.
    #[cfg(unix)]
    fn inode(p: &Path) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap())
    }

    /// A resume with nothing to drop changes nothing: neither file is rewritten, and a record
    /// appended after comes after the old lines, which keep their text.
    #[cfg(unix)]
    #[test]
    fn resume_with_nothing_to_drop_leaves_both_files_untouched() {
        let d = tempfile::tempdir().unwrap();
        let (j, c) = (d.path().join("metrics.jsonl"), d.path().join("metrics.csv"));
        let text = hand_lines(&[1, 2, 3]);
        std::fs::write(&j, &text).unwrap();
        // The CSV as the log wrote it; its lines are kept whatever their digits.
        let mut csv = csv_header();
        for r in read_records(&j).unwrap() {
            let line = r.csv_line().replacen("0.300", "0.3000", 1);
            csv.push_str(&line);
            csv.push('\n');
        }
        std::fs::write(&c, &csv).unwrap();
        let (ij, ic) = (inode(&j), inode(&c));
        let log = MetricsLog::open(&j, &c, Some(3)).unwrap();
        drop(log);
        assert_eq!(std::fs::read_to_string(&j).unwrap(), text);
        assert_eq!(std::fs::read_to_string(&c).unwrap(), csv);
        assert_eq!((inode(&j), inode(&c)), (ij, ic), "a file was rewritten");
        // Resuming from a later step drops nothing either.
        let mut log = MetricsLog::open(&j, &c, Some(10)).unwrap();
        assert_eq!((inode(&j), inode(&c)), (ij, ic), "a file was rewritten");
        log.write(&Record {
            kind: "eval".into(),
            step: 4,
            ..Default::default()
        })
        .unwrap();
        log.flush().unwrap();
        let after = std::fs::read_to_string(&j).unwrap();
        assert!(
            after.starts_with(&text) && after.lines().count() == 4,
            "{after}"
        );
    }

    /// Dropping records keeps the lines before them as they were (not re-serialised) in both
    /// files, and drops a torn last line.
    #[test]
    fn resume_drops_later_records_and_keeps_the_rest_byte_for_byte() {
        let d = tempfile::tempdir().unwrap();
        let (j, c) = (d.path().join("metrics.jsonl"), d.path().join("metrics.csv"));
        let text = hand_lines(&[1, 2, 3, 4, 5]);
        std::fs::write(&j, &text).unwrap();
        let mut csv = csv_header();
        let csv_lines: Vec<String> = read_records(&j)
            .unwrap()
            .iter()
            .map(|r| r.csv_line().replacen("0.300", "0.3000", 1) + "\n")
            .collect();
        csv.extend(csv_lines.iter().cloned());
        std::fs::write(&c, &csv).unwrap();
        MetricsLog::open(&j, &c, Some(3)).unwrap();
        assert_eq!(std::fs::read_to_string(&j).unwrap(), hand_lines(&[1, 2, 3]));
        let want_csv = format!("{}{}", csv_header(), csv_lines[..3].concat());
        assert_eq!(std::fs::read_to_string(&c).unwrap(), want_csv);

        // A torn last line alone is reason enough to rewrite; the CSV, which never got that
        // record, stays as it is.
        let mut torn = hand_lines(&[1, 2, 3]);
        torn.push_str("{\"kind\":\"train\",\"step\":4,\"ep");
        std::fs::write(&j, &torn).unwrap();
        MetricsLog::open(&j, &c, Some(3)).unwrap();
        assert_eq!(std::fs::read_to_string(&j).unwrap(), hand_lines(&[1, 2, 3]));
        assert_eq!(std::fs::read_to_string(&c).unwrap(), want_csv);

        // A CSV missing a record's line (killed between the two appends) gets it from the record.
        let short = format!("{}{}", csv_header(), csv_lines[..2].concat());
        std::fs::write(&c, &short).unwrap();
        MetricsLog::open(&j, &c, Some(3)).unwrap();
        let got = std::fs::read_to_string(&c).unwrap();
        assert!(got.starts_with(&short), "{got}");
        let third = got.lines().nth(3).unwrap();
        assert!(third.starts_with("train,3,0,0.300,"), "{third}");
        assert_eq!(third.split(',').count(), CSV_COLUMNS.len());
    }

    /// Only a torn last line is skipped: a line in the middle that is not a record is an error
    /// naming the file and the line, and a resume then touches neither file.
    #[test]
    fn a_malformed_line_before_the_last_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let (j, c) = (d.path().join("metrics.jsonl"), d.path().join("metrics.csv"));
        let good = hand_lines(&[1, 2]);
        // A torn last line is skipped.
        std::fs::write(&j, format!("{good}{{\"kind\":\"tr")).unwrap();
        assert_eq!(read_records(&j).unwrap().len(), 2);
        // A complete last line without its newline is a record.
        std::fs::write(&j, good.trim_end()).unwrap();
        assert_eq!(read_records(&j).unwrap().len(), 2);
        for (bad, line) in [
            (format!("{good}{{\"kind\":\"tr\n{good}"), 3),
            (format!("{{\"kind\":\"train\"}}\n{good}"), 1),
            (format!("{good}\n"), 3),
            (format!("{good}not json\n"), 3),
        ] {
            std::fs::write(&j, &bad).unwrap();
            std::fs::write(&c, "x\n").unwrap();
            let e = read_records(&j).unwrap_err().to_string();
            assert!(
                e.contains("metrics.jsonl") && e.contains(&format!("line {line} ")),
                "{e}"
            );
            let e = MetricsLog::open(&j, &c, Some(1)).err().unwrap();
            assert!(e.downcast_ref::<InputError>().is_some(), "{e}");
            assert!(e.to_string().contains(&format!("line {line} ")), "{e}");
            assert_eq!(std::fs::read_to_string(&j).unwrap(), bad);
            assert_eq!(std::fs::read_to_string(&c).unwrap(), "x\n");
        }
    }

    /// `metrics.csv` read back by the `csv` crate (as strict as RFC 4180: every record as wide as
    /// the header): the header is [`CSV_COLUMNS`], a row a record in order, each cell the
    /// record's value, after a resume too.
    #[test]
    fn metrics_csv_reads_back_as_csv_of_constant_width() {
        let d = tempfile::tempdir().unwrap();
        let (j, c) = (d.path().join("metrics.jsonl"), d.path().join("metrics.csv"));
        let rec = |kind: &str, step: u64, loss: f64| Record {
            kind: kind.into(),
            step,
            epoch: 1,
            wall_time: 1.23456,
            loss: Some(loss),
            codes_used: (kind == "eval").then_some(7),
            soft_l_vdib: Some(-0.5),
            ..Default::default()
        };
        let mut log = MetricsLog::open(&j, &c, None).unwrap();
        for (step, loss) in [(1, 2.5), (2, f64::NAN), (3, f64::INFINITY), (4, 1e-300)] {
            log.write(&rec(
                if step % 2 == 0 { "eval" } else { "train" },
                step,
                loss,
            ))
            .unwrap();
        }
        log.flush().unwrap();
        drop(log);
        let mut log = MetricsLog::open(&j, &c, Some(3)).unwrap();
        log.write(&rec("train", 4, 0.25)).unwrap();
        log.flush().unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(&c)
            .unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, CSV_COLUMNS);
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 4);
        let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
        for (row, (kind, step, loss, codes)) in rows.iter().zip([
            ("train", "1", "2.5", ""),
            ("eval", "2", "NaN", "7"),
            ("train", "3", "inf", ""),
            ("train", "4", "0.25", ""),
        ]) {
            assert_eq!(row.len(), CSV_COLUMNS.len(), "{row:?}");
            assert_eq!(
                [&row[0], &row[1], &row[col("loss")], &row[col("codes_used")]],
                [kind, step, loss, codes]
            );
            assert_eq!(
                (&row[col("wall_time")], &row[col("soft_l_vdib")]),
                ("1.235", "-0.5")
            );
        }
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
