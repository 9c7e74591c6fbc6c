//! The report of a sweep: the self-contained `sweep.html` ([`sweep_html`]).
//!
//! In order: the command and how many points are finished (and which run directories are not),
//! a table of every setting (`id="sweep-table"`), rate-distortion plots (`id="rd-RATE-DIST"`)
//! with the Pareto front of each, the information plane (`id="plane"`), and perplexity and codes
//! used against K (`id="perplexity-k"`, `id="codes-k"`). The page and its tables are the page
//! kit's ([`super::page`]), the charts [`super::plot`]'s (which says how their elements can be
//! counted); the rows are [`super::sweep_table`]'s.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::page::{COLORS, document, esc, html_table, quantizer_color};
use super::plot::{ChartSpec, Curve, Pt, chart_div, note_div};
use super::sweep_table::{Setting, SweepRow, metric, varying_options};
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

/// The metrics of the table (ids of [`super::sweep_table::METRICS`]), in its column order.
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

/// The rates of the rate-distortion plots (ids of metrics, in bits per image) and a short
/// name for the plots' titles.
const RATES: [(&str, &str); 4] = [
    ("rate_iz_bits", "L I(I;Z)"),
    ("rate_hz_bits", "L H(Z)"),
    ("rate_ce_bits", "L H(p(Z|I), r)"),
    ("rate_kl_bits", "L KL(p(Z|I) || r)"),
];

/// The distortions of the rate-distortion plots: id of a metric and axis label.
const DISTORTIONS: [(&str, &str); 2] = [
    ("mse_expected", "E MSE"),
    ("nll", "E -log q(x|z), nats/image"),
];

/// `sweep.html`: the command and progress, the table of settings, the rate-distortion plots,
/// the information plane and perplexity and codes used against K.
pub fn sweep_html(page: &SweepPage, rows: &[SweepRow]) -> anyhow::Result<String> {
    let mut html = String::from("<h1>vqib sweep</h1>\n");
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
    html.push_str(&settings_table(rows));
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
    Ok(document("vqib sweep", &html))
}

/// The label of the metric `id`.
fn label(id: &str) -> &'static str {
    metric(id).label
}

/// The table of settings (`id="sweep-table"`): a row a setting, its options, its number of
/// seeds and each of [`TABLE_METRICS`] over them.
fn settings_table(rows: &[SweepRow]) -> String {
    let mut head: Vec<String> = Setting::OPTION_NAMES.map(String::from).to_vec();
    head.push("seeds".to_string());
    head.extend(TABLE_METRICS.iter().map(|id| label(id).to_string()));
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells: Vec<String> = r.setting.options().into_iter().map(|(_, v)| v).collect();
            cells.push(r.seeds.len().to_string());
            cells.extend(TABLE_METRICS.iter().map(|id| r.stats.cell(id)));
            cells
        })
        .collect();
    html_table("sweep-table", &head, &body)
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
type Combo = (QuantizerKind, usize, u64, u64, u64, String);

fn combo(r: &SweepRow) -> Combo {
    let s = &r.setting;
    (
        s.quantizer,
        s.d,
        s.beta.to_bits(),
        s.rate_weight.to_bits(),
        s.tau.to_bits(),
        s.variant.label(),
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
    // The options (by place in `Setting::options`) that vary among the rows, but K.
    let varying: Vec<usize> = varying_options(rows)
        .into_iter()
        .filter(|&i| i != 1)
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

#[cfg(test)]
mod tests {
    use super::super::sweep_table::fake_row;
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
        assert_eq!(table.matches("<th>").count(), 7 + 1 + TABLE_METRICS.len());
        // vq-ema at K = 256: perplexity 12.5 * 2 + 1 over 2 seeds; coded bits not measured.
        assert!(
            table.contains(
                "<tr><td>vq-ema</td><td>256</td><td>64</td><td>0.25</td><td>1</td><td>1</td>\
                 <td></td><td>2</td><td>26.00 ± 0.50</td><td>41 ± 1</td><td>2.100 ± 0.100</td><td>–</td>"
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
}
