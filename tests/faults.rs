//! What vqib promises under bad input and faults ("What vqib promises" in the README): one test
//! or more for each finding of the robustness issue, run through the binary, asserting the exit
//! code and that the message names the file or directory.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Every weight in a checkpoint's `model.safetensors` is finite.
fn all_weights_finite(ckpt: &Path) -> bool {
    let bytes = std::fs::read(ckpt.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().iter().all(|(_, v)| match v.dtype() {
        safetensors::Dtype::F32 => v
            .data()
            .chunks_exact(4)
            .all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()),
        _ => v
            .data()
            .chunks_exact(8)
            .all(|c| f64::from_le_bytes(c.try_into().unwrap()).is_finite()),
    })
}

/// The checkpoint directory a non-finite error names as the newest finite one.
fn named_checkpoint(msg: &str) -> std::path::PathBuf {
    let at = msg
        .find("the newest finite checkpoint is ")
        .unwrap_or_else(|| panic!("no checkpoint named: {msg}"));
    let rest = &msg[at + "the newest finite checkpoint is ".len()..];
    rest.split(';').next().unwrap().trim().into()
}

fn spawn(args: &[&str]) -> Child {
    vqib()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(120), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 1 and 8: an IDX file declaring 0 rows, odd and tiny image sizes, an empty split, and
/// `--image-size 0`: exit 2 naming the data directory (before: a panic in the conv kernels, and
/// messages without the directory).
#[test]
fn degenerate_images_exit_2_naming_the_data() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    for (name, rows, cols, n) in [
        ("zero-rows", 0, 28, 8),
        ("odd", 27, 27, 8),
        ("tiny", 1, 1, 8),
        ("empty", 28, 28, 0),
    ] {
        let m = d.path().join(name);
        write_mnist(&m, idx_images(n, rows, cols), idx_labels(n));
        expect_input_error(&train_mnist(&m, &out), &[name]);
    }
    let o = tiny(
        &out,
        &[
            "--dataset",
            "folder",
            "--data-dir",
            d.path().to_str().unwrap(),
            "--image-size",
            "0",
        ],
    );
    expect_input_error(&o, &["--image-size"]);
    assert!(!out.exists(), "a refused run leaves nothing behind");
}

/// 2: a codebook that cannot fit is refused up front with the memory it would need (before: an
/// abort in the allocator, exit 134).
#[test]
fn a_codebook_too_big_for_the_memory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let o = out.to_str().unwrap();
    let r = run(&[
        "train",
        "--no-progress",
        "--out",
        o,
        "--codebook-size",
        "2000000000",
    ]);
    expect_input_error(&r, &["GiB", "codebook", "available"]);
    let r = run(&[
        "train",
        "--no-progress",
        "--out",
        o,
        "--batch-size",
        "100000000",
    ]);
    expect_input_error(&r, &["GiB", "activations", "--batch-size"]);
    assert!(!out.exists());
}

/// 3: with a learning rate that blows up, no checkpoint with a non-finite value is written; the
/// checkpoint the error names is finite, `latest` names it, and it loads (before: the named
/// checkpoint held non-finite weights and resuming failed at once).
#[test]
fn a_diverging_run_keeps_only_finite_checkpoints() {
    let d = tempfile::tempdir().unwrap();
    for lr in ["10", "1e38"] {
        let out = d.path().join(format!("lr-{lr}"));
        let o = tiny(
            &out,
            &["--epochs", "2", "--lr", lr, "--checkpoint-every", "1"],
        );
        let t = text(&o);
        assert_eq!(o.status.code(), Some(3), "{t}");
        let named = named_checkpoint(&t);
        assert_eq!(named, latest(&out), "{t}");
        for e in std::fs::read_dir(out.join("checkpoints")).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert!(
                    all_weights_finite(&p),
                    "{} holds non-finite weights",
                    p.display()
                );
            }
        }
        // It loads: evaluation runs on it (after one step at lr 10 the weights evaluate; at lr
        // 1e38 they are finite but the evaluation overflows: exit 3 naming its step), and
        // resuming starts (and diverges again: exit 3).
        let o = run(&["eval", out.to_str().unwrap()]);
        if lr == "10" {
            assert!(o.status.success(), "{}", text(&o));
        } else {
            assert_eq!(o.status.code(), Some(3), "{}", text(&o));
            assert!(
                text(&o).contains("non-finite evaluation at step 1"),
                "{}",
                text(&o)
            );
        }
        let o = run(&["resume", out.to_str().unwrap(), "--no-progress"]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    }
}

