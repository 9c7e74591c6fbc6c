//! The `.vqz` container of `vqib compress`: everything little-endian.
//!
//! ```text
//! offset  bytes  field
//!      0      8  magic "VQIBCODE"
//!      8      2  format version (2)
//!     10     32  model hash: SHA-256 of the checkpoint's model.safetensors (a file decodes only
//!                with the model that wrote it)
//!     42      4  prior checksum: CRC-32 of the coding prior's f64 probabilities
//!     46      4  K, the number of codes
//!     50      4  image count
//!     54      6  image channels, height, width (u16 each)
//!     60      4  code grid height, width (u16 each): one code a position of each image
//!     64      8  payload length in bytes (a multiple of 4)
//!     72      P  payload: the ANS stream, u32 words (the codes, then an end mark: see
//!                [`super::EntropyModel::encode`])
//!   72+P      4  CRC-32 of every byte before it (header and payload)
//! ```
//!
//! [`Container::read`] reads a regular file only, and at most [`MAX_FILE`] bytes of it;
//! [`Container::parse`] checks the magic, the version, the lengths (before allocating anything of
//! the declared size) and the checksum, and names the file in every error. Whether the image
//! count agrees with the payload is checked when the payload is decoded
//! ([`super::EntropyModel::decode`]), after [`Container::check_memory`] has bounded it by the
//! memory its images take.

use std::io::Read;
use std::path::Path;

use crate::error::InputError;

pub const MAGIC: [u8; 8] = *b"VQIBCODE";
/// 2: the payload ends with an end mark, so that the image count can be checked against it.
/// Version 1 (no end mark, the count unchecked) is refused.
pub const FORMAT_VERSION: u16 = 2;
const HEADER: usize = 72;
/// The largest file [`Container::read`] reads (16 GiB).
pub const MAX_FILE: u64 = 16 << 30;
const GIB: f64 = (1u64 << 30) as f64;

/// A parsed `.vqz` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// Codes a grid position (S for residual VQ; not stored: the model's), 1 by default.
    pub stages: usize,
    pub model_hash: [u8; 32],
    pub prior_checksum: u32,
    pub k: u32,
    pub images: u32,
    /// `[channels, height, width]`.
    pub image_shape: [u16; 3],
    /// `[height, width]` of the code grid of one image.
    pub grid: [u16; 2],
    pub payload: Vec<u32>,
}

impl Container {
    /// Codes in the file: images x grid positions x codes a position.
    pub fn codes(&self) -> usize {
        self.images as usize * self.grid[0] as usize * self.grid[1] as usize * self.stages.max(1)
    }

    /// Bytes the decoded file takes in memory: its codes (4 bytes each) and its images as 8-bit
    /// pixels (images x channels x height x width), as `vqib compress` held them.
    pub fn decoded_bytes(&self) -> u128 {
        let per_image =
            4 * self.stages.max(1) as u128 * self.grid.iter().map(|&v| v as u128).product::<u128>()
                + self
                    .image_shape
                    .iter()
                    .map(|&v| v as u128)
                    .product::<u128>();
        self.images as u128 * per_image
    }

