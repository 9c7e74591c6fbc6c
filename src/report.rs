//! What a run shows people: how a number is written ([`fmt_num`], [`fmt_stat`]: every table of
//! vqib, in the terminal, Markdown and HTML, writes its numbers with these), the summary tables
//! printed at the end of a run or by `vqib eval` ([`table`], [`table3`], [`columns`]), and PNG
//! grids of originals above reconstructions.

use std::path::Path;

use crate::io::write_atomic;

/// How a quantity is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A count (codes used, images, K): an integer; a mean of counts that is not one, to one
    /// decimal.
    Count,
    /// A real quantity: to four significant digits (412.9, 2.124, 0.01381, 734.7; integers
    /// from 1000 up, at most 5 decimals, so that numerical noise around zero reads 0).
    Real,
}

/// The decimals that show `v` to four significant digits: none from 1000 up, at most 5.
fn decimals(v: f64) -> usize {
    if !v.is_finite() || v == 0.0 {
        return 0;
    }
    (3 - v.abs().log10().floor() as i32).clamp(0, 5) as usize
}

/// `v` to `decimals` decimals; a value that shows as zero is `0` (never `-0.000`).
fn fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.trim_start_matches('-')
        .bytes()
        .all(|b| b == b'0' || b == b'.')
    {
        "0".into()
    } else {
        s
    }
}

/// `v` as the tables show it: `–` where it is NaN (not measured), `inf` or `-inf`, else as
/// `format` says.
pub fn fmt_num(v: f64, format: Format) -> String {
    match (format, v) {
        (_, v) if v.is_nan() => "–".into(),
        (_, v) if v.is_infinite() => if v > 0.0 { "inf" } else { "-inf" }.into(),
        (Format::Count, v) => fixed(v, if v == v.round() { 0 } else { 1 }),
        (Format::Real, v) => fixed(v, decimals(v)),
    }
}

/// A mean and standard deviation over `n` values: `mean ± sd`, the sd to the mean's decimals;
/// the mean alone where `n` is 1 (there is no sd) or the mean is not finite.
pub fn fmt_stat((m, s): (f64, f64), n: usize, format: Format) -> String {
    if n <= 1 || !m.is_finite() {
        return fmt_num(m, format);
    }
    let d = match format {
        Format::Count if m == m.round() && s == s.round() => 0,
        Format::Count => 1,
        // A mean that shows as zero takes the sd's decimals.
        Format::Real if fixed(m, decimals(m)) == "0" => decimals(s),
        Format::Real => decimals(m),
    };
    format!("{} ± {}", fixed(m, d), fixed(s, d))
}

/// Two real means with their sds over `n` values, for a line that compares them: as
/// [`fmt_stat`] writes them, except that where different means would read the same, both get as
/// many decimals as it takes (up to 6) to tell them apart.
pub fn fmt_pair(a: (f64, f64), b: (f64, f64), n: usize) -> (String, String) {
    let (mut da, mut db) = (decimals(a.0), decimals(b.0));
    if a.0 != b.0 && fixed(a.0, da) == fixed(b.0, db) {
        let mut d = da.max(db);
        while d < 6 && fixed(a.0, d) == fixed(b.0, d) {
            d += 1;
        }
        (da, db) = (d, d);
    }
    let one = |(m, s): (f64, f64), d: usize| {
        if !m.is_finite() {
            fmt_num(m, Format::Real)
        } else if n <= 1 {
            fixed(m, d)
        } else {
            format!("{} ± {}", fixed(m, d), fixed(s, d))
        }
    };
    (one(a, da), one(b, db))
}

/// `text` broken at spaces into lines of at most `width` characters (a word longer than that
/// stands alone on its line), the lines after the first indented by `indent`.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut len = 0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let n = word.chars().count();
        if len > 0 && len + 1 + n > width {
            out.push('\n');
            out.push_str(indent);
            len = indent.chars().count();
        } else if len > 0 {
            out.push(' ');
            len += 1;
        }
        out.push_str(word);
        len += n;
    }
    out
}

