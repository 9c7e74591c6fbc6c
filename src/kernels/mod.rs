//! The CPU kernels: whole-batch GEMM convolutions and the fused assignment kernels.
//!
//! * [`conv`]: the model's convolutions on the CPU, channels-last, as whole-batch GEMMs with
//!   their own backward pass (a burn backend extension).
//! * [`assign`]: the fused, tiled kernels of the hard and soft assignment (eq. 27, 28) on the
//!   host: the N x K distance matrix is never held whole.
//!
//! Both multiply through one checked call into the `gemm` crate (`gemm.rs`): its operands are
//! slices with strides, asserted to lie inside their slices before the unsafe call.

pub mod assign;
pub mod conv;
mod gemm;
