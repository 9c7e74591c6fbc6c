//! The seed's comparison on a slice of MNIST, and with one seed on the generated shapes: the runs
//! train, the reports are written (`summary.csv` read back by the `csv` crate and by python3's
//! `csv` module, every row as wide as the header; `report.md` without a zero sd or a negative
//! zero; the terminal's summary within 100 columns; each run's reconstruction grid embedded), and
//! report.html renders in headless Chromium with its tables and every plot present and non-empty,
//! the code usage on a log count axis. Chromium is Debian's `chromium` (`$CHROMIUM` overrides);
//! without it the rendering check is skipped, unless `VQIB_REQUIRE_CHROMIUM=1` (set by `.ci/run`).
//!
//! `vqib sweep` on the generated shapes with a tiny budget: `--list` gives runnable `vqib train`
//! commands whose runs the sweep then reuses, a run stopped part-way is resumed, `--shard I/N`
//! trains only its share, `--collect` reports whatever is finished, the whole grid ends in
//! `sweep.csv` and `sweep.html`, and the page renders in headless Chromium with every curve and
//! point of its plots.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

/// The rows of the CSV file `path` (the header first) as the `csv` crate reads them, strictly
/// (not flexible: a row of another width than the header's is an error), each checked to have
/// the header's width; where python3 is on the PATH, its `csv` module must read the same widths
/// (a notice where it is missing).
fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let body = std::fs::read_to_string(path).unwrap();
    let rows: Vec<Vec<String>> = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(body.as_bytes())
        .records()
        .map(|r| {
            r.unwrap_or_else(|e| panic!("{} is not CSV: {e}\n{body}", path.display()))
                .iter()
                .map(String::from)
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "{} is empty", path.display());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row.len(),
            rows[0].len(),
            "{} row {i} has {} fields, the header {}: {row:?}\n{body}",
            path.display(),
            row.len(),
            rows[0].len()
        );
    }
    let script = "import csv, sys\n\
                  with open(sys.argv[1], newline='') as f:\n    \
                  print(' '.join(str(len(r)) for r in csv.reader(f, strict=True)))";
    let python = std::process::Command::new("python3")
        .args(["-c", "import csv"])
        .output();
    if !python.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipping the python3 csv check of {}: python3 cannot run ({})",
            path.display(),
            python.map_or_else(|e| e.to_string(), |o| text(&o))
        );
        return rows;
    }
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "python3 csv: {}", text(&o));
    let widths: Vec<usize> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let ours: Vec<usize> = rows.iter().map(Vec::len).collect();
    assert_eq!(
        widths,
        ours,
        "python3's csv module reads {}",
        path.display()
    );
    rows
}

/// The column `name` of CSV `rows` (header first) as numbers, a row each.
fn column(rows: &[Vec<String>], name: &str) -> Vec<f64> {
    let i = rows[0]
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name:?} in {:?}", rows[0]));
    rows[1..]
        .iter()
        .map(|r| {
            r[i].parse()
                .unwrap_or_else(|_| panic!("{name} = {:?}", r[i]))
        })
        .collect()
}

/// Every file under `run` but `.lock` with its modification time, and the metrics log's length:
/// what a reused run must leave as it was.
fn untouched(run: &Path) -> (Vec<(PathBuf, SystemTime)>, usize) {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, SystemTime)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                walk(&e.path(), out);
            } else if e.file_name() != ".lock" {
                out.push((e.path(), meta.modified().unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(run, &mut files);
    files.sort();
    let lines = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    (files, lines)
}

/// H(p) in nats of the distribution `counts` / sum.
fn entropy_of_counts(counts: &[u64]) -> f64 {
    let n: u64 = counts.iter().sum();
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.ln()
        })
        .sum()
}

