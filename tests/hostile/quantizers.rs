//! The quantizer family's flags against bad values (issue 23): `--levels` empty, with a level
//! below 2, or with a product over 2^24; `--stages 0`; a quantizer's flag given to another
//! quantizer; a code space too large for the memory. Each exits 2 naming the flag, and creates
//! nothing.

use crate::common::*;

/// `vqib train` on a few generated images with `args`, into a directory that must not appear.
fn refused(args: &[&str], needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("never");
    let mut all = vec![
        "train",
        "--shapes-train",
        "64",
        "--shapes-test",
        "16",
        "--hidden",
        "8",
        "--no-progress",
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend(args);
    let o = run(&all);
    expect_input_error(&o, needles);
    assert!(
        !out.exists(),
        "{args:?}: a refused run created its directory"
    );
}

#[test]
fn bad_levels_stages_and_misplaced_flags_exit_2() {
    refused(&["--quantizer", "fsq", "--levels", ""], &["--levels"]);
    refused(
        &["--quantizer", "fsq", "--levels", "8,1,5"],
        &["--levels", "at least 2"],
    );
    refused(
        &["--quantizer", "fsq", "--levels", "8,0"],
        &["--levels", "at least 2"],
    );
    refused(
        &["--quantizer", "fsq", "--levels", "256,256,256,2"],
        &["--levels", "2^24"],
    );
    refused(
        &["--quantizer", "fsq", "--levels", "8,5", "--code-dim", "3"],
        &["--code-dim", "--levels"],
    );
    refused(&["--quantizer", "rvq", "--stages", "0"], &["--stages"]);
    refused(&["--quantizer", "rvq", "--stages", "17"], &["--stages"]);
    refused(
        &["--quantizer", "vq", "--levels", "8,5"],
        &["--levels", "fsq"],
    );
    refused(
        &["--quantizer", "lfq", "--stages", "2"],
        &["--stages", "rvq"],
    );
    refused(
        &["--quantizer", "fsq", "--estimator", "rotation"],
        &["--estimator"],
    );
    refused(
        &["--quantizer", "vq", "--update", "ema"],
        &["--update", "rvq"],
    );
    refused(
        &["--quantizer", "sq", "--entropy-weight", "0.1"],
        &["--entropy-weight", "lfq"],
    );
    refused(
        &["--quantizer", "lfq", "--code-dim", "25"],
        &["lfq", "2^24"],
    );
    refused(
        &["--quantizer", "lfq", "--codebook-size", "500"],
        &["--codebook-size", "power of two"],
    );
    refused(&["--quantizer", "fsq", "--rate", "vib"], &["--rate", "fsq"]);
}

/// A code space whose codebooks and priors cannot be held: refused by the memory check, which
/// names the flags that size it.
#[test]
fn a_code_space_too_large_for_the_memory_is_refused() {
    refused(
        &[
            "--quantizer",
            "rvq",
            "--stages",
            "16",
            "--codebook-size",
            "4000000000",
        ],
        &["--codebook-size", "--stages"],
    );
}

/// Every quantizer of the family trains a few steps through the binary, and `vqib compare`
/// takes them all in one list.
#[test]
fn the_family_trains_and_compares() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let o = run(&[
        "compare",
        "--quantizers",
        "vq,fsq,lfq,rvq,sq",
        "--levels",
        "3,3,2,2",
        "--stages",
        "2",
        "--codebook-size",
        "16",
        "--code-dim",
        "4",
        "--shapes-train",
        "64",
        "--shapes-test",
        "32",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--eval-samples",
        "2",
        "--no-progress",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    for q in ["vq", "fsq", "lfq", "rvq", "sq"] {
        assert!(
            csv.lines().any(|l| l.starts_with(&format!("{q},"))),
            "summary.csv lacks {q}: {csv}"
        );
    }
    // fsq took its levels (K = 36), lfq derived 2^4 from --code-dim, rvq 2 stages of 16.
    let cfg = |q: &str| -> serde_json::Value {
        let dir = std::fs::read_dir(out.join("runs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{q}-")))
            })
            .unwrap_or_else(|| panic!("no run directory for {q}"));
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    assert_eq!(cfg("fsq")["quantizer"]["codebook_size"], 36);
    assert_eq!(cfg("lfq")["quantizer"]["codebook_size"], 16);
    assert_eq!(cfg("rvq")["quantizer"]["stages"], 2);
    assert!(
        cfg("vq")["quantizer"]
            .get("levels")
            .is_none_or(|v| v.is_null())
    );
}

/// A sweep's listed commands (what shards run) give each point only the flags its quantizer
/// reads: lfq's penalty weight to lfq, rvq's update to rvq, neither to vq; every listed command
/// is accepted by `vqib train` (run for one step).
#[test]
fn a_sweep_lists_each_quantizers_own_flags_for_it_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let o = run(&[
        "sweep",
        "--quantizers",
        "vq,lfq,rvq",
        "--entropy-weight",
        "0.2",
        "--update",
        "ema",
        "--codebook-size",
        "16",
        "--code-dim",
        "4",
        "--shapes-train",
        "32",
        "--shapes-test",
        "16",
        "--hidden",
        "8",
        "--eval-samples",
        "0",
        "--max-steps",
        "1",
        "--no-progress",
        "--list",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    let of = |q: &str| {
        *lines
            .iter()
            .find(|l| l.contains(&format!("--quantizer {q} ")))
            .unwrap_or_else(|| panic!("no {q} line: {listed}"))
    };
    assert!(!of("vq").contains("--entropy-weight") && !of("vq").contains("--update"));
    assert!(of("lfq").contains("--entropy-weight 0.2") && !of("lfq").contains("--update"));
    assert!(of("rvq").contains("--update ema") && !of("rvq").contains("--entropy-weight"));
    for line in lines {
        let words: Vec<&str> = line.split(' ').skip(1).collect();
        let o = run(&words);
        assert!(o.status.success(), "{line}: {}", text(&o));
    }
}
