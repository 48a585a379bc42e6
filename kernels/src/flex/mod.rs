//! The kernels themselves, on `flex` tensors (`FlexTensor`, f32 or f64). They were resnetc's
//! patch of burn-flex 0.22.1 (`ModuleOps` overrides); here they are reached only through the
//! functions of the crate root, which choose them for flex tensors and Burn's ops elsewhere.

pub mod batch_norm;
pub mod conv_gemm;
