//! A safetensors file read without trusting it and without holding it: the header (8-byte
//! little-endian length, then JSON) is parsed and checked against the file's size, and tensors
//! are read one element range at a time, so memory follows the range asked for, never a shape a
//! header claims.
//!
//! Every error is an [`InputError`] naming the file and, where there is one, the tensor.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::InputError;

/// Largest header accepted (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// The element types a tensor can have; `Other` for any the file names that vqib does not read.
#[derive(Clone, Debug, PartialEq)]
pub enum Dtype {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    BF16,
    F32,
    F64,
    /// BOOL, the 8-bit floats, or a name vqib does not know.
    Other(String),
}

impl Dtype {
    fn parse(s: &str) -> Self {
        match s {
            "U8" => Dtype::U8,
            "I8" => Dtype::I8,
            "I16" => Dtype::I16,
            "U16" => Dtype::U16,
            "I32" => Dtype::I32,
            "U32" => Dtype::U32,
            "I64" => Dtype::I64,
            "U64" => Dtype::U64,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F32" => Dtype::F32,
            "F64" => Dtype::F64,
            other => Dtype::Other(other.to_string()),
        }
    }

    /// Bytes an element, where vqib knows the type (BOOL and the 8-bit floats: 1).
    fn size(&self) -> Option<u64> {
        Some(match self {
            Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
            Dtype::Other(s) if matches!(s.as_str(), "BOOL" | "F8_E5M2" | "F8_E4M3") => 1,
            Dtype::Other(_) => return None,
        })
    }

    pub fn is_float(&self) -> bool {
        matches!(self, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }

    pub fn is_int(&self) -> bool {
        matches!(
            self,
            Dtype::U8
                | Dtype::I8
                | Dtype::I16
                | Dtype::U16
                | Dtype::I32
                | Dtype::U32
                | Dtype::I64
                | Dtype::U64
        )
    }

    pub fn name(&self) -> String {
        match self {
            Dtype::Other(s) => s.clone(),
            d => format!("{d:?}"),
        }
    }
}

/// One tensor of the file: its type, its shape, and where its bytes start in the file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Offset of the first byte from the start of the file.
    start: u64,
    /// Elements (the product of the shape), checked against the file's size.
    pub numel: usize,
}

/// An open safetensors file.
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    tensors: BTreeMap<String, TensorInfo>,
}

impl SafetensorsFile {
    /// Opens `path` and checks its header: a regular file, a header length within the file and
    /// at most 100 MB, UTF-8 JSON, each tensor with a dtype, a shape and data offsets whose length
    /// is the shape's element count times the dtype's size and whose end is within the file.
    pub fn open(path: &Path) -> Result<Self, InputError> {
        let bad = |m: String| InputError::file(path, m);
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        let mut file = File::open(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let len = meta.len();
        let not_st = |why: String| bad(format!("not a safetensors file: {why}"));
        if len < 8 {
            return Err(not_st(format!(
                "{len} bytes, shorter than the header's length"
            )));
        }
        let mut head = [0u8; 8];
        file.read_exact(&mut head)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        let n = u64::from_le_bytes(head);
        if n > MAX_HEADER || n > len - 8 {
            return Err(not_st(format!(
                "its header claims {n} bytes; the file has {len} (at most 100 MB of header)"
            )));
        }
        let mut text = vec![0u8; n as usize];
        file.read_exact(&mut text)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        let text = std::str::from_utf8(&text)
            .map_err(|_| not_st("the header is not UTF-8 text".into()))?;
        let json: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| not_st(format!("the header is not JSON: {e}")))?;
        let obj = json
            .as_object()
            .ok_or_else(|| not_st("the header is not a JSON object".into()))?;
        let data_start = 8 + n;
        let data_len = len - data_start;
        let mut tensors = BTreeMap::new();
        for (name, v) in obj {
            if name == "__metadata__" {
                continue;
            }
            let info = parse_info(v, data_start, data_len)
                .map_err(|m| bad(format!("not a safetensors file: tensor `{name}`: {m}")))?;
            tensors.insert(name.clone(), info);
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// The tensors' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }

    /// An [`InputError`] naming the file and tensor `name`.
    pub fn error(&self, name: &str, problem: impl std::fmt::Display) -> InputError {
        InputError::file(&self.path, format!("tensor `{name}`: {problem}"))
    }

    fn info(&self, name: &str) -> Result<&TensorInfo, InputError> {
        self.get(name)
            .ok_or_else(|| self.error(name, "not in the file"))
    }

    /// The raw bytes of elements `e0..e0 + count` of `name`.
    fn bytes(&self, name: &str, e0: usize, count: usize) -> Result<(Vec<u8>, Dtype), InputError> {
        let t = self.info(name)?;
        assert!(
            e0 + count <= t.numel,
            "elements {e0}+{count} of {}",
            t.numel
        );
        let size = t.dtype.size().expect("a readable dtype") as usize;
        let mut buf = vec![0u8; count * size];
        let mut f = &self.file;
        f.seek(SeekFrom::Start(t.start + (e0 * size) as u64))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| self.error(name, format!("cannot read: {e}")))?;
        Ok((buf, t.dtype.clone()))
    }

    /// Elements `e0..e0 + count` of float tensor `name` as f64 (f32, f16 and bf16 exactly);
    /// NaN or an infinity is an error naming the element.
    pub fn read_f64(&self, name: &str, e0: usize, count: usize) -> Result<Vec<f64>, InputError> {
        let (b, dt) = self.bytes(name, e0, count)?;
        let v: Vec<f64> = match dt {
            Dtype::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            _ => decode_f32(&b, &dt).into_iter().map(f64::from).collect(),
        };
        self.check_finite(name, e0, v.iter().map(|x| x.is_finite()))?;
        Ok(v)
    }

    /// Elements `e0..e0 + count` of float tensor `name` as f32 (f64 rounded to nearest);
    /// NaN or an infinity (also one that f64 -> f32 makes) is an error naming the element.
    pub fn read_f32(&self, name: &str, e0: usize, count: usize) -> Result<Vec<f32>, InputError> {
        let (b, dt) = self.bytes(name, e0, count)?;
        let v: Vec<f32> = match dt {
            Dtype::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            _ => decode_f32(&b, &dt),
        };
        self.check_finite(name, e0, v.iter().map(|x| x.is_finite()))?;
        Ok(v)
    }

    fn check_finite(
        &self,
        name: &str,
        e0: usize,
        finite: impl Iterator<Item = bool>,
    ) -> Result<(), InputError> {
        let t = self.info(name)?;
        match finite.enumerate().find(|(_, ok)| !ok) {
            None => Ok(()),
            Some((i, _)) => Err(self.error(
                name,
                format!(
                    "holds NaN or an infinity at {} (of shape {:?}; float32 range where vqib \
                     computes in float32)",
                    position(&t.shape, e0 + i),
                    t.shape
                ),
            )),
        }
    }

    /// Elements `e0..e0 + count` of integer tensor `name`.
    pub fn read_int(&self, name: &str, e0: usize, count: usize) -> Result<Vec<i128>, InputError> {
        let (b, dt) = self.bytes(name, e0, count)?;
        macro_rules! ints {
            ($t:ty, $n:expr) => {
                b.chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap()) as i128)
                    .collect()
            };
        }
        Ok(match dt {
            Dtype::U8 => b.iter().map(|&x| x as i128).collect(),
            Dtype::I8 => b.iter().map(|&x| x as i8 as i128).collect(),
            Dtype::I16 => ints!(i16, 2),
            Dtype::U16 => ints!(u16, 2),
            Dtype::I32 => ints!(i32, 4),
            Dtype::U32 => ints!(u32, 4),
            Dtype::I64 => ints!(i64, 8),
            Dtype::U64 => ints!(u64, 8),
            other => unreachable!("read_int of {other:?}: callers check the dtype"),
        })
    }
}

