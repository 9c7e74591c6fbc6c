//! The report of a sweep: the self-contained `sweep.html` ([`sweep_html`]).
//!
//! In order: the command and how many points are finished (and which run directories are not),
//! a table of every setting (`id="sweep-table"`), rate-distortion plots (`id="rd-RATE-DIST"`)
//! with the Pareto front of each, the information plane (`id="plane"`), and perplexity and codes
//! used against K (`id="perplexity-k"`, `id="codes-k"`). The charts are inline SVG drawn with
//! plotters, as in the comparison report ([`super::render`]).
//!
//! Every plot is a `<div class="plot">` carrying `data-curves` (curves drawn), `data-points`
//! (data points drawn) and `data-front` (points of the Pareto front, 0 where none is drawn); a
//! plot without points holds a note instead of an SVG, with `data-curves="0" data-points="0"`.
//! Inside a chart's SVG the elements are laid out so that they can be counted:
//! - `<polyline>`: one a curve (plotters' `LineSeries`, one even for a curve of one point), plus
//!   one for the Pareto front where the plot has one: `data-curves + (data-front > 0)`;
//! - `<circle>`: a filled marker a data point and a black ring a front point:
//!   `data-points + data-front`;
//! - error bars (± one standard deviation over seeds), legend swatches and the frame of the
//!   plotting area are `<rect>`s and the grid lines `<line>`s, so that they add to neither count
//!   (plotters' own axis lines and tick marks, polylines, are drawn transparent: not at all).

use std::fmt::Write as _;
use std::path::PathBuf;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::sweep::{METRICS, SweepRow};
use crate::quantizer::QuantizerKind;

/// What the page says about the sweep besides its rows.
pub struct SweepPage<'a> {
    /// The command line of the sweep.
    pub command: &'a str,
    /// The points of the grid.
    pub points: usize,
    /// The points with a finished run.
    pub finished: usize,
    /// The run directories of the points without a finished run.
    pub missing: &'a [PathBuf],
}

/// The metrics of the table (ids of [`METRICS`]), in its column order.
const TABLE_METRICS: [&str; 12] = [
    "perplexity",
    "codes_used",
    "i_iz",
    "h_z_given_i",
    "i_zy",
    "mse",
    "nll",
    "l_vib",
    "l_marginal",
    "soft_l_vib",
    "rate_hz_bits",
    "coded_bits",
];

/// The rates of the rate-distortion plots (ids of [`METRICS`], in bits per image) and a short
/// name for the plots' titles.
const RATES: [(&str, &str); 4] = [
    ("rate_iz_bits", "L I(I;Z)"),
    ("rate_hz_bits", "L H(Z)"),
    ("rate_ce_bits", "L H(p(Z|I), r)"),
    ("rate_kl_bits", "L KL(p(Z|I) || r)"),
];

/// The distortions of the rate-distortion plots: id of [`METRICS`] and axis label.
const DISTORTIONS: [(&str, &str); 2] = [
    ("mse_expected", "E MSE"),
    ("nll", "E -log q(x|z), nats/image"),
];

