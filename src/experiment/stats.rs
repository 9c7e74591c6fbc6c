//! Statistics over seeds: mean and sample standard deviation, runs grouped by quantizer, the mean
//! training curves, and the seed's two claims decided from the measured means. A claim is decided
//! on a column of the report's table ([`Claim::metric`]): the objectives as the evaluation
//! computed them, never recomputed here.

use std::collections::BTreeMap;
use std::fmt;

use super::{RunResult, quantizer_name};
use crate::records::Record;
use crate::report::fmt_pair;
use crate::train::eval_rows::{Metric, metric};

/// Runs grouped by quantizer name, in the order of `--quantizers`.
pub type Groups<'a> = Vec<(&'static str, Vec<&'a RunResult>)>;

/// Mean and (sample) standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, sd)
}

/// Runs grouped by quantizer, in the order of `--quantizers`.
pub fn by_quantizer(results: &[RunResult]) -> Groups<'_> {
    let mut m: Groups<'_> = Vec::new();
    for r in results {
        let q = quantizer_name(r.quantizer);
        match m.iter_mut().find(|(name, _)| *name == q) {
            Some((_, v)) => v.push(r),
            None => m.push((q, vec![r])),
        }
    }
    m
}

/// The runs of quantizer `q` (by name) among the groups.
pub fn group<'g, 'a>(g: &'g Groups<'a>, q: &str) -> Option<&'g [&'a RunResult]> {
    g.iter()
        .find(|(name, _)| *name == q)
        .map(|(_, v)| v.as_slice())
}

/// Mean and standard deviation over `runs` of one final metric (NaN where a run lacks it).
pub fn stat(runs: &[&RunResult], m: &Metric) -> (f64, f64) {
    mean_sd(&runs.iter().map(|r| m.of(&r.eval)).collect::<Vec<_>>())
}

/// A line per quantizer: the mean over its seeds of `f` at each evaluated step (finite values
/// only).
pub fn mean_curves(
    g: &Groups<'_>,
    f: fn(&Record) -> Option<f64>,
) -> Vec<(&'static str, Vec<(f64, f64)>)> {
    let mut series = Vec::new();
    for (q, runs) in g {
        let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for r in runs {
            for rec in &r.curve {
                if let Some(v) = f(rec).filter(|v| v.is_finite()) {
                    at.entry(rec.step).or_default().push(v);
                }
            }
        }
        let pts = at
            .into_iter()
            .map(|(s, v)| (s as f64, v.iter().sum::<f64>() / v.len() as f64))
            .collect();
        series.push((*q, pts));
    }
    series
}

/// One of the seed's claims about soft EM against `vq`, or a reading of claim 2 under another
/// posterior or prior.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Claim 1: soft EM reaches a higher code perplexity than `vq`.
    HigherPerplexity,
    /// Claim 2: soft EM reaches a lower L_VIB (eq. 18) than `vq`, each under its own posterior,
    /// with the seed's distortion (the expectation over the posterior) where it was measured.
    LowerVib,
    /// Claim 2 with both models under the same soft posterior softmax(-d^2 / tau).
    LowerVibSoftPosterior,
    /// The objective with the tightest prior r = p(z) (eq. 14-17: the KL term is I(I;Z)), own
    /// posteriors: what is left of claim 2 without the uniform prior's constant.
    LowerVibMarginalPrior,
}

impl Claim {
    /// The claims, in the order the reports list them.
    pub const ALL: [Claim; 4] = [
        Claim::HigherPerplexity,
        Claim::LowerVib,
        Claim::LowerVibSoftPosterior,
        Claim::LowerVibMarginalPrior,
    ];

    /// The column of the report's table the claim is decided on: the objective with the seed's
    /// distortion (the expectation over the posterior) where every run measured it (`expected`),
    /// else with the training-time one; None for the objective with r = p(z), which the
    /// evaluation gives only with the expected distortion.
    pub fn metric(self, expected: bool) -> Option<&'static Metric> {
        let id = match (self, expected) {
            (Claim::HigherPerplexity, _) => "perplexity",
            (Claim::LowerVib, true) => "l_vib",
            (Claim::LowerVib, false) => "l_vib_train",
            (Claim::LowerVibSoftPosterior, true) => "soft_l_vib",
            (Claim::LowerVibSoftPosterior, false) => "soft_l_vib_train",
            (Claim::LowerVibMarginalPrior, true) => "l_marginal",
            (Claim::LowerVibMarginalPrior, false) => return None,
        };
        Some(metric(id))
    }

    /// Whether the claim holds for these means of soft EM and `vq` (false where either is NaN).
    pub fn holds(self, soft_em: f64, vq: f64) -> bool {
        match self {
            Claim::HigherPerplexity => soft_em > vq,
            _ => soft_em < vq,
        }
    }

    /// Decides the claim over the runs of soft EM and of `vq`.
    pub fn decide(self, soft_em: &[&RunResult], vq: &[&RunResult]) -> Verdict {
        let expected = soft_em.iter().chain(vq).all(|r| r.eval.expected.is_some());
        let column = self.metric(expected);
        let (e, v) = match column {
            Some(m) => (stat(soft_em, m), stat(vq, m)),
            None => ((f64::NAN, f64::NAN), (f64::NAN, f64::NAN)),
        };
        Verdict {
            claim: self,
            holds: self.holds(e.0, v.0),
            soft_em: e,
            vq: v,
            seeds: soft_em.len(),
            expected,
        }
    }
}

