//! The command line through the `vqib` binary, as clap parses it (issue 20): `sweep`'s list
//! options in every spelling, `--` ending the options, `train --resume RUN` as the alias of
//! `resume RUN`, errors that exit 2 naming the flag, and `sweep --help` showing the lists.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

/// `vqib sweep --list` of one quantizer on a tiny configuration, with `extra`.
fn list(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["sweep", "--quantizers", "vq", "--shapes-train", "64"];
    args.extend(["--out", out.to_str().unwrap(), "--list"]);
    args.extend(extra);
    run(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn list_options_read_the_same_in_every_spelling() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("sw");
    let spellings: [&[&str]; 4] = [
        &["--beta=0.1,0.25", "--code-dim", "4,8"],
        &["--beta", "0.1,0.25", "--code-dim=4", "--code-dim=8"],
        &[
            "--beta",
            "0.1",
            "--beta",
            "0.25",
            "--code-dim",
            "4",
            "--code-dim",
            "8",
        ],
        &[
            "--code-dim",
            "4",
            "--beta",
            "0.1",
            "--code-dim",
            "8",
            "--beta",
            "0.25",
        ],
    ];
    let lists: Vec<String> = spellings
        .iter()
        .map(|extra| {
            let o = list(&out, extra);
            assert!(o.status.success(), "{extra:?}: {}", text(&o));
            stdout(&o)
        })
        .collect();
    for (l, extra) in lists.iter().zip(spellings) {
        assert_eq!(l, &lists[0], "{extra:?}");
    }
    let lines: Vec<&str> = lists[0].lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    // D outer, beta inner; the sweep's own flags and the lists are not passed through.
    for (line, (dim, beta)) in lines.iter().zip([(4, 0.1), (4, 0.25), (8, 0.1), (8, 0.25)]) {
        assert!(line.starts_with("vqib train --shapes-train 64 "), "{line}");
        assert!(
            line.contains(&format!(" --code-dim {dim} --beta {beta} ")),
            "{line}"
        );
        assert_eq!(line.matches("--beta").count(), 1, "{line}");
        assert!(
            !line.contains("--list") && !line.contains("--quantizers "),
            "{line}"
        );
    }
    assert!(!out.exists(), "--list trains nothing");
}

#[test]
fn a_double_dash_ends_the_options() {
    let d = tempfile::tempdir().unwrap();
    let o = list(&d.path().join("sw"), &["--", "--beta", "1"]);
    expect_input_error(&o, &["unexpected argument", "--beta"]);
    assert!(o.stdout.is_empty(), "{}", text(&o));
}

#[test]
fn a_list_value_that_is_not_a_number_names_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("sw");
    for (extra, flag) in [
        (&["--beta", "0.1,abc"][..], "--beta"),
        (&["--beta=abc"], "--beta"),
        (
            &["--codebook-size", "8", "--codebook-size", "abc"],
            "--codebook-size",
        ),
        (&["--temperature"], "--temperature"),
    ] {
        let o = list(&out, extra);
        expect_input_error(&o, &[flag]);
        assert!(o.stdout.is_empty(), "{extra:?}: {}", text(&o));
    }
    // A list is refused where the option takes one value.
    expect_input_error(&run(&["train", "--beta", "0.1,0.25"]), &["--beta"]);
    assert!(!out.exists());
}

#[test]
fn train_resume_is_the_alias_of_resume() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("run");
    let o = tiny(&r, &["--epochs", "1", "--max-steps", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(state_step(&r), 2);
    // 96 images in batches of 16: six steps an epoch; --epochs extends the run to three.
    let o = run(&[
        "train",
        "--resume",
        r.to_str().unwrap(),
        "--epochs",
        "3",
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(state_step(&r), 18);
    // A flag the run fixes, in either spelling of --resume; the first such flag is named.
    let resume = format!("--resume={}", r.display());
    let o = run(&["train", "--hidden=8", &resume, "--lr", "0.1"]);
    expect_input_error(
        &o,
        &["--hidden cannot be changed when resuming", "config.json"],
    );
    // A flag no command takes is clap's unknown argument, named.
    let o = run(&["train", "--resume", r.to_str().unwrap(), "--bogus"]);
    expect_input_error(&o, &["--bogus"]);
    assert_eq!(state_step(&r), 18, "a refused resume trained");
}

#[test]
fn sweep_help_shows_the_lists() {
    let o = run(&["sweep", "--help"]);
    assert!(o.status.success(), "{}", text(&o));
    let help = stdout(&o);
    for flag in [
        "--beta",
        "--rate-weight",
        "--codebook-size",
        "--temperature",
        "--code-dim",
    ] {
        let line = help
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(&format!("{flag} ")))
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(line.contains(&format!("{flag} <LIST>")), "{flag}: {line:?}");
        assert!(
            line.contains("comma-separated or repeated"),
            "{flag}: {line:?}"
        );
    }
    // train takes one value of each.
    let o = run(&["train", "--help"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("--beta <BETA>"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("<LIST>"), "{}", stdout(&o));
}