/// Curve colours (the comparison report's four first, then the rest of matplotlib's tab10).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The page's head and style (the comparison report's, `report.html`).
const HEAD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vqib sweep</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1500px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td{white-space:nowrap}th{background:#f3f3f3}td:first-child{text-align:left;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #eee;padding:4px}
.note{color:#666;font-style:italic;max-width:400px}
code{background:#f3f3f3;padding:2px 4px}
</style></head><body>
<h1>vqib sweep</h1>
"#;

/// The end of the page: a script that records what the browser drew (each plot's size and
/// element count), for tests, as the comparison report's.
const TAIL: &str = r#"<script>
// Records what the browser drew (each plot's size and element count), for tests.
window.addEventListener('load', () => { for (const p of document.querySelectorAll('.plot')) { const r = p.getBoundingClientRect(); const n = p.querySelectorAll('path,polyline,rect,line,circle,text').length; p.dataset.rendered = `${Math.round(r.width)}x${Math.round(r.height)} elements=${n} polylines=${p.querySelectorAll('polyline').length} circles=${p.querySelectorAll('circle').length}`; } document.body.dataset.ready = '1'; });
</script>
</body></html>
"#;

/// `sweep.html`: the command and progress, the table of settings, the rate-distortion plots,
/// the information plane and perplexity and codes used against K.
pub fn sweep_html(page: &SweepPage, rows: &[SweepRow]) -> anyhow::Result<String> {
    let mut html = String::from(HEAD);
    let _ = writeln!(html, "<p><code>{}</code></p>", esc(page.command));
    let _ = writeln!(
        html,
        "<p id=\"progress\">{} of {} points finished.</p>",
        page.finished, page.points
    );
    if !page.missing.is_empty() {
        let _ = writeln!(
            html,
            "<p>Not finished ({}):</p>\n<ul id=\"missing\">",
            page.missing.len()
        );
        for p in page.missing {
            let _ = writeln!(
                html,
                "<li><code>{}</code></li>",
                esc(&p.display().to_string())
            );
        }
        html.push_str("</ul>\n");
    }
    html.push_str(
        "<p>A row a setting: mean ± standard deviation over its seeds. Information quantities \
         in nats per latent vector under each model's own posterior, objectives and \
         distortions per image, rates in bits per image.</p>\n<h2>Settings</h2>\n",
    );
    html.push_str(&html_table(rows));
    html.push_str(
        "\n<h2>Rate and distortion</h2>\n<p>A point a setting (mean over seeds, bars ± one \
         standard deviation), a curve a quantizer, sorted by rate. Black rings joined by a thin \
         black line: the Pareto front of the plot (the points that no other point matches or \
         beats in both rate and distortion).</p>\n<div class=\"plots\">\n",
    );
    for (x, x_short) in RATES {
        for (y, y_label) in DISTORTIONS {
            let spec = ChartSpec {
                id: format!("rd-{x}-{y}"),
                title: format!("{y_label} vs {x_short}"),
                x_desc: label(x).to_string(),
                y_desc: y_label.to_string(),
                curves: quantizer_curves(rows, x, y),
                pareto: true,
                log2_x: false,
            };
            html.push_str(&chart_div(&spec, "no setting has both quantities.")?);
        }
    }
    html.push_str("</div>\n<h2>Information plane</h2>\n<div class=\"plots\">\n");
    html.push_str(&plane_div(rows)?);
    html.push_str(
        "</div>\n<h2>Codebook usage against K</h2>\n<p>A line a quantizer and setting of the \
         other options (mean over seeds, bars ± one standard deviation), K on a log2 \
         scale.</p>\n<div class=\"plots\">\n",
    );
    for (id, metric, title) in [
        ("perplexity-k", "perplexity", "perplexity exp(H(Z)) vs K"),
        ("codes-k", "codes_used", "codes used vs K"),
    ] {
        let spec = ChartSpec {
            id: id.to_string(),
            title: title.to_string(),
            x_desc: "K (codebook size)".to_string(),
            y_desc: label(metric).to_string(),
            curves: k_curves(rows, metric),
            pareto: false,
            log2_x: true,
        };
        html.push_str(&chart_div(&spec, "no setting was measured.")?);
    }
    html.push_str("</div>\n");
    html.push_str(TAIL);
    Ok(html)
}

/// `s` safe as HTML text and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The label of the metric `id` of [`METRICS`] (the id itself where there is none).
fn label(id: &str) -> &str {
    METRICS.iter().find(|m| m.id == id).map_or(id, |m| m.label)
}

/// "mean ± sd", to one decimal from 10 up, else to four.
fn fmt_stat((m, s): (f64, f64)) -> String {
    if m.abs() >= 10.0 {
        format!("{m:.1} ± {s:.1}")
    } else {
        format!("{m:.4} ± {s:.4}")
    }
}

/// The table of settings (`id="sweep-table"`): a row a setting, its options, its number of
/// seeds and "mean ± sd" of each of [`TABLE_METRICS`] ("–" where not measured).
fn html_table(rows: &[SweepRow]) -> String {
    let mut html = String::from("<table id=\"sweep-table\"><thead><tr>");
    if let Some(r) = rows.first() {
        for (name, _) in r.setting.options() {
            let _ = write!(html, "<th>{}</th>", esc(name));
        }
    } else {
        for name in ["quantizer", "K", "D", "beta", "rate_weight", "tau"] {
            let _ = write!(html, "<th>{name}</th>");
        }
    }
    html.push_str("<th>seeds</th>");
    for id in TABLE_METRICS {
        let _ = write!(html, "<th>{}</th>", esc(label(id)));
    }
    html.push_str("</tr></thead><tbody>\n");
    for r in rows {
        html.push_str("<tr>");
        for (_, v) in r.setting.options() {
            let _ = write!(html, "<td>{}</td>", esc(&v));
        }
        let _ = write!(html, "<td>{}</td>", r.seeds.len());
        for id in TABLE_METRICS {
            let cell = r.get(id).map_or("–".to_string(), fmt_stat);
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table>");
    html
}

/// The non-dominated points of `points` (lower is better on both axes): the indices of the
/// points for which no other point has x <= and y <= with at least one strictly smaller, in
/// increasing x (then y, then index). Equal points do not dominate each other, so all of them
/// are on the front where one is. The points should be finite.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let dominated = |(x, y): (f64, f64)| {
        points
            .iter()
            .any(|&(a, b)| a <= x && b <= y && (a < x || b < y))
    };
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| !dominated(points[i]))
        .collect();
    front.sort_by(|&i, &j| {
        let (p, q) = (points[i], points[j]);
        p.0.total_cmp(&q.0)
            .then(p.1.total_cmp(&q.1))
            .then(i.cmp(&j))
    });
    front
}

/// A point of a chart: means over seeds and their standard deviations.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Pt {
    x: f64,
    y: f64,
    sx: f64,
    sy: f64,
}

/// A curve of a chart: a legend label, a colour and its points in increasing x.
struct Curve {
    label: String,
    color: RGBColor,
    points: Vec<Pt>,
}

/// What a chart shows.
struct ChartSpec {
    /// The id of the plot's div.
    id: String,
    title: String,
    x_desc: String,
    y_desc: String,
    /// Curves with at least one point each.
    curves: Vec<Curve>,
    /// Whether to mark the Pareto front over all the points (lower is better in x and y).
    pareto: bool,
    /// Whether x is on a log2 scale (x must then be positive).
    log2_x: bool,
}

/// The colour of a quantizer: by its place among every registered quantizer, so that it is the
/// same in every plot.
fn quantizer_color(q: QuantizerKind) -> RGBColor {
    let i = QuantizerKind::ALL.iter().position(|k| *k == q).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

/// The quantizers of `rows`, in the order they first appear.
fn quantizers(rows: &[SweepRow]) -> Vec<QuantizerKind> {
    let mut qs = Vec::new();
    for r in rows {
        if !qs.contains(&r.setting.quantizer) {
            qs.push(r.setting.quantizer);
        }
    }
    qs
}

/// A curve a quantizer through the settings that have both metric `x` and metric `y`, sorted by
/// x; quantizers with no such setting are left out.
fn quantizer_curves(rows: &[SweepRow], x: &str, y: &str) -> Vec<Curve> {
    quantizers(rows)
        .into_iter()
        .filter_map(|q| {
            let mut points: Vec<Pt> = rows
                .iter()
                .filter(|r| r.setting.quantizer == q)
                .filter_map(|r| {
                    let ((x, sx), (y, sy)) = (r.get(x)?, r.get(y)?);
                    Some(Pt { x, y, sx, sy })
                })
                .collect();
            points.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
            (!points.is_empty()).then(|| Curve {
                label: q.name().to_string(),
                color: quantizer_color(q),
                points,
            })
        })
        .collect()
}

/// The options but K of a setting that separate the lines of the plots against K: the
/// quantizer, D, beta, rate_weight and tau (floats by their bits).
type Combo = (QuantizerKind, usize, u64, u64, u64);

fn combo(r: &SweepRow) -> Combo {
    let s = &r.setting;
    (
        s.quantizer,
        s.d,
        s.beta.to_bits(),
        s.rate_weight.to_bits(),
        s.tau.to_bits(),
    )
}

/// A curve a combination of the quantizer and the options but K ([`Combo`]) of metric `metric`
/// against K, sorted by K, with standard deviations in y only. A curve's label is the
/// quantizer's name followed by the options that take more than one value among `rows`
/// (`D=64 beta=0.25`). The colour is the quantizer's where each quantizer has one combination,
/// else the combination's.
fn k_curves(rows: &[SweepRow], metric: &str) -> Vec<Curve> {
    let mut combos: Vec<Combo> = Vec::new();
    for r in rows {
        let c = combo(r);
        if !combos.contains(&c) {
            combos.push(c);
        }
    }
    // The options (by place in `Setting::options`) that vary among the rows, beside the
    // quantizer (0) and K (1).
    let varying: Vec<usize> = (2..6)
        .filter(|&i| {
            let mut values = rows.iter().map(|r| r.setting.options()[i].1.clone());
            let first = values.next();
            values.any(|v| Some(v) != first)
        })
        .collect();
    let by_quantizer = combos.len() == quantizers(rows).len();
    combos
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let of: Vec<&SweepRow> = rows.iter().filter(|r| combo(r) == *c).collect();
            let mut points: Vec<Pt> = of
                .iter()
                .filter_map(|r| {
                    let (y, sy) = r.get(metric)?;
                    Some(Pt {
                        x: r.setting.k as f64,
                        y,
                        sx: 0.0,
                        sy,
                    })
                })
                .collect();
            points.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
            let options = of[0].setting.options();
            let mut label = c.0.name().to_string();
            for &o in &varying {
                let _ = write!(label, " {}={}", options[o].0, options[o].1);
            }
            let color = if by_quantizer {
                quantizer_color(c.0)
            } else {
                COLORS[i % COLORS.len()]
            };
            (!points.is_empty()).then_some(Curve {
                label,
                color,
                points,
            })
        })
        .collect()
}

