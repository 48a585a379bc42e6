//! Block and network definitions lowered for code generation: what the emitter needs of the
//! source, resolved once by the checker (`check/lower.rs`). Every call knows what it calls (a
//! primitive of the registry, a block, or an activation-valued parameter) with its arguments
//! bound to parameter names, and the field it becomes (`conv1`, `stage2`, ...); `input` and
//! `assert` statements are gone (the checker applied them); parameters carry the type and the
//! activations they took across the network's calls.

use crate::diag::Span;
use crate::expr::{Expr, Ident};
use crate::ir::{Activation, Combinator, Ty};
use crate::ops::Primitive;

/// A block definition, or the network's own.
#[derive(Clone, Debug)]
pub struct Def {
    pub name: Ident,
    /// The parameters as declared (the network's are in [`crate::ir::Network::params`] with
    /// their values; here they are listed without types).
    pub params: Vec<DefParam>,
    pub body: Vec<Stmt>,
    /// Whether the body reads `index`, its copy's position in a stage (a parameter of that name
    /// shadows it): the constructor then takes it.
    pub takes_index: bool,
    /// The built-in shape variables (`names::BUILTIN_VARS`) the body reads.
    pub reads: Vec<&'static str>,
    /// Every site name the body gives (fields, and the combinations' `add1`, `concat2`, ...),
    /// which the emitted locals must not shadow.
    pub sites: Vec<String>,
}

/// A declared parameter.
#[derive(Clone, Debug)]
pub struct DefParam {
    pub name: Ident,
    pub default: Option<Expr>,
    /// The type it takes across all calls (a float where some call passes a float).
    pub ty: Ty,
    /// The distinct activations it took across all calls (activation-typed parameters only), in
    /// first-seen order.
    pub acts: Vec<Activation>,
}

/// A statement of a lowered body.
#[derive(Clone, Debug)]
pub enum Stmt {
    Let {
        name: String,
        value: Expr,
    },
    Call(Call),
    /// `stage count × call`: the field `site` holds the copies.
    Stage {
        count: Expr,
        call: Call,
        site: String,
        span: Span,
    },
    /// `site` names the flag field when no layer decides the `if`.
    If {
        cond: Expr,
        then: Vec<Stmt>,
        otherwise: Option<Vec<Stmt>>,
        site: String,
        span: Span,
    },
    Combine {
        combinator: Option<Combinator>,
        arms: Vec<Vec<Stmt>>,
    },
    /// Named branches and their element-wise expression; `site` names the field that stores
    /// the expression's per-call scalars, when it has any.
    Merge {
        arms: Vec<(String, Vec<Stmt>)>,
        expr: Expr,
        site: String,
    },
}

/// One call: a layer, a block, or an activation-valued parameter applied as a layer.
#[derive(Clone, Debug)]
pub struct Call {
    pub target: Target,
    /// The arguments given, bound to their parameters' names (defaults are not filled in).
    pub args: Vec<(String, Expr)>,
    /// The field the call becomes.
    pub site: String,
    /// The call as written (`conv3x3(planes, stride = stride)`).
    pub text: String,
    pub span: Span,
}

/// What a call calls.
#[derive(Clone, Debug)]
pub enum Target {
    Primitive(&'static Primitive),
    Block(String),
    /// A parameter holding an activation (`act`): the layer is the activation it holds.
    Activation(String),
}
