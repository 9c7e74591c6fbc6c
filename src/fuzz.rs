//! Property and mutation tests ("fuzzing") of every reader of untrusted bytes: the data readers
//! (IDX raw and gzipped, CIFAR-10, image folders), checkpoints (safetensors, `state.json`,
//! `checkpoints/latest`, the optimizer's burnpack file), `config.json` and `metrics.jsonl`.
//!
//! Each test builds VALID seed bytes, then runs a fixed number of mutants from a small
//! deterministic mutation engine (seeded [`StdRng`]): truncations (including to 0 bytes), single
//! and multiple bit flips, random byte overwrites, header fields set to huge values, interesting
//! integers at random offsets, chunk deletions and duplications, pure random bytes, and format
//! aware mutations (IDX mutated before gzip, PNG chunks with their CRCs fixed, JPEG frame sizes,
//! JSON numbers, strings and nesting, the safetensors header with its length fixed). Every mutant
//! is written to a file and read under `catch_unwind`; the properties are
//!
//! * no panic (not even one the reader catches itself, except where noted);
//! * the result is `Ok` or an [`InputError`](crate::InputError) whose message names the file;
//! * no single allocation larger than [`ALLOC_BOUND`] was requested while reading, measured by
//!   the counting global allocator below (compiled only into the lib's test binary).
//!
//! A failing case saves its input to the temp directory and names it in the failure message.
//! Run with `cargo test --release --features wgpu --lib -- fuzz --nocapture` to see the counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checkpoint::{self, TrainState};
use crate::config::RunConfig;
use crate::data;
use crate::model::NamedTensors;
use crate::quantizer::{DeadCodeTracker, EmaCodebook, QuantizerKind};

// ---------------------------------------------------------------------------------------------
// Counting allocator and panic hook

/// The largest single allocation a reader may request while reading a mutant.
const ALLOC_BOUND: usize = 600 << 20;

thread_local! {
    /// Largest `alloc`/`realloc` size on this thread since the last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Whether this thread is reading a mutant (panics are counted, not printed).
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Panics on this thread while armed (caught by the reader itself or by the harness).
    static PANICS: Cell<usize> = const { Cell::new(0) };
    /// The first such panic: location and message.
    static FIRST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// `System`, recording the largest request per thread. The thread-locals have `const`
/// initialisers and no destructors, so recording never allocates.
struct CountingAlloc;

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size);
        }
    });
    if size > ALLOC_BOUND && ARMED.try_with(Cell::get).unwrap_or(false) {
        warn_big(size);
    }
}

/// Writes "fuzz: allocation of N bytes requested" to stderr without allocating, so that an
/// allocation that then fails (and aborts the process) is explained.
fn warn_big(size: usize) {
    let mut buf = [0u8; 96];
    let head = b"fuzz: allocation of ";
    let tail = b" bytes requested while reading a mutant\n";
    buf[..head.len()].copy_from_slice(head);
    let mut digits = [0u8; 20];
    let (mut n, mut k) = (size, 0);
    loop {
        digits[k] = b'0' + (n % 10) as u8;
        k += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = head.len();
    for i in (0..k).rev() {
        buf[at] = digits[i];
        at += 1;
    }
    buf[at..at + tail.len()].copy_from_slice(tail);
    at += tail.len();
    // SAFETY: writes `at` initialised bytes of `buf` to fd 2.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), at);
    }
}

// SAFETY: every call is forwarded to `System` unchanged.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Installs (once) a panic hook that counts panics of armed threads instead of printing them;
/// other threads (the other tests) get the previous hook.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ARMED.try_with(Cell::get).unwrap_or(false) {
                PANICS.with(|p| p.set(p.get() + 1));
                FIRST_PANIC.with(|f| {
                    let mut f = f.borrow_mut();
                    if f.is_empty() {
                        *f = info.to_string();
                    }
                });
            } else {
                prev(info);
            }
        }));
    });
}

/// What reading one mutant did.
struct Probe {
    /// `Err(panic)` when the panic escaped; `Ok(Err(message))` when the reader refused.
    result: Result<Result<(), String>, String>,
    /// Largest single allocation requested.
    largest: usize,
    /// Panics raised while reading (escaped or caught by the reader).
    panics: usize,
    first_panic: String,
}

/// Runs `f` armed: under `catch_unwind`, with the allocation record reset before and read after.
fn probe<T, E: Display>(f: impl FnOnce() -> Result<T, E>) -> Probe {
    install_hook();
    PANICS.with(|p| p.set(0));
    FIRST_PANIC.with(|f| f.borrow_mut().clear());
    LARGEST.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| f().map(drop)));
    ARMED.with(|a| a.set(false));
    let largest = LARGEST.with(Cell::get);
    let result = match r {
        Ok(Ok(())) => Ok(Ok(())),
        Ok(Err(e)) => Ok(Err(e.to_string())),
        Err(_) => Err(FIRST_PANIC.with(|f| f.borrow().clone())),
    };
    Probe {
        result,
        largest,
        panics: PANICS.with(Cell::get),
        first_panic: FIRST_PANIC.with(|f| f.borrow().clone()),
    }
}

