//! The primitive layers: one module per family, one [`Primitive`] per name, and the dispatch
//! the checker and the emitter go through.
//!
//! A family module holds, for its primitives, the signature with each default written once
//! ([`Default`]: the checker evaluates it, the emitter writes it), the shape rule (`check`),
//! the parameter and MAC counts, and the emitted tokens (`ctor`, `forward`, helper items).
//! The matches below on [`Prim`] and [`Layer`] have no default arm: a primitive added to the
//! enum does not compile until every stage handles it. `compiler/ARCHITECTURE.md` lists the
//! steps ("How to add a primitive").

use crate::check::Checker;
use crate::diag::{Diagnostic, Span, codes};
use crate::emit::{Emitter, Typed};
use crate::ir::{Hw, Layer, Shape, Value};
use crate::syntax::ast::Call;
use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;
use std::collections::HashMap;
use std::sync::LazyLock;

pub mod activation;
mod channel;
mod conv;
mod dropout;
mod linear;
mod norm;
mod pointwise;
mod pool;
mod scale;
mod shortcut;

pub use activation::ActFn;

/// Every primitive layer, as the checker and the emitter dispatch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prim {
    /// `conv(out, kernel, ...)`.
    Conv,
    /// `conv1x1(out, ...)`: kernel 1.
    Conv1x1,
    /// `conv3x3(out, ...)`: kernel 3.
    Conv3x3,
    BatchNorm,
    GroupNorm,
    LayerNorm,
    /// `scale(init)`: a learned per-channel scale.
    Scale,
    Relu,
    Sigmoid,
    Identity,
    PRelu,
    Dropout,
    /// `drop_path(p)`: stochastic depth, per sample.
    DropPath,
    AvgPool,
    MaxPool,
    GlobalAvgPool,
    Linear,
    PadShortcut,
    /// `shift(rows, cols)`: pixels moved up and left, zeros past the edge.
    Shift,
    /// `channel_conv(kernel)`: a 1-D convolution across channels (ECA).
    ChannelConv,
    /// `slice(start, channels)`: a run of the input's channels.
    Slice,
    /// An element-wise activation of [`activation::TABLE`].
    Act(ActFn),
}

/// A parameter's default, stated once for the checker and the emitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Default {
    /// No default: the argument must be given.
    Required,
    Int(u64),
    Bool(bool),
    Float(f64),
    /// The kernel size (a pool's stride).
    Kernel,
    /// `(kernel - 1) / 2`: "same" padding for an odd kernel (a convolution's padding).
    HalfKernel,
    /// Optional, and absent means "not set" (`bias_init`: the initialiser's bias).
    Unset,
}

impl Default {
    /// The default as a number, given the layer's kernel size where it depends on it.
    pub fn int(self, kernel: Option<u64>) -> Option<u64> {
        match self {
            Default::Int(n) => Some(n),
            Default::Kernel => kernel,
            Default::HalfKernel => kernel.map(|k| k.saturating_sub(1) / 2),
            Default::Required | Default::Bool(_) | Default::Float(_) | Default::Unset => None,
        }
    }
}

/// One parameter of a primitive.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub default: Default,
}

/// Shorthand for the signature tables of the family modules.
const fn p(name: &'static str, default: Default) -> Param {
    Param { name, default }
}

/// A helper item the emitted code defines once, after its structs; emitted in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Helper {
    /// `fn conv(...)`: a He-normal convolution.
    Conv,
    /// `fn conv_dilated(...)`: the same, dilated.
    DilatedConv,
    /// `fn conv_hw(...)`: kernel, stride and padding per axis.
    RectConv,
    /// `fn fill_bias(...)`: `bias_init`.
    FillBias,
    /// `fn window(...)`: the shape after a sliding window.
    Window,
}

/// What the emitted code needs for a primitive: `use` items and helpers.
#[derive(Clone, Copy, Debug)]
pub enum Use {
    /// `use module::item;`
    Import(&'static str, &'static str),
    Helper(Helper),
}

