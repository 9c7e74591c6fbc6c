//! The tables of metrics over seeds, which the comparison's and the sweep's reports both read:
//! the mean and standard deviation over seeds of every quantity of [`METRICS`] ([`Stats`]), a
//! sweep's rows, a row a setting ([`SweepRow`], [`rows`]), `sweep.csv` ([`sweep_csv`]) and the
//! sweep's terminal table ([`summary_table`]).

use super::page::csv_bytes;
use crate::quantizer::QuantizerKind;
use crate::report::{columns, fmt_stat};
use crate::train::EvalMetrics;
pub use crate::train::eval_rows::{METRICS, Metric, metric};

/// The mean and sample standard deviation over `n` evaluations (seeds) of each of [`METRICS`],
/// in its order (NaN where an evaluation lacks the metric).
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// The evaluations (seeds) they are over.
    pub n: usize,
    /// `(mean, sd)` in the order of [`METRICS`].
    pub values: Vec<(f64, f64)>,
}

impl Stats {
    /// The statistics over `evals`, an evaluation a seed.
    pub fn of(evals: &[&EvalMetrics]) -> Stats {
        let values = METRICS
            .iter()
            .map(|m| super::mean_sd(&evals.iter().map(|e| m.of(e)).collect::<Vec<_>>()))
            .collect();
        Stats {
            n: evals.len(),
            values,
        }
    }

    /// The mean and standard deviation of the metric `id`, where every seed measured it.
    pub fn get(&self, id: &str) -> Option<(f64, f64)> {
        let i = METRICS.iter().position(|m| m.id == id)?;
        let v = self.values[i];
        v.0.is_finite().then_some(v)
    }

    /// The metric `id` as the tables write it ([`fmt_stat`]: `–` where not measured).
    pub fn cell(&self, id: &str) -> String {
        let i = METRICS.iter().position(|m| m.id == id);
        let v = i.map_or((f64::NAN, f64::NAN), |i| self.values[i]);
        fmt_stat(v, self.n, metric(id).format)
    }

    /// The CSV cells: mean and sd of every metric, as Rust writes an f64 (`NaN` where not
    /// measured).
    fn csv_cells(&self) -> impl Iterator<Item = String> + '_ {
        self.values
            .iter()
            .flat_map(|(m, s)| [m.to_string(), s.to_string()])
    }
}

/// A CSV file of `lead` columns and the mean and sd of every metric (`ID mean`, `ID sd`), a row
/// each of `rows` (its lead cells and its stats).
pub fn stats_csv<'a>(
    lead: &[&str],
    rows: impl IntoIterator<Item = (Vec<String>, &'a Stats)>,
) -> anyhow::Result<Vec<u8>> {
    let head: Vec<String> = lead
        .iter()
        .map(|s| s.to_string())
        .chain(
            METRICS
                .iter()
                .flat_map(|m| [format!("{} mean", m.id), format!("{} sd", m.id)]),
        )
        .collect();
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(mut cells, st)| {
            cells.extend(st.csv_cells());
            cells
        })
        .collect();
    csv_bytes(&head, &rows)
}

/// One row of `sweep.csv`: a setting, the seeds it was measured with, and the statistics over
/// them.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    pub setting: Setting,
    pub seeds: Vec<u64>,
    pub stats: Stats,
}

impl SweepRow {
    /// The mean and standard deviation of the metric `id`, where every seed measured it.
    pub fn get(&self, id: &str) -> Option<(f64, f64)> {
        self.stats.get(id)
    }
}

/// The options of a point but its seed (a row of `sweep.csv`, a point of the plots).
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub quantizer: QuantizerKind,
    pub k: usize,
    pub d: usize,
    pub beta: f64,
    pub rate_weight: f64,
    pub tau: f64,
    /// The quantizer's own options, where the sweep gives them.
    pub variant: Variant,
}

/// A quantizer's own options in a sweep (`--levels`, `--stages`, `--estimator` as lists): each
/// `None` is the quantizer's default and is not shown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Variant {
    /// fsq's levels.
    pub levels: Option<Vec<usize>>,
    /// rvq's stages.
    pub stages: Option<usize>,
    /// The estimator of vq, vq-ema and rvq.
    pub estimator: Option<crate::quantizer::Estimator>,
}

impl Variant {
    /// `levels=8x5x5x5 stages=2 estimator=rotation` (the options given), or empty.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.levels {
            parts.push(format!("levels={}", join_levels(l)));
        }
        if let Some(s) = self.stages {
            parts.push(format!("stages={s}"));
        }
        if let Some(e) = self.estimator {
            parts.push(format!("estimator={e}"));
        }
        parts.join(" ")
    }

    /// The part of a run directory's name: `-L8x5x5x5`, `-S2`, `-rotation` (empty for none, so
    /// the names of earlier sweeps stay).
    pub fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(l) = &self.levels {
            s += &format!("-L{}", join_levels(l));
        }
        if let Some(n) = self.stages {
            s += &format!("-S{n}");
        }
        if let Some(e) = self.estimator {
            s += &format!("-{e}");
        }
        s
    }
}

