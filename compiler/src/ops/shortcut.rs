//! `pad_shortcut(out, stride = 1)`: the option-A shortcut of He et al. 2015 (subsample by
//! `stride`, zero-pad the channels up to `out`, half before and half after): the emitted
//! struct holds a `resnetc_kernels::PadShortcut`, the implementation `DynNet` runs too.

use super::{Args, Default, EmitArgs, Input, Kernel, Prim, Primitive, Use, p};
use crate::check::Checker;
use crate::diag::{Diagnostic, codes};
use crate::ir::{Layer, Shape};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

pub(super) const PRIMITIVES: &[Primitive] = &[Primitive {
    prim: Prim::PadShortcut,
    name: "pad_shortcut",
    params: &[p("out", Default::Required), p("stride", Default::Int(1))],
    stem: "shortcut",
    flat: false,
    field: Some("PadShortcut"),
    uses: &[Use::Import("resnetc_kernels", "PadShortcut")],
}];

pub(super) fn check(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    let out = a.int(cx, "out", "output channels", 1, None)?;
    let stride = a.int(cx, "stride", "stride", 1, None)?;
    let [c, h, w] = input.chw?;
    if out < c {
        cx.error(
            Diagnostic::error(
                codes::SHAPE,
                a.get("out")?.1,
                format!("pad_shortcut pads channels up, but {out} is fewer than the input's {c}"),
            )
            .help("use a projection (`conv1x1`) to reduce channels"),
        );
        return None;
    }
    let before = (out - c) / 2;
    Some((
        Layer::PadShortcut { stride, before, after: out - c - before },
        Shape::chw(out, h.div_ceil(stride), w.div_ceil(stride)),
    ))
}

pub(super) fn ctor(a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    let outc = a.usize("out", Kernel::None)?;
    let stride = a.usize("stride", Kernel::None)?;
    Ok(vec![quote! {
        let #field = PadShortcut::new(shape[0], #outc, #stride);
        shape = [#outc, shape[1].div_ceil(#stride), shape[2].div_ceil(#stride)];
    }])
}

pub(super) fn forward(access: TokenStream) -> TokenStream {
    quote! { let x = #access.forward(x); }
}
