//! The page kit of the reports (`report.html`, `report.md`, `summary.csv` of a comparison;
//! `sweep.html`, `sweep.csv` of a sweep): the HTML document with its style and the script that
//! records what a browser drew ([`document`]), HTML escaping ([`esc`]), the tables in HTML,
//! Markdown and CSV ([`html_table`], [`md_table`], [`csv_bytes`]), and the colours of the
//! quantizers ([`quantizer_color`]). The numbers in the tables are written by
//! [`crate::report::fmt_stat`]; the plots are [`super::plot`]'s.

use std::fmt::Write as _;

use plotters::style::RGBColor;

use crate::quantizer::QuantizerKind;

/// Curve colours: matplotlib's tab10.
pub const COLORS: [RGBColor; 10] = [
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

/// The colour of a quantizer: by its place among every registered quantizer, so that it is the
/// same in every plot of every report.
pub fn quantizer_color(q: QuantizerKind) -> RGBColor {
    let i = QuantizerKind::ALL.iter().position(|k| *k == q).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

/// The style of every page. A table stands in a `.scroll` box, which scrolls sideways inside the
/// page where the table is wider than it.
const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1500px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td{white-space:nowrap}th{background:#f3f3f3}td:first-child{text-align:left;font-weight:600}
.scroll{overflow-x:auto;max-width:100%}details{margin:1em 0}summary{cursor:pointer;font-weight:600}
.verdict{font-size:1.1em;padding:6px 10px;border-left:4px solid #888;background:#fafafa}.holds{border-color:#2a2}.fails{border-color:#c22}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #eee;padding:4px}
.note{color:#666;font-style:italic;max-width:400px}
img.grid{image-rendering:pixelated;max-width:100%}
code{background:#f3f3f3;padding:2px 4px}
";

/// The end of every page: a script that records what the browser drew, for tests. On each
/// `.plot` it sets `data-rendered="WxH elements=N img=WxH polylines=N circles=N"` (its size, the
/// SVG elements drawn, the natural size of its image or `none`, the polylines and circles), and
/// `data-ready="1"` on the body when done.
const SCRIPT: &str = r#"<script>
// Records what the browser drew (each plot's size and element count), for tests.
window.addEventListener('load', () => { for (const p of document.querySelectorAll('.plot')) { const r = p.getBoundingClientRect(); const n = p.querySelectorAll('path,polyline,rect,line,circle,text').length; const img = p.querySelector('img'); p.dataset.rendered = `${Math.round(r.width)}x${Math.round(r.height)} elements=${n} img=${img ? img.naturalWidth + 'x' + img.naturalHeight : 'none'} polylines=${p.querySelectorAll('polyline').length} circles=${p.querySelectorAll('circle').length}`; } document.body.dataset.ready = '1'; });
</script>
"#;

/// A self-contained page: the head with `title` and the style, `body` (complete lines), the
/// script.
pub fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\n{STYLE}</style></head><body>\n{body}{SCRIPT}</body></html>\n",
        esc(title)
    )
}

/// `s` safe as HTML text and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An HTML table (`id`) in a box that scrolls sideways: a header row, a row each of `rows`
/// (every cell escaped; the first of a row is its name).
pub fn html_table(id: &str, head: &[String], rows: &[Vec<String>]) -> String {
    let mut html = format!("<div class=\"scroll\"><table id=\"{id}\"><thead><tr>");
    for h in head {
        let _ = write!(html, "<th>{}</th>", esc(h));
    }
    html.push_str("</tr></thead><tbody>\n");
    for r in rows {
        html.push_str("<tr>");
        for c in r {
            let _ = write!(html, "<td>{}</td>", esc(c));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table></div>\n");
    html
}

/// A Markdown table: a header row, the rule, a row each of `rows` (`|` in a cell escaped).
pub fn md_table(head: &[String], rows: &[Vec<String>]) -> String {
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut md = line(head);
    let _ = writeln!(md, "|{}", "---|".repeat(head.len()));
    for r in rows {
        md.push_str(&line(r));
    }
    md
}

/// A CSV file (RFC 4180, written by the `csv` crate: a field that holds a comma, a quote or a
/// line break is quoted): the header, then `rows`, every one as wide as the header.
pub fn csv_bytes(head: &[String], rows: &[Vec<String>]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(head)?;
    for r in rows {
        w.write_record(r)?;
    }
    Ok(w.into_inner().map_err(|e| e.into_error())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tables_in_html_markdown_and_csv() {
        let head = strings(&["quantizer", "H(Z|I), nats"]);
        let rows = vec![strings(&["vq", "0"]), strings(&["a<b", "say \"x\""])];
        let html = html_table("t", &head, &rows);
        assert_eq!(
            html,
            "<div class=\"scroll\"><table id=\"t\"><thead><tr><th>quantizer</th><th>H(Z|I), nats</th></tr></thead><tbody>\n\
             <tr><td>vq</td><td>0</td></tr>\n<tr><td>a&lt;b</td><td>say &quot;x&quot;</td></tr>\n</tbody></table></div>\n"
        );
        assert_eq!(
            md_table(&head, &rows),
            "| quantizer | H(Z\\|I), nats |\n|---|---|\n| vq | 0 |\n| a<b | say \"x\" |\n"
        );
        let csv = csv_bytes(&head, &rows).unwrap();
        assert_eq!(
            String::from_utf8(csv.clone()).unwrap(),
            "quantizer,\"H(Z|I), nats\"\nvq,0\na<b,\"say \"\"x\"\"\"\n"
        );
        let mut r = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(&csv[..]);
        assert_eq!(r.headers().unwrap(), head);
        let back: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        assert_eq!(back[1], rows[1]);
        // Rows of another width are refused, not written.
        assert!(csv_bytes(&head, &[strings(&["x"])]).is_err());
    }

    #[test]
    fn the_document_is_self_contained() {
        let html = document("vqib <x>", "<p>B</p>\n");
        assert!(html.starts_with("<!doctype html>\n<html lang=\"en\"><head>"));
        assert!(html.contains("<title>vqib &lt;x&gt;</title>"));
        assert!(html.contains("</style></head><body>\n<p>B</p>\n<script>\n"));
        assert!(html.ends_with("</script>\n</body></html>\n"));
        assert!(!html.contains("http") && !html.contains("<link"));
    }

    #[test]
    fn a_quantizer_keeps_its_colour() {
        let all = QuantizerKind::ALL;
        assert_eq!(quantizer_color(all[0]), COLORS[0]);
        assert_ne!(quantizer_color(all[0]), quantizer_color(all[1]));
    }
}
