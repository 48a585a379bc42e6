//! The element-wise activations with arguments or without (besides `relu`, `sigmoid`, the
//! learned `prelu` and `identity`, which have modules of their own): one row of [`TABLE`] each.
//!
//! A row holds everything the compiler knows of an activation: its name, its parameters with
//! their defaults, the values it refuses, and the forward statement the emitter writes.
//! Arguments are kept per call in the emitted struct (`f64`, `[f64; 2]`), since they may differ
//! between a block's calls. The runtime's one arm per [`ActFn`] is in `resnetc-runtime`'s
//! `model::activation` (an exhaustive match: a new row does not compile until it has one).

use super::{Default, Param, p};
use proc_macro2::TokenStream;
use quote::quote;
use serde::Serialize;
use std::fmt;

/// An element-wise activation, as the IR records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActFn {
    LeakyRelu,
    Elu,
    Celu,
    Selu,
    Gelu,
    GeluTanh,
    Silu,
    /// `swish`: another name of SiLU, kept as written in summaries.
    Swish,
    Mish,
    Hardswish,
    Hardsigmoid,
    Hardtanh,
    Softsign,
    Softplus,
    Tanh,
}

/// One activation: everything the checker and the emitter need.
pub struct ActivationDef {
    pub function: ActFn,
    /// The name in `.net` source.
    pub name: &'static str,
    /// Parameters in positional order, each with its default.
    pub params: &'static [Param],
    /// Why these arguments (defaults filled in) are refused, if they are.
    pub invalid: fn(&[f64]) -> Option<String>,
    /// The emitted statement `let x = ...;`, given how the call's stored arguments are reached
    /// (`self.act1`; unused when it has no parameters).
    pub forward: fn(TokenStream) -> TokenStream,
}

fn accept(_: &[f64]) -> Option<String> {
    None
}

