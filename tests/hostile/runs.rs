//! Runs, resumes, comparisons and sweeps against hostile flags and edited run directories
//! (issue 21, items 1, 2, 5-9, 11 and 12: bounds, finished runs, messages).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

/// `vqib sweep` with the tiny training flags and `extra`.
fn tiny_sweep(out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&str> = vec!["sweep", "--quantizers", "vq"];
    args.extend(&TINY[1..]);
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(extra);
    run(&args)
}

/// Every entry under `dir`, recursively, as paths relative to it (sorted).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A tiny run trained to its end (one epoch), in `tmp/name`.
fn finished_run(tmp: &Path, name: &str, epochs: &str) -> PathBuf {
    let run = tmp.join(name);
    let o = tiny(&run, &["--epochs", epochs, "--eval-samples", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    run
}

/// Item 1 and 12: every count that sizes memory is checked before anything is trained or
/// allocated: `--eval-samples` (which aborted at the final evaluation, losing the run), on `train`
/// and on `eval`, and `--epochs` past its bound.
#[test]
fn counts_that_size_memory_are_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    for v in ["1000000000", "18446744073709551615"] {
        let out = tmp.path().join(format!("never-{v}"));
        let o = tiny(&out, &["--eval-samples", v]);
        expect_input_error(&o, &["--eval-samples"]);
        assert!(!out.exists(), "a refused run created {}", out.display());
    }
    let out = tmp.path().join("epochs");
    let o = tiny(&out, &["--epochs", "18446744073709551615"]);
    expect_input_error(&o, &["--epochs", "at most"]);
    assert!(!out.exists());

    let run = finished_run(tmp.path(), "run", "1");
    let before = std::fs::read(run.join("eval.json")).unwrap();
    for v in ["1000000000", "18446744073709551615"] {
        let o = vqib()
            .args(["eval", run.to_str().unwrap(), "--eval-samples", v])
            .output()
            .unwrap();
        expect_input_error(&o, &["--eval-samples"]);
    }
    assert_eq!(std::fs::read(run.join("eval.json")).unwrap(), before);
}

/// Items 2 and 6: a grid too large to list is refused before the list is made; a value given
/// twice is refused (it would count one run as several).
#[test]
fn grids_are_bounded_and_lists_have_no_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let o = tiny_sweep(&out, &["--seeds", "40000000000", "--list"]);
    expect_input_error(&o, &["--seeds", "10000"]);
    let o = tiny_sweep(
        &out,
        &["--codebook-size", "8,16,64", "--seeds", "3000", "--list"],
    );
    expect_input_error(&o, &["12000 runs"]);
    let o = run(&[
        "compare",
        "--seeds",
        "40000000000",
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_input_error(&o, &["--seeds", "10000"]);
    for (flag, v, named) in [
        ("--codebook-size", "8,8", "--codebook-size lists 8 twice"),
        ("--seeds", "1,1", "--seeds lists 1 twice"),
        ("--beta", "0.25,0.250", "--beta lists 0.25 twice"),
        (
            "--quantizers",
            "vq,soft-em,vq",
            "--quantizers lists vq twice",
        ),
    ] {
        let o = tiny_sweep(&out, &[flag, v, "--list"]);
        expect_input_error(&o, &[named]);
    }
    let o = run(&[
        "compare",
        "--quantizers",
        "vq,vq",
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_input_error(&o, &["--quantizers lists vq twice"]);
    assert!(!out.exists(), "a refused sweep created its directory");
}

/// Items 5 and 8: a sweep stopped by `--max-steps` exits 0 and says how to continue; a stopped
/// point that `vqib eval` evaluated is still not finished (it is missing from the report, and the
/// next sweep trains it to its end); "finished" is the checkpoint at the configured end with
/// eval.json of that step.
#[test]
fn a_stopped_point_is_not_finished_even_when_evaluated() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let o = tiny_sweep(&out, &["--epochs", "1", "--max-steps", "2"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("rerun the same command to continue"), "{t}");
    let runs: Vec<PathBuf> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let point = &runs[0];
    assert_eq!(state_step(point), 2);
    let o = run(&["eval", point.to_str().unwrap(), "--eval-samples", "0"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(point.join("eval.json").is_file());

    let o = tiny_sweep(&out, &["--epochs", "1", "--collect"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("0 of 1 points finished"), "{t}");

    let o = tiny_sweep(&out, &["--epochs", "1"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("1 of 1 points finished"), "{t}");
    // 96 images in batches of 16: the point ran to the end of its one epoch.
    assert_eq!(state_step(point), 6);
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(point.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["step"].as_u64(), Some(6));
}

/// Item 5, the other way round: a run killed between its final checkpoint and its final
/// evaluation (here: eval.json of an earlier step) is completed by the next resume, which writes
/// the final evaluation without training.
#[test]
fn a_run_at_its_end_without_its_final_evaluation_gets_one() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = finished_run(tmp.path(), "run", "1");
    let eval = run_dir.join("eval.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&eval).unwrap()).unwrap();
    v["step"] = serde_json::json!(3);
    std::fs::write(&eval, serde_json::to_string(&v).unwrap()).unwrap();
    let lines = jsonl_len(&run_dir);
    let o = run(&["resume", run_dir.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&eval).unwrap()).unwrap();
    assert_eq!(v["step"].as_u64(), Some(6));
    assert_eq!(state_step(&run_dir), 6, "nothing was trained");
    assert_eq!(jsonl_len(&run_dir), lines);
}

/// Item 7: `resume --epochs` below what the checkpoint has done is refused, and config.json
/// (from which compare and sweep decide reuse) is left as it was.
#[test]
fn resume_refuses_fewer_epochs_than_done() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = finished_run(tmp.path(), "run", "2");
    let cfg = std::fs::read(run_dir.join("config.json")).unwrap();
    let o = run(&["resume", run_dir.to_str().unwrap(), "--epochs", "1"]);
    expect_input_error(&o, &["--epochs 1", "below the 2 epoch"]);
    assert_eq!(std::fs::read(run_dir.join("config.json")).unwrap(), cfg);
    // Extending it is still allowed.
    let o = run(&[
        "resume",
        run_dir.to_str().unwrap(),
        "--epochs",
        "3",
        "--max-steps",
        "1",
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(state_step(&run_dir), 13);
}

/// Items 9 and 11: a damaged `latest` is named, never taken for "no checkpoint" (whose advice,
/// to start again, would discard the checkpoints); a missing one with checkpoints present says
/// how to name one; a file given as the run, and a flag that does not exist, are each said so.
#[test]
fn damaged_runs_and_wrong_arguments_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = finished_run(tmp.path(), "run", "1");
    let latest = run_dir.join("checkpoints/latest");
    let name = std::fs::read_to_string(&latest).unwrap();
    std::fs::remove_file(&latest).unwrap();
    std::fs::create_dir(&latest).unwrap();
    let before = tree(&run_dir);
    let o = run(&["resume", run_dir.to_str().unwrap()]);
    expect_input_error(&o, &["latest"]);
    let t = text(&o);
    assert!(!t.contains("start it again"), "{t}");
    let o = run(&["train", "--out", run_dir.to_str().unwrap()]);
    expect_input_error(&o, &["already holds a run"]);
    assert_eq!(tree(&run_dir), before, "a refused command changed the run");

    std::fs::remove_dir(&latest).unwrap();
    let o = run(&["resume", run_dir.to_str().unwrap()]);
    expect_input_error(&o, &["latest", "is missing", name.trim()]);
    assert!(!text(&o).contains("start it again"));
    let o = tiny(&run_dir, &[]);
    expect_input_error(&o, &["already holds a run"]);
    std::fs::write(&latest, &name).unwrap();

    let o = run(&["resume", run_dir.to_str().unwrap(), "--bogus"]);
    expect_input_error(&o, &["unknown flag --bogus"]);
    assert!(!text(&o).contains("cannot be changed"), "{}", text(&o));
    let o = run(&["resume", run_dir.to_str().unwrap(), "--lr", "0.1"]);
    expect_input_error(&o, &["--lr", "cannot be changed when resuming"]);
    let file = run_dir.join("config.json");
    let o = run(&["resume", file.to_str().unwrap()]);
    expect_input_error(&o, &["config.json", "is not a directory"]);
}

/// Item 12: a path that is not UTF-8 is a path like any other (no panic).
#[cfg(unix)]
#[test]
fn a_non_utf8_path_is_an_ordinary_path() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let odd = tmp
        .path()
        .join(std::ffi::OsStr::from_bytes(b"run-\xff\xfe"));
    for cmd in [&["eval"][..], &["resume"][..], &["train", "--resume"][..]] {
        let o = vqib().args(cmd).arg(&odd).output().unwrap();
        expect_input_error(&o, &["run-"]);
    }
    let o = vqib()
        .args(TINY)
        .args(["--epochs", "1", "--max-steps", "1", "--out"])
        .arg(&odd)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(odd.join("checkpoints/latest").is_file());
}

/// Item 12: compare and sweep never remove a run directory that another process is writing
/// (a run without a checkpoint used to be removed without taking its lock).
#[test]
fn a_run_directory_in_use_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let dir = out.join("runs/vq-seed1");
    std::fs::create_dir_all(&dir).unwrap();
    // What a run just starting looks like: its lock held, no checkpoint yet.
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(dir.join("marker"), "mine").unwrap();
    let mut args: Vec<&str> = vec!["compare", "--quantizers", "vq", "--seeds", "1"];
    args.extend(&TINY[1..]);
    args.extend(["--out", out.to_str().unwrap()]);
    let o = run(&args);
    expect_input_error(&o, &["in use by"]);
    assert_eq!(std::fs::read_to_string(dir.join("marker")).unwrap(), "mine");
    drop(lock);
}
