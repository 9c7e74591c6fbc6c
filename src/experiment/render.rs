//! The reports of a comparison: `summary.csv`, `report.md` and the self-contained `report.html`
//! (its skeleton is the template `report.html` beside this file; inline SVG curves and code
//! histograms drawn with plotters, PNG reconstruction grids as data URLs).

use std::fmt::Write as _;

use base64::Engine;
use plotters::prelude::*;

use super::stats::{Groups, Verdict, Verdicts, by_quantizer, mean_curves, stat};
use super::{CompareSpec, RunResult};
use crate::io::write_atomic;
use crate::records::Record;
use crate::run::RunDir;
use crate::train::{self, EvalMetrics};

/// The page skeleton of `report.html`; [`fill`] replaces its `{{name}}` placeholders.
const PAGE: &str = include_str!("report.html");

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
    ("L H(Z) bits/img", |m| bits(m, m.entropy_nats)),
    ("L H(p,r) bits/img", |m| bits(m, m.assigned.cross_entropy)),
    ("coded bits/img", |m| {
        m.coded.as_ref().map_or(f64::NAN, |c| c.bits_per_image)
    }),
    ("coded bits/pixel", |m| {
        m.coded.as_ref().map_or(f64::NAN, |c| c.bits_per_pixel)
    }),
    ("E -log q(x|z)", |m| {
        m.expected.as_ref().map_or(f64::NAN, |e| e.distortion.mean)
    }),
    ("E L_VIB", |m| {
        m.expected.as_ref().map_or(f64::NAN, |e| e.l_vib)
    }),
    ("soft E L_VIB", |m| {
        m.expected.as_ref().map_or(f64::NAN, |e| e.soft_l_vib)
    }),
    ("E L (r = p(z))", |m| {
        m.expected.as_ref().map_or(f64::NAN, |e| e.l_marginal)
    }),
    ("uniform-prior excess", |m| {
        m.beta * m.latents as f64 * (m.assigned.kl - m.assigned.mutual_info)
    }),
    ("I(Z;Y) nats", |m| {
        m.relevance.as_ref().map_or(f64::NAN, |r| r.i_zy)
    }),
];

/// A rate per latent vector in nats as bits per image.
fn bits(m: &EvalMetrics, nats: f64) -> f64 {
    nats * m.latents as f64 / std::f64::consts::LN_2
}

/// Curves drawn over training steps: id, title, and how to read an eval record.
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

/// Writes `summary.csv`, `report.md` and `report.html` (and the PNG grids it embeds) into
/// `spec.out`.
pub fn write_reports(
    spec: &CompareSpec,
    results: &[RunResult],
    verdicts: &Verdicts,
) -> anyhow::Result<()> {
    let g = by_quantizer(results);
    write_atomic(&spec.out.join("summary.csv"), summary_csv(&g).as_bytes())?;
    write_atomic(
        &spec.out.join("report.md"),
        report_md(spec, &g, verdicts).as_bytes(),
    )?;
    let html = report_html(spec, &g, verdicts)?;
    write_atomic(&spec.out.join("report.html"), html.as_bytes())?;
    Ok(())
}

/// `s` as one CSV field (RFC 4180): in double quotes, its quotes doubled, where it holds a
/// comma, a quote or a line break; as it is otherwise.
pub(crate) fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// `summary.csv`: a row per quantizer, mean and standard deviation of every column (RFC 4180:
/// names that hold a comma are quoted).
pub fn summary_csv(g: &Groups<'_>) -> String {
    let mut csv = String::from("quantizer,seeds");
    for (name, _) in COLUMNS {
        let (m, s) = (format!("{name} mean"), format!("{name} sd"));
        let _ = write!(csv, ",{},{}", csv_field(&m), csv_field(&s));
    }
    csv.push('\n');
    for (q, runs) in g {
        let _ = write!(csv, "{},{}", csv_field(q), runs.len());
        for (_, f) in COLUMNS {
            let (m, s) = stat(runs, *f);
            let _ = write!(csv, ",{m},{s}");
        }
        csv.push('\n');
    }
    csv
}

