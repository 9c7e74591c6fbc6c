//! vqib: vector-quantized autoencoders as information bottlenecks.
//!
//! The VQ-VAE loss of van den Oord et al. (2017) is the variational deterministic information
//! bottleneck with a uniform prior over codes (Wu & Flierl 2018, "the seed"). Modules, one
//! concept each:
//!
//! * [`info`]: H(Z), perplexity, H(Z|I), I(I;Z), H(p(Z|I), r), KL and the objectives L_VIB and
//!   L_VDIB over a whole data set (eq. 13-26).
//! * [`assign`]: the fused, tiled kernels of the hard and soft assignment (eq. 27, 28) on the
//!   host: the N x K distance matrix is never held whole.
//! * [`bench`]: benchmark workloads (`cargo bench`, `vqib bench`, `bench/compare`).
//! * [`quantizer`]: nearest-codeword assignment (eq. 27), straight-through estimator, the
//!   codebook and commitment terms (eq. 24), EMA codebook, soft EM (eq. 28), the rate terms,
//!   k-means++ init, dead-code restart.
//! * [`model`]: encoder and decoder (van den Oord et al. 2017) and the checkpoint tensor names.
//! * [`conv`]: the model's convolutions on the CPU, channels-last, as whole-batch GEMMs with
//!   their own backward pass (a burn backend extension).
//! * [`alloc`]: glibc malloc settings that keep a training step's buffers mapped.
//! * [`data`]: MNIST / Fashion-MNIST (IDX), CIFAR-10 (binary), image folders, generated shapes.
//! * [`train`]: the training loop, evaluation and reconstruction.
//! * [`checkpoint`]: safetensors checkpoints, atomic writes, resume.
//! * [`report`]: metrics logs, summary table, reconstruction grids.
//! * [`compare`]: the seed's experiment across quantizers and seeds, and its HTML report.
//! * [`config`]: the run configuration.

pub mod alloc;
pub mod assign;
pub mod bench;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod conv;
pub mod data;
pub mod error;
pub mod info;
pub mod model;
pub mod quantizer;
pub mod report;
pub mod train;

pub use config::{CodebookInit, DeviceKind, QuantizerKind, RunConfig};
pub use error::InputError;