/// Every element-wise activation.
pub const TABLE: &[ActivationDef] = &[
    ActivationDef {
        function: ActFn::LeakyRelu,
        name: "leaky_relu",
        params: &[p("slope", Default::Float(0.01))],
        invalid: accept,
        forward: |a| quote! { let x = burn::tensor::activation::leaky_relu(x, #a.clone()); },
    },
    ActivationDef {
        function: ActFn::Elu,
        name: "elu",
        params: &[p("alpha", Default::Float(1.0))],
        invalid: accept,
        forward: |a| quote! { let x = burn::tensor::activation::elu(x, #a.clone()); },
    },
    ActivationDef {
        function: ActFn::Selu,
        name: "selu",
        params: &[],
        invalid: accept,
        forward: |_| quote! { let x = burn::tensor::activation::selu(x); },
    },
    ActivationDef {
        function: ActFn::Celu,
        name: "celu",
        params: &[p("alpha", Default::Float(1.0))],
        invalid: |a| (a[0] == 0.0).then(|| "celu needs alpha ≠ 0".to_string()),
        forward: |a| quote! { let x = burn::tensor::activation::celu(x, #a.clone()); },
    },
    ActivationDef {
        function: ActFn::Gelu,
        name: "gelu",
        params: &[],
        invalid: accept,
        // Exact (erf) GELU with its exact derivative on every backend (see resnetc-kernels).
        forward: |_| quote! { let x = resnetc_kernels::gelu(x); },
    },
    ActivationDef {
        function: ActFn::GeluTanh,
        name: "gelu_tanh",
        params: &[],
        invalid: accept,
        forward: |_| quote! { let x = burn::tensor::activation::gelu_approximate(x); },
    },
    ActivationDef {
        function: ActFn::Silu,
        name: "silu",
        params: &[],
        invalid: accept,
        forward: |_| quote! { let x = burn::tensor::activation::silu(x); },
    },
    ActivationDef {
        function: ActFn::Swish,
        name: "swish",
        params: &[],
        invalid: accept,
        forward: |_| quote! { let x = burn::tensor::activation::silu(x); },
    },
    ActivationDef {
        function: ActFn::Mish,
        name: "mish",
        params: &[],
        invalid: accept,
        forward: |_| quote! { let x = burn::tensor::activation::mish(x); },
    },
    ActivationDef {
        function: ActFn::Hardswish,
        name: "hardswish",
        params: &[],
        invalid: accept,
        forward: |_| quote! { let x = burn::tensor::activation::hard_swish(x); },
    },
    ActivationDef {
        function: ActFn::Hardsigmoid,
        name: "hardsigmoid",
        params: &[],
        invalid: accept,
        // PyTorch's hardsigmoid: relu6(x + 3) / 6.
        forward: |_| quote! { let x = burn::tensor::activation::hard_sigmoid(x, 1.0 / 6.0, 0.5); },
    },
    ActivationDef {
        function: ActFn::Hardtanh,
        name: "hardtanh",
        params: &[p("min", Default::Float(-1.0)), p("max", Default::Float(1.0))],
        invalid: |a| (a[0] >= a[1]).then(|| format!("hardtanh needs min < max, got {} and {}", a[0], a[1])),
        forward: |a| {
            quote! { let x = { let [min, max] = #a.clone(); burn::tensor::activation::hardtanh(x, min, max) }; }
        },
    },
    ActivationDef {
        function: ActFn::Softsign,
        name: "softsign",
        params: &[],
        invalid: accept,
        forward: |_| quote! { let x = burn::tensor::activation::softsign(x); },
    },
    ActivationDef {
        function: ActFn::Softplus,
        name: "softplus",
        params: &[p("beta", Default::Float(1.0))],
        invalid: |a| (a[0] <= 0.0).then(|| format!("softplus needs beta > 0, got {}", a[0])),
        forward: |a| quote! { let x = burn::tensor::activation::softplus(x, #a.clone()); },
    },
    ActivationDef {
        function: ActFn::Tanh,
        name: "tanh",
        params: &[],
        invalid: accept,
        forward: |_| quote! { let x = burn::tensor::activation::tanh(x); },
    },
];

impl ActFn {
    /// Its row of [`TABLE`].
    pub fn def(self) -> &'static ActivationDef {
        TABLE.iter().find(|d| d.function == self).expect("every activation has a row in TABLE")
    }

    /// The activation called `name` in source.
    pub fn named(name: &str) -> Option<ActFn> {
        TABLE.iter().find(|d| d.name == name).map(|d| d.function)
    }

    /// The name in `.net` source.
    pub fn name(self) -> &'static str {
        self.def().name
    }
}

impl fmt::Display for ActFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for ActFn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_activation_has_one_row_and_a_unique_name() {
        let all = [
            ActFn::LeakyRelu,
            ActFn::Elu,
            ActFn::Celu,
            ActFn::Selu,
            ActFn::Gelu,
            ActFn::GeluTanh,
            ActFn::Silu,
            ActFn::Swish,
            ActFn::Mish,
            ActFn::Hardswish,
            ActFn::Hardsigmoid,
            ActFn::Hardtanh,
            ActFn::Softsign,
            ActFn::Softplus,
            ActFn::Tanh,
        ];
        assert_eq!(TABLE.len(), all.len());
        for f in all {
            assert_eq!(TABLE.iter().filter(|d| d.function == f).count(), 1, "{f:?}");
            assert_eq!(ActFn::named(f.name()), Some(f));
        }
        assert!(TABLE.iter().all(|d| d.params.len() <= 2), "an activation value holds two arguments");
    }

    #[test]
    fn range_rules() {
        assert!((ActFn::Hardtanh.def().invalid)(&[1.0, -1.0]).is_some());
        assert!((ActFn::Hardtanh.def().invalid)(&[-1.0, 1.0]).is_none());
        assert!((ActFn::Softplus.def().invalid)(&[0.0]).is_some());
        assert!((ActFn::Celu.def().invalid)(&[0.0]).is_some());
        assert!((ActFn::Elu.def().invalid)(&[0.0]).is_none());
    }
}