/// `report.md`: the command, the summary table and the verdicts.
pub fn report_md(spec: &CompareSpec, g: &Groups<'_>, verdicts: &Verdicts) -> String {
    let mut md = format!(
        "# vqib compare\n\n`{}`\n\nSeeds {}; mean ± sd over seeds; information quantities per latent vector, objectives per image (beta {}).\n\n",
        spec.command,
        seed_list(spec),
        spec.base.quantizer.beta
    );
    md.push_str("| quantizer |");
    for (name, _) in COLUMNS {
        let _ = write!(md, " {name} |");
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(COLUMNS.len()));
    md.push('\n');
    for (q, runs) in g {
        let _ = write!(md, "| {q} |");
        for (_, f) in COLUMNS {
            let _ = write!(md, " {} |", fmt_stat(stat(runs, *f)));
        }
        md.push('\n');
    }
    md.push('\n');
    for v in verdicts.lines() {
        let _ = writeln!(md, "- {v}");
    }
    md
}

/// `report.html`: the template filled with the verdicts, the table, the curves, the histograms
/// (of each quantizer's first seed) and the reconstruction grids (written beside it as PNG).
fn report_html(spec: &CompareSpec, g: &Groups<'_>, verdicts: &Verdicts) -> anyhow::Result<String> {
    let parts = PageParts {
        verdicts: html_verdicts(verdicts),
        table: html_table(g),
        curves: html_curves(g)?,
        histograms: html_histograms(g)?,
        grids: html_grids(spec, g)?,
    };
    Ok(page(spec, &parts))
}

/// The generated pieces of the page, each a run of complete lines except `table`.
struct PageParts {
    verdicts: String,
    table: String,
    curves: String,
    histograms: String,
    grids: String,
}

