//! The reports of a comparison: `summary.csv`, `report.md`, the self-contained `report.html`
//! (its body is the template `report.html` beside this file, in the page kit's document; inline
//! SVG curves and code-usage plots) and the terminal's summary ([`terminal_summary`]). Every
//! table is generated from the metric table ([`crate::train::eval_rows::METRICS`]). The reports
//! run no model: a run's reconstruction grid is the PNG it wrote where it finished
//! ([`crate::train::saved::RECONSTRUCTIONS`]).

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine;

use super::page::{document, esc, html_table, md_table, quantizer_color};
use super::plot::{ChartSpec, Curve, Pt, chart_div, rank_div};
use super::stats::{Groups, Verdict, Verdicts, by_quantizer, mean_curves};
use super::sweep_table::{Metric, Stats, metric, stats_csv};
use super::{CompareSpec, RunResult};
use crate::io::write_atomic;
use crate::records::Record;
use crate::report::{columns, wrap};
use crate::train::saved::RECONSTRUCTIONS;

/// The body of `report.html`; [`fill`] replaces its `{{name}}` placeholders.
const BODY: &str = include_str!("report.html");

/// The figures the verdicts rest on: the key table (first in `report.md` and `report.html`, and
/// the terminal's table).
pub const KEY_METRICS: [&str; 6] = [
    "perplexity",
    "codes_used",
    "i_iz",
    "nll",
    "l_vib",
    "coded_bits",
];

/// The family table's figures (after its bottleneck and code-space columns): every quantizer
/// on the seed's axes, measured the same way.
pub const FAMILY_METRICS: [&str; 8] = [
    "codes_used",
    "perplexity",
    "h_z_given_i",
    "i_iz",
    "i_zy",
    "mse_expected",
    "nll",
    "coded_bits",
];

/// The columns of the full table of `report.md` and `report.html` (`summary.csv` has every
/// metric).
pub const TABLE_METRICS: [&str; 19] = [
    "perplexity",
    "codes_used",
    "h_z_given_i",
    "i_iz",
    "l_vib_train",
    "l_vdib_train",
    "mse",
    "soft_i_iz",
    "soft_l_vib_train",
    "rate_hz_bits",
    "rate_ce_bits",
    "coded_bits",
    "coded_bits_per_pixel",
    "nll",
    "l_vib",
    "soft_l_vib",
    "l_marginal",
    "uniform_excess",
    "i_zy",
];

/// The width of a terminal the summary fits.
pub const TERMINAL_WIDTH: usize = 100;

/// Curves drawn over training steps: id, title, and how to read an eval record.
type CurveOf = (&'static str, &'static str, fn(&Record) -> Option<f64>);

const CURVES: &[CurveOf] = &[
    ("perplexity", "perplexity exp(H(Z))", |r| r.perplexity),
    ("h-z-given-i", "H(Z|I) (nats)", |r| r.h_z_given_i),
    ("mutual-info", "I(I;Z) (nats)", |r| r.mutual_info),
    ("l-vib", "L_VIB per image", |r| r.l_vib),
    ("recon", "reconstruction MSE", |r| r.recon_mse),
];

