//! The seed's comparison on a slice of MNIST: soft EM and vq both train, the reports are written,
//! and report.html renders in headless Chromium with its table and every plot present and
//! non-empty. Chromium is Debian's `chromium` (`$CHROMIUM` overrides); without it the rendering
//! check is skipped, unless `VQIB_REQUIRE_CHROMIUM=1` (set by `.ci/run`).
//!
//! `vqib sweep` on the generated shapes with a tiny budget: `--list` gives runnable `vqib train`
//! commands whose runs the sweep then reuses, a run stopped part-way is resumed, `--shard I/N`
//! trains only its share, `--collect` reports whatever is finished, the whole grid ends in
//! `sweep.csv` and `sweep.html`, and the page renders in headless Chromium with every curve and
//! point of its plots.

use std::path::Path;

mod common;
use common::{chromium, dump_dom, expect_input_error, mnist_dir, run, state_step, text};
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

/// The grid: 2 quantizers x 2 codebook sizes, one seed: 4 points.
const GRID: &[&str] = &[
    "sweep",
    "--quantizers",
    "vq,soft-em",
    "--codebook-size",
    "8,16",
    "--seeds",
    "1",
    "--shapes-train",
    "64",
    "--shapes-test",
    "32",
    "--hidden",
    "8",
    "--code-dim",
    "4",
    "--batch-size",
    "32",
    "--epochs",
    "1",
    "--eval-samples",
    "2",
    "--no-progress",
];

fn sweep(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = GRID.to_vec();
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(extra);
    run(&args)
}

fn runs(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("runs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn finished(run: &Path) -> bool {
    run.join("eval.json").is_file()
}

/// `data-NAME="N"` of the element with `id` in `html`.
fn data_attr(html: &str, id: &str, name: &str) -> usize {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id}"));
    let tag = &html[at..at + html[at..].find('>').unwrap()];
    let v = tag
        .split(&format!("data-{name}=\""))
        .nth(1)
        .unwrap_or_else(|| panic!("{id} has no data-{name}: {tag}"));
    v[..v.find('"').unwrap()].parse().unwrap()
}

