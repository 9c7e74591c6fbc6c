//! A folder of PNG/JPEG images (grey or RGB), decoded with the `image` crate: `train/` and
//! `test/` subfolders when both exist, otherwise the folder itself with the last tenth of the
//! images (by sorted file name) as the test split. A split whose images lie in class subfolders
//! (`train/cat/*.png`, `train/dog/*.png`: torchvision's ImageFolder layout) is labelled by them,
//! classes numbered in the sorted order of the training split's subfolder names; images directly
//! in a split carry no labels.

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

/// The images of one split: directly in `dir` (no labels), or else in its class subfolders.
struct Listing {
    files: Vec<PathBuf>,
    /// The class of each file, where the images lie in class subfolders.
    labels: Option<Vec<u8>>,
    classes: Vec<String>,
}

/// Lists a split. `classes` (the training split's) numbers a test split's subfolders; a class
/// it lacks is an error naming the subfolder.
fn list_split(dir: &Path, classes: Option<&[String]>) -> Result<Listing, InputError> {
    let files = list_images(dir)?;
    if !files.is_empty() {
        return Ok(Listing {
            files,
            labels: None,
            classes: Vec::new(),
        });
    }
    let rd =
        std::fs::read_dir(dir).map_err(|e| InputError::file(dir, format!("cannot list: {e}")))?;
    let mut subdirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    subdirs.sort();
    let mut listing = Listing {
        files: Vec::new(),
        labels: Some(Vec::new()),
        classes: classes.map(<[String]>::to_vec).unwrap_or_default(),
    };
    for sub in subdirs {
        let images = list_images(&sub)?;
        if images.is_empty() {
            continue;
        }
        let name = sub
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let label = match listing.classes.iter().position(|c| *c == name) {
            Some(i) => i,
            None if classes.is_none() => {
                listing.classes.push(name);
                listing.classes.len() - 1
            }
            None => {
                return Err(InputError::file(
                    &sub,
                    "a class the training split does not have",
                ));
            }
        };
        if label > u8::MAX as usize {
            return Err(InputError::file(dir, "more than 256 class subfolders"));
        }
        let labels = listing.labels.as_mut().expect("labelled");
        labels.extend(std::iter::repeat_n(label as u8, images.len()));
        listing.files.extend(images);
    }
    if listing.files.is_empty() {
        listing.labels = None;
    }
    Ok(listing)
}

/// The largest width and height of an image file that is decoded.
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// The most memory the decoder of one image may allocate.
pub const MAX_DECODE_ALLOC: u64 = 512 << 20;

/// Decodes one PNG/JPEG file under explicit limits, so that a file declaring huge dimensions is
/// refused before anything of that size is allocated.
fn decode(f: &Path) -> Result<image::DynamicImage, InputError> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    let mut reader = image::ImageReader::open(f)
        .map_err(|e| InputError::file(f, format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| InputError::file(f, format!("cannot read: {e}")))?;
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(e) => InputError::file(
            f,
            format!(
                "image too large to decode ({e}); at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels and {} MiB are allowed",
                MAX_DECODE_ALLOC >> 20
            ),
        ),
        e => InputError::file(f, format!("not a readable PNG/JPEG image: {e}")),
    })
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
        let img = decode(f)?;
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
        // The 8-bit copy made below: bounded like the decoder's own allocations.
        if u64::from(img.width()) * u64::from(img.height()) * c as u64 > MAX_DECODE_ALLOC {
            return Err(InputError::file(
                f,
                format!(
                    "image is {}x{} with {c} channels: more than {} MiB of 8-bit pixels",
                    img.width(),
                    img.height(),
                    MAX_DECODE_ALLOC >> 20
                ),
            ));
        }
        pixels.extend(read_decoded(img, c));
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

/// Every PNG/JPEG image in `dir` (sorted by name) as one set of `[c, h, w]` images: each is
/// resized to `h x w` when its size differs and converted to `c` channels. `vqib compress --input`
/// reads its images this way.
pub fn read_image_dir(dir: &Path, [c, h, w]: [usize; 3]) -> Result<ImageSet, InputError> {
    let files = list_images(dir)?;
    if files.is_empty() {
        return Err(InputError::file(dir, "holds no PNG/JPEG images"));
    }
    let mut set = ImageSet {
        pixels: Vec::new(),
        labels: None,
        n: 0,
        channels: c,
        height: h,
        width: w,
    };
    for f in &files {
        let img = decode(f)?;
        let img = if (img.width() as usize, img.height() as usize) != (w, h) {
            img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
        } else {
            img
        };
        let one = read_decoded(img, c);
        set.pixels.extend(one);
        set.n += 1;
    }
    Ok(set)
}

