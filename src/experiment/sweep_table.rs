//! The table of a sweep: the quantities measured at every point ([`METRICS`]), a row a setting
//! with their mean and standard deviation over seeds ([`rows`]), `sweep.csv`, and the
//! terminal's summary.

use super::sweep::{PointResult, Setting};

use crate::train::EvalMetrics;

/// A quantity of a sweep's row: its id (a column of `sweep.csv`: `ID mean`, `ID sd`), a label
/// for tables and axes, and how to read it from an evaluation (None where it was not measured).
pub struct Metric {
    pub id: &'static str,
    pub label: &'static str,
    pub f: fn(&EvalMetrics) -> Option<f64>,
}

/// A rate per latent vector in nats as bits per image: times L (latent vectors an image), over
/// ln 2.
fn bits(m: &EvalMetrics, nats: f64) -> f64 {
    nats * m.latents as f64 / std::f64::consts::LN_2
}

/// Every quantity of `sweep.csv`. Information quantities are under the model's own posterior
/// unless named `soft_` (softmax(-d^2/tau) for every model); `nll`, `mse_expected` and the
/// objectives use the seed's expected distortion ([`crate::distortion`]); `mse`, `psnr` and
/// `distortion_train` are the training-time decode (for soft EM, the decoder of the mean of m
/// sampled codewords).
pub const METRICS: &[Metric] = &[
    Metric {
        id: "perplexity",
        label: "perplexity exp(H(Z))",
        f: |m| Some(m.perplexity),
    },
    Metric {
        id: "codes_used",
        label: "codes used",
        f: |m| Some(m.codes_used as f64),
    },
    Metric {
        id: "h_z",
        label: "H(Z) (nats)",
        f: |m| Some(m.assigned.h_z),
    },
    Metric {
        id: "h_z_given_i",
        label: "H(Z|I) (nats)",
        f: |m| Some(m.assigned.h_z_given_i),
    },
    Metric {
        id: "i_iz",
        label: "I(I;Z) (nats)",
        f: |m| Some(m.assigned.mutual_info),
    },
    Metric {
        id: "cross_entropy",
        label: "H(p(Z|I), r) (nats)",
        f: |m| Some(m.assigned.cross_entropy),
    },
    Metric {
        id: "kl",
        label: "KL(p(Z|I) || r) (nats)",
        f: |m| Some(m.assigned.kl),
    },
    Metric {
        id: "rate_iz_bits",
        label: "L I(I;Z) / ln 2 (bits/image)",
        f: |m| Some(bits(m, m.assigned.mutual_info)),
    },
    Metric {
        id: "rate_hz_bits",
        label: "L H(Z) / ln 2 (bits/image)",
        f: |m| Some(bits(m, m.assigned.h_z)),
    },
    Metric {
        id: "rate_ce_bits",
        label: "L H(p(Z|I), r) / ln 2 (bits/image)",
        f: |m| Some(bits(m, m.assigned.cross_entropy)),
    },
    Metric {
        id: "rate_kl_bits",
        label: "L KL(p(Z|I) || r) / ln 2 (bits/image)",
        f: |m| Some(bits(m, m.assigned.kl)),
    },
    Metric {
        id: "h_y",
        label: "H(Y) (nats)",
        f: |m| m.relevance.as_ref().map(|r| r.h_y),
    },
    Metric {
        id: "i_zy",
        label: "I(Z;Y) (nats)",
        f: |m| m.relevance.as_ref().map(|r| r.i_zy),
    },
    Metric {
        id: "i_zy_mm",
        label: "I(Z;Y) Miller-Madow, argmax codes (nats)",
        f: |m| m.relevance.as_ref().map(|r| r.argmax_i_zy_miller_madow),
    },
    Metric {
        id: "soft_i_iz",
        label: "soft I(I;Z) (nats)",
        f: |m| Some(m.soft.mutual_info),
    },
    Metric {
        id: "soft_kl",
        label: "soft KL (nats)",
        f: |m| Some(m.soft.kl),
    },
    Metric {
        id: "soft_i_zy",
        label: "soft I(Z;Y) (nats)",
        f: |m| m.soft_relevance.as_ref().map(|r| r.i_zy),
    },
    Metric {
        id: "mse",
        label: "MSE (training-time decode)",
        f: |m| Some(m.mse),
    },
    Metric {
        id: "psnr",
        label: "PSNR dB (training-time decode)",
        f: |m| Some(m.psnr),
    },
    Metric {
        id: "distortion_train",
        label: "-log q(x|z) training-time decode (nats/image)",
        f: |m| Some(m.distortion),
    },
    Metric {
        id: "nll",
        label: "E -log q(x|z) (nats/image)",
        f: |m| m.expected.as_ref().map(|e| e.distortion.mean),
    },
    Metric {
        id: "nll_se",
        label: "standard error of E -log q(x|z)",
        f: |m| m.expected.as_ref().map(|e| e.distortion.se),
    },
    Metric {
        id: "mse_expected",
        label: "E MSE",
        f: |m| m.expected.as_ref().map(|e| e.mse.mean),
    },
    Metric {
        id: "soft_nll",
        label: "soft E -log q(x|z) (nats/image)",
        f: |m| m.expected.as_ref().map(|e| e.soft_distortion.mean),
    },
    Metric {
        id: "l_vdib",
        label: "L_VDIB (nats/image)",
        f: |m| m.expected.as_ref().map(|e| e.l_vdib),
    },
    Metric {
        id: "l_vib",
        label: "L_VIB (nats/image)",
        f: |m| m.expected.as_ref().map(|e| e.l_vib),
    },
    Metric {
        id: "l_marginal",
        label: "L with r = p(z) (nats/image)",
        f: |m| m.expected.as_ref().map(|e| e.l_marginal),
    },
    Metric {
        id: "soft_l_vib",
        label: "soft L_VIB (nats/image)",
        f: |m| m.expected.as_ref().map(|e| e.soft_l_vib),
    },
    Metric {
        id: "coded_bits",
        label: "coded bits/image",
        f: |m| m.coded.as_ref().map(|c| c.bits_per_image),
    },
    Metric {
        id: "h_z_mm",
        label: "H(Z) Miller-Madow (nats)",
        f: |m| Some(m.assigned.h_z_miller_madow),
    },
    Metric {
        id: "dead_codes",
        label: "dead codes",
        f: |m| Some(m.dead_codes as f64),
    },
    Metric {
        id: "h_z_given_y",
        label: "H(Z|Y) (nats)",
        f: |m| m.relevance.as_ref().map(|r| r.h_z_given_y),
    },
    Metric {
        id: "i_zy_argmax",
        label: "I(Z;Y) plug-in, argmax codes (nats)",
        f: |m| m.relevance.as_ref().map(|r| r.argmax_i_zy),
    },
    Metric {
        id: "soft_h_z",
        label: "soft H(Z) (nats)",
        f: |m| Some(m.soft.h_z),
    },
    Metric {
        id: "soft_perplexity",
        label: "soft perplexity",
        f: |m| Some(m.soft.perplexity),
    },
    Metric {
        id: "soft_h_z_given_i",
        label: "soft H(Z|I) (nats)",
        f: |m| Some(m.soft.h_z_given_i),
    },
    Metric {
        id: "soft_cross_entropy",
        label: "soft H(p(Z|I), r) (nats)",
        f: |m| Some(m.soft.cross_entropy),
    },
    Metric {
        id: "soft_nll_se",
        label: "standard error of soft E -log q(x|z)",
        f: |m| m.expected.as_ref().map(|e| e.soft_distortion.se),
    },
    Metric {
        id: "soft_mse_expected",
        label: "soft E MSE",
        f: |m| m.expected.as_ref().map(|e| e.soft_mse.mean),
    },
    Metric {
        id: "soft_l_vdib",
        label: "soft L_VDIB (nats/image)",
        f: |m| m.expected.as_ref().map(|e| e.soft_l_vdib),
    },
    Metric {
        id: "soft_l_marginal",
        label: "soft L with r = p(z) (nats/image)",
        f: |m| m.expected.as_ref().map(|e| e.soft_l_marginal),
    },
    Metric {
        id: "l_vib_train",
        label: "L_VIB, training-time decode (nats/image)",
        f: |m| Some(m.l_vib),
    },
    Metric {
        id: "l_vdib_train",
        label: "L_VDIB, training-time decode (nats/image)",
        f: |m| Some(m.l_vdib),
    },
    Metric {
        id: "coded_bits_per_pixel",
        label: "coded bits/pixel",
        f: |m| m.coded.as_ref().map(|c| c.bits_per_pixel),
    },
];