#[test]
fn comparison_on_mnist_writes_and_renders_the_report() {
    let Some(mnist) = mnist_dir() else { return };
    let mut base = RunConfig::default();
    base.data.dataset = DatasetKind::Mnist;
    base.data.data_dir = Some(mnist);
    base.data.train_limit = 4800;
    base.data.test_limit = 500;
    base.quantizer.codebook_size = Some(128);
    base.quantizer.code_dim = Some(16);
    base.model.hidden = Some(32);
    base.training.batch_size = Some(32);
    base.training.lr = Some(1e-3);
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
        // The information quantities against what they must be whatever the estimator: bounds,
        // the closed forms of a uniform prior (r = 1/K: H(p, r) = ln K for every posterior, and
        // KL - I(I;Z) = KL(p(z) || r) = ln K - H(Z)), and for vq the histogram of eval.json.
        let (a, what) = (
            &r.eval.assigned,
            format!("{:?} seed {}", r.quantizer, r.seed),
        );
        let ln_k = 128f64.ln();
        let close = |x: f64, y: f64, name: &str| {
            assert!((x - y).abs() <= 1e-5, "{what}: {name} {x} vs {y}");
        };
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(r.dir.join("eval.json")).unwrap())
                .unwrap();
        let histogram: Vec<u64> = serde_json::from_value(file["histogram"].clone()).unwrap();
        assert_eq!(histogram.len(), 128, "{what}");
        assert_eq!(histogram, r.eval.histogram, "{what}: eval.json");
        // 500 test images of 7x7 latent vectors, each counted once.
        assert_eq!(histogram.iter().sum::<u64>(), 500 * 49, "{what}");
        assert_eq!(a.n, 500 * 49, "{what}");
        let h_z = file["entropy_nats"].as_f64().unwrap();
        close(h_z, a.h_z, "eval.json's entropy_nats");
        close(
            file["perplexity"].as_f64().unwrap(),
            h_z.exp(),
            "perplexity = exp(H(Z))",
        );
        assert!(h_z > 0.0 && h_z <= ln_k + 1e-9, "{what}: H(Z) = {h_z}");
        assert!(
            a.h_z_given_i >= 0.0 && a.h_z_given_i <= ln_k + 1e-9,
            "{what}: H(Z|I) = {}",
            a.h_z_given_i
        );
        assert!(
            a.mutual_info >= -1e-9 && a.mutual_info <= a.h_z.min(ln_k) + 1e-9,
            "{what}: I(I;Z) = {} outside [0, min(H(Z) = {}, ln K)]",
            a.mutual_info,
            a.h_z
        );
        close(
            a.cross_entropy,
            ln_k,
            "H(p(Z|I), r) under the uniform prior",
        );
        assert!(
            a.kl >= a.mutual_info - 1e-9,
            "{what}: KL {} < I {}",
            a.kl,
            a.mutual_info
        );
        close(
            a.kl - a.mutual_info,
            ln_k - a.h_z,
            "KL - I(I;Z) = KL(p(z) || r)",
        );
        if r.quantizer == QuantizerKind::Vq {
            // One-hot posteriors: H(Z|I) = 0, H(Z) is the histogram's, I(I;Z) = H(Z).
            assert_eq!(a.h_z_given_i, 0.0, "a hard quantizer has H(Z|I) = 0");
            close(
                a.h_z,
                entropy_of_counts(&histogram),
                "H(Z) of the histogram",
            );
            close(a.mutual_info, a.h_z, "I(I;Z) of one-hot posteriors");
            close(a.kl, ln_k, "KL(one-hot || uniform)");
            let used = histogram.iter().filter(|&&c| c > 0).count();
            assert_eq!(r.eval.codes_used, used, "{what}");
        } else {
            assert!(a.h_z_given_i > 0.0, "{what}: soft EM spreads its posterior");
            assert!(a.mutual_info < a.h_z, "{what}");
        }
    }
    assert_eq!(verdicts.claims().len(), 4, "{verdicts}");
    for v in verdicts.claims() {
        assert!(v.holds && v.seeds == 2, "{v}");
        assert!(v.soft_em.0.is_finite() && v.vq.0.is_finite(), "{v}");
    }
    check_reports(&out, &results, &verdicts);
    let rows = read_csv(&out.join("summary.csv"));
    assert_eq!(column(&rows, "seeds"), [2.0, 2.0]);

    // Rerunning reuses the finished runs: nothing is retrained or re-evaluated (no file of a run
    // rewritten, no record added), and the results are the same.
    let before: Vec<_> = results.iter().map(|r| untouched(&r.dir)).collect();
    let (again, _) = compare::run(&spec, &TrainOptions::default()).unwrap();
    for (r, b) in results.iter().zip(&before) {
        assert_eq!(&untouched(&r.dir), b, "{} was rewritten", r.dir.display());
    }
    assert_eq!(again[0].eval, results[0].eval);

    let Some(dom) = rendered_report(&out, &["vq", "soft-em"]) else {
        return;
    };
    for id in [
        "curve-perplexity",
        "curve-h-z-given-i",
        "curve-mutual-info",
        "curve-l-vib",
        "curve-recon",
    ] {
        let (w, h, n, _) = rendered(&dom, id);
        assert!(w > 100 && h > 100, "{id} is {w}x{h}");
        assert!(n > 20, "{id} draws only {n} elements");
    }
}