/// The information plane (`id="plane"`): I(Z;Y) against I(I;Z), a curve a quantizer; where no
/// row has I(Z;Y) (data without labels), a note saying so instead.
fn plane_div(rows: &[SweepRow]) -> anyhow::Result<String> {
    if !rows.is_empty() && rows.iter().all(|r| r.get("i_zy").is_none()) {
        return Ok(note_div(
            "plane",
            "Information plane: no setting has I(Z;Y), as the data have no labels; \
             the plane is not drawn.",
        ));
    }
    let spec = ChartSpec {
        id: "plane".to_string(),
        title: "information plane".to_string(),
        x_desc: "I(I;Z), nats per latent vector".to_string(),
        y_desc: "I(Z;Y), nats".to_string(),
        curves: quantizer_curves(rows, "i_iz", "i_zy"),
        pareto: false,
        log2_x: false,
    };
    chart_div(&spec, "no setting has both I(I;Z) and I(Z;Y).")
}

/// A plot's div holding a note instead of a chart (no curves, no points).
fn note_div(id: &str, note: &str) -> String {
    format!(
        "<div class=\"plot\" id=\"{id}\" data-curves=\"0\" data-points=\"0\" data-front=\"0\">\
         <p class=\"note\">{}</p></div>\n",
        esc(note)
    )
}

