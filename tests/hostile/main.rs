//! Hostile input through the `vqib` binary (issue 21): every count that sizes memory bounded,
//! containers whose counts disagree with their payload, runs that stop or are edited, stale
//! temporaries. Each case checks the exit code, a message naming the flag or file, that nothing
//! was written, and that nothing was left behind.

#[path = "../common/mod.rs"]
mod common;

mod bench;
mod codec;
mod quantizers;
mod runs;
