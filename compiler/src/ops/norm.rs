//! Normalisation: `bn`, batch norm as PyTorch's `BatchNorm2d` (weight 1, bias 0, momentum
//! 0.1, eps 1e-5; the running variance unbiased).

use super::{Args, Helper, Input, Prim, Primitive, Use};
use crate::check::Checker;
use crate::ir::{Layer, Shape};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

pub(super) const PRIMITIVES: &[Primitive] = &[Primitive {
    prim: Prim::BatchNorm,
    name: "bn",
    params: &[],
    stem: "bn",
    flat: false,
    field: Some("BatchNorm"),
    uses: &[
        Use::Import("burn::nn", "BatchNorm"),
        Use::Import("burn::nn", "BatchNormConfig"),
        Use::Helper(Helper::BatchNorm),
    ],
}];

pub(super) fn check(_cx: &mut Checker, _a: &Args, input: Input) -> Option<(Layer, Shape)> {
    let [c, _, _] = input.chw?;
    Some((Layer::BatchNorm { features: c }, input.shape?))
}

pub(super) fn ctor(field: &Ident) -> Vec<TokenStream> {
    vec![quote! { let #field = BatchNormConfig::new(shape[0]).init(device); }]
}

pub(super) fn forward(access: TokenStream) -> TokenStream {
    quote! { let x = batch_norm(&#access, x); }
}

pub(super) fn helper() -> TokenStream {
    quote! {
        /// Batch norm as PyTorch's `BatchNorm2d`. Training (an autodiff device, the layer not
        /// frozen): normalise with the batch's statistics and move the running ones toward them
        /// by `momentum`, the variance unbiased (`n / (n - 1)`, where Burn's `forward` keeps
        /// it biased), the update folded into the shared value at once (`value_sync`), where
        /// records and optimizers read it. Otherwise: normalise with the running statistics.
        /// resnetc-kernels runs it on the CPU (statistics and gradients summed in f64; Burn's
        /// own op elsewhere).
        fn batch_norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
            if !(x.device().is_autodiff() && bn.training.is_enabled()) {
                return resnetc_kernels::batch_norm_module_eval(bn, x);
            }
            let [n, _, h, w] = x.dims();
            let count = (n * h * w) as f64;
            let unbiased = if count > 1.0 { count / (count - 1.0) } else { 1.0 };
            let out = resnetc_kernels::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon);
            let (m, device) = (bn.momentum, out.mean.device());
            let mean = bn.running_mean.value_sync().to_device(&device).mul_scalar(1.0 - m);
            let var = bn.running_var.value_sync().to_device(&device).mul_scalar(1.0 - m);
            bn.running_mean.update(mean.add(out.mean.detach().mul_scalar(m)).detach());
            bn.running_var.update(var.add(out.variance.detach().mul_scalar(m * unbiased)).detach());
            let _ = (bn.running_mean.value_sync(), bn.running_var.value_sync());
            out.output
        }
    }
}