/// A claim decided from the measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    pub claim: Claim,
    /// Whether the mean over seeds of soft EM beats that of `vq` as the claim says.
    pub holds: bool,
    /// Mean and standard deviation over seeds of soft EM's final metric.
    pub soft_em: (f64, f64),
    /// Mean and standard deviation over seeds of `vq`'s final metric.
    pub vq: (f64, f64),
    /// How many seeds (soft EM's runs) the means are over.
    pub seeds: usize,
    /// Whether the distortion is the seed's expectation (every run measured it), not the
    /// training-time decode.
    pub expected: bool,
}

impl Verdict {
    /// The short name of the column the claim was decided on ([`Claim::metric`]); None where
    /// there is none.
    pub fn column(&self) -> Option<&'static str> {
        self.claim.metric(self.expected).map(|m| m.name)
    }
}

/// Prints the verdict's line of the reports.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.claim {
            Claim::HigherPerplexity => "Claim 1, soft EM reaches a higher code perplexity than vq",
            Claim::LowerVib => {
                "Claim 2, soft EM reaches a lower L_VIB than vq, each under its own posterior"
            }
            Claim::LowerVibSoftPosterior => {
                "Claim 2 under the same posterior softmax(-d^2/tau) for both models"
            }
            Claim::LowerVibMarginalPrior => {
                "With the tightest prior r = p(z) (rate beta L I(I;Z)), soft EM's objective is lower than vq's"
            }
        };
        let Some(column) = self.column() else {
            return write!(
                f,
                "{what}: NOT MEASURED (needs the expected distortion: --eval-samples above 0)"
            );
        };
        let word = if self.holds { "HOLDS" } else { "DOES NOT HOLD" };
        let (e, v) = fmt_pair(self.soft_em, self.vq, self.seeds);
        let unit = match self.claim {
            Claim::HigherPerplexity => "",
            _ => " nats per image",
        };
        let seeds = match self.seeds {
            1 => "1 seed".to_string(),
            n => format!("mean ± sd over {n} seeds"),
        };
        write!(
            f,
            "{what}: {word} ({column}: soft-em {e} vs vq {v}{unit}, {seeds})"
        )
    }
}

/// The verdicts of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdicts {
    /// Every claim, in the order of [`Claim::ALL`].
    Evaluated([Verdict; 4]),
    /// Not evaluated: the comparison lacks `vq` or `soft-em`.
    NotEvaluated,
}

impl Verdicts {
    /// What the reports say when the verdicts were not evaluated.
    pub const NOT_EVALUATED: &'static str =
        "verdicts need both vq and soft-em among --quantizers; not evaluated";

    /// The decided claims; none where not evaluated.
    pub fn claims(&self) -> &[Verdict] {
        match self {
            Verdicts::Evaluated(v) => v,
            Verdicts::NotEvaluated => &[],
        }
    }

    /// The verdict on `claim`, where evaluated.
    pub fn get(&self, claim: Claim) -> Option<&Verdict> {
        self.claims().iter().find(|v| v.claim == claim)
    }

    /// The report's lines: one a claim, or the one saying that nothing was evaluated.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Verdicts::Evaluated(v) => v.iter().map(|v| v.to_string()).collect(),
            Verdicts::NotEvaluated => vec![Self::NOT_EVALUATED.to_string()],
        }
    }
}

/// The report's lines, one a line.
impl fmt::Display for Verdicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

/// The two claims of the seed, each decided from the measured means.
pub fn verdicts(results: &[RunResult]) -> Verdicts {
    let g = by_quantizer(results);
    let (Some(vq), Some(em)) = (group(&g, "vq"), group(&g, "soft-em")) else {
        return Verdicts::NotEvaluated;
    };
    Verdicts::Evaluated(Claim::ALL.map(|c| c.decide(em, vq)))
}

