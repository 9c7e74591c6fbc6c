//! Shared by the integration tests.

use std::path::PathBuf;

/// The MNIST files: `$VQIB_MNIST_DIR`, or `../shared/data/mnist` beside the repository. `None`
/// (with a printed notice, so the test skips) when they are not there, unless
/// `VQIB_REQUIRE_MNIST=1` (set by `.ci/run`), where that is a failure.
pub fn mnist_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("VQIB_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"));
    if dir.join("train-images-idx3-ubyte.gz").is_file() {
        return Some(dir);
    }
    let msg = format!("MNIST not found in {} (set VQIB_MNIST_DIR)", dir.display());
    if std::env::var("VQIB_REQUIRE_MNIST").is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("skipping: {msg}");
    None
}