/// A plot's div: the chart of `spec` as inline SVG with its counts (`data-curves`,
/// `data-points`, `data-front`), or, where it has no points, a note ("TITLE: `empty`").
fn chart_div(spec: &ChartSpec, empty: &str) -> anyhow::Result<String> {
    let points: Vec<(f64, f64)> = spec
        .curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| (p.x, p.y)))
        .collect();
    if points.is_empty() {
        return Ok(note_div(&spec.id, &format!("{}: {empty}", spec.title)));
    }
    let front: Vec<(f64, f64)> = if spec.pareto {
        pareto_front(&points)
            .into_iter()
            .map(|i| points[i])
            .collect()
    } else {
        Vec::new()
    };
    let svg = chart_svg(spec, &front)?;
    Ok(format!(
        "<div class=\"plot\" id=\"{}\" data-curves=\"{}\" data-points=\"{}\" data-front=\"{}\">{svg}</div>\n",
        spec.id,
        spec.curves.len(),
        points.len(),
        front.len()
    ))
}

/// `lo..hi` widened to show it with a margin: by `frac` of its length each side, or, where it is
/// a single value, by a tenth of the value (one where the value is 0).
fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    let pad = if hi > lo {
        (hi - lo) * frac
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    (lo - pad, hi + pad)
}

/// The axis ranges (x, y) of a chart that show every point with its error bars: padded by 5% in
/// x and 8% in y (see [`padded`]); on a log2 x axis, half an octave each side. A unit range where
/// there are no points.
fn chart_ranges(curves: &[Curve], log2_x: bool) -> ((f64, f64), (f64, f64)) {
    let sd = |s: f64| if s.is_finite() { s.abs() } else { 0.0 };
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in curves.iter().flat_map(|c| &c.points) {
        let sx = if log2_x { 0.0 } else { sd(p.sx) };
        (x0, x1) = (x0.min(p.x - sx), x1.max(p.x + sx));
        (y0, y1) = (y0.min(p.y - sd(p.sy)), y1.max(p.y + sd(p.sy)));
    }
    if x0 > x1 {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    let x = if log2_x {
        let x0 = if x0 > 0.0 { x0 } else { 1.0 };
        (
            x0 / std::f64::consts::SQRT_2,
            x1.max(x0) * std::f64::consts::SQRT_2,
        )
    } else {
        padded(x0, x1, 0.05)
    };
    (x, padded(y0, y1, 0.08))
}

/// A tick label of the log2 K axis: an integer where the tick is one.
fn k_tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.3}")
    }
}

