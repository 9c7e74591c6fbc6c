//! A folder of PNG/JPEG images (grey or RGB), decoded with the `image` crate: `train/` and
//! `test/` subfolders when both exist, otherwise the folder itself with the last tenth of the
//! images (by sorted file name) as the test split. Images carry no labels.

use std::path::{Path, PathBuf};

use super::{Dataset, ImageSet};
use crate::error::InputError;

fn list_images(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| InputError::file(dir, format!("cannot list: {e}")))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg")
                })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Decodes the images; channels are those of the first image (1 for grey, 3 for colour), the
/// size is `size` (resized) or that of the first image (others must match).
fn read_images(
    files: &[PathBuf],
    size: Option<usize>,
    channels: Option<usize>,
) -> Result<ImageSet, InputError> {
    let mut pixels = Vec::new();
    let (mut c, mut h, mut w) = (channels.unwrap_or(0), 0usize, 0usize);
    for (i, f) in files.iter().enumerate() {
        let img = image::ImageReader::open(f)
            .map_err(|e| InputError::file(f, format!("cannot open: {e}")))?
            .with_guessed_format()
            .map_err(|e| InputError::file(f, format!("cannot read: {e}")))?
            .decode()
            .map_err(|e| InputError::file(f, format!("not a readable PNG/JPEG image: {e}")))?;
        let img = match size {
            Some(s) if img.width() as usize != s || img.height() as usize != s => {
                img.resize_exact(s as u32, s as u32, image::imageops::FilterType::Triangle)
            }
            _ => img,
        };
        if i == 0 {
            if c == 0 {
                c = if img.color().has_color() { 3 } else { 1 };
            }
            h = img.height() as usize;
            w = img.width() as usize;
        } else if img.height() as usize != h || img.width() as usize != w {
            return Err(InputError::file(
                f,
                format!(
                    "image is {}x{} but the first image is {w}x{h}; pass --image-size to resize all images",
                    img.width(),
                    img.height()
                ),
            ));
        }
        if c == 1 {
            pixels.extend_from_slice(img.to_luma8().as_raw());
        } else {
            let rgb = img.to_rgb8();
            let raw = rgb.as_raw();
            for ch in 0..3 {
                pixels.extend(raw.iter().skip(ch).step_by(3));
            }
        }
    }
    Ok(ImageSet {
        pixels,
        labels: None,
        n: files.len(),
        channels: c,
        height: h,
        width: w,
    })
}

/// A folder of images: `train/` and `test/` subfolders if both exist, otherwise every image in
/// `dir` with the last tenth (sorted by name, at least one) held out as the test split.
pub fn load_folder(dir: &Path, size: Option<usize>) -> Result<Dataset, InputError> {
    let (train_files, test_files) = if dir.join("train").is_dir() && dir.join("test").is_dir() {
        (
            list_images(&dir.join("train"))?,
            list_images(&dir.join("test"))?,
        )
    } else {
        let mut all = list_images(dir)?;
        if all.len() < 2 {
            return Err(InputError::file(
                dir,
                format!("found {} PNG/JPEG images; need at least 2", all.len()),
            ));
        }
        let n_test = (all.len() / 10).max(1);
        let test = all.split_off(all.len() - n_test);
        (all, test)
    };
    if train_files.is_empty() {
        return Err(InputError::file(
            dir,
            "no PNG/JPEG images found for the training split",
        ));
    }
    if test_files.is_empty() {
        return Err(InputError::file(
            dir,
            "no PNG/JPEG images found for the test split",
        ));
    }
    let train = read_images(&train_files, size, None)?;
    let size = size.or(Some(train.height).filter(|&h| h == train.width));
    let test = read_images(&test_files, size, Some(train.channels))?;
    if (test.height, test.width) != (train.height, train.width) {
        return Err(InputError::file(
            &test_files[0],
            format!(
                "test image is {}x{} but training images are {}x{}; pass --image-size",
                test.width, test.height, train.width, train.height
            ),
        ));
    }
    Ok(Dataset { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_reads_and_rejects_mismatched_sizes() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..10 {
            let img = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y + i) as u8]));
            img.save(d.path().join(format!("img{i:02}.png"))).unwrap();
        }
        let ds = load_folder(d.path(), None).unwrap();
        assert_eq!(
            (ds.train.n, ds.test.n, ds.train.channels, ds.train.height),
            (9, 1, 1, 8)
        );
        assert_eq!(ds.train.pixels[1], 30);
        let odd = image::RgbImage::from_pixel(12, 8, image::Rgb([1, 2, 3]));
        odd.save(d.path().join("img05.png")).unwrap();
        let e = load_folder(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("img05.png") && e.contains("--image-size"), "{e}");
        let ds = load_folder(d.path(), Some(16)).unwrap();
        assert_eq!((ds.train.height, ds.train.width), (16, 16));
        std::fs::write(d.path().join("img06.png"), b"not a png").unwrap();
        let e = load_folder(d.path(), Some(16)).unwrap_err().to_string();
        assert!(e.contains("img06.png"), "{e}");
    }
}
