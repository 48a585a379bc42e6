//! `--precision f32|f16|bf16`: mixed-precision compute on a GPU.
//!
//! As `torch.autocast` does, the weights, the batch-norm statistics, the residual sums and the
//! loss stay in f32; the convolutions and the linear layers (nearly all of a ResNet's
//! arithmetic) read their input and weights cast to the half type and their output is cast back
//! to f32. The casts are differentiable, so gradients reach the f32 weights in f32. There is no
//! loss scaling: prefer bf16 (f32's exponent range); with f16, gradients below 6e-8 flush to
//! zero.
//!
//! The CPU backend is refused: flex has no fast half-precision kernels, and resnetc's CPU
//! kernels are f32/f64 only. On a GPU the device must support the type (`Device::supports_dtype`).

use crate::device::Selection;
use burn::backend::DType;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use std::cell::Cell;

/// The type convolutions and linear layers compute in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Precision {
    /// `f32`, `f16` or `bf16`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "f32" | "fp32" => Ok(Precision::F32),
            "f16" | "fp16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision `{other}`: expected f32, f16 or bf16")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    fn dtype(self) -> Option<DType> {
        match self {
            Precision::F32 => None,
            Precision::F16 => Some(DType::F16),
            Precision::Bf16 => Some(DType::BF16),
        }
    }

    /// Whether `selection` can compute in this precision; the reason otherwise.
    pub fn check(self, selection: &Selection) -> Result<(), String> {
        let Some(dtype) = self.dtype() else { return Ok(()) };
        if !selection.is_gpu() {
            return Err(format!(
                "--precision {} is for GPUs: on the CPU (`{}`) resnetc computes in f32 (flex has no fast half-precision \
                 kernels); drop the flag or pass --device wgpu/cuda",
                self.name(),
                selection.name
            ));
        }
        match selection.devices.iter().find(|d| !d.supports_dtype(dtype)) {
            Some(_) => Err(format!(
                "--precision {}: {} does not support {:?} (try {})",
                self.name(),
                selection.describe(),
                dtype,
                if self == Precision::Bf16 { "f16" } else { "bf16" }
            )),
            None => Ok(()),
        }
    }
}

thread_local! {
    static COMPUTE: Cell<Option<DType>> = const { Cell::new(None) };
}

/// Run `f` with convolutions and linear layers on this thread computing in `precision`.
pub fn scoped<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<DType>);
    impl Drop for Restore {
        fn drop(&mut self) {
            COMPUTE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(COMPUTE.with(|c| c.replace(precision.dtype())));
    f()
}

/// `conv(x)` in the precision of the current [`scoped`] call (f32 outside one).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(half) = COMPUTE.with(Cell::get) else {
        return resnetc_kernels::conv2d_module(conv, x);
    };
    let dtype = x.dtype();
    let options = resnetc_kernels::conv2d_options(conv, x.dims());
    let bias = conv.bias.as_ref().map(|b| b.val().cast(half));
    resnetc_kernels::conv2d(x.cast(half), conv.weight.val().cast(half), bias, options).cast(dtype)
}

/// `linear(x)` in the precision of the current [`scoped`] call (f32 outside one).
pub fn linear(linear: &Linear, x: Tensor<2>) -> Tensor<2> {
    let Some(half) = COMPUTE.with(Cell::get) else {
        return linear.forward(x);
    };
    let dtype = x.dtype();
    let bias = linear.bias.as_ref().map(|b| b.val().cast(half));
    burn::tensor::module::linear(x.cast(half), linear.weight.val().cast(half), bias).cast(dtype)
}

#[cfg(test)]
mod tests {
    use super::Precision;
    use crate::device::parse;

    #[test]
    fn half_precision_is_refused_on_the_cpu() {
        assert_eq!(Precision::parse("bf16"), Ok(Precision::Bf16));
        assert!(Precision::parse("f8").unwrap_err().contains("expected f32, f16 or bf16"));
        let cpu = parse("cpu").unwrap();
        assert_eq!(Precision::F32.check(&cpu), Ok(()));
        let e = Precision::F16.check(&cpu).unwrap_err();
        assert!(e.contains("is for GPUs") && e.contains("`cpu`"), "{e}");
    }
}