/// Each quantizer, in the order of `--quantizers`, with the statistics over its runs.
type QuantizerStats = Vec<(&'static str, Stats)>;

fn quantizer_stats(g: &Groups<'_>) -> QuantizerStats {
    g.iter()
        .map(|(q, runs)| {
            let evals: Vec<_> = runs.iter().map(|r| &r.eval).collect();
            (*q, Stats::of(&evals))
        })
        .collect()
}

/// Writes `summary.csv`, `report.md` and `report.html` into `spec.out`.
pub fn write_reports(
    spec: &CompareSpec,
    results: &[RunResult],
    verdicts: &Verdicts,
) -> anyhow::Result<()> {
    let g = by_quantizer(results);
    let stats = quantizer_stats(&g);
    write_atomic(&spec.out.join("summary.csv"), &summary_csv(&stats)?)?;
    write_atomic(
        &spec.out.join("report.md"),
        report_md(spec, &stats, verdicts).as_bytes(),
    )?;
    let html = report_html(spec, &g, &stats, verdicts)?;
    write_atomic(&spec.out.join("report.html"), html.as_bytes())?;
    Ok(())
}

/// `summary.csv`: a row per quantizer, its number of seeds and the mean and standard deviation of
/// every metric (the columns of `sweep.csv` past its options).
pub fn summary_csv(stats: &QuantizerStats) -> anyhow::Result<Vec<u8>> {
    stats_csv(
        &["quantizer", "seeds"],
        stats
            .iter()
            .map(|(q, st)| (vec![q.to_string(), st.n.to_string()], st)),
    )
}

/// A table of the metrics `ids`, a row per quantizer: the header (each metric by `name`) and the
/// rows.
fn table(
    stats: &QuantizerStats,
    ids: &[&str],
    name: fn(&Metric) -> &'static str,
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut head = vec!["quantizer".to_string()];
    head.extend(ids.iter().map(|id| name(metric(id)).to_string()));
    let rows = stats
        .iter()
        .map(|(q, st)| {
            let mut cells = vec![q.to_string()];
            cells.extend(ids.iter().map(|id| st.cell(id)));
            cells
        })
        .collect();
    (head, rows)
}

/// What the cells are: the mean ± sd over the seeds, or the value of the one seed.
fn over(spec: &CompareSpec) -> &'static str {
    if spec.seeds.len() == 1 {
        "One seed: each cell is its value"
    } else {
        "Mean ± standard deviation over seeds"
    }
}

/// `report.md`: the command, the key table, the verdicts and the full table.
pub fn report_md(spec: &CompareSpec, stats: &QuantizerStats, verdicts: &Verdicts) -> String {
    let mut md = format!(
        "# vqib compare\n\n`{}`\n\nSeeds {}. {}; information quantities per latent vector, objectives per image (beta {}).\n\n",
        spec.command,
        seed_list(spec),
        over(spec),
        spec.base.quantizer.beta
    );
    let (head, rows) = table(stats, &KEY_METRICS, |m| m.label);
    md.push_str(&md_table(&head, &rows));
    md.push('\n');
    for v in verdicts.lines() {
        let _ = writeln!(md, "- {v}");
    }
    md.push_str("\n## The family\n\n");
    let (head, rows) = family_table(spec, stats);
    md.push_str(&md_table(&head, &rows));
    let (head, rows) = table(stats, &TABLE_METRICS, |m| m.label);
    md.push_str("\n## All metrics\n\n");
    md.push_str(&md_table(&head, &rows));
    md
}

/// The family table: a row a quantizer, its bottleneck (deterministic, VDIB: hard codes,
/// H(Z|I) = 0; or stochastic, VIB: a soft posterior), its code space (K, or K^S tuples) and
/// [`FAMILY_METRICS`].
fn family_table(spec: &CompareSpec, stats: &QuantizerStats) -> (Vec<String>, Vec<Vec<String>>) {
    let (mut head, rows) = table(stats, &FAMILY_METRICS, |m| m.label);
    head.splice(1..1, ["bottleneck".to_string(), "code space".to_string()]);
    let rows = rows
        .into_iter()
        .map(|mut r| {
            let kind = crate::quantizer::QuantizerKind::ALL
                .iter()
                .copied()
                .find(|q| q.name() == r[0]);
            let (bottleneck, space) = match kind {
                Some(q) => {
                    let cfg = spec.base.quantizer.for_kind(q);
                    let quantizer = crate::quantizer::build(&cfg);
                    let b = match quantizer.posterior() {
                        crate::quantizer::Posterior::Hard => "VDIB (hard)",
                        crate::quantizer::Posterior::Soft => "VIB (soft)",
                    };
                    let s = quantizer.code_space();
                    let space = match s.stages {
                        1 => s.size.to_string(),
                        n => format!("{}^{n}", s.size),
                    };
                    (b.to_string(), space)
                }
                None => ("?".to_string(), "?".to_string()),
            };
            r.splice(1..1, [bottleneck, space]);
            r
        })
        .collect();
    (head, rows)
}

