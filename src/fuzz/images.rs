//! A folder of PNG and JPEG images (`data::load_folder`).

use super::harness::{Tally, probe};
use super::mutator::{Field, Mutator};
use crate::data;

/// Recomputes the CRC of every complete PNG chunk, so that mutated chunk data reaches the
/// decoder instead of failing the checksum.
fn png_fix_crcs(v: &mut [u8]) {
    let mut at = 8;
    while at + 12 <= v.len() {
        let n = u32::from_be_bytes(v[at..at + 4].try_into().unwrap()) as usize;
        let Some(end) = (at + 8).checked_add(n).filter(|&e| e + 4 <= v.len()) else {
            break;
        };
        let mut crc = flate2::Crc::new();
        crc.update(&v[at + 4..end]);
        v[end..end + 4].copy_from_slice(&crc.sum().to_be_bytes());
        at = end + 4;
    }
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut b = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut b), format)
        .unwrap();
    b
}

/// A folder of grey and colour PNGs and JPEGs; one file mutated a case (byte-level, PNG chunks
/// with fixed CRCs, PNG/JPEG sizes set huge).
#[test]
fn fuzz_image_folder() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("imgs");
    std::fs::create_dir(&dir).unwrap();
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..10u32 {
        let grey = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(8, 8, |x, y| {
            image::Luma([(x * 20 + y * 3 + i) as u8])
        }));
        let rgb = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(8, 8, |x, y| {
            image::Rgb([(x * 30) as u8, (y * 30) as u8, (i * 20) as u8])
        }));
        let (img, ext, fmt) = match i % 4 {
            0 => (rgb, "png", image::ImageFormat::Png),
            1 => (grey, "jpg", image::ImageFormat::Jpeg),
            2 => (grey, "png", image::ImageFormat::Png),
            _ => (rgb, "jpeg", image::ImageFormat::Jpeg),
        };
        seeds.push((format!("img{i:02}.{ext}"), encode(img, fmt)));
    }
    for (n, b) in &seeds {
        std::fs::write(dir.join(n), b).unwrap();
    }
    assert!(data::load_folder(&dir, None).is_ok());
    let mut m = Mutator::new(0x1a6e);
    let mut t = Tally::new("load_folder");
    let mut named_other = 0;
    for case in 0..600 {
        let k = m.pos(seeds.len());
        let (name, seed) = &seeds[k];
        let png = name.ends_with(".png");
        let fields: Vec<Field> = if png {
            vec![Field::Be32(16), Field::Be32(20)]
        } else {
            let sof = seed
                .windows(2)
                .position(|w| w == [0xFF, 0xC0])
                .expect("baseline JPEG");
            vec![Field::Be16(sof + 5), Field::Be16(sof + 7)]
        };
        let (mut bytes, mut desc) = m.bytes(seed, &fields);
        if png && case % 2 == 0 {
            png_fix_crcs(&mut bytes);
            desc.push_str(" (CRCs fixed)");
        }
        let p = dir.join(name);
        std::fs::write(&p, &bytes).unwrap();
        let size = [None, None, None, Some(8), Some(12)][case % 5];
        let pr = probe(|| data::load_folder(&dir, size));
        // Every error names a file in the folder (so the folder); it names the mutated file
        // unless the mutant decoded to another size, which the next image's error reports.
        let dir_name = dir.display().to_string();
        if let Err(msg) = t.check(pr, &format!("{name}: {desc}"), &bytes, &[&dir_name], false)
            && !msg.contains(name.as_str())
        {
            if msg.contains("first image is") || msg.contains("training images are") {
                named_other += 1;
            } else {
                t.fail(&desc, &bytes, format!("error does not name {name}: {msg}"));
            }
        }
        std::fs::write(&p, seed).unwrap();
    }
    t.report();
    eprintln!("fuzz load_folder: {named_other} size mismatches reported on a neighbouring file");
    assert!(t.accepted > 0 && t.rejected > 0);
}
