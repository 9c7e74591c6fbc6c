//! Error types. [`InputError`] is what the user can fix (a file, a flag, a checkpoint): the CLI
//! exits with code 2 on it and prints the file and the problem. Anything else exits with 1.

use std::path::{Path, PathBuf};

/// A problem with something the user handed to vqib: a data file, a directory, a checkpoint or a
/// configuration value. The message always names the file (where there is one) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A file or directory has a problem.
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl InputError {
    pub fn file(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        InputError::File {
            path: path.as_ref().to_path_buf(),
            problem: problem.into(),
        }
    }
    pub fn config(problem: impl Into<String>) -> Self {
        InputError::Config(problem.into())
    }
}

/// Training stopped because a loss, a weight or an evaluation became NaN or infinite (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{what} at step {step}: {detail}")]
pub struct NonFiniteError {
    /// What was not finite: "non-finite loss", "non-finite weights", "non-finite evaluation".
    pub what: &'static str,
    pub step: u64,
    pub detail: String,
}

pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;
