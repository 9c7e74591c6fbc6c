//! MNIST and Fashion-MNIST: the IDX format, optionally gzipped. An image file holds the magic
//! number 2051, the image count, rows and columns (big-endian `u32`s) and then the pixels, one
//! byte each; a label file holds the magic number 2049, the count and one byte per label. The
//! four files of a data set use the MNIST names (`train-images-idx3-ubyte[.gz]`, ...).

use std::path::{Path, PathBuf};

use super::{Dataset, ImageSet, read_maybe_gz};
use crate::error::InputError;

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the magic number (first) and that the header of `header_len` bytes is complete.
fn check_idx_header(
    path: &Path,
    b: &[u8],
    want: u32,
    header_len: usize,
    what: &str,
) -> Result<(), InputError> {
    if b.len() >= 4 {
        let magic = be_u32(b, 0);
        if magic != want {
            return Err(InputError::file(
                path,
                format!(
                    "wrong IDX magic {magic:#010x} for {what} file (expected {want:#010x} = {want})"
                ),
            ));
        }
    }
    if b.len() < header_len {
        return Err(InputError::file(
            path,
            format!(
                "truncated IDX header ({} bytes, need {header_len})",
                b.len()
            ),
        ));
    }
    Ok(())
}

/// IDX image file: magic 2051, count, rows, cols, then `count*rows*cols` bytes.
pub fn read_idx_images(path: &Path) -> Result<ImageSet, InputError> {
    let b = read_maybe_gz(path)?;
    check_idx_header(path, &b, 2051, 16, "an image")?;
    let (n, rows, cols) = (
        be_u32(&b, 4) as usize,
        be_u32(&b, 8) as usize,
        be_u32(&b, 12) as usize,
    );
    let want = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .unwrap_or(usize::MAX);
    if b.len() - 16 != want {
        return Err(InputError::file(
            path,
            format!(
                "truncated or oversized: header says {n} images of {rows}x{cols} ({want} bytes), file holds {} bytes of pixels",
                b.len() - 16
            ),
        ));
    }
    let mut pixels = b;
    pixels.drain(..16);
    Ok(ImageSet {
        pixels,
        labels: None,
        n,
        channels: 1,
        height: rows,
        width: cols,
    })
}

/// IDX label file: magic 2049, count, then `count` bytes.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, InputError> {
    let b = read_maybe_gz(path)?;
    check_idx_header(path, &b, 2049, 8, "a label")?;
    let n = be_u32(&b, 4) as usize;
    if b.len() - 8 != n {
        return Err(InputError::file(
            path,
            format!(
                "truncated or oversized: header says {n} labels, file holds {}",
                b.len() - 8
            ),
        ));
    }
    let mut labels = b;
    labels.drain(..8);
    Ok(labels)
}

/// Finds `stem` or `stem.gz` in `dir`.
fn find_file(dir: &Path, stems: &[&str]) -> Result<PathBuf, InputError> {
    for stem in stems {
        for cand in [dir.join(format!("{stem}.gz")), dir.join(stem)] {
            if cand.is_file() {
                return Ok(cand);
            }
        }
    }
    Err(InputError::file(
        dir.join(format!("{}.gz", stems[0])),
        "file not found (also tried without .gz)",
    ))
}

fn idx_split(dir: &Path, images: &[&str], labels: &[&str]) -> Result<ImageSet, InputError> {
    let ipath = find_file(dir, images)?;
    let lpath = find_file(dir, labels)?;
    let mut set = read_idx_images(&ipath)?;
    let lab = read_idx_labels(&lpath)?;
    if lab.len() != set.n {
        return Err(InputError::file(
            &lpath,
            format!(
                "{} labels but {} holds {} images",
                lab.len(),
                ipath.display(),
                set.n
            ),
        ));
    }
    set.labels = Some(lab);
    Ok(set)
}

