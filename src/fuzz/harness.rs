//! The harness every fuzz test runs its cases in: a counting global allocator (the largest
//! single request per thread), a panic hook that counts the panics of an armed thread, [`probe`]
//! (one case under `catch_unwind`) and [`Tally`] (the properties checked on each case, and the
//! counts of a reader's run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Counting allocator and panic hook

/// The largest single allocation a reader may request while reading a mutant.
pub(super) const ALLOC_BOUND: usize = 600 << 20;

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
pub(super) struct Probe {
    /// `Err(panic)` when the panic escaped; `Ok(Err(message))` when the reader refused.
    pub(super) result: Result<Result<(), String>, String>,
    /// Largest single allocation requested.
    pub(super) largest: usize,
    /// Panics raised while reading (escaped or caught by the reader).
    pub(super) panics: usize,
    pub(super) first_panic: String,
}

/// Runs `f` armed: under `catch_unwind`, with the allocation record reset before and read after.
pub(super) fn probe<T, E: Display>(f: impl FnOnce() -> Result<T, E>) -> Probe {
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
pub(super) struct Tally {
    reader: &'static str,
    started: Instant,
    pub(super) cases: usize,
    pub(super) accepted: usize,
    pub(super) rejected: usize,
    /// Panics the reader caught itself (allowed only where the reader says so).
    caught_panics: usize,
    pub(super) largest: usize,
    /// Rejections whose message lacks the file name (only counted where that is allowed).
    pub(super) unnamed: usize,
    first_caught: String,
}

impl Tally {
    pub(super) fn new(reader: &'static str) -> Self {
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
    pub(super) fn fail(&self, desc: &str, input: &[u8], msg: String) -> ! {
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
    pub(super) fn check(
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

    pub(super) fn report(&self) {
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

pub(super) fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
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
    assert!(p.first_panic.contains("inner") && p.first_panic.contains(file!()));
    // Reserved, never touched: costs address space only.
    let p = probe(|| -> Result<usize, String> {
        let v: Vec<u8> = Vec::with_capacity(ALLOC_BOUND + 1);
        Ok(v.capacity())
    });
    assert!(p.largest > ALLOC_BOUND);
    let p = probe(|| -> Result<(), String> { Ok(()) });
    assert!(p.largest < 1024 && p.panics == 0);
}