/// The information plane (`id="family-plane"`: I(Z;Y) against I(I;Z)) and rate against
/// distortion (`id="family-rd"`: E -log q(x|z) against coded bits an image): a point a quantizer,
/// mean over its seeds with bars of one standard deviation.
fn family_charts(stats: &QuantizerStats) -> anyhow::Result<String> {
    let mut html = String::new();
    for (id, title, x, y) in [
        ("family-plane", "information plane", "i_iz", "i_zy"),
        ("family-rd", "distortion vs coded rate", "coded_bits", "nll"),
    ] {
        let curves: Vec<Curve> = stats
            .iter()
            .filter_map(|(q, st)| {
                let ((mx, sx), (my, sy)) = (st.get(x)?, st.get(y)?);
                let kind = crate::quantizer::QuantizerKind::ALL
                    .iter()
                    .copied()
                    .find(|k| k.name() == *q)?;
                Some(Curve {
                    label: q.to_string(),
                    color: quantizer_color(kind),
                    points: vec![Pt {
                        x: mx,
                        y: my,
                        sx,
                        sy,
                    }],
                })
            })
            .collect();
        let spec = ChartSpec {
            id: id.to_string(),
            title: title.to_string(),
            x_desc: metric(x).label.to_string(),
            y_desc: metric(y).label.to_string(),
            curves,
            pareto: id == "family-rd",
            log2_x: false,
        };
        html.push_str(&chart_div(&spec, "no quantizer has both quantities.")?);
    }
    Ok(html)
}

/// What `vqib compare` prints: the key table (lines of at most [`TERMINAL_WIDTH`] characters),
/// the units, the verdicts (each wrapped to that width) and where the full tables are.
pub fn terminal_summary(results: &[RunResult], verdicts: &Verdicts, out: &Path) -> String {
    let g = by_quantizer(results);
    let (head, rows) = table(&quantizer_stats(&g), &KEY_METRICS, |m| m.name);
    let mut s = columns(&head, &rows);
    s.push_str("(I(I;Z) in nats per latent vector; E -log q and E L_VIB in nats, coded bits in bits, per image)\n\n");
    for v in verdicts.lines() {
        s.push_str(&wrap(&format!("- {v}"), TERMINAL_WIDTH, "  "));
        s.push('\n');
    }
    let more = format!(
        "full table: {} / {}",
        out.join("report.md").display(),
        out.join("report.html").display()
    );
    s.push_str(&wrap(&more, TERMINAL_WIDTH, "  "));
    s.push('\n');
    s
}

/// `report.html`: the template filled with the verdicts, the tables, the curves, the code-usage
/// plots (of each quantizer's first seed) and the runs' reconstruction grids, in the page kit's
/// document.
fn report_html(
    spec: &CompareSpec,
    g: &Groups<'_>,
    stats: &QuantizerStats,
    verdicts: &Verdicts,
) -> anyhow::Result<String> {
    let (head, rows) = table(stats, &KEY_METRICS, |m| m.label);
    let (all_head, all_rows) = table(stats, &TABLE_METRICS, |m| m.label);
    let (family_head, family_rows) = family_table(spec, stats);
    let parts = PageParts {
        family: html_table("family", &family_head, &family_rows),
        family_charts: family_charts(stats)?,
        verdicts: html_verdicts(verdicts),
        table: html_table("summary", &head, &rows),
        all_table: html_table("summary-all", &all_head, &all_rows),
        curves: html_curves(g)?,
        histograms: html_histograms(g)?,
        grids: html_grids(g),
    };
    Ok(page(spec, &parts))
}

/// The generated pieces of the page, each a run of complete lines.
struct PageParts {
    family: String,
    family_charts: String,
    verdicts: String,
    table: String,
    all_table: String,
    curves: String,
    histograms: String,
    grids: String,
}

