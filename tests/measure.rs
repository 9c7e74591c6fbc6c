//! `vqib measure`: a model's latents, codes or logits in a safetensors file against vqib's own
//! evaluation of the same model, closed forms, chunked reading, and every kind of bad input.

mod common;

use std::path::{Path, PathBuf};

use burn::module::Module;
use common::{expect_input_error, run, text, tiny};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::Value;
use vqib::run::RunDir;

/// A tensor to write: name, dtype, shape, little-endian bytes.
type Entry = (&'static str, Dtype, Vec<usize>, Vec<u8>);

/// A bad file: its name, tensors, the flags, and what the message must say.
type BadCase = (
    &'static str,
    Vec<Entry>,
    Vec<&'static str>,
    Vec<&'static str>,
);

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f64s(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i32s(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_st(path: &Path, entries: &[Entry]) {
    let views: Vec<(&str, TensorView)> = entries
        .iter()
        .map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, &None).unwrap()).unwrap();
}

/// `vqib measure FILE --json OUT ARGS` (must succeed): the JSON and the printed table.
fn measure(file: &Path, args: &[&str]) -> (Value, String) {
    let out = file.with_extension(format!("{}.json", args.join("_").replace('-', "")));
    let mut all = vec![
        "measure",
        file.to_str().unwrap(),
        "--json",
        out.to_str().unwrap(),
    ];
    all.extend(args);
    let o = run(&all);
    assert!(o.status.success(), "measure {args:?}: {}", text(&o));
    let v = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (v, text(&o))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

/// Equal to 1e-9, relative where the values are larger than 1.
fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        "{what}: measure {a} vs {b}"
    );
}

const INFO: [&str; 7] = [
    "h_z",
    "h_z_miller_madow",
    "perplexity",
    "h_z_given_i",
    "mutual_info",
    "cross_entropy",
    "kl",
];

const RELEVANCE: [&str; 6] = [
    "h_y",
    "h_y_miller_madow",
    "i_zy",
    "h_z_given_y",
    "argmax_i_zy",
    "argmax_i_zy_miller_madow",
];

/// The measured quantities against an evaluation's summary and relevance.
fn same_as_eval(m: &Value, info: &Value, relevance: &Value, what: &str) {
    for k in INFO {
        close(f(&m["info"], k), f(info, k), &format!("{what} {k}"));
    }
    assert_eq!(
        m["info"]["codes_used"], info["codes_used"],
        "{what} codes used"
    );
    assert_eq!(m["info"]["n"], info["n"], "{what} N");
    for k in RELEVANCE {
        close(
            f(&m["relevance"], k),
            f(relevance, k),
            &format!("{what} {k}"),
        );
    }
}

