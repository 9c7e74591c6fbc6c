use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::format::Container;
use super::prior::{CodePrior, checksum};
use super::{EntropyModel, payload_bits};

/// `n` codes drawn from `p` (inverse CDF).
fn sample(p: &[f64], n: usize, seed: u64) -> Vec<u32> {
    let total: f64 = p.iter().sum();
    let mut cdf = Vec::with_capacity(p.len());
    let mut acc = 0.0;
    for v in p {
        acc += v / total;
        cdf.push(acc);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u: f64 = rng.r#gen();
            cdf.partition_point(|&c| c < u).min(p.len() - 1) as u32
        })
        .collect()
}

/// Uniform, and skewed (geometric: at K = 65536 most codes have probability far below 1e-6).
fn priors(k: usize) -> Vec<(&'static str, Vec<f64>)> {
    let skew: Vec<f64> = (0..k).map(|i| (-(i as f64) / 40.0).exp()).collect();
    vec![("uniform", vec![1.0; k]), ("skewed", skew)]
}

#[test]
fn random_code_maps_round_trip_bit_exactly() {
    for k in [1usize, 2, 3, 512, 65536] {
        for (name, p) in priors(k) {
            let m = EntropyModel::new(&p).unwrap();
            for (n, seed) in [(0usize, 1u64), (1, 2), (4999, 3)] {
                // Drawn from the prior, and (harder) uniformly over all K codes.
                let mut rng = StdRng::seed_from_u64(seed);
                for codes in [
                    sample(&p, n, seed),
                    (0..n).map(|_| rng.gen_range(0..k as u32)).collect(),
                ] {
                    let words = m.encode(&codes).unwrap();
                    let back = m.decode(words, codes.len()).unwrap();
                    assert_eq!(back, codes, "K = {k}, {name}, n = {n}");
                }
            }
        }
    }
}

/// Residual stages: one prior a stage, a code map's i-th code coded with stage i mod S's. Tuples
/// round-trip bit for bit; the ideal length is the sum of the stages' -log2 r_s(k_s), each prior
/// normalised on its own; a code of the wrong stage is refused.
#[test]
fn staged_code_maps_round_trip_with_a_prior_per_stage() {
    let (k, s, n) = (16usize, 3usize, 2000usize);
    let per_stage: Vec<Vec<f64>> = (0..s)
        .map(|j| (0..k).map(|i| (-((i + j) as f64) / 3.0).exp()).collect())
        .collect();
    let flat: Vec<f64> = per_stage.concat();
    let m = EntropyModel::staged(&flat, s).unwrap();
    assert_eq!((m.k(), m.stages()), (k * s, s));
    let mut codes = Vec::with_capacity(n * s);
    for j in 0..n {
        for (st, p) in per_stage.iter().enumerate() {
            let c = sample(p, 1, (j * s + st) as u64)[0];
            codes.push((st * k) as u32 + c);
        }
    }
    let words = m.encode(&codes).unwrap();
    assert_eq!(m.decode(words.clone(), codes.len()).unwrap(), codes);
    let want: f64 = codes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let p = &per_stage[i % s];
            let total: f64 = p.iter().sum();
            -(p[c as usize - (i % s) * k] / total).log2()
        })
        .sum();
    assert!((m.ideal_bits(&codes) - want).abs() < 1e-6 * want);
    assert!(super::payload_bits(words.len()) <= 1.01 * want + 64.0);
    let mut wrong = codes.clone();
    wrong[1] = 0; // stage 1's position holding a stage-0 code
    assert!(m.encode(&wrong).unwrap_err().contains("stage 1"));
    assert!(EntropyModel::staged(&flat[..k * s - 1], s).is_err());
}

