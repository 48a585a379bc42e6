//! Pooling: `avg_pool(kernel, stride = kernel, padding = 0)`, `max_pool(...)` (Burn's pools,
//! average pooling counting padded zeros as PyTorch's default does), `global_avg_pool`.

use super::{Args, Default, EmitArgs, Helper, Input, Kernel, Prim, Primitive, Use, p};
use crate::check::Checker;
use crate::diag::{Diagnostic, codes};
use crate::emit::Emitter;
use crate::ir::{Layer, Shape};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

const WINDOW: &[super::Param] =
    &[p("kernel", Default::Required), p("stride", Default::Kernel), p("padding", Default::Int(0))];

pub(super) const PRIMITIVES: &[Primitive] = &[
    Primitive {
        prim: Prim::AvgPool,
        name: "avg_pool",
        params: WINDOW,
        stem: "pool",
        flat: false,
        field: Some("AvgPool2d"),
        uses: &[
            Use::Import("burn::nn::pool", "AvgPool2d"),
            Use::Import("burn::nn::pool", "AvgPool2dConfig"),
            Use::Import("burn::nn", "PaddingConfig2d"),
        ],
    },
    Primitive {
        prim: Prim::MaxPool,
        name: "max_pool",
        params: WINDOW,
        stem: "pool",
        flat: false,
        field: Some("MaxPool2d"),
        uses: &[
            Use::Import("burn::nn::pool", "MaxPool2d"),
            Use::Import("burn::nn::pool", "MaxPool2dConfig"),
            Use::Import("burn::nn", "PaddingConfig2d"),
        ],
    },
    Primitive {
        prim: Prim::GlobalAvgPool,
        name: "global_avg_pool",
        params: &[],
        stem: "global_pool",
        flat: false,
        field: None,
        uses: &[],
    },
];

pub(super) fn check(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    if a.prim.prim == Prim::GlobalAvgPool {
        let [c, _, _] = input.chw?;
        return Some((Layer::GlobalAvgPool, Shape::chw(c, 1, 1)));
    }
    let kernel = a.int(cx, "kernel", "kernel size", 1, None)?;
    let stride = a.int(cx, "stride", "stride", 1, Some(kernel))?;
    let padding = a.int(cx, "padding", "padding", 0, Some(kernel))?;
    if padding * 2 > kernel {
        cx.error(Diagnostic::error(
            codes::VALUE_RANGE,
            a.get("padding")?.1,
            format!("pooling padding {padding} is more than half the kernel {kernel}"),
        ));
        return None;
    }
    let [c, h, w] = input.chw?;
    let (oh, ow) = cx.spatial(a.call, h, w, kernel, stride, padding, "pooling")?;
    let layer = if a.prim.prim == Prim::AvgPool {
        Layer::AvgPool { kernel, stride, padding }
    } else {
        Layer::MaxPool { kernel, stride, padding }
    };
    Some((layer, Shape::chw(c, oh, ow)))
}

pub(super) fn ctor(em: &mut Emitter, a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    if a.prim.prim == Prim::GlobalAvgPool {
        return Ok(vec![quote! { shape = [shape[0], 1, 1]; }]);
    }
    em.uses(&[Use::Helper(Helper::Window)]);
    let kernel = a.usize("kernel", Kernel::None)?;
    let stride = a.usize("stride", Kernel::Expr(&kernel))?;
    let padding = a.usize("padding", Kernel::Expr(&kernel))?;
    let config = if a.prim.prim == Prim::AvgPool { quote!(AvgPool2dConfig) } else { quote!(MaxPool2dConfig) };
    Ok(vec![quote! {
        let #field = #config::new([#kernel, #kernel])
            .with_strides([#stride, #stride])
            .with_padding(PaddingConfig2d::Explicit(#padding, #padding, #padding, #padding))
            .init();
        shape = window(shape, shape[0], #kernel, #stride, #padding);
    }])
}

pub(super) fn forward(prim: Prim, access: TokenStream) -> TokenStream {
    match prim {
        Prim::GlobalAvgPool => quote! { let x = burn::tensor::module::adaptive_avg_pool2d(x, [1, 1]); },
        _ => quote! { let x = #access.forward(x); },
    }
}

/// The shape helper of convolutions and pools.
pub(super) fn window_helper() -> TokenStream {
    quote! {
        /// The shape after a convolution or pooling window.
        fn window(shape: [usize; 3], channels: usize, kernel: usize, stride: usize, padding: usize) -> [usize; 3] {
            let size = |n: usize| (n + 2 * padding - kernel) / stride + 1;
            [channels, size(shape[1]), size(shape[2])]
        }
    }
}