/// The pixels of a decoded image in `c` channels (1: grey, 3: RGB), channels-first.
fn read_decoded(img: image::DynamicImage, c: usize) -> Vec<u8> {
    if c == 1 {
        img.to_luma8().into_raw()
    } else {
        let rgb = img.to_rgb8();
        let raw = rgb.as_raw();
        (0..3)
            .flat_map(|ch| raw.iter().skip(ch).step_by(3).copied())
            .collect()
    }
}

/// A folder of images: `train/` and `test/` subfolders if both exist, otherwise every image in
/// `dir` with the last tenth (sorted by name, at least one) held out as the test split.
///
/// `size` (`--image-size`) must be a positive multiple of 4, at most [`MAX_IMAGE_SIDE`]; it is
/// checked before any image is decoded.
pub fn load_folder(dir: &Path, size: Option<usize>) -> Result<Dataset, InputError> {
    if let Some(s) = size
        && (s == 0 || s % 4 != 0 || s > MAX_IMAGE_SIDE as usize)
    {
        return Err(InputError::config(format!(
            "--image-size {s}: must be a positive multiple of 4 (the model downsamples by 4), at most {MAX_IMAGE_SIDE}"
        )));
    }
    let (train_files, test_files) = if dir.join("train").is_dir() && dir.join("test").is_dir() {
        let train = list_split(&dir.join("train"), None)?;
        let classes = train.labels.is_some().then_some(train.classes.as_slice());
        let test = list_split(&dir.join("test"), classes)?;
        if train.labels.is_some() != test.labels.is_some() {
            return Err(InputError::file(
                dir,
                "train/ and test/ must both hold class subfolders, or both hold the images directly",
            ));
        }
        ((train.files, train.labels), (test.files, test.labels))
    } else {
        let all = list_split(dir, None)?;
        if all.files.len() < 2 {
            return Err(InputError::file(
                dir,
                format!("found {} PNG/JPEG images; need at least 2", all.files.len()),
            ));
        }
        hold_out(all)
    };
    let ((train_files, train_labels), (test_files, test_labels)) = (train_files, test_files);
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
    let mut train = read_images(&train_files, size, None)?;
    let size = size.or(Some(train.height).filter(|&h| h == train.width));
    let mut test = read_images(&test_files, size, Some(train.channels))?;
    (train.labels, test.labels) = (train_labels, test_labels);
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

/// Files and labels of one split.
type Split = (Vec<PathBuf>, Option<Vec<u8>>);

/// The last tenth (at least one) of the images as the test split: of each class where the
/// images are labelled, else by sorted file name.
fn hold_out(all: Listing) -> (Split, Split) {
    let Some(labels) = all.labels else {
        let mut files = all.files;
        let n_test = (files.len() / 10).max(1);
        let test = files.split_off(files.len() - n_test);
        return ((files, None), (test, None));
    };
    let (mut train, mut test): (Split, Split) = Default::default();
    let (mut tl, mut sl) = (Vec::new(), Vec::new());
    for class in 0..all.classes.len() as u8 {
        let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        let n_test = if idx.len() >= 2 {
            (idx.len() / 10).max(1)
        } else {
            0
        };
        for (j, &i) in idx.iter().enumerate() {
            let (files, l) = if j >= idx.len() - n_test {
                (&mut test.0, &mut sl)
            } else {
                (&mut train.0, &mut tl)
            };
            files.push(all.files[i].clone());
            l.push(class);
        }
    }
    (train.1, test.1) = (Some(tl), Some(sl));
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class subfolders label the images (classes by the sorted names of the training split's
    /// subfolders); without train/ and test/ each class keeps its last tenth for the test split.
    #[test]
    fn class_subfolders_are_labels() {
        let d = tempfile::tempdir().unwrap();
        let save = |sub: &str, n: usize| {
            let dir = d.path().join(sub);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::GrayImage::from_pixel(4, 4, image::Luma([i as u8]));
                img.save(dir.join(format!("{i:02}.png"))).unwrap();
            }
        };
        save("train/dog", 3);
        save("train/cat", 2);
        save("test/dog", 1);
        save("test/cat", 2);
        let ds = load_folder(d.path(), None).unwrap();
        assert_eq!(
            ds.train.labels.as_deref(),
            Some(&[0u8, 0, 1, 1, 1][..]),
            "cat = 0, dog = 1"
        );
        assert_eq!(ds.test.labels.as_deref(), Some(&[0u8, 0, 1][..]));
        assert_eq!(ds.train.classes(), Some(2));
        // A test class the training split lacks is named.
        save("test/bird", 1);
        let e = load_folder(d.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("bird") && e.contains("training split does not have"),
            "{e}"
        );

        let flat = tempfile::tempdir().unwrap();
        for (class, n) in [("a", 20), ("b", 10)] {
            let dir = flat.path().join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::GrayImage::from_pixel(4, 4, image::Luma([i as u8]));
                img.save(dir.join(format!("{i:02}.png"))).unwrap();
            }
        }
        let ds = load_folder(flat.path(), None).unwrap();
        assert_eq!((ds.train.n, ds.test.n), (27, 3));
        assert_eq!(ds.test.labels.as_deref(), Some(&[0u8, 0, 1][..]));
        // The held-out images are each class's last (pixel value = index in the class).
        assert_eq!(ds.test.pixels[0], 18);
        assert_eq!(ds.test.pixels[16 * 2], 9);
    }

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

    /// An 8x8 grey (or RGBA) PNG whose IHDR declares `w`x`h` (CRC fixed, so the decoder reads
    /// the size).
    fn png_declaring(w: u32, h: u32) -> Vec<u8> {
        png_declaring_as(w, h, false)
    }

    fn png_declaring_as(w: u32, h: u32, rgba: bool) -> Vec<u8> {
        let img = if rgba {
            image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(8, 8, image::Rgba([9; 4])))
        } else {
            image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(8, 8, image::Luma([9])))
        };
        let mut b = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut b), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(&b[12..16], b"IHDR");
        b[16..20].copy_from_slice(&w.to_be_bytes());
        b[20..24].copy_from_slice(&h.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&b[12..29]);
        b[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        b
    }

    /// An 8x8 RGB JPEG whose SOF0 declares `w`x`h`.
    fn jpeg_declaring(w: u16, h: u16) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 10]));
        let mut b = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut b), image::ImageFormat::Jpeg)
            .unwrap();
        let sof = b.windows(2).position(|x| x == [0xFF, 0xC0]).unwrap();
        b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        b
    }

    #[test]
    fn images_declaring_huge_sizes_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..3 {
            let img = image::GrayImage::from_pixel(8, 8, image::Luma([i * 50]));
            img.save(d.path().join(format!("img{i}.png"))).unwrap();
        }
        // Sanity: the patched 8x8 files still decode.
        std::fs::write(d.path().join("img1.png"), png_declaring(8, 8)).unwrap();
        std::fs::write(d.path().join("img1.jpg"), jpeg_declaring(8, 8)).unwrap();
        assert!(load_folder(d.path(), None).is_ok());
        std::fs::remove_file(d.path().join("img1.jpg")).unwrap();
        for (w, h) in [
            (100_000, 8),
            (8, 100_000),
            (16_385, 16_385),
            (u32::MAX >> 1, u32::MAX >> 1),
        ] {
            std::fs::write(d.path().join("img1.png"), png_declaring(w, h)).unwrap();
            let e = load_folder(d.path(), None).unwrap_err().to_string();
            assert!(
                e.contains("img1.png") && e.contains("too large"),
                "{w}x{h}: {e}"
            );
        }
        // Within the side limit but over the allocation limit (16384x12000 RGBA: 750 MiB).
        std::fs::write(
            d.path().join("img1.png"),
            png_declaring_as(16_384, 12_000, true),
        )
        .unwrap();
        let e = load_folder(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("img1.png") && e.contains("too large"), "{e}");
        // Within every limit (256 MiB of grey): refused for its missing data, by name.
        std::fs::write(d.path().join("img1.png"), png_declaring(16_384, 16_384)).unwrap();
        let e = load_folder(d.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("img1.png") && e.contains("not a readable"),
            "{e}"
        );
        std::fs::write(d.path().join("img1.png"), png_declaring(8, 8)).unwrap();
        for (w, h) in [(65_535, 65_535), (16_385, 8), (8, 20_000)] {
            std::fs::write(d.path().join("img1.jpg"), jpeg_declaring(w, h)).unwrap();
            let e = load_folder(d.path(), None).unwrap_err().to_string();
            assert!(
                e.contains("img1.jpg") && e.contains("too large"),
                "{w}x{h}: {e}"
            );
        }
    }
}
