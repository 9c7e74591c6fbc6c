//! The mutation engine: a seeded [`StdRng`] drives byte-level mutations (truncations, bit
//! flips, overwrites, header [`Field`]s set to huge values, interesting integers, deletions,
//! insertions, fills, appended garbage, pure random bytes) and JSON-aware ones (tokens replaced by
//! extreme values, long strings, deep nesting, shortened arrays, duplicated tokens). The same seed
//! gives the same mutants on every run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::idx::{IDX_IMAGE_FIELDS, idx_images};

// ---------------------------------------------------------------------------------------------
// Mutation engine

/// A header field the mutator may set to huge values.
#[derive(Clone, Copy, Debug)]
pub(super) enum Field {
    /// Big-endian `u32` at this offset (IDX counts and sizes, PNG sizes).
    Be32(usize),
    /// Big-endian `u16` (JPEG frame sizes).
    Be16(usize),
    /// Little-endian `u64` (the safetensors header length).
    Le64(usize),
    /// Little-endian `u32` (burnpack magic and metadata size).
    Le32(usize),
    /// Little-endian `u16` (burnpack version).
    Le16(usize),
}

const HUGE32: [u32; 10] = [
    u32::MAX,
    0x7fff_ffff,
    0x8000_0000,
    0x0001_0000,
    0xffff,
    16_385,
    0,
    1,
    3,
    0x00ff_ffff,
];
const HUGE64: [u64; 9] = [
    u64::MAX,
    u64::MAX / 2,
    1 << 32,
    1 << 40,
    100_000_001,
    u32::MAX as u64,
    0,
    1,
    7,
];
/// JSON literals a number or value is replaced with.
const JSON_VALUES: [&str; 24] = [
    "0",
    "-1",
    "1",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775809",
    "2147483647",
    "1e308",
    "1e999",
    "-1e999",
    "1.5",
    "-0",
    "NaN",
    "\"x\"",
    "null",
    "true",
    "[]",
    "{}",
    "[1,2,3]",
    "\"\\ud800\"",
    "0.000000000000000000000000000000000000000000001",
];

pub(super) struct Mutator {
    pub(super) rng: StdRng,
}

