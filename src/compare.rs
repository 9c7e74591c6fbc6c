//! `vqib compare`: the seed's experiment. Trains each quantizer with each seed on identical data
//! order and initialisation, then writes `report.html` (self-contained: inline SVG plots and PNG
//! grids), `report.md` and `summary.csv` with the final metrics (mean and standard deviation over
//! seeds) and two verdicts computed from the data:
//!
//! 1. soft EM reaches a higher code perplexity than `vq`;
//! 2. soft EM reaches a lower L_VIB (eq. 18) than `vq`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine;
use plotters::prelude::*;

use crate::checkpoint::write_atomic;
use crate::config::{QuantizerKind, RunConfig};
use crate::error::InputError;
use crate::report::{Record, read_records};
use crate::train::{self, EvalMetrics, TrainOptions};

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareSpec {
    /// Settings shared by every run (quantizer and seed are replaced per run).
    pub base: RunConfig,
    pub quantizers: Vec<QuantizerKind>,
    pub seeds: Vec<u64>,
    pub out: PathBuf,
    /// EMA decay; unset: 0.99 for vq-ema, 0.999 for soft-em (Roy et al.).
    pub ema_decay: Option<f64>,
    /// The command line, shown in the report.
    pub command: String,
}

/// One finished run.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub quantizer: QuantizerKind,
    pub seed: u64,
    pub dir: PathBuf,
    pub eval: EvalMetrics,
    pub curve: Vec<Record>,
}

/// Mean and (sample) standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, sd)
}

pub fn quantizer_name(q: QuantizerKind) -> &'static str {
    match q {
        QuantizerKind::Vq => "vq",
        QuantizerKind::VqEma => "vq-ema",
        QuantizerKind::SoftEm => "soft-em",
    }
}