/// The page: [`BODY`] with its placeholders filled, in the page kit's document.
fn page(spec: &CompareSpec, p: &PageParts) -> String {
    let b = &spec.base;
    let command = esc(&spec.command);
    let seeds = seed_list(spec);
    let temperature = b.quantizer.temperature.to_string();
    let (beta, sigma) = (b.quantizer.beta.to_string(), b.model.sigma.to_string());
    let histogram_seed = spec.seeds[0].to_string();
    let body = fill(
        BODY,
        &[
            ("command", command.as_str()),
            ("seeds", seeds.as_str()),
            ("over", over(spec)),
            ("temperature", temperature.as_str()),
            ("beta", beta.as_str()),
            ("sigma", sigma.as_str()),
            ("verdicts", p.verdicts.as_str()),
            ("table", p.table.as_str()),
            ("all_table", p.all_table.as_str()),
            ("family", p.family.as_str()),
            ("family_charts", p.family_charts.as_str()),
            ("curves", p.curves.as_str()),
            ("histogram_seed", histogram_seed.as_str()),
            ("histograms", p.histograms.as_str()),
            ("grids", p.grids.as_str()),
        ],
    );
    document("vqib compare", &body)
}

/// Replaces each `{{name}}` of `template` by its value, in one pass: what the values contain is
/// never read as a placeholder. A name without a value is left as it is.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        rest = &rest[i + 2..];
        let named = values
            .iter()
            .find(|(n, _)| rest.strip_prefix(*n).is_some_and(|r| r.starts_with("}}")));
        match named {
            Some((name, value)) => {
                out.push_str(value);
                rest = &rest[name.len() + 2..];
            }
            None => out.push_str("{{"),
        }
    }
    out.push_str(rest);
    out
}

/// The seeds, comma-separated.
fn seed_list(spec: &CompareSpec) -> String {
    let seeds: Vec<String> = spec.seeds.iter().map(|s| s.to_string()).collect();
    seeds.join(",")
}

/// A paragraph per verdict, classed by whether its claim holds.
fn html_verdicts(verdicts: &Verdicts) -> String {
    let class = |v: &Verdict| {
        if v.holds {
            "verdict holds"
        } else {
            "verdict fails"
        }
    };
    let classed: Vec<(&str, String)> = match verdicts {
        Verdicts::Evaluated(v) => v.iter().map(|v| (class(v), v.to_string())).collect(),
        Verdicts::NotEvaluated => vec![("verdict", Verdicts::NOT_EVALUATED.into())],
    };
    let p = |(class, line): &(&str, String)| format!("<p class=\"{class}\">{}</p>\n", esc(line));
    classed.iter().map(p).collect()
}

/// A chart per curve (`id="curve-…"`): a line per quantizer through the mean over its seeds at
/// each evaluated step, the legend beside the plotting area.
fn html_curves(g: &Groups<'_>) -> anyhow::Result<String> {
    let mut html = String::new();
    for (id, title, f) in CURVES {
        let curves = mean_curves(g, *f)
            .into_iter()
            .zip(g)
            .filter(|((_, pts), _)| !pts.is_empty())
            .map(|((q, pts), (_, runs))| Curve {
                label: q.to_string(),
                color: quantizer_color(runs[0].quantizer),
                points: pts
                    .into_iter()
                    .map(|(x, y)| Pt {
                        x,
                        y,
                        sx: 0.0,
                        sy: 0.0,
                    })
                    .collect(),
            })
            .collect();
        let spec = ChartSpec {
            id: format!("curve-{id}"),
            title: title.to_string(),
            x_desc: "step".into(),
            y_desc: title.to_string(),
            curves,
            pareto: false,
            log2_x: false,
        };
        html.push_str(&chart_div(&spec, "not measured.")?);
    }
    Ok(html)
}

