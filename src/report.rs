//! What a run leaves for people to read: `metrics.jsonl` and `metrics.csv` (one record a line,
//! the same fields), the end-of-run summary table, and PNG grids of originals above
//! reconstructions.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;

/// One line of the metrics log. `kind` is `train` (a training step; its perplexity is that of
/// one batch, biased low, and is labelled `batch_perplexity`) or `eval` (the whole test set).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub kind: String,
    pub step: u64,
    pub epoch: usize,
    /// Seconds of training so far.
    pub wall_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Mean squared reconstruction error, pixels in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recon_mse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codebook_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commitment_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_perplexity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_codes_used: Option<usize>,
    /// Dead-code restarts so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u64>,
    /// exp(H(Z)) over the whole evaluation set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
    /// H(Z) in nats over the whole evaluation set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entropy_nats: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codes_used: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_codes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psnr: Option<f64>,
    /// The explicit rate term of the loss (train records, `--rate vdib|vib`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Eval records: information quantities under the assigned posterior (nats per latent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h_z_given_i: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutual_info: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_entropy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
    /// Gaussian decoder NLL per image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distortion: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l_vdib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l_vib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h_z_miller_madow: Option<f64>,
    /// Eval records: under the soft posterior softmax(-d^2/tau).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_h_z: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_cross_entropy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_l_vdib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_perplexity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_h_z_given_i: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_mutual_info: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_kl: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_l_vib: Option<f64>,
}

const CSV_HEADER: &str = "kind,step,epoch,wall_time,loss,recon_mse,codebook_loss,commitment_loss,batch_perplexity,batch_codes_used,restarts,perplexity,entropy_nats,codes_used,dead_codes,psnr,rate,h_z_given_i,mutual_info,cross_entropy,kl,distortion,l_vdib,l_vib,soft_perplexity,soft_h_z_given_i,soft_mutual_info,soft_kl,soft_l_vib,h_z_miller_madow,soft_h_z,soft_cross_entropy,soft_l_vdib";

impl Record {
    fn csv_line(&self) -> String {
        fn f(v: Option<f64>) -> String {
            v.map(|x| format!("{x}")).unwrap_or_default()
        }
        fn u<T: ToString>(v: Option<T>) -> String {
            v.map(|x| x.to_string()).unwrap_or_default()
        }
        [
            self.kind.clone(),
            self.step.to_string(),
            self.epoch.to_string(),
            format!("{:.3}", self.wall_time),
            f(self.loss),
            f(self.recon_mse),
            f(self.codebook_loss),
            f(self.commitment_loss),
            f(self.batch_perplexity),
            u(self.batch_codes_used),
            u(self.restarts),
            f(self.perplexity),
            f(self.entropy_nats),
            u(self.codes_used),
            u(self.dead_codes),
            f(self.psnr),
            f(self.rate),
            f(self.h_z_given_i),
            f(self.mutual_info),
            f(self.cross_entropy),
            f(self.kl),
            f(self.distortion),
            f(self.l_vdib),
            f(self.l_vib),
            f(self.soft_perplexity),
            f(self.soft_h_z_given_i),
            f(self.soft_mutual_info),
            f(self.soft_kl),
            f(self.soft_l_vib),
            f(self.h_z_miller_madow),
            f(self.soft_h_z),
            f(self.soft_cross_entropy),
            f(self.soft_l_vdib),
        ]
        .join(",")
    }
}

/// Appends records to `metrics.jsonl` and `metrics.csv` in a run directory.
pub struct MetricsLog {
    jsonl: std::fs::File,
    csv: std::fs::File,
}

impl MetricsLog {
    pub fn jsonl_path(run: &Path) -> PathBuf {
        run.join("metrics.jsonl")
    }
    pub fn csv_path(run: &Path) -> PathBuf {
        run.join("metrics.csv")
    }

    /// Opens the logs of `run`. When `keep_up_to` is given (a resumed run), records after that
    /// step (written after the checkpoint the run resumes from) are dropped first, so that the
    /// log reads as one uninterrupted run.
    pub fn open(run: &Path, keep_up_to: Option<u64>) -> anyhow::Result<Self> {
        let jp = Self::jsonl_path(run);
        let cp = Self::csv_path(run);
        let mut kept: Vec<Record> = Vec::new();
        if let Some(step) = keep_up_to {
            kept = read_records(&jp)?
                .into_iter()
                .filter(|r| r.step <= step)
                .collect();
        }
        let mut j = String::new();
        let mut c = format!("{CSV_HEADER}\n");
        for r in &kept {
            j.push_str(&serde_json::to_string(r)?);
            j.push('\n');
            c.push_str(&r.csv_line());
            c.push('\n');
        }
        write_atomic(&jp, j.as_bytes())?;
        write_atomic(&cp, c.as_bytes())?;
        let open = |p: &Path| std::fs::OpenOptions::new().append(true).open(p);
        Ok(Self {
            jsonl: open(&jp)?,
            csv: open(&cp)?,
        })
    }

