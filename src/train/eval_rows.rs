//! An evaluation as the outputs show it: the table of its quantities ([`METRICS`]: from it come
//! the columns of `summary.csv` and `sweep.csv`, the tables of the comparison's and the sweep's
//! reports and the terminal's tables), the metrics log's record ([`eval_record`]) and the rows of
//! the terminal tables of a run ([`summary_rows`], [`info_rows`]).

use super::eval::EvalMetrics;
use crate::distortion::Estimate;
use crate::records::Record;
use crate::report::{Format, fmt_num};

/// A quantity of an evaluation as the reports show it.
pub struct Metric {
    /// Its column of `summary.csv` and `sweep.csv` (`ID mean`, `ID sd`), and its key.
    pub id: &'static str,
    /// A short name, for the terminal's tables.
    pub name: &'static str,
    /// Its label, with the unit (in parentheses) where it has one: the Markdown and HTML tables,
    /// the plots' axes, `vqib eval`.
    pub label: &'static str,
    pub format: Format,
    /// How to read it from an evaluation (None where it was not measured).
    pub f: fn(&EvalMetrics) -> Option<f64>,
}

impl Metric {
    /// Its value in `m`, NaN where it was not measured.
    pub fn of(&self, m: &EvalMetrics) -> f64 {
        (self.f)(m).unwrap_or(f64::NAN)
    }
}

/// The metric `id` of [`METRICS`]. The ids are the code's own: an unknown one is a bug (panics).
pub fn metric(id: &str) -> &'static Metric {
    METRICS
        .iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("no metric {id:?}"))
}

/// A rate per latent vector in nats as bits per image: times L (latent vectors an image), over
/// ln 2.
pub fn bits(m: &EvalMetrics, nats: f64) -> f64 {
    nats * m.latents as f64 / std::f64::consts::LN_2
}

macro_rules! metrics {
    ($($id:literal, $name:literal, $label:literal, $format:ident, $f:expr;)*) => {
        &[$(Metric { id: $id, name: $name, label: $label, format: Format::$format, f: $f }),*]
    };
}

