//! Shortcut layers, implemented once in `resnetc-kernels` (the emitted code and `DynNet` run
//! the same code):
//!
//! - `pad_shortcut(out, stride = 1, before)`: the option-A shortcut of He et al. 2015 (subsample
//!   by `stride`, zero-pad the channels up to `out`): `before` zero channels in front of the
//!   input's (half the new ones when not given, as the ResNet papers' code does; `before = 0`
//!   puts them all after, as PyramidNet's code does), the rest behind; the emitted struct holds
//!   a `resnetc_kernels::PadShortcut`.
//! - `shift(rows = 1, cols = 1)`: every pixel taken from `rows` below and `cols` to the right,
//!   zeros past the edge (Shake-Shake's second shortcut path, `F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]`).

use super::{Args, Default, EmitArgs, Input, Kernel, Prim, Primitive, Use, p};
use crate::check::Checker;
use crate::diag::{Diagnostic, codes};
use crate::ir::{Layer, Shape};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

pub(super) const PRIMITIVES: &[Primitive] = &[
    Primitive {
        prim: Prim::PadShortcut,
        name: "pad_shortcut",
        params: &[p("out", Default::Required), p("stride", Default::Int(1)), p("before", Default::Unset)],
        stem: "shortcut",
        flat: false,
        field: Some("PadShortcut"),
        uses: &[Use::Import("resnetc_kernels", "PadShortcut")],
    },
    Primitive {
        prim: Prim::Shift,
        name: "shift",
        params: &[p("rows", Default::Int(1)), p("cols", Default::Int(1))],
        stem: "shift",
        flat: false,
        // `[rows, cols]`, computed by the constructor from the block's arguments.
        field: Some("[usize; 2]"),
        uses: &[],
    },
];

pub(super) fn check(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    if a.prim.prim == Prim::Shift {
        return check_shift(cx, a, input);
    }
    let out = a.int(cx, "out", "output channels", 1, None)?;
    let stride = a.int(cx, "stride", "stride", 1, None)?;
    let before = match a.get("before") {
        Some(v) => Some((cx.int(v, "zero channels before", 0)?, v.1)),
        None => None,
    };
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
    let before = match before {
        Some((b, span)) if b > out - c => {
            cx.error(
                Diagnostic::error(
                    codes::VALUE_RANGE,
                    span,
                    format!("{b} zero channels before the input's {c}, but only {} are added (to {out})", out - c),
                )
                .label(format!("before = {b}"))
                .help(format!("before is at most out - in_channels = {}", out - c)),
            );
            return None;
        }
        Some((b, _)) => b,
        None => (out - c) / 2,
    };
    Some((
        Layer::PadShortcut { stride, before, after: out - c - before },
        Shape::chw(out, h.div_ceil(stride), w.div_ceil(stride)),
    ))
}

fn check_shift(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    let rows = a.int(cx, "rows", "rows to shift", 0, None);
    let cols = a.int(cx, "cols", "columns to shift", 0, None);
    let (rows, cols, [c, h, w]) = (rows?, cols?, input.chw?);
    if rows >= h || cols >= w {
        cx.error(
            Diagnostic::error(
                codes::SHAPE,
                a.call.span,
                format!("shifting a {h}×{w} map by {rows} rows and {cols} columns leaves only zeros"),
            )
            .label(format!("the input here is {c}×{h}×{w}"))
            .help("shift by less than the map's height and width"),
        );
        return None;
    }
    Some((Layer::Shift { rows, cols }, input.shape?))
}

pub(super) fn ctor(a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    if a.prim.prim == Prim::Shift {
        let rows = a.usize("rows", Kernel::None)?;
        let cols = a.usize("cols", Kernel::None)?;
        return Ok(vec![quote! { let #field: [usize; 2] = [#rows, #cols]; }]);
    }
    let outc = a.usize("out", Kernel::None)?;
    let stride = a.usize("stride", Kernel::None)?;
    let new = match a.take("before") {
        None => quote! { PadShortcut::new(shape[0], #outc, #stride) },
        Some(before) => {
            let before = crate::emit::to_usize(before);
            quote! { PadShortcut::with_before(shape[0], #outc, #stride, #before) }
        }
    };
    Ok(vec![quote! {
        let #field = #new;
        shape = [#outc, shape[1].div_ceil(#stride), shape[2].div_ceil(#stride)];
    }])
}

pub(super) fn forward(prim: Prim, access: TokenStream) -> TokenStream {
    match prim {
        Prim::Shift => quote! { let x = resnetc_kernels::shift(x, #access[0], #access[1]); },
        _ => quote! { let x = #access.forward(x); },
    }
}