#[test]
fn coded_length_is_within_one_percent_of_the_ideal() {
    for k in [2usize, 16, 512, 65536] {
        for (name, p) in priors(k) {
            let m = EntropyModel::new(&p).unwrap();
            let codes = sample(&p, 200_000, k as u64);
            let ideal = m.ideal_bits(&codes);
            let coded = payload_bits(m.encode(&codes).unwrap().len());
            assert!(
                coded <= 1.01 * ideal + 64.0 && coded >= 0.99 * ideal - 64.0,
                "K = {k} {name}: coded {coded} bits, ideal {ideal}"
            );
            if name == "skewed" && k == 65536 {
                let tiny = m.probabilities().iter().filter(|&&q| q < 1e-6).count();
                assert!(tiny > 60_000, "{tiny} codes below 1e-6");
            }
        }
    }
}

#[test]
fn a_rare_code_still_codes_and_costs_its_length() {
    // A code of probability 1e-9 (below the coder's 2^-24 resolution) gets the smallest slot.
    let mut p = vec![1.0; 4];
    p.push(1e-9);
    let m = EntropyModel::new(&p).unwrap();
    let codes = vec![4u32; 10];
    let back = m.decode(m.encode(&codes).unwrap(), 10).unwrap();
    assert_eq!(back, codes);
    assert!(m.encode(&[5]).unwrap_err().contains("not below K = 5"));
    assert!(EntropyModel::new(&[]).is_err());
    assert!(EntropyModel::new(&[1.0, f64::NAN]).is_err());
    assert!(EntropyModel::new(&[0.0, 0.0]).is_err());
}

#[test]
fn decoding_checks_the_stream_is_used_up() {
    let m = EntropyModel::new(&[1.0; 16]).unwrap();
    let codes: Vec<u32> = (0..100).map(|i| i % 16).collect();
    let words = m.encode(&codes).unwrap();
    // Asking for fewer codes than were coded leaves data over.
    assert!(
        m.decode(words.clone(), 50)
            .unwrap_err()
            .contains("more than")
    );
    let mut zero_end = words;
    *zero_end.last_mut().unwrap() = 0;
    assert!(m.decode(zero_end, 100).is_err());
}

#[test]
fn the_empirical_prior_gives_unseen_codes_probability_and_is_checksummed() {
    let p = CodePrior::empirical(&[6, 0, 2, 0], 2, "h".into());
    // (n + 1/2) / (N + K/2) with N = 8, K = 4.
    let want = [6.5 / 10.0, 0.5 / 10.0, 2.5 / 10.0, 0.5 / 10.0];
    for (a, b) in p.probabilities.iter().zip(want) {
        assert!((a - b).abs() < 1e-15);
    }
    assert_eq!(p.checksum, checksum(&want));
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("code-prior.json");
    p.save(&f).unwrap();
    assert_eq!(CodePrior::load(&f).unwrap(), p);
    // Edited counts no longer match the checksum.
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains("\n    6,"), "{text}");
    let text = text.replace("\n    6,", "\n    7,");
    std::fs::write(&f, text).unwrap();
    let e = CodePrior::load(&f).unwrap_err().to_string();
    assert!(
        e.contains("code-prior.json") && e.contains("checksum"),
        "{e}"
    );
    let l = CodePrior::learned(&[0.25f64.ln(), 0.75f64.ln()], "h".into());
    assert!((l.probabilities[1] - 0.75).abs() < 1e-12);
}

fn container() -> Container {
    Container {
        stages: 1,
        model_hash: [7; 32],
        prior_checksum: 0xdead_beef,
        k: 512,
        images: 2,
        image_shape: [1, 28, 28],
        grid: [7, 7],
        payload: vec![1, 2, 3, 0x8000_0000],
    }
}