/// A code-usage plot per quantizer (`id="hist-…"`), of its first seed: a rank plot on log axes.
fn html_histograms(g: &Groups<'_>) -> anyhow::Result<String> {
    let mut html = String::new();
    for (q, runs) in g {
        let color = quantizer_color(runs[0].quantizer);
        html.push_str(&rank_div(
            &format!("hist-{q}"),
            q,
            &runs[0].eval.histogram,
            color,
        )?);
    }
    Ok(html)
}

/// A reconstruction grid per quantizer (`id="grid-…"`), of its first seed: the run's
/// [`RECONSTRUCTIONS`] embedded as a data URL, or a note saying there is none (a run finished by
/// a vqib that did not draw one).
fn html_grids(g: &Groups<'_>) -> String {
    let mut html = String::new();
    for (q, runs) in g {
        let png = runs[0].dir.join(RECONSTRUCTIONS);
        let _ = writeln!(html, "<h3>{q}</h3>");
        match std::fs::read(&png) {
            Ok(bytes) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                let _ = writeln!(
                    html,
                    "<div class=\"plot\" id=\"grid-{q}\"><img class=\"grid\" alt=\"{q} reconstructions\" src=\"data:image/png;base64,{b64}\"></div>"
                );
            }
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        "the run finished before vqib drew grids where runs finish; `vqib reconstruct RUN --out FILE` draws one".to_string()
                    }
                    _ => format!("cannot read it: {e}"),
                };
                let _ = writeln!(
                    html,
                    "<p class=\"note\" id=\"grid-{q}\">no grid: {} ({})</p>",
                    esc(&png.display().to_string()),
                    esc(&why)
                );
            }
        }
    }
    html
}

#[cfg(test)]
mod tests {
    use super::super::fake_result;
    use super::super::stats::verdicts;
    use super::*;
    use crate::config::RunConfig;
    use crate::quantizer::QuantizerKind::*;

    fn spec(command: &str, seeds: Vec<u64>) -> CompareSpec {
        CompareSpec {
            base: RunConfig::default(),
            quantizers: vec![Vq, SoftEm],
            seeds,
            out: std::path::PathBuf::new(),
            command: command.into(),
        }
    }

    /// Two seeds each of vq and soft EM, with evaluation curves; both claims hold.
    fn runs() -> Vec<RunResult> {
        let mut runs = vec![
            fake_result(Vq, 1, 5.0, 800.0),
            fake_result(Vq, 2, 7.0, 802.0),
            fake_result(SoftEm, 1, 50.0, 740.0),
            fake_result(SoftEm, 2, 70.0, 744.0),
        ];
        for (i, r) in runs.iter_mut().enumerate() {
            r.eval.histogram = vec![3, 0, 1, 5];
            r.curve = (1..=4)
                .map(|s| Record {
                    kind: "eval".into(),
                    step: s * 10,
                    perplexity: Some(s as f64 + i as f64),
                    recon_mse: Some(0.1 / s as f64),
                    ..Default::default()
                })
                .collect();
        }
        runs
    }

    /// Runs as a real comparison's look, one seed each: large and small values, a value that
    /// is all but zero, 512 codes.
    fn realistic() -> Vec<RunResult> {
        let mut vq = fake_result(Vq, 1, 1.79, 802.26);
        let mut em = fake_result(SoftEm, 1, 412.71, 734.73);
        vq.eval.codes_used = 7;
        em.eval.codes_used = 375;
        vq.eval.assigned.h_z_given_i = -1e-17;
        for r in [&mut vq, &mut em] {
            r.eval.histogram = (0..512).map(|i| if i < 7 { 1000 } else { 0 }).collect();
            r.eval.coded = Some(crate::codec::CodedRate {
                images: 1000,
                bits_per_image: 1234.567,
                bits_per_pixel: 1.574,
                ideal_bits_per_image: 1230.0,
                entropy_bits_per_image: 1200.0,
                prior: crate::codec::PriorSource::Learned,
            });
        }
        vec![vq, em]
    }

