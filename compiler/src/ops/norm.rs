//! Normalisation: `bn`, batch norm as PyTorch's `BatchNorm2d` (weight 1, bias 0, momentum
//! 0.1, eps 1e-5; the running variance unbiased); `group_norm(groups, eps = 1e-5)` as
//! `nn.GroupNorm`; `layer_norm(eps = 1e-5)` over the channels at each position, as timm's
//! `LayerNorm2d` (ConvNeXt), or over the features of a flat input as `nn.LayerNorm`. All start
//! at weight 1, bias 0.

use super::{Args, Default, EmitArgs, Input, Prim, Primitive, Use, p};
use crate::check::Checker;
use crate::diag::{Diagnostic, codes};
use crate::ir::{Layer, Shape};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

pub(super) const PRIMITIVES: &[Primitive] = &[
    Primitive {
        prim: Prim::BatchNorm,
        name: "bn",
        params: &[],
        stem: "bn",
        flat: false,
        field: Some("BatchNorm"),
        uses: &[Use::Import("burn::nn", "BatchNorm"), Use::Import("burn::nn", "BatchNormConfig")],
    },
    Primitive {
        prim: Prim::GroupNorm,
        name: "group_norm",
        params: &[p("groups", Default::Required), p("eps", Default::Float(1e-5))],
        stem: "gn",
        flat: false,
        field: Some("GroupNorm"),
        uses: &[Use::Import("burn::nn", "GroupNorm"), Use::Import("burn::nn", "GroupNormConfig")],
    },
    Primitive {
        prim: Prim::LayerNorm,
        name: "layer_norm",
        params: &[p("eps", Default::Float(1e-5))],
        stem: "ln",
        flat: true,
        field: Some("LayerNorm"),
        uses: &[Use::Import("burn::nn", "LayerNorm"), Use::Import("burn::nn", "LayerNormConfig")],
    },
];

/// A positive, finite epsilon.
fn eps(cx: &mut Checker, a: &Args) -> Option<f64> {
    let eps = a.float(cx, "eps")?;
    if !(eps > 0.0 && eps.is_finite()) {
        cx.error(
            Diagnostic::error(codes::VALUE_RANGE, a.span("eps"), format!("`eps` must be positive, got {eps}"))
                .label(format!("eps = {eps}"))
                .help("PyTorch's default is 1e-5 (ConvNeXt uses 1e-6)"),
        );
        return None;
    }
    Some(eps)
}

pub(super) fn check(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    match a.prim.prim {
        Prim::GroupNorm => {
            let groups = a.int(cx, "groups", "groups", 1, None)?;
            let eps = eps(cx, a)?;
            let [c, _, _] = input.chw?;
            if c % groups != 0 {
                cx.error(
                    Diagnostic::error(
                        codes::GROUPS,
                        a.span("groups"),
                        format!("{c} channels are not divisible into {groups} groups"),
                    )
                    .label(format!("groups = {groups}"))
                    .help("group norm splits the channels evenly: choose groups dividing the channel count"),
                );
                return None;
            }
            Some((Layer::GroupNorm { groups, channels: c, eps }, input.shape?))
        }
        Prim::LayerNorm => {
            let eps = eps(cx, a)?;
            let shape = input.shape?;
            Some((Layer::LayerNorm { channels: shape.dims()[0], eps }, shape))
        }
        _ => {
            let [c, _, _] = input.chw?;
            Some((Layer::BatchNorm { features: c }, input.shape?))
        }
    }
}

pub(super) fn ctor(a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    Ok(vec![match a.prim.prim {
        Prim::GroupNorm => {
            let groups = a.usize("groups", super::Kernel::None)?;
            let eps = a.float("eps")?;
            quote! { let #field = GroupNormConfig::new(#groups, shape[0]).with_epsilon(#eps).init(device); }
        }
        Prim::LayerNorm => {
            let eps = a.float("eps")?;
            quote! { let #field = LayerNormConfig::new(shape[0]).with_epsilon(#eps).init(device); }
        }
        _ => quote! { let #field = BatchNormConfig::new(shape[0]).init(device); },
    }])
}

pub(super) fn forward(prim: Prim, access: TokenStream, rank: usize) -> TokenStream {
    match prim {
        Prim::GroupNorm => quote! { let x = #access.forward(x); },
        // Over the channels: Burn's layer norm normalises the last dimension.
        Prim::LayerNorm if rank == 4 => {
            quote! { let x = #access.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2]); }
        }
        Prim::LayerNorm => quote! { let x = #access.forward(x); },
        // PyTorch's `BatchNorm2d` semantics (unbiased running variance, updates visible at once),
        // shared with `DynNet`.
        _ => quote! { let x = resnetc_kernels::batch_norm_module(&#access, x); },
    }
}
