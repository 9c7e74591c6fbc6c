//! The IDX readers (raw and gzipped images and labels), the whole MNIST directory through
//! `data::load`, and CIFAR-10 batches.

use super::harness::{Tally, name_of, probe};
use super::mutator::{Field, Mutator};
use crate::data;
use crate::data::idx_files::{gz, idx_labels};

pub(super) fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    crate::data::idx_files::idx_images(n, rows, cols, 0)
}

pub(super) const IDX_IMAGE_FIELDS: [Field; 4] = [
    Field::Be32(0),
    Field::Be32(4),
    Field::Be32(8),
    Field::Be32(12),
];
const IDX_LABEL_FIELDS: [Field; 2] = [Field::Be32(0), Field::Be32(4)];

#[test]
fn fuzz_idx_images_raw_and_gz() {
    let d = tempfile::tempdir().unwrap();
    let seed = idx_images(6, 8, 8);
    let seed_gz = gz(&seed);
    let mut m = Mutator::new(0x1d3);
    let mut t = Tally::new("read_idx_images");
    for case in 0..1000 {
        let (bytes, desc) = match case % 4 {
            0 => m.bytes(&seed, &IDX_IMAGE_FIELDS),
            // Structure-aware: mutate the IDX, then gzip it (the gzip layer is valid).
            1 => {
                let (b, desc) = m.bytes(&seed, &IDX_IMAGE_FIELDS);
                (gz(&b), format!("gz({desc})"))
            }
            2 => {
                let (b, desc) = m.bytes(&seed_gz, &[]);
                (b, format!("gz bytes: {desc}"))
            }
            _ => m.bytes(&seed, &IDX_IMAGE_FIELDS[1..]),
        };
        let p = d.path().join(format!("images-{}.idx", case % 3));
        std::fs::write(&p, &bytes).unwrap();
        let pr = probe(|| data::read_idx_images(&p));
        let _ = t.check(pr, &desc, &bytes, &[&name_of(&p)], false);
    }
    t.report();
    assert!(t.accepted > 0 && t.rejected > 0);
}

#[test]
fn fuzz_idx_labels_raw_and_gz() {
    let d = tempfile::tempdir().unwrap();
    let seed = idx_labels(12);
    let seed_gz = gz(&seed);
    let mut m = Mutator::new(0x1abe1);
    let mut t = Tally::new("read_idx_labels");
    for case in 0..800 {
        let (bytes, desc) = match case % 3 {
            0 => m.bytes(&seed, &IDX_LABEL_FIELDS),
            1 => {
                let (b, desc) = m.bytes(&seed, &IDX_LABEL_FIELDS);
                (gz(&b), format!("gz({desc})"))
            }
            _ => {
                let (b, desc) = m.bytes(&seed_gz, &[]);
                (b, format!("gz bytes: {desc}"))
            }
        };
        let p = d.path().join("labels.idx1");
        std::fs::write(&p, &bytes).unwrap();
        let pr = probe(|| data::read_idx_labels(&p));
        let _ = t.check(pr, &desc, &bytes, &["labels.idx1"], false);
    }
    t.report();
    assert!(t.accepted > 0 && t.rejected > 0);
}

/// The whole MNIST path through `data::load` (and its checks on the loaded images): one of the
/// four files mutated; every error names the data directory (all four files are inside it).
#[test]
fn fuzz_mnist_dir_load() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("mnist-dir");
    std::fs::create_dir(&dir).unwrap();
    let files = [
        (
            "train-images-idx3-ubyte",
            idx_images(5, 8, 8),
            &IDX_IMAGE_FIELDS[..],
        ),
        (
            "train-labels-idx1-ubyte",
            idx_labels(5),
            &IDX_LABEL_FIELDS[..],
        ),
        (
            "t10k-images-idx3-ubyte",
            idx_images(2, 8, 8),
            &IDX_IMAGE_FIELDS[..],
        ),
        (
            "t10k-labels-idx1-ubyte",
            idx_labels(2),
            &IDX_LABEL_FIELDS[..],
        ),
    ];
    for (name, b, _) in &files {
        std::fs::write(dir.join(name), b).unwrap();
    }
    let spec = data::DataSpec {
        kind: data::DatasetKind::Mnist,
        dir: Some(dir.clone()),
        image_size: None,
        shapes_train: 0,
        shapes_test: 0,
        seed: 0,
    };
    assert!(data::load(&spec).is_ok());
    let mut m = Mutator::new(0x4d4e);
    let mut t = Tally::new("data::load (mnist)");
    let dir_name = dir.display().to_string();
    for case in 0..500 {
        let (name, seed, fields) = &files[case % 4];
        let (bytes, desc) = m.bytes(seed, fields);
        let p = dir.join(name);
        std::fs::write(&p, &bytes).unwrap();
        let pr = probe(|| data::load(&spec));
        let _ = t.check(pr, &format!("{name}: {desc}"), &bytes, &[&dir_name], false);
        std::fs::write(&p, seed).unwrap();
    }
    t.report();
    assert!(t.accepted > 0 && t.rejected > 0);
}

#[test]
fn fuzz_cifar_batch() {
    let d = tempfile::tempdir().unwrap();
    let mut seed = Vec::new();
    for i in 0..3u8 {
        seed.push(i * 3);
        seed.extend((0..3072).map(|j| (j * 7 % 256) as u8));
    }
    let fields = [Field::Be32(0), Field::Be32(3073)];
    let mut m = Mutator::new(0xc1fa);
    let mut t = Tally::new("read_cifar_batch");
    let p = d.path().join("data_batch_1.bin");
    for _ in 0..600 {
        let (bytes, desc) = m.bytes(&seed, &fields);
        std::fs::write(&p, &bytes).unwrap();
        let pr = probe(|| data::read_cifar_batch(&p));
        let _ = t.check(pr, &desc, &bytes, &["data_batch_1.bin"], false);
    }
    t.report();
    assert!(t.accepted > 0 && t.rejected > 0);
}