    #[test]
    fn fill_replaces_each_placeholder_once() {
        let t = "a {{x}} b {{y}}{{y}} {{z}} {{ c}";
        let out = fill(t, &[("x", "{{y}}"), ("y", "Y")]);
        assert_eq!(out, "a {{y}} b YY {{z}} {{ c}");
    }

    #[test]
    fn the_template_has_exactly_the_filled_placeholders() {
        let names: Vec<&str> = BODY
            .split("{{")
            .skip(1)
            .map(|s| &s[..s.find("}}").unwrap()])
            .collect();
        assert_eq!(
            names,
            [
                "command",
                "seeds",
                "over",
                "temperature",
                "beta",
                "sigma",
                "verdicts",
                "table",
                "all_table",
                "family",
                "family_charts",
                "curves",
                "histogram_seed",
                "histograms",
                "grids"
            ]
        );
    }

    #[test]
    fn page_is_the_filled_template() {
        let parts = PageParts {
            family: "<table id=\"family\"></table>\n".into(),
            family_charts: "<div>F</div>\n".into(),
            verdicts: "<p>V</p>\n".into(),
            table: "<table id=\"summary\"></table>\n".into(),
            all_table: "<table id=\"summary-all\"></table>\n".into(),
            curves: "<div>C</div>\n".into(),
            histograms: "<div>H</div>\n".into(),
            grids: "<h3>G</h3>\n".into(),
        };
        let html = page(&spec("vqib compare --out \"a<b\"", vec![3, 4]), &parts);
        assert!(html.starts_with("<!doctype html>\n<html lang=\"en\"><head>"));
        assert!(html.ends_with("</script>\n</body></html>\n"));
        assert!(!html.contains("{{") && !html.contains("}}"), "{html}");
        for part in [
            "<title>vqib compare</title>",
            "<p><code>vqib compare --out &quot;a&lt;b&quot;</code></p>\n",
            "<p>Seeds 3,4. Mean ± standard deviation over seeds. Information",
            "τ = 1. Objectives per image, β = 0.25, Gaussian decoder σ = 1.",
            "<section id=\"verdicts\">\n<p>V</p>\n</section>\n<h2>Final metrics</h2>\n<table id=\"summary\"></table>\n<details id=\"all-metrics\"><summary>All metrics</summary>\n<table id=\"summary-all\"></table>\n</details>\n<h2>The family</h2>",
            "<table id=\"family\"></table>\n<div class=\"plots\">\n<div>F</div>\n</div>\n<h2>Training curves",
            "<div class=\"plots\">\n<div>C</div>\n</div>\n<h2>Code usage (seed 3: codes by rank, counts on log axes)</h2>\n<div class=\"plots\">\n<div>H</div>\n</div>\n",
            "where each run finished)</h2>\n<h3>G</h3>\n\n<script>\n",
        ] {
            assert!(html.contains(part), "missing {part:?} in {html}");
        }
        // Self-contained: nothing is loaded from elsewhere.
        assert!(!html.contains("http") && !html.contains("<link"));
        let one = page(&spec("c", vec![3]), &parts);
        assert!(one.contains("<p>Seeds 3. One seed: each cell is its value. "));
    }

