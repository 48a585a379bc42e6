//! The abstract syntax tree of a `.net` file: what was written, with a span on every node.

use crate::diag::Span;
pub use crate::expr::{BinaryOp, Expr, ExprKind, Ident, UnaryOp};
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
