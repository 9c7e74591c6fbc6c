//! The `.vqz` container of `vqib compress` ([`crate::codec::Container`]).

use super::harness::{Tally, probe};
use super::mutator::{Field, Mutator};

/// The `.vqz` container of `vqib compress`: header fields set huge, truncations, flips.
#[test]
fn fuzz_code_container() {
    use crate::codec::Container;
    let d = tempfile::tempdir().unwrap();
    let seed = Container {
        stages: 1,
        model_hash: [3; 32],
        prior_checksum: 7,
        k: 16,
        images: 3,
        image_shape: [1, 28, 28],
        grid: [7, 7],
        payload: (1..40).collect(),
    }
    .to_bytes();
    let fields = [
        Field::Le16(8),
        Field::Le32(46),
        Field::Le32(50),
        Field::Le64(64),
        Field::Le16(60),
    ];
    let mut m = Mutator::new(0x7a2);
    let mut t = Tally::new("codec::Container::read");
    let p = d.path().join("codes.vqz");
    for _ in 0..600 {
        let (bytes, desc) = m.bytes(&seed, &fields);
        std::fs::write(&p, &bytes).unwrap();
        let pr = probe(|| Container::read(&p));
        let _ = t.check(pr, &desc, &bytes, &["codes.vqz"], false);
    }
    t.report();
    assert!(t.rejected > 0);
}

/// The image count of a `.vqz` (offset 50) set to other values, with the trailing CRC-32
/// recomputed as anyone editing the file would, so that only the payload can tell: `vqib
/// decompress` of a small trained run refuses every count but the true one, names the file, and
/// leaves nothing in the output's directory (no PNG, no temporary directory), without a panic or
/// an allocation over the bound. The true count decodes to its images.
#[test]
fn fuzz_code_container_image_count() {
    use crate::codec::run::Source;
    use crate::codec::{compress_run, decompress_run};
    use crate::config::RunConfig;
    use crate::run::RunDir;
    use crate::train::{TrainOptions, Trainer};
    use rand::Rng;
    const IMAGES: u32 = 12;
    let d = tempfile::tempdir().unwrap();
    let mut cfg = RunConfig::default();
    cfg.quantizer.codebook_size = Some(16);
    cfg.quantizer.code_dim = Some(4);
    cfg.model.hidden = Some(8);
    cfg.data.shapes_train = 32;
    cfg.data.shapes_test = IMAGES as usize;
    cfg.training.epochs = 1;
    cfg.training.batch_size = Some(16);
    cfg.training.eval_samples = 0;
    let dir = d.path().join("run");
    Trainer::create(cfg, &dir)
        .unwrap()
        .fit(&TrainOptions::default())
        .unwrap();
    let run = RunDir::new(&dir);
    let file = d.path().join("codes.vqz");
    compress_run(&run, &Source::Test, &file, None, false).unwrap();
    let seed = std::fs::read(&file).unwrap();
    assert_eq!(seed[50..54], IMAGES.to_le_bytes());
    // With K = 16 the payload is not empty: every count can be checked against it.
    assert!(seed.len() > 76);
    let with_count = |n: u32| crate::codec::tests::with_count(&seed, n);
    let pngs = d.path().join("pngs");
    std::fs::create_dir(&pngs).unwrap();
    let out = pngs.join("decoded");
    // The true count first (the control), then small wrong counts (an accepted one fails the test
    // before a larger one could write many files), then huge and random ones.
    let mut counts = vec![IMAGES, IMAGES + 1, IMAGES - 1, IMAGES + 2, 2 * IMAGES, 1];
    counts.extend([
        64 * IMAGES,
        100_000,
        1 << 24,
        100_000_000,
        1 << 31,
        u32::MAX,
    ]);
    let mut m = Mutator::new(0xc0_417);
    for i in 0..24 {
        counts.push(match i % 3 {
            0 => m.rng.gen_range(1..=8 * IMAGES),
            1 => m.rng.gen_range(1..=1 << 20),
            _ => m.rng.r#gen(),
        });
    }
    counts.push(IMAGES);
    let mut t = Tally::new("vqib decompress (.vqz image count)");
    for n in counts {
        let bytes = with_count(n);
        std::fs::write(&file, &bytes).unwrap();
        let desc = format!("image count {n} (true {IMAGES}), CRC fixed");
        let mut decoded = None;
        let pr = probe(|| {
            decompress_run(&run, &file, &out)
                .map(|k| decoded = Some(k))
                .map_err(|e| format!("{e:#}"))
        });
        let accepted = t.check(pr, &desc, &bytes, &["codes.vqz"], false).is_ok();
        let left: Vec<String> = std::fs::read_dir(&pngs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if n != IMAGES {
            if accepted {
                t.fail(
                    &desc,
                    &bytes,
                    format!("decoded as {decoded:?} images; the payload holds {IMAGES}"),
                );
            }
            if !left.is_empty() {
                t.fail(&desc, &bytes, format!("the refusal left {left:?} behind"));
            }
        } else {
            let files = std::fs::read_dir(&out).map_or(0, |r| r.count());
            if decoded != Some(IMAGES as usize) || files != IMAGES as usize {
                t.fail(
                    &desc,
                    &bytes,
                    format!("the true count decoded as {decoded:?} images, {files} files"),
                );
            }
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    t.report();
    assert_eq!(t.accepted, 2);
}
