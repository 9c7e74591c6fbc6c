//! `vqib measure`'s terminal output: what was measured, then its quantities (a column a stage
//! and one for the tuple, for staged codes), then the notes.

use super::{CodeMap, InputKind, Measurement, PosteriorKind};

/// A value with six significant digits (0 for |v| < 1e-12).
fn num(v: f64) -> String {
    if v.abs() < 1e-12 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (5 - mag).clamp(0, 6) as usize;
    format!("{v:.decimals$}")
}

/// The rows of one code map's quantities (nats, then bits).
fn map_rows(m: &CodeMap, compact: bool) -> Vec<(String, String)> {
    let (a, b) = (&m.info, &m.info_bits);
    let l2 = m.log2_code_space;
    let space = match m.code_space {
        Some(k) if k <= 1 << 20 => k.to_string(),
        _ if l2.fract() == 0.0 => format!("2^{l2}"),
        _ => format!("2^{l2:.2}"),
    };
    let used = if compact {
        a.codes_used.to_string()
    } else {
        format!("{} of {space}", a.codes_used)
    };
    let mut rows = vec![
        ("code space K".to_string(), space),
        ("codes used".into(), used),
        ("H(Z) plug-in (nats)".into(), num(a.h_z)),
        ("H(Z) Miller-Madow (nats)".into(), num(a.h_z_miller_madow)),
        ("perplexity exp(H(Z))".into(), num(a.perplexity)),
        ("H(Z|I) (nats)".into(), num(a.h_z_given_i)),
        ("I(I;Z) (nats)".into(), num(a.mutual_info)),
        ("H(p(Z|I), r) (nats)".into(), num(a.cross_entropy)),
        ("KL(p(Z|I) || r) (nats)".into(), num(a.kl)),
        ("H(Z) (bits)".into(), num(b.h_z)),
        ("H(Z|I) (bits)".into(), num(b.h_z_given_i)),
        ("I(I;Z) (bits)".into(), num(b.mutual_info)),
        ("H(p(Z|I), r) (bits)".into(), num(b.cross_entropy)),
        ("KL(p(Z|I) || r) (bits)".into(), num(b.kl)),
    ];
    if let Some(r) = &m.relevance {
        rows.push(("H(Y) of the labels (nats)".into(), num(r.h_y)));
        rows.push(("I(Z;Y) plug-in (nats)".into(), num(r.i_zy)));
        rows.push(("H(Z|Y) (nats)".into(), num(r.h_z_given_y)));
        rows.push((
            "I(Z;Y) argmax, Miller-Madow (nats)".into(),
            num(r.argmax_i_zy_miller_madow),
        ));
    }
    if let (Some(h), Some(ce)) = (m.h_z_bits_per_image, m.cross_entropy_bits_per_image) {
        rows.push(("L H(Z) / ln 2 (bits/image)".into(), num(h)));
        rows.push(("L H(p(Z|I), r) / ln 2 (bits/image)".into(), num(ce)));
    }
    rows.push(("KT-coded bits (ideal), total".into(), num(m.coded.bits)));
    rows.push(("KT-coded bits/vector".into(), num(m.coded.bits_per_vector)));
    if let Some(b) = m.coded.bits_per_image {
        rows.push(("KT-coded bits/image".into(), num(b)));
    }
    rows
}