/// Every quantity of an evaluation that the reports show, in the column order of `sweep.csv`
/// and `summary.csv`. Information quantities are per latent vector under the model's own
/// posterior unless named `soft` (softmax(-d^2/tau) for every model); `E` marks the seed's
/// expected distortion ([`crate::distortion`]) and the objectives with it; the training-time
/// decode (for soft EM, the decoder of the mean of m sampled codewords) is named so.
pub const METRICS: &[Metric] = metrics![
    "perplexity", "perplexity", "perplexity exp(H(Z))", Real, |m| Some(m.perplexity);
    "codes_used", "codes used", "codes used", Count, |m| Some(m.codes_used as f64);
    "h_z", "H(Z)", "H(Z) (nats)", Real, |m| Some(m.assigned.h_z);
    "h_z_given_i", "H(Z|I)", "H(Z|I) (nats)", Real, |m| Some(m.assigned.h_z_given_i);
    "i_iz", "I(I;Z)", "I(I;Z) (nats)", Real, |m| Some(m.assigned.mutual_info);
    "cross_entropy", "H(p,r)", "H(p(Z|I), r) (nats)", Real, |m| Some(m.assigned.cross_entropy);
    "kl", "KL", "KL(p(Z|I) || r) (nats)", Real, |m| Some(m.assigned.kl);
    "rate_iz_bits", "L I(I;Z) bits", "L I(I;Z) / ln 2 (bits/image)", Real,
        |m| Some(bits(m, m.assigned.mutual_info));
    "rate_hz_bits", "L H(Z) bits", "L H(Z) / ln 2 (bits/image)", Real,
        |m| Some(bits(m, m.assigned.h_z));
    "rate_ce_bits", "L H(p,r) bits", "L H(p(Z|I), r) / ln 2 (bits/image)", Real,
        |m| Some(bits(m, m.assigned.cross_entropy));
    "rate_kl_bits", "L KL bits", "L KL(p(Z|I) || r) / ln 2 (bits/image)", Real,
        |m| Some(bits(m, m.assigned.kl));
    "h_y", "H(Y)", "H(Y) (nats)", Real, |m| m.relevance.as_ref().map(|r| r.h_y);
    "i_zy", "I(Z;Y)", "I(Z;Y) (nats)", Real, |m| m.relevance.as_ref().map(|r| r.i_zy);
    "i_zy_mm", "I(Z;Y) MM", "I(Z;Y) Miller-Madow, argmax codes (nats)", Real,
        |m| m.relevance.as_ref().map(|r| r.argmax_i_zy_miller_madow);
    "soft_i_iz", "soft I(I;Z)", "soft I(I;Z) (nats)", Real, |m| Some(m.soft.mutual_info);
    "soft_kl", "soft KL", "soft KL (nats)", Real, |m| Some(m.soft.kl);
    "soft_i_zy", "soft I(Z;Y)", "soft I(Z;Y) (nats)", Real,
        |m| m.soft_relevance.as_ref().map(|r| r.i_zy);
    "mse", "MSE", "reconstruction MSE, training-time decode", Real, |m| Some(m.mse);
    "psnr", "PSNR", "PSNR, training-time decode (dB)", Real, |m| Some(m.psnr);
    "distortion_train", "-log q", "-log q(x|z), training-time decode (nats/image)", Real,
        |m| Some(m.distortion);
    "nll", "E -log q", "E -log q(x|z) (nats/image)", Real,
        |m| m.expected.as_ref().map(|e| e.distortion.mean);
    "nll_se", "s.e. E -log q", "standard error of E -log q(x|z)", Real,
        |m| m.expected.as_ref().map(|e| e.distortion.se);
    "mse_expected", "E MSE", "E MSE", Real, |m| m.expected.as_ref().map(|e| e.mse.mean);
    "soft_nll", "soft E -log q", "soft E -log q(x|z) (nats/image)", Real,
        |m| m.expected.as_ref().map(|e| e.soft_distortion.mean);
    "l_vdib", "E L_VDIB", "E L_VDIB (nats/image)", Real,
        |m| m.expected.as_ref().map(|e| e.l_vdib);
    "l_vib", "E L_VIB", "E L_VIB (nats/image)", Real, |m| m.expected.as_ref().map(|e| e.l_vib);
    "l_marginal", "E L(r=p(z))", "E L (r = p(z)) (nats/image)", Real,
        |m| m.expected.as_ref().map(|e| e.l_marginal);
    "soft_l_vib", "soft E L_VIB", "soft E L_VIB (nats/image)", Real,
        |m| m.expected.as_ref().map(|e| e.soft_l_vib);
    "coded_bits", "coded bits", "coded rate (bits/image)", Real,
        |m| m.coded.as_ref().map(|c| c.bits_per_image);
    "h_z_mm", "H(Z) MM", "H(Z) Miller-Madow (nats)", Real, |m| Some(m.assigned.h_z_miller_madow);
    "dead_codes", "dead codes", "dead codes", Count, |m| Some(m.dead_codes as f64);
    "h_z_given_y", "H(Z|Y)", "H(Z|Y) (nats)", Real,
        |m| m.relevance.as_ref().map(|r| r.h_z_given_y);
    "i_zy_argmax", "I(Z;Y) argmax", "I(Z;Y) plug-in, argmax codes (nats)", Real,
        |m| m.relevance.as_ref().map(|r| r.argmax_i_zy);
    "soft_h_z", "soft H(Z)", "soft H(Z) (nats)", Real, |m| Some(m.soft.h_z);
    "soft_perplexity", "soft perplexity", "soft perplexity", Real, |m| Some(m.soft.perplexity);
    "soft_h_z_given_i", "soft H(Z|I)", "soft H(Z|I) (nats)", Real,
        |m| Some(m.soft.h_z_given_i);
    "soft_cross_entropy", "soft H(p,r)", "soft H(p(Z|I), r) (nats)", Real,
        |m| Some(m.soft.cross_entropy);
    "soft_nll_se", "s.e. soft E -log q", "standard error of soft E -log q(x|z)", Real,
        |m| m.expected.as_ref().map(|e| e.soft_distortion.se);
    "soft_mse_expected", "soft E MSE", "soft E MSE", Real,
        |m| m.expected.as_ref().map(|e| e.soft_mse.mean);
    "soft_l_vdib", "soft E L_VDIB", "soft E L_VDIB (nats/image)", Real,
        |m| m.expected.as_ref().map(|e| e.soft_l_vdib);
    "soft_l_marginal", "soft E L(r=p(z))", "soft E L (r = p(z)) (nats/image)", Real,
        |m| m.expected.as_ref().map(|e| e.soft_l_marginal);
    "l_vib_train", "L_VIB", "L_VIB, training-time decode (nats/image)", Real, |m| Some(m.l_vib);
    "l_vdib_train", "L_VDIB", "L_VDIB, training-time decode (nats/image)", Real,
        |m| Some(m.l_vdib);
    "coded_bits_per_pixel", "coded bits/px", "coded rate (bits/pixel)", Real,
        |m| m.coded.as_ref().map(|c| c.bits_per_pixel);
    "soft_l_vib_train", "soft L_VIB", "soft L_VIB, training-time decode (nats/image)", Real,
        |m| Some(m.soft_l_vib);
    "uniform_excess", "uniform excess", "uniform-prior excess beta L KL(p(z) || r) (nats/image)",
        Real, |m| Some(m.beta * m.latents as f64 * (m.assigned.kl - m.assigned.mutual_info));
];

