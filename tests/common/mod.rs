//! Shared by the integration tests: where MNIST is, and how to run the `vqib` binary on small
//! configurations and hand-made data files.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The MNIST files: `$VQIB_MNIST_DIR`, or `../shared/data/mnist` beside the repository. `None`
/// (with a printed notice, so the test skips) when they are not there, unless
/// `VQIB_REQUIRE_MNIST=1` (set by `.ci/run`), where that is a failure.
pub fn mnist_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("VQIB_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"));
    let require = std::env::var("VQIB_REQUIRE_MNIST").is_ok_and(|v| v == "1");
    match find_mnist(&dir, require) {
        Ok(found) => found,
        Err(msg) => panic!("{msg}"),
    }
}

/// `Ok(Some(dir))` when `dir` holds MNIST; `Ok(None)` after printing a skip notice when it does
/// not; `Err` when it does not and the files are required.
pub fn find_mnist(dir: &Path, require: bool) -> Result<Option<PathBuf>, String> {
    if dir.join("train-images-idx3-ubyte.gz").is_file() {
        return Ok(Some(dir.to_path_buf()));
    }
    let msg = format!("MNIST not found in {} (set VQIB_MNIST_DIR)", dir.display());
    if require {
        return Err(msg);
    }
    eprintln!("skipping: {msg}");
    Ok(None)
}

pub fn vqib() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vqib"))
}

pub fn run(args: &[&str]) -> Output {
    vqib().args(args).output().expect("vqib runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small but real training configuration on the generated shapes data.
pub const TINY: &[&str] = &[
    "train",
    "--shapes-train",
    "96",
    "--shapes-test",
    "40",
    "--batch-size",
    "16",
    "--hidden",
    "16",
    "--codebook-size",
    "32",
    "--code-dim",
    "8",
    "--log-every",
    "1",
    "--no-progress",
];

pub fn tiny(out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(extra);
    run(&args)
}

pub fn jsonl(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn latest(run: &Path) -> PathBuf {
    let name = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    run.join("checkpoints").join(name.trim())
}

pub fn state_step(run: &Path) -> u64 {
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest(run).join("state.json")).unwrap())
            .unwrap();
    s["step"].as_u64().unwrap()
}

pub fn jsonl_len(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

pub fn expect_input_error(o: &Output, needles: &[&str]) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(2), "expected exit 2: {t}");
    assert!(!t.contains("panicked"), "panic: {t}");
    for n in needles {
        assert!(t.contains(n), "message lacks {n:?}: {t}");
    }
}

pub fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [2051u32, n, rows, cols] {
        v.extend(x.to_be_bytes());
    }
    v.extend((0..n * rows * cols).map(|i| (i % 256) as u8));
    v
}

pub fn idx_labels(n: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(2049u32.to_be_bytes());
    v.extend(n.to_be_bytes());
    v.extend((0..n).map(|i| (i % 10) as u8));
    v
}

pub fn write_mnist(dir: &Path, train_imgs: Vec<u8>, train_labels: Vec<u8>) {
    std::fs::create_dir_all(dir).unwrap();
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gz(&train_imgs)).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gz(&train_labels)).unwrap();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte.gz"),
        gz(&idx_images(4, 28, 28)),
    )
    .unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gz(&idx_labels(4))).unwrap();
}

pub fn train_mnist(dir: &Path, out: &Path) -> Output {
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend([
        "--dataset",
        "mnist",
        "--data-dir",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    run(&args)
}

/// Debian's `chromium` (`$CHROMIUM` overrides), for the tests that render a report. None (with a
/// notice) where it is missing, unless `VQIB_REQUIRE_CHROMIUM=1` (set by `.ci/run`).
pub fn chromium() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        if std::env::var("VQIB_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1") {
            panic!("chromium required but not found");
        }
        eprintln!("skipping the rendering check: no chromium");
    }
    found
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// The DOM of `page` after its load handlers ran, as headless Chromium dumps it.
pub fn dump_dom(browser: &Path, page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,2000",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