fn join_levels(l: &[usize]) -> String {
    l.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

impl Setting {
    /// The names of [`Setting::options`], the first columns of `sweep.csv` and the tables.
    pub const OPTION_NAMES: [&'static str; 7] = [
        "quantizer",
        "K",
        "D",
        "beta",
        "rate_weight",
        "tau",
        "variant",
    ];

    /// The options as (name, value) pairs, in the order of `sweep.csv`'s first columns.
    pub fn options(&self) -> [(&'static str, String); 7] {
        let n = Self::OPTION_NAMES;
        [
            (n[0], self.quantizer.name().to_string()),
            (n[1], self.k.to_string()),
            (n[2], self.d.to_string()),
            (n[3], self.beta.to_string()),
            (n[4], self.rate_weight.to_string()),
            (n[5], self.tau.to_string()),
            (n[6], self.variant.label()),
        ]
    }
}

/// The rows of the finished points (setting, seed, final evaluation), a row a setting, in grid
/// order.
pub fn rows<'a>(
    results: impl IntoIterator<Item = (&'a Setting, u64, &'a EvalMetrics)>,
) -> Vec<SweepRow> {
    let mut rows: Vec<(Setting, Vec<(u64, &EvalMetrics)>)> = Vec::new();
    for (setting, seed, eval) in results {
        match rows.iter_mut().find(|(s, _)| s == setting) {
            Some((_, v)) => v.push((seed, eval)),
            None => rows.push((setting.clone(), vec![(seed, eval)])),
        }
    }
    rows.into_iter()
        .map(|(setting, runs)| SweepRow {
            seeds: runs.iter().map(|r| r.0).collect(),
            stats: Stats::of(&runs.iter().map(|r| r.1).collect::<Vec<_>>()),
            setting,
        })
        .collect()
}

/// The options (places in [`Setting::options`], past the quantizer's) that take more than one
/// value among `rows`.
pub fn varying_options(rows: &[SweepRow]) -> Vec<usize> {
    (1..6)
        .filter(|&i| {
            let mut values = rows.iter().map(|r| r.setting.options()[i].1.clone());
            let first = values.next();
            values.any(|v| Some(v) != first)
        })
        .collect()
}

/// The metrics of the terminal's table of a sweep.
const TERMINAL_METRICS: [&str; 5] = ["rate_iz_bits", "nll", "perplexity", "codes_used", "l_vib"];

/// The terminal's table of a sweep: a line a setting (the quantizer and the options that vary),
/// its main quantities and, where the settings have different numbers of seeds, its number of
/// seeds (else a line below says how many); narrow enough for a terminal of 100 columns where
/// up to four options vary. `sweep.csv` and `sweep.html` have the rest.
pub fn summary_table(rows: &[SweepRow]) -> String {
    let varying = varying_options(rows);
    let seeds = rows.first().map_or(0, |r| r.seeds.len());
    let same_seeds = rows.iter().all(|r| r.seeds.len() == seeds);
    let mut head: Vec<String> = vec!["quantizer".into()];
    if let Some(r) = rows.first() {
        head.extend(
            varying
                .iter()
                .map(|&i| r.setting.options()[i].0.to_string()),
        );
    }
    if !same_seeds {
        head.push("seeds".into());
    }
    head.extend(
        TERMINAL_METRICS
            .iter()
            .map(|id| metric(id).name.to_string()),
    );
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let o = r.setting.options();
            let mut cells = vec![o[0].1.clone()];
            cells.extend(varying.iter().map(|&i| o[i].1.clone()));
            if !same_seeds {
                cells.push(r.seeds.len().to_string());
            }
            cells.extend(TERMINAL_METRICS.iter().map(|id| r.stats.cell(id)));
            cells
        })
        .collect();
    let mut t = columns(&head, &body);
    t.push_str(match (same_seeds, seeds) {
        (true, 1) => "(one seed a setting; ",
        (true, _) => "(mean ± sd over the seeds of a setting; ",
        (false, _) => "(mean ± sd over the seeds of a setting where several; ",
    });
    t.push_str("rates in bits, E -log q and E L_VIB in nats, per image)");
    t
}

/// `sweep.csv`: a row a setting, its options, its number of seeds, and the mean and sd of every
/// metric.
pub fn sweep_csv(rows: &[SweepRow]) -> anyhow::Result<Vec<u8>> {
    let mut lead = Setting::OPTION_NAMES.to_vec();
    lead.push("seeds");
    stats_csv(
        &lead,
        rows.iter().map(|r| {
            let mut cells: Vec<String> = r.setting.options().into_iter().map(|(_, v)| v).collect();
            cells.push(r.seeds.len().to_string());
            (cells, &r.stats)
        }),
    )
}

