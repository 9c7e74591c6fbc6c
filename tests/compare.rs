//! The seed's comparison on a slice of MNIST: soft EM and vq both train, the reports are written,
//! and report.html renders in headless Chromium with its table and every plot present and
//! non-empty. Chromium is Debian's `chromium` (`$CHROMIUM` overrides); without it the rendering
//! check is skipped, unless `VQIB_REQUIRE_CHROMIUM=1` (set by `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{chromium, dump_dom, mnist_dir};
use vqib::RunConfig;
use vqib::compare::{self, CompareSpec};
use vqib::data::DatasetKind;
use vqib::quantizer::QuantizerKind;
use vqib::train::TrainOptions;

/// `data-rendered="WxH elements=N img=WxH"` of the element with `id`.
fn rendered(dom: &str, id: &str) -> (u32, u32, usize, (u32, u32)) {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id}"));
    let tag_end = at + dom[at..].find('>').unwrap();
    let tag = &dom[at..tag_end];
    let r = tag
        .split("data-rendered=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("{id} was not rendered: {tag}"));
    let r = &r[..r.find('"').unwrap()];
    let parts: Vec<&str> = r.split(' ').collect();
    let wh = |s: &str| {
        let (w, h) = s.split_once('x').unwrap();
        (w.parse().unwrap_or(0), h.parse().unwrap_or(0))
    };
    let (w, h) = wh(parts[0]);
    let n = parts[1].trim_start_matches("elements=").parse().unwrap();
    let img = parts[2].trim_start_matches("img=");
    (w, h, n, if img == "none" { (0, 0) } else { wh(img) })
}

#[test]
fn comparison_on_mnist_writes_and_renders_the_report() {
    let Some(mnist) = mnist_dir() else { return };
    let mut base = RunConfig::default();
    base.data.dataset = DatasetKind::Mnist;
    base.data.data_dir = Some(mnist);
    base.data.train_limit = 4800;
    base.data.test_limit = 500;
    base.quantizer.codebook_size = 128;
    base.quantizer.code_dim = 16;
    base.model.hidden = Some(32);
    base.training.batch_size = 32;
    base.training.lr = 1e-3;
    base.training.epochs = 1;
    base.training.eval_every = 50;
    base.training.log_every = 50;
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("cmp");
    let spec = CompareSpec {
        base,
        quantizers: vec![QuantizerKind::Vq, QuantizerKind::SoftEm],
        seeds: vec![1, 2],
        out: out.clone(),
        command: "test".into(),
    };
    let (results, verdicts) = compare::run(&spec, &TrainOptions::default()).unwrap();
    assert_eq!(results.len(), 4);
    for r in &results {
        // Both quantizers learn: test MSE well below the pixel variance of MNIST (about 0.095);
        // on this short run soft EM lands between 0.03 and 0.051 depending on seed and sampling.
        assert!(
            r.eval.mse < 0.06,
            "{:?} seed {}: MSE {}",
            r.quantizer,
            r.seed,
            r.eval.mse
        );
        assert!(r.curve.len() >= 3, "curve has {} points", r.curve.len());
        // The identity I = H(Z) - H(Z|I) and KL = CE - H(Z|I) in what was reported.
        let a = &r.eval.assigned;
        assert!((a.mutual_info - (a.h_z - a.h_z_given_i)).abs() < 1e-9);
        assert!((a.kl - (a.cross_entropy - a.h_z_given_i)).abs() < 1e-9);
        if r.quantizer == QuantizerKind::Vq {
            assert_eq!(a.h_z_given_i, 0.0, "a hard quantizer has H(Z|I) = 0");
        } else {
            assert!(a.h_z_given_i > 0.0);
        }
    }
    assert_eq!(verdicts.claims().len(), 4, "{verdicts}");
    for v in verdicts.claims() {
        assert!(v.holds && v.seeds == 2, "{v}");
        assert!(v.soft_em.0.is_finite() && v.vq.0.is_finite(), "{v}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| vq |") && md.contains("| soft-em |") && md.contains("Claim 1"));
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(csv.starts_with("quantizer,seeds,perplexity mean,perplexity sd"));

    // Rerunning reuses the finished runs (nothing is retrained: same results).
    let (again, _) = compare::run(&spec, &TrainOptions::default()).unwrap();
    assert_eq!(again[0].eval, results[0].eval);

    let Some(browser) = chromium() else {
        return;
    };
    let dom = dump_dom(&browser, &out.join("report.html"));
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's load handler did not run"
    );
    let table = &dom[dom.find("id=\"summary\"").expect("summary table")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), 3, "header + 2 quantizers");
    assert!(table.contains("<td>vq</td>") && table.contains("<td>soft-em</td>"));
    for id in [
        "curve-perplexity",
        "curve-h-z-given-i",
        "curve-mutual-info",
        "curve-l-vib",
        "curve-recon",
        "hist-vq",
        "hist-soft-em",
    ] {
        let (w, h, n, _) = rendered(&dom, id);
        assert!(w > 100 && h > 100, "{id} is {w}x{h}");
        assert!(n > 20, "{id} draws only {n} elements");
    }
    for id in ["grid-vq", "grid-soft-em"] {
        let (w, h, _, (iw, ih)) = rendered(&dom, id);
        assert!(
            w > 100 && h > 50 && iw > 100 && ih > 50,
            "{id}: box {w}x{h}, image {iw}x{ih}"
        );
    }
}