/// One primitive layer of the language.
#[derive(Clone, Copy, Debug)]
pub struct Primitive {
    pub prim: Prim,
    /// The name in `.net` source.
    pub name: &'static str,
    /// Parameters in positional order.
    pub params: &'static [Param],
    /// The stem of its field names within a block (`conv` for `conv1`, `conv2`, ...).
    pub stem: &'static str,
    /// Whether it also applies to flat feature vectors (after `linear`), not only C×H×W maps.
    pub flat: bool,
    /// The type of the field the emitted struct holds for each call; `None`: stateless.
    pub field: Option<&'static str>,
    /// What the emitted code imports or defines when the struct has such a field.
    pub uses: &'static [Use],
}

impl Primitive {
    /// `(name, has a default)` per parameter, as argument binding takes them.
    pub fn signature(&self) -> Vec<(&'static str, bool)> {
        self.params.iter().map(|p| (p.name, p.default != Default::Required)).collect()
    }
}

/// Every primitive: the family modules' tables, then one per activation row.
static REGISTRY: LazyLock<Vec<Primitive>> = LazyLock::new(|| {
    let mut all = Vec::new();
    for family in [
        conv::PRIMITIVES,
        norm::PRIMITIVES,
        pointwise::PRIMITIVES,
        dropout::PRIMITIVES,
        pool::PRIMITIVES,
        linear::PRIMITIVES,
        scale::PRIMITIVES,
        shortcut::PRIMITIVES,
        channel::PRIMITIVES,
    ] {
        all.extend(family.iter().copied());
    }
    all.extend(activation::TABLE.iter().map(|a| Primitive {
        prim: Prim::Act(a.function),
        name: a.name,
        params: a.params,
        stem: a.name,
        flat: true,
        field: match a.params.len() {
            0 => None,
            1 => Some("f64"),
            _ => Some("[f64; 2]"),
        },
        uses: &[],
    }));
    all
});

/// The primitive called `name`, if there is one.
pub fn lookup(name: &str) -> Option<&'static Primitive> {
    REGISTRY.iter().find(|p| p.name == name)
}

/// Every primitive, in the registry's order.
pub fn all() -> impl Iterator<Item = &'static Primitive> + Clone {
    REGISTRY.iter()
}

// ----- checking -----

/// The bound arguments of one primitive call, in the order of its parameters.
pub(crate) struct Args<'a> {
    pub call: &'a Call,
    pub prim: &'static Primitive,
    pub values: Vec<Option<(Value, Span)>>,
}

impl Args<'_> {
    /// The argument given for `name`, if any.
    pub fn get(&self, name: &str) -> Option<(Value, Span)> {
        self.prim.params.iter().position(|p| p.name == name).and_then(|i| self.values[i])
    }

    /// Where `name` was given, or the call.
    pub fn span(&self, name: &str) -> Span {
        self.get(name).map_or(self.call.span, |(_, s)| s)
    }

    fn default(&self, name: &str) -> Default {
        self.prim.params.iter().find(|p| p.name == name).map_or(Default::Required, |p| p.default)
    }

    /// An integer argument of at least `min`, or its default (`kernel` for defaults that
    /// depend on it). `None` once an error is reported (or a required one is missing, which
    /// binding reported).
    pub fn int(&self, cx: &mut Checker, name: &str, what: &str, min: i64, kernel: Option<u64>) -> Option<u64> {
        match self.get(name) {
            Some(v) => cx.int(v, what, min),
            None => self.default(name).int(kernel),
        }
    }

    /// A size along height and width: an integer (both) or a pair `(h, w)`, each at least
    /// `min`, or its default per axis (`kernel`: for defaults that depend on it).
    pub fn hw(&self, cx: &mut Checker, name: &str, what: &str, min: i64, kernel: Option<Hw>) -> Option<Hw> {
        match self.get(name) {
            Some((Value::Pair(h, w), span)) => {
                let h = cx.int((Value::Int(h), span), &format!("{what} (height)"), min);
                let w = cx.int((Value::Int(w), span), &format!("{what} (width)"), min);
                Some(Hw([h?, w?]))
            }
            Some(v) => cx.int(v, what, min).map(Hw::square),
            None => {
                let default = self.default(name);
                match kernel {
                    Some(k) => Some(Hw([default.int(Some(k.h()))?, default.int(Some(k.w()))?])),
                    None => default.int(None).map(Hw::square),
                }
            }
        }
    }

    /// A boolean argument, or its default.
    pub fn boolean(&self, cx: &mut Checker, name: &str) -> Option<bool> {
        match (self.get(name), self.default(name)) {
            (Some(v), _) => cx.boolean(v),
            (None, Default::Bool(b)) => Some(b),
            (None, _) => None,
        }
    }

    /// A number (an integer is taken as a float), or its default.
    pub fn float(&self, cx: &mut Checker, name: &str) -> Option<f64> {
        match (self.get(name), self.default(name)) {
            (Some(v), _) => cx.float(v),
            (None, Default::Float(f)) => Some(f),
            (None, _) => None,
        }
    }
}