/// One row of `sweep.csv`: a setting, the seeds it was measured with, and the mean and sample
/// standard deviation over them of each of [`METRICS`] (NaN where a run lacks it).
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    pub setting: Setting,
    pub seeds: Vec<u64>,
    /// `(mean, sd)` in the order of [`METRICS`].
    pub values: Vec<(f64, f64)>,
}

impl SweepRow {
    /// The mean and standard deviation of the metric `id`, where every seed measured it.
    pub fn get(&self, id: &str) -> Option<(f64, f64)> {
        let i = METRICS.iter().position(|m| m.id == id)?;
        let v = self.values[i];
        v.0.is_finite().then_some(v)
    }
}

/// The rows of the finished points, a row a setting, in grid order.
pub fn rows(results: &[PointResult]) -> Vec<SweepRow> {
    let mut rows: Vec<(Setting, Vec<&PointResult>)> = Vec::new();
    for r in results {
        match rows.iter_mut().find(|(s, _)| *s == r.point.setting) {
            Some((_, v)) => v.push(r),
            None => rows.push((r.point.setting.clone(), vec![r])),
        }
    }
    rows.into_iter()
        .map(|(setting, runs)| SweepRow {
            seeds: runs.iter().map(|r| r.point.seed).collect(),
            values: METRICS
                .iter()
                .map(|m| {
                    let v: Vec<f64> = runs
                        .iter()
                        .map(|r| (m.f)(&r.run.eval).unwrap_or(f64::NAN))
                        .collect();
                    super::mean_sd(&v)
                })
                .collect(),
            setting,
        })
        .collect()
}