/// A tiny run trained through the binary; its test split's z_e (through the saved model's
/// encoder), codebook, learned-prior tensor and labels written to a safetensors file, and its
/// nearest codes to another: `vqib measure` gives eval.json's numbers.
#[test]
fn measure_agrees_with_the_run_s_own_evaluation() {
    let d = tempfile::tempdir().unwrap();
    let run_dir = d.path().join("run");
    let o = tiny(&run_dir, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let eval: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("eval.json")).unwrap()).unwrap();
    let (cfg, model, dev, _) = vqib::train::load_run(&RunDir::new(&run_dir), None).unwrap();
    let model = model.valid();
    let data = cfg.data.load(cfg.training.seed).unwrap();
    let set = &data.test;
    // In the evaluation's batches (256 images), so that the encoder sees the same batches.
    let idx: Vec<usize> = (0..set.n).collect();
    let (mut z, mut codes, mut grid) = (Vec::new(), Vec::new(), [0, 0]);
    for chunk in idx.chunks(256) {
        let x = vqib::train::batch_tensor(set, chunk, &dev);
        let (zb, g) = model.latents(x.clone());
        z.extend(zb);
        grid = g;
        let q = vqib::quantizer::build(&cfg.quantizer);
        codes.extend(model.codes(x, q.as_ref()).0);
    }
    let (k, dim, [h, w]) = (model.k(), model.d(), grid);
    let log_prior = vqib::device::host_f32(model.log_prior(1));
    let labels: Vec<i32> = set
        .labels
        .as_ref()
        .unwrap()
        .iter()
        .map(|&l| l as i32)
        .collect();
    let ze = d.path().join("ze.safetensors");
    write_st(
        &ze,
        &[
            ("z_e", Dtype::F32, vec![set.n, h, w, dim], f32s(&z)),
            (
                "codebook",
                Dtype::F32,
                vec![k, dim],
                f32s(&model.codebook_values()),
            ),
            ("labels", Dtype::I32, vec![set.n], i32s(&labels)),
            ("log_prior", Dtype::F32, vec![k], f32s(&log_prior)),
        ],
    );
    // Hard: the nearest codeword, as the run's vq quantizer assigns.
    assert_eq!(cfg.quantizer.kind.name(), "vq");
    let (hard, table) = measure(&ze, &[]);
    same_as_eval(&hard, &eval["assigned"], &eval["relevance"], "hard");
    assert_eq!(hard["histogram"], eval["histogram"]);
    assert!(table.contains("I(I;Z) (nats)") && table.contains("KT-coded bits/image"));
    // Soft: softmax(-d^2 / tau) of the same codebook.
    let tau = cfg.quantizer.temperature.to_string();
    let (soft, _) = measure(&ze, &["--posterior", "soft", "--temperature", &tau]);
    same_as_eval(&soft, &eval["soft"], &eval["soft_relevance"], "soft");
    assert!(f(&soft["info"], "h_z_given_i") > 0.0, "a soft posterior");
    // The argmax codes alone, as a PyTorch quantizer's indices would come.
    let codes_file = d.path().join("codes.safetensors");
    let codes: Vec<i64> = codes.iter().map(|&c| c as i64).collect();
    write_st(
        &codes_file,
        &[
            ("codes", Dtype::I64, vec![set.n, h, w], i64s(&codes)),
            (
                "labels",
                Dtype::U8,
                vec![set.n],
                set.labels.clone().unwrap(),
            ),
            ("log_prior", Dtype::F32, vec![k], f32s(&log_prior)),
        ],
    );
    let (c, _) = measure(&codes_file, &[]);
    same_as_eval(&c, &eval["assigned"], &eval["relevance"], "codes");
    assert_eq!(c["code_space"], k as u64);
    // Coded length: the KT marginal of the test codes, against the codec's formula.
    let mut n_z = vec![0u64; k];
    for &c in &codes {
        n_z[c as usize] += 1;
    }
    let p = vqib::codec::prior::kt_probabilities(&n_z);
    let bits: f64 = codes.iter().map(|&c| -p[c as usize].log2()).sum();
    close(f(&c["coded"], "bits"), bits, "KT bits");
    close(
        f(&c["coded"], "bits_per_image"),
        bits / set.n as f64,
        "KT bits/image",
    );
    eprintln!(
        "measure vs eval.json: hard H(Z) {} / {}, I(I;Z) {} / {}, I(Z;Y) {} / {}; soft H(Z|I) {} \
         / {}, KL {} / {}",
        hard["info"]["h_z"],
        eval["assigned"]["h_z"],
        hard["info"]["mutual_info"],
        eval["assigned"]["mutual_info"],
        hard["relevance"]["i_zy"],
        eval["relevance"]["i_zy"],
        soft["info"]["h_z_given_i"],
        eval["soft"]["h_z_given_i"],
        soft["info"]["kl"],
        eval["soft"]["kl"],
    );
}