    pub fn write(&mut self, r: &Record) -> anyhow::Result<()> {
        writeln!(self.jsonl, "{}", serde_json::to_string(r)?)?;
        writeln!(self.csv, "{}", r.csv_line())?;
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.jsonl.flush()?;
        self.csv.flush()?;
        Ok(())
    }
}

/// Reads a `metrics.jsonl` (a missing file reads as empty; a torn last line is skipped).
pub fn read_records(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// A two-column table, aligned.
pub fn table(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let vw = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let line = format!("+-{}-+-{}-+\n", "-".repeat(w), "-".repeat(vw));
    let mut s = line.clone();
    for (k, v) in rows {
        s.push_str(&format!("| {k:<w$} | {v:>vw$} |\n"));
    }
    s.push_str(&line);
    s
}

/// A three-column table (name, two values), aligned; a row with an empty name is the header.
pub fn table3(rows: &[(String, String, String)]) -> String {
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    let line = format!(
        "+-{}-+-{}-+-{}-+\n",
        "-".repeat(w0),
        "-".repeat(w1),
        "-".repeat(w2)
    );
    let (head, body): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.0.is_empty());
    let mut s = line.clone();
    for (a, b, c) in head.into_iter().chain(body) {
        s.push_str(&format!("| {a:<w0$} | {b:>w1$} | {c:>w2$} |\n"));
    }
    s.push_str(&line);
    s
}

/// Writes a PNG grid: for each group of up to `cols` images, a row of originals above a row of
/// their reconstructions. Images are `[n, c, h, w]` in [0, 1] (clamped); `scale` enlarges pixels.
pub fn write_grid(
    path: &Path,
    originals: &[f32],
    recons: &[f32],
    n: usize,
    [c, h, w]: [usize; 3],
    cols: usize,
    scale: usize,
) -> anyhow::Result<()> {
    let cols = cols.clamp(1, n.max(1));
    let groups = n.div_ceil(cols);
    let pad = 2;
    let cell_w = w * scale + pad;
    let cell_h = h * scale + pad;
    let width = cols * cell_w + pad;
    let height = groups * 2 * cell_h + pad + groups.saturating_sub(1) * pad * 2;
    let mut img =
        image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([40, 40, 48]));
    let len = c * h * w;
    for i in 0..n {
        let (g, col) = (i / cols, i % cols);
        for (row, src) in [(0usize, originals), (1, recons)] {
            let ox = pad + col * cell_w;
            let oy = pad + (g * 2 + row) * cell_h + g * pad * 2;
            let im = &src[i * len..(i + 1) * len];
            for y in 0..h {
                for x in 0..w {
                    let px = |ch: usize| {
                        (im[ch * h * w + y * w + x].clamp(0.0, 1.0) * 255.0).round() as u8
                    };
                    let rgb = if c == 1 {
                        [px(0); 3]
                    } else {
                        [px(0), px(1), px(2)]
                    };
                    for sy in 0..scale {
                        for sx in 0..scale {
                            img.put_pixel(
                                (ox + x * scale + sx) as u32,
                                (oy + y * scale + sy) as u32,
                                image::Rgb(rgb),
                            );
                        }
                    }
                }
            }
        }
    }
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    write_atomic(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_resume_drops_records_after_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(d.path(), None).unwrap();
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
        let mut log = MetricsLog::open(d.path(), Some(3)).unwrap();
        log.write(&Record {
            kind: "train".into(),
            step: 4,
            loss: Some(0.5),
            ..Default::default()
        })
        .unwrap();
        log.flush().unwrap();
        let recs = read_records(&MetricsLog::jsonl_path(d.path())).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.step).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(recs[3].loss, Some(0.5));
        let csv = std::fs::read_to_string(MetricsLog::csv_path(d.path())).unwrap();
        assert_eq!(csv.lines().count(), 5);
        assert!(csv.starts_with("kind,step,epoch"));
        assert_eq!(
            csv.lines().nth(4).unwrap().split(',').count(),
            CSV_HEADER.split(',').count()
        );
    }

    #[test]
    fn grid_has_originals_above_reconstructions() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("g.png");
        let (n, h, w) = (3, 4, 4);
        let orig = vec![1.0f32; n * h * w];
        let rec = vec![0.0f32; n * h * w];
        write_grid(&p, &orig, &rec, n, [1, h, w], 8, 2).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.width() as usize, 3 * (w * 2 + 2) + 2);
        assert_eq!(img.height() as usize, 2 * (h * 2 + 2) + 2);
        assert_eq!(img.get_pixel(3, 3).0, [255, 255, 255]); // an original
        assert_eq!(img.get_pixel(3, (2 + h * 2 + 2 + 1) as u32).0, [0, 0, 0]); // its reconstruction
    }
}