/// The terminal output: what was measured, the quantities (one column a stage and the joint
/// for staged codes), and the notes.
pub fn render(m: &Measurement) -> String {
    let dims = |s: &[usize]| match (m.input, s.len()) {
        (InputKind::ZE, 2) => "[N, D]",
        (InputKind::ZE, _) => "[B, h, w, D]",
        (InputKind::Logits, 2) => "[N, K]",
        (InputKind::Logits, _) => "[B, h, w, K]",
        (InputKind::Codes, 3) => "[B, h, w]",
        (InputKind::Codes, _) => "[B, h, w, S]",
    };
    let posterior = match (m.posterior, m.input) {
        (PosteriorKind::Hard, InputKind::ZE) => "hard: the nearest codeword".to_string(),
        (PosteriorKind::Hard, InputKind::Logits) => "hard: the most probable code".into(),
        (PosteriorKind::Hard, InputKind::Codes) => "hard: the codes".into(),
        (PosteriorKind::Soft, InputKind::ZE) => format!(
            "soft: softmax(-||z_e - e_z||^2 / {})",
            m.temperature.unwrap_or(1.0)
        ),
        (PosteriorKind::Soft, _) => {
            format!("soft: softmax(logits / {})", m.temperature.unwrap_or(1.0))
        }
    };
    let mut head = vec![
        ("file".to_string(), m.file.clone()),
        (
            "input".into(),
            format!(
                "{} {} = {:?}, {}",
                m.input.name(),
                dims(&m.shape),
                m.shape,
                m.dtype
            ),
        ),
        ("posterior p(z|i)".into(), posterior),
        (
            "latent vectors N".into(),
            match (m.images, m.vectors_per_image) {
                (Some(b), Some(l)) => format!("{} ({b} images x {l})", m.vectors),
                _ => m.vectors.to_string(),
            },
        ),
        (
            "prior r(z) of the rate terms".into(),
            match m.prior.as_str() {
                "uniform" => "uniform, 1/K".to_string(),
                p => format!("the file's `{p}`"),
            },
        ),
    ];
    if let Some(c) = m.label_classes {
        head.push(("label classes".into(), c.to_string()));
    }
    let mut out = String::new();
    let two = |rows: &[(String, String)]| {
        let r: Vec<(&str, String)> = rows.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        crate::report::table(&r)
    };
    if m.stages.is_empty() {
        head.extend(map_rows(&m.map, false));
        out.push_str(&two(&head));
    } else {
        out.push_str(&two(&head));
        let cols: Vec<Vec<(String, String)>> = m
            .stages
            .iter()
            .chain(std::iter::once(&m.map))
            .map(|c| map_rows(c, true))
            .collect();
        let mut header = vec![String::new()];
        header.extend(m.stages.iter().map(|s| s.name.clone()));
        header.push("joint".into());
        // Rows by name, in the order of the first column ("codes used" etc. in every map).
        let rows: Vec<Vec<String>> = cols[0]
            .iter()
            .map(|(name, _)| {
                let mut r = vec![name.clone()];
                r.extend(cols.iter().map(|c| {
                    c.iter()
                        .find(|(n, _)| n == name)
                        .map_or(String::new(), |(_, v)| v.clone())
                }));
                r
            })
            .collect();
        out.push_str(&table_n(&header, &rows));
    }
    let mut notes = vec![
        "(nats) and (bits) are per latent vector. KT-coded: the argmax code map's ideal length, \
         sum -log2 r(z) under r(z) = (n_z + 1/2) / (N + K/2), the Krichevsky-Trofimov marginal \
         of its own counts (the codec's prior)."
            .to_string(),
    ];
    notes.extend(m.notes.iter().map(|n| format!("note: {n}.")));
    for map in m.stages.iter().chain(std::iter::once(&m.map)) {
        if map.undersampled {
            let (n, used) = (m.vectors as f64, map.info.codes_used as f64);
            let label = if m.stages.is_empty() {
                String::new()
            } else {
                format!("{}: ", map.name)
            };
            notes.push(format!(
                "note: {label}K = 2^{:.1} is not small against N = {}: the plug-in H(Z) is \
                 biased low ({} distinct codes; Miller-Madow adds (m - 1) / 2N = {} nats; \
                 H(Z) <= ln N = {} nats).",
                map.log2_code_space,
                m.vectors,
                map.info.codes_used,
                num((used - 1.0).max(0.0) / (2.0 * n)),
                num(n.ln())
            ));
        }
    }
    for n in notes {
        out.push_str(&wrap(&n, 100));
    }
    out
}

/// `text` broken at spaces into lines of at most `width` characters (a longer word stands
/// alone), each ending in a newline.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// A table of a header row and rows of the same width, the first column left-aligned.
fn table_n(header: &[String], rows: &[Vec<String>]) -> String {
    let all = || std::iter::once(header).chain(rows.iter().map(Vec::as_slice));
    let widths: Vec<usize> = (0..header.len())
        .map(|c| all().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let line = format!(
        "+{}+\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let fmt = |r: &[String]| {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (v, w))| match i {
                0 => format!(" {v:<w$} "),
                _ => format!(" {v:>w$} "),
            })
            .collect();
        format!("|{}|\n", cells.join("|"))
    };
    let mut s = line.clone();
    s.push_str(&fmt(header));
    s.push_str(&line);
    for r in rows {
        s.push_str(&fmt(r));
    }
    s.push_str(&line);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_six_significant_digits() {
        assert_eq!(num(2.123_812), "2.12381");
        assert_eq!(num(412.9), "412.900");
        assert_eq!(num(0.000_123_44), "0.000123");
        assert_eq!(num(-1e-17), "0");
        assert_eq!(num(123_456_789.4), "123456789");
    }

    #[test]
    fn notes_wrap_at_the_width() {
        let w = wrap("aaa bbb ccc dddddddd e", 7);
        assert_eq!(w, "aaa bbb\nccc\ndddddddd\ne\n");
    }
}