// ---------------------------------------------------------------------------------------------
// Tallies and checks

/// Counts of one reader's run.
struct Tally {
    reader: &'static str,
    started: Instant,
    cases: usize,
    accepted: usize,
    rejected: usize,
    /// Panics the reader caught itself (allowed only where the reader says so).
    caught_panics: usize,
    largest: usize,
    /// Rejections whose message lacks the file name (only counted where that is allowed).
    unnamed: usize,
    first_caught: String,
}

impl Tally {
    fn new(reader: &'static str) -> Self {
        Tally {
            reader,
            started: Instant::now(),
            cases: 0,
            accepted: 0,
            rejected: 0,
            caught_panics: 0,
            largest: 0,
            unnamed: 0,
            first_caught: String::new(),
        }
    }

    /// Saves the input of a failing case and fails with `msg`.
    fn fail(&self, desc: &str, input: &[u8], msg: String) -> ! {
        let saved = std::env::temp_dir().join(format!(
            "vqib-fuzz-{}-case{}.bin",
            self.reader
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            self.cases
        ));
        let _ = std::fs::write(&saved, input);
        panic!(
            "fuzz {}: case {} ({desc}): {msg}\n(input saved to {})",
            self.reader,
            self.cases,
            saved.display()
        );
    }

    /// Checks one probe: no panic, allocation within the bound, and a rejection naming one of
    /// `names`. `allow_caught` lets a reader that catches panics itself pass (they are counted).
    fn check(
        &mut self,
        p: Probe,
        desc: &str,
        input: &[u8],
        names: &[&str],
        allow_caught: bool,
    ) -> Result<(), String> {
        self.cases += 1;
        self.largest = self.largest.max(p.largest);
        let result = match p.result {
            Err(panic) => self.fail(desc, input, format!("PANIC: {panic}")),
            Ok(r) => r,
        };
        if p.panics > 0 {
            if !allow_caught {
                self.fail(
                    desc,
                    input,
                    format!("a panic was raised and caught inside: {}", p.first_panic),
                );
            }
            self.caught_panics += 1;
            if self.first_caught.is_empty() {
                self.first_caught = p.first_panic.clone();
            }
        }
        if p.largest > ALLOC_BOUND {
            self.fail(
                desc,
                input,
                format!(
                    "an allocation of {} bytes was requested (bound {ALLOC_BOUND})",
                    p.largest
                ),
            );
        }
        match &result {
            Ok(()) => self.accepted += 1,
            Err(m) => {
                self.rejected += 1;
                if !names.iter().any(|n| m.contains(n)) {
                    self.fail(
                        desc,
                        input,
                        format!("the error does not name any of {names:?}: {m}"),
                    );
                }
            }
        }
        result
    }