/// What a primitive sees of its input: the shape (unknown after an earlier error) and, when
/// it is one, its C×H×W form.
#[derive(Clone, Copy)]
pub(crate) struct Input {
    pub shape: Option<Shape>,
    pub chw: Option<[u64; 3]>,
}

/// Check one primitive call: its arguments, its input, its output shape.
pub(crate) fn check(cx: &mut Checker, a: &Args, input: Input) -> Option<(Layer, Shape)> {
    match a.prim.prim {
        Prim::Conv | Prim::Conv1x1 | Prim::Conv3x3 => conv::check(cx, a, input),
        Prim::BatchNorm | Prim::GroupNorm | Prim::LayerNorm => norm::check(cx, a, input),
        Prim::Scale => scale::check(cx, a, input),
        Prim::Relu | Prim::Sigmoid | Prim::Identity | Prim::PRelu => pointwise::check(cx, a, input),
        Prim::Dropout | Prim::DropPath => dropout::check(cx, a, input),
        Prim::AvgPool | Prim::MaxPool | Prim::GlobalAvgPool => pool::check(cx, a, input),
        Prim::Linear => linear::check(cx, a, input),
        Prim::PadShortcut | Prim::Shift => shortcut::check(cx, a, input),
        Prim::ChannelConv => channel::check(cx, a, input),
        Prim::Slice => channel::check_slice(cx, a, input),
        Prim::Act(f) => check_activation(cx, a, input, f),
    }
}

fn check_activation(cx: &mut Checker, a: &Args, input: Input, function: ActFn) -> Option<(Layer, Shape)> {
    let mut args = Vec::new();
    for param in a.prim.params {
        args.push(a.float(cx, param.name)?);
    }
    if let Some(message) = (function.def().invalid)(&args) {
        cx.error(Diagnostic::error(codes::VALUE_RANGE, a.call.span, message));
        return None;
    }
    Some((Layer::Activation { function, args }, input.shape?))
}

/// Trainable parameters and multiply-accumulates per image of a layer with output `out`;
/// `None` on overflow.
pub fn counts(layer: &Layer, out: &Shape) -> Option<(u64, u64)> {
    match layer {
        Layer::Conv { .. } => conv::counts(layer, out),
        Layer::BatchNorm { features } => Some((features.checked_mul(2)?, 0)),
        Layer::GroupNorm { channels, .. } | Layer::LayerNorm { channels, .. } => Some((channels.checked_mul(2)?, 0)),
        Layer::Scale { channels, .. } => Some((*channels, 0)),
        Layer::PRelu { channels } => Some((*channels, 0)),
        Layer::Linear { .. } => linear::counts(layer),
        Layer::ChannelConv { channels, kernel } => channel::counts(*channels, *kernel),
        Layer::Relu
        | Layer::Sigmoid
        | Layer::Identity
        | Layer::Dropout { .. }
        | Layer::DropPath { .. }
        | Layer::AvgPool { .. }
        | Layer::MaxPool { .. }
        | Layer::GlobalAvgPool
        | Layer::PadShortcut { .. }
        | Layer::Slice { .. }
        | Layer::Shift { .. }
        | Layer::Activation { .. } => Some((0, 0)),
    }
}

// ----- emitting -----

/// The arguments of one primitive call as constructor expressions.
pub(crate) struct EmitArgs {
    pub prim: &'static Primitive,
    pub values: HashMap<&'static str, Typed>,
    pub span: Span,
}

