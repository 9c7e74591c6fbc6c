//! Property and mutation tests ("fuzzing") of every reader of untrusted bytes: the data readers
//! (IDX raw and gzipped, CIFAR-10, image folders), the `.vqz` code container, checkpoints
//! (safetensors, `state.json`, `checkpoints/latest`, the optimizer's burnpack file),
//! `config.json`, `metrics.jsonl` and `eval.json`.
//!
//! Each test builds VALID seed bytes, then runs a fixed number of mutants from a small
//! deterministic mutation engine (seeded `StdRng`): truncations (including to 0 bytes), single
//! and multiple bit flips, random byte overwrites, header fields set to huge values, interesting
//! integers at random offsets, chunk deletions and duplications, pure random bytes, and format
//! aware mutations (IDX mutated before gzip, PNG chunks with their CRCs fixed, JPEG frame sizes,
//! JSON numbers, strings and nesting, the safetensors header with its length fixed). Every mutant
//! is written to a file and read under `catch_unwind`; the properties are
//!
//! * no panic (not even one the reader catches itself, except where noted);
//! * the result is `Ok` or an [`InputError`](crate::InputError) whose message names the file;
//! * no single allocation larger than [`harness::ALLOC_BOUND`] was requested while reading,
//!   measured by a counting global allocator (compiled only into the lib's test binary).
//!
//! A failing case saves its input to the temp directory and names it in the failure message.
//! Run with `cargo test --release --lib fuzz_ -- --nocapture` to see the counts.
//!
//! The files:
//!
//! * [`harness`]: the counting allocator, the panic hook, `probe` (one case) and `Tally` (the
//!   checks on each case and the counts of a reader's run);
//! * [`mutator`]: the mutation engine;
//! * one file of cases a reader: [`idx`] (IDX, MNIST, CIFAR-10), [`container`] (`.vqz`, with
//!   its image count against the payload through `vqib decompress`), [`images`] (image folders),
//!   [`checkpoint`] (safetensors, `load_dir`, `latest`, the optimizer state), [`config`] (the
//!   run configuration, huge counts on every value that sizes memory, `metrics.jsonl`) and
//!   [`reports`] (`eval.json` and the sweep report).

mod checkpoint;
mod config;
mod container;
mod harness;
mod idx;
mod images;
mod mutator;
mod reports;