#[test]
fn the_container_round_trips_and_every_damage_is_named() {
    let c = container();
    let bytes = c.to_bytes();
    let p = Path::new("/x/codes.vqz");
    assert_eq!(Container::parse(&bytes, p).unwrap(), c);
    assert_eq!(c.codes(), 98);
    let err = |b: &[u8]| Container::parse(b, p).unwrap_err().to_string();
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert!(err(&magic).contains("wrong magic"));
    let mut version = bytes.clone();
    version[8] = 3;
    assert!(err(&version).contains("format version 3"));
    // Version 1 files (no end mark) are refused with the reason.
    version[8] = 1;
    let e = err(&version);
    assert!(
        e.contains("format version 1") && e.contains("compress the images again"),
        "{e}"
    );
    for cut in [0, 7, 40, bytes.len() - 5, bytes.len() - 1] {
        let e = err(&bytes[..cut]);
        assert!(e.contains("codes.vqz"), "{e}");
        assert!(
            e.contains("truncated") || e.contains("magic") || e.contains("checksum"),
            "cut at {cut}: {e}"
        );
    }
    // Every single-bit flip after the magic and version is caught by the checksum or a check.
    for bit in (10 * 8)..(bytes.len() * 8) {
        let mut f = bytes.clone();
        f[bit / 8] ^= 1 << (bit % 8);
        let e = err(&f);
        assert!(e.contains("codes.vqz"), "{e}");
    }
    // A declared payload larger than the file is refused before anything of that size exists.
    let mut huge = bytes.clone();
    huge[64..72].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(&huge).contains("declares"));
}

/// `bytes` with the image count (offset 50) set to `images` and the trailing CRC-32 recomputed,
/// as anyone editing the file would.
pub(crate) fn with_count(bytes: &[u8], images: u32) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[50..54].copy_from_slice(&images.to_le_bytes());
    let body = b.len() - 4;
    let crc = crc32fast::hash(&b[..body]);
    b[body..].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn an_image_count_that_disagrees_with_the_payload_is_refused() {
    let p = Path::new("/x/codes.vqz");
    for k in [2usize, 16, 512] {
        let m = EntropyModel::new(&vec![1.0; k]).unwrap();
        let mut rng = StdRng::seed_from_u64(k as u64);
        // Two 7x7 code maps; the last image all code 0 (the code that costs nothing when it is
        // pushed first onto an empty coder), so a count raised by whole images of 0 codes would
        // decode were the stream's end not marked.
        let mut codes: Vec<u32> = (0..49).map(|_| rng.gen_range(0..k as u32)).collect();
        codes.extend([0u32; 49]);
        for codes in [codes, vec![0u32; 98]] {
            let c = Container {
                stages: 1,
                k: k as u32,
                payload: m.encode(&codes).unwrap(),
                ..container()
            };
            let bytes = c.to_bytes();
            let decode = |b: &[u8]| {
                let c = Container::parse(b, p).unwrap();
                m.decode(c.payload.clone(), c.codes())
            };
            assert_eq!(decode(&bytes).unwrap(), codes, "K = {k}");
            for images in [3u32, 20, 640, 100_000] {
                let e = decode(&with_count(&bytes, images)).unwrap_err();
                let want = format!(
                    "ends after 98 codes, but the header declares {}",
                    49 * images
                );
                assert!(e.contains(&want), "K = {k}, {images} images: {e}");
            }
            let e = decode(&with_count(&bytes, 1)).unwrap_err();
            assert!(e.contains("more than the 49 codes"), "K = {k}: {e}");
        }
    }
}

#[test]
fn a_count_whose_images_do_not_fit_in_memory_is_refused_before_decoding() {
    // K = 1: every code costs 0 bits, the payload is empty whatever the count; a file of 76
    // bytes declares 2^32 - 1 images.
    let p = Path::new("/x/one.vqz");
    let c = Container {
        stages: 1,
        k: 1,
        images: u32::MAX,
        payload: Vec::new(),
        ..container()
    };
    let bytes = c.to_bytes();
    assert_eq!(bytes.len(), 76);
    let c = Container::parse(&bytes, p).unwrap();
    // Codes (4 bytes) and 8-bit pixels of every image.
    assert_eq!(c.decoded_bytes(), u32::MAX as u128 * (4 * 49 + 784));
    let e = c.check_memory(p, 8 << 30).unwrap_err().to_string();
    for want in [
        "one.vqz",
        "4294967295 images",
        "3920.0 GiB of memory",
        "8.0 GiB",
    ] {
        assert!(e.contains(want), "lacks {want:?}: {e}");
    }
    let small = Container {
        stages: 1,
        images: 1000,
        ..c.clone()
    };
    assert!(small.check_memory(p, 980_000).is_ok());
    assert!(small.check_memory(p, 979_999).is_err());
}

