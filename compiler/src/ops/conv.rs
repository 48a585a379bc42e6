//! Convolutions: `conv(out, kernel, stride = 1, padding = dilation * (kernel - 1) / 2,
//! groups = 1, bias = false, bias_init, dilation = 1)`, and `conv1x1`/`conv3x3` with the
//! kernel fixed. The default padding keeps the size ("same") for odd kernels, dilated or not.
//!
//! Bias-free by default (a batch norm follows), He-normal (fan-out) weights as in He et al.
//! 2015. The forward pass goes through `resnetc_kernels::conv2d_module` (im2col + GEMM on the
//! CPU, Burn's `Conv2d` elsewhere).

use super::{Args, Default, EmitArgs, Helper, Input, Kernel, Prim, Primitive, Use, p};
use crate::check::Checker;
use crate::diag::{Diagnostic, codes};
use crate::emit::Emitter;
use crate::ir::{Hw, Layer, Shape};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

const USES: &[Use] = &[
    Use::Import("burn::nn::conv", "Conv2d"),
    Use::Import("burn::nn::conv", "Conv2dConfig"),
    Use::Import("burn::nn", "Initializer"),
    Use::Import("burn::nn", "PaddingConfig2d"),
    Use::Helper(Helper::Conv),
];

/// The padding when none is given: "same" for odd kernels (the fixed forms take no other).
const PADDING: Default = Default::HalfKernel;

const TAIL: [super::Param; 4] = [
    p("groups", Default::Int(1)),
    p("bias", Default::Bool(false)),
    p("bias_init", Default::Unset),
    p("dilation", Default::Int(1)),
];

pub(super) const PRIMITIVES: &[Primitive] = &[
    Primitive {
        prim: Prim::Conv,
        name: "conv",
        params: &[
            p("out", Default::Required),
            p("kernel", Default::Required),
            p("stride", Default::Int(1)),
            p("padding", PADDING),
            TAIL[0],
            TAIL[1],
            TAIL[2],
            TAIL[3],
        ],
        stem: "conv",
        flat: false,
        field: Some("Conv2d"),
        uses: USES,
    },
    Primitive {
        prim: Prim::Conv1x1,
        name: "conv1x1",
        params: &[p("out", Default::Required), p("stride", Default::Int(1)), TAIL[0], TAIL[1], TAIL[2], TAIL[3]],
        stem: "conv",
        flat: false,
        field: Some("Conv2d"),
        uses: USES,
    },
    Primitive {
        prim: Prim::Conv3x3,
        name: "conv3x3",
        params: &[p("out", Default::Required), p("stride", Default::Int(1)), TAIL[0], TAIL[1], TAIL[2], TAIL[3]],
        stem: "conv",
        flat: false,
        field: Some("Conv2d"),
        uses: USES,
    },
];

/// The kernel a form fixes.
fn fixed_kernel(prim: Prim) -> Option<u64> {
    match prim {
        Prim::Conv1x1 => Some(1),
        Prim::Conv3x3 => Some(3),
        _ => None,
    }
}

pub(super) fn check(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    let out = a.int(cx, "out", "output channels", 1, None)?;
    let kernel = match fixed_kernel(a.prim.prim) {
        Some(k) => Hw::square(k),
        None => a.hw(cx, "kernel", "kernel size", 1, None)?,
    };
    let stride = a.hw(cx, "stride", "stride", 1, None)?;
    let groups = a.int(cx, "groups", "groups", 1, None)?;
    let bias = a.boolean(cx, "bias")?;
    let bias_init = super::bias_init(cx, a, bias)?;
    let dilation = a.int(cx, "dilation", "dilation", 1, None)?;
    // The span of the dilated kernel per axis, which the default padding and the output size follow.
    let span = |k: u64| dilation.checked_mul(k - 1).and_then(|e| e.checked_add(1));
    let (Some(eh), Some(ew)) = (span(kernel.h()), span(kernel.w())) else {
        cx.error(Diagnostic::error(codes::OVERFLOW, a.span("dilation"), "dilation × kernel overflows"));
        return None;
    };
    let extent = Hw([eh, ew]);
    let padding = match fixed_kernel(a.prim.prim) {
        Some(_) => Hw::square(PADDING.int(Some(eh))?),
        None => a.hw(cx, "padding", "padding", 0, Some(extent))?,
    };
    let [c, h, w] = input.chw?;
    for (what, n) in [("input", c), ("output", out)] {
        if n % groups != 0 {
            cx.error(
                Diagnostic::error(
                    codes::GROUPS,
                    a.span("groups"),
                    format!("{what} channels ({n}) are not divisible by groups ({groups})"),
                )
                .label(format!("groups = {groups}"))
                .help("grouped convolution splits channels evenly: choose groups dividing both channel counts"),
            );
            return None;
        }
    }
    let (oh, ow) = cx.spatial_hw(a.call, h, w, extent, stride, padding, "convolution")?;
    Some((
        Layer::Conv { in_channels: c, out_channels: out, kernel, stride, padding, groups, dilation, bias, bias_init },
        Shape::chw(out, oh, ow),
    ))
}