/// Reads the four MNIST-format files (`train-images-idx3-ubyte[.gz]`, ...) from `dir`.
pub fn load_mnist_dir(dir: &Path) -> Result<Dataset, InputError> {
    let train = idx_split(
        dir,
        &["train-images-idx3-ubyte", "train-images.idx3-ubyte"],
        &["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"],
    )?;
    let test = idx_split(
        dir,
        &["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"],
        &["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"],
    )?;
    if (train.height, train.width) != (test.height, test.width) {
        return Err(InputError::file(
            dir,
            "train and test images differ in size",
        ));
    }
    Ok(Dataset { train, test })
}

/// IDX files made in memory (also the seeds of the fuzz tests).
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn idx_images(n: u32, rows: u32, cols: u32, extra: i64) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [2051u32, n, rows, cols] {
            v.extend(x.to_be_bytes());
        }
        let len = (n * rows * cols) as i64 + extra;
        v.extend((0..len).map(|i| (i % 251) as u8));
        v
    }

    pub(crate) fn idx_labels(n: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(2049u32.to_be_bytes());
        v.extend(n.to_be_bytes());
        v.extend((0..n).map(|i| (i % 10) as u8));
        v
    }

    pub(crate) fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn idx_roundtrip_plain_and_gz() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        std::fs::write(&p, idx_images(3, 4, 5, 0)).unwrap();
        let s = read_idx_images(&p).unwrap();
        assert_eq!((s.n, s.height, s.width, s.channels), (3, 4, 5, 1));
        assert_eq!(s.pixels[7], 7);
        std::fs::write(&p, gz(&idx_images(3, 4, 5, 0))).unwrap();
        assert_eq!(read_idx_images(&p).unwrap().pixels, s.pixels);
        std::fs::write(&p, gz(&idx_labels(6))).unwrap();
        assert_eq!(read_idx_labels(&p).unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn idx_rejects_bad_magic_and_truncation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("imgs");
        std::fs::write(&p, idx_labels(4)).unwrap();
        let e = read_idx_images(&p).unwrap_err().to_string();
        assert!(e.contains("imgs") && e.contains("magic"), "{e}");
        std::fs::write(&p, idx_images(3, 4, 5, -7)).unwrap();
        let e = read_idx_images(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(&p, &idx_images(3, 4, 5, 0)[..10]).unwrap();
        assert!(
            read_idx_images(&p)
                .unwrap_err()
                .to_string()
                .contains("header")
        );
        // A gzip stream cut short.
        let z = gz(&idx_images(300, 28, 28, 0));
        std::fs::write(&p, &z[..z.len() / 2]).unwrap();
        let e = read_idx_images(&p).unwrap_err().to_string();
        assert!(
            e.contains("imgs") && (e.contains("gzip") || e.contains("truncated")),
            "{e}"
        );
    }

    #[test]
    fn mnist_dir_checks_counts() {
        let d = tempfile::tempdir().unwrap();
        let w = |name: &str, b: Vec<u8>| std::fs::write(d.path().join(name), gz(&b)).unwrap();
        w("train-images-idx3-ubyte.gz", idx_images(5, 28, 28, 0));
        w("train-labels-idx1-ubyte.gz", idx_labels(5));
        w("t10k-images-idx3-ubyte.gz", idx_images(2, 28, 28, 0));
        w("t10k-labels-idx1-ubyte.gz", idx_labels(3));
        let e = load_mnist_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("t10k-labels") && e.contains("3 labels") && e.contains("2 images"),
            "{e}"
        );
        w("t10k-labels-idx1-ubyte.gz", idx_labels(2));
        let ds = load_mnist_dir(d.path()).unwrap();
        assert_eq!((ds.train.n, ds.test.n), (5, 2));
        std::fs::remove_file(d.path().join("train-images-idx3-ubyte.gz")).unwrap();
        let e = load_mnist_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("train-images") && e.contains("not found"), "{e}");
    }
}