/// The columns of the summary table: name, and how to read it from a run's evaluation.
type Column = (&'static str, fn(&EvalMetrics) -> f64);

pub const COLUMNS: &[Column] = &[
    ("perplexity", |m| m.perplexity),
    ("codes used", |m| m.codes_used as f64),
    ("H(Z|I) nats", |m| m.assigned.h_z_given_i),
    ("I(I;Z) nats", |m| m.assigned.mutual_info),
    ("L_VIB", |m| m.l_vib),
    ("L_VDIB", |m| m.l_vdib),
    ("test MSE", |m| m.mse),
    ("soft I(I;Z) nats", |m| m.soft.mutual_info),
    ("soft L_VIB", |m| m.soft_l_vib),
];

/// Curves drawn over training steps: title, and how to read an eval record.
type Curve = (&'static str, &'static str, fn(&Record) -> Option<f64>);

const CURVES: &[Curve] = &[
    ("perplexity", "perplexity exp(H(Z))", |r| r.perplexity),
    ("h-z-given-i", "H(Z|I) (nats)", |r| r.h_z_given_i),
    ("mutual-info", "I(I;Z) (nats)", |r| r.mutual_info),
    ("l-vib", "L_VIB per image", |r| r.l_vib),
    ("recon", "reconstruction MSE", |r| r.recon_mse),
];

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Trains (or, where a run already finished, reuses; where one stopped, resumes) every run, then
/// writes the reports. Returns the runs and the verdict lines.
pub fn run(
    spec: &CompareSpec,
    opts: &TrainOptions,
) -> anyhow::Result<(Vec<RunResult>, Vec<String>)> {
    if spec.quantizers.is_empty() || spec.seeds.is_empty() {
        return Err(InputError::config("compare needs at least one quantizer and one seed").into());
    }
    spec.base.validate()?;
    let mut base = spec.base.clone();
    if base.eval_every == 0 {
        // Four evaluations an epoch, so that the curves have points.
        let n = train::load_data(&base)?.train.n;
        base.eval_every = (n.div_ceil(base.batch_size) as u64 / 4).max(1);
    }
    std::fs::create_dir_all(&spec.out)
        .map_err(|e| InputError::file(&spec.out, format!("cannot create: {e}")))?;
    let mut results = Vec::new();
    for &q in &spec.quantizers {
        for &seed in &spec.seeds {
            let dir = run_dir(&spec.out, q, seed);
            let mut cfg = base.clone();
            cfg.quantizer = q;
            cfg.seed = seed;
            cfg.ema_decay = spec.ema_decay.unwrap_or(if q == QuantizerKind::SoftEm {
                0.999
            } else {
                0.99
            });
            if opts.print_summary {
                eprintln!("== {} seed {seed} -> {}", quantizer_name(q), dir.display());
            }
            let done = dir.join("eval.json").is_file();
            if !done {
                let o = TrainOptions {
                    print_summary: false,
                    ..opts.clone()
                };
                let outcome = if dir.join("checkpoints/latest").is_file() {
                    train::resume(&dir, None, None, &o)?
                } else {
                    if dir.exists() {
                        std::fs::remove_dir_all(&dir)?; // a run that never reached a checkpoint
                    }
                    train::train_new(cfg, &dir, &o)?
                };
                if !outcome.completed {
                    anyhow::bail!(
                        "comparison stopped during {}; rerun the same command to continue",
                        dir.display()
                    );
                }
            }
            let ep = dir.join("eval.json");
            let eval: EvalMetrics = serde_json::from_str(&std::fs::read_to_string(&ep)?)
                .map_err(|e| InputError::file(&ep, format!("unreadable evaluation: {e}")))?;
            let curve = read_records(&dir.join("metrics.jsonl"))?
                .into_iter()
                .filter(|r| r.kind == "eval")
                .collect();
            results.push(RunResult {
                quantizer: q,
                seed,
                dir,
                eval,
                curve,
            });
        }
    }
    let verdicts = verdicts(&results);
    write_reports(spec, &results, &verdicts)?;
    Ok((results, verdicts))
}

/// Runs grouped by quantizer, in the order of `--quantizers`.
fn by_quantizer(results: &[RunResult]) -> Vec<(&'static str, Vec<&RunResult>)> {
    let mut m: Vec<(&'static str, Vec<&RunResult>)> = Vec::new();
    for r in results {
        let q = quantizer_name(r.quantizer);
        match m.iter_mut().find(|(name, _)| *name == q) {
            Some((_, v)) => v.push(r),
            None => m.push((q, vec![r])),
        }
    }
    m
}

fn group<'a>(
    g: &'a [(&'static str, Vec<&'a RunResult>)],
    q: &str,
) -> Option<&'a Vec<&'a RunResult>> {
    g.iter().find(|(name, _)| *name == q).map(|(_, v)| v)
}

fn stat(runs: &[&RunResult], f: fn(&EvalMetrics) -> f64) -> (f64, f64) {
    mean_sd(&runs.iter().map(|r| f(&r.eval)).collect::<Vec<_>>())
}

/// The two claims of the seed, each decided from the measured means.
pub fn verdicts(results: &[RunResult]) -> Vec<String> {
    let g = by_quantizer(results);
    let (Some(vq), Some(em)) = (group(&g, "vq"), group(&g, "soft-em")) else {
        return vec!["verdicts need both vq and soft-em among --quantizers; not evaluated".into()];
    };
    let (pv, pvs) = stat(vq, |m| m.perplexity);
    let (pe, pes) = stat(em, |m| m.perplexity);
    let (lv, lvs) = stat(vq, |m| m.l_vib);
    let (le, les) = stat(em, |m| m.l_vib);
    let word = |b: bool| if b { "HOLDS" } else { "DOES NOT HOLD" };
    vec![
        format!(
            "Claim 1, soft EM reaches a higher code perplexity than vq: {} (soft-em {pe:.2} ± {pes:.2} vs vq {pv:.2} ± {pvs:.2}, mean ± sd over {} seeds)",
            word(pe > pv),
            em.len()
        ),
        format!(
            "Claim 2, soft EM reaches a lower L_VIB than vq: {} (soft-em {le:.2} ± {les:.2} vs vq {lv:.2} ± {lvs:.2} nats per image)",
            word(le < lv)
        ),
    ]
}

fn fmt_stat((m, s): (f64, f64)) -> String {
    if m.abs() >= 10.0 {
        format!("{m:.1} ± {s:.1}")
    } else {
        format!("{m:.4} ± {s:.4}")
    }
}

fn write_reports(
    spec: &CompareSpec,
    results: &[RunResult],
    verdicts: &[String],
) -> anyhow::Result<()> {
    let g = by_quantizer(results);
    let seeds = spec
        .seeds
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");

    // summary.csv
    let mut csv = String::from("quantizer,seeds");
    for (name, _) in COLUMNS {
        let _ = write!(csv, ",{name} mean,{name} sd");
    }
    csv.push('\n');
    for (q, runs) in &g {
        let _ = write!(csv, "{q},{}", runs.len());
        for (_, f) in COLUMNS {
            let (m, s) = stat(runs, *f);
            let _ = write!(csv, ",{m},{s}");
        }
        csv.push('\n');
    }
    write_atomic(&spec.out.join("summary.csv"), csv.as_bytes())?;

    // report.md
    let mut md = format!(
        "# vqib compare\n\n`{}`\n\nSeeds {seeds}; mean ± sd over seeds; information quantities per latent vector, objectives per image (beta {}).\n\n",
        spec.command, spec.base.beta
    );
    md.push_str("| quantizer |");
    for (name, _) in COLUMNS {
        let _ = write!(md, " {name} |");
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(COLUMNS.len()));
    md.push('\n');
    for (q, runs) in &g {
        let _ = write!(md, "| {q} |");
        for (_, f) in COLUMNS {
            let _ = write!(md, " {} |", fmt_stat(stat(runs, *f)));
        }
        md.push('\n');
    }
    md.push('\n');
    for v in verdicts {
        let _ = writeln!(md, "- {v}");
    }
    write_atomic(&spec.out.join("report.md"), md.as_bytes())?;

    // report.html
    let mut html = String::new();
    html.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>vqib compare</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}\ntable{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left;font-weight:600}\n.verdict{font-size:1.1em;padding:6px 10px;border-left:4px solid #888;background:#fafafa}.holds{border-color:#2a2}.fails{border-color:#c22}\n.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #eee;padding:4px}\nimg.grid{image-rendering:pixelated;max-width:100%}\ncode{background:#f3f3f3;padding:2px 4px}\n</style></head><body>\n");
    let _ = writeln!(
        html,
        "<h1>vqib compare: VQ-VAE as VDIB vs soft EM as VIB</h1>\n<p><code>{}</code></p>",
        esc(&spec.command)
    );
    let _ = writeln!(
        html,
        "<p>Seeds {seeds}. Mean ± standard deviation over seeds. Information quantities in nats per latent vector under each model's own posterior (one-hot for vq and vq-ema, softmax(−d²/τ) for soft-em); the <em>soft</em> columns evaluate every model under softmax(−d²/τ), τ = {}. L_VIB and L_VDIB per image, β = {}, Gaussian decoder σ = {}.</p>",
        spec.base.temperature, spec.base.beta, spec.base.sigma
    );
    html.push_str("<section id=\"verdicts\">\n");
    for v in verdicts {
        let class = if v.contains("DOES NOT HOLD") {
            "verdict fails"
        } else if v.contains("HOLDS") {
            "verdict holds"
        } else {
            "verdict"
        };
        let _ = writeln!(html, "<p class=\"{class}\">{}</p>", esc(v));
    }
    html.push_str(
        "</section>\n<h2>Final metrics</h2>\n<table id=\"summary\"><thead><tr><th>quantizer</th>",
    );
    for (name, _) in COLUMNS {
        let _ = write!(html, "<th>{}</th>", esc(name));
    }
    html.push_str("</tr></thead><tbody>\n");
    for (q, runs) in &g {
        let _ = write!(html, "<tr><td>{q}</td>");
        for (_, f) in COLUMNS {
            let _ = write!(html, "<td>{}</td>", fmt_stat(stat(runs, *f)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table>\n<h2>Training curves (test set, mean over seeds)</h2>\n<div class=\"plots\">\n");
    for (id, title, f) in CURVES {
        let svg = curve_svg(title, &g, *f)?;
        let _ = writeln!(html, "<div class=\"plot\" id=\"curve-{id}\">{svg}</div>");
    }
    html.push_str("</div>\n<h2>Code usage (seed ");
    let _ = write!(html, "{}", spec.seeds[0]);
    html.push_str(", codes sorted by count)</h2>\n<div class=\"plots\">\n");
    for (q, runs) in &g {
        let svg = histogram_svg(q, &runs[0].eval.histogram)?;
        let _ = writeln!(html, "<div class=\"plot\" id=\"hist-{q}\">{svg}</div>");
    }
    html.push_str("</div>\n<h2>Reconstructions (test images above their reconstructions)</h2>\n");
    for (q, runs) in &g {
        let png = spec.out.join(format!("grid-{q}.png"));
        train::reconstruct_grid(&runs[0].dir, &png, 16, None)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&png)?);
        let _ = writeln!(
            html,
            "<h3>{q}</h3>\n<div class=\"plot\" id=\"grid-{q}\"><img class=\"grid\" alt=\"{q} reconstructions\" src=\"data:image/png;base64,{b64}\"></div>"
        );
    }
    html.push_str("<script>\n// Records what the browser drew (each plot's size and element count), for tests.\nwindow.addEventListener('load', () => { for (const p of document.querySelectorAll('.plot')) { const r = p.getBoundingClientRect(); const n = p.querySelectorAll('path,polyline,rect,line,circle,text').length; const img = p.querySelector('img'); p.dataset.rendered = `${Math.round(r.width)}x${Math.round(r.height)} elements=${n} img=${img ? img.naturalWidth + 'x' + img.naturalHeight : 'none'}`; } document.body.dataset.ready = '1'; });\n</script>\n</body></html>\n");
    write_atomic(&spec.out.join("report.html"), html.as_bytes())?;
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart (one line per quantizer, mean over its seeds at each evaluated step) as SVG.
fn curve_svg(
    title: &str,
    g: &[(&'static str, Vec<&RunResult>)],
    f: fn(&Record) -> Option<f64>,
) -> anyhow::Result<String> {
    let mut series: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
    for (q, runs) in g {
        let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for r in runs {
            for rec in &r.curve {
                if let Some(v) = f(rec).filter(|v| v.is_finite()) {
                    at.entry(rec.step).or_default().push(v);
                }
            }
        }
        let pts = at
            .into_iter()
            .map(|(s, v)| (s as f64, v.iter().sum::<f64>() / v.len() as f64))
            .collect();
        series.push((q, pts));
    }
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let (x0, x1) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (y0, y1) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let (x0, x1) = if all.is_empty() {
        (0.0, 1.0)
    } else if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 1.0, x1 + 1.0)
    };
    let pad = if y1 > y0 {
        (y1 - y0) * 0.08
    } else {
        y0.abs().max(1.0) * 0.1
    };
    let (y0, y1) = if all.is_empty() {
        (0.0, 1.0)
    } else {
        (y0 - pad, y1 + pad)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (380, 260)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .margin_right(22)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_labels(5)
            .y_labels(5)
            .draw()?;
        for (i, (q, pts)) in series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
                .label(*q)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Bar chart of code counts, sorted descending.
fn histogram_svg(q: &str, counts: &[u64]) -> anyhow::Result<String> {
    let mut sorted: Vec<u64> = counts.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let used = sorted.iter().filter(|&&c| c > 0).count();
    let total: u64 = sorted.iter().sum();
    let ymax = (sorted.first().copied().unwrap_or(1).max(1) as f64 / total.max(1) as f64) * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (380, 260)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{q}: {used} of {} codes used", counts.len()),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..(counts.len().max(1) as f64), 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_desc("code rank")
            .y_desc("p(z)")
            .x_labels(5)
            .y_labels(5)
            .draw()?;
        chart.draw_series(
            sorted
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, &c)| {
                    Rectangle::new(
                        [
                            (i as f64, 0.0),
                            (i as f64 + 1.0, c as f64 / total.max(1) as f64),
                        ],
                        COLORS[0].filled(),
                    )
                }),
        )?;
        root.present()?;
    }
    Ok(svg)
}

/// Where the compare output of `out` keeps a finished run.
pub fn run_dir(out: &Path, q: QuantizerKind, seed: u64) -> PathBuf {
    out.join("runs")
        .join(format!("{}-seed{seed}", quantizer_name(q)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(q: QuantizerKind, seed: u64, perplexity: f64, l_vib: f64) -> RunResult {
        let info = crate::info::InfoSummary {
            n: 1,
            h_z: perplexity.ln(),
            h_z_miller_madow: perplexity.ln(),
            perplexity,
            codes_used: 1,
            h_z_given_i: 0.0,
            mutual_info: perplexity.ln(),
            cross_entropy: 1.0,
            kl: 1.0,
        };
        let eval = EvalMetrics {
            images: 1,
            latents: 1,
            mse: 0.01,
            psnr: 20.0,
            distortion: 1.0,
            entropy_nats: perplexity.ln(),
            perplexity,
            codes_used: 1,
            dead_codes: 0,
            codebook_loss: 0.0,
            commitment_loss: 0.0,
            assigned: info.clone(),
            soft: info,
            l_vdib: l_vib,
            l_vib,
            soft_l_vdib: l_vib,
            soft_l_vib: l_vib,
            beta: 0.25,
            histogram: vec![1],
        };
        RunResult {
            quantizer: q,
            seed,
            dir: PathBuf::new(),
            eval,
            curve: Vec::new(),
        }
    }

    #[test]
    fn verdicts_follow_the_measurements() {
        use QuantizerKind::*;
        let holds = [
            result(Vq, 1, 5.0, 800.0),
            result(Vq, 2, 7.0, 802.0),
            result(SoftEm, 1, 50.0, 740.0),
            result(SoftEm, 2, 70.0, 744.0),
        ];
        let v = verdicts(&holds);
        assert!(
            v[0].contains(": HOLDS")
                && v[0].contains("60.00 ± 14.14")
                && v[0].contains("6.00 ± 1.41"),
            "{}",
            v[0]
        );
        assert!(
            v[1].contains(": HOLDS") && v[1].contains("742.00") && v[1].contains("801.00"),
            "{}",
            v[1]
        );
        // Soft EM with the lower perplexity and the higher L_VIB: both claims fail, and say so.
        let fails = [result(Vq, 1, 50.0, 700.0), result(SoftEm, 1, 5.0, 800.0)];
        let v = verdicts(&fails);
        assert!(
            v[0].contains("DOES NOT HOLD") && v[1].contains("DOES NOT HOLD"),
            "{v:?}"
        );
        // Without both quantizers there is nothing to decide.
        let v = verdicts(&[result(VqEma, 1, 5.0, 800.0)]);
        assert!(v.len() == 1 && v[0].contains("not evaluated"), "{v:?}");
    }

    #[test]
    fn mean_and_sample_sd() {
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[7.0]), (7.0, 0.0));
    }
}