    fn report(&self) {
        eprintln!(
            "fuzz {}: {} cases, {} accepted, {} rejected, {} caught panics, largest allocation {:.1} KiB, {:.2} s{}",
            self.reader,
            self.cases,
            self.accepted,
            self.rejected,
            self.caught_panics,
            self.largest as f64 / 1024.0,
            self.started.elapsed().as_secs_f64(),
            if self.unnamed > 0 {
                format!(", {} errors not naming the file", self.unnamed)
            } else {
                String::new()
            }
        );
        if !self.first_caught.is_empty() {
            eprintln!(
                "fuzz {}: first caught panic: {}",
                self.reader, self.first_caught
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mutation engine

/// A header field the mutator may set to huge values.
#[derive(Clone, Copy, Debug)]
enum Field {
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

struct Mutator {
    rng: StdRng,
}

impl Mutator {
    fn new(seed: u64) -> Self {
        Mutator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn pos(&mut self, len: usize) -> usize {
        if len == 0 {
            0
        } else {
            self.rng.gen_range(0..len)
        }
    }

    /// One to four byte-level mutations of `seed`, and their description.
    fn bytes(&mut self, seed: &[u8], fields: &[Field]) -> (Vec<u8>, String) {
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
    fn json(&mut self, text: &str) -> (Vec<u8>, String) {
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

// ---------------------------------------------------------------------------------------------
// Seeds

use crate::data::idx_files::{gz, idx_labels};

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    crate::data::idx_files::idx_images(n, rows, cols, 0)
}

const IDX_IMAGE_FIELDS: [Field; 4] = [
    Field::Be32(0),
    Field::Be32(4),
    Field::Be32(8),
    Field::Be32(12),
];
const IDX_LABEL_FIELDS: [Field; 2] = [Field::Be32(0), Field::Be32(4)];

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

/// A small vqib checkpoint: config (vq-ema, K = 2, D = 3), two tensors, EMA state.
fn checkpoint_seed(step: u64) -> (Vec<u8>, RunConfig) {
    let mut t = NamedTensors::new();
    t.insert(
        "quantizer.codebook".into(),
        (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
    );
    t.insert(
        "encoder.conv1.weight".into(),
        (vec![2, 1, 2, 2], (0..8).map(|i| i as f32 * 0.25).collect()),
    );
    let mut cfg = RunConfig::default();
    cfg.quantizer.codebook_size = 2;
    cfg.quantizer.code_dim = 3;
    cfg.quantizer.kind = QuantizerKind::VqEma;
    let cfg = cfg.resolve().unwrap();
    let mut ema = EmaCodebook::new(2, 3, 0.99, 1e-5);
    ema.update(&[1.0, 2.0, 3.0], &[1]);
    let bytes = checkpoint::to_safetensors(&t, Some(&ema), &cfg, step).unwrap();
    (canonical_safetensors(&bytes), cfg)
}

/// The same safetensors file with its header's keys sorted (the metadata is written in hash-map
/// order), padded to 8 bytes: the same seed bytes every run.
fn canonical_safetensors(bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut h = serde_json::to_string(&header).unwrap().into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut v = (h.len() as u64).to_le_bytes().to_vec();
    v.extend(h);
    v.extend(&bytes[8 + n..]);
    v
}

/// The training state saved beside [`checkpoint_seed`]`(step)`.
fn state_seed(step: u64) -> String {
    let mut s = TrainState::default();
    s.step = step;
    s.epoch = 1;
    s.batch_in_epoch = 3;
    s.wall_time = 12.5;
    s.dead_codes = Some(DeadCodeTracker::new(2, 100, step - 2));
    s.codebook_initialised = true;
    serde_json::to_string_pretty(&s).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The tests

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

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

/// The `.vqz` container of `vqib compress`: header fields set huge, truncations, flips.
#[test]
fn fuzz_code_container() {
    use crate::codec::Container;
    let d = tempfile::tempdir().unwrap();
    let seed = Container {
        model_hash: [3; 32],
        prior_checksum: 7,
        k: 16,
        images: 3,
        image_shape: [1, 28, 28],
        grid: [7, 7],
        payload: (1..40).collect(),
    }
    .to_bytes();
    let fields = [
        Field::Le16(8),
        Field::Le32(46),
        Field::Le32(50),
        Field::Le64(64),
        Field::Le16(60),
    ];
    let mut m = Mutator::new(0x7a2);
    let mut t = Tally::new("codec::Container::read");
    let p = d.path().join("codes.vqz");
    for _ in 0..600 {
        let (bytes, desc) = m.bytes(&seed, &fields);
        std::fs::write(&p, &bytes).unwrap();
        let pr = probe(|| Container::read(&p));
        let _ = t.check(pr, &desc, &bytes, &["codes.vqz"], false);
    }
    t.report();
    assert!(t.rejected > 0);
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

/// Replaces the safetensors header by a JSON-mutated one and fixes its length prefix.
fn mutate_safetensors_header(m: &mut Mutator, seed: &[u8]) -> (Vec<u8>, String) {
    let n = u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&seed[8..8 + n]).unwrap();
    let (h, desc) = m.json(header);
    let mut v = (h.len() as u64).to_le_bytes().to_vec();
    v.extend(&h);
    v.extend(&seed[8 + n..]);
    (v, format!("header: {desc}"))
}

#[test]
fn fuzz_read_safetensors() {
    let d = tempfile::tempdir().unwrap();
    let (seed, cfg) = checkpoint_seed(42);
    let p = d.path().join("model.safetensors");
    std::fs::write(&p, &seed).unwrap();
    assert_eq!(checkpoint::read_safetensors(&p).unwrap().0, cfg);
    let mut m = Mutator::new(0x5afe);
    let mut t = Tally::new("read_safetensors");
    let (mut non_finite, mut first_non_finite) = (0, String::new());
    for case in 0..1000 {
        let (bytes, desc) = if case % 2 == 0 {
            mutate_safetensors_header(&mut m, &seed)
        } else {
            m.bytes(&seed, &[Field::Le64(0)])
        };
        std::fs::write(&p, &bytes).unwrap();
        let mut finite = true;
        let pr = probe(|| {
            checkpoint::read_safetensors(&p).map(|(_, tensors, ema, _)| {
                finite = tensors
                    .values()
                    .all(|(_, v)| v.iter().all(|x| x.is_finite()))
                    && ema.iter().all(|e| {
                        e.count_hidden
                            .iter()
                            .chain(&e.sum_hidden)
                            .all(|x| x.is_finite())
                    });
            })
        });
        if t.check(pr, &desc, &bytes, &["model.safetensors"], false)
            .is_ok()
            && !finite
        {
            non_finite += 1;
            if first_non_finite.is_empty() {
                first_non_finite = desc.clone();
            }
        }
    }
    t.report();
    eprintln!("fuzz read_safetensors: {non_finite} accepted checkpoints hold non-finite values");
    assert_eq!(non_finite, 0, "first: {first_non_finite}");
    assert!(t.accepted > 0 && t.rejected > 0);
}

/// `load_dir` on a valid `model.safetensors` and a mutated `state.json` (and, in a quarter of the
/// cases, a mutated `model.safetensors` beside a valid `state.json`).
#[test]
fn fuzz_load_dir() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("step-00000042");
    std::fs::create_dir(&dir).unwrap();
    let (model, _) = checkpoint_seed(42);
    let state = state_seed(42);
    let mp = dir.join("model.safetensors");
    let sp = dir.join("state.json");
    std::fs::write(&mp, &model).unwrap();
    std::fs::write(&sp, &state).unwrap();
    assert_eq!(checkpoint::load_dir(&dir).unwrap().state.step, 42);
    let mut m = Mutator::new(0x57a7e);
    let mut t = Tally::new("load_dir");
    let (mut inconsistent, mut first_inconsistent) = (0, String::new());
    for case in 0..800 {
        let (p, bytes, desc) = if case % 4 == 3 {
            let (b, desc) = m.bytes(&model, &[Field::Le64(0)]);
            (&mp, b, format!("model.safetensors: {desc}"))
        } else if case % 4 == 2 {
            let (b, desc) = m.bytes(state.as_bytes(), &[]);
            (&sp, b, format!("state.json bytes: {desc}"))
        } else {
            let (b, desc) = m.json(&state);
            (&sp, b, format!("state.json: {desc}"))
        };
        std::fs::write(p, &bytes).unwrap();
        let mut tracked = None;
        let pr = probe(|| {
            checkpoint::load_dir(&dir).map(|ck| {
                let k = ck.config.quantizer.codebook_size;
                tracked = ck.state.dead_codes.map(|dc| (dc.last_used.len(), k));
            })
        });
        let ok = t.check(pr, &desc, &bytes, &[&name_of(p)], false).is_ok();
        // Found by this test, fixed in `load_dir`: a `dead_codes.last_used` whose length is
        // not K made training index out of bounds or divide by zero.
        if let (true, Some((len, k))) = (ok, tracked)
            && len != k
        {
            inconsistent += 1;
            if first_inconsistent.is_empty() {
                first_inconsistent = format!("{desc}: last_used has {len} entries, K = {k}");
            }
        }
        std::fs::write(&mp, &model).unwrap();
        std::fs::write(&sp, &state).unwrap();
    }
    t.report();
    eprintln!(
        "fuzz load_dir: {inconsistent} accepted states track dead codes for other than K codes"
    );
    assert_eq!(inconsistent, 0, "first: {first_inconsistent}");
    assert!(t.accepted > 0 && t.rejected > 0);
}

/// `latest_dir` with a mutated `checkpoints/latest`: whatever it holds, the result is a
/// `step-*` directory inside `checkpoints/` or an error naming `latest`.
#[test]
fn fuzz_latest_dir() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let root = checkpoint::checkpoints_dir(&run);
    for step in ["step-00000007", "step-00000042"] {
        let p = root.join(step);
        std::fs::create_dir_all(&p).unwrap();
        for f in ["model.safetensors", "optimizer.bpk", "state.json"] {
            std::fs::write(p.join(f), b"x").unwrap();
        }
    }
    // Directories outside checkpoints/ that a hostile `latest` could point at.
    std::fs::create_dir_all(d.path().join("elsewhere/step-00000099")).unwrap();
    let latest = root.join("latest");
    std::fs::write(&latest, "step-00000042").unwrap();
    assert_eq!(
        checkpoint::latest_dir(&run).unwrap(),
        root.join("step-00000042")
    );
    let abs = d
        .path()
        .join("elsewhere/step-00000099")
        .display()
        .to_string();
    let crafted: Vec<Vec<u8>> = [
        "",
        "\n",
        "   ",
        "..",
        "../..",
        "../../..",
        "../../../../../../../../etc",
        "/",
        "/etc",
        "/tmp",
        abs.as_str(),
        "step-00000042/../..",
        "step-00000042/..",
        "step-00000042/../../elsewhere/step-00000099",
        "./step-00000042",
        "step-00000042\n",
        " step-00000042 ",
        "step-00000042\0",
        "step-0000004\0",
        "step-99999999",
        "step--1",
        "step-",
        "step-18446744073709551616",
        "step-00000042\nstep-00000007",
        "STEP-00000042",
        "latest",
        ".",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([
        "a".repeat(300).into_bytes(),
        format!("step-{}", "9".repeat(5000)).into_bytes(),
        "x".repeat(100_000).into_bytes(),
        "../".repeat(2000).into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x80],
    ])
    .collect();
    let mut m = Mutator::new(0x1a7e5);
    let mut t = Tally::new("latest_dir");
    for case in 0..500 {
        let (bytes, desc) = if case < crafted.len() {
            (crafted[case].clone(), format!("crafted {case}"))
        } else if case % 3 == 0 {
            let n = m.rng.gen_range(0..200);
            let b: Vec<u8> = (0..n).map(|_| m.rng.r#gen()).collect();
            (b, format!("{n} random bytes"))
        } else {
            m.bytes(b"step-00000042", &[])
        };
        std::fs::write(&latest, &bytes).unwrap();
        let mut got = None;
        let pr = probe(|| checkpoint::latest_dir(&run).map(|p| got = Some(p)));
        let named = latest.display().to_string();
        let r = t.check(pr, &desc, &bytes, &[&named], false);
        if r.is_ok() {
            let got = got.expect("Ok carries the directory");
            let inside = got.parent() == Some(root.as_path())
                && got
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"));
            if !inside {
                t.fail(
                    &desc,
                    &bytes,
                    format!("latest_dir left checkpoints/: {}", got.display()),
                );
            }
        }
    }
    t.report();
    assert!(t.accepted > 0 && t.rejected > 0);
}

fn config_seed() -> String {
    let mut cfg = RunConfig::default();
    cfg.quantizer.kind = QuantizerKind::SoftEm;
    cfg.quantizer.codebook_size = 16;
    serde_json::to_string_pretty(&cfg.resolve().unwrap()).unwrap()
}

/// What in an accepted configuration would make a run allocate more than [`ALLOC_BOUND`] (or
/// overflow computing it), if anything.
fn oversized(c: &RunConfig) -> Option<String> {
    let bound = ALLOC_BOUND as u128;
    let (q, m, d, t) = (&c.quantizer, &c.model, &c.data, &c.training);
    let checks = [
        (
            "codebook K x D x 8 bytes",
            q.codebook_size as u128 * q.code_dim as u128 * 8,
        ),
        (
            "hidden x hidden x 16 x 4 bytes",
            m.hidden.unwrap_or(0) as u128 * m.hidden.unwrap_or(0) as u128 * 64,
        ),
        (
            "batch x 32 x 32 x 3 x 4 bytes",
            t.batch_size as u128 * 12_288,
        ),
        (
            "samples x batch x 4 bytes",
            q.samples as u128 * t.batch_size as u128 * 4,
        ),
        ("shapes_train x 784 bytes", d.shapes_train as u128 * 784),
        ("shapes_test x 784 bytes", d.shapes_test as u128 * 784),
    ];
    checks
        .iter()
        .find(|(_, v)| *v > bound)
        .map(|(what, v)| format!("{what} = {v}"))
}

#[test]
fn fuzz_run_config() {
    let d = tempfile::tempdir().unwrap();
    let seed = config_seed();
    // The flat layout of earlier versions is a second seed.
    let flat: serde_json::Value = serde_json::from_str(&seed).unwrap();
    let mut flat_map = serde_json::Map::new();
    for (_, section) in flat.as_object().unwrap() {
        if let Some(o) = section.as_object() {
            flat_map.extend(o.clone());
        }
    }
    let flat = serde_json::to_string(&flat_map).unwrap();
    let p = d.path().join("config.json");
    std::fs::write(&p, &seed).unwrap();
    RunConfig::load(&p).unwrap();
    let mut m = Mutator::new(0xc0f);
    let mut t = Tally::new("RunConfig::load / from_json");
    let (mut huge, mut first_huge) = (0, String::new());
    for case in 0..1000 {
        let base = if case % 5 == 4 { &flat } else { &seed };
        let (bytes, desc) = if case % 3 == 2 {
            m.bytes(base.as_bytes(), &[])
        } else {
            m.json(base)
        };
        std::fs::write(&p, &bytes).unwrap();
        let mut cfg = None;
        if case % 2 == 0 {
            let pr = probe(|| RunConfig::load(&p).map(|c| cfg = Some(c)));
            let _ = t.check(pr, &desc, &bytes, &["config.json"], false);
        } else {
            let text = String::from_utf8_lossy(&bytes);
            let origin = Path::new("/some/run/config.json");
            let pr = probe(|| RunConfig::from_json(&text, origin).map(|c| cfg = Some(c)));
            let _ = t.check(pr, &desc, &bytes, &["/some/run/config.json"], false);
        }
        // Reading is bounded; an accepted configuration that asks a run for more memory than the
        // machine has is refused by the memory check that training and evaluation make before
        // they allocate.
        if let Some(c) = cfg.as_ref()
            && let Some(what) = oversized(c)
        {
            huge += 1;
            if first_huge.is_empty() {
                first_huge = format!("{desc}: {what}");
            }
            let shape = c.data.image_shape.unwrap_or([1, 28, 28]);
            assert!(
                c.check_memory(shape, 0).is_err(),
                "{desc}: {what} passes the memory check"
            );
        }
    }
    t.report();
    eprintln!(
        "fuzz RunConfig: {huge} accepted configurations ask for huge allocations, all refused by the memory check{}",
        if first_huge.is_empty() {
            String::new()
        } else {
            format!(" (first: {first_huge})")
        }
    );
    assert!(t.accepted > 0 && t.rejected > 0);
}

/// `read_records` skips lines it cannot parse and reads a missing file as empty; its errors are
/// `anyhow` errors (only the file's own I/O, e.g. invalid UTF-8), counted when they do not name
/// the file.
#[test]
fn fuzz_read_records() {
    use crate::records::{Record, read_records};
    let d = tempfile::tempdir().unwrap();
    let mut seed = String::new();
    for step in 1..=6u64 {
        let r = Record {
            kind: if step % 3 == 0 { "eval" } else { "train" }.into(),
            step,
            epoch: (step / 4) as usize,
            wall_time: step as f64 * 0.5,
            loss: Some(1.0 / step as f64),
            recon_mse: Some(0.01 * step as f64),
            ..Default::default()
        };
        seed.push_str(&serde_json::to_string(&r).unwrap());
        seed.push('\n');
    }
    let p = d.path().join("metrics.jsonl");
    std::fs::write(&p, &seed).unwrap();
    assert_eq!(read_records(&p).unwrap().len(), 6);
    let mut m = Mutator::new(0x3ec);
    let mut t = Tally::new("read_records");
    for case in 0..600 {
        let (bytes, desc) = if case % 2 == 0 {
            m.json(&seed)
        } else {
            m.bytes(seed.as_bytes(), &[])
        };
        std::fs::write(&p, &bytes).unwrap();
        let pr = probe(|| read_records(&p).map_err(|e| format!("{e:#}")));
        // Any message passes `check`; whether it names the file is counted below.
        if let Err(msg) = t.check(pr, &desc, &bytes, &[""], false)
            && !msg.contains("metrics.jsonl")
        {
            t.unnamed += 1;
        }
    }
    t.report();
    assert!(t.accepted > 0);
}

/// A small linear layer with constant weights and parameter ids 1, 2 (as
/// `VqVae::with_stable_ids`), so that the optimizer's seed bytes are the same every run.
fn small_linear() -> burn::nn::Linear {
    use burn::module::Module;
    use burn::tensor::Device;
    burn::nn::LinearConfig::new(4, 3)
        .with_initializer(burn::nn::Initializer::Constant { value: 0.25 })
        .init(&Device::flex().autodiff())
        .map(&mut crate::model::StableIds::default())
}

/// One Adam step of `optim` on [`small_linear`].
fn step_small_linear(optim: &mut burn::optim::ModuleOptimizer) -> burn::nn::Linear {
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor};
    let lin = small_linear();
    let x = Tensor::<2>::ones([2, 4], &Device::flex().autodiff());
    let loss = lin.forward(x).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &lin);
    optim.step(1e-3, lin, grads)
}

/// Seed bytes of a real optimizer: Adam after one step on [`small_linear`]. burn writes the
/// parameters in hash-map order (two layouts for two parameters), so the smallest of 32
/// serialisations is taken: the same bytes every run.
fn optimizer_seed() -> Vec<u8> {
    (0..32)
        .map(|_| {
            let mut optim = RunConfig::default().training.optimizer().init();
            step_small_linear(&mut optim);
            optim.into_bytes().unwrap().to_vec()
        })
        .min()
        .unwrap()
}

/// Sets one small CBOR integer (one byte, 0..=23) inside a tensor's `shape`, `data_offsets` or
/// `param_id` of a burnpack's metadata to another small integer: the file stays well-formed, so
/// these mutants test what the loader checks, not what the parser refuses.
fn cbor_small_int(m: &mut Mutator, seed: &[u8]) -> (Vec<u8>, String) {
    let mut spots = Vec::new();
    for key in [&b"shape"[..], b"data_offsets", b"param_id"] {
        for (i, w) in seed.windows(key.len()).enumerate() {
            if w == key {
                // The value: a small int, or an array (0x80..=0x97) of items of which the
                // small ints (< 24) are candidates.
                let at = i + key.len();
                match seed.get(at) {
                    Some(&b) if b < 24 => spots.push(at),
                    Some(&b) if (0x80..=0x97).contains(&b) => {
                        let mut j = at + 1;
                        for _ in 0..(b - 0x80) {
                            match seed.get(j) {
                                Some(&x) if x < 24 => spots.push(j),
                                _ => {}
                            }
                            j += match seed.get(j) {
                                Some(0x19) => 3,
                                Some(0x1a) => 5,
                                Some(0x18) => 2,
                                _ => 1,
                            };
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let mut v = seed.to_vec();
    if spots.is_empty() {
        return (v, "cbor: no small ints".into());
    }
    let at = spots[m.pos(spots.len())];
    let new = m.rng.gen_range(0..24u8);
    let old = v[at];
    v[at] = new;
    (v, format!("cbor small int at {at}: {old} -> {new}"))
}

#[test]
fn fuzz_read_optimizer() {
    let d = tempfile::tempdir().unwrap();
    let seed = optimizer_seed();
    let p = d.path().join("optimizer.bpk");
    std::fs::write(&p, &seed).unwrap();
    let fresh = || RunConfig::default().training.optimizer().init();
    // burn materialises the state on `Device::default()`: with `--features wgpu` that is a GPU
    // adapter (the binary pins it to the CPU through BURN_DEVICE; a test cannot set the
    // environment safely). Without an adapter even the valid seed is refused; then only the
    // properties are checked, not that some mutants load.
    let seed_loads = match checkpoint::read_optimizer(&p, fresh()) {
        Ok(mut o) => {
            step_small_linear(&mut o);
            true
        }
        Err(e) => {
            eprintln!("fuzz read_optimizer: the valid seed does not load here: {e}");
            false
        }
    };
    // Header fields of the burnpack container: magic, version, metadata size.
    let fields = [Field::Le32(0), Field::Le16(4), Field::Le32(6)];
    let mut m = Mutator::new(0x0b7);
    let mut t = Tally::new("read_optimizer");
    // Accepted states are also stepped once with the model they were saved from: a state that
    // loads but breaks the next step is counted (reported, not failed: the step is burn's).
    let (mut stepped, mut step_panics, mut first_step_panic) = (0, 0, String::new());
    let (mut reshaped, mut first_reshaped, mut non_finite) = (0, String::new(), 0);
    let mut first_non_finite = String::new();
    for case in 0..600 {
        let (bytes, desc) = if case % 4 == 3 {
            cbor_small_int(&mut m, &seed)
        } else {
            m.bytes(&seed, &fields)
        };
        std::fs::write(&p, &bytes).unwrap();
        let mut loaded = None;
        let pr = probe(|| checkpoint::read_optimizer(&p, fresh()).map(|o| loaded = Some(o)));
        let _ = t.check(pr, &desc, &bytes, &["optimizer.bpk"], true);
        if let Some(mut o) = loaded {
            stepped += 1;
            let mut shapes = None;
            let pr = probe(|| {
                let lin = step_small_linear(&mut o);
                let bias = lin.bias.as_ref().map(|b| b.val().dims().to_vec());
                let vals = lin
                    .weight
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap_or_default();
                shapes = Some((lin.weight.val().dims().to_vec(), bias, vals));
                Ok::<(), String>(())
            });
            match (pr.result, shapes) {
                (Err(panic), _) => {
                    step_panics += 1;
                    if first_step_panic.is_empty() {
                        first_step_panic = format!("{desc}: {panic}");
                    }
                }
                (Ok(_), Some((w, b, vals))) => {
                    if w != [4, 3] || b.as_deref() != Some(&[3][..]) {
                        reshaped += 1;
                        if first_reshaped.is_empty() {
                            first_reshaped = format!("{desc}: weight {w:?}, bias {b:?}");
                        }
                    } else if vals.iter().any(|v| !v.is_finite()) {
                        non_finite += 1;
                        if first_non_finite.is_empty() {
                            first_non_finite = desc.clone();
                        }
                    }
                }
                (Ok(_), None) => unreachable!(),
            }
        }
    }
    t.report();
    eprintln!(
        "fuzz read_optimizer: {stepped} accepted states stepped: {step_panics} panicked in the step, \
         {reshaped} changed a parameter's shape, {non_finite} made a weight non-finite"
    );
    for (what, first) in [
        ("panic", &first_step_panic),
        ("reshape", &first_reshaped),
        ("non-finite weight", &first_non_finite),
    ] {
        if !first.is_empty() {
            eprintln!("fuzz read_optimizer: first {what}: {first}");
        }
    }
    // A finite but extreme Adam state may still drive a weight to infinity in the step: the
    // training loop's guards catch that (exit 3); a reader must not panic or reshape.
    assert_eq!(
        (step_panics, reshaped),
        (0, 0),
        "{first_step_panic} {first_reshaped}"
    );
    assert!(t.rejected > 0 && (t.accepted > 0 || !seed_loads));
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

/// The harness itself: an escaped panic, a panic the reader catches and an allocation over the
/// bound are all seen (the last prints the allocator's "fuzz: allocation of ..." line once).
#[test]
fn fuzz_harness_sees_panics_and_big_allocations() {
    let p = probe(|| -> Result<(), String> { panic!("boom") });
    assert!(
        matches!(&p.result, Err(m) if m.contains("boom")),
        "{:?}",
        p.result
    );
    assert_eq!(p.panics, 1);
    let p = probe(|| -> Result<(), String> {
        std::panic::catch_unwind(|| panic!("inner")).map_err(|_| "caught".to_string())
    });
    assert_eq!((p.result, p.panics), (Ok(Err("caught".into())), 1));
    assert!(p.first_panic.contains("inner") && p.first_panic.contains("fuzz.rs"));
    // Reserved, never touched: costs address space only.
    let p = probe(|| -> Result<usize, String> {
        let v: Vec<u8> = Vec::with_capacity(ALLOC_BOUND + 1);
        Ok(v.capacity())
    });
    assert!(p.largest > ALLOC_BOUND);
    let p = probe(|| -> Result<(), String> { Ok(()) });
    assert!(p.largest < 1024 && p.panics == 0);
}

/// `eval.json`, which `compare` and `sweep --collect` read from every run: an error names the
/// file, and whatever is accepted (NaN, infinities, huge or negative values where numbers are
/// expected) goes through the sweep's rows, `sweep.csv` and `sweep.html` without a panic.
#[test]
fn fuzz_eval_json_and_the_sweep_report() {
    use crate::experiment::sweep::{Point, PointResult, Setting, rows, sweep_csv};
    use crate::experiment::sweep_render::{SweepPage, sweep_html};
    use crate::train::EvalMetrics;
    let d = tempfile::tempdir().unwrap();
    let run = crate::run::RunDir::new(d.path());
    let mut eval = crate::experiment::fake_result(QuantizerKind::SoftEm, 1, 30.0, 700.0).eval;
    let est = crate::distortion::Estimate {
        mean: 690.0,
        se: 0.2,
    };
    eval.expected = Some(crate::train::Expected {
        samples: 4,
        distortion: est,
        mse: est,
        soft_distortion: est,
        soft_mse: est,
        l_vdib: 710.0,
        l_vib: 700.0,
        soft_l_vdib: 710.0,
        soft_l_vib: 700.0,
        l_marginal: 695.0,
        soft_l_marginal: 695.0,
    });
    eval.relevance = Some(crate::info::Relevance {
        classes: 10,
        h_y: 2.3,
        h_y_miller_madow: 2.3,
        i_zy: 0.1,
        h_z_given_y: 3.0,
        argmax_i_zy: 0.1,
        argmax_i_zy_miller_madow: 0.09,
    });
    let seed = serde_json::to_string_pretty(&eval).unwrap();
    let point = |q| Point {
        setting: Setting {
            quantizer: q,
            k: 512,
            d: 64,
            beta: 0.25,
            rate_weight: 1.0,
            tau: 1.0,
        },
        seed: 1,
    };
    let good = PointResult {
        point: point(QuantizerKind::Vq),
        run: crate::experiment::fake_result(QuantizerKind::Vq, 1, 5.0, 800.0),
    };
    // Writes `bytes` as eval.json, reads it as the second run of a sweep and renders the report.
    let read_and_render = |bytes: &[u8]| {
        std::fs::write(run.eval_json(), bytes).unwrap();
        probe(|| {
            let e: EvalMetrics = run.read_eval()?;
            let mut r = good.clone();
            r.point = point(QuantizerKind::SoftEm);
            r.run.eval = e;
            let rows = rows(&[good.clone(), r]);
            let page = SweepPage {
                command: "vqib sweep",
                points: 2,
                finished: 2,
                missing: &[],
            };
            let _ = sweep_csv(&rows);
            sweep_html(&page, &rows)
                .map_err(|e| crate::error::InputError::config(e.to_string()))?;
            Ok::<(), crate::error::InputError>(())
        })
    };
    let mut m = Mutator::new(0xe7a1);
    let mut t = Tally::new("eval.json -> sweep report");
    for case in 0..400 {
        let (bytes, desc) = if case % 3 == 2 {
            m.bytes(seed.as_bytes(), &[])
        } else {
            m.json(&seed)
        };
        let pr = read_and_render(&bytes);
        let _ = t.check(pr, &desc, &bytes, &["eval.json"], false);
    }
    // Every number of the file, one at a time, at the extremes JSON can carry.
    /// Sets the `n`-th number (depth first) of `v` to `x`; counts the numbers it passes.
    fn set_nth(v: &mut serde_json::Value, n: &mut usize, x: f64) {
        match v {
            serde_json::Value::Number(_) => {
                if *n == 0 {
                    *v = serde_json::json!(x);
                }
                *n = n.wrapping_sub(1);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|y| set_nth(y, n, x)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|y| set_nth(y, n, x)),
            _ => {}
        }
    }
    let count = {
        let mut v: serde_json::Value = serde_json::from_str(&seed).unwrap();
        let mut n = usize::MAX;
        set_nth(&mut v, &mut n, 0.0);
        usize::MAX - n
    };
    for i in 0..count {
        for x in [1e308, -1e308, 0.0, 5e-324, -3.0] {
            let mut v: serde_json::Value = serde_json::from_str(&seed).unwrap();
            set_nth(&mut v, &mut i.clone(), x);
            let bytes = serde_json::to_vec(&v).unwrap();
            let pr = read_and_render(&bytes);
            let _ = t.check(
                pr,
                &format!("number {i} = {x}"),
                &bytes,
                &["eval.json"],
                false,
            );
        }
    }
    t.report();
    assert!(t.accepted > 0 && t.rejected > 0);
}
