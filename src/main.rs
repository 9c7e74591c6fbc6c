//! The `vqib` binary: process set-up (allocator, Ctrl-C), the command line ([`cli`]), and exit
//! codes: 0 done, 2 bad input, 3 a non-finite loss, 130 interrupted, 1 anything else.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::FromArgMatches;
use vqib::error::{InputError, NonFiniteError};

fn main() -> ExitCode {
    // Reuse freed buffers across training steps instead of faulting fresh pages in (see alloc).
    vqib::alloc::keep_freed_memory();
    // burn 0.22 materialises loaded optimizer state on `Device::default()`, which reads only
    // BURN_DEVICE and otherwise prefers a GPU when one is compiled in (and panics without an
    // adapter); keep it on the CPU: the state moves to the parameters' device on the next step.
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: no other thread has been started yet.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    // One parse of the command line (args_os: a path may be any bytes, not only UTF-8); bad
    // input exits 2 with clap's message naming the flag.
    let matches = cli::command().get_matches();
    let parsed = match cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C exits at once.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: saving a checkpoint, then stopping (Ctrl-C again to quit now)");
        });
    }
    match cli::run(parsed, &matches, stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<InputError>().is_some() {
        2
    } else if e.downcast_ref::<cli::Interrupted>().is_some() {
        130
    } else if e.downcast_ref::<NonFiniteError>().is_some() {
        3
    } else {
        1
    }
}