/// What every comparison's reports must be: `report.md` (a line a quantizer in each of its three
/// tables (key, family, all metrics), the verdicts, with one seed no "±" at all, and nowhere a negative zero),
/// `summary.csv` (valid CSV of constant width, a row a quantizer, the means those of the runs),
/// the terminal's summary (every line within 100 columns, every verdict in it), and a
/// reconstruction grid in every run, drawn where it finished, which `report.html` embeds.
fn check_reports(out: &Path, results: &[compare::RunResult], verdicts: &compare::Verdicts) {
    let mut quantizers: Vec<QuantizerKind> = results.iter().map(|r| r.quantizer).collect();
    quantizers.dedup();
    let seeds = results.len() / quantizers.len();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for q in &quantizers {
        let row = format!("\n| {} |", q.name());
        assert_eq!(
            md.matches(&row).count(),
            3,
            "{row} in the three tables of {md}"
        );
    }
    assert!(md.contains("\n- Claim 1, "), "{md}");
    assert!(!md.contains("-0.0") && !md.contains(" -0 "), "{md}");
    if seeds == 1 {
        assert!(!md.contains('±'), "one seed, no sd: {md}");
    }

    // summary.csv: a header and a row a quantizer, every row as wide as the header.
    let rows = read_csv(&out.join("summary.csv"));
    assert_eq!(rows.len(), 1 + quantizers.len(), "{rows:?}");
    assert_eq!(
        rows[0][..4],
        ["quantizer", "seeds", "perplexity mean", "perplexity sd"]
    );
    for name in [
        "rate_ce_bits mean",
        "rate_ce_bits sd",
        "l_marginal mean",
        "uniform_excess sd",
    ] {
        assert!(rows[0].iter().any(|h| h == name), "{name} in {:?}", rows[0]);
    }
    for (row, q) in quantizers.iter().enumerate() {
        assert_eq!(rows[row + 1][0], q.name());
        let of_q: Vec<f64> = results
            .iter()
            .filter(|r| r.quantizer == *q)
            .map(|r| r.eval.perplexity)
            .collect();
        let mean = of_q.iter().sum::<f64>() / of_q.len() as f64;
        let got = column(&rows, "perplexity mean")[row];
        assert!((got - mean).abs() <= 1e-9 * mean, "{q:?}: {got} vs {mean}");
    }

    let summary = compare::terminal_summary(results, verdicts, out);
    for line in summary.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} characters: {line}",
            line.chars().count()
        );
    }
    let words = summary.split_whitespace().collect::<Vec<_>>().join(" ");
    for v in verdicts.lines() {
        assert!(words.contains(&v), "{v} in {summary}");
    }

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for r in results {
        let png = std::fs::read(r.dir.join("reconstructions.png"))
            .unwrap_or_else(|e| panic!("{}: no reconstructions.png: {e}", r.dir.display()));
        assert!(png.starts_with(b"\x89PNG"), "{}", r.dir.display());
        if r.seed == results[0].seed {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
            assert!(
                html.contains(&b64),
                "report.html embeds {}",
                r.dir.display()
            );
        }
    }
}

/// `report.html` as headless Chromium draws it (None, after a notice, without Chromium): the
/// key table and the full one in its box, a code-usage plot on log axes and a grid a quantizer.
fn rendered_report(out: &Path, quantizers: &[&str]) -> Option<String> {
    let browser = chromium()?;
    let dom = dump_dom(&browser, &out.join("report.html"));
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's load handler did not run"
    );
    for id in ["summary", "summary-all"] {
        let at = dom.find(&format!("id=\"{id}\"")).expect("the tables");
        assert!(
            dom[..at].ends_with("<div class=\"scroll\"><table "),
            "{id} in its box"
        );
        let table = &dom[at..];
        let table = &table[..table.find("</table>").unwrap()];
        assert_eq!(
            table.matches("<tr>").count(),
            1 + quantizers.len(),
            "{table}"
        );
        for q in quantizers {
            assert!(table.contains(&format!("<td>{q}</td>")), "{q} in {table}");
        }
    }
    for q in quantizers {
        let id = format!("hist-{q}");
        let (w, h, n, _) = rendered(&dom, &id);
        assert!(w > 100 && h > 100, "{id} is {w}x{h}");
        assert!(n > 10, "{id} draws only {n} elements");
        check_log_counts(&dom, &id);
        let id = format!("grid-{q}");
        let (w, h, _, (iw, ih)) = rendered(&dom, &id);
        assert!(
            w > 100 && h > 50 && iw > 100 && ih > 50,
            "{id}: box {w}x{h}, image {iw}x{ih}"
        );
    }
    Some(dom)
}

