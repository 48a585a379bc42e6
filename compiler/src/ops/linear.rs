//! `linear(out, bias = true, bias_init)`: Burn's `Linear` over the flattened input (its
//! default initialisation, as PyTorch's `nn.Linear` bound); a C×H×W input is flattened first.

use super::{Args, Default, EmitArgs, Input, Kernel, Prim, Primitive, Use, p};
use crate::check::Checker;
use crate::diag::Diagnostic;
use crate::emit::Emitter;
use crate::ir::{Layer, Shape};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

pub(super) const PRIMITIVES: &[Primitive] = &[Primitive {
    prim: Prim::Linear,
    name: "linear",
    params: &[p("out", Default::Required), p("bias", Default::Bool(true)), p("bias_init", Default::Unset)],
    stem: "linear",
    flat: true,
    field: Some("Linear"),
    uses: &[Use::Import("burn::nn", "Linear"), Use::Import("burn::nn", "LinearConfig")],
}];

pub(super) fn check(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    let out = a.int(cx, "out", "output features", 1, None)?;
    let bias = a.boolean(cx, "bias")?;
    let bias_init = super::bias_init(cx, a, bias)?;
    let features = input.shape?.numel();
    Some((Layer::Linear { in_features: features, out_features: out, bias, bias_init }, Shape::flat(out)))
}

pub(super) fn counts(layer: &Layer) -> Option<(u64, u64)> {
    let Layer::Linear { in_features, out_features, bias, .. } = *layer else { return None };
    let weights = in_features.checked_mul(out_features)?;
    Some((weights.checked_add(if bias { out_features } else { 0 })?, weights))
}

pub(super) fn ctor(em: &mut Emitter, a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    let outf = a.usize("out", Kernel::None)?;
    let bias = a.boolean("bias")?;
    let mut out = vec![quote! {
        let #field = LinearConfig::new(shape[0] * shape[1] * shape[2], #outf).with_bias(#bias).init(device);
        shape = [#outf, 1, 1];
    }];
    if let Some(init) = a.take("bias_init") {
        out.push(super::fill_bias(em, field, init));
    }
    Ok(out)
}

pub(super) fn forward(access: TokenStream, rank: &mut usize) -> TokenStream {
    let flatten = if *rank == 4 {
        quote! { let x = x.flatten::<2>(1, 3); }
    } else {
        quote!()
    };
    *rank = 2;
    quote! { #flatten let x = #access.forward(x); }
}

/// `bias_init`'s helper (convolutions and linear layers).
pub(super) fn fill_bias_helper() -> TokenStream {
    quote! {
        /// Start every entry of a layer's bias at `value` (a gate's `bias_init`); it stays trainable.
        fn fill_bias(bias: Option<Param<Tensor<1>>>, value: f64) -> Option<Param<Tensor<1>>> {
            bias.map(|b| b.map(|t| Tensor::full(t.shape(), value, &t.device()).set_require_grad(t.is_require_grad())))
        }
    }
}