#[test]
fn list_shard_resume_collect_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sw");

    // Bad input first: exit 2 with what is wrong.
    expect_input_error(&sweep(&out, &["--shard", "2/2"]), &["--shard", "2/2"]);
    expect_input_error(&sweep(&out, &["--beta", "0.1,x"]), &["--beta", "\"x\""]);
    expect_input_error(
        &sweep(&out, &["--seed", "3"]),
        &["sweep does not take --seed"],
    );
    assert!(!out.exists(), "nothing is created for bad input");

    // --list: one runnable `vqib train` command a point.
    let o = sweep(&out, &["--list"]);
    assert!(o.status.success(), "{}", text(&o));
    let listed: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let names = [
        "vq-k8-d4-beta0.25-rw1-tau1-seed1",
        "vq-k16-d4-beta0.25-rw1-tau1-seed1",
        "soft-em-k8-d4-beta0.25-rw1-tau1-seed1",
        "soft-em-k16-d4-beta0.25-rw1-tau1-seed1",
    ];
    for (line, name) in listed.iter().zip(names) {
        assert!(line.starts_with("vqib train --shapes-train 64 "), "{line}");
        assert!(
            line.ends_with(&format!("--out {}", out.join("runs").join(name).display())),
            "{line}"
        );
        assert!(
            !line.contains("--quantizers") && !line.contains("--list"),
            "{line}"
        );
    }
    assert!(!out.exists(), "--list trains nothing");

    // The first listed command, run as a user (or a scheduler) would, stopped after one step.
    let words: Vec<&str> = listed[0].split(' ').skip(1).collect();
    let mut args = words.clone();
    args.extend(["--max-steps", "1"]);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let first = out.join("runs").join(names[0]);
    assert_eq!(state_step(&first), 1);
    assert!(!finished(&first));

    // Share 0 of 2 (points 0 and 2): resumes the stopped run, trains point 2, nothing else.
    let o = sweep(&out, &["--shard", "0/2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("share 0/2 finished"), "{}", text(&o));
    assert_eq!(runs(&out), [names[2], names[0]]);
    assert!(finished(&first) && finished(&out.join("runs").join(names[2])));
    assert_eq!(
        state_step(&first),
        2,
        "64 images in batches of 32, one epoch"
    );
    assert!(!out.join("sweep.csv").exists(), "a share writes no report");

    // --collect: the report of what is finished.
    let o = sweep(&out, &["--collect"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 of 4 points finished"), "{}", text(&o));
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("quantizer,K,D,beta,rate_weight,tau,seeds,perplexity mean,"));
    let html = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    assert!(html.contains("2 of 4 points finished"), "{html}");
    assert!(html.contains(names[1]), "the missing runs are listed");

    // The whole grid: the finished runs are reused (their eval.json untouched), the rest trained.
    let before = std::fs::read(first.join("eval.json")).unwrap();
    let o = sweep(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(first.join("eval.json")).unwrap(), before);
    assert!(names.iter().all(|n| finished(&out.join("runs").join(n))));
    assert!(text(&o).contains("4 of 4 points finished"), "{}", text(&o));
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for row in csv.lines().skip(1) {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{row}");
        // The expected distortion and I(Z;Y) were measured (shapes carry labels).
        for col in [
            "nll mean",
            "i_zy mean",
            "rate_iz_bits mean",
            "mse_expected mean",
        ] {
            let i = header.iter().position(|h| *h == col).unwrap();
            let v: f64 = cells[i].parse().unwrap();
            assert!(v.is_finite() && v > -1e-5, "{col} = {v} in {row}");
        }
    }

    // A grid whose shared settings changed does not silently reuse the old runs.
    let o = sweep(&out, &["--lr", "0.01", "--collect"]);
    expect_input_error(
        &o,
        &[
            names[0],
            "training.lr: 0.0002 in the run, 0.01 in this command",
        ],
    );

    // Every plot carries its counts; Chromium draws them.
    let html = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    let rd = [
        "rate_iz_bits",
        "rate_hz_bits",
        "rate_ce_bits",
        "rate_kl_bits",
    ]
    .iter()
    .flat_map(|x| ["mse_expected", "nll"].map(|y| format!("rd-{x}-{y}")));
    let plots: Vec<String> = rd
        .chain(["plane", "perplexity-k", "codes-k"].map(String::from))
        .collect();
    for id in &plots {
        assert_eq!(
            data_attr(&html, id, "curves"),
            2,
            "{id}: a curve per quantizer"
        );
        assert_eq!(
            data_attr(&html, id, "points"),
            4,
            "{id}: a point per setting"
        );
    }
    let Some(browser) = chromium() else {
        return;
    };
    let dom = dump_dom(&browser, &out.join("sweep.html"));
    assert!(
        dom.contains("data-ready=\"1\""),
        "the load handler did not run"
    );
    for id in &plots {
        let at = dom.find(&format!("id=\"{id}\"")).unwrap();
        let tag = &dom[at..at + dom[at..].find('>').unwrap()];
        let r = tag.split("data-rendered=\"").nth(1).expect("rendered");
        let r = &r[..r.find('"').unwrap()];
        let field = |name: &str| -> usize {
            r.split(' ')
                .find_map(|p| p.strip_prefix(&format!("{name}=")))
                .unwrap()
                .parse()
                .unwrap()
        };
        let (w, h) = r.split(' ').next().unwrap().split_once('x').unwrap();
        let (w, h): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
        assert!(w > 200 && h > 150, "{id} is {w}x{h}");
        let front = data_attr(&html, id, "front");
        assert_eq!(
            field("polylines"),
            2 + usize::from(front > 0),
            "{id}: {r}, front {front}"
        );
        assert_eq!(field("circles"), 4 + front, "{id}: {r}");
    }
}
