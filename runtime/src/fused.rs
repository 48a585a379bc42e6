//! Batch norm fused with the ReLU after it, and with the residual addition between them in a
//! residual unit's `bn` → `+ shortcut` → `relu` tail, for training on the CPU backend (`flex`).
//!
//! Unfused, Burn runs each of these as its own pass over the activation and keeps each result
//! alive for the backward pass: the batch norm's output for the ReLU's mask, the ReLU's output
//! for the next convolution. Fused, the forward writes `max(0, bn(x) + shortcut)` in the batch
//! norm's own output pass, the backward masks the gradient inside the batch norm's passes, and
//! only the input and the output stay alive. The semantics (values, gradients of the input,
//! gamma, beta and the shortcut, running statistics) are those of [`crate::norm::batch_norm_module`],
//! `+` and `relu`; `tests/fused.rs` checks them against the unfused ops.
//!
//! Anywhere else (inference, other devices, a frozen batch norm) [`bn_relu`] runs the unfused
//! ops. The op itself is `resnetc_kernels::batch_norm_relu_train`; this module decides when to
//! use it and keeps the running statistics.

use burn::backend::{DType, DispatchDevice};
use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turn the fusion off (or back on) for the whole process: [`bn_relu`] then always runs the
/// unfused ops. For tests and side-by-side benchmarks (`resnetc bench --no-fuse`).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether [`bn_relu`] runs the fused op for these operands: training (an autodiff device, the
/// batch norm not frozen) on `flex`, f32 or f64, the residual like `x`, fusion enabled.
pub fn fuses(bn: &BatchNorm, x: &Tensor<4>, residual: Option<&Tensor<4>>) -> bool {
    let device = x.device();
    ENABLED.load(Ordering::Relaxed)
        && crate::norm::trains(bn, x)
        && matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_))
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && residual.is_none_or(|r| r.dims() == x.dims() && r.dtype() == x.dtype() && r.device() == device)
}

/// `relu(bn(x) + residual)` (`relu(bn(x))` without a residual), fused where [`fuses`] says so.
pub fn bn_relu(bn: &BatchNorm, x: Tensor<4>, residual: Option<Tensor<4>>) -> Tensor<4> {
    if !fuses(bn, &x, residual.as_ref()) {
        let y = crate::norm::batch_norm_module(bn, x);
        return relu(match residual {
            Some(r) => y + r,
            None => y,
        });
    }
    let [n, _, h, w] = x.dims();
    let out = resnetc_kernels::batch_norm_relu_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon, residual);
    // The running statistics, as the unfused path updates them (`norm::update_running`: the
    // batch statistics enter as constants, the variance unbiased as in PyTorch).
    crate::norm::update_running(bn, out.mean, out.variance, n * h * w);
    out.output
}