/// A table of columns for the terminal: the header, a rule, a line a row; the first column
/// aligned left, the others right, two spaces between (widths in characters).
pub fn columns(head: &[String], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        std::iter::once(&head[i])
            .chain(rows.iter().map(|r| &r[i]))
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, &w))| {
                let pad = " ".repeat(w - c.chars().count());
                if i == 0 {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    let mut s = line(head) + &line(&rule);
    for r in rows {
        s.push_str(&line(r));
    }
    s
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

/// A value in [0, 1] as an 8-bit pixel (clamped, rounded): how every image vqib writes is made.
pub fn pixel_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
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
                    let px = |ch: usize| pixel_u8(im[ch * h * w + y * w + x]);
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
    fn numbers_to_four_significant_digits_counts_as_integers() {
        use Format::*;
        for (v, want) in [
            (412.94, "412.9"),
            (2.12381, "2.124"),
            (0.0138149, "0.01381"),
            (734.73, "734.7"),
            (12345.6, "12346"),
            (0.0, "0"),
            (-0.0, "0"),
            (-0.00000001, "0"),
            (-3.5e-7, "0"),
            (-6.6e-7, "0"),
            (0.0001234, "0.00012"),
            (-2.5, "-2.500"),
            (f64::NAN, "–"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(fmt_num(v, Real), want, "{v}");
        }
        assert_eq!(fmt_num(6.0, Count), "6");
        assert_eq!(fmt_num(20.333, Count), "20.3");
        assert_eq!(fmt_num(-0.0, Count), "0");
    }

    #[test]
    fn stats_show_the_sd_only_over_several_values() {
        use Format::*;
        assert_eq!(fmt_stat((412.71, 0.0), 1, Real), "412.7");
        assert_eq!(fmt_stat((6.0, 0.0), 1, Count), "6");
        assert_eq!(fmt_stat((-1e-12, 0.0), 1, Real), "0");
        assert_eq!(fmt_stat((337.92, 22.52), 3, Real), "337.9 ± 22.5");
        assert_eq!(fmt_stat((0.01527, 0.00071), 3, Real), "0.01527 ± 0.00071");
        assert_eq!(fmt_stat((2.245, 0.097), 3, Real), "2.245 ± 0.097");
        assert_eq!(fmt_stat((0.0, 0.0), 3, Real), "0 ± 0");
        assert_eq!(fmt_stat((-1e-9, 0.0021), 2, Real), "0 ± 0.00210");
        assert_eq!(fmt_stat((-6.6e-7, 9e-7), 2, Real), "0 ± 0");
        assert_eq!(fmt_stat((802.9, 0.01), 2, Real), "802.9 ± 0");
        assert_eq!(fmt_stat((20.333, 3.51), 3, Count), "20.3 ± 3.5");
        assert_eq!(fmt_stat((16.0, 0.0), 2, Count), "16 ± 0");
        assert_eq!(fmt_stat((f64::NAN, f64::NAN), 2, Real), "–");
    }

    #[test]
    fn pairs_read_differently_where_they_differ() {
        assert_eq!(
            fmt_pair((732.09, 0.0), (732.96, 0.0), 1),
            ("732.1".into(), "733.0".into())
        );
        assert_eq!(
            fmt_pair((732.11, 0.1), (732.14, 0.2), 2),
            ("732.11 ± 0.10".into(), "732.14 ± 0.20".into())
        );
        assert_eq!(
            fmt_pair((412.71, 0.0), (1.79, 0.0), 1),
            ("412.7".into(), "1.790".into())
        );
        assert_eq!(
            fmt_pair((5.0, 0.0), (5.0, 0.0), 1),
            ("5.000".into(), "5.000".into())
        );
        assert_eq!(fmt_pair((f64::NAN, 0.0), (1.0, 0.0), 2).0, "–");
    }

    #[test]
    fn wrap_breaks_at_spaces_within_the_width() {
        let text = "- Claim 2, soft EM reaches a lower L_VIB than vq, each under its own posterior: HOLDS (soft-em 734.7 vs vq 802.3)";
        let w = wrap(text, 40, "  ");
        assert!(w.lines().all(|l| l.chars().count() <= 40), "{w}");
        assert!(
            w.lines()
                .skip(1)
                .all(|l| l.starts_with("  ") && !l.starts_with("   "))
        );
        assert_eq!(
            w.split_whitespace().collect::<Vec<_>>(),
            text.split(' ').collect::<Vec<_>>()
        );
        assert_eq!(wrap("a bb", 80, "  "), "a bb");
        assert_eq!(wrap("aaaa bbbb", 3, " "), "aaaa\n bbbb");
    }

    #[test]
    fn columns_are_aligned() {
        let head = ["q".to_string(), "ppl ±".to_string()];
        let rows = [
            vec!["soft-em".to_string(), "412.7 ± 1.0".to_string()],
            vec!["vq".to_string(), "6".to_string()],
        ];
        assert_eq!(
            columns(&head, &rows),
            "q              ppl ±\n-------  -----------\nsoft-em  412.7 ± 1.0\nvq                 6\n"
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
