//! vqib: vector-quantized autoencoders as information bottlenecks.
//!
//! The VQ-VAE loss of van den Oord et al. (2017) is the variational deterministic information
//! bottleneck with a uniform prior over codes (Wu & Flierl 2018, "the seed"). Data flows one way,
//! one concept a module:
//!
//! data -> model (encoder -> quantizer -> decoder) -> loss and information quantities -> records
//! and reports.
//!
//! * [`config`]: the run configuration in sections (data, model, quantizer, rate, training), the
//!   command line's flags and `config.json` alike, defaults and validation in one place.
//! * [`data`]: MNIST / Fashion-MNIST (IDX), CIFAR-10 (binary), image folders, generated shapes.
//! * [`model`]: encoder and decoder (van den Oord et al. 2017), the forward pass through a
//!   quantizer, the checkpoint tensor names.
//! * [`quantizer`]: the bottleneck family behind one interface: `vq` (eq. 24, 27), `vq-ema`,
//!   `soft-em` (eq. 28), the prior and rate terms (eq. 22, 26), k-means++ init, dead codes.
//! * [`kernels`]: the CPU kernels: whole-batch GEMM convolutions and the fused, tiled assignment
//!   kernels (eq. 27, 28; the N x K distance matrix is never held whole).
//! * [`codec`]: rate in real bits: code maps entropy-coded (ANS) against a prior, the `.vqz`
//!   container, `vqib compress` / `vqib decompress`, the coded rate beside the bounds.
//! * [`info`]: H(Z), perplexity, H(Z|I), I(I;Z), H(p(Z|I), r), KL, the relevance I(Z;Y) and
//!   the objectives L_VIB and L_VDIB over a whole data set (eq. 13-26).
//! * [`distortion`]: the seed's distortion term, an expectation over the posterior (eq. 18,
//!   23), estimated from sampled code maps with its standard error.
//! * [`train`]: the [`train::Trainer`], one training step, evaluation.
//! * [`run`]: the run directory; [`checkpoint`]: safetensors checkpoints and resume.
//! * [`records`]: the metrics log (one schema, JSONL and CSV); [`report`]: tables and grids.
//! * [`experiment`]: `vqib compare`, the seed's experiment, and `vqib sweep`, the grid over
//!   the training options; their statistics and reports.
//! * [`measure`]: `vqib measure`, the information quantities and coded length of codes, latents
//!   or posteriors written by another framework (a safetensors file, read in chunks).
//! * [`bench`]: benchmark workloads (`cargo bench`, `vqib bench`, `bench/compare`).
//! * [`device`], [`io`], [`error`], [`alloc`]: devices, atomic writes, error kinds, malloc
//!   settings.

pub mod alloc;
pub mod bench;
pub mod checkpoint;
pub mod codec;
pub mod config;
pub mod data;
pub mod device;
pub mod distortion;
pub mod error;
pub mod experiment;
#[cfg(test)]
mod fuzz;
pub mod info;
pub mod io;
pub mod kernels;
pub mod measure;
pub mod model;
pub mod quantizer;
pub mod records;
pub mod report;
pub mod run;
pub mod train;

pub use experiment as compare;
pub use kernels::{assign, conv};

pub use config::RunConfig;
pub use error::InputError;
pub use quantizer::QuantizerKind;
