//! Shared by the integration tests.

use std::path::PathBuf;

/// The MNIST files: `$VQIB_MNIST_DIR`, or `../shared/data/mnist` beside the repository.
pub fn mnist_dir() -> PathBuf {
    let dir = std::env::var_os("VQIB_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"));
    assert!(
        dir.join("train-images-idx3-ubyte.gz").is_file(),
        "MNIST not found in {} (set VQIB_MNIST_DIR)",
        dir.display()
    );
    dir
}
