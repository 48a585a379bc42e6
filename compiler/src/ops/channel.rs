//! `channel_conv(kernel)`: a 1-D convolution across the channels of a `C×1×1` input (one
//! filter of `kernel` taps, no bias, zero-padded to keep `C`): the gate of efficient channel
//! attention (ECA, Wang et al. 2020), written `{ } * { global_avg_pool channel_conv(k) sigmoid }`.
//! Initialised as PyTorch's `nn.Conv1d` (Burn's default, Kaiming-uniform with a = √5).
//!
//! `slice(start, channels)`: channels `start .. start + channels` of the input (PyTorch's
//! `x.narrow(1, start, channels)`), for splitting a tensor into channel groups that branches
//! process and `concat` joins back: Res2Net's hierarchical groups, CSP's split, DPN's dual path.

use super::{Args, Default, EmitArgs, Input, Kernel, Prim, Primitive, Use, p};
use crate::check::Checker;
use crate::diag::{Diagnostic, codes};
use crate::ir::{Layer, Shape};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

pub(super) const PRIMITIVES: &[Primitive] = &[
    Primitive {
        prim: Prim::ChannelConv,
        name: "channel_conv",
        params: &[p("kernel", Default::Required)],
        stem: "channel_conv",
        flat: false,
        field: Some("Conv1d"),
        uses: &[
            Use::Import("burn::nn::conv", "Conv1d"),
            Use::Import("burn::nn::conv", "Conv1dConfig"),
            Use::Import("burn::nn", "PaddingConfig1d"),
        ],
    },
    Primitive {
        prim: Prim::Slice,
        name: "slice",
        params: &[p("start", Default::Required), p("channels", Default::Required)],
        stem: "slice",
        flat: true,
        // `[start, channels]`, computed by the constructor from the block's arguments.
        field: Some("[usize; 2]"),
        uses: &[],
    },
];

pub(super) fn check(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    let kernel = a.int(cx, "kernel", "kernel size", 1, None)?;
    if kernel % 2 == 0 {
        cx.error(
            Diagnostic::error(
                codes::VALUE_RANGE,
                a.span("kernel"),
                format!("channel_conv's kernel must be odd, got {kernel}"),
            )
            .label(format!("kernel = {kernel}"))
            .help("an odd kernel, padded by (kernel - 1) / 2 on each side, keeps the channel count"),
        );
        return None;
    }
    let [c, h, w] = input.chw?;
    if (h, w) != (1, 1) {
        cx.error(
            Diagnostic::error(
                codes::SHAPE,
                a.call.span,
                format!("`channel_conv` convolves across the channels of a C×1×1 input, got {c}×{h}×{w}"),
            )
            .help("pool first: `global_avg_pool channel_conv(k)`"),
        );
        return None;
    }
    Some((Layer::ChannelConv { channels: c, kernel }, input.shape?))
}

pub(super) fn counts(channels: u64, kernel: u64) -> Option<(u64, u64)> {
    Some((kernel, channels.checked_mul(kernel)?))
}

pub(super) fn ctor(a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    let kernel = a.usize("kernel", Kernel::None)?;
    Ok(vec![quote! {
        let #field = Conv1dConfig::new(1, 1, #kernel)
            .with_padding(PaddingConfig1d::Explicit((#kernel - 1) / 2, (#kernel - 1) / 2))
            .with_bias(false)
            .init(device);
    }])
}

pub(super) fn forward(access: TokenStream) -> TokenStream {
    // The channels become the sequence of one 1-channel signal, and back.
    quote! { let x = { let [n, c, _, _] = x.dims(); #access.forward(x.reshape([n, 1, c])).reshape([n, c, 1, 1]) }; }
}

pub(super) fn check_slice(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    let start = a.int(cx, "start", "first channel", 0, None);
    let channels = a.int(cx, "channels", "channel count", 1, None);
    let (start, channels, shape) = (start?, channels?, input.shape?);
    let c = shape.dims()[0];
    if start.checked_add(channels).is_none_or(|end| end > c) {
        let what = if shape.dims().len() == 1 { "features" } else { "channels" };
        cx.error(
            Diagnostic::error(
                codes::SHAPE,
                a.call.span,
                format!(
                    "`slice({start}, {channels})` takes {what} {start}..{} of an input with {c}",
                    start.saturating_add(channels)
                ),
            )
            .label(format!("the input has {c} {what}"))
            .help(format!("start + channels must be at most {c}")),
        );
        return None;
    }
    let out = match shape.dims() {
        [_, h, w] => Shape::chw(channels, *h, *w),
        _ => Shape::flat(channels),
    };
    Some((Layer::Slice { start, channels }, out))
}

pub(super) fn slice_ctor(a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    let start = a.usize("start", Kernel::None)?;
    let channels = a.usize("channels", Kernel::None)?;
    Ok(vec![quote! {
        let #field: [usize; 2] = [#start, #channels];
        shape[0] = #field[1];
    }])
}

pub(super) fn slice_forward(access: TokenStream) -> TokenStream {
    quote! { let x = x.narrow(1, #access[0], #access[1]); }
}