/// The metrics log's record of an evaluation at training step `step` of epoch `epoch`.
pub fn eval_record(
    m: &EvalMetrics,
    step: u64,
    epoch: usize,
    wall_time: f64,
    restarts: Option<u64>,
) -> Record {
    Record {
        kind: "eval".into(),
        step,
        epoch,
        wall_time,
        recon_mse: Some(m.mse),
        codebook_loss: Some(m.codebook_loss),
        commitment_loss: Some(m.commitment_loss),
        perplexity: Some(m.perplexity),
        entropy_nats: Some(m.entropy_nats),
        codes_used: Some(m.codes_used),
        dead_codes: Some(m.dead_codes),
        psnr: Some(m.psnr),
        restarts,
        h_z_given_i: Some(m.assigned.h_z_given_i),
        mutual_info: Some(m.assigned.mutual_info),
        cross_entropy: Some(m.assigned.cross_entropy),
        kl: Some(m.assigned.kl),
        distortion: Some(m.distortion),
        l_vdib: Some(m.l_vdib),
        l_vib: Some(m.l_vib),
        soft_perplexity: Some(m.soft.perplexity),
        soft_h_z_given_i: Some(m.soft.h_z_given_i),
        soft_mutual_info: Some(m.soft.mutual_info),
        soft_kl: Some(m.soft.kl),
        soft_l_vib: Some(m.soft_l_vib),
        h_z_miller_madow: Some(m.assigned.h_z_miller_madow),
        soft_h_z: Some(m.soft.h_z),
        soft_cross_entropy: Some(m.soft.cross_entropy),
        soft_l_vdib: Some(m.soft_l_vdib),
        ..Default::default()
    }
}

/// Summary rows of an evaluation (those of [`METRICS`] by their labels, where measured).
/// `space`: the code space as written (`512`, `8^3`).
pub fn summary_rows(m: &EvalMetrics, space: &str) -> Vec<(&'static str, String)> {
    let of = |ids: &[&str]| -> Vec<(&'static str, String)> {
        ids.iter()
            .map(|id| metric(id))
            .filter_map(|x| (x.f)(m).map(|v| (x.label, fmt_num(v, x.format))))
            .collect()
    };
    let mut rows = vec![("test images", m.images.to_string())];
    rows.extend(of(&["mse", "psnr", "perplexity", "h_z"]));
    rows.push(("codes used", format!("{} / {space}", m.codes_used)));
    rows.extend(of(&["dead_codes"]));
    if let Some(h) = &m.stage_entropies {
        let hs: Vec<String> = h.iter().map(|v| fmt_num(*v, Format::Real)).collect();
        rows.push(("H(Z_s) of each stage (nats)", hs.join(", ")));
    }
    rows.push(("codebook loss", fmt_num(m.codebook_loss, Format::Real)));
    rows.push(("commitment loss", fmt_num(m.commitment_loss, Format::Real)));
    rows.extend(of(&[
        "rate_hz_bits",
        "rate_ce_bits",
        "coded_bits",
        "coded_bits_per_pixel",
    ]));
    rows
}