#[test]
fn only_a_regular_file_is_read() {
    // A device of endless bytes is refused before reading, not read until memory runs out.
    let e = Container::read(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("not a regular file"),
        "{e}"
    );
    let d = tempfile::tempdir().unwrap();
    let e = Container::read(d.path()).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    let f = d.path().join("c.vqz");
    std::fs::write(&f, container().to_bytes()).unwrap();
    assert_eq!(Container::read(&f).unwrap(), container());
}

/// A small trained run of each quantizer: compress its test split, decompress, and get exactly
/// the PNGs of the model's hard decode; the coded rate sits within 1% of its ideal.
#[test]
fn decompress_gives_the_hard_decode_and_the_rate_meets_its_bound() {
    use crate::config::RunConfig;
    use crate::quantizer::QuantizerKind;
    use crate::report::pixel_u8;
    use crate::run::RunDir;
    use crate::train::{TrainOptions, Trainer, batch_tensor, load_run};
    let d = tempfile::tempdir().unwrap();
    for q in [
        QuantizerKind::Vq,
        QuantizerKind::SoftEm,
        QuantizerKind::Fsq,
        QuantizerKind::Lfq,
        QuantizerKind::Rvq,
        QuantizerKind::Sq,
    ] {
        let mut cfg = RunConfig::default();
        // 3 x 3 x 2 x 2 = 36 grid points; 2^4 corners; 2 stages of 16 codewords.
        cfg.quantizer = crate::quantizer::QuantizerConfig::small(q, 16);
        cfg.model.hidden = Some(8);
        cfg.data.shapes_train = 64;
        cfg.data.shapes_test = 300;
        cfg.training.epochs = 1;
        cfg.training.batch_size = Some(16);
        let dir = d.path().join(q.name());
        let out = Trainer::create(cfg, &dir)
            .unwrap()
            .fit(&TrainOptions::default())
            .unwrap();
        let coded = out
            .eval
            .unwrap()
            .coded
            .expect("eval.json carries the coded rate");
        assert!(dir.join(super::run::PRIOR_FILE).is_file());
        let run = RunDir::new(&dir);
        let file = d.path().join(format!("{}.vqz", q.name()));
        let c = super::compress_run(&run, &super::run::Source::Test, &file, None, true).unwrap();
        assert_eq!(c.rate, coded, "compress and eval agree");
        assert_eq!(
            c.file_bytes as f64,
            76.0 + c.rate.bits_per_image * 300.0 / 8.0
        );
        assert!(
            // Within 1% plus the end mark (at most 24 bits) and one 32-bit word.
            c.rate.bits_per_image <= 1.01 * c.rate.ideal_bits_per_image + 56.0 / 300.0,
            "{q}: {:?}",
            c.rate
        );
        let x = c.comparison.unwrap();
        assert_eq!(x.raw_bytes, 300 * 28 * 28);
        assert!(x.png_bytes > 300 * 60 && x.psnr > 5.0, "{x:?}");
        let pngs = d.path().join(format!("{}-png", q.name()));
        assert_eq!(super::decompress_run(&run, &file, &pngs).unwrap(), 300);
        // The reference: the hard decode of the same images, batch by batch.
        let (cfg, model, dev, _) = load_run(&run, None).unwrap();
        let data = cfg.data.load(cfg.training.seed).unwrap();
        let idx: Vec<usize> = (0..300).collect();
        let mut want = Vec::new();
        let qz = crate::quantizer::build(&cfg.quantizer);
        for b in idx.chunks(256) {
            let (codes, grid) = model.codes(batch_tensor(&data.test, b, &dev), qz.as_ref());
            let x =
                crate::quantizer::host_f32(model.decode_codes(&codes, qz.as_ref(), b.len(), grid));
            want.extend(x.into_iter().map(pixel_u8));
        }
        let mut got = Vec::new();
        for i in 0..300 {
            let img = image::open(pngs.join(format!("{i:06}.png"))).unwrap();
            got.extend(img.to_luma8().into_raw());
        }
        assert_eq!(
            got,
            want,
            "{}: decompressed images differ from the hard decode",
            q.name()
        );
    }
}
