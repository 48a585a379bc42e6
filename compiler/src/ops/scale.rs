//! `scale(init = 1.0)`: a learned per-channel scale (layer scale: Touvron et al. 2021's CaiT,
//! ConvNeXt's `gamma` with `init = 1e-6`), one value per channel or per feature.

use super::{Args, Default, EmitArgs, Input, Prim, Primitive, Use, p};
use crate::check::Checker;
use crate::diag::{Diagnostic, codes};
use crate::ir::{Layer, Shape};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

pub(super) const PRIMITIVES: &[Primitive] = &[Primitive {
    prim: Prim::Scale,
    name: "scale",
    params: &[p("init", Default::Float(1.0))],
    stem: "scale",
    flat: true,
    field: Some("Param<Tensor<1>>"),
    uses: &[Use::Import("burn::module", "Param")],
}];

pub(super) fn check(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    let init = a.float(cx, "init")?;
    if !init.is_finite() {
        cx.error(Diagnostic::error(codes::VALUE_RANGE, a.span("init"), format!("`init` must be finite, got {init}")));
        return None;
    }
    let shape = input.shape?;
    Some((Layer::Scale { channels: shape.dims()[0], init }, shape))
}

pub(super) fn ctor(a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    let init = a.float("init")?;
    Ok(vec![quote! { let #field = Param::from_tensor(Tensor::full([shape[0]], #init, device)); }])
}

pub(super) fn forward(access: TokenStream, rank: usize) -> TokenStream {
    if rank == 4 {
        quote! { let x = { let c = #access.dims()[0]; x * #access.val().reshape([1, c, 1, 1]) }; }
    } else {
        quote! { let x = { let c = #access.dims()[0]; x * #access.val().reshape([1, c]) }; }
    }
}
