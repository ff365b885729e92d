//! resnetc-runtime: what generated models and the reference interpreter call.
//!
//! - [`kernels`]: one plain, obviously-correct kernel per IR op on NCHW `f32` tensors
//!   (ndarray), with PyTorch's semantics;
//! - [`weights`]: safetensors loading (memory-mapped), f32/f16/bf16, strict validation with
//!   errors that name the tensor;
//! - [`model`]: what generated models are made of (errors, weight tables, workspace);
//! - [`io`]: reading and writing the `input` / `output` tensors of a safetensors file.
//!
//! **Architecture invariant:** the runtime never sees a spec; shapes and attributes arrive
//! as plain arguments, already checked by the compiler.

pub mod fast;
pub mod io;
pub mod kernels;
pub mod model;
pub mod preprocess;
pub mod steps;
pub mod weights;

pub use fast::{ConvSpec, Isa, PoolSpec};
pub use model::{BatchOrder, ModelError, Workspace};
pub use ndarray;
pub use weights::{LoadOptions, Tensor, WeightError, WeightFile, Weights};