/// Every information quantity of an evaluation, under the assigned and the soft posterior.
pub fn info_rows(m: &EvalMetrics, tau: f64) -> Vec<(String, String, String)> {
    let num = |v: f64| fmt_num(v, Format::Real);
    let row = |name: &str, a: f64, s: f64| (name.to_string(), num(a), num(s));
    let (a, s) = (&m.assigned, &m.soft);
    let mut rows = vec![
        row("H(Z) plug-in (nats)", a.h_z, s.h_z),
        row(
            "H(Z) Miller-Madow (nats)",
            a.h_z_miller_madow,
            s.h_z_miller_madow,
        ),
        row("perplexity exp(H(Z))", a.perplexity, s.perplexity),
        (
            "codes used".into(),
            a.codes_used.to_string(),
            s.codes_used.to_string(),
        ),
        row("H(Z|I) (nats)", a.h_z_given_i, s.h_z_given_i),
        row("I(I;Z) (nats)", a.mutual_info, s.mutual_info),
        row("H(p(Z|I), r) (nats)", a.cross_entropy, s.cross_entropy),
        row("KL(p(Z|I) || r) (nats)", a.kl, s.kl),
        row("H(Z) (bits)", a.bits().h_z, s.bits().h_z),
        row("H(Z|I) (bits)", a.bits().h_z_given_i, s.bits().h_z_given_i),
        row("I(I;Z) (bits)", a.bits().mutual_info, s.bits().mutual_info),
        row(
            "H(p(Z|I), r) (bits)",
            a.bits().cross_entropy,
            s.bits().cross_entropy,
        ),
        row("KL(p(Z|I) || r) (bits)", a.bits().kl, s.bits().kl),
        row(
            "distortion -log q(x|z) per image, training-time decode",
            m.distortion,
            m.distortion,
        ),
        row("MSE", m.mse, m.mse),
        row(
            &format!("L_VDIB per image (beta {})", m.beta),
            m.l_vdib,
            m.soft_l_vdib,
        ),
        row(
            &format!("L_VIB per image (beta {})", m.beta),
            m.l_vib,
            m.soft_l_vib,
        ),
        (
            "".into(),
            "assigned p(z|i)".into(),
            format!("softmax(-d^2/{tau})"),
        ),
    ];
    let (r, sr) = (m.relevance.as_ref(), m.soft_relevance.as_ref());
    if let (Some(r), Some(sr)) = (r, sr) {
        rows.push(row("H(Y) of the labels (nats)", r.h_y, sr.h_y));
        rows.push(row("I(Z;Y) plug-in (nats)", r.i_zy, sr.i_zy));
        rows.push(row("H(Z|Y) (nats)", r.h_z_given_y, sr.h_z_given_y));
        rows.push(row(
            "I(Z;Y) of argmax codes, Miller-Madow",
            r.argmax_i_zy_miller_madow,
            sr.argmax_i_zy_miller_madow,
        ));
    }
    if let Some(e) = &m.expected {
        let est = |x: Estimate| format!("{} ± {}", num(x.mean), num(x.se));
        rows.push((
            format!("E -log q(x|z) per image ({} draws, ± s.e.)", e.samples),
            est(e.distortion),
            est(e.soft_distortion),
        ));
        rows.push(("E MSE (± s.e.)".into(), est(e.mse), est(e.soft_mse)));
        rows.push(row("L_VDIB, expected distortion", e.l_vdib, e.soft_l_vdib));
        rows.push(row("L_VIB, expected distortion", e.l_vib, e.soft_l_vib));
        rows.push(row(
            "L with r = p(z): distortion + beta L I(I;Z)",
            e.l_marginal,
            e.soft_l_marginal,
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_have_unique_plain_ids_and_short_names() {
        for (i, m) in METRICS.iter().enumerate() {
            assert!(
                m.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.id
            );
            assert!(METRICS[..i].iter().all(|o| o.id != m.id), "{} twice", m.id);
            assert!(
                m.name.chars().count() <= 18 && !m.label.is_empty(),
                "{}",
                m.id
            );
            assert!(std::ptr::eq(metric(m.id), m));
        }
    }

    #[test]
    #[should_panic(expected = "no metric \"nope\"")]
    fn an_unknown_metric_is_a_bug() {
        metric("nope");
    }

    /// Each metric reads its own field, with its format; the summary rows are the table's.
    #[test]
    fn metrics_read_the_evaluation() {
        let mut m =
            crate::experiment::fake_result(crate::quantizer::QuantizerKind::Vq, 1, 5.0, 8.0).eval;
        m.codes_used = 3;
        m.latents = 49;
        m.assigned.mutual_info = 2.0;
        m.coded = None;
        assert_eq!(metric("codes_used").of(&m), 3.0);
        assert_eq!(metric("l_vib_train").of(&m), 8.0);
        assert_eq!(metric("perplexity").of(&m), 5.0);
        assert!((metric("rate_iz_bits").of(&m) - 98.0 / std::f64::consts::LN_2).abs() < 1e-9);
        assert!(metric("coded_bits").of(&m).is_nan(), "not measured");
        assert!(
            (metric("uniform_excess").of(&m) - 0.25 * 49.0 * (m.assigned.kl - 2.0)).abs() < 1e-9
        );
        let rows = summary_rows(&m, "512");
        assert_eq!(
            rows[1],
            (
                "reconstruction MSE, training-time decode",
                "0.01000".to_string()
            )
        );
        assert!(
            rows.contains(&("codes used", "3 / 512".to_string())),
            "{rows:?}"
        );
        assert!(rows.contains(&("dead codes", "0".to_string())), "{rows:?}");
        assert!(
            !rows.iter().any(|(k, _)| k.starts_with("coded rate")),
            "{rows:?}"
        );
    }
}