/// The index `[a, b, ...]` of flat element `i` of a tensor of `shape`.
pub fn position(shape: &[usize], mut i: usize) -> String {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = i % d;
            i /= d;
        }
    }
    format!("{idx:?}")
}

fn decode_f32(b: &[u8], dt: &Dtype) -> Vec<f32> {
    match dt {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        other => unreachable!("read of {other:?} as floats: callers check the dtype"),
    }
}

/// IEEE half precision to f32 (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// One header entry: `{"dtype": .., "shape": [..], "data_offsets": [begin, end]}`.
fn parse_info(v: &serde_json::Value, data_start: u64, data_len: u64) -> Result<TensorInfo, String> {
    let dtype = v.get("dtype").and_then(|d| d.as_str()).ok_or("no dtype")?;
    let dtype = Dtype::parse(dtype);
    let shape: Vec<u64> = v
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or("no shape")?
        .iter()
        .map(|d| d.as_u64().ok_or("a shape of non-negative integers"))
        .collect::<Result<_, _>>()?;
    let offsets: Vec<u64> = v
        .get("data_offsets")
        .and_then(|s| s.as_array())
        .filter(|a| a.len() == 2)
        .ok_or("no data_offsets [begin, end]")?
        .iter()
        .map(|d| d.as_u64().ok_or("data offsets of non-negative integers"))
        .collect::<Result<_, _>>()?;
    let (begin, end) = (offsets[0], offsets[1]);
    if begin > end || end > data_len {
        return Err(format!(
            "data offsets [{begin}, {end}] exceed the file's {data_len} bytes of data"
        ));
    }
    let numel = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .filter(|&n| usize::try_from(n).is_ok())
        .ok_or_else(|| format!("shape {shape:?} has more elements than can be addressed"))?;
    if let Some(size) = dtype.size() {
        let want = numel.checked_mul(size);
        if want != Some(end - begin) {
            return Err(format!(
                "shape {shape:?} of {} needs {} bytes; its data offsets hold {}",
                dtype.name(),
                want.map_or("too many".to_string(), |w| w.to_string()),
                end - begin
            ));
        }
    }
    Ok(TensorInfo {
        dtype,
        shape: shape.iter().map(|&d| d as usize).collect(),
        start: data_start + begin,
        numel: numel as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_decode_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(position(&[2, 3, 4], 23), "[1, 2, 3]");
    }
}