#[cfg(test)]
mod tests {
    use super::super::fake_result as result;
    use super::*;
    use crate::quantizer::QuantizerKind::*;

    #[test]
    fn verdicts_follow_the_measurements() {
        let holds = [
            result(Vq, 1, 5.0, 800.0),
            result(Vq, 2, 7.0, 802.0),
            result(SoftEm, 1, 50.0, 740.0),
            result(SoftEm, 2, 70.0, 744.0),
        ];
        let v = verdicts(&holds);
        let Verdicts::Evaluated([p, l, soft, marginal]) = v else {
            panic!("not evaluated: {v:?}");
        };
        assert_eq!(
            (p.claim, l.claim),
            (Claim::HigherPerplexity, Claim::LowerVib)
        );
        assert!(p.holds && l.holds, "{v:?}");
        assert_eq!((p.seeds, l.seeds), (2, 2));
        assert_eq!(p.soft_em.0, 60.0);
        assert!((p.soft_em.1 - 200f64.sqrt()).abs() < 1e-12);
        assert_eq!(p.vq.0, 6.0);
        assert!((p.vq.1 - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!((l.soft_em.0, l.vq.0), (742.0, 801.0));
        assert_eq!(v.get(Claim::LowerVib), Some(&l));
        assert!(l.expected && l.column() == Some("E L_VIB"), "{l:?}");
        // The same rates under the soft posterior; with r = p(z) the rate is beta L I(I;Z) =
        // ln(perplexity) / 4 here, which the higher perplexity of soft EM raises.
        assert!(soft.holds && soft.soft_em.0 == 742.0);
        assert!(!marginal.holds, "{marginal:?}");
        assert!(
            (marginal.soft_em.0 - (1.0 + 0.25 * 0.5 * (50f64.ln() + 70f64.ln()))).abs() < 1e-12
        );

        // Soft EM with the lower perplexity and the higher L_VIB: both claims fail.
        let fails = [result(Vq, 1, 50.0, 700.0), result(SoftEm, 1, 5.0, 800.0)];
        let v = verdicts(&fails);
        assert_eq!(v.claims().len(), 4);
        assert!(v.claims()[..3].iter().all(|c| !c.holds), "{v:?}");
        // Its lower perplexity makes soft EM's I(I;Z) rate, under r = p(z), the smaller one.
        assert!(v.claims()[3].holds, "{v:?}");
        assert_eq!(v.claims()[0].seeds, 1);

        // Mixed: the perplexity claim holds while the L_VIB claim does not.
        let mixed = [result(Vq, 1, 5.0, 700.0), result(SoftEm, 1, 50.0, 800.0)];
        let v = verdicts(&mixed);
        assert_eq!(v.get(Claim::HigherPerplexity).map(|c| c.holds), Some(true));
        assert_eq!(v.get(Claim::LowerVib).map(|c| c.holds), Some(false));

        // The verdicts read the table's columns, not a sum of their own: the objectives as the
        // evaluation wrote them. Without the expected distortion, those of the training-time
        // decode; the objective with r = p(z) has none, and is not decided.
        let mut odd = holds.clone();
        odd[2].eval.expected.as_mut().unwrap().l_vib = 900.0;
        let v = verdicts(&odd);
        assert_eq!(v.get(Claim::LowerVib).unwrap().soft_em.0, 822.0);
        assert!(!v.get(Claim::LowerVib).unwrap().holds);
        for r in &mut odd {
            r.eval.expected = None;
            r.eval.l_vib += 1.0;
        }
        let v = verdicts(&odd);
        let l = v.get(Claim::LowerVib).unwrap();
        assert_eq!((l.soft_em.0, l.vq.0, l.expected), (743.0, 802.0, false));
        assert_eq!(l.column(), Some("L_VIB"));
        let m = v.get(Claim::LowerVibMarginalPrior).unwrap();
        assert!(
            !m.holds && m.column().is_none() && m.soft_em.0.is_nan(),
            "{m:?}"
        );
        assert!(
            m.to_string().ends_with(
                ": NOT MEASURED (needs the expected distortion: --eval-samples above 0)"
            ),
            "{m}"
        );

        // Without both quantizers there is nothing to decide.
        let v = verdicts(&[result(VqEma, 1, 5.0, 800.0), result(Vq, 1, 5.0, 800.0)]);
        assert_eq!(v, Verdicts::NotEvaluated);
        assert!(v.claims().is_empty() && v.get(Claim::HigherPerplexity).is_none());
    }

    #[test]
    fn verdicts_print_the_report_lines() {
        let v = verdicts(&[
            result(Vq, 1, 5.0, 800.0),
            result(Vq, 2, 7.0, 802.0),
            result(SoftEm, 1, 50.0, 740.0),
            result(SoftEm, 2, 70.0, 744.0),
        ]);
        assert_eq!(
            v.lines(),
            [
                "Claim 1, soft EM reaches a higher code perplexity than vq: HOLDS (perplexity: soft-em 60.00 ± 14.14 vs vq 6.000 ± 1.414, mean ± sd over 2 seeds)",
                "Claim 2, soft EM reaches a lower L_VIB than vq, each under its own posterior: HOLDS (E L_VIB: soft-em 742.0 ± 2.8 vs vq 801.0 ± 1.4 nats per image, mean ± sd over 2 seeds)",
                "Claim 2 under the same posterior softmax(-d^2/tau) for both models: HOLDS (soft E L_VIB: soft-em 742.0 ± 2.8 vs vq 801.0 ± 1.4 nats per image, mean ± sd over 2 seeds)",
                "With the tightest prior r = p(z) (rate beta L I(I;Z)), soft EM's objective is lower than vq's: DOES NOT HOLD (E L(r=p(z)): soft-em 2.020 ± 0.059 vs vq 1.444 ± 0.059 nats per image, mean ± sd over 2 seeds)",
            ]
        );
        assert_eq!(v.to_string(), v.lines().join("\n"));
        // One seed: the means alone, never "± 0".
        let fails = verdicts(&[result(Vq, 1, 50.0, 700.0), result(SoftEm, 1, 5.0, 800.0)]);
        assert_eq!(
            fails.claims()[1].to_string(),
            "Claim 2, soft EM reaches a lower L_VIB than vq, each under its own posterior: DOES NOT HOLD (E L_VIB: soft-em 800.0 vs vq 700.0 nats per image, 1 seed)"
        );
        assert_eq!(
            Verdicts::NotEvaluated.to_string(),
            "verdicts need both vq and soft-em among --quantizers; not evaluated"
        );
    }

    #[test]
    fn groups_keep_the_order_of_the_runs() {
        let runs = [
            result(SoftEm, 1, 1.0, 1.0),
            result(Vq, 1, 2.0, 1.0),
            result(SoftEm, 2, 3.0, 1.0),
        ];
        let g = by_quantizer(&runs);
        let names: Vec<_> = g.iter().map(|(q, v)| (*q, v.len())).collect();
        assert_eq!(names, [("soft-em", 2), ("vq", 1)]);
        assert_eq!(group(&g, "soft-em").unwrap()[1].seed, 2);
        assert!(group(&g, "vq-ema").is_none());
        assert_eq!(
            stat(group(&g, "soft-em").unwrap(), metric("perplexity")),
            (2.0, 2f64.sqrt())
        );
    }

    #[test]
    fn curves_are_means_over_seeds_at_each_step() {
        let mut runs = [
            result(Vq, 1, 1.0, 1.0),
            result(Vq, 2, 1.0, 1.0),
            result(SoftEm, 1, 1.0, 1.0),
        ];
        for (i, r) in runs.iter_mut().enumerate() {
            r.curve = (1..=3)
                .map(|s| Record {
                    kind: "eval".into(),
                    step: s * 10,
                    perplexity: Some(s as f64 + i as f64),
                    // The first run's first point is not finite: the mean is over the other seed.
                    recon_mse: Some(if i + s as usize == 1 {
                        f64::NAN
                    } else {
                        1.0 + i as f64
                    }),
                    ..Default::default()
                })
                .collect();
        }
        let g = by_quantizer(&runs);
        let c = mean_curves(&g, |r| r.perplexity);
        assert_eq!(c[0], ("vq", vec![(10.0, 1.5), (20.0, 2.5), (30.0, 3.5)]));
        assert_eq!(
            c[1],
            ("soft-em", vec![(10.0, 3.0), (20.0, 4.0), (30.0, 5.0)])
        );
        let c = mean_curves(&g, |r| r.recon_mse);
        assert_eq!(c[0].1, [(10.0, 2.0), (20.0, 1.5), (30.0, 1.5)]);
        // Nothing measured: no points.
        assert!(
            mean_curves(&g, |r| r.l_vib)
                .iter()
                .all(|(_, p)| p.is_empty())
        );
    }

    #[test]
    fn mean_and_sample_sd() {
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[7.0]), (7.0, 0.0));
        assert!(mean_sd(&[]).0.is_nan());
    }
}