/// 4: when an epoch's last update overflows, the end-of-epoch evaluation stops training with
/// exit 3 naming the newest finite checkpoint (before: exit 1, no checkpoint named).
#[test]
fn a_non_finite_evaluation_is_exit_3_naming_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    // One update an epoch.
    let o = tiny(
        &out,
        &["--train-limit", "16", "--epochs", "2", "--lr", "1e30"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("non-finite evaluation"), "{t}");
    let named = named_checkpoint(&t);
    assert!(all_weights_finite(&named), "{t}");
    assert_eq!(named, latest(&out));
}

/// 5: two writers of one run directory: the second is refused, naming the process that holds it
/// (before: both ran and one's checkpoints and metrics were lost). Readers need no lock:
/// evaluating while the run writes checkpoints always reads a whole one.
#[test]
fn a_run_directory_has_one_writer() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = out.to_str().unwrap();
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend(["--out", o, "--epochs", "1000", "--checkpoint-every", "2"]);
    let mut first = spawn(&args);
    wait_for("the first run's checkpoints", || jsonl_len(&out) >= 2);
    let second = tiny(&out, &["--epochs", "1"]);
    expect_input_error(&second, &[o, "in use by process", &first.id().to_string()]);
    let resumed = run(&["resume", o, "--no-progress"]);
    expect_input_error(&resumed, &[o, "in use by process"]);
    for _ in 0..3 {
        let e = run(&["eval", o]);
        assert!(e.status.success(), "eval beside training: {}", text(&e));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // The kernel released the lock of the killed process: the run resumes (to the end of the
    // epoch after its latest checkpoint's: resume refuses fewer epochs than were begun).
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest(&out).join("state.json")).unwrap())
            .unwrap();
    let epochs = (state["epoch"].as_u64().unwrap() + 1).to_string();
    let o2 = run(&["resume", o, "--no-progress", "--epochs", &epochs]);
    assert!(o2.status.success(), "{}", text(&o2));
}