    #[test]
    fn tables_and_verdicts() {
        let runs = runs();
        let g = by_quantizer(&runs);
        let stats = quantizer_stats(&g);
        // summary.csv, read back by a CSV parser: a header and a row a quantizer, as wide.
        let csv = summary_csv(&stats).unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(&csv[..]);
        let head: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            head[..5],
            [
                "quantizer",
                "seeds",
                "perplexity mean",
                "perplexity sd",
                "codes_used mean"
            ]
        );
        assert_eq!(head.len(), 2 + 2 * super::super::sweep_table::METRICS.len());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.len() == head.len()));
        let soft: Vec<&str> = rows[1].iter().take(6).collect();
        assert_eq!(soft, ["soft-em", "2", "60", "14.142135623730951", "1", "0"]);

        let v = verdicts(&runs);
        let md = report_md(&spec("cmd", vec![1, 2]), &stats, &v);
        assert!(md.starts_with(
            "# vqib compare\n\n`cmd`\n\nSeeds 1,2. Mean ± standard deviation over seeds; information"
        ));
        // The key table first: perplexity to 4 significant digits, codes used as integers, the
        // | of a label escaped.
        assert!(
            md.contains("\n| quantizer | perplexity exp(H(Z)) | codes used | I(I;Z) (nats) | E -log q(x\\|z) (nats/image) | E L_VIB (nats/image) | coded rate (bits/image) |\n|---|---|---|---|---|---|---|\n| vq | 6.000 ± 1.414 | 1 ± 0 | 1.778 ± 0.238 | 1.000 ± 0 | 801.0 ± 1.4 | – |\n"),
            "{md}"
        );
        assert!(md.contains("\n| soft-em | 60.00 ± 14.14 | 1 ± 0 |"), "{md}");
        let listed: String = v.lines().iter().map(|l| format!("- {l}\n")).collect();
        assert!(md.contains(&format!("|\n\n{listed}\n## The family\n\n| quantizer | bottleneck | code space | codes used |")), "{md}");
        // The family table: the bottleneck each quantizer is, and its code space.
        assert!(md.contains("\n| vq | VDIB (hard) | 512 | 1 ± 0 |"), "{md}");
        assert!(
            md.contains("\n| soft-em | VIB (soft) | 512 | 1 ± 0 |"),
            "{md}"
        );
        assert!(md.contains("\n## All metrics\n\n| quantizer | perplexity exp(H(Z)) | codes used | H(Z\\|I) (nats) |"), "{md}");
        assert_eq!(md.lines().filter(|l| l.starts_with("| vq |")).count(), 3);

        let (head, rows) = table(&stats, &TABLE_METRICS, |m| m.label);
        let html = html_table("summary-all", &head, &rows);
        assert_eq!(html.matches("<tr>").count(), 3, "header + 2 quantizers");
        assert!(html.contains("<th>H(Z|I) (nats)</th>") && html.contains("<td>soft-em</td>"));
        assert_eq!(html.matches("<th>").count(), 1 + TABLE_METRICS.len());

        let html = html_verdicts(&v);
        assert_eq!(
            html.matches("<p class=\"verdict holds\">Claim ").count(),
            3,
            "{html}"
        );
        assert_eq!(
            html.matches("<p class=\"verdict fails\">With the tightest prior")
                .count(),
            1
        );
        let fails = verdicts(&[
            fake_result(Vq, 1, 50.0, 700.0),
            fake_result(SoftEm, 1, 5.0, 800.0),
        ]);
        assert_eq!(
            html_verdicts(&fails).matches("\"verdict fails\"").count(),
            3
        );
        assert_eq!(
            html_verdicts(&Verdicts::NotEvaluated),
            format!("<p class=\"verdict\">{}</p>\n", Verdicts::NOT_EVALUATED)
        );
    }

    /// One seed: every cell is the value alone (no "± 0"), counts are integers, and nothing
    /// reads "-0".
    #[test]
    fn a_one_seed_report_has_no_zero_sd_and_no_negative_zero() {
        let runs = realistic();
        let g = by_quantizer(&runs);
        let md = report_md(
            &spec("cmd", vec![1]),
            &quantizer_stats(&g),
            &verdicts(&runs),
        );
        assert!(!md.contains('±'), "{md}");
        assert!(!md.contains("-0.0") && !md.contains("| -0 |"), "{md}");
        assert!(
            md.contains("\n| vq | 1.790 | 7 | 0.5822 | 1.000 | 802.3 | 1235 |\n"),
            "{md}"
        );
        assert!(
            md.contains("\n| soft-em | 412.7 | 375 | 6.023 | 1.000 | 734.7 | 1235 |\n"),
            "{md}"
        );
        // H(Z|I) of vq, -1e-17 in the evaluation, reads 0.
        assert!(md.contains("\n| vq | 1.790 | 7 | 0 | 0.5822 |"), "{md}");
    }

    #[test]
    fn the_terminal_summary_fits_100_columns() {
        let runs = realistic();
        let out = Path::new("runs/compare");
        let s = terminal_summary(&runs, &verdicts(&runs), out);
        for line in s.lines() {
            assert!(
                line.chars().count() <= TERMINAL_WIDTH,
                "{} chars: {line}",
                line.chars().count()
            );
        }
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "quantizer  perplexity  codes used  I(I;Z)  E -log q  E L_VIB  coded bits",
                "---------  ----------  ----------  ------  --------  -------  ----------",
                "vq              1.790           7  0.5822     1.000    802.3        1235",
                "soft-em         412.7         375   6.023     1.000    734.7        1235",
            ]
        );
        // Every verdict, whole, wrapped: its words in order.
        let text = s.split_whitespace().collect::<Vec<_>>().join(" ");
        for v in verdicts(&runs).lines() {
            assert!(text.contains(&v), "{v} in {s}");
        }
        assert!(
            s.ends_with("full table: runs/compare/report.md / runs/compare/report.html\n"),
            "{s}"
        );
        // Every quantizer, two seeds: still within the width.
        let mut more = realistic();
        for r in realistic() {
            let mut r = RunResult { seed: 2, ..r };
            r.eval.perplexity *= 1.37;
            r.eval.codes_used += 3;
            more.push(r);
        }
        for seed in [1, 2] {
            more.push(fake_result(VqEma, seed, 12.4 * seed as f64, 799.9));
        }
        let s = terminal_summary(&more, &verdicts(&more), out);
        assert!(
            s.lines().all(|l| l.chars().count() <= TERMINAL_WIDTH),
            "{s}"
        );
        assert!(s.lines().filter(|l| l.contains(" ± ")).count() >= 3, "{s}");
    }

    #[test]
    fn curves_and_histograms_are_svg() {
        let runs = runs();
        let g = by_quantizer(&runs);
        let html = html_curves(&g).unwrap();
        assert_eq!(
            html.matches("<div class=\"plot\" id=\"curve-").count(),
            CURVES.len()
        );
        // Drawn where measured: perplexity and the reconstruction error.
        assert_eq!(html.matches("<svg").count(), 2, "{html}");
        assert!(html.contains("id=\"curve-l-vib\" data-curves=\"0\""));
        let html = html_histograms(&g).unwrap();
        assert!(html.contains("id=\"hist-vq\" data-scale=\"log-log\"><svg"));
        assert!(html.contains("id=\"hist-soft-em\" data-scale=\"log-log\"><svg"));
        assert!(html.contains("vq: 3 of 4 codes used"), "{html}");
    }

    #[test]
    fn grids_are_the_runs_own_or_a_note() {
        let d = tempfile::tempdir().unwrap();
        let mut runs = runs();
        for (i, r) in runs.iter_mut().enumerate() {
            r.dir = d.path().join(format!("run{i}"));
            std::fs::create_dir_all(&r.dir).unwrap();
        }
        // vq's first seed has its grid; soft EM's does not (a run of an older vqib).
        std::fs::write(runs[0].dir.join(RECONSTRUCTIONS), b"\x89PNG").unwrap();
        std::fs::write(runs[3].dir.join(RECONSTRUCTIONS), b"\x89PNG").unwrap();
        let html = html_grids(&by_quantizer(&runs));
        assert!(
            html.contains("<div class=\"plot\" id=\"grid-vq\"><img class=\"grid\" alt=\"vq reconstructions\" src=\"data:image/png;base64,iVBORw==\"></div>"),
            "{html}"
        );
        assert!(
            html.contains("<p class=\"note\" id=\"grid-soft-em\">no grid: "),
            "{html}"
        );
        assert!(html.contains("run2/reconstructions.png"), "{html}");
        assert_eq!(html.matches("<img").count(), 1);
    }
}