/// Settings for the tests: a row over two seeds with the given values of some metrics (the
/// others NaN).
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
            variant: Variant::default(),
            tau: 1.0,
        },
        seeds: vec![1, 2],
        stats: Stats {
            n: 2,
            values: METRICS
                .iter()
                .map(|m| {
                    values
                        .iter()
                        .find(|(id, _, _)| *id == m.id)
                        .map_or((f64::NAN, f64::NAN), |&(_, a, b)| (a, b))
                })
                .collect(),
        },
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
        let result = |p: &Point, ppl: f64| {
            super::super::fake_result(p.setting.quantizer, p.seed, ppl, 10.0).eval
        };
        let evals = [result(&p[0], 4.0), result(&p[1], 6.0), result(&p[2], 9.0)];
        let rows = rows(p.iter().zip(&evals).map(|(p, e)| (&p.setting, p.seed, e)));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].seeds, [1, 2]);
        assert_eq!(rows[0].get("perplexity"), Some((5.0, 2f64.sqrt())));
        assert_eq!(rows[1].get("perplexity"), Some((9.0, 0.0)));
        assert_eq!(rows[0].get("i_zy"), None, "not measured");
        let csv = sweep_csv(&rows).unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(&csv[..]);
        let head = reader.headers().unwrap().clone();
        assert_eq!(head.len(), 8 + 2 * METRICS.len());
        let cells = |r: &csv::StringRecord, a: usize, b: usize| -> Vec<String> {
            r.iter().skip(a).take(b - a).map(String::from).collect()
        };
        assert_eq!(
            cells(&head, 6, 10),
            ["variant", "seeds", "perplexity mean", "perplexity sd"]
        );
        let lines: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == head.len()));
        assert_eq!(
            cells(&lines[0], 0, 9),
            ["vq", "8", "64", "0.1", "1", "1", "", "2", "5"]
        );
        assert!(lines[0][9].starts_with("1.414"), "{:?}", lines[0]);
        let t = summary_table(&rows);
        assert_eq!(t.lines().count(), 5);
        assert!(
            t.starts_with("quantizer  beta  seeds  L I(I;Z) bits"),
            "{t}"
        );
        assert!(
            t.contains("\nvq          0.1      2  2.292 ± 0.414  1.000 ± 0  5.000 ± 1.414"),
            "{t}"
        );
        assert!(t.contains("\nvq         0.25      1          3.170      1.000          9.000           1      10.00\n"), "{t}");
    }

    /// The sweep of the README (3 quantizers by 3 codebook sizes, two seeds), values of the
    /// sizes it measured: the terminal's table fits 100 columns, with a column an option that
    /// varies.
    #[test]
    fn the_terminal_table_fits_100_columns() {
        use crate::quantizer::QuantizerKind::*;
        let values = [
            ("rate_iz_bits", 141.43, 16.31),
            ("nll", 726.41, 0.31),
            ("perplexity", 328.7, 64.4),
            ("codes_used", 478.0, 21.2),
            ("l_vib", 802.5, 0.1),
        ];
        let mut rows = Vec::new();
        for q in [Vq, VqEma, SoftEm] {
            for k in [16, 64, 512] {
                rows.push(fake_row(q, k, &values));
            }
        }
        let t = summary_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 9 + 1, "{t}");
        assert_eq!(
            lines[0],
            "quantizer    K  L I(I;Z) bits     E -log q    perplexity    codes used      E L_VIB"
        );
        assert_eq!(
            lines[2],
            "vq          16   141.4 ± 16.3  726.4 ± 0.3  328.7 ± 64.4  478.0 ± 21.2  802.5 ± 0.1"
        );
        assert!(lines[11].starts_with("(mean ± sd over the seeds of a setting; "));
        assert!(lines.iter().all(|l| l.chars().count() <= 100), "{t}");
        // Three options more vary: a column each, still within 100 columns.
        for (i, r) in rows.iter_mut().enumerate() {
            r.setting.beta = [0.25, 1.0][i % 2];
            r.setting.tau = [1.0, 0.5, 2.0][i % 3];
            r.setting.d = [64, 128][i % 2];
        }
        let t = summary_table(&rows);
        assert!(
            t.starts_with("quantizer    K    D  beta  tau  L I(I;Z) bits"),
            "{t}"
        );
        assert!(t.lines().all(|l| l.chars().count() <= 100), "{t}");
        // One setting: the quantizer alone names it.
        let t = summary_table(&rows[..1]);
        assert!(t.starts_with("quantizer  L I(I;Z) bits"), "{t}");
    }
}