/// The chart of `spec` as SVG: axes, the curves (error bars, line and markers each), the Pareto
/// front `front` (rings joined by a thin black line; none where empty) and the legend.
fn chart_svg(spec: &ChartSpec, front: &[(f64, f64)]) -> anyhow::Result<String> {
    let ((x0, x1), (y0, y1)) = chart_ranges(&spec.curves, spec.log2_x);
    // The legend stands right of the plotting area: room for its longest label.
    let longest = spec
        .curves
        .iter()
        .map(|c| c.label.chars().count())
        .chain((!front.is_empty()).then_some("Pareto front".len()))
        .max()
        .unwrap_or(0);
    let legend = 6 * longest as u32 + 40;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (380 + legend, 310)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&spec.title, ("sans-serif", 15))
            .margin(8)
            .margin_right(legend + 8)
            .x_label_area_size(40)
            .y_label_area_size(62);
        if spec.log2_x {
            let mut chart = builder.build_cartesian_2d((x0..x1).log_scale().base(2.0), y0..y1)?;
            chart
                .configure_mesh()
                .x_desc(spec.x_desc.as_str())
                .y_desc(spec.y_desc.as_str())
                .x_labels(8)
                .y_labels(5)
                .x_label_formatter(&k_tick)
                .axis_style(TRANSPARENT)
                .draw()?;
            draw_curves(&root, &mut chart, spec, front)?;
        } else {
            let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc(spec.x_desc.as_str())
                .y_desc(spec.y_desc.as_str())
                .x_labels(5)
                .y_labels(5)
                .axis_style(TRANSPARENT)
                .draw()?;
            draw_curves(&root, &mut chart, spec, front)?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Draws into `chart` a frame around the plotting area (a `<rect>`), then each curve of `spec`:
/// its error bars (± one standard deviation in x and y, where positive, as `<rect>`s on `root`),
/// its line (one `LineSeries`: one `<polyline>`) and a filled circle a point; then the Pareto
/// front `front` (a thin black `LineSeries` and a black ring a point) and the legend, right of
/// the plotting area (swatches as `<rect>`s).
fn draw_curves<'a, 'b: 'a, X>(
    root: &DrawingArea<SVGBackend<'b>, Shift>,
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, RangedCoordf64>>,
    spec: &ChartSpec,
    front: &[(f64, f64)],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
{
    // The frame of the plotting area, in place of the axes (drawn transparent, since plotters
    // draws them and their tick marks as polylines).
    let (xr, yr) = (chart.x_range(), chart.y_range());
    chart.draw_series(std::iter::once(Rectangle::new(
        [(xr.start, yr.start), (xr.end, yr.end)],
        BLACK.stroke_width(1),
    )))?;
    let shown = |s: f64| s.is_finite() && s > 0.0;
    for c in &spec.curves {
        let color = c.color;
        let bar = color.mix(0.6).filled();
        for p in &c.points {
            if shown(p.sx) && !spec.log2_x {
                let a = chart.backend_coord(&(p.x - p.sx, p.y));
                let b = chart.backend_coord(&(p.x + p.sx, p.y));
                for r in [
                    [(a.0, a.1), (b.0, a.1 + 1)],
                    [(a.0, a.1 - 3), (a.0 + 1, a.1 + 4)],
                    [(b.0, b.1 - 3), (b.0 + 1, b.1 + 4)],
                ] {
                    root.draw(&Rectangle::new(r, bar))?;
                }
            }
            if shown(p.sy) {
                let a = chart.backend_coord(&(p.x, p.y + p.sy));
                let b = chart.backend_coord(&(p.x, p.y - p.sy));
                for r in [
                    [(a.0, a.1), (a.0 + 1, b.1)],
                    [(a.0 - 3, a.1), (a.0 + 4, a.1 + 1)],
                    [(b.0 - 3, b.1), (b.0 + 4, b.1 + 1)],
                ] {
                    root.draw(&Rectangle::new(r, bar))?;
                }
            }
        }
        chart.draw_series(LineSeries::new(
            c.points.iter().map(|p| (p.x, p.y)),
            color.stroke_width(2),
        ))?;
        chart.draw_series(
            c.points
                .iter()
                .map(|p| Circle::new((p.x, p.y), 3, color.filled())),
        )?;
    }
    if !front.is_empty() {
        chart.draw_series(LineSeries::new(
            front.iter().copied(),
            BLACK.stroke_width(1),
        ))?;
        chart.draw_series(
            front
                .iter()
                .map(|&p| Circle::new(p, 6, BLACK.stroke_width(1))),
        )?;
    }
    // The legend, drawn on `root` (the plotting area clips what is drawn on it): an entry a
    // curve and one for the front, each a swatch and a label.
    let (px, py) = chart.plotting_area().get_pixel_range();
    let entries = spec
        .curves
        .iter()
        .map(|c| (c.label.as_str(), c.color, 2))
        .chain((!front.is_empty()).then_some(("Pareto front", BLACK, 1)));
    for (i, (label, color, thick)) in entries.enumerate() {
        let (x, y) = (px.end + 10, py.start + 4 + 16 * i as i32);
        root.draw(&Rectangle::new(
            [(x, y + 6), (x + 16, y + 6 + thick)],
            color.filled(),
        ))?;
        root.draw(&Text::new(label, (x + 22, y), ("sans-serif", 12)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::sweep::fake_row;
    use super::*;
    use crate::quantizer::QuantizerKind::*;

    fn page<'a>(command: &'a str, missing: &'a [PathBuf]) -> SweepPage<'a> {
        SweepPage {
            command,
            points: 9 + missing.len(),
            finished: 9,
            missing,
        }
    }

    /// Three quantizers by K = 64, 256, 1024, every metric of the plots measured. At each K, vq
    /// has the lowest rate and the lowest distortion; rates grow and distortions fall with K,
    /// so the Pareto front is vq's three points.
    fn grid() -> Vec<SweepRow> {
        let mut rows = Vec::new();
        for (qi, q) in [Vq, VqEma, SoftEm].into_iter().enumerate() {
            for (ki, k) in [64, 256, 1024].into_iter().enumerate() {
                let (qf, kf) = (qi as f64, ki as f64);
                let rate = 10.0 * (kf + 1.0) + qf;
                rows.push(fake_row(
                    q,
                    k,
                    &[
                        ("rate_iz_bits", rate, 1.0),
                        ("rate_hz_bits", rate + 1.0, 0.5),
                        ("rate_ce_bits", rate + 2.0, 0.0),
                        ("rate_kl_bits", rate + 3.0, f64::NAN),
                        ("mse_expected", 0.1 / (kf + 1.0) + 0.01 * qf, 0.001),
                        ("nll", 100.0 - 10.0 * kf + qf, 2.0),
                        ("i_iz", 1.0 + kf + 0.1 * qf, 0.1),
                        ("i_zy", 0.5 + 0.5 * kf + 0.1 * qf, 0.05),
                        ("perplexity", 12.5 * (kf + 1.0) + qf, 0.5),
                        ("codes_used", 20.0 * (kf + 1.0) + qf, 1.0),
                    ],
                ));
            }
        }
        rows
    }

    /// The opening tag of the plot div `id` (panics where there is none, or several).
    fn plot_tag<'a>(html: &'a str, id: &str) -> &'a str {
        let needle = format!("id=\"{id}\"");
        assert_eq!(html.matches(&needle).count(), 1, "{id} once in {html}");
        let at = html.find(&needle).unwrap();
        let start = html[..at].rfind("<div").unwrap();
        let end = at + html[at..].find('>').unwrap();
        &html[start..=end]
    }

    /// The whole plot div `id` (plot divs hold no other divs).
    fn plot_div<'a>(html: &'a str, id: &str) -> &'a str {
        let tag = plot_tag(html, id);
        let start = html.find(tag).unwrap();
        let end = start + html[start..].find("</div>").unwrap();
        &html[start..end]
    }

    fn attr(tag: &str, name: &str) -> usize {
        let needle = format!("{name}=\"");
        let at = tag
            .find(&needle)
            .unwrap_or_else(|| panic!("no {name} in {tag}"))
            + needle.len();
        let len = tag[at..].find('"').unwrap();
        tag[at..at + len].parse().unwrap()
    }

    #[test]
    fn pareto_front_of_hand_made_sets() {
        let pts = [
            (1.0, 5.0), // 0: front
            (2.0, 3.0), // 1: front
            (2.0, 4.0), // 2: dominated by 1 (same x, higher y)
            (3.0, 3.0), // 3: dominated by 1 (same y, higher x)
            (4.0, 1.0), // 4: front
            (5.0, 1.0), // 5: dominated by 4
            (0.5, 6.0), // 6: front (lowest x)
            (6.0, 7.0), // 7: dominated by all of the front
        ];
        assert_eq!(pareto_front(&pts), vec![6, 0, 1, 4]);
        // Equal points do not dominate each other; both are on the front.
        assert_eq!(
            pareto_front(&[(2.0, 2.0), (1.0, 1.0), (1.0, 1.0)]),
            vec![1, 2]
        );
        assert_eq!(pareto_front(&[(3.0, -1.0)]), vec![0]);
        assert_eq!(pareto_front(&[]), Vec::<usize>::new());
        // A diagonal of trade-offs: all on the front, by x.
        assert_eq!(
            pareto_front(&[(3.0, 1.0), (1.0, 3.0), (2.0, 2.0)]),
            vec![1, 2, 0]
        );
    }

    #[test]
    fn rate_distortion_plots_count_curves_points_and_front() {
        let html = sweep_html(&page("vqib sweep", &[]), &grid()).unwrap();
        for (x, _) in RATES {
            for (y, _) in DISTORTIONS {
                let id = format!("rd-{x}-{y}");
                let tag = plot_tag(&html, &id);
                assert_eq!(attr(tag, "data-curves"), 3, "{tag}");
                assert_eq!(attr(tag, "data-points"), 9, "{tag}");
                assert_eq!(attr(tag, "data-front"), 3, "{tag}");
                let div = plot_div(&html, &id);
                assert_eq!(div.matches("<svg").count(), 1);
                // A polyline a curve and one for the front; a marker a point and a ring a front
                // point.
                assert_eq!(div.matches("<polyline").count(), 4, "{div}");
                assert_eq!(div.matches("<circle").count(), 12, "{div}");
                for name in ["vq", "vq-ema", "soft-em", "Pareto front"] {
                    assert!(
                        div.contains(&format!("\n{name}\n</text>")),
                        "{name} in {div}"
                    );
                }
            }
        }
        // The front is vq's points: the rings are drawn at vq's markers.
        let div = plot_div(&html, "rd-rate_iz_bits-nll");
        let circles: Vec<(&str, &str)> = div
            .split("<circle ")
            .skip(1)
            .map(|c| {
                let cx = c.split("cx=\"").nth(1).unwrap().split('"').next().unwrap();
                let cy = c.split("cy=\"").nth(1).unwrap().split('"').next().unwrap();
                (cx, cy)
            })
            .collect();
        assert_eq!(circles.len(), 12);
        let (markers, rings) = circles.split_at(9);
        assert_eq!(rings, &markers[..3], "rings on vq's points (drawn first)");
    }

    /// `name="..."` of an SVG element's attributes `el`.
    fn svg_attr<'a>(el: &'a str, name: &str) -> &'a str {
        let at = el
            .find(&format!(" {name}=\""))
            .unwrap_or_else(|| panic!("no {name} in {el}"))
            + name.len()
            + 3;
        &el[at..at + el[at..].find('"').unwrap()]
    }

    /// Error bars where the sd is positive: a point's bar in y (sd 2 of nll) is a vertical rect
    /// through its marker with a whisker at each end, its bar in x likewise horizontal, each in
    /// its curve's colour at opacity 0.6 (the frame is unfilled, the legend's swatches opaque);
    /// none in x where the sd is 0 (rate_ce_bits) or not measured (rate_kl_bits).
    #[test]
    fn error_bars_are_drawn_where_the_sd_is_positive() {
        let html = sweep_html(&page("vqib sweep", &[]), &grid()).unwrap();
        for (x, in_x) in [
            ("rate_iz_bits", 9),
            ("rate_hz_bits", 9),
            ("rate_ce_bits", 0),
            ("rate_kl_bits", 0),
        ] {
            let div = plot_div(&html, &format!("rd-{x}-nll"));
            let int = |el: &str, name: &str| -> i32 { svg_attr(el, name).parse().unwrap() };
            let rects: Vec<&str> = div
                .split("<rect")
                .skip(1)
                .map(|r| &r[..r.find("/>").unwrap()])
                .collect();
            let size = |r: &&str| (int(r, "width"), int(r, "height"));
            let filled = |r: &&str, opacity: &str| {
                svg_attr(r, "opacity") == opacity && svg_attr(r, "fill") != "none"
            };
            let bars: Vec<&str> = rects.iter().copied().filter(|r| filled(r, "0.6")).collect();
            // The legend's swatches of the curves: 16 by 2 pixels, opaque.
            let colours: Vec<&str> = rects
                .iter()
                .filter(|r| filled(r, "1") && size(r) == (16, 2))
                .map(|r| svg_attr(r, "fill"))
                .collect();
            assert_eq!(colours.len(), 3, "{x}: a swatch a curve: {rects:?}");
            for b in &bars {
                assert!(
                    colours.contains(&svg_attr(b, "fill")),
                    "{x}: a bar in a curve's colour: {b}"
                );
            }
            let vertical: Vec<&&str> = bars
                .iter()
                .filter(|r| size(r).0 == 1 && size(r).1 > 7)
                .collect();
            let horizontal = bars
                .iter()
                .filter(|r| size(r).1 == 1 && size(r).0 > 7)
                .count();
            assert_eq!(vertical.len(), 9, "{x}: a bar in y a point: {bars:?}");
            assert_eq!(horizontal, in_x, "{x}: bars in x: {bars:?}");
            assert_eq!(bars.len(), 3 * (9 + in_x), "{x}: bars and whiskers");
            // Each bar in y passes through a marker of its colour.
            let markers: Vec<(i32, i32, &str)> = div
                .split("<circle")
                .skip(1)
                .map(|c| (int(c, "cx"), int(c, "cy"), svg_attr(c, "fill")))
                .collect();
            for b in vertical {
                let (bx, by, h) = (int(b, "x"), int(b, "y"), int(b, "height"));
                assert!(
                    markers.iter().any(|&(cx, cy, fill)| {
                        cx == bx && by < cy && cy < by + h && fill == svg_attr(b, "fill")
                    }),
                    "{x}: the bar {b} through no marker of {markers:?}"
                );
            }
        }
    }

    #[test]
    fn plane_and_k_plots() {
        let html = sweep_html(&page("vqib sweep", &[]), &grid()).unwrap();
        for id in ["plane", "perplexity-k", "codes-k"] {
            let tag = plot_tag(&html, id);
            assert_eq!(attr(tag, "data-curves"), 3, "{tag}");
            assert_eq!(attr(tag, "data-points"), 9, "{tag}");
            assert_eq!(attr(tag, "data-front"), 0, "{tag}");
            let div = plot_div(&html, id);
            assert_eq!(div.matches("<polyline").count(), 3, "{div}");
            assert_eq!(div.matches("<circle").count(), 9, "{div}");
        }
        // K on a log2 axis: every power of two from 64 to 1024 is a tick.
        let div = plot_div(&html, "perplexity-k");
        for k in [64, 128, 256, 512, 1024] {
            assert!(
                div.contains(&format!("\n{k}\n</text>")),
                "tick {k} in {div}"
            );
        }
        assert!(div.contains("\nsoft-em\n</text>"));
        // The order of the page.
        let at = |s: &str| html.find(s).unwrap();
        assert!(at("id=\"progress\"") < at("id=\"sweep-table\""));
        assert!(at("id=\"sweep-table\"") < at("id=\"rd-rate_iz_bits-mse_expected\""));
        assert!(at("id=\"rd-rate_kl_bits-nll\"") < at("id=\"plane\""));
        assert!(at("id=\"plane\"") < at("id=\"perplexity-k\""));
        assert!(at("id=\"perplexity-k\"") < at("id=\"codes-k\""));
    }

    #[test]
    fn table_has_a_row_a_setting() {
        let html = sweep_html(&page("vqib sweep", &[]), &grid()).unwrap();
        let start = html.find("<table id=\"sweep-table\">").unwrap();
        let table = &html[start..start + html[start..].find("</table>").unwrap()];
        assert_eq!(table.matches("<tr>").count(), 1 + 9);
        assert!(table.contains("<th>quantizer</th><th>K</th><th>D</th>"));
        assert!(table.contains("<th>seeds</th><th>perplexity exp(H(Z))</th>"));
        assert_eq!(table.matches("<th>").count(), 6 + 1 + TABLE_METRICS.len());
        // vq-ema at K = 256: perplexity 12.5 * 2 + 1 over 2 seeds; coded bits not measured.
        assert!(
            table.contains(
                "<tr><td>vq-ema</td><td>256</td><td>64</td><td>0.25</td><td>1</td><td>1</td>\
                 <td>2</td><td>26.0 ± 0.5</td><td>41.0 ± 1.0</td><td>2.1000 ± 0.1000</td><td>–</td>"
            ),
            "{table}"
        );
        assert!(table.contains("<td>–</td></tr>"));
    }

    #[test]
    fn k_plots_separate_the_other_options() {
        let mut rows = Vec::new();
        for beta in [0.25, 1.0] {
            for k in [64, 256] {
                let mut r = fake_row(Vq, k, &[("perplexity", k as f64 / 4.0 * beta, 1.0)]);
                r.setting.beta = beta;
                rows.push(r);
            }
        }
        rows.push(fake_row(SoftEm, 64, &[("perplexity", 30.0, 1.0)]));
        let html = sweep_html(&page("vqib sweep", &[]), &rows).unwrap();
        let tag = plot_tag(&html, "perplexity-k");
        assert_eq!(attr(tag, "data-curves"), 3);
        assert_eq!(attr(tag, "data-points"), 5);
        let div = plot_div(&html, "perplexity-k");
        assert_eq!(div.matches("<polyline").count(), 3);
        for label in ["vq beta=0.25", "vq beta=1", "soft-em beta=0.25"] {
            assert!(
                div.contains(&format!("\n{label}\n</text>")),
                "{label} in {div}"
            );
        }
        // Nothing to draw elsewhere: notes, not charts, and no error.
        for id in ["codes-k", "rd-rate_iz_bits-nll", "plane"] {
            let tag = plot_tag(&html, id);
            assert_eq!(attr(tag, "data-points"), 0, "{tag}");
            assert!(!plot_div(&html, id).contains("<svg"));
        }
    }

    #[test]
    fn rows_without_labels_get_a_note_instead_of_the_plane() {
        let rows: Vec<SweepRow> = [64, 256]
            .into_iter()
            .map(|k| fake_row(Vq, k, &[("i_iz", k as f64 / 100.0, 0.1), ("nll", 5.0, 0.1)]))
            .collect();
        let html = sweep_html(&page("vqib sweep", &[]), &rows).unwrap();
        let tag = plot_tag(&html, "plane");
        assert_eq!(attr(tag, "data-curves"), 0);
        assert_eq!(attr(tag, "data-points"), 0);
        let div = plot_div(&html, "plane");
        assert!(div.contains("no labels"), "{div}");
        assert!(!div.contains("<svg"));
    }

    #[test]
    fn empty_rows_render_notes() {
        let html = sweep_html(
            &SweepPage {
                command: "vqib sweep",
                points: 4,
                finished: 0,
                missing: &[],
            },
            &[],
        )
        .unwrap();
        assert!(html.contains("<p id=\"progress\">0 of 4 points finished.</p>"));
        assert!(!html.contains("<svg"));
        let ids = RATES
            .iter()
            .flat_map(|(x, _)| DISTORTIONS.iter().map(move |(y, _)| format!("rd-{x}-{y}")))
            .chain(["plane", "perplexity-k", "codes-k"].map(String::from));
        for id in ids {
            let tag = plot_tag(&html, &id);
            assert_eq!((attr(tag, "data-curves"), attr(tag, "data-points")), (0, 0));
            assert!(plot_div(&html, &id).contains("class=\"note\""));
        }
        assert!(html.contains("<table id=\"sweep-table\">"));
        assert!(!html.contains("id=\"missing\""));
        assert!(html.ends_with("</body></html>\n"));
    }

    #[test]
    fn command_and_missing_paths_are_escaped() {
        let missing = [
            PathBuf::from("out/runs/a<b&c"),
            PathBuf::from("out/runs/\"q\">"),
        ];
        let html = sweep_html(&page("vqib sweep --out \"x<y\" & z", &missing), &grid()).unwrap();
        assert!(html.contains("<p><code>vqib sweep --out &quot;x&lt;y&quot; &amp; z</code></p>"));
        assert!(html.contains("<p id=\"progress\">9 of 11 points finished.</p>"));
        assert!(html.contains("<li><code>out/runs/a&lt;b&amp;c</code></li>"));
        assert!(html.contains("<li><code>out/runs/&quot;q&quot;&gt;</code></li>"));
        assert!(!html.contains("a<b") && !html.contains("x<y"));
        // Self-contained: nothing is loaded from elsewhere.
        assert!(!html.contains("<link") && !html.contains("src=\"http"));
    }

    #[test]
    fn ranges_show_error_bars() {
        let curve = |points: Vec<Pt>| Curve {
            label: String::new(),
            color: COLORS[0],
            points,
        };
        let pt = |x, y, sx, sy| Pt { x, y, sx, sy };
        let ((x0, x1), (y0, y1)) = chart_ranges(
            &[curve(vec![
                pt(0.0, 0.0, 1.0, 2.0),
                pt(8.0, 10.0, f64::NAN, 1.0),
            ])],
            false,
        );
        // x from -1 to 8 (NaN sd ignored) padded by 5%; y from -2 to 11 padded by 8%.
        assert!((x0 - -1.45).abs() < 1e-12 && (x1 - 8.45).abs() < 1e-12);
        assert!((y0 - -3.04).abs() < 1e-12 && (y1 - 12.04).abs() < 1e-12);
        let ((x0, x1), _) = chart_ranges(&[curve(vec![pt(64.0, 1.0, 5.0, 0.0)])], true);
        assert!((x0 * x1 - 64.0 * 64.0).abs() < 1e-9 && x1 / x0 > 1.99 && x1 / x0 < 2.01);
        assert_eq!(chart_ranges(&[], false), ((0.0, 1.0), (0.0, 1.0)));
    }
}
