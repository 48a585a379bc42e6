//! Stateless and per-channel layers without a family of their own: `relu`, `sigmoid`,
//! `identity` (nothing), `prelu` (one learned slope per channel, or per feature on flat input).
//! The element-wise activations with arguments are rows of `activation::TABLE`.

use super::{Args, Input, Prim, Primitive, Use};
use crate::check::Checker;
use crate::emit::Emitter;
use crate::ir::{Layer, Shape};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

pub(super) const PRIMITIVES: &[Primitive] = &[
    Primitive { prim: Prim::Relu, name: "relu", params: &[], stem: "relu", flat: true, field: None, uses: &[] },
    Primitive {
        prim: Prim::Sigmoid,
        name: "sigmoid",
        params: &[],
        stem: "sigmoid",
        flat: true,
        field: None,
        uses: &[],
    },
    Primitive {
        prim: Prim::Identity,
        name: "identity",
        params: &[],
        stem: "identity",
        flat: true,
        field: None,
        uses: &[],
    },
    Primitive {
        prim: Prim::PRelu,
        name: "prelu",
        params: &[],
        stem: "prelu",
        flat: true,
        field: Some("PRelu"),
        uses: &[Use::Import("burn::nn", "PRelu"), Use::Import("burn::nn", "PReluConfig")],
    },
];

pub(super) fn check(_cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    let shape = input.shape?;
    let layer = match a.prim.prim {
        Prim::Relu => Layer::Relu,
        Prim::Sigmoid => Layer::Sigmoid,
        Prim::Identity => Layer::Identity,
        _ => Layer::PRelu { channels: shape.dims()[0] },
    };
    Some((layer, shape))
}

pub(super) fn ctor(prim: Prim, field: &Ident) -> Vec<TokenStream> {
    match prim {
        Prim::PRelu => vec![quote! { let #field = PReluConfig::new().with_num_parameters(shape[0]).init(device); }],
        _ => Vec::new(),
    }
}

pub(super) fn forward(em: &mut Emitter, prim: Prim, access: TokenStream) -> TokenStream {
    match prim {
        Prim::Relu => {
            em.uses(&[Use::Import("burn::tensor::activation", "relu")]);
            quote! { let x = relu(x); }
        }
        Prim::Sigmoid => {
            em.uses(&[Use::Import("burn::tensor::activation", "sigmoid")]);
            quote! { let x = sigmoid(x); }
        }
        Prim::PRelu => quote! { let x = #access.forward(x); },
        _ => quote!(),
    }
}