/// The page: [`PAGE`] with its placeholders filled.
fn page(spec: &CompareSpec, p: &PageParts) -> String {
    let b = &spec.base;
    let command = esc(&spec.command);
    let seeds = seed_list(spec);
    let temperature = b.quantizer.temperature.to_string();
    let (beta, sigma) = (b.quantizer.beta.to_string(), b.model.sigma.to_string());
    let histogram_seed = spec.seeds[0].to_string();
    fill(
        PAGE,
        &[
            ("command", command.as_str()),
            ("seeds", seeds.as_str()),
            ("temperature", temperature.as_str()),
            ("beta", beta.as_str()),
            ("sigma", sigma.as_str()),
            ("verdicts", p.verdicts.as_str()),
            ("table", p.table.as_str()),
            ("curves", p.curves.as_str()),
            ("histogram_seed", histogram_seed.as_str()),
            ("histograms", p.histograms.as_str()),
            ("grids", p.grids.as_str()),
        ],
    )
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

fn fmt_stat((m, s): (f64, f64)) -> String {
    if m.abs() >= 10.0 {
        format!("{m:.1} ± {s:.1}")
    } else {
        format!("{m:.4} ± {s:.4}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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

/// The summary table (`id="summary"`): a row per quantizer.
fn html_table(g: &Groups<'_>) -> String {
    let mut html = String::from("<table id=\"summary\"><thead><tr><th>quantizer</th>");
    for (name, _) in COLUMNS {
        let _ = write!(html, "<th>{}</th>", esc(name));
    }
    html.push_str("</tr></thead><tbody>\n");
    for (q, runs) in g {
        let _ = write!(html, "<tr><td>{q}</td>");
        for (_, f) in COLUMNS {
            let _ = write!(html, "<td>{}</td>", fmt_stat(stat(runs, *f)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table>");
    html
}

/// A plot per curve (`id="curve-…"`).
fn html_curves(g: &Groups<'_>) -> anyhow::Result<String> {
    let mut html = String::new();
    for (id, title, f) in CURVES {
        let svg = curve_svg(title, g, *f)?;
        let _ = writeln!(html, "<div class=\"plot\" id=\"curve-{id}\">{svg}</div>");
    }
    Ok(html)
}

/// A code histogram per quantizer (`id="hist-…"`), of its first seed.
fn html_histograms(g: &Groups<'_>) -> anyhow::Result<String> {
    let mut html = String::new();
    for (q, runs) in g {
        let svg = histogram_svg(q, &runs[0].eval.histogram)?;
        let _ = writeln!(html, "<div class=\"plot\" id=\"hist-{q}\">{svg}</div>");
    }
    Ok(html)
}

/// A reconstruction grid per quantizer (`id="grid-…"`), of its first seed: written to
/// `grid-<quantizer>.png` in `spec.out` and embedded as a data URL.
fn html_grids(spec: &CompareSpec, g: &Groups<'_>) -> anyhow::Result<String> {
    let mut html = String::new();
    for (q, runs) in g {
        let png = spec.out.join(format!("grid-{q}.png"));
        train::reconstruct_grid(&RunDir::new(&runs[0].dir), &png, 16, None)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&png)?);
        let _ = writeln!(
            html,
            "<h3>{q}</h3>\n<div class=\"plot\" id=\"grid-{q}\"><img class=\"grid\" alt=\"{q} reconstructions\" src=\"data:image/png;base64,{b64}\"></div>"
        );
    }
    Ok(html)
}

/// The axis ranges (x, y) that show every point: a unit range where there are none, the x range
/// widened by one each side where it is a single step, the y range padded by 8% (10% of the value
/// where it is a single value).
fn axis_ranges(all: &[(f64, f64)]) -> ((f64, f64), (f64, f64)) {
    if all.is_empty() {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all {
        (x0, x1) = (x0.min(x), x1.max(x));
        (y0, y1) = (y0.min(y), y1.max(y));
    }
    let x = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 1.0, x1 + 1.0)
    };
    let pad = if y1 > y0 {
        (y1 - y0) * 0.08
    } else {
        y0.abs().max(1.0) * 0.1
    };
    (x, (y0 - pad, y1 + pad))
}

/// A line chart (one line per quantizer, mean over its seeds at each evaluated step) as SVG.
fn curve_svg(title: &str, g: &Groups<'_>, f: fn(&Record) -> Option<f64>) -> anyhow::Result<String> {
    let series = mean_curves(g, f);
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let ((x0, x1), (y0, y1)) = axis_ranges(&all);
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

    #[test]
    fn fill_replaces_each_placeholder_once() {
        let t = "a {{x}} b {{y}}{{y}} {{z}} {{ c}";
        let out = fill(t, &[("x", "{{y}}"), ("y", "Y")]);
        assert_eq!(out, "a {{y}} b YY {{z}} {{ c}");
    }

    #[test]
    fn the_template_has_exactly_the_filled_placeholders() {
        let names: Vec<&str> = PAGE
            .split("{{")
            .skip(1)
            .map(|s| &s[..s.find("}}").unwrap()])
            .collect();
        assert_eq!(
            names,
            [
                "command",
                "seeds",
                "temperature",
                "beta",
                "sigma",
                "verdicts",
                "table",
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
            verdicts: "<p>V</p>\n".into(),
            table: "<table id=\"summary\"></table>".into(),
            curves: "<div>C</div>\n".into(),
            histograms: "<div>H</div>\n".into(),
            grids: "<h3>G</h3>\n".into(),
        };
        let html = page(&spec("vqib compare --out \"a<b\"", vec![3, 4]), &parts);
        assert!(html.starts_with("<!doctype html>\n<html lang=\"en\"><head>"));
        assert!(html.ends_with("</script>\n</body></html>\n"));
        assert!(!html.contains("{{") && !html.contains("}}"), "{html}");
        for part in [
            "<p><code>vqib compare --out &quot;a&lt;b&quot;</code></p>\n",
            "<p>Seeds 3,4. Mean ± standard deviation",
            "τ = 1. L_VIB and L_VDIB per image, β = 0.25, Gaussian decoder σ = 1, with the training-time distortion",
            "<section id=\"verdicts\">\n<p>V</p>\n</section>\n<h2>Final metrics</h2>\n<table id=\"summary\"></table>\n<h2>Training curves",
            "<div class=\"plots\">\n<div>C</div>\n</div>\n<h2>Code usage (seed 3, codes sorted by count)</h2>\n<div class=\"plots\">\n<div>H</div>\n</div>\n",
            "reconstructions)</h2>\n<h3>G</h3>\n<script>\n",
        ] {
            assert!(html.contains(part), "missing {part:?} in {html}");
        }
        // Self-contained: nothing is loaded from elsewhere.
        assert!(!html.contains("http") && !html.contains("<link"));
    }

    #[test]
    fn csv_fields_are_quoted_where_they_must_be() {
        assert_eq!(csv_field("L_VIB mean"), "L_VIB mean");
        assert_eq!(csv_field("H(p,r) sd"), "\"H(p,r) sd\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("a\nb"), "\"a\nb\"");
        // The header of summary.csv: the column whose name holds a comma is one field.
        let runs = runs();
        let csv = summary_csv(&by_quantizer(&runs));
        assert!(
            csv.contains(",\"L H(p,r) bits/img mean\",\"L H(p,r) bits/img sd\","),
            "{csv}"
        );
    }

    #[test]
    fn tables_and_verdicts() {
        let runs = runs();
        let g = by_quantizer(&runs);
        let csv = summary_csv(&g);
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.starts_with("quantizer,seeds,perplexity mean,perplexity sd,codes used mean"));
        assert!(
            csv.contains("\nsoft-em,2,60,14.142135623730951,1,0,"),
            "{csv}"
        );

        let v = verdicts(&runs);
        let md = report_md(&spec("cmd", vec![1, 2]), &g, &v);
        assert!(md.starts_with("# vqib compare\n\n`cmd`\n\nSeeds 1,2; mean ± sd"));
        assert!(
            md.contains("\n| vq | 6.0000 ± 1.4142 | 1.0000 ± 0.0000 |"),
            "{md}"
        );
        assert!(md.contains("\n| soft-em | 60.0 ± 14.1 |"), "{md}");
        let listed: String = v.lines().iter().map(|l| format!("- {l}\n")).collect();
        assert!(md.ends_with(&format!("\n\n{listed}")));

        let table = html_table(&g);
        assert_eq!(table.matches("<tr>").count(), 3, "header + 2 quantizers");
        assert!(table.contains("<th>H(Z|I) nats</th>") && table.contains("<td>soft-em</td>"));

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

    #[test]
    fn curves_and_histograms_are_svg() {
        let runs = runs();
        let g = by_quantizer(&runs);
        let html = html_curves(&g).unwrap();
        assert_eq!(
            html.matches("<div class=\"plot\" id=\"curve-").count(),
            CURVES.len()
        );
        assert_eq!(html.matches("<svg").count(), CURVES.len());
        let html = html_histograms(&g).unwrap();
        assert!(html.contains("id=\"hist-vq\"><svg") && html.contains("id=\"hist-soft-em\"><svg"));
        assert!(html.contains("vq: 3 of 4 codes used"), "{html}");
    }

    #[test]
    fn axes_show_every_point() {
        assert_eq!(axis_ranges(&[]), ((0.0, 1.0), (0.0, 1.0)));
        // One point: x widened by one each side, y padded by a tenth of the value (at least 0.1).
        let ((x0, x1), (y0, y1)) = axis_ranges(&[(5.0, 20.0)]);
        assert_eq!((x0, x1), (4.0, 6.0));
        assert!((y0 - 18.0).abs() < 1e-12 && (y1 - 22.0).abs() < 1e-12);
        let ((x0, x1), (y0, y1)) = axis_ranges(&[(0.0, 1.0), (10.0, 51.0), (f64::NAN, 2.0)]);
        assert_eq!((x0, x1), (0.0, 10.0));
        assert!((y0 - -3.0).abs() < 1e-12 && (y1 - 55.0).abs() < 1e-12);
    }
}
