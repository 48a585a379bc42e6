//! Turns pest's parse tree into the [`ast`](super::ast), and pest's errors into diagnostics.

use super::ast::*;
use crate::diag::{Diagnostic, SourceId, Span, codes};
use pest::Parser as _;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op as PrattOp, PrattParser};
use std::sync::LazyLock;

#[derive(pest_derive::Parser)]
#[grammar = "syntax/grammar.pest"]
struct NetParser;

/// Deepest bracket nesting accepted; deeper input is refused before parsing so it cannot exhaust the stack.
pub const MAX_NESTING: usize = 64;
/// Largest source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(PrattOp::infix(Rule::or, Assoc::Left))
        .op(PrattOp::infix(Rule::and, Assoc::Left))
        .op(PrattOp::infix(Rule::eq, Assoc::Left)
            | PrattOp::infix(Rule::ne, Assoc::Left)
            | PrattOp::infix(Rule::lt, Assoc::Left)
            | PrattOp::infix(Rule::le, Assoc::Left)
            | PrattOp::infix(Rule::gt, Assoc::Left)
            | PrattOp::infix(Rule::ge, Assoc::Left))
        .op(PrattOp::infix(Rule::add, Assoc::Left) | PrattOp::infix(Rule::sub, Assoc::Left))
        .op(PrattOp::infix(Rule::mul, Assoc::Left)
            | PrattOp::infix(Rule::div, Assoc::Left)
            | PrattOp::infix(Rule::rem, Assoc::Left))
        .op(PrattOp::prefix(Rule::neg) | PrattOp::prefix(Rule::not))
});

/// Parse one `.net` text registered as `source`.
pub fn parse(text: &str, source: SourceId) -> Result<File, Vec<Diagnostic>> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(vec![Diagnostic::error(
            codes::LIMIT,
            Span::new(source, 0, 0),
            format!("the file is {} bytes; specs are limited to {MAX_SOURCE_BYTES} bytes", text.len()),
        )]);
    }
    check_nesting(text, source)?;
    let mut pairs = NetParser::parse(Rule::file, text).map_err(|e| vec![syntax_error(e, source)])?;
    let file = pairs.next().expect("the file rule always yields one pair");
    let mut builder = Builder { source, errors: Vec::new() };
    let definitions = file.into_inner().filter(|p| p.as_rule() != Rule::EOI).map(|p| builder.definition(p)).collect();
    if builder.errors.is_empty() { Ok(File { definitions }) } else { Err(builder.errors) }
}

/// Refuse input nested deeper than [`MAX_NESTING`], skipping comments and strings.
fn check_nesting(text: &str, source: SourceId) -> Result<(), Vec<Diagnostic>> {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => i = skip_line(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'/') => i = skip_line(bytes, i),
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(vec![
                        Diagnostic::error(
                            codes::LIMIT,
                            Span::new(source, i, i + 1),
                            format!("brackets nested more than {MAX_NESTING} deep"),
                        )
                        .label("too deep"),
                    ]);
                }
            }
            b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn skip_line(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i] != b'\n' {
        i += 1;
    }
    i
}