/// The terminal's table of a sweep: a line a setting with its main quantities.
pub fn summary_table(rows: &[SweepRow]) -> String {
    use std::fmt::Write as _;
    let cols = [
        ("rate_iz_bits", "I(I;Z) bits/img"),
        ("nll", "E -log q"),
        ("mse_expected", "E MSE"),
        ("perplexity", "perplexity"),
        ("codes_used", "codes"),
        ("i_zy", "I(Z;Y)"),
        ("l_vib", "L_VIB"),
    ];
    let mut t = String::from("| quantizer | K | D | beta | rate w | tau | seeds |");
    for (_, h) in cols {
        let _ = write!(t, " {h} |");
    }
    let _ = write!(t, "\n|{}", "---|".repeat(7 + cols.len()));
    for r in rows {
        let o = r.setting.options();
        let _ = write!(t, "\n|");
        for (_, v) in &o {
            let _ = write!(t, " {v} |");
        }
        let _ = write!(t, " {} |", r.seeds.len());
        for (id, _) in cols {
            match r.get(id) {
                Some((m, s)) if m.abs() >= 100.0 => {
                    let _ = write!(t, " {m:.1} ± {s:.1} |");
                }
                Some((m, s)) => {
                    let _ = write!(t, " {m:.4} ± {s:.4} |");
                }
                None => t.push_str(" – |"),
            }
        }
    }
    t
}

/// `sweep.csv` (RFC 4180: a field that holds a comma, a quote or a line break is quoted).
pub fn sweep_csv(rows: &[SweepRow]) -> String {
    use super::render::csv_field;
    use std::fmt::Write as _;
    let mut csv = String::from("quantizer,K,D,beta,rate_weight,tau,seeds");
    for m in METRICS {
        let (mean, sd) = (format!("{} mean", m.id), format!("{} sd", m.id));
        let _ = write!(csv, ",{},{}", csv_field(&mean), csv_field(&sd));
    }
    csv.push('\n');
    for r in rows {
        let opts: Vec<String> = r
            .setting
            .options()
            .into_iter()
            .map(|(_, v)| csv_field(&v).into_owned())
            .collect();
        let _ = write!(csv, "{},{}", opts.join(","), r.seeds.len());
        for (m, s) in &r.values {
            let _ = write!(csv, ",{m},{s}");
        }
        csv.push('\n');
    }
    csv
}

/// Settings for the tests: a row with the given values of some metrics (the others NaN).
#[cfg(test)]
pub(crate) fn fake_row(
    q: crate::quantizer::QuantizerKind,
    k: usize,
    values: &[(&str, f64, f64)],
) -> SweepRow {
    SweepRow {
        setting: Setting {
            quantizer: q,
            k,
            d: 64,
            beta: 0.25,
            rate_weight: 1.0,
            tau: 1.0,
        },
        seeds: vec![1, 2],
        values: METRICS
            .iter()
            .map(|m| {
                values
                    .iter()
                    .find(|(id, _, _)| *id == m.id)
                    .map_or((f64::NAN, f64::NAN), |&(_, a, b)| (a, b))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::sweep::Point;
    use crate::experiment::sweep::tests::spec;

    #[test]
    fn rows_are_settings_with_mean_and_sd_over_seeds() {
        let s = spec();
        let p = s.points();
        let result = |p: &Point, ppl: f64| PointResult {
            point: p.clone(),
            run: super::super::fake_result(p.setting.quantizer, p.seed, ppl, 10.0),
        };
        let results = [result(&p[0], 4.0), result(&p[1], 6.0), result(&p[2], 9.0)];
        let rows = rows(&results);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].seeds, [1, 2]);
        assert_eq!(rows[0].get("perplexity"), Some((5.0, 2f64.sqrt())));
        assert_eq!(rows[1].get("perplexity"), Some((9.0, 0.0)));
        assert_eq!(rows[0].get("nll"), None, "not measured");
        let csv = sweep_csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        let width = lines[0].split(',').count();
        assert_eq!(width, 7 + 2 * METRICS.len());
        assert!(lines.iter().all(|l| l.split(',').count() == width));
        assert!(
            lines[1].starts_with("vq,8,64,0.1,1,1,2,5,1.414"),
            "{}",
            lines[1]
        );
        let t = summary_table(&rows);
        assert_eq!(t.lines().count(), 4);
    }
}
