//! `vqib compress` / `vqib decompress` against edited containers, endless files and the
//! temporaries of killed processes (issue 21, items 3, 4, 10 and the `.vqz` part of 12).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// A process id no process can have (above the kernel's largest, 2^22).
const DEAD: u32 = 4_999_999;

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `bytes` of a `.vqz` file with the image count (offset 50) set to `n` and the trailing CRC-32
/// recomputed, as anyone editing the file would.
fn with_count(bytes: &[u8], n: u32) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[50..54].copy_from_slice(&n.to_le_bytes());
    let body = b.len() - 4;
    let crc = crc32fast::hash(&b[..body]);
    b[body..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// One tiny trained run for every case: the test split (40 images) compressed, then (a) the count
/// raised, (b) an endless device, (c) stale temporaries beside the outputs.
#[test]
fn edited_counts_endless_files_and_stale_temporaries() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let o = tiny(&run_dir, &["--epochs", "1", "--eval-samples", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = run_dir.to_str().unwrap();
    let file = tmp.path().join("test.vqz");
    let o = run(&[
        "compress",
        r,
        "--split",
        "test",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let good = std::fs::read(&file).unwrap();
    assert_eq!(good[50..54], 40u32.to_le_bytes());

    raised_counts_write_nothing(tmp.path(), r, &good);
    endless_devices_are_refused(tmp.path(), r);
    stale_temporaries_are_swept(tmp.path(), r, &good);
}

/// Item 3 and 12: a count raised (CRC recomputed) is refused naming the file, before anything is
/// written: no output directory, no temporary.
fn raised_counts_write_nothing(tmp: &Path, r: &str, good: &[u8]) {
    let dir = tmp.join("raised");
    std::fs::create_dir(&dir).unwrap();
    let bad = dir.join("raised.vqz");
    let out = dir.join("png");
    let decompress = || {
        run(&[
            "decompress",
            r,
            bad.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    // A count the payload cannot hold (7 x 7 codes an image), and one whose images would not
    // fit in any memory (2^32 - 1 images of 28 x 28 pixels: 3.9 TiB).
    for (n, why) in [
        (41u32, "header declares 2009"),
        (400, "header declares 19600"),
        (100_000, "the payload ends after 1960 codes"),
        (u32::MAX, "4294967295 images"),
    ] {
        std::fs::write(&bad, with_count(good, n)).unwrap();
        let o = decompress();
        expect_input_error(&o, &["raised.vqz", why]);
        assert!(
            !out.exists(),
            "count {n}: decompress created {}",
            out.display()
        );
        assert_eq!(names(&dir), ["raised.vqz"], "count {n}: left behind");
    }
    // The control: the true count decodes.
    std::fs::write(&bad, good).unwrap();
    let o = decompress();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("wrote 40 images"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 40);
}

/// Item 4: a device that never ends (and a directory) is refused at once, not read until memory
/// runs out.
fn endless_devices_are_refused(tmp: &Path, r: &str) {
    for (src, name) in [("/dev/zero", "/dev/zero"), (tmp.to_str().unwrap(), "")] {
        let out = tmp.join("never");
        let start = Instant::now();
        let o = run(&["decompress", r, src, "--out", out.to_str().unwrap()]);
        expect_input_error(&o, &[name, "not a regular file"]);
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{src}: took {:?}",
            start.elapsed()
        );
        assert!(!out.exists());
    }
}

/// Item 10: the temporaries of dead processes (`.NAME.tmp-PID`, a half-written file and a
/// directory of partial PNGs) beside an output are removed when compress or decompress writes
/// there; a live process's temporary and every other name stay.
fn stale_temporaries_are_swept(tmp: &Path, r: &str, good: &[u8]) {
    let dir = tmp.join("outputs");
    std::fs::create_dir(&dir).unwrap();
    let live = format!(".keep.vqz.tmp-{}", std::process::id());
    let kept = [
        live.as_str(),
        ".hidden",
        ".x.vqz.old-4999999",
        "x.tmp-4999999",
    ];
    for k in kept {
        std::fs::write(dir.join(k), b"keep").unwrap();
    }
    let dead_file = format!(".x.vqz.tmp-{DEAD}");
    let dead_dir = format!(".d.tmp-{DEAD}");
    let plant = || {
        std::fs::write(dir.join(&dead_file), b"half a file").unwrap();
        std::fs::create_dir_all(dir.join(&dead_dir)).unwrap();
        std::fs::write(dir.join(&dead_dir).join("000000.png"), b"partial").unwrap();
    };
    let expect = |extra: &[&str]| {
        let mut want: Vec<String> = kept.iter().chain(extra).map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(names(&dir), want);
    };

    plant();
    let f = dir.join("f.vqz");
    let o = run(&[
        "compress",
        r,
        "--split",
        "test",
        "--out",
        f.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    expect(&["f.vqz"]);
    assert_eq!(
        std::fs::read(&f).unwrap(),
        good,
        "compress is deterministic"
    );

    plant();
    let out = dir.join("d");
    let o = run(&[
        "decompress",
        r,
        f.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    expect(&["d", "f.vqz"]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 40);
}
