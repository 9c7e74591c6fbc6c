//! Statistics over seeds: mean and sample standard deviation, runs grouped by quantizer, the mean
//! training curves, and the seed's two claims decided from the measured means.

use std::collections::BTreeMap;
use std::fmt;

use super::{RunResult, quantizer_name};
use crate::records::Record;
use crate::train::EvalMetrics;

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

/// Mean and standard deviation over `runs` of one final metric.
pub fn stat(runs: &[&RunResult], f: fn(&EvalMetrics) -> f64) -> (f64, f64) {
    mean_sd(&runs.iter().map(|r| f(&r.eval)).collect::<Vec<_>>())
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

/// beta L times a rate per latent vector: the rate term of an objective, nats per image.
fn rate(m: &EvalMetrics, nats: f64) -> f64 {
    m.beta * m.latents as f64 * nats
}

/// The seed's distortion (the expectation) where measured, else the training-time one.
fn distortion(m: &EvalMetrics, soft: bool) -> f64 {
    match (&m.expected, soft) {
        (Some(e), false) => e.distortion.mean,
        (Some(e), true) => e.soft_distortion.mean,
        (None, _) => m.distortion,
    }
}

impl Claim {
    /// The claims, in the order the reports list them.
    pub const ALL: [Claim; 4] = [
        Claim::HigherPerplexity,
        Claim::LowerVib,
        Claim::LowerVibSoftPosterior,
        Claim::LowerVibMarginalPrior,
    ];

    /// The final metric the claim is about.
    pub fn metric(self) -> fn(&EvalMetrics) -> f64 {
        match self {
            Claim::HigherPerplexity => |m| m.perplexity,
            Claim::LowerVib => |m| distortion(m, false) + rate(m, m.assigned.kl),
            Claim::LowerVibSoftPosterior => |m| distortion(m, true) + rate(m, m.soft.kl),
            Claim::LowerVibMarginalPrior => {
                |m| distortion(m, false) + rate(m, m.assigned.mutual_info)
            }
        }
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
        let (e, v) = (stat(soft_em, self.metric()), stat(vq, self.metric()));
        let expected = soft_em.iter().chain(vq).all(|r| r.eval.expected.is_some());
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

/// Prints the verdict's line of the reports.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.holds { "HOLDS" } else { "DOES NOT HOLD" };
        let ((e, es), (v, vs)) = (self.soft_em, self.vq);
        match self.claim {
            Claim::HigherPerplexity => write!(
                f,
                "Claim 1, soft EM reaches a higher code perplexity than vq: {word} (soft-em {e:.2} ± {es:.2} vs vq {v:.2} ± {vs:.2}, mean ± sd over {} seeds)",
                self.seeds
            ),
            _ => {
                let what = match self.claim {
                    Claim::LowerVib => {
                        "Claim 2, soft EM reaches a lower L_VIB than vq, each under its own posterior"
                    }
                    Claim::LowerVibSoftPosterior => {
                        "Claim 2 under the same posterior softmax(-d^2/tau) for both models"
                    }
                    _ => {
                        "With the tightest prior r = p(z) (rate beta L I(I;Z)), soft EM's objective is lower than vq's"
                    }
                };
                let d = if self.expected {
                    "expected distortion"
                } else {
                    "training-time distortion"
                };
                write!(
                    f,
                    "{what}: {word} (soft-em {e:.2} ± {es:.2} vs vq {v:.2} ± {vs:.2} nats per image, {d})"
                )
            }
        }
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
        assert!(!l.expected, "no run measured the expectation");
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
                "Claim 1, soft EM reaches a higher code perplexity than vq: HOLDS (soft-em 60.00 ± 14.14 vs vq 6.00 ± 1.41, mean ± sd over 2 seeds)",
                "Claim 2, soft EM reaches a lower L_VIB than vq, each under its own posterior: HOLDS (soft-em 742.00 ± 2.83 vs vq 801.00 ± 1.41 nats per image, training-time distortion)",
                "Claim 2 under the same posterior softmax(-d^2/tau) for both models: HOLDS (soft-em 742.00 ± 2.83 vs vq 801.00 ± 1.41 nats per image, training-time distortion)",
                "With the tightest prior r = p(z) (rate beta L I(I;Z)), soft EM's objective is lower than vq's: DOES NOT HOLD (soft-em 2.02 ± 0.06 vs vq 1.44 ± 0.06 nats per image, training-time distortion)",
            ]
        );
        assert_eq!(v.to_string(), v.lines().join("\n"));
        let fails = verdicts(&[result(Vq, 1, 50.0, 700.0), result(SoftEm, 1, 5.0, 800.0)]);
        assert!(fails.claims()[1].to_string().starts_with(
            "Claim 2, soft EM reaches a lower L_VIB than vq, each under its own posterior: DOES NOT HOLD (soft-em 800.00 ± 0.00 vs vq 700.00 ± 0.00"
        ));
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
            stat(group(&g, "soft-em").unwrap(), |m| m.perplexity),
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