/// The count axis of the code-usage plot `id` is logarithmic: its tick labels (the
/// right-aligned numbers of the SVG) are 1, 10, 100, ... and every decade is the same height.
fn check_log_counts(dom: &str, id: &str) {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap();
    let div = &dom[at..at + dom[at..].find("</div>").unwrap()];
    let ticks: Vec<(f64, f64)> = div
        .split("<text")
        .skip(1)
        .filter(|t| t.contains("text-anchor=\"end\""))
        .filter_map(|t| {
            let (attrs, rest) = t.split_once('>')?;
            let value: f64 = rest[..rest.find("</text>")?].trim().parse().ok()?;
            let y = attrs.split(" y=\"").nth(1)?;
            Some((value, y[..y.find('"')?].parse().ok()?))
        })
        .collect();
    assert!(ticks.len() >= 2, "{id}: ticks {ticks:?}");
    for (i, (v, _)) in ticks.iter().enumerate() {
        assert_eq!(*v, 10f64.powi(i as i32), "{id}: ticks {ticks:?}");
    }
    let step = ticks[0].1 - ticks[1].1;
    assert!(step > 10.0, "{id}: ticks {ticks:?}");
    for w in ticks.windows(2) {
        assert!(
            (w[0].1 - w[1].1 - step).abs() <= 1.0,
            "{id}: ticks {ticks:?}"
        );
    }
}

/// A one-seed comparison of all three quantizers on a few of the generated shapes (seconds): the
/// reports of [`check_reports`] (no "±", no negative zero, CSV of constant width, the
/// terminal's summary within 100 columns, the runs' grids) and their rendering.
#[test]
fn one_seed_comparison_on_shapes() {
    let mut base = RunConfig::default();
    base.data.shapes_train = 128;
    base.data.shapes_test = 64;
    base.quantizer.codebook_size = Some(32);
    base.quantizer.code_dim = Some(4);
    base.model.hidden = Some(8);
    base.training.batch_size = Some(32);
    base.training.epochs = 1;
    base.training.eval_samples = 2;
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("cmp");
    let spec = CompareSpec {
        base,
        quantizers: vec![
            QuantizerKind::Vq,
            QuantizerKind::VqEma,
            QuantizerKind::SoftEm,
        ],
        seeds: vec![1],
        out: out.clone(),
        command: "vqib compare --seeds 1".into(),
    };
    let (results, verdicts) = compare::run(&spec, &TrainOptions::default()).unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(verdicts.claims().len(), 4, "{verdicts}");
    check_reports(&out, &results, &verdicts);
    rendered_report(&out, &["vq", "vq-ema", "soft-em"]);
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
    let rows = read_csv(&out.join("sweep.csv"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        rows[0][..9],
        [
            "quantizer",
            "K",
            "D",
            "beta",
            "rate_weight",
            "tau",
            "variant",
            "seeds",
            "perplexity mean"
        ]
    );
    let html = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    assert!(html.contains("2 of 4 points finished"), "{html}");
    assert!(html.contains(names[1]), "the missing runs are listed");

    // The whole grid: the finished runs are reused (no file of theirs rewritten, no record
    // added), the rest trained.
    let done = [first.clone(), out.join("runs").join(names[2])];
    let before: Vec<_> = done.iter().map(|r| untouched(r)).collect();
    let o = sweep(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    for (r, b) in done.iter().zip(&before) {
        assert_eq!(&untouched(r), b, "{} was rewritten", r.display());
    }
    assert!(names.iter().all(|n| finished(&out.join("runs").join(n))));
    assert!(text(&o).contains("4 of 4 points finished"), "{}", text(&o));
    let rows = read_csv(&out.join("sweep.csv"));
    assert_eq!(rows.len(), 5, "{rows:?}");
    // The expected distortion and I(Z;Y) were measured (shapes carry labels).
    for col in [
        "nll mean",
        "i_zy mean",
        "rate_iz_bits mean",
        "mse_expected mean",
    ] {
        for v in column(&rows, col) {
            assert!(v.is_finite() && v > -1e-5, "{col} = {v} in {rows:?}");
        }
    }

    // A grid whose shared settings changed does not silently reuse the old runs.
    let o = sweep(&out, &["--lr", "0.01", "--collect"]);
    expect_input_error(
        &o,
        &[
            names[0],
            "training.lr: ",
            " in the run, 0.01 in this command",
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
