//! Expressions of the `.net` language: what the parser builds, the checker evaluates, and the
//! IR's lowered definitions carry to code generation (so both the syntax and the IR use them).

use crate::diag::Span;
use std::fmt;

/// A name and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// An integer, float, boolean or pair expression, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// The forms of [`Expr`].
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Var(String),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Func(Ident, Vec<Expr>),
    /// `(h, w)`: a pair of integers (a rectangular kernel, stride or padding).
    Pair(Box<Expr>, Box<Expr>),
}

/// Prefix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

/// Infix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinaryOp {
    /// The spelling in `.net` source (and in Rust).
    pub fn symbol(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Or => "||",
            And => "&&",
            Eq => "==",
            Ne => "!=",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Rem => "%",
        }
    }
}

impl Expr {
    /// How tightly the outermost operator binds (higher binds tighter).
    fn precedence(&self) -> u8 {
        match &self.kind {
            ExprKind::Binary(op, _, _) => binary_precedence(*op),
            ExprKind::Unary(..) => 7,
            _ => 8,
        }
    }
}

impl Expr {
    /// The direct sub-expressions, in source order: the one place that knows the shape of
    /// every expression kind, for the walks of the checker and the emitter.
    pub fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_) | ExprKind::Var(_) => Vec::new(),
            ExprKind::Unary(_, a) => vec![a],
            ExprKind::Binary(_, a, b) | ExprKind::Pair(a, b) => vec![a, b],
            ExprKind::Func(_, args) => args.iter().collect(),
        }
    }

    /// Whether `f` holds for this expression or any inside it (pre-order, stopping at the first).
    pub fn any(&self, f: &mut impl FnMut(&Expr) -> bool) -> bool {
        f(self) || self.children().into_iter().any(|c| c.any(f))
    }

    /// Visit this expression and every one inside it, in pre-order.
    pub fn visit<'e>(&'e self, f: &mut impl FnMut(&'e Expr)) {
        f(self);
        for c in self.children() {
            c.visit(f);
        }
    }

    /// Whether the expression reads the variable `name` anywhere.
    pub fn mentions(&self, name: &str) -> bool {
        self.any(&mut |e| matches!(&e.kind, ExprKind::Var(v) if v == name))
    }
}

fn binary_precedence(op: BinaryOp) -> u8 {
    use BinaryOp::*;
    match op {
        Or => 1,
        And => 2,
        Eq | Ne | Lt | Le | Gt | Ge => 3,
        Add | Sub => 5,
        Mul | Div | Rem => 6,
    }
}

/// Write `e`, parenthesised when it binds looser than `min`.
fn write_operand(f: &mut fmt::Formatter<'_>, e: &Expr, min: u8) -> fmt::Result {
    if e.precedence() < min { write!(f, "({e})") } else { write!(f, "{e}") }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Int(v) => write!(f, "{v}"),
            ExprKind::Float(v) => write!(f, "{v:?}"),
            ExprKind::Bool(v) => write!(f, "{v}"),
            ExprKind::Var(name) => write!(f, "{name}"),
            ExprKind::Unary(op, e) => {
                write!(f, "{}", if *op == UnaryOp::Neg { "-" } else { "!" })?;
                write_operand(f, e, 7)
            }
            ExprKind::Binary(op, a, b) => {
                let p = binary_precedence(*op);
                // Left-associative: the right operand needs parentheses at equal precedence;
                // comparisons do not chain, so both sides do.
                write_operand(f, a, if p == 3 { p + 1 } else { p })?;
                write!(f, " {} ", op.symbol())?;
                write_operand(f, b, p + 1)
            }
            ExprKind::Func(name, args) => {
                write!(f, "{}(", name.name)?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, ")")
            }
            ExprKind::Pair(a, b) => write!(f, "({a}, {b})"),
        }
    }
}
