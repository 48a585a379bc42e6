//! The abstract syntax tree of a `.net` file: what was written, with a span on every node.

use crate::diag::Span;
use std::fmt;

/// One parsed `.net` file: block definitions and at most one network.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub definitions: Vec<Definition>,
}

/// Whether a definition is the network or a reusable block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefKind {
    Network,
    Block,
}

/// `network name(params) { ... }` or `block name(params) { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub kind: DefKind,
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// A name and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A declared parameter, with its default if it has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub default: Option<Expr>,
}

/// One statement of a network, block or braced branch.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `input 3x32x32`: the network's input shape.
    Input { dims: Vec<(u64, Span)>, span: Span },
    /// `let name = expr`.
    Let { name: Ident, value: Expr },
    /// `assert cond, "message"`.
    Assert { cond: Expr, message: Option<String>, span: Span },
    /// A layer-level operation applied to the running tensor.
    Op(Op),
}

/// An operation on the running tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A primitive layer or a block, with arguments.
    Call(Call),
    /// `stage N × block(args)`: N copies, the first taking the stage's stride.
    Stage { count: Expr, call: Call, span: Span },
    /// `if cond { ... } else { ... }`, decided when the network is compiled.
    If { cond: Expr, then: Branch, otherwise: Option<Branch>, span: Span },
    /// `{ a } + { b }`: branches from the same input, combined; one branch alone is a group.
    Combine { combinator: Option<Combinator>, arms: Vec<Branch>, span: Span },
    /// `merge { a = { ... } b = { ... } } => expr`: named branches from the same input,
    /// combined element-wise by `expr` over their names and scalar constants.
    Merge { arms: Vec<(Ident, Branch)>, expr: Expr, span: Span },
}

impl Op {
    /// Where the operation was written.
    pub fn span(&self) -> Span {
        match self {
            Op::Call(call) => call.span,
            Op::Stage { span, .. } | Op::If { span, .. } | Op::Combine { span, .. } | Op::Merge { span, .. } => *span,
        }
    }
}

/// How parallel branches are merged: an operation of the IR, spelled by the syntax.
pub use crate::ir::Combinator;

/// A braced list of statements.
#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// `name` or `name(args)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub name: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

/// A positional or named argument.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}

/// An integer, float or boolean expression.
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

// The printer writes the canonical form of a file: it parses back to the same tree
// (spans aside), which the round-trip tests rely on. Expressions get the parentheses precedence needs.

impl fmt::Display for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, def) in self.definitions.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{def}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Definition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keyword = match self.kind {
            DefKind::Network => "network",
            DefKind::Block => "block",
        };
        write!(f, "{keyword} {}(", self.name.name)?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{}", p.name.name)?;
            if let Some(d) = &p.default {
                write!(f, " = {d}")?;
            }
        }
        writeln!(f, ") {{")?;
        write_body(f, &self.body, 1)?;
        writeln!(f, "}}")
    }
}

fn write_body(f: &mut fmt::Formatter<'_>, body: &[Stmt], depth: usize) -> fmt::Result {
    for stmt in body {
        write!(f, "{}", "    ".repeat(depth))?;
        write_stmt(f, stmt, depth)?;
        writeln!(f)?;
    }
    Ok(())
}

fn write_stmt(f: &mut fmt::Formatter<'_>, stmt: &Stmt, depth: usize) -> fmt::Result {
    match stmt {
        Stmt::Input { dims, .. } => {
            let dims: Vec<String> = dims.iter().map(|(d, _)| d.to_string()).collect();
            write!(f, "input {}", dims.join("x"))
        }
        Stmt::Let { name, value } => write!(f, "let {} = {value}", name.name),
        Stmt::Assert { cond, message, .. } => {
            write!(f, "assert {cond}")?;
            match message {
                Some(m) => write!(f, ", \"{m}\""),
                None => Ok(()),
            }
        }
        Stmt::Op(op) => write_op(f, op, depth),
    }
}

fn write_op(f: &mut fmt::Formatter<'_>, op: &Op, depth: usize) -> fmt::Result {
    match op {
        Op::Call(call) => write!(f, "{call}"),
        Op::Stage { count, call, .. } => write!(f, "stage {count} x {call}"),
        Op::If { cond, then, otherwise, .. } => {
            write!(f, "if {cond} ")?;
            write_branch(f, then, depth)?;
            if let Some(other) = otherwise {
                write!(f, " else ")?;
                write_branch(f, other, depth)?;
            }
            Ok(())
        }
        Op::Combine { combinator, arms, .. } => {
            for (i, arm) in arms.iter().enumerate() {
                if i > 0 {
                    let symbol = combinator.map_or("+", Combinator::symbol);
                    write!(f, " {symbol} ")?;
                }
                write_branch(f, arm, depth)?;
            }
            Ok(())
        }
        Op::Merge { arms, expr, .. } => {
            writeln!(f, "merge {{")?;
            for (name, arm) in arms {
                write!(f, "{}{} = ", "    ".repeat(depth + 1), name.name)?;
                write_branch(f, arm, depth + 1)?;
                writeln!(f)?;
            }
            write!(f, "{}}} => {expr}", "    ".repeat(depth))
        }
    }
}

fn write_branch(f: &mut fmt::Formatter<'_>, branch: &Branch, depth: usize) -> fmt::Result {
    writeln!(f, "{{")?;
    write_body(f, &branch.body, depth + 1)?;
    write!(f, "{}}}", "    ".repeat(depth))
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name.name)?;
        if !self.args.is_empty() {
            write!(f, "(")?;
            for (i, arg) in self.args.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                if let Some(name) = &arg.name {
                    write!(f, "{} = ", name.name)?;
                }
                write!(f, "{}", arg.value)?;
            }
            write!(f, ")")?;
        }
        Ok(())
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
