//! Hostile input: see main.rs. `vqib bench` counts, and a resume that has nothing to do.

use std::path::Path;
use std::time::SystemTime;

use crate::common::*;

/// Every count of `vqib bench` that is 0 or sizes more memory than there is exits 2 naming its
/// flag, before any work.
#[test]
fn bench_refuses_zero_and_huge_counts_naming_the_flag() {
    for (case, flag, value) in [
        ("train", "--batch", "0"),
        ("eval", "--batch", "0"),
        ("assign", "--k", "0"),
        ("estep", "--k", "0"),
        ("assign", "--iters", "0"),
        ("train", "--batch", "4000000000"),
        ("eval", "--batch", "4000000000"),
        ("compress", "--batch", "4000000000"),
        ("assign", "--k", "4000000000"),
        ("estep", "--k", "4000000000"),
    ] {
        let o = run(&["bench", "--case", case, flag, value, "--warmup", "0"]);
        expect_input_error(&o, &[flag]);
        assert!(o.stdout.is_empty(), "{case} {flag} {value}: {}", text(&o));
        let want = if value == "0" { "at least 1" } else { "GiB" };
        assert!(
            text(&o).contains(want),
            "{case} {flag} {value}: {}",
            text(&o)
        );
    }
}

/// The bytes and modification time of a file.
fn snapshot(p: &Path) -> (Vec<u8>, SystemTime) {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (bytes, std::fs::metadata(p).unwrap().modified().unwrap())
}

/// Resuming a finished run trains nothing, so it changes nothing: the metrics, the configuration
/// and the final evaluation stay byte for byte, and the metrics log is not even rewritten.
#[test]
fn no_op_resume_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = tiny(&out, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let files = ["metrics.jsonl", "metrics.csv", "config.json", "eval.json"];
    let before: Vec<_> = files.iter().map(|f| snapshot(&out.join(f))).collect();
    assert!(jsonl_len(&out) > 0);
    // A rewrite within the clock's resolution would keep the mtime.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let o = run(&["resume", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    for (f, (bytes, mtime)) in files.iter().zip(&before) {
        let (now, now_mtime) = snapshot(&out.join(f));
        assert!(
            &now == bytes,
            "{f} changed:\n--- before\n{}\n--- after\n{}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&now)
        );
        assert_eq!(&now_mtime, mtime, "{f} was rewritten");
    }
}

/// Only a torn last line of `metrics.jsonl` is dropped on resume: a malformed line before it
/// stops the resume (exit 2, the file and line named, the log untouched), where earlier versions
/// dropped it and every record it could not read without a word.
#[test]
fn resume_drops_only_a_torn_last_metrics_line() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = tiny(&out, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let jsonl = out.join("metrics.jsonl");
    let good = std::fs::read_to_string(&jsonl).unwrap();
    let csv = std::fs::read(out.join("metrics.csv")).unwrap();

    let mut lines: Vec<&str> = good.lines().collect();
    lines[1] = r#"{"kind":"train","step":"#;
    let bad = lines.join("\n") + "\n";
    std::fs::write(&jsonl, &bad).unwrap();
    let o = run(&["resume", out.to_str().unwrap()]);
    expect_input_error(&o, &["metrics.jsonl", "line 2 "]);
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap(), bad);

    // A record torn by a kill is dropped; the rest, and metrics.csv, stay as they were.
    std::fs::write(&jsonl, format!("{good}{{\"kind\":\"train\",\"st")).unwrap();
    let o = run(&["resume", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap(), good);
    assert_eq!(std::fs::read(out.join("metrics.csv")).unwrap(), csv);
}
