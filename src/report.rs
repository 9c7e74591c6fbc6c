//! What a run shows people: the summary tables printed at the end of a run or by `vqib eval`, and
//! PNG grids of originals above reconstructions.

use std::path::Path;

use crate::io::write_atomic;

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
