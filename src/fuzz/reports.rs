//! The reports read back from run directories: `eval.json` through the sweep's rows, `sweep.csv`
//! and `sweep.html`.

use super::harness::{Tally, probe};
use super::mutator::Mutator;
use crate::quantizer::QuantizerKind;

/// `eval.json`, which `compare` and `sweep --collect` read from every run: an error names the
/// file, and whatever is accepted (NaN, infinities, huge or negative values where numbers are
/// expected) goes through the sweep's rows, `sweep.csv` and `sweep.html` without a panic.
#[test]
fn fuzz_eval_json_and_the_sweep_report() {
    use crate::experiment::sweep::{Point, PointResult, Setting, rows, sweep_csv};
    use crate::experiment::sweep_render::{SweepPage, sweep_html};
    use crate::train::EvalMetrics;
    let d = tempfile::tempdir().unwrap();
    let run = crate::run::RunDir::new(d.path());
    let mut eval = crate::experiment::fake_result(QuantizerKind::SoftEm, 1, 30.0, 700.0).eval;
    let est = crate::distortion::Estimate {
        mean: 690.0,
        se: 0.2,
    };
    eval.expected = Some(crate::train::Expected {
        samples: 4,
        distortion: est,
        mse: est,
        soft_distortion: est,
        soft_mse: est,
        l_vdib: 710.0,
        l_vib: 700.0,
        soft_l_vdib: 710.0,
        soft_l_vib: 700.0,
        l_marginal: 695.0,
        soft_l_marginal: 695.0,
    });
    eval.relevance = Some(crate::info::Relevance {
        classes: 10,
        h_y: 2.3,
        h_y_miller_madow: 2.3,
        i_zy: 0.1,
        h_z_given_y: 3.0,
        argmax_i_zy: 0.1,
        argmax_i_zy_miller_madow: 0.09,
    });
    let seed = serde_json::to_string_pretty(&eval).unwrap();
    let point = |q| Point {
        setting: Setting {
            quantizer: q,
            k: 512,
            d: 64,
            beta: 0.25,
            rate_weight: 1.0,
            tau: 1.0,
            variant: Default::default(),
        },
        seed: 1,
    };
    let good = PointResult {
        point: point(QuantizerKind::Vq),
        run: crate::experiment::fake_result(QuantizerKind::Vq, 1, 5.0, 800.0),
    };
    // Writes `bytes` as eval.json, reads it as the second run of a sweep and renders the report.
    let read_and_render = |bytes: &[u8]| {
        std::fs::write(run.eval_json(), bytes).unwrap();
        probe(|| {
            let e: EvalMetrics = run.read_eval()?;
            let mut r = good.clone();
            r.point = point(QuantizerKind::SoftEm);
            r.run.eval = e;
            let both = [good.clone(), r];
            let rows = rows(
                both.iter()
                    .map(|r| (&r.point.setting, r.point.seed, &r.run.eval)),
            );
            let page = SweepPage {
                command: "vqib sweep",
                points: 2,
                finished: 2,
                missing: &[],
            };
            let _ = sweep_csv(&rows);
            sweep_html(&page, &rows)
                .map_err(|e| crate::error::InputError::config(e.to_string()))?;
            Ok::<(), crate::error::InputError>(())
        })
    };
    let mut m = Mutator::new(0xe7a1);
    let mut t = Tally::new("eval.json -> sweep report");
    for case in 0..400 {
        let (bytes, desc) = if case % 3 == 2 {
            m.bytes(seed.as_bytes(), &[])
        } else {
            m.json(&seed)
        };
        let pr = read_and_render(&bytes);
        let _ = t.check(pr, &desc, &bytes, &["eval.json"], false);
    }
    // Every number of the file, one at a time, at the extremes JSON can carry.
    /// Sets the `n`-th number (depth first) of `v` to `x`; counts the numbers it passes.
    fn set_nth(v: &mut serde_json::Value, n: &mut usize, x: f64) {
        match v {
            serde_json::Value::Number(_) => {
                if *n == 0 {
                    *v = serde_json::json!(x);
                }
                *n = n.wrapping_sub(1);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|y| set_nth(y, n, x)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|y| set_nth(y, n, x)),
            _ => {}
        }
    }
    let count = {
        let mut v: serde_json::Value = serde_json::from_str(&seed).unwrap();
        let mut n = usize::MAX;
        set_nth(&mut v, &mut n, 0.0);
        usize::MAX - n
    };
    for i in 0..count {
        for x in [1e308, -1e308, 0.0, 5e-324, -3.0] {
            let mut v: serde_json::Value = serde_json::from_str(&seed).unwrap();
            set_nth(&mut v, &mut i.clone(), x);
            let bytes = serde_json::to_vec(&v).unwrap();
            let pr = read_and_render(&bytes);
            let _ = t.check(
                pr,
                &format!("number {i} = {x}"),
                &bytes,
                &["eval.json"],
                false,
            );
        }
    }
    t.report();
    assert!(t.accepted > 0 && t.rejected > 0);
}