pub(super) fn counts(layer: &Layer, out: &Shape) -> Option<(u64, u64)> {
    let Layer::Conv { in_channels, out_channels, kernel, groups, bias, .. } = *layer else { return None };
    let per_out = (in_channels / groups).checked_mul(kernel.h())?.checked_mul(kernel.w())?;
    let weights = out_channels.checked_mul(per_out)?;
    let params = weights.checked_add(if bias { out_channels } else { 0 })?;
    let [_, oh, ow] = out.as_chw()?;
    let macs = weights.checked_mul(oh)?.checked_mul(ow)?;
    Some((params, macs))
}

pub(super) fn ctor(em: &mut Emitter, a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    let fixed = fixed_kernel(a.prim.prim);
    if ["kernel", "stride", "padding"].iter().any(|n| a.is_pair(n)) {
        return rect_ctor(em, a, field, fixed);
    }
    em.uses(&[Use::Helper(Helper::Conv), Use::Helper(Helper::Window)]);
    let outc = a.usize("out", Kernel::None)?;
    let kernel = match fixed {
        Some(k) => {
            let k = proc_macro2::Literal::u64_unsuffixed(k);
            quote!(#k)
        }
        None => a.usize("kernel", Kernel::None)?,
    };
    let stride = a.usize("stride", Kernel::None)?;
    // A dilated convolution (the argument given) builds through its own helpers; the kernel's
    // span replaces the kernel in the default padding.
    let dilation = a.take("dilation").map(crate::emit::to_usize);
    let extent = dilation.as_ref().map(|d| quote!(#d * (#kernel - 1) + 1));
    let padding = match (fixed, &extent) {
        (Some(k), None) => {
            let p = proc_macro2::Literal::u64_unsuffixed(PADDING.int(Some(k)).unwrap_or(0));
            quote!(#p)
        }
        (Some(_), Some(e)) => quote!((#e - 1) / 2),
        (None, e) => a.usize("padding", Kernel::Expr(e.as_ref().unwrap_or(&kernel)))?,
    };
    let groups = a.usize("groups", Kernel::None)?;
    let bias = a.boolean("bias")?;
    let mut out = vec![match dilation {
        None => quote! {
            let #field = conv([shape[0], #outc], #kernel, #stride, #padding, #groups, #bias, device);
            shape = window(shape, #outc, #kernel, #stride, #padding);
        },
        Some(d) => {
            em.uses(&[Use::Helper(Helper::DilatedConv)]);
            let e = &extent;
            quote! {
                let #field = conv_dilated([shape[0], #outc], #kernel, #stride, #padding, #d, #groups, #bias, device);
                shape = window(shape, #outc, #e, #stride, #padding);
            }
        }
    }];
    if let Some(init) = a.take("bias_init") {
        out.push(super::fill_bias(em, field, init));
    }
    Ok(out)
}

/// A convolution given a pair `(h, w)` for its kernel, stride or padding: through the per-axis
/// helper (square convolutions keep the scalar ones, so their code is unchanged).
fn rect_ctor(
    em: &mut Emitter,
    a: &mut EmitArgs,
    field: &Ident,
    fixed: Option<u64>,
) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    em.uses(&[Use::Helper(Helper::RectConv)]);
    let hw = |a: &mut EmitArgs, name: &str| a.take(name).map(crate::emit::to_usize_hw);
    let outc = a.usize("out", Kernel::None)?;
    let kernel = match fixed {
        Some(k) => {
            let k = proc_macro2::Literal::u64_unsuffixed(k);
            quote!([#k, #k])
        }
        None => hw(a, "kernel").ok_or_else(|| a.missing("kernel"))?,
    };
    let stride = hw(a, "stride").unwrap_or_else(|| quote!([1, 1]));
    let padding = match hw(a, "padding") {
        Some(p) if fixed.is_none() => quote!(Some(#p)),
        _ => quote!(None),
    };
    let dilation = a.usize("dilation", Kernel::None)?;
    let groups = a.usize("groups", Kernel::None)?;
    let bias = a.boolean("bias")?;
    let mut out = vec![quote! {
        let (#field, out) = conv_hw(shape, #outc, #kernel, #stride, #padding, #dilation, #groups, #bias, device);
        shape = out;
    }];
    if let Some(init) = a.take("bias_init") {
        out.push(super::fill_bias(em, field, init));
    }
    Ok(out)
}

/// `conv` with kernel, stride and padding per axis (factorised `1×7` / `7×1` convolutions).
pub(super) fn rect_helper() -> TokenStream {
    quote! {
        /// `conv` with kernel, stride and padding as `[height, width]` (padding `None`: "same" for
        /// odd kernels), its taps `dilation` apart, on an input of shape `shape`; returns the
        /// layer and its output shape.
        fn conv_hw(shape: [usize; 3], channels: usize, kernel: [usize; 2], stride: [usize; 2], padding: Option<[usize; 2]>, dilation: usize, groups: usize, bias: bool, device: &Device) -> (Conv2d, [usize; 3]) {
            // The dilated kernel's extent along each axis.
            let extent = kernel.map(|k| dilation * (k - 1) + 1);
            let padding = padding.unwrap_or(extent.map(|e| (e - 1) / 2));
            let conv = Conv2dConfig::new([shape[0], channels], kernel)
                .with_stride(stride)
                .with_padding(PaddingConfig2d::Explicit(padding[0], padding[1], padding[0], padding[1]))
                .with_dilation([dilation, dilation])
                .with_groups(groups)
                .with_bias(bias)
                .with_initializer(Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: true })
                .init(device);
            let size = |n: usize, i: usize| (n + 2 * padding[i] - extent[i]) / stride[i] + 1;
            (conv, [channels, size(shape[1], 0), size(shape[2], 1)])
        }
    }
}

pub(super) fn forward(access: TokenStream) -> TokenStream {
    // Through resnetc-kernels: im2col + GEMM on the CPU (sums in blocks, the weight gradient by
    // GEMM), `Conv2d::forward` elsewhere.
    quote! { let x = resnetc_kernels::conv2d_module(&#access, x); }
}

/// `conv` with the taps `dilation` apart.
pub(super) fn dilated_helper() -> TokenStream {
    quote! {
        /// `conv` with the kernel's taps `dilation` apart (a dilated convolution, Yu & Koltun 2016).
        fn conv_dilated(channels: [usize; 2], kernel: usize, stride: usize, padding: usize, dilation: usize, groups: usize, bias: bool, device: &Device) -> Conv2d {
            Conv2dConfig::new(channels, [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
                .with_dilation([dilation, dilation])
                .with_groups(groups)
                .with_bias(bias)
                .with_initializer(Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: true })
                .init(device)
        }
    }
}

pub(super) fn helper() -> TokenStream {
    quote! {
        /// A bias-free-by-default convolution with He-normal (fan-out) weights, as in He et al. 2015.
        fn conv(channels: [usize; 2], kernel: usize, stride: usize, padding: usize, groups: usize, bias: bool, device: &Device) -> Conv2d {
            Conv2dConfig::new(channels, [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
                .with_groups(groups)
                .with_bias(bias)
                .with_initializer(Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: true })
                .init(device)
        }
    }
}