fn syntax_error(error: pest::error::Error<Rule>, source: SourceId) -> Diagnostic {
    let (start, end) = match error.location {
        pest::error::InputLocation::Pos(p) => (p, p),
        pest::error::InputLocation::Span((s, e)) => (s, e),
    };
    let message = match &error.variant {
        pest::error::ErrorVariant::ParsingError { positives, negatives } => {
            let mut m = String::from("syntax error");
            if !positives.is_empty() {
                m = format!(
                    "expected {}",
                    join_alternatives(&positives.iter().map(|r| rule_name(*r).to_string()).collect::<Vec<_>>())
                );
            }
            if !negatives.is_empty() {
                m.push_str(&format!(
                    ", found {}",
                    join_alternatives(&negatives.iter().map(|r| rule_name(*r).to_string()).collect::<Vec<_>>())
                ));
            }
            m
        }
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    Diagnostic::error(codes::SYNTAX, Span::new(source, start, end), message).label("here")
}

fn join_alternatives(names: &[String]) -> String {
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    match names.len() {
        0 => String::new(),
        1 => names[0].to_string(),
        n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::network_def => "`network`",
        Rule::block_def => "`block`",
        Rule::params => "a parameter list",
        Rule::param => "a parameter",
        Rule::body | Rule::branch => "`{`",
        Rule::input_stmt => "`input`",
        Rule::let_stmt => "`let`",
        Rule::assert_stmt => "`assert`",
        Rule::stage_op => "`stage`",
        Rule::if_op => "`if`",
        Rule::combine_op => "a `{ ... }` group",
        Rule::combinator => "`+`, `*` or `concat`",
        Rule::merge_op => "`merge`",
        Rule::merge_arm => "a named branch `name = { ... }`",
        Rule::call => "a layer or block",
        Rule::args => "`(`",
        Rule::arg => "an argument",
        Rule::expr | Rule::func_call | Rule::var | Rule::paren => "an expression",
        Rule::neg | Rule::sub => "`-`",
        Rule::not => "`!`",
        Rule::or => "`||`",
        Rule::and => "`&&`",
        Rule::eq => "`==`",
        Rule::ne => "`!=`",
        Rule::le => "`<=`",
        Rule::ge => "`>=`",
        Rule::lt => "`<`",
        Rule::gt => "`>`",
        Rule::add => "`+`",
        Rule::mul => "`*`",
        Rule::div => "`/`",
        Rule::rem => "`%`",
        Rule::float => "a float",
        Rule::int => "an integer",
        Rule::boolean => "`true` or `false`",
        Rule::string | Rule::string_inner => "a string",
        Rule::name | Rule::keyword => "a name",
        _ => "more input",
    }
}

struct Builder {
    source: SourceId,
    errors: Vec<Diagnostic>,
}

impl Builder {
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.source, s.start(), s.end())
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Ident { name: pair.as_str().to_string(), span: self.span(&pair) }
    }

    fn definition(&mut self, pair: Pair<Rule>) -> Definition {
        let span = self.span(&pair);
        let kind = if pair.as_rule() == Rule::network_def { DefKind::Network } else { DefKind::Block };
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("definition has a name"));
        let mut params = Vec::new();
        let mut body = Vec::new();
        for p in inner {
            match p.as_rule() {
                Rule::params => {
                    for param in p.into_inner() {
                        let mut parts = param.into_inner();
                        let name = self.ident(parts.next().expect("param has a name"));
                        let default = parts.next().map(|e| self.expr(e));
                        params.push(Param { name, default });
                    }
                }
                Rule::body => body = self.statements(p),
                _ => unreachable!("grammar: definition children"),
            }
        }
        Definition { kind, name, params, body, span }
    }

    fn statements(&mut self, pair: Pair<Rule>) -> Vec<Stmt> {
        pair.into_inner().map(|p| self.statement(p)).collect()
    }

    fn statement(&mut self, pair: Pair<Rule>) -> Stmt {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::input_stmt => {
                let mut dims = Vec::new();
                for d in pair.into_inner() {
                    let s = self.span(&d);
                    dims.push((self.int_literal(&d, s) as u64, s));
                }
                Stmt::Input { dims, span }
            }
            Rule::let_stmt => {
                let mut inner = pair.into_inner();
                let name = self.ident(inner.next().expect("let has a name"));
                let value = self.expr(inner.next().expect("let has a value"));
                Stmt::Let { name, value }
            }
            Rule::assert_stmt => {
                let mut inner = pair.into_inner();
                let cond = self.expr(inner.next().expect("assert has a condition"));
                let message = inner.next().map(|s| s.into_inner().as_str().to_string());
                Stmt::Assert { cond, message, span }
            }
            _ => Stmt::Op(self.op(pair)),
        }
    }

    fn op(&mut self, pair: Pair<Rule>) -> Op {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::call => Op::Call(self.call(pair)),
            Rule::stage_op => {
                let mut inner = pair.into_inner();
                let count = self.expr(inner.next().expect("stage has a count"));
                let call = self.call(inner.next().expect("stage has a block"));
                Op::Stage { count, call, span }
            }
            Rule::if_op => {
                let mut inner = pair.into_inner();
                let cond = self.expr(inner.next().expect("if has a condition"));
                let then = self.branch(inner.next().expect("if has a branch"));
                let otherwise = inner.next().map(|p| {
                    if p.as_rule() == Rule::if_op {
                        // `else if` is sugar for `else { if ... }`.
                        let span = self.span(&p);
                        Branch { body: vec![Stmt::Op(self.op(p))], span }
                    } else {
                        self.branch(p)
                    }
                });
                Op::If { cond, then, otherwise, span }
            }
            Rule::combine_op => {
                let mut arms = Vec::new();
                let mut combinator: Option<(Combinator, Span)> = None;
                for p in pair.into_inner() {
                    match p.as_rule() {
                        Rule::branch => arms.push(self.branch(p)),
                        Rule::combinator => {
                            let c = match p.as_str() {
                                "+" => Combinator::Add,
                                "*" => Combinator::Mul,
                                _ => Combinator::Concat,
                            };
                            let s = self.span(&p);
                            match combinator {
                                Some((first, first_span)) if first != c => {
                                    self.errors.push(
                                        Diagnostic::error(
                                            codes::SYNTAX,
                                            s,
                                            format!(
                                                "`{}` mixed with `{}` in one combination",
                                                c.symbol(),
                                                first.symbol()
                                            ),
                                        )
                                        .note(first_span, "first combinator here")
                                        .help("group branches with braces: `{ {a} + {b} } concat {c}`"),
                                    );
                                }
                                Some(_) => {}
                                None => combinator = Some((c, s)),
                            }
                        }
                        _ => unreachable!("grammar: combine children"),
                    }
                }
                Op::Combine { combinator: combinator.map(|c| c.0), arms, span }
            }
            Rule::merge_op => {
                let mut arms = Vec::new();
                let mut expr = None;
                for p in pair.into_inner() {
                    match p.as_rule() {
                        Rule::merge_arm => {
                            let mut parts = p.into_inner();
                            let name = self.ident(parts.next().expect("merge arm has a name"));
                            let branch = self.branch(parts.next().expect("merge arm has a branch"));
                            arms.push((name, branch));
                        }
                        Rule::expr => expr = Some(self.expr(p)),
                        _ => unreachable!("grammar: merge children"),
                    }
                }
                Op::Merge { arms, expr: expr.expect("merge has an expression"), span }
            }
            _ => unreachable!("grammar: op kinds"),
        }
    }

    fn branch(&mut self, pair: Pair<Rule>) -> Branch {
        let span = self.span(&pair);
        Branch { body: self.statements(pair), span }
    }

    fn call(&mut self, pair: Pair<Rule>) -> Call {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("call has a name"));
        let mut args = Vec::new();
        if let Some(list) = inner.next() {
            for arg in list.into_inner() {
                let arg_span = self.span(&arg);
                let parts: Vec<Pair<Rule>> = arg.into_inner().collect();
                let (name, value) = match parts.len() {
                    2 => {
                        let mut it = parts.into_iter();
                        let n = self.ident(it.next().expect("two parts"));
                        (Some(n), it.next().expect("two parts"))
                    }
                    _ => (None, parts.into_iter().next().expect("arg has a value")),
                };
                args.push(Arg { name, value: self.expr(value), span: arg_span });
            }
        }
        Call { name, args, span }
    }

    fn int_literal(&mut self, pair: &Pair<Rule>, span: Span) -> i64 {
        match pair.as_str().parse::<i64>() {
            Ok(v) => v,
            Err(_) => {
                self.errors.push(
                    Diagnostic::error(codes::OVERFLOW, span, "integer literal too large")
                        .help(format!("integers range up to {}", i64::MAX)),
                );
                0
            }
        }
    }

    fn expr(&mut self, pair: Pair<Rule>) -> Expr {
        let source = self.source;
        let this = std::cell::RefCell::new(self);
        PRATT
            .map_primary(|p| this.borrow_mut().primary(p))
            .map_prefix(|op, rhs| {
                let span = Span::new(source, op.as_span().start(), rhs.span.end);
                let op = if op.as_rule() == Rule::neg { UnaryOp::Neg } else { UnaryOp::Not };
                Expr { kind: ExprKind::Unary(op, Box::new(rhs)), span }
            })
            .map_infix(|lhs, op, rhs| {
                let op = match op.as_rule() {
                    Rule::or => BinaryOp::Or,
                    Rule::and => BinaryOp::And,
                    Rule::eq => BinaryOp::Eq,
                    Rule::ne => BinaryOp::Ne,
                    Rule::lt => BinaryOp::Lt,
                    Rule::le => BinaryOp::Le,
                    Rule::gt => BinaryOp::Gt,
                    Rule::ge => BinaryOp::Ge,
                    Rule::add => BinaryOp::Add,
                    Rule::sub => BinaryOp::Sub,
                    Rule::mul => BinaryOp::Mul,
                    Rule::div => BinaryOp::Div,
                    Rule::rem => BinaryOp::Rem,
                    _ => unreachable!("grammar: infix operators"),
                };
                let span = lhs.span.to(rhs.span);
                Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span }
            })
            .parse(pair.into_inner())
    }

    fn primary(&mut self, pair: Pair<Rule>) -> Expr {
        let span = self.span(&pair);
        let kind = match pair.as_rule() {
            Rule::int => ExprKind::Int(self.int_literal(&pair, span)),
            Rule::float => match pair.as_str().parse::<f64>() {
                Ok(v) if v.is_finite() => ExprKind::Float(v),
                _ => {
                    self.errors.push(Diagnostic::error(codes::OVERFLOW, span, "float literal out of range"));
                    ExprKind::Float(0.0)
                }
            },
            Rule::boolean => ExprKind::Bool(pair.as_str() == "true"),
            Rule::var => ExprKind::Var(pair.as_str().to_string()),
            Rule::func_call => {
                let mut inner = pair.into_inner();
                let name = self.ident(inner.next().expect("function has a name"));
                let args = inner.map(|a| self.expr(a)).collect();
                ExprKind::Func(name, args)
            }
            Rule::paren => {
                let mut inner = pair.into_inner();
                let first = self.expr(inner.next().expect("grammar: a bracket holds an expression"));
                match inner.next() {
                    Some(second) => ExprKind::Pair(Box::new(first), Box::new(self.expr(second))),
                    // `(e)` is `e`, with its own span (as before the rules were merged).
                    None => return first,
                }
            }
            _ => unreachable!("grammar: primary kinds"),
        };
        Expr { kind, span }
    }
}