/// Four codes used equally often, a label that halves them: closed forms, counted in arrays
/// (K = 4) and in a hash map (K = 1024 > 4N) alike.
#[test]
fn uniform_codes_have_their_closed_forms() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("u.safetensors");
    // Images 0, 1 (label 0) use codes 0, 1; images 2, 3 (label 1) codes 2, 3.
    let codes = [0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3];
    write_st(
        &file,
        &[
            ("codes", Dtype::I32, vec![4, 2, 2], i32s(&codes)),
            ("labels", Dtype::I64, vec![4], i64s(&[7, 7, 9, 9])),
        ],
    );
    let (ln2, ln4) = (2f64.ln(), 4f64.ln());
    let (m, table) = measure(&file, &["--code-space", "4"]);
    let i = &m["info"];
    for (k, want) in [
        ("h_z", ln4),
        ("perplexity", 4.0),
        ("h_z_given_i", 0.0),
        ("mutual_info", ln4),
        ("cross_entropy", ln4),
        ("kl", ln4),
        ("h_z_miller_madow", ln4 + 3.0 / 32.0),
    ] {
        close(f(i, k), want, k);
    }
    close(f(&m["info_bits"], "h_z"), 2.0, "H(Z) bits");
    assert_eq!(i["codes_used"], 4);
    assert_eq!(m["counted_sparse"], false);
    for (k, want) in [("h_y", ln2), ("i_zy", ln2), ("h_z_given_y", ln2)] {
        close(f(&m["relevance"], k), want, k);
    }
    // KT: r(z) = (4 + 1/2) / (16 + 4/2) = 1/4, two bits a vector.
    close(f(&m["coded"], "bits"), 32.0, "KT bits");
    close(f(&m["coded"], "bits_per_vector"), 2.0, "KT bits/vector");
    close(f(&m["coded"], "bits_per_image"), 8.0, "KT bits/image");
    close(f(&m, "h_z_bits_per_image"), 8.0, "L H(Z) bits");
    assert!(table.contains("4 of 4"), "{table}");

    let (s, table) = measure(&file, &["--code-space", "1024"]);
    assert_eq!(s["counted_sparse"], true);
    assert_eq!(s["undersampled"], true);
    assert!(
        table.contains("note:") && table.contains("biased"),
        "{table}"
    );
    for k in ["h_z", "h_z_miller_madow", "mutual_info", "h_z_given_i"] {
        close(f(&s["info"], k), f(i, k), k);
    }
    for k in RELEVANCE {
        close(f(&s["relevance"], k), f(&m["relevance"], k), k);
    }
    close(f(&s["info"], "cross_entropy"), 1024f64.ln(), "CE");
    close(
        f(&s["coded"], "bits"),
        16.0 * ((16.0 + 512.0) / 4.5f64).log2(),
        "KT bits, K = 1024",
    );
    // Without --code-space the code space is the largest code + 1, said in a note.
    let (n, table) = measure(&file, &[]);
    assert_eq!(n["code_space"], 4);
    assert!(table.contains("largest code + 1"), "{table}");
}

/// Two stages: a copy of stage 1 adds nothing to the tuple; an independent stage adds its
/// entropy. Tuple spaces past 2^64 and past 2^128 give the same numbers.
#[test]
fn staged_codes_measure_each_stage_and_their_tuple() {
    let d = tempfile::tempdir().unwrap();
    // Stage 1 over 8 positions: code 0 once, 1 twice, 2 five times.
    let s1 = [0i64, 1, 1, 2, 2, 2, 2, 2];
    let h1 = -[1.0f64, 2.0, 5.0]
        .iter()
        .map(|c| c / 8.0 * (c / 8.0f64).ln())
        .sum::<f64>();
    let copy = d.path().join("copy.safetensors");
    let v: Vec<i64> = s1.iter().flat_map(|&c| [c, c]).collect();
    write_st(&copy, &[("codes", Dtype::I64, vec![2, 2, 2, 2], i64s(&v))]);
    let (m, table) = measure(&copy, &["--code-space", "3"]);
    close(f(&m["info"], "h_z"), h1, "joint H of a copy");
    assert_eq!(m["info"]["codes_used"], 3);
    let stages = m["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    for s in stages {
        close(f(&s["info"], "h_z"), h1, "stage H");
    }
    close(
        f(&m["info"], "cross_entropy"),
        9f64.ln(),
        "joint CE, uniform over 3 x 3",
    );
    assert!(
        table.contains("stage 2") && table.contains("joint"),
        "{table}"
    );

    // Independent: stage 1 = i mod 2, stage 2 = (i / 2) mod 2: H = ln 2 + ln 2.
    let indep = d.path().join("indep.safetensors");
    let v: Vec<i64> = (0..8).flat_map(|i| [i % 2, (i / 2) % 2]).collect();
    write_st(&indep, &[("codes", Dtype::I64, vec![2, 2, 2, 2], i64s(&v))]);
    let (m, _) = measure(&indep, &["--code-space", "2,2"]);
    close(
        f(&m["info"], "h_z"),
        4f64.ln(),
        "joint H of independent stages",
    );
    let (wide, _) = measure(&indep, &["--code-space", "4294967296,4294967296"]);
    close(
        f(&wide["info"], "h_z"),
        4f64.ln(),
        "joint H, tuple space 2^64",
    );
    assert_eq!(wide["code_space"], Value::Null);
    close(f(&wide, "log2_code_space"), 64.0, "log2 K^S");
    // Nine stages of 2^62 codes: a tuple space of 2^558, counted by the tuples themselves.
    let nine = d.path().join("nine.safetensors");
    let v: Vec<i64> = (0..8i64)
        .flat_map(|i| [i % 2, (i / 2) % 2, 0, 0, 0, 0, 0, 0, i / 4])
        .collect();
    write_st(&nine, &[("codes", Dtype::I64, vec![2, 2, 2, 9], i64s(&v))]);
    let (m9, _) = measure(&nine, &["--code-space", &(1u64 << 62).to_string()]);
    close(
        f(&m9["info"], "h_z"),
        8f64.ln(),
        "joint H of three bits in nine stages",
    );
    assert!(f(&m9["coded"], "bits").is_finite());
}

