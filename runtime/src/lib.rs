//! Training and evaluation of resnetc networks on CIFAR-10/100.
//!
//! What is here:
//! - [`data`]: both CIFAR binary formats and image folders (plain, `.tar`, `.tar.gz`), decoded
//!   once, with the papers' augmentation, deterministic for a seed;
//! - [`model`]: any checked network built at run time from its IR, with the parameter paths
//!   of the code `resnetc compile` emits, so checkpoints are interchangeable;
//! - [`recipe`]: the papers' training recipes as YAML, every key overridable;
//! - [`train`]: training on burn-train (`resnetc train`) and test-split evaluation (`resnetc eval`);
//! - [`report`]: the run folder's `metrics.csv`, `curves.svg` and `summary.json`;
//! - [`device`]: `--device` values, GPU backends behind cargo features, checked before use;
//! - [`precision`]: mixed-precision convolutions and linear layers on GPUs (`--precision`);
//! - [`bench`]: training and inference throughput (`resnetc bench`);
//! - [`lesion`]: the lesion study of Veit et al. 2016 (`resnetc lesion`);
//! - [`memory`]: allocator settings that keep a training step's buffers in the process;
//! - [`norm`]: batch norm with PyTorch's training semantics (running statistics);
//! - [`fused`]: batch norm, residual addition and ReLU as one op when training on the CPU;
//! - [`weights`]: PyTorch state dicts and safetensors files into resnetc checkpoints (`resnetc import`);
//! - [`export`]: a network's eval-mode forward as ONNX (`resnetc export`).

pub mod bench;
pub mod data;
pub mod device;
pub mod epochs;
pub mod export;
pub mod fused;
#[doc(hidden)]
pub mod fuzzing;
pub mod lesion;
pub mod memory;
pub mod model;
/// Batch norm with PyTorch's semantics (resnetc-kernels' `norm`, shared with the emitted code).
pub use resnetc_kernels::norm;
pub mod precision;
pub mod recipe;
pub mod report;
pub mod train;
pub mod transform;
pub mod weights;