impl Mutator {
    pub(super) fn new(seed: u64) -> Self {
        Mutator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub(super) fn pos(&mut self, len: usize) -> usize {
        if len == 0 {
            0
        } else {
            self.rng.gen_range(0..len)
        }
    }

    /// One to four byte-level mutations of `seed`, and their description.
    pub(super) fn bytes(&mut self, seed: &[u8], fields: &[Field]) -> (Vec<u8>, String) {
        let mut v = seed.to_vec();
        let ops = if self.rng.gen_bool(0.25) {
            self.rng.gen_range(2..=4)
        } else {
            1
        };
        let desc: Vec<String> = (0..ops).map(|_| self.op(&mut v, fields)).collect();
        (v, desc.join(" + "))
    }

    fn op(&mut self, v: &mut Vec<u8>, fields: &[Field]) -> String {
        let len = v.len();
        match self.rng.gen_range(0..11) {
            0 => {
                let at = if self.rng.gen_bool(0.1) {
                    0
                } else if self.rng.gen_bool(0.3) {
                    self.rng.gen_range(0..=len.min(24))
                } else {
                    self.rng.gen_range(0..=len)
                };
                v.truncate(at);
                format!("truncate to {at}")
            }
            1 if len > 0 => {
                let (i, b) = (self.pos(len), self.rng.gen_range(0..8));
                v[i] ^= 1 << b;
                format!("flip bit {b} of byte {i}")
            }
            2 if len > 0 => {
                let n = self.rng.gen_range(2..=32);
                for _ in 0..n {
                    let i = self.pos(len);
                    v[i] ^= 1 << self.rng.gen_range(0..8);
                }
                format!("flip {n} bits")
            }
            3 if len > 0 => {
                let n = self.rng.gen_range(1..=16);
                for _ in 0..n {
                    let i = self.pos(len);
                    v[i] = self.rng.r#gen();
                }
                format!("overwrite {n} bytes")
            }
            4 if !fields.is_empty() => {
                let f = fields[self.pos(fields.len())];
                self.set_field(v, f)
            }
            5 if len >= 8 => {
                let i = self.pos(len - 7);
                match self.rng.gen_range(0..3) {
                    0 => {
                        let x = HUGE32[self.pos(HUGE32.len())];
                        v[i..i + 4].copy_from_slice(&x.to_be_bytes());
                        format!("u32 BE {x:#x} at {i}")
                    }
                    1 => {
                        let x = HUGE32[self.pos(HUGE32.len())];
                        v[i..i + 4].copy_from_slice(&x.to_le_bytes());
                        format!("u32 LE {x:#x} at {i}")
                    }
                    _ => {
                        let x = HUGE64[self.pos(HUGE64.len())];
                        v[i..i + 8].copy_from_slice(&x.to_le_bytes());
                        format!("u64 LE {x:#x} at {i}")
                    }
                }
            }
            6 => {
                let n = self.rng.gen_range(0..=(2 * len).max(64));
                *v = (0..n).map(|_| self.rng.r#gen()).collect();
                format!("{n} random bytes")
            }
            7 if len > 0 => {
                let a = self.pos(len);
                let span = self.rng.gen_range(1..=256);
                let b = (a + span).min(len);
                v.drain(a..b);
                format!("delete {a}..{b}")
            }
            8 => {
                let at = self.rng.gen_range(0..=len);
                let chunk: Vec<u8> = if len > 0 && self.rng.gen_bool(0.5) {
                    let a = self.pos(len);
                    let b = (a + self.rng.gen_range(1..=512)).min(len);
                    v[a..b].to_vec()
                } else {
                    (0..self.rng.gen_range(1..=64))
                        .map(|_| self.rng.r#gen())
                        .collect()
                };
                let n = chunk.len();
                v.splice(at..at, chunk);
                format!("insert {n} bytes at {at}")
            }
            9 if len > 0 => {
                let a = self.pos(len);
                let b = (a + self.rng.gen_range(1..=64)).min(len);
                let fill = if self.rng.gen_bool(0.5) { 0 } else { 0xff };
                v[a..b].fill(fill);
                format!("fill {a}..{b} with {fill:#x}")
            }
            _ => {
                // Extend with garbage (trailing data).
                let n = self.rng.gen_range(1..=128);
                v.extend((0..n).map(|_| self.rng.r#gen::<u8>()));
                format!("append {n} bytes")
            }
        }
    }

    /// Sets a header field to a huge (or degenerate) value.
    fn set_field(&mut self, v: &mut [u8], f: Field) -> String {
        match f {
            Field::Be32(at) if at + 4 <= v.len() => {
                let x = HUGE32[self.pos(HUGE32.len())];
                v[at..at + 4].copy_from_slice(&x.to_be_bytes());
                format!("field BE32@{at} = {x:#x}")
            }
            Field::Be16(at) if at + 2 <= v.len() => {
                let x = [0xffffu16, 0x7fff, 0x4001, 16_385, 0, 1][self.pos(6)];
                v[at..at + 2].copy_from_slice(&x.to_be_bytes());
                format!("field BE16@{at} = {x:#x}")
            }
            Field::Le64(at) if at + 8 <= v.len() => {
                let x = HUGE64[self.pos(HUGE64.len())];
                v[at..at + 8].copy_from_slice(&x.to_le_bytes());
                format!("field LE64@{at} = {x:#x}")
            }
            Field::Le32(at) if at + 4 <= v.len() => {
                let x = HUGE32[self.pos(HUGE32.len())];
                v[at..at + 4].copy_from_slice(&x.to_le_bytes());
                format!("field LE32@{at} = {x:#x}")
            }
            Field::Le16(at) if at + 2 <= v.len() => {
                let x = [0xffffu16, 0x7fff, 0, 2][self.pos(4)];
                v[at..at + 2].copy_from_slice(&x.to_le_bytes());
                format!("field LE16@{at} = {x:#x}")
            }
            _ => "field out of range (none)".into(),
        }
    }

    /// JSON-aware mutations of `text` (numbers, strings, values, nesting), sometimes followed by
    /// byte-level ones.
    pub(super) fn json(&mut self, text: &str) -> (Vec<u8>, String) {
        let mut t = text.to_string();
        let ops = self.rng.gen_range(1..=3);
        let mut desc = Vec::new();
        for _ in 0..ops {
            desc.push(self.json_op(&mut t));
        }
        let mut v = t.into_bytes();
        if self.rng.gen_bool(0.25) {
            desc.push(self.op(&mut v, &[]));
        }
        (v, desc.join(" + "))
    }

    fn json_op(&mut self, t: &mut String) -> String {
        // Token spans: numbers, strings, literals.
        let spans = json_spans(t);
        match self.rng.gen_range(0..7) {
            0 | 1 if !spans.is_empty() => {
                let (a, b) = spans[self.pos(spans.len())];
                let with = JSON_VALUES[self.pos(JSON_VALUES.len())];
                let old = t[a..b].to_string();
                t.replace_range(a..b, with);
                format!("json {old:.20} -> {with}")
            }
            2 if !spans.is_empty() => {
                let (a, b) = spans[self.pos(spans.len())];
                let n = [300, 5000, 100_000][self.pos(3)];
                t.replace_range(a..b, &format!("\"{}\"", "a".repeat(n)));
                format!("json value -> {n}-char string")
            }
            3 => {
                let depth = [64, 200, 5000][self.pos(3)];
                let at = self.char_boundary(t);
                let nest = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
                t.insert_str(at, &nest);
                format!("json nesting {depth} at {at}")
            }
            5 => {
                // Shorten an innermost array: empty it, or drop its last element.
                let b = t.as_bytes();
                let arrays: Vec<(usize, usize)> = (0..b.len())
                    .filter(|&i| b[i] == b'[')
                    .filter_map(|i| {
                        let close = i + 1 + b[i + 1..].iter().position(|&c| c == b']')?;
                        (!b[i + 1..close].contains(&b'[')).then_some((i, close))
                    })
                    .collect();
                if arrays.is_empty() {
                    return "json no array".into();
                }
                let (open, close) = arrays[self.pos(arrays.len())];
                let cut = if self.rng.gen_bool(0.5) {
                    open + 1
                } else {
                    t[open + 1..close]
                        .rfind(',')
                        .map_or(open + 1, |c| open + 1 + c)
                };
                t.replace_range(cut..close, "");
                format!("json shorten array at {open}")
            }
            4 if !t.is_empty() => {
                let a = self.char_boundary(t);
                let mut b = (a + self.rng.gen_range(1..=40)).min(t.len());
                while !t.is_char_boundary(b) {
                    b -= 1;
                }
                t.replace_range(a..b, "");
                format!("json delete {a}..{b}")
            }
            _ => {
                // Duplicate a token (duplicate keys, doubled values).
                if spans.is_empty() {
                    return "json no-op".into();
                }
                let (a, b) = spans[self.pos(spans.len())];
                let tok = t[a..b].to_string();
                t.insert_str(b, &format!(",{tok}"));
                format!("json duplicate {tok:.20}")
            }
        }
    }

    fn char_boundary(&mut self, t: &str) -> usize {
        let mut at = self.rng.gen_range(0..=t.len());
        while !t.is_char_boundary(at) {
            at -= 1;
        }
        at
    }
}

/// Byte ranges of the JSON tokens in `t`: numbers, strings (with quotes) and literals.
fn json_spans(t: &str) -> Vec<(usize, usize)> {
    let b = t.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            out.push((start, i));
        } else if c == b'-' || c.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                i += 1;
            }
            out.push((start, i));
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

/// The engine itself: deterministic, and every kind of mutation happens.
#[test]
fn fuzz_mutator_is_deterministic_and_varied() {
    let seed = idx_images(2, 4, 4);
    let run = |s| {
        let mut m = Mutator::new(s);
        (0..200)
            .map(|_| m.bytes(&seed, &IDX_IMAGE_FIELDS))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    let descs: Vec<String> = run(7).into_iter().map(|(_, d)| d).collect();
    for kind in [
        "truncate to",
        "flip bit",
        "bits",
        "overwrite",
        "field BE32",
        "random bytes",
        "delete",
        "insert",
        "fill",
        "append",
    ] {
        assert!(
            descs.iter().any(|d| d.contains(kind)),
            "no `{kind}` mutation in 200"
        );
    }
    let spans = json_spans(r#"{"a": -1.5e3, "b": "x\"y", "c": [true, null]}"#);
    assert_eq!(spans.len(), 7);
    let mut m = Mutator::new(1);
    assert!((0..3000).any(|_| m.bytes(&seed, &[]).0.is_empty()));
}
