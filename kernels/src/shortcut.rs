//! The option-A shortcut of He et al. 2015 (`pad_shortcut(out, stride)`): subsample by
//! `stride`, then zero-pad the channels, half before and half after. One implementation for the
//! emitted code (the [`PadShortcut`] module) and `DynNet` ([`pad_shortcut`]); and [`shift`].

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;

/// Subsample `x` by `stride` (every `stride`-th row and column from the first) and add `before`
/// zero channels in front of its channels and `after` behind them.
pub fn pad_shortcut(x: Tensor<4>, stride: usize, before: usize, after: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let x = x.slice(burn::tensor::s![.., .., 0..h;stride, 0..w;stride]);
    x.pad([(0, 0), (before, after), (0, 0), (0, 0)], PadMode::Constant(0.0))
}

/// Every pixel taken from `rows` below and `cols` to the right, zeros past the bottom and right
/// edges: PyTorch's `F.pad(x, (0, cols, 0, rows))[:, :, rows:, cols:]` (Shake-Shake's shifted
/// shortcut path).
pub fn shift(x: Tensor<4>, rows: usize, cols: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if rows == 0 && cols == 0 {
        return x;
    }
    let x = x.slice(burn::tensor::s![.., .., rows.min(h)..h, cols.min(w)..w]);
    x.pad([(0, 0), (0, 0), (0, rows.min(h)), (0, cols.min(w))], PadMode::Constant(0.0))
}

/// The option-A shortcut as a module: no parameters, the padding fixed at construction.
#[derive(Module, Debug)]
pub struct PadShortcut {
    /// Spatial subsampling step.
    pub stride: usize,
    /// Zero channels added before the input's channels.
    pub before: usize,
    /// Zero channels added after them.
    pub after: usize,
}

impl PadShortcut {
    /// Pad `in_channels` up to `out_channels` (at least as many), half before and half after.
    pub fn new(in_channels: usize, out_channels: usize, stride: usize) -> Self {
        let before = (out_channels - in_channels) / 2;
        Self { stride, before, after: out_channels - in_channels - before }
    }

    /// Pad `in_channels` up to `out_channels` with `before` zero channels in front of the
    /// input's (at most `out_channels - in_channels`) and the rest behind.
    pub fn with_before(in_channels: usize, out_channels: usize, stride: usize, before: usize) -> Self {
        Self { stride, before, after: out_channels - in_channels - before }
    }

    /// Subsample and pad a batch.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        pad_shortcut(x, self.stride, self.before, self.after)
    }
}
