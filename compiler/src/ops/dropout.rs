//! `dropout(p)`: Burn's `Dropout` (zeroes with probability `p` in training, scales by
//! `1 / (1 - p)`; the identity at inference). `drop_path(p)`: stochastic depth (Huang et al.
//! 2016, timm's `DropPath`), the same per sample: a residual branch ending in it is dropped
//! whole for a sample with probability `p` in training, the kept ones scaled by `1 / (1 - p)`
//! (`resnetc_kernels::drop_path`, over Burn's `Dropout` module for its probability and flag).

use super::{Args, Default, EmitArgs, Input, Prim, Primitive, Use, p};
use crate::check::Checker;
use crate::diag::{Diagnostic, codes};
use crate::ir::{Layer, Shape, Ty, Value};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

const USES: &[Use] = &[Use::Import("burn::nn", "Dropout"), Use::Import("burn::nn", "DropoutConfig")];

pub(super) const PRIMITIVES: &[Primitive] = &[
    Primitive {
        prim: Prim::Dropout,
        name: "dropout",
        params: &[p("p", Default::Required)],
        stem: "dropout",
        flat: true,
        field: Some("Dropout"),
        uses: USES,
    },
    Primitive {
        prim: Prim::DropPath,
        name: "drop_path",
        params: &[p("p", Default::Required)],
        stem: "drop_path",
        flat: true,
        field: Some("Dropout"),
        uses: USES,
    },
];

pub(super) fn check(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    let (v, span) = a.get("p")?;
    let p = match v {
        Value::Float(f) => f,
        Value::Int(i) => i as f64,
        other => {
            cx.type_error(span, Ty::Float, other);
            return None;
        }
    };
    if !(0.0..1.0).contains(&p) {
        cx.error(
            Diagnostic::error(codes::VALUE_RANGE, span, format!("{} probability {p} is outside [0, 1)", a.prim.name))
                .label(format!("p = {p}")),
        );
        return None;
    }
    let layer = if a.prim.prim == Prim::DropPath { Layer::DropPath { p } } else { Layer::Dropout { p } };
    Some((layer, input.shape?))
}

pub(super) fn ctor(a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    let p = a.float("p")?;
    Ok(vec![quote! { let #field = DropoutConfig::new(#p).init(); }])
}

pub(super) fn forward(prim: Prim, access: TokenStream) -> TokenStream {
    match prim {
        Prim::DropPath => quote! { let x = resnetc_kernels::drop_path(&#access, x); },
        _ => quote! { let x = #access.forward(x); },
    }
}
