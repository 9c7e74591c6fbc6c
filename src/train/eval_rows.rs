//! An evaluation as the outputs show it: the metrics log's record ([`eval_record`]) and the
//! rows of the terminal tables ([`summary_rows`], [`info_rows`]).

use super::eval::EvalMetrics;
use crate::distortion::Estimate;
use crate::records::Record;

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

/// Summary rows of an evaluation.
pub fn summary_rows(m: &EvalMetrics, k: usize) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("test images", m.images.to_string()),
        ("reconstruction MSE", format!("{:.5}", m.mse)),
        ("PSNR (dB)", format!("{:.2}", m.psnr)),
        ("perplexity exp(H(Z))", format!("{:.2}", m.perplexity)),
        ("H(Z) (nats)", format!("{:.4}", m.entropy_nats)),
        ("codes used", format!("{} / {k}", m.codes_used)),
        ("dead codes", m.dead_codes.to_string()),
        ("codebook loss", format!("{:.5}", m.codebook_loss)),
        ("commitment loss", format!("{:.5}", m.commitment_loss)),
    ];
    let bits = |nats: f64| nats * m.latents as f64 / std::f64::consts::LN_2;
    rows.push((
        "L H(Z) / ln 2 (bits/image)",
        format!("{:.1}", bits(m.entropy_nats)),
    ));
    rows.push((
        "L H(p(Z|I), r) / ln 2 (bits/image)",
        format!("{:.1}", bits(m.assigned.cross_entropy)),
    ));
    if let Some(c) = &m.coded {
        rows.push(("coded bits/image", format!("{:.1}", c.bits_per_image)));
        rows.push(("coded bits/pixel", format!("{:.4}", c.bits_per_pixel)));
    }
    rows
}

/// Every information quantity of an evaluation, under the assigned and the soft posterior.
pub fn info_rows(m: &EvalMetrics, tau: f64) -> Vec<(String, String, String)> {
    let row = |name: &str, a: f64, s: f64| (name.to_string(), format!("{a:.4}"), format!("{s:.4}"));
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
        let est = |x: Estimate| format!("{:.4} ± {:.4}", x.mean, x.se);
        let est6 = |x: Estimate| format!("{:.6} ± {:.6}", x.mean, x.se);
        rows.push((
            format!("E -log q(x|z) per image ({} draws, ± s.e.)", e.samples),
            est(e.distortion),
            est(e.soft_distortion),
        ));
        rows.push(("E MSE (± s.e.)".into(), est6(e.mse), est6(e.soft_mse)));
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