impl EmitArgs {
    fn default(&self, name: &str) -> Default {
        self.prim.params.iter().find(|p| p.name == name).map_or(Default::Required, |p| p.default)
    }

    fn missing(&self, name: &str) -> Vec<Diagnostic> {
        vec![Diagnostic::error(
            codes::EMIT,
            self.span,
            format!("internal error: `{}` reached the emitter without `{name}`", self.prim.name),
        )]
    }

    /// An integer argument as a `usize` expression, or its default (`kernel`: for defaults
    /// that depend on it).
    pub fn usize(&mut self, name: &str, kernel: Kernel) -> Result<TokenStream, Vec<Diagnostic>> {
        if let Some(v) = self.values.remove(name) {
            return Ok(crate::emit::to_usize(v));
        }
        let literal = |n: u64| {
            let n = Literal::u64_unsuffixed(n);
            quote!(#n)
        };
        match (self.default(name), kernel) {
            (Default::Int(n), _) => Ok(literal(n)),
            (Default::Kernel, Kernel::Expr(k)) => Ok(k.clone()),
            (Default::HalfKernel, Kernel::Expr(k)) => Ok(quote!((#k - 1) / 2)),
            (Default::Kernel | Default::HalfKernel, Kernel::None) => Err(self.missing("kernel")),
            (Default::Required | Default::Bool(_) | Default::Float(_) | Default::Unset, _) => Err(self.missing(name)),
        }
    }

    /// A boolean argument's expression, or its default.
    pub fn boolean(&mut self, name: &str) -> Result<TokenStream, Vec<Diagnostic>> {
        match (self.values.remove(name), self.default(name)) {
            (Some(v), _) => Ok(v.tokens),
            (None, Default::Bool(b)) => Ok(quote!(#b)),
            (None, _) => Err(self.missing(name)),
        }
    }

    /// A number as an `f64` expression, or its default.
    pub fn float(&mut self, name: &str) -> Result<TokenStream, Vec<Diagnostic>> {
        match (self.values.remove(name), self.default(name)) {
            (Some(v), _) => Ok(crate::emit::cast(v, crate::ir::Ty::Float).tokens),
            (None, Default::Float(f)) => {
                let f = Literal::f64_unsuffixed(f);
                Ok(quote!(#f))
            }
            (None, _) => Err(self.missing(name)),
        }
    }

    /// Whether the argument `name` was given as a pair `(h, w)`.
    pub fn is_pair(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| v.ty == crate::ir::Ty::Pair)
    }

    /// An optional argument (`Default::Unset`), if given.
    pub fn take(&mut self, name: &str) -> Option<Typed> {
        self.values.remove(name)
    }
}

/// A layer's kernel size in the constructor, for the defaults that depend on it.
#[derive(Clone, Copy)]
pub(crate) enum Kernel<'a> {
    /// An argument's expression.
    Expr(&'a TokenStream),
    /// The layer has no kernel.
    None,
}

/// The constructor statements of one call, whose field is `field`; `shape` is the running
/// `[C, H, W]`.
pub(crate) fn ctor(em: &mut Emitter, a: &mut EmitArgs, field: &Ident) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
    match a.prim.prim {
        Prim::Conv | Prim::Conv1x1 | Prim::Conv3x3 => conv::ctor(em, a, field),
        Prim::BatchNorm | Prim::GroupNorm | Prim::LayerNorm => norm::ctor(a, field),
        Prim::Scale => scale::ctor(a, field),
        Prim::Relu | Prim::Sigmoid | Prim::Identity | Prim::PRelu => Ok(pointwise::ctor(a.prim.prim, field)),
        Prim::Dropout | Prim::DropPath => dropout::ctor(a, field),
        Prim::AvgPool | Prim::MaxPool | Prim::GlobalAvgPool => pool::ctor(em, a, field),
        Prim::Linear => linear::ctor(em, a, field),
        Prim::PadShortcut | Prim::Shift => shortcut::ctor(a, field),
        Prim::ChannelConv => channel::ctor(a, field),
        Prim::Slice => channel::slice_ctor(a, field),
        Prim::Act(_) => {
            // Arguments are stored per call: they may differ between a block's calls.
            let args = a.prim.params.iter().map(|p| a.float(p.name)).collect::<Result<Vec<_>, _>>()?;
            Ok(match args.as_slice() {
                [] => Vec::new(),
                [one] => vec![quote! { let #field: f64 = #one; }],
                many => vec![quote! { let #field: [f64; 2] = [#(#many),*]; }],
            })
        }
    }
}

/// The forward statement of one call (`let x = ...;`), its field reached by `access`; `rank`
/// is the tensor's rank before and after.
pub(crate) fn forward(em: &mut Emitter, prim: Prim, access: TokenStream, rank: &mut usize) -> TokenStream {
    match prim {
        Prim::Conv | Prim::Conv1x1 | Prim::Conv3x3 => conv::forward(access),
        Prim::BatchNorm | Prim::GroupNorm | Prim::LayerNorm => norm::forward(prim, access, *rank),
        Prim::Scale => scale::forward(access, *rank),
        Prim::Relu | Prim::Sigmoid | Prim::Identity | Prim::PRelu => pointwise::forward(em, prim, access),
        Prim::Dropout | Prim::DropPath => dropout::forward(prim, access),
        Prim::AvgPool | Prim::MaxPool | Prim::GlobalAvgPool => pool::forward(prim, access),
        Prim::Linear => linear::forward(access, rank),
        Prim::PadShortcut | Prim::Shift => shortcut::forward(prim, access),
        Prim::ChannelConv => channel::forward(access),
        Prim::Slice => channel::slice_forward(access),
        Prim::Act(f) => (f.def().forward)(access),
    }
}

/// The helper item's tokens.
pub(crate) fn helper(h: Helper) -> TokenStream {
    match h {
        Helper::Conv => conv::helper(),
        Helper::DilatedConv => conv::dilated_helper(),
        Helper::RectConv => conv::rect_helper(),
        Helper::FillBias => linear::fill_bias_helper(),
        Helper::Window => pool::window_helper(),
    }
}

/// `bias_init`: fill the bias of the layer just built.
pub(crate) fn fill_bias(em: &mut Emitter, field: &Ident, init: Typed) -> TokenStream {
    em.uses(&[Use::Helper(Helper::FillBias), Use::Import("burn::module", "Param")]);
    let value = crate::emit::cast(init, crate::ir::Ty::Float).tokens;
    quote! {
        let mut #field = #field;
        #field.bias = fill_bias(#field.bias, #value);
    }
}

/// A `bias_init` argument: a finite number, only where the layer has a bias. `Some(None)` when absent.
pub(crate) fn bias_init(cx: &mut Checker, a: &Args, bias: bool) -> Option<Option<f64>> {
    let Some((v, span)) = a.get("bias_init") else { return Some(None) };
    let value = cx.float((v, span))?;
    if !bias {
        cx.error(
            Diagnostic::error(codes::VALUE_RANGE, span, "`bias_init` given to a layer without a bias")
                .label(format!("bias_init = {value}"))
                .help("add `bias = true`"),
        );
        return None;
    }
    if !value.is_finite() {
        cx.error(Diagnostic::error(codes::VALUE_RANGE, span, format!("`bias_init` must be finite, got {value}")));
        return None;
    }
    Some(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_signatures_consistent() {
        let mut names: Vec<&str> = all().map(|p| p.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a primitive name is registered twice");
        for p in all() {
            assert_eq!(lookup(p.name).map(|q| q.prim), Some(p.prim));
            // Required parameters come first: positional arguments fill them.
            let first_optional = p.params.iter().position(|q| q.default != Default::Required);
            if let Some(i) = first_optional {
                assert!(p.params[i..].iter().all(|q| q.default != Default::Required), "{}", p.name);
            }
        }
    }

    #[test]
    fn defaults_that_depend_on_the_kernel() {
        assert_eq!(Default::HalfKernel.int(Some(7)), Some(3));
        assert_eq!(Default::HalfKernel.int(Some(1)), Some(0));
        assert_eq!(Default::Kernel.int(Some(3)), Some(3));
        assert_eq!(Default::Required.int(Some(3)), None);
    }
}
