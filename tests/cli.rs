//! End-to-end tests of the `vqib` binary: the files a run writes, resume, Ctrl-C, eval,
//! reconstruct, and every bad input exiting 2 with a message naming the file.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn train_writes_the_promised_files() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = tiny(&out, &["--epochs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("perplexity") && t.contains("run directory"),
        "summary missing: {t}"
    );

    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    // config.json by section, every dependent default stated.
    assert_eq!(cfg["quantizer"]["codebook_size"], 32);
    assert_eq!(cfg["quantizer"]["kind"], "vq");
    assert_eq!(cfg["quantizer"]["ema_decay"], 0.99);
    assert_eq!(cfg["model"]["hidden"], 16);

    // 96 images / 16 = 6 steps an epoch, 2 epochs.
    let recs = jsonl(&out);
    let train: Vec<_> = recs.iter().filter(|r| r["kind"] == "train").collect();
    let eval: Vec<_> = recs.iter().filter(|r| r["kind"] == "eval").collect();
    assert_eq!(train.len(), 12);
    assert_eq!(eval.len(), 2);
    for key in [
        "loss",
        "recon_mse",
        "codebook_loss",
        "commitment_loss",
        "batch_perplexity",
        "batch_codes_used",
        "wall_time",
    ] {
        assert!(train[0].get(key).is_some(), "train record lacks {key}");
    }
    for key in [
        "perplexity",
        "codes_used",
        "dead_codes",
        "psnr",
        "recon_mse",
    ] {
        assert!(eval[0].get(key).is_some(), "eval record lacks {key}");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 14);
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .starts_with("kind,step,epoch,wall_time,loss")
    );

    let ck = latest(&out);
    assert!(ck.ends_with("step-00000012"), "{}", ck.display());
    for f in ["model.safetensors", "optimizer.bpk", "state.json"] {
        assert!(ck.join(f).is_file(), "checkpoint lacks {f}");
    }
    // The safetensors names and PyTorch layouts as documented.
    let bytes = std::fs::read(ck.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        st.tensor("encoder.conv1.weight").unwrap().shape(),
        &[16, 1, 4, 4]
    );
    assert_eq!(
        st.tensor("decoder.deconv2.weight").unwrap().shape(),
        &[16, 1, 4, 4]
    );
    assert_eq!(st.tensor("quantizer.codebook").unwrap().shape(), &[32, 8]);
    assert!(out.join("eval.json").is_file());
    // No temporary files left anywhere.
    for e in std::fs::read_dir(out.join("checkpoints")).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        assert!(!n.starts_with('.'), "leftover temp {n}");
    }

    // eval and reconstruct on the finished run.
    let o = run(&["eval", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("reconstruction MSE"));
    for q in [
        "H(Z|I)",
        "I(I;Z)",
        "KL(p(Z|I) || r)",
        "L_VIB",
        "L_VDIB",
        "Miller-Madow",
        "softmax(-d^2/1)",
    ] {
        assert!(text(&o).contains(q), "eval lacks {q}: {}", text(&o));
    }
    let grid = d.path().join("grid.png");
    let o = run(&[
        "reconstruct",
        out.to_str().unwrap(),
        "--out",
        grid.to_str().unwrap(),
        "--n",
        "8",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let img = image::open(&grid).unwrap();
    assert!(img.height() > 2 * 28 && img.width() > 8 * 28);

    // A second run into the same directory is refused.
    let o = tiny(&out, &["--epochs", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already holds a run"));
}

#[test]
fn resume_continues_the_step_count_and_matches_an_uninterrupted_run() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    let b = d.path().join("b");
    // Uninterrupted: 2 epochs of 6 steps.
    let o = tiny(&a, &["--epochs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    // Interrupted after 4 steps (mid-epoch), then resumed.
    let o = tiny(&b, &["--epochs", "2", "--max-steps", "4"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(state_step(&b), 4);
    let o = run(&["train", "--resume", b.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(state_step(&b), 12);
    let steps: Vec<u64> = jsonl(&b)
        .iter()
        .filter(|r| r["kind"] == "train")
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<_>>());
    // Same seed, same data order, optimizer state restored: the same final losses.
    let last = |p: &Path| {
        jsonl(p).iter().rev().find(|r| r["kind"] == "eval").unwrap()["recon_mse"]
            .as_f64()
            .unwrap()
    };
    let (la, lb) = (last(&a), last(&b));
    assert!(
        (la - lb).abs() <= 1e-4 * la.abs().max(1e-6),
        "uninterrupted {la} vs resumed {lb}"
    );
    // Extending a finished run with more epochs continues from its step.
    let o = run(&[
        "train",
        "--resume",
        b.to_str().unwrap(),
        "--epochs",
        "3",
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(state_step(&b), 18);
}

#[test]
fn ctrl_c_saves_a_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend(["--out", out.to_str().unwrap(), "--epochs", "1000"]);
    let child = vqib()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training is under way.
    let t0 = std::time::Instant::now();
    while jsonl_len(&out) < 3 {
        assert!(t0.elapsed().as_secs() < 120, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(text(&o).contains("checkpoint saved"), "{}", text(&o));
    assert!(state_step(&out) >= 3);
}

#[test]
fn non_finite_loss_stops_with_a_clear_message() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = tiny(&out, &["--epochs", "3", "--lr", "1e30"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("non-finite loss"), "{t}");
    // The first update already overflows, so the newest finite checkpoint is step 0 (written
    // before it): the message names it, `latest` names it, and it evaluates.
    let ck = latest(&out);
    assert!(ck.ends_with("step-00000000"), "{}: {t}", ck.display());
    assert!(
        t.contains(&format!("the newest finite checkpoint is {}", ck.display())),
        "{t}"
    );
    let o = run(&["eval", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let ev: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert!(ev["mse"].as_f64().is_some_and(f64::is_finite), "{ev}");
}

#[test]
fn bad_inputs_exit_2_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");

    // Missing directory.
    let missing = d.path().join("no-such-dir");
    expect_input_error(
        &train_mnist(&missing, &out),
        &["no-such-dir", "does not exist"],
    );

    // Wrong IDX magic: a label file where the images belong.
    let m = d.path().join("magic");
    write_mnist(&m, idx_labels(8), idx_labels(8));
    expect_input_error(
        &train_mnist(&m, &out),
        &["train-images-idx3-ubyte.gz", "magic"],
    );

    // Truncated image file.
    let t = d.path().join("trunc");
    let mut imgs = idx_images(8, 28, 28);
    imgs.truncate(imgs.len() - 100);
    write_mnist(&t, imgs, idx_labels(8));
    expect_input_error(
        &train_mnist(&t, &out),
        &["train-images-idx3-ubyte.gz", "truncated"],
    );

    // Image and label counts disagree.
    let c = d.path().join("counts");
    write_mnist(&c, idx_images(8, 28, 28), idx_labels(7));
    expect_input_error(
        &train_mnist(&c, &out),
        &["train-labels-idx1-ubyte.gz", "7 labels", "8 images"],
    );

    // An image of the wrong size in a folder data set.
    let f = d.path().join("folder");
    std::fs::create_dir_all(&f).unwrap();
    for i in 0..6 {
        image::GrayImage::from_pixel(28, 28, image::Luma([i * 20]))
            .save(f.join(format!("a{i}.png")))
            .unwrap();
    }
    image::GrayImage::from_pixel(20, 28, image::Luma([9]))
        .save(f.join("a3.png"))
        .unwrap();
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend([
        "--dataset",
        "folder",
        "--data-dir",
        f.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_input_error(&run(&args), &["a3.png", "20x28"]);

    // K = 0 and D = 0.
    let o = out.to_str().unwrap();
    expect_input_error(
        &run(&["train", "--no-progress", "--out", o, "--codebook-size", "0"]),
        &["codebook size K"],
    );
    expect_input_error(
        &run(&["train", "--no-progress", "--out", o, "--code-dim", "0"]),
        &["code dimension D"],
    );
    assert!(
        !out.exists(),
        "a rejected configuration must not create the run directory"
    );

    // An unreadable checkpoint.
    let r = d.path().join("run");
    let o = tiny(&r, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let st = latest(&r).join("model.safetensors");
    std::fs::write(&st, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}").unwrap();
    expect_input_error(&run(&["eval", r.to_str().unwrap()]), &["model.safetensors"]);
    expect_input_error(
        &run(&["train", "--resume", r.to_str().unwrap()]),
        &["model.safetensors"],
    );
    // compare takes --quantizers and --seeds, not --quantizer and --seed.
    let cmp = d.path().join("cmp");
    expect_input_error(
        &run(&[
            "compare",
            "--quantizer",
            "vq",
            "--out",
            cmp.to_str().unwrap(),
        ]),
        &["--quantizer", "--quantizers"],
    );
    // A run directory that does not exist.
    expect_input_error(
        &run(&["eval", d.path().join("nothing").to_str().unwrap()]),
        &["nothing", "does not exist"],
    );
}

#[test]
fn resume_refuses_flags_the_run_config_fixes() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("run");
    let o = tiny(&r, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    // `train --resume RUN` is an alias of `resume RUN`; either refuses a setting the run fixes.
    let o = run(&[
        "train",
        "--resume",
        r.to_str().unwrap(),
        "--lr",
        "0.1",
        "--quantizer",
        "vq-ema",
    ]);
    expect_input_error(
        &o,
        &["--lr", "config.json", "cannot be changed when resuming"],
    );
    let o = run(&["resume", r.to_str().unwrap(), "--quantizer", "vq-ema"]);
    expect_input_error(&o, &["--quantizer", "config.json"]);
    // The flags resume does take still work.
    let o = run(&[
        "resume",
        r.to_str().unwrap(),
        "--epochs",
        "2",
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn trains_on_cifar10_files_and_an_rgb_image_folder() {
    let d = tempfile::tempdir().unwrap();
    // CIFAR-10 binary batches, 8 records each.
    let c = d.path().join("cifar");
    std::fs::create_dir_all(&c).unwrap();
    let batch = |seed: u8| {
        let mut b = Vec::new();
        for i in 0..8u8 {
            b.push(i % 10);
            b.extend((0..3072u32).map(|j| (j as u8).wrapping_mul(seed).wrapping_add(i)));
        }
        b
    };
    for k in 1..=5u8 {
        std::fs::write(c.join(format!("data_batch_{k}.bin")), batch(k)).unwrap();
    }
    std::fs::write(c.join("test_batch.bin"), batch(9)).unwrap();
    let out = d.path().join("cifar-run");
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend([
        "--dataset",
        "cifar10",
        "--data-dir",
        c.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["data"]["image_shape"], serde_json::json!([3, 32, 32]));
    let bytes = std::fs::read(latest(&out).join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        st.tensor("encoder.conv1.weight").unwrap().shape(),
        &[16, 3, 4, 4]
    );
    assert_eq!(
        st.tensor("decoder.deconv2.weight").unwrap().shape(),
        &[16, 3, 4, 4]
    );

    // A folder of RGB JPEGs of mixed sizes, resized to 16x16.
    let f = d.path().join("photos");
    std::fs::create_dir_all(&f).unwrap();
    for i in 0..12u32 {
        let (w, h) = if i % 2 == 0 { (40, 30) } else { (20, 20) };
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, (i * 20) as u8])
        });
        img.save(f.join(format!("p{i:02}.jpg"))).unwrap();
    }
    let out = d.path().join("folder-run");
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend([
        "--dataset",
        "folder",
        "--data-dir",
        f.to_str().unwrap(),
        "--image-size",
        "16",
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["data"]["image_shape"], serde_json::json!([3, 16, 16]));
    let grid = d.path().join("g.png");
    let o = run(&[
        "reconstruct",
        out.to_str().unwrap(),
        "--out",
        grid.to_str().unwrap(),
        "--n",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // One 16x16 image above its reconstruction, each scaled 3 times, with 2-pixel borders:
    // (48 + 2) + 2 wide, 2 (48 + 2) + 2 high; in colour (the image's channels differ).
    let img = image::open(&grid).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (52, 102));
    let original = (2..50).flat_map(|x| (2..50).map(move |y| (x, y)));
    assert!(
        original
            .map(|(x, y)| img.get_pixel(x, y).0)
            .any(|[r, g, b]| r != g || g != b),
        "the original is grey"
    );
}

#[test]
fn soft_em_with_a_vib_rate_and_learned_prior_trains_saves_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("run");
    let o = tiny(
        &r,
        &[
            "--quantizer",
            "soft-em",
            "--samples",
            "4",
            "--rate",
            "vib",
            "--rate-weight",
            "0.1",
            "--prior",
            "learned",
            "--epochs",
            "2",
            "--max-steps",
            "7",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["train", "--resume", r.to_str().unwrap(), "--no-progress"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(state_step(&r), 12);
    let recs = jsonl(&r);
    assert!(
        recs.iter()
            .filter(|x| x["kind"] == "train")
            .all(|x| x["rate"].as_f64().is_some_and(|v| v.is_finite()))
    );
    let ev = recs.iter().rev().find(|x| x["kind"] == "eval").unwrap();
    assert!(
        ev["h_z_given_i"].as_f64().unwrap() > 0.0,
        "soft EM spreads its posterior"
    );
    let bytes = std::fs::read(latest(&r).join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let logits = st.tensor("prior.logits").unwrap();
    assert_eq!(logits.shape(), &[32]);
    assert!(
        logits
            .data()
            .chunks(4)
            .any(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) != 0.0),
        "the learned prior moved"
    );
    assert!(st.tensor("quantizer.ema_sum_hidden").is_ok());
}

#[test]
fn bench_prints_one_json_line_a_case() {
    // Items a run: assign and estep 8192 vectors of D = 64 (flops 2 N K D), train and eval the
    // batch given.
    for (args, case, items, unit, flops) in [
        (
            &[
                "bench", "--case", "assign", "--k", "300", "--iters", "1", "--warmup", "0",
            ][..],
            "assign K=300",
            8192.0,
            "vectors",
            Some(2.0 * 8192.0 * 300.0 * 64.0),
        ),
        (
            &[
                "bench", "--case", "estep", "--k", "300", "--iters", "1", "--warmup", "0",
            ][..],
            "estep K=300",
            8192.0,
            "vectors",
            Some(2.0 * 8192.0 * 300.0 * 64.0),
        ),
        (
            &[
                "bench",
                "--case",
                "train",
                "--batch",
                "2",
                "--quantizer",
                "vq-ema",
                "--iters",
                "1",
                "--warmup",
                "0",
            ][..],
            "train mnist vq-ema",
            2.0,
            "images",
            None,
        ),
        (
            &[
                "bench", "--case", "eval", "--batch", "3", "--iters", "1", "--warmup", "0",
            ][..],
            "eval mnist vq",
            3.0,
            "images",
            None,
        ),
    ] {
        let t0 = std::time::Instant::now();
        let o = run(args);
        let wall = t0.elapsed().as_secs_f64();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        let v: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).expect("one JSON line");
        let num = |key: &str| {
            v[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{args:?}: no number {key} in {v}"))
        };
        assert_eq!(v["impl"], "vqib");
        assert_eq!(v["case"], case, "{v}");
        assert_eq!(v["unit"], unit, "{v}");
        assert!(num("threads") >= 1.0, "{v}");
        // One timed run, within the process's own lifetime.
        let secs = num("secs_per_run");
        assert!(
            secs > 0.0 && secs < wall,
            "{args:?}: {secs} s a run, {wall} s in all"
        );
        let per_s = num("items_per_s");
        assert!(
            (per_s - items / secs).abs() <= 1e-9 * per_s,
            "{args:?}: {per_s} items/s, {items} items in {secs} s"
        );
        let gflops = num("gflops");
        assert!(gflops.is_finite() && gflops > 0.0, "{args:?}: {v}");
        if let Some(f) = flops {
            assert!(
                (gflops - f / secs / 1e9).abs() <= 1e-9 * gflops,
                "{args:?}: {gflops} GFLOP/s, {f} flops in {secs} s"
            );
        }
        // Resident memory: the starting figure is positive, the high-water mark no lower.
        let (base, peak) = (num("base_rss_mib"), num("peak_rss_mib"));
        assert!(
            base > 0.0 && peak >= base && peak.is_finite(),
            "{args:?}: {v}"
        );
    }
}

/// `compress` / `decompress` through the binary: a round trip, a folder of images, and every
/// damaged or foreign file exiting 2 with the file named and nothing written.
#[test]
fn compress_decompress_and_every_bad_file() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    for (run, seed) in [(&a, "1"), (&b, "2")] {
        let o = tiny(run, &["--epochs", "1", "--seed", seed]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    let file = d.path().join("test.vqz");
    let f = file.to_str().unwrap();
    let o = run(&["compress", a_s, "--split", "test", "--out", f, "--compare"]);
    assert!(o.status.success(), "{}", text(&o));
    for row in ["coded bits / pixel", "ratio to PNG", "PSNR"] {
        assert!(text(&o).contains(row), "{}", text(&o));
    }
    let out = d.path().join("png");
    let o = run(&["decompress", a_s, f, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 40);
    // A folder of images of another size is resized to the run's.
    let imgs = d.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for i in 0..3u8 {
        image::GrayImage::from_pixel(30, 30, image::Luma([i * 60]))
            .save(imgs.join(format!("{i}.png")))
            .unwrap();
    }
    let g = d.path().join("imgs.vqz");
    let o = run(&[
        "compress",
        a_s,
        "--input",
        imgs.to_str().unwrap(),
        "--out",
        g.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let good = std::fs::read(&file).unwrap();
    let bad = d.path().join("bad.vqz");
    let bad_s = bad.to_str().unwrap();
    let target = d.path().join("never");
    let t = target.to_str().unwrap();
    let expect_refused = |run_dir: &str, needles: &[&str]| {
        let o = run(&["decompress", run_dir, bad_s, "--out", t]);
        expect_input_error(&o, needles);
        assert!(!target.exists(), "decompress left output behind");
        let stray = std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp-")
            })
            .count();
        assert_eq!(stray, 0);
    };
    let mut m = good.clone();
    m[0] ^= 0xff;
    std::fs::write(&bad, &m).unwrap();
    expect_refused(a_s, &["bad.vqz", "magic"]);
    let mut v = good.clone();
    v[8] = 9;
    std::fs::write(&bad, &v).unwrap();
    expect_refused(a_s, &["bad.vqz", "version 9"]);
    std::fs::write(&bad, &good[..good.len() - 9]).unwrap();
    expect_refused(a_s, &["bad.vqz", "truncated"]);
    let mut flip = good.clone();
    flip[80] ^= 0x10;
    std::fs::write(&bad, &flip).unwrap();
    expect_refused(a_s, &["bad.vqz", "checksum"]);
    // Another model's file.
    std::fs::write(&bad, &good).unwrap();
    expect_refused(b_s, &["bad.vqz", "another model"]);
    // A coding prior that disagrees with the file's (changed, its checksum made consistent).
    let prior_path = a.join("code-prior.json");
    let prior_text = std::fs::read_to_string(&prior_path).unwrap();
    let mut prior: serde_json::Value = serde_json::from_str(&prior_text).unwrap();
    let mut counts: Vec<u64> = serde_json::from_value(prior["counts"].clone()).unwrap();
    counts[0] += 1;
    // r(z) = (n_z + 1/2) / (N + K/2), as the README gives it; its CRC-32 as the file states it.
    let n: u64 = counts.iter().sum();
    let denom = n as f64 + counts.len() as f64 / 2.0;
    let mut h = crc32fast::Hasher::new();
    counts
        .iter()
        .for_each(|&c| h.update(&((c as f64 + 0.5) / denom).to_le_bytes()));
    prior["counts"] = serde_json::json!(counts);
    prior["checksum"] = serde_json::json!(h.finalize());
    std::fs::write(&prior_path, serde_json::to_string(&prior).unwrap()).unwrap();
    expect_refused(a_s, &["bad.vqz", "another prior"]);
    // A damaged prior file is named.
    let mut damaged: serde_json::Value = serde_json::from_str(&prior_text).unwrap();
    damaged["checksum"] = serde_json::json!(damaged["checksum"].as_u64().unwrap() ^ 1);
    std::fs::write(&prior_path, damaged.to_string()).unwrap();
    expect_refused(a_s, &["code-prior.json", "checksum"]);
    std::fs::write(&prior_path, &prior_text).unwrap();
    // Decompress never overwrites.
    let o = run(&["decompress", a_s, f, "--out", out.to_str().unwrap()]);
    expect_input_error(&o, &["png", "already exists"]);
}