/// Logits: rows uniform over K give H(Z|I) = ln K and I(I;Z) = 0; nearly one-hot rows give
/// I(I;Z) = H(Z).
#[test]
fn logits_give_the_soft_posterior_s_closed_forms() {
    let d = tempfile::tempdir().unwrap();
    let (n, k) = (12usize, 5usize);
    let flat = d.path().join("flat.safetensors");
    write_st(
        &flat,
        &[("logits", Dtype::F32, vec![n, k], f32s(&vec![0.3; n * k]))],
    );
    let (m, _) = measure(&flat, &[]);
    let lk = (k as f64).ln();
    for (key, want) in [
        ("h_z_given_i", lk),
        ("h_z", lk),
        ("mutual_info", 0.0),
        ("cross_entropy", lk),
        ("kl", 0.0),
    ] {
        close(f(&m["info"], key), want, key);
    }
    assert_eq!(m["posterior"], "soft");
    // Every row's most probable code is code 0 (the first of equals).
    assert_eq!(m["info"]["codes_used"], 1);
    close(
        f(&m["coded"], "bits"),
        n as f64 * ((n as f64 + 2.5) / (n as f64 + 0.5)).log2(),
        "KT bits",
    );
    // Nearly one-hot rows, float64, in [B, h, w, K]: code i mod 5 of position i.
    let sharp = d.path().join("sharp.safetensors");
    let v: Vec<f64> = (0..n * k)
        .map(|e| if (e / k) % k == e % k { 60.0 } else { 0.0 })
        .collect();
    write_st(
        &sharp,
        &[("logits", Dtype::F64, vec![3, 2, 2, k], f64s(&v))],
    );
    let (m, _) = measure(&sharp, &[]);
    let p = [3.0f64, 3.0, 2.0, 2.0, 2.0].map(|c| c / 12.0);
    let h = -p.iter().map(|q| q * q.ln()).sum::<f64>();
    close(f(&m["info"], "h_z"), h, "H(Z)");
    assert!(f(&m["info"], "h_z_given_i") < 1e-20);
    close(f(&m["info"], "mutual_info"), h, "I(I;Z)");
    let (hard, _) = measure(&sharp, &["--posterior", "hard"]);
    close(f(&hard["info"], "h_z"), h, "hard H(Z)");
    assert_eq!(hard["info"]["h_z_given_i"], 0.0);
}

