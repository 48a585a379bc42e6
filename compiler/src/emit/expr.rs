//! Expressions: the language's integer and float arithmetic as Rust `i64`/`f64` code for the
//! constructor, and merge expressions as tensor operations for `forward`.

use super::*;

impl Emitter<'_> {
    // ----- expressions -----

    pub(super) fn expr(&mut self, e: &Expr, ctx: &DefCtx) -> Result<Typed, Vec<Diagnostic>> {
        Ok(match &e.kind {
            ExprKind::Int(v) => Typed { tokens: Literal::i64_unsuffixed(*v).into_token_stream(), ty: Ty::Int, prec: 9 },
            ExprKind::Float(v) => {
                Typed { tokens: Literal::f64_unsuffixed(*v).into_token_stream(), ty: Ty::Float, prec: 9 }
            }
            ExprKind::Bool(v) => Typed { tokens: if *v { quote!(true) } else { quote!(false) }, ty: Ty::Bool, prec: 9 },
            ExprKind::Var(name) => {
                let Some((ident, ty)) = ctx.lookup(name) else {
                    if ctx.acts.contains_key(name) || Activation::named(name).is_some() {
                        return Err(vec![Diagnostic::error(
                            codes::EMIT,
                            e.span,
                            format!(
                                "`{name}` is an activation used in an expression: the code generator supports \
                                 activation values only as parameters called as layers"
                            ),
                        )]);
                    }
                    return Err(vec![Diagnostic::error(
                        codes::EMIT,
                        e.span,
                        format!("internal error: `{name}` unbound in {}", ctx.def.name.name),
                    )]);
                };
                Typed { tokens: quote!(#ident), ty, prec: 9 }
            }
            ExprKind::Unary(op, inner) => {
                let v = self.expr(inner, ctx)?;
                let t = paren(v, 8);
                match op {
                    UnaryOp::Neg => Typed {
                        ty: if t.ty == Ty::Float { Ty::Float } else { Ty::Int },
                        tokens: {
                            let tk = t.tokens;
                            quote!(-#tk)
                        },
                        prec: 8,
                    },
                    UnaryOp::Not => Typed {
                        ty: Ty::Bool,
                        tokens: {
                            let tk = t.tokens;
                            quote!(!#tk)
                        },
                        prec: 8,
                    },
                }
            }
            ExprKind::Binary(op, a, b) => {
                let (a, b) = (self.expr(a, ctx)?, self.expr(b, ctx)?);
                let prec = match op {
                    BinaryOp::Or => 1,
                    BinaryOp::And => 2,
                    BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => 3,
                    BinaryOp::Add | BinaryOp::Sub => 5,
                    BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => 6,
                };
                let logical = matches!(op, BinaryOp::Or | BinaryOp::And) || (a.ty == Ty::Bool && b.ty == Ty::Bool);
                let numeric = !logical;
                let (a, b) = if numeric && (a.ty == Ty::Float || b.ty == Ty::Float) {
                    (cast(a, Ty::Float), cast(b, Ty::Float))
                } else {
                    (a, b)
                };
                let result_ty = match op {
                    BinaryOp::Or
                    | BinaryOp::And
                    | BinaryOp::Eq
                    | BinaryOp::Ne
                    | BinaryOp::Lt
                    | BinaryOp::Le
                    | BinaryOp::Gt
                    | BinaryOp::Ge => Ty::Bool,
                    _ => a.ty,
                };
                // Comparisons do not chain in Rust: parenthesise operands of equal precedence on both sides.
                let left = paren(a, if prec == 3 { prec + 1 } else { prec });
                let right = paren(b, prec + 1);
                let (lt, rt) = (left.tokens, right.tokens);
                let op_tokens: TokenStream = op.symbol().parse().expect("operators are Rust tokens");
                Typed { tokens: quote!(#lt #op_tokens #rt), ty: result_ty, prec }
            }
            ExprKind::Pair(h, w) => {
                let (h, w) = (self.expr(h, ctx)?.tokens, self.expr(w, ctx)?.tokens);
                Typed { tokens: quote!([#h, #w]), ty: Ty::Pair, prec: 9 }
            }
            ExprKind::Func(name, args) => {
                let mut vals = Vec::new();
                for a in args {
                    vals.push(self.expr(a, ctx)?);
                }
                let one = |v: Typed, method: &str, to_int: bool| -> Typed {
                    if v.ty == Ty::Int && method != "abs" {
                        return v;
                    }
                    let m = format_ident!("{}", method);
                    let t = paren(cast(v, Ty::Float), 9).tokens;
                    if to_int {
                        Typed { tokens: quote!(#t.#m() as i64), ty: Ty::Int, prec: 7 }
                    } else {
                        Typed { tokens: quote!(#t.#m()), ty: Ty::Float, prec: 9 }
                    }
                };
                let mut it = vals.into_iter();
                match name.name.as_str() {
                    "floor" => one(it.next().expect("arity checked"), "floor", true),
                    "ceil" => one(it.next().expect("arity checked"), "ceil", true),
                    "round" => one(it.next().expect("arity checked"), "round", true),
                    "int" => one(it.next().expect("arity checked"), "trunc", true),
                    "float" => cast(it.next().expect("arity checked"), Ty::Float),
                    "log2" => {
                        let t = paren(cast(it.next().expect("arity checked"), Ty::Float), 9).tokens;
                        Typed { tokens: quote!(#t.log2()), ty: Ty::Float, prec: 9 }
                    }
                    "abs" => {
                        let v = paren(it.next().expect("arity checked"), 9);
                        let (t, ty) = (v.tokens, v.ty);
                        Typed { tokens: quote!(#t.abs()), ty, prec: 9 }
                    }
                    f @ ("min" | "max") => {
                        let (a, b) = (it.next().expect("arity checked"), it.next().expect("arity checked"));
                        let (a, b) = if a.ty == Ty::Float || b.ty == Ty::Float {
                            (cast(a, Ty::Float), cast(b, Ty::Float))
                        } else {
                            (a, b)
                        };
                        let ty = a.ty;
                        let m = format_ident!("{}", f);
                        let (at, bt) = (paren(a, 9).tokens, b.tokens);
                        Typed { tokens: quote!(#at.#m(#bt)), ty, prec: 9 }
                    }
                    other => {
                        return Err(vec![Diagnostic::error(
                            codes::EMIT,
                            name.span,
                            format!("internal error: function `{other}`"),
                        )]);
                    }
                }
            }
        })
    }
}

/// Whether `e` names one of the branches.
pub(super) fn mentions_arm(e: &Expr, names: &[String]) -> bool {
    e.any(&mut |e| matches!(&e.kind, ExprKind::Var(v) if names.contains(v)))
}

/// Whether `e` reads a variable (a parameter or `let`), so its value is known only per call.
pub(super) fn reads_variable(e: &Expr) -> bool {
    e.any(&mut |e| matches!(e.kind, ExprKind::Var(_)))
}

/// The scalar parts of a merge expression that read variables, in source order: the
/// constructor computes them and the merge's `[f64; N]` field keeps them for `forward`.
pub(super) fn merge_scalars<'e>(e: &'e Expr, names: &[String]) -> Vec<&'e Expr> {
    fn walk<'e>(e: &'e Expr, names: &[String], out: &mut Vec<&'e Expr>) {
        if !mentions_arm(e, names) {
            if reads_variable(e) {
                out.push(e);
            }
            return;
        }
        for c in e.children() {
            walk(c, names, out);
        }
    }
    let mut out = Vec::new();
    walk(e, names, &mut out);
    out
}

/// The tensor method applying `op` with a scalar on the right.
pub(super) fn scalar_method(op: BinaryOp) -> Option<&'static str> {
    Some(match op {
        BinaryOp::Add => "add_scalar",
        BinaryOp::Sub => "sub_scalar",
        BinaryOp::Mul => "mul_scalar",
        BinaryOp::Div => "div_scalar",
        _ => return None,
    })
}

/// How often each branch is read by a merge expression.
pub(super) fn count_uses(e: &Expr, names: &[String], uses: &mut HashMap<String, usize>) {
    e.visit(&mut |e| {
        if let ExprKind::Var(v) = &e.kind
            && names.contains(v)
        {
            *uses.entry(v.clone()).or_insert(0) += 1;
        }
    });
}

/// A merge sub-expression in Rust: a tensor (with its precedence) or an `f64`.
pub(super) enum MergeTokens {
    Tensor(TokenStream, u8),
    Scalar(TokenStream),
}

/// Writes a merge expression as tensor operations, cloning a branch on all but its last read.
pub(super) struct MergeEmit<'n> {
    pub(super) names: &'n [String],
    /// Reads of each branch still to come.
    pub(super) uses: HashMap<String, usize>,
    /// The field holding the stored constants (`self.merge1`).
    pub(super) stored: TokenStream,
    pub(super) next_stored: usize,
}

impl MergeEmit<'_> {
    pub(super) fn expr(
        &mut self,
        emitter: &mut Emitter,
        e: &Expr,
        ctx: &DefCtx,
    ) -> Result<MergeTokens, Vec<Diagnostic>> {
        if !mentions_arm(e, self.names) {
            if reads_variable(e) {
                let index = Literal::usize_unsuffixed(self.next_stored);
                self.next_stored += 1;
                let stored = &self.stored;
                return Ok(MergeTokens::Scalar(quote!(#stored[#index])));
            }
            let v = paren(cast(emitter.expr(e, ctx)?, Ty::Float), 9);
            return Ok(MergeTokens::Scalar(v.tokens));
        }
        // Method receivers bind tightest; operators need parentheses below their precedence.
        fn recv(t: TokenStream, prec: u8) -> TokenStream {
            if prec >= 10 { t } else { quote!((#t)) }
        }
        fn operand(t: TokenStream, prec: u8, min: u8) -> TokenStream {
            if prec >= min { t } else { quote!((#t)) }
        }
        Ok(match &e.kind {
            ExprKind::Var(v) => {
                let left = self.uses.get_mut(v).expect("counted");
                *left -= 1;
                let b = format_ident!("branch_{}", v);
                if *left > 0 {
                    MergeTokens::Tensor(quote!(#b.clone()), 10)
                } else {
                    MergeTokens::Tensor(quote!(#b), 10)
                }
            }
            ExprKind::Unary(UnaryOp::Neg, a) => match self.expr(emitter, a, ctx)? {
                MergeTokens::Tensor(t, p) => {
                    let r = recv(t, p);
                    MergeTokens::Tensor(quote!(#r.neg()), 10)
                }
                MergeTokens::Scalar(s) => MergeTokens::Scalar(quote!((-#s))),
            },
            ExprKind::Func(f, args) if f.name == crate::names::SHAKE && args.len() == 2 => {
                match (self.expr(emitter, &args[0], ctx)?, self.expr(emitter, &args[1], ctx)?) {
                    (MergeTokens::Tensor(x, _), MergeTokens::Tensor(y, _)) => {
                        MergeTokens::Tensor(quote!(resnetc_kernels::shake(#x, #y)), 10)
                    }
                    _ => {
                        return Err(vec![Diagnostic::error(
                            codes::EMIT,
                            e.span,
                            "internal error: the checker let `shake` of a scalar through",
                        )]);
                    }
                }
            }
            ExprKind::Binary(op, a, b) => {
                let (a, b) = (self.expr(emitter, a, ctx)?, self.expr(emitter, b, ctx)?);
                let scalar_left = matches!(a, MergeTokens::Scalar(_));
                use MergeTokens::{Scalar, Tensor};
                match (op, a, b) {
                    (BinaryOp::Add, Tensor(x, px), Tensor(y, py)) => {
                        let (x, y) = (operand(x, px, 5), operand(y, py, 6));
                        Tensor(quote!(#x + #y), 5)
                    }
                    (BinaryOp::Sub, Tensor(x, px), Tensor(y, py)) => {
                        let (x, y) = (operand(x, px, 5), operand(y, py, 6));
                        Tensor(quote!(#x - #y), 5)
                    }
                    (BinaryOp::Mul, Tensor(x, px), Tensor(y, py)) => {
                        let (x, y) = (operand(x, px, 6), operand(y, py, 7));
                        Tensor(quote!(#x * #y), 6)
                    }
                    (BinaryOp::Div, Tensor(x, px), Tensor(y, py)) => {
                        let (x, y) = (operand(x, px, 6), operand(y, py, 7));
                        Tensor(quote!(#x / #y), 6)
                    }
                    // A tensor and a scalar: a `*_scalar` method on the tensor.
                    (op, Tensor(t, p), Scalar(k)) | (op, Scalar(k), Tensor(t, p)) if scalar_method(*op).is_some() => {
                        let r = recv(t, p);
                        let call = match (op, scalar_left) {
                            (BinaryOp::Sub, true) => quote!(neg().add_scalar(#k)),
                            (BinaryOp::Div, true) => quote!(recip().mul_scalar(#k)),
                            (op, _) => {
                                let m = format_ident!("{}", scalar_method(*op).expect("guarded"));
                                quote!(#m(#k))
                            }
                        };
                        Tensor(quote!(#r.#call), 10)
                    }
                    _ => {
                        return Err(vec![Diagnostic::error(
                            codes::EMIT,
                            e.span,
                            "internal error: the checker let a non-element-wise merge operation through",
                        )]);
                    }
                }
            }
            _ => {
                return Err(vec![Diagnostic::error(
                    codes::EMIT,
                    e.span,
                    "internal error: the checker let a non-element-wise merge operation through",
                )]);
            }
        })
    }
}

pub(super) fn ty_tokens(ty: Ty) -> TokenStream {
    match ty {
        Ty::Int => quote!(i64),
        Ty::Float => quote!(f64),
        Ty::Bool => quote!(bool),
        // Activation parameters are resolved before emission, never declared.
        Ty::Act => quote!(()),
        Ty::Pair => quote!([i64; 2]),
    }
}

pub(super) fn value_tokens(v: Value) -> (TokenStream, TokenStream) {
    match v {
        Value::Int(i) => (quote!(i64), Literal::i64_unsuffixed(i).into_token_stream()),
        Value::Float(f) => (quote!(f64), Literal::f64_unsuffixed(f).into_token_stream()),
        Value::Bool(b) => (quote!(bool), if b { quote!(true) } else { quote!(false) }),
        Value::Act(_) => (quote!(()), quote!(())),
        Value::Pair(h, w) => {
            let (h, w) = (Literal::i64_unsuffixed(h), Literal::i64_unsuffixed(w));
            (quote!([i64; 2]), quote!([#h, #w]))
        }
    }
}

/// Wrap in parentheses when the expression binds looser than `min`.
pub(super) fn paren(v: Typed, min: u8) -> Typed {
    if v.prec >= min {
        v
    } else {
        let t = v.tokens;
        Typed { tokens: quote!((#t)), ty: v.ty, prec: 10 }
    }
}

/// Convert to `ty` (`i64` → `f64` only; the checker rejected every other mix).
pub(crate) fn cast(v: Typed, ty: Ty) -> Typed {
    if v.ty == ty || !(v.ty == Ty::Int && ty == Ty::Float) {
        return v;
    }
    if v.prec == 9 && v.tokens.to_string().chars().all(|c| c.is_ascii_digit()) {
        let lit: TokenStream = format!("{}.0", v.tokens).parse().expect("digits then .0 is a float literal");
        return Typed { tokens: lit, ty: Ty::Float, prec: 9 };
    }
    let t = paren(v, 7).tokens;
    Typed { tokens: quote!(#t as f64), ty: Ty::Float, prec: 7 }
}

/// An integer (both axes) or a pair as a `[usize; 2]` expression (the checker proved it
/// non-negative).
pub(crate) fn to_usize_hw(v: Typed) -> TokenStream {
    let literal = |t: &TokenStream| t.to_string().chars().all(|c| c.is_ascii_digit() || " [,]".contains(c));
    match v.ty {
        Ty::Pair if literal(&v.tokens) => v.tokens,
        // A pair written in place, `[1, k]`: each element cast (`[1, k as usize]`).
        Ty::Pair if let Ok(array) = syn::parse2::<syn::ExprArray>(v.tokens.clone()) => {
            let elems = array.elems.iter().map(|e| to_usize(Typed { tokens: quote!(#e), ty: Ty::Int, prec: 9 }));
            quote!([#(#elems),*])
        }
        Ty::Pair => {
            let t = v.tokens;
            quote!(#t.map(|v| v as usize))
        }
        _ => {
            let t = to_usize(v);
            quote!([#t; 2])
        }
    }
}

/// An `i64` expression as a `usize` (the checker proved it non-negative).
pub(crate) fn to_usize(v: Typed) -> TokenStream {
    if v.prec == 9 && v.tokens.to_string().chars().all(|c| c.is_ascii_digit()) {
        return v.tokens;
    }
    let t = paren(v, 7).tokens;
    quote!(#t as usize)
}
