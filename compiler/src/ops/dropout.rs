//! `dropout(p)`: Burn's `Dropout` (zeroes with probability `p` in training, scales by
//! `1 / (1 - p)`; the identity at inference).

use super::{Args, Default, EmitArgs, Input, Prim, Primitive, Use, p};
use crate::check::Checker;
use crate::diag::{Diagnostic, codes};
use crate::ir::{Layer, Shape, Ty, Value};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

pub(super) const PRIMITIVES: &[Primitive] = &[Primitive {
    prim: Prim::Dropout,
    name: "dropout",
    params: &[p("p", Default::Required)],
    stem: "dropout",
    flat: true,
    field: Some("Dropout"),
    uses: &[Use::Import("burn::nn", "Dropout"), Use::Import("burn::nn", "DropoutConfig")],
}];

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
            Diagnostic::error(codes::VALUE_RANGE, span, format!("dropout probability {p} is outside [0, 1)"))
                .label(format!("p = {p}")),
        );
        return None;
    }
    Some((Layer::Dropout { p }, input.shape?))
}

pub(super) fn ctor(a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    let p = a.float("p")?;
    Ok(vec![quote! { let #field = DropoutConfig::new(#p).init(); }])
}

pub(super) fn forward(access: TokenStream) -> TokenStream {
    quote! { let x = #access.forward(x); }
}