/// 6: `--epochs 0` is refused; a run killed before its first update holds the step-0 checkpoint
/// and resumes; a directory whose run died before any checkpoint can be started again (before:
/// exit 0 with a directory that neither eval nor a new train could use).
#[test]
fn no_dead_end_before_the_first_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    expect_input_error(&tiny(&out, &["--epochs", "0"]), &["--epochs"]);
    assert!(!out.exists());
    // One update: the step-0 checkpoint came first.
    let o = tiny(&out, &["--epochs", "1", "--max-steps", "0"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(state_step(&out), 0);
    let e = run(&["eval", out.to_str().unwrap()]);
    assert!(e.status.success(), "{}", text(&e));
    let r = run(&["resume", out.to_str().unwrap(), "--no-progress"]);
    assert!(r.status.success(), "{}", text(&r));
    assert_eq!(state_step(&out), 6);
    // config.json and no checkpoint (a process that died at start): train starts it anew,
    // resume says what to do.
    let dead = d.path().join("dead");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::copy(out.join("config.json"), dead.join("config.json")).unwrap();
    expect_input_error(
        &run(&["resume", dead.to_str().unwrap()]),
        &["dead", "before its first checkpoint"],
    );
    let o = tiny(&dead, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// 7: a run directory that cannot be written: exit 2 naming it, at the top level and deeper
/// (before: exit 1 with a bare "Read-only file system").
#[test]
fn an_unwritable_run_directory_exits_2_naming_it() {
    // /proc accepts no new files even for root (tests may run as root, which ignores modes).
    for out in ["/proc", "/proc/vqib-no-such/run"] {
        let o = tiny(Path::new(out), &["--epochs", "1"]);
        expect_input_error(&o, &[out]);
    }
    // A directory of mode 0555, read-only to vqib however this test runs (see `ReadOnly`).
    let d = tempfile::tempdir().unwrap();
    let mode = |p: &Path, m: u32| {
        let mut perms = std::fs::metadata(p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, m);
        std::fs::set_permissions(p, perms).unwrap();
    };
    // Open to every user down to `ro` (for `ReadOnly::Nobody`).
    mode(d.path(), 0o755);
    let ro = d.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    mode(&ro, 0o555);
    let Some(how) = ReadOnly::find(&ro) else {
        eprintln!(
            "skipping the read-only directory case: running as root, which ignores modes, \
             with neither a read-only bind mount (unshare -m) nor a switch to uid 65534 possible"
        );
        return;
    };
    eprintln!("read-only directory by {how:?}");
    for out in [ro.clone(), ro.join("deeper")] {
        let mut args: Vec<&str> = TINY.to_vec();
        args.extend(["--out", out.to_str().unwrap(), "--epochs", "1"]);
        let o = how.command(&ro).args(&args).output().unwrap();
        expect_input_error(&o, &[out.to_str().unwrap()]);
    }
    assert_eq!(
        std::fs::read_dir(&ro).unwrap().count(),
        0,
        "nothing written"
    );
}

/// How `dir` (mode 0555) is made read-only to vqib: by its mode where this process is not root;
/// for root, which ignores modes, by a read-only bind mount of `dir` in a private mount
/// namespace (`unshare -m`, which needs CAP_SYS_ADMIN), or else by running vqib as uid 65534
/// (`nobody`), to whom the mode applies.
#[derive(Clone, Copy, Debug)]
enum ReadOnly {
    Mode,
    BindMount,
    Nobody,
}

impl ReadOnly {
    /// The first way that works here: run that way, a shell can execute vqib but cannot create a
    /// file in `dir`.
    fn find(dir: &Path) -> Option<ReadOnly> {
        let probe = dir.join("probe");
        let script = "touch \"$1\" 2>/dev/null; t=$?; [ -x \"$2\" ] && echo \"touch $t\"";
        [ReadOnly::Mode, ReadOnly::BindMount, ReadOnly::Nobody]
            .into_iter()
            .find(|how| {
                let o = how
                    .wrap(dir, "sh")
                    .args(["-c", script, "sh"])
                    .arg(&probe)
                    .arg(env!("CARGO_BIN_EXE_vqib"))
                    .output();
                let _ = std::fs::remove_file(&probe);
                o.is_ok_and(|o| {
                    let said = String::from_utf8_lossy(&o.stdout);
                    said.starts_with("touch ") && said.trim() != "touch 0"
                })
            })
    }

    /// A command running vqib (its arguments still to add) with `dir` read-only.
    fn command(self, dir: &Path) -> Command {
        self.wrap(dir, env!("CARGO_BIN_EXE_vqib"))
    }

    /// A command running `program` with `dir` read-only.
    fn wrap(self, dir: &Path, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        match self {
            ReadOnly::Mode => Command::new(program),
            ReadOnly::BindMount => {
                let mut c = Command::new("unshare");
                c.args(["-m", "sh", "-c"])
                    .arg("mount --bind -o ro \"$0\" \"$0\" && exec \"$@\"")
                    .arg(dir)
                    .arg(program);
                c
            }
            ReadOnly::Nobody => {
                let mut c = Command::new(program);
                c.uid(65534).gid(65534);
                c
            }
        }
    }
}

/// 9: temporary files of a process killed while writing a checkpoint are removed when the run
/// is opened again (before: they survived every later resume).
#[test]
fn stale_temporaries_are_removed_on_resume() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = tiny(&out, &["--epochs", "1", "--max-steps", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    // What a kill -9 in the middle of `checkpoint::save` leaves (4999999: no live process).
    let ck = out.join("checkpoints");
    let tmp = ck.join(".step-00000003.tmp-4999999");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join(".model.safetensors.tmp-4999999"), b"partial").unwrap();
    std::fs::write(ck.join(".latest.tmp-4999999"), b"step-000").unwrap();
    std::fs::write(out.join(".config.json.tmp-4999999"), b"{").unwrap();
    let o = run(&["resume", out.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut left: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .chain(std::fs::read_dir(&out).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    left.sort();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A real kill -9 at a random moment: the run always resumes (from the step-0 checkpoint if it
/// died that early), leaving no temporaries.
#[test]
fn kill_9_at_any_moment_leaves_a_resumable_run() {
    let d = tempfile::tempdir().unwrap();
    for (i, delay_ms) in [0u64, 150, 400].into_iter().enumerate() {
        let out = d.path().join(format!("run{i}"));
        let o = out.to_str().unwrap();
        let mut args: Vec<&str> = TINY.to_vec();
        args.extend(["--out", o, "--epochs", "2", "--checkpoint-every", "1"]);
        let mut child = spawn(&args);
        wait_for("the run directory", || out.join("config.json").exists());
        std::thread::sleep(Duration::from_millis(delay_ms));
        Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        let r = if out.join("checkpoints/latest").exists() {
            run(&["resume", o, "--no-progress"])
        } else {
            tiny(&out, &["--epochs", "2"])
        };
        assert!(
            r.status.success(),
            "after kill -9 at {delay_ms} ms: {}",
            text(&r)
        );
        assert_eq!(state_step(&out), 12);
    }
}

/// 10: `latest` that leads out of the run directory, and a `config.json` edited after the run
/// started: both exit 2 naming the file (before: the path was followed, and the edit was
/// silently ignored and overwritten).
#[test]
fn latest_and_config_json_are_checked_on_resume() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = out.to_str().unwrap();
    let r = tiny(&out, &["--epochs", "1", "--max-steps", "2"]);
    assert!(r.status.success(), "{}", text(&r));
    let latest_file = out.join("checkpoints/latest");
    let good = std::fs::read_to_string(&latest_file).unwrap();
    for bad in ["../../..", "/etc", "step-1/../../x"] {
        std::fs::write(&latest_file, bad).unwrap();
        expect_input_error(&run(&["resume", o]), &["latest", "step-NNNNNNNN"]);
        expect_input_error(&run(&["eval", o]), &["latest"]);
    }
    std::fs::write(&latest_file, good).unwrap();
    // An edited learning rate: refused, config.json untouched.
    let cfg_path = out.join("config.json");
    let text0 = std::fs::read_to_string(&cfg_path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text0).unwrap();
    v["training"]["lr"] = serde_json::json!(0.5);
    let edited = serde_json::to_string_pretty(&v).unwrap();
    std::fs::write(&cfg_path, &edited).unwrap();
    expect_input_error(&run(&["resume", o]), &["config.json", "training.lr", "0.5"]);
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), edited);
    // Restored, it resumes and says which configuration governs.
    std::fs::write(&cfg_path, &text0).unwrap();
    let r = run(&["resume", o, "--no-progress"]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(text(&r).contains("with its configuration"), "{}", text(&r));
    // A deleted config.json is rewritten from the checkpoint.
    std::fs::remove_file(&cfg_path).unwrap();
    let r = run(&["resume", o, "--no-progress", "--epochs", "2"]);
    assert!(r.status.success(), "{}", text(&r));
    let back: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    assert_eq!(back["training"]["epochs"], 2);
}

/// 11: without MNIST the tests that need it skip with a notice; with VQIB_REQUIRE_MNIST=1 (CI)
/// its absence fails (before: a panic on every fresh clone).
#[test]
fn mnist_tests_skip_without_the_files_unless_required() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(find_mnist(d.path(), false), Ok(None));
    let e = find_mnist(d.path(), true).unwrap_err();
    assert!(
        e.contains(d.path().to_str().unwrap()) && e.contains("VQIB_MNIST_DIR"),
        "{e}"
    );
    std::fs::write(d.path().join("train-images-idx3-ubyte.gz"), b"").unwrap();
    assert_eq!(find_mnist(d.path(), true), Ok(Some(d.path().to_path_buf())));
}
