//! The `.vqz` container of `vqib compress`: everything little-endian.
//!
//! ```text
//! offset  bytes  field
//!      0      8  magic "VQIBCODE"
//!      8      2  format version (1)
//!     10     32  model hash: SHA-256 of the checkpoint's model.safetensors (a file decodes only
//!                with the model that wrote it)
//!     42      4  prior checksum: CRC-32 of the coding prior's f64 probabilities
//!     46      4  K, the number of codes
//!     50      4  image count
//!     54      6  image channels, height, width (u16 each)
//!     60      4  code grid height, width (u16 each): one code a position of each image
//!     64      8  payload length in bytes (a multiple of 4)
//!     72      P  payload: the ANS stream, u32 words
//!   72+P      4  CRC-32 of every byte before it (header and payload)
//! ```
//!
//! [`Container::parse`] checks the magic, the version, the lengths (before allocating anything of
//! the declared size) and the checksum, and names the file in every error.

use std::path::Path;

use crate::error::InputError;

pub const MAGIC: [u8; 8] = *b"VQIBCODE";
pub const FORMAT_VERSION: u16 = 1;
const HEADER: usize = 72;
/// The largest file `read` accepts (16 GiB).
const MAX_FILE: u64 = 16 << 30;

/// A parsed `.vqz` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
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
    /// Codes in the file: images x grid positions.
    pub fn codes(&self) -> usize {
        self.images as usize * self.grid[0] as usize * self.grid[1] as usize
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

    /// Reads and parses a file (refusing one larger than 16 GiB before reading it).
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let len = std::fs::metadata(path)
            .map_err(|e| InputError::file(path, format!("cannot read: {e}")))?
            .len();
        if len > MAX_FILE {
            return Err(InputError::file(
                path,
                format!("is {len} bytes, more than any code file"),
            ));
        }
        let bytes =
            std::fs::read(path).map_err(|e| InputError::file(path, format!("cannot read: {e}")))?;
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
            return Err(bad(format!(
                "format version {version}; this vqib reads version {FORMAT_VERSION}"
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