/// A file of N latent vectors read in chunks of a few rows (not aligned with the images) gives
/// the one-chunk result.
#[test]
fn chunked_reading_equals_one_chunk() {
    let d = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let (n, dim, k, per) = (250usize, 6usize, 20usize, 5usize);
    let z: Vec<f32> = (0..n * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let e: Vec<f32> = (0..k * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let labels: Vec<i32> = (0..n / per).map(|i| (i % 3) as i32).collect();
    let ze = d.path().join("ze.safetensors");
    write_st(
        &ze,
        &[
            ("z_e", Dtype::F32, vec![n, dim], f32s(&z)),
            ("codebook", Dtype::F32, vec![k, dim], f32s(&e)),
            ("labels", Dtype::I32, vec![n / per], i32s(&labels)),
        ],
    );
    let codes: Vec<i32> = (0..30 * 9 * 2).map(|_| rng.gen_range(0..7)).collect();
    let cf = d.path().join("codes.safetensors");
    write_st(
        &cf,
        &[("codes", Dtype::I32, vec![30, 3, 3, 2], i32s(&codes))],
    );
    let logits: Vec<f32> = (0..333 * 9).map(|_| rng.gen_range(-3.0..3.0)).collect();
    let lf = d.path().join("logits.safetensors");
    write_st(&lf, &[("logits", Dtype::F32, vec![333, 9], f32s(&logits))]);
    for (file, args) in [
        (&ze, vec!["--posterior", "hard"]),
        (&ze, vec!["--posterior", "soft", "--temperature", "0.3"]),
        (&cf, vec![]),
        (&lf, vec![]),
    ] {
        let (whole, _) = measure(file, &args);
        let mut chunked = args.clone();
        chunked.extend(["--chunk-rows", "7"]);
        let (parts, _) = measure(file, &chunked);
        for k in INFO {
            let (a, b) = (f(&parts["info"], k), f(&whole["info"], k));
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{file:?} {args:?} {k}: {a} vs {b}"
            );
        }
        assert_eq!(parts["info"]["codes_used"], whole["info"]["codes_used"]);
        assert_eq!(parts["stages"], whole["stages"], "{file:?}");
        assert_eq!(parts["coded"], whole["coded"]);
        if whole["relevance"].is_object() {
            for k in RELEVANCE {
                let (a, b) = (f(&parts["relevance"], k), f(&whole["relevance"], k));
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{args:?} {k}");
            }
            assert!(f(&whole["relevance"], "i_zy") > 0.0);
        }
    }
}

/// Every bad input exits 2 naming the file and the tensor (or the flag).
#[test]
fn bad_inputs_exit_2_naming_file_and_tensor() {
    let d = tempfile::tempdir().unwrap();
    let path = |name: &str| d.path().join(name);
    let check = |file: &PathBuf, args: &[&str], needles: &[&str]| {
        let mut all = vec!["measure", file.to_str().unwrap()];
        all.extend(args);
        let o = run(&all);
        let name = file.file_name().unwrap().to_str().unwrap();
        let mut n = vec![name];
        n.extend(needles);
        expect_input_error(&o, &n);
    };
    let ze = |n: usize| ("z_e", Dtype::F32, vec![n, 2], f32s(&vec![0.5; n * 2]));
    let cb = (
        "codebook",
        Dtype::F32,
        vec![3, 2],
        f32s(&[0.0, 1.0, 1.0, 0.0, 1.0, 1.0]),
    );

    let p = path("text.safetensors");
    std::fs::write(&p, b"this is not a safetensors file at all").unwrap();
    check(&p, &[], &["not a safetensors file"]);
    let p = path("short.safetensors");
    std::fs::write(&p, b"abc").unwrap();
    check(&p, &[], &["not a safetensors file"]);
    // A header whose offsets run past the file, and one that claims 2^70 elements.
    for (name, header) in [
        (
            "offsets.safetensors",
            r#"{"z_e":{"dtype":"F32","shape":[1000000,8],"data_offsets":[0,32000000]}}"#,
        ),
        (
            "huge.safetensors",
            r#"{"z_e":{"dtype":"F32","shape":[1099511627776,1073741824],"data_offsets":[0,16]}}"#,
        ),
    ] {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.extend([0u8; 16]);
        let p = path(name);
        std::fs::write(&p, b).unwrap();
        check(&p, &[], &["z_e"]);
    }
    let cases: Vec<BadCase> = vec![
        (
            "none.safetensors",
            vec![("labels", Dtype::I32, vec![2], i32s(&[0, 1]))],
            vec![],
            vec!["z_e", "codes", "logits"],
        ),
        (
            "nocodebook.safetensors",
            vec![ze(4)],
            vec![],
            vec!["codebook"],
        ),
        (
            "rank.safetensors",
            vec![
                ("z_e", Dtype::F32, vec![2, 2, 2], f32s(&[0.0; 8])),
                cb.clone(),
            ],
            vec![],
            vec!["z_e", "shape"],
        ),
        (
            "intz.safetensors",
            vec![("z_e", Dtype::I32, vec![2, 2], i32s(&[0; 4])), cb.clone()],
            vec![],
            vec!["z_e", "dtype"],
        ),
        (
            "boolz.safetensors",
            vec![("z_e", Dtype::BOOL, vec![2, 2], vec![0; 4]), cb.clone()],
            vec![],
            vec!["z_e", "BOOL"],
        ),
        (
            "codebookdim.safetensors",
            vec![ze(4), ("codebook", Dtype::F32, vec![2, 3], f32s(&[0.0; 6]))],
            vec![],
            vec!["codebook", "D = 2"],
        ),
        (
            "floatcodes.safetensors",
            vec![("codes", Dtype::F32, vec![1, 2, 2], f32s(&[0.0; 4]))],
            vec![],
            vec!["codes", "dtype"],
        ),
        (
            "outside.safetensors",
            vec![("codes", Dtype::I32, vec![1, 2, 2], i32s(&[0, 1, 2, 7]))],
            vec!["--code-space", "4"],
            vec!["codes", "outside", "[0, 1, 1]"],
        ),
        (
            "negative.safetensors",
            vec![("codes", Dtype::I64, vec![1, 2, 2], i64s(&[0, -1, 2, 3]))],
            vec![],
            vec!["codes", "-1", "non-negative"],
        ),
        (
            "empty.safetensors",
            vec![("codes", Dtype::I32, vec![0, 2, 2], Vec::new())],
            vec![],
            vec!["codes", "N = 0"],
        ),
        (
            "labels.safetensors",
            vec![
                ("codes", Dtype::I32, vec![2, 2, 2], i32s(&[0; 8])),
                ("labels", Dtype::I32, vec![3], i32s(&[0, 1, 2])),
            ],
            vec![],
            vec!["labels", "3 labels"],
        ),
        (
            "labels2d.safetensors",
            vec![
                ze(10),
                cb.clone(),
                ("labels", Dtype::I32, vec![3], i32s(&[0, 1, 2])),
            ],
            vec![],
            vec!["labels", "3 labels"],
        ),
        (
            "nan.safetensors",
            vec![
                (
                    "z_e",
                    Dtype::F32,
                    vec![2, 2],
                    f32s(&[0.0, 1.0, f32::NAN, 0.0]),
                ),
                cb.clone(),
            ],
            vec![],
            vec!["z_e", "NaN", "[1, 0]"],
        ),
        (
            "infcodebook.safetensors",
            vec![
                ze(2),
                (
                    "codebook",
                    Dtype::F32,
                    vec![1, 2],
                    f32s(&[f32::INFINITY, 0.0]),
                ),
            ],
            vec![],
            vec!["codebook", "infinity"],
        ),
        (
            "nanlogits.safetensors",
            vec![(
                "logits",
                Dtype::F64,
                vec![2, 2],
                f64s(&[0.0, 1.0, 0.0, f64::NAN]),
            )],
            vec![],
            vec!["logits", "NaN"],
        ),
        (
            "prior.safetensors",
            vec![
                ze(2),
                cb.clone(),
                ("prior", Dtype::F32, vec![3], f32s(&[0.5, 0.5, 0.5])),
            ],
            vec![],
            vec!["prior", "not 1"],
        ),
        (
            "priorlen.safetensors",
            vec![
                ze(2),
                cb.clone(),
                ("log_prior", Dtype::F32, vec![2], f32s(&[-0.7, -0.7])),
            ],
            vec![],
            vec!["log_prior", "K = 3"],
        ),
        (
            "two.safetensors",
            vec![
                ze(2),
                cb.clone(),
                ("codes", Dtype::I32, vec![1, 1, 2], i32s(&[0, 1])),
            ],
            vec![],
            vec!["z_e", "codes", "--input"],
        ),
    ];
    for (name, entries, args, needles) in cases {
        let p = path(name);
        write_st(&p, &entries);
        check(&p, &args, &needles);
    }
    // Flags.
    let good = path("good.safetensors");
    write_st(
        &good,
        &[("codes", Dtype::I32, vec![1, 2, 2], i32s(&[0, 1, 2, 3]))],
    );
    for (args, needle) in [
        (vec!["--chunk-rows", "0"], "--chunk-rows"),
        (vec!["--posterior", "soft"], "--posterior"),
        (vec!["--code-space", "4,4"], "--code-space"),
    ] {
        let mut all = vec!["measure", good.to_str().unwrap()];
        all.extend(&args);
        expect_input_error(&run(&all), &[needle]);
    }
    let soft = path("soft.safetensors");
    write_st(&soft, &[ze(2), cb.clone()]);
    let o = run(&[
        "measure",
        soft.to_str().unwrap(),
        "--posterior",
        "soft",
        "--temperature",
        "0",
    ]);
    expect_input_error(&o, &["--temperature"]);
    let o = run(&["measure", path("missing.safetensors").to_str().unwrap()]);
    expect_input_error(&o, &["missing.safetensors"]);
}