    /// Refuses (naming `path`, the image count and both sizes) a file whose decoded codes and
    /// images ([`Self::decoded_bytes`]) exceed `have` bytes of memory. This bounds the count
    /// before anything of its size is allocated, also where the payload cannot check it (K = 1:
    /// every code costs 0 bits, so an empty payload stands for any number of images).
    pub fn check_memory(&self, path: &Path, have: u64) -> Result<(), InputError> {
        let need = self.decoded_bytes();
        if need <= have as u128 {
            return Ok(());
        }
        Err(InputError::file(
            path,
            format!(
                "declares {} images of {:?}: decoding them takes {:.1} GiB of memory (codes and 8-bit pixels), but {:.1} GiB are available",
                self.images,
                self.image_shape,
                need as f64 / GIB,
                have as f64 / GIB
            ),
        ))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER + 4 * self.payload.len() + 4);
        b.extend(MAGIC);
        b.extend(FORMAT_VERSION.to_le_bytes());
        b.extend(self.model_hash);
        b.extend(self.prior_checksum.to_le_bytes());
        b.extend(self.k.to_le_bytes());
        b.extend(self.images.to_le_bytes());
        for v in self.image_shape.iter().chain(&self.grid) {
            b.extend(v.to_le_bytes());
        }
        b.extend((4 * self.payload.len() as u64).to_le_bytes());
        for w in &self.payload {
            b.extend(w.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend(crc.to_le_bytes());
        b
    }

    /// Reads and parses a file. Refuses what is not a regular file (a device, a pipe, a
    /// directory) and a file larger than [`MAX_FILE`], before reading; reads at most
    /// [`MAX_FILE`] + 1 bytes, so a file that grows while it is read is refused too.
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let cannot = |e: std::io::Error| InputError::file(path, format!("cannot read: {e}"));
        let too_big = |len: u64| {
            InputError::file(
                path,
                format!("is {len} bytes or more, more than any code file ({MAX_FILE} bytes)"),
            )
        };
        // Checked before opening: opening a pipe would wait for a writer.
        let meta = std::fs::metadata(path).map_err(cannot)?;
        if !meta.is_file() {
            return Err(InputError::file(
                path,
                "is not a regular file (a code file is read whole; a device, pipe or directory is not one)",
            ));
        }
        if meta.len() > MAX_FILE {
            return Err(too_big(meta.len()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut bytes))
            .map_err(cannot)?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(too_big(bytes.len() as u64));
        }
        Self::parse(&bytes, path)
    }

    /// Parses the bytes of a file; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, InputError> {
        let bad = |m: String| InputError::file(path, m);
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(bad(
                "not a vqib code file (wrong magic; expected VQIBCODE)".into()
            ));
        }
        if bytes.len() < HEADER + 4 {
            return Err(bad(format!(
                "truncated: {} bytes, shorter than the {}-byte header and checksum",
                bytes.len(),
                HEADER + 4
            )));
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let version = u16_at(8);
        if version != FORMAT_VERSION {
            let hint = match version {
                1 => {
                    " (version 1 was written by an earlier vqib, whose payload does not mark its end, so its image count cannot be checked: compress the images again)"
                }
                _ => "",
            };
            return Err(bad(format!(
                "format version {version}; this vqib reads version {FORMAT_VERSION}{hint}"
            )));
        }
        let payload_len = u64::from_le_bytes(bytes[64..72].try_into().expect("8 bytes"));
        let have = (bytes.len() - HEADER - 4) as u64;
        if payload_len != have || payload_len % 4 != 0 {
            return Err(bad(format!(
                "truncated or padded: the header declares a {payload_len}-byte payload, the file holds {have}"
            )));
        }
        let body = bytes.len() - 4;
        if crc32fast::hash(&bytes[..body]) != u32_at(body) {
            return Err(bad("checksum mismatch: the file is damaged".into()));
        }
        let c = Self {
            stages: 1,
            model_hash: bytes[10..42].try_into().expect("32 bytes"),
            prior_checksum: u32_at(42),
            k: u32_at(46),
            images: u32_at(50),
            image_shape: [u16_at(54), u16_at(56), u16_at(58)],
            grid: [u16_at(60), u16_at(62)],
            payload: bytes[HEADER..body]
                .chunks_exact(4)
                .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
                .collect(),
        };
        if c.k == 0 || c.images == 0 || c.grid.contains(&0) || c.image_shape.contains(&0) {
            return Err(bad(format!(
                "declares K = {}, {} images of {:?}, a {:?} code grid: none may be 0",
                c.k, c.images, c.image_shape, c.grid
            )));
        }
        Ok(c)
    }
}
