//! Batch norm with PyTorch's `BatchNorm2d` semantics, for every batch norm resnetc runs: the
//! emitted code's (`resnetc_kernels::batch_norm_module`) and `DynNet`'s, one implementation.
//!
//! Burn's `BatchNorm::forward` differs from PyTorch in training in two ways this module
//! removes:
//!
//! - **the running variance**: Burn moves it toward the *biased* batch variance; PyTorch uses
//!   the unbiased one (`n / (n - 1)` times it, `n` the values per channel: batch × H × W). At
//!   a ResNet's last stage (8×8 maps, batch 128) that is 1.2e-4 relative, at batch 8 of 8×8
//!   maps 2e-3; `tests/oracle.rs` compares running statistics with PyTorch's at 1e-5.
//! - **when the update becomes visible**: Burn's `RunningState` keeps each thread's new value
//!   in a per-thread map and folds it into the shared value only at the next update on the
//!   same thread or at `valid()`/`train()`; `value()`, `visit` (records, checkpoints) and `map`
//!   (the optimizer step) read the shared value, one step behind, and an update from another
//!   thread is averaged with the stale entry still in the map. [`update_running`] folds the
//!   update in at once, so the shared value is always the exponential moving average of every
//!   batch seen, whichever thread ran it.
//!
//! In eval mode (a device without autodiff, or a frozen layer) the running statistics normalise,
//! as in Burn's `BatchNorm::forward`. Both modes run resnetc-kernels' batch norm on the CPU
//! (`flex`) and Burn's elsewhere.

use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use std::cell::Cell;

/// Whether `bn` normalises `x` with the batch's statistics (and updates its running ones):
/// training on an autodiff device, the layer not frozen (as `BatchNorm::forward` decides).
pub fn trains(bn: &BatchNorm, x: &Tensor<4>) -> bool {
    x.device().is_autodiff() && bn.training.is_enabled()
}

/// `bn(x)`: batch statistics and a running-statistics update in training, the running
/// statistics otherwise.
pub fn batch_norm_module(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if !trains(bn, &x) {
        return crate::batch_norm_module_eval(bn, x);
    }
    let [n, _, h, w] = x.dims();
    let out = crate::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon);
    update_running(bn, out.mean, out.variance, n * h * w);
    out.output
}

/// Move `bn`'s running statistics toward a batch's `mean` and biased `variance` over `count`
/// values per channel, as PyTorch does (`running = (1 - m) · running + m · batch`, the
/// variance unbiased), and fold the new values into the shared state at once.
pub fn update_running(bn: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>, count: usize) {
    let m = bn.momentum;
    // PyTorch refuses a single value per channel in training; Burn's biased variance (0) is
    // kept there rather than dividing by zero.
    let unbiased = if count > 1 { count as f64 / (count - 1) as f64 } else { 1.0 };
    let device = mean.device();
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    let running_mean = running_mean.mul_scalar(1.0 - m).add(mean.detach().mul_scalar(m));
    let running_var = running_var.mul_scalar(1.0 - m).add(variance.detach().mul_scalar(m * unbiased));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
    if REPLICA.with(Cell::get) {
        // One of several data-parallel copies: every copy's entry waits in the per-thread map
        // until the first `value_sync` of the next step (or `valid()` at the epoch's end) folds
        // them together, averaged: `(1 - m) · running + m · mean(copies' batch statistics)`,
        // the same whichever copy finishes first.
        return;
    }
    // This thread's entry is in the per-thread map now: `value_sync` folds it into the shared
    // value (and empties the map), so records and the optimizer's `map` see this step.
    let _ = bn.running_mean.value_sync();
    let _ = bn.running_var.value_sync();
}

thread_local! {
    static REPLICA: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (a data-parallel copy's forward pass) with this thread's running-statistics updates
/// left for averaging with the other copies' instead of folded at once.
pub fn as_replica<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            REPLICA.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(REPLICA.with(|c| c.replace(true)));
    f()
}
