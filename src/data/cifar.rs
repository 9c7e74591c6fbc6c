//! CIFAR-10, binary version: each batch file (`data_batch_1.bin` .. `data_batch_5.bin`,
//! `test_batch.bin`) is a run of 3073-byte records, one label byte (0..9) followed by the
//! 32x32 image as three 1024-byte planes (red, green, blue).

use std::path::Path;

use super::{Dataset, ImageSet, concat};
use crate::error::InputError;

const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

/// One CIFAR-10 binary batch: records of 1 label byte and 3072 pixel bytes (R, G, B planes).
pub fn read_cifar_batch(path: &Path) -> Result<ImageSet, InputError> {
    let b = std::fs::read(path).map_err(|e| InputError::file(path, format!("cannot read: {e}")))?;
    if b.is_empty() || b.len() % CIFAR_RECORD != 0 {
        return Err(InputError::file(
            path,
            format!(
                "size {} is not a positive multiple of the CIFAR-10 record size {CIFAR_RECORD}; truncated?",
                b.len()
            ),
        ));
    }
    let n = b.len() / CIFAR_RECORD;
    let mut pixels = Vec::with_capacity(n * (CIFAR_RECORD - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in b.chunks_exact(CIFAR_RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(InputError::file(
                path,
                format!("record {i} has label {} (expected 0..9)", rec[0]),
            ));
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok(ImageSet {
        pixels,
        labels: Some(labels),
        n,
        channels: 3,
        height: 32,
        width: 32,
    })
}

/// Reads `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin` from `dir`.
pub fn load_cifar10_dir(dir: &Path) -> Result<Dataset, InputError> {
    let mut parts = Vec::new();
    for k in 1..=5 {
        let p = dir.join(format!("data_batch_{k}.bin"));
        if !p.is_file() {
            return Err(InputError::file(&p, "file not found"));
        }
        parts.push(read_cifar_batch(&p)?);
    }
    let tp = dir.join("test_batch.bin");
    if !tp.is_file() {
        return Err(InputError::file(&tp, "file not found"));
    }
    Ok(Dataset {
        train: concat(parts),
        test: read_cifar_batch(&tp)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cifar_batch_valid_and_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("data_batch_1.bin");
        let mut b = Vec::new();
        for i in 0..3u8 {
            b.push(i);
            b.extend((0..3072).map(|j| (j % 256) as u8));
        }
        std::fs::write(&p, &b).unwrap();
        let s = read_cifar_batch(&p).unwrap();
        assert_eq!((s.n, s.channels, s.height), (3, 3, 32));
        assert_eq!(s.labels.unwrap(), vec![0, 1, 2]);
        std::fs::write(&p, &b[..b.len() - 1]).unwrap();
        let e = read_cifar_batch(&p).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_1.bin") && e.contains("record size"),
            "{e}"
        );
        b[0] = 42;
        std::fs::write(&p, &b).unwrap();
        assert!(
            read_cifar_batch(&p)
                .unwrap_err()
                .to_string()
                .contains("label 42")
        );
    }
}
