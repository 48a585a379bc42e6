//! Expressions: evaluation with the language's integer and float rules, and the typed
//! accessors (`int`, `float`, `boolean`) the primitives' argument rules use.

use super::*;

impl Checker {
    pub(crate) fn int(&mut self, (v, span): (Value, Span), what: &str, min: i64) -> Option<u64> {
        match v {
            Value::Int(i) if i >= min && (i as u64) <= MAX_DIM => Some(i as u64),
            Value::Int(i) => {
                let range = if min == 0 { "non-negative".to_string() } else { format!("at least {min}") };
                self.error(
                    Diagnostic::error(
                        codes::VALUE_RANGE,
                        span,
                        format!("{what} must be {range} (and at most {MAX_DIM}), got {i}"),
                    )
                    .label(format!("{what} = {i}")),
                );
                None
            }
            other => {
                self.type_error(span, Ty::Int, other);
                None
            }
        }
    }

    /// A number: a float, or an integer taken as one.
    pub(crate) fn float(&mut self, (v, span): (Value, Span)) -> Option<f64> {
        match v {
            Value::Float(f) => Some(f),
            Value::Int(n) => Some(n as f64),
            other => {
                self.type_error(span, Ty::Float, other);
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, (v, span): (Value, Span)) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(b),
            other => {
                self.type_error(span, Ty::Bool, other);
                None
            }
        }
    }

    pub(crate) fn type_error(&mut self, span: Span, expected: Ty, found: Value) {
        let mut d = Diagnostic::error(
            codes::TYPE,
            span,
            format!("expected {} {expected}, found {found} ({})", article(expected), found.ty()),
        )
        .label(format!("this is {} {}", article(found.ty()), found.ty()));
        if expected == Ty::Int && found.ty() == Ty::Float {
            d = d.help("convert with floor(...), ceil(...), round(...) or int(...)");
        }
        self.error(d);
    }

    /// Evaluate an expression; `None` once an error has been reported.
    pub(super) fn eval(&mut self, e: &Expr, scope: &Scope) -> Option<Value> {
        match &e.kind {
            ExprKind::Int(v) => Some(Value::Int(*v)),
            ExprKind::Float(v) => Some(Value::Float(*v)),
            ExprKind::Bool(v) => Some(Value::Bool(*v)),
            ExprKind::Var(name) => match scope.get(name) {
                Some(v) => v,
                None => match Activation::named(name) {
                    Some(a) => Some(Value::Act(a)),
                    None => {
                        self.unknown_name(name, e.span, scope.names());
                        None
                    }
                },
            },
            ExprKind::Unary(op, inner) => {
                let v = self.eval(inner, scope)?;
                match (op, v) {
                    (UnaryOp::Neg, Value::Int(i)) => i.checked_neg().map(Value::Int).or_else(|| {
                        self.error(Diagnostic::error(codes::OVERFLOW, e.span, "integer overflow"));
                        None
                    }),
                    (UnaryOp::Neg, Value::Float(f)) => Some(Value::Float(-f)),
                    (UnaryOp::Not, Value::Bool(b)) => Some(Value::Bool(!b)),
                    (UnaryOp::Neg, other) => {
                        self.type_error(inner.span, Ty::Int, other);
                        None
                    }
                    (UnaryOp::Not, other) => {
                        self.type_error(inner.span, Ty::Bool, other);
                        None
                    }
                }
            }
            ExprKind::Binary(op, a, b) => {
                let (va, vb) = (self.eval(a, scope), self.eval(b, scope));
                let (va, vb) = (va?, vb?);
                self.binary(*op, va, vb, e, a.span, b.span)
            }
            ExprKind::Pair(a, b) => {
                let (va, vb) = (self.eval(a, scope), self.eval(b, scope));
                match (va?, vb?) {
                    (Value::Int(h), Value::Int(w)) => Some(Value::Pair(h, w)),
                    (Value::Int(_), other) => {
                        self.type_error(b.span, Ty::Int, other);
                        None
                    }
                    (other, _) => {
                        self.type_error(a.span, Ty::Int, other);
                        None
                    }
                }
            }
            ExprKind::Func(name, args) => {
                let values: Vec<Option<Value>> = args.iter().map(|a| self.eval(a, scope)).collect();
                let values: Vec<Value> = values.into_iter().collect::<Option<_>>()?;
                match Activation::named(&name.name) {
                    Some(act) => self.activation_value(act, &values, args, e.span),
                    None => self.func(name, &values, args, e.span),
                }
            }
        }
    }

    /// `leaky_relu(0.2)` as a value: the activation with its arguments.
    pub(super) fn activation_value(
        &mut self,
        mut act: Activation,
        values: &[Value],
        args: &[Expr],
        span: Span,
    ) -> Option<Value> {
        let params: Vec<&str> = act.params().collect();
        if values.len() > params.len() {
            self.error(Diagnostic::error(
                codes::TOO_MANY_ARGUMENTS,
                span,
                format!("`{}` takes {} argument(s), got {}", act.function, params.len(), values.len()),
            ));
            return None;
        }
        for ((slot, v), arg) in act.args.iter_mut().zip(values).zip(args) {
            *slot = match *v {
                Value::Int(i) => i as f64,
                Value::Float(f) => f,
                other => {
                    self.type_error(arg.span, Ty::Float, other);
                    return None;
                }
            };
        }
        Some(Value::Act(act))
    }

    pub(super) fn binary(&mut self, op: BinaryOp, a: Value, b: Value, e: &Expr, sa: Span, sb: Span) -> Option<Value> {
        use BinaryOp::*;
        let overflow = |this: &mut Self| {
            this.error(
                Diagnostic::error(codes::OVERFLOW, e.span, "integer overflow").label("overflows 64-bit integers"),
            );
            None
        };
        match op {
            Or | And => {
                let (Value::Bool(x), Value::Bool(y)) = (a, b) else {
                    let (s, v) = if matches!(a, Value::Bool(_)) { (sb, b) } else { (sa, a) };
                    self.type_error(s, Ty::Bool, v);
                    return None;
                };
                Some(Value::Bool(if op == Or { x || y } else { x && y }))
            }
            Eq | Ne
                if matches!((a, b), (Value::Bool(_), Value::Bool(_)))
                    || matches!((a, b), (Value::Act(_), Value::Act(_)))
                    || matches!((a, b), (Value::Pair(..), Value::Pair(..))) =>
            {
                let eq = a == b;
                Some(Value::Bool(if op == Eq { eq } else { !eq }))
            }
            _ => {
                let num = |v: Value| match v {
                    Value::Int(i) => Some(i as f64),
                    Value::Float(f) => Some(f),
                    Value::Bool(_) | Value::Act(_) | Value::Pair(..) => None,
                };
                let (Some(x), Some(y)) = (num(a), num(b)) else {
                    let (s, v) = if num(a).is_none() { (sa, a) } else { (sb, b) };
                    self.type_error(s, Ty::Int, v);
                    return None;
                };
                if matches!(op, Eq | Ne | Lt | Le | Gt | Ge) {
                    let r = match (a, b) {
                        (Value::Int(i), Value::Int(j)) => match op {
                            Eq => i == j,
                            Ne => i != j,
                            Lt => i < j,
                            Le => i <= j,
                            Gt => i > j,
                            _ => i >= j,
                        },
                        _ => match op {
                            Eq => x == y,
                            Ne => x != y,
                            Lt => x < y,
                            Le => x <= y,
                            Gt => x > y,
                            _ => x >= y,
                        },
                    };
                    return Some(Value::Bool(r));
                }
                if let (Value::Int(i), Value::Int(j)) = (a, b) {
                    if matches!(op, Div | Rem) && j == 0 {
                        self.error(
                            Diagnostic::error(codes::ARITHMETIC, e.span, "division by zero").label("divisor is 0"),
                        );
                        return None;
                    }
                    let r = match op {
                        Add => i.checked_add(j),
                        Sub => i.checked_sub(j),
                        Mul => i.checked_mul(j),
                        Div => i.checked_div(j),
                        _ => i.checked_rem(j),
                    };
                    return r.map(Value::Int).or_else(|| overflow(self));
                }
                let r = match op {
                    Add => x + y,
                    Sub => x - y,
                    Mul => x * y,
                    Div => x / y,
                    _ => x % y,
                };
                if !r.is_finite() {
                    self.error(Diagnostic::error(
                        codes::ARITHMETIC,
                        e.span,
                        format!("{x} {} {y} is not a finite number", op.symbol()),
                    ));
                    return None;
                }
                Some(Value::Float(r))
            }
        }
    }

    pub(super) fn func(&mut self, name: &ast::Ident, values: &[Value], args: &[Expr], span: Span) -> Option<Value> {
        if name.name == names::SHAKE {
            self.error(
                Diagnostic::error(
                    codes::MERGE,
                    span,
                    "`shake` mixes two branch outputs: it is written in a merge expression",
                )
                .help("merge { a = { ... } b = { ... } } => shake(a, b)"),
            );
            return None;
        }
        self.function_arity(name, values.len(), span)?;
        let mut nums = Vec::new();
        for (v, a) in values.iter().zip(args) {
            match v {
                Value::Bool(_) | Value::Act(_) | Value::Pair(..) => {
                    self.type_error(a.span, Ty::Float, *v);
                    return None;
                }
                Value::Int(i) => nums.push((*i as f64, true)),
                Value::Float(f) => nums.push((*f, false)),
            }
        }
        let to_int = |this: &mut Self, f: f64| {
            if f.is_finite() && f.abs() < 9.0e15 {
                Some(Value::Int(f as i64))
            } else {
                this.error(Diagnostic::error(codes::OVERFLOW, span, format!("{f} does not fit an integer")));
                None
            }
        };
        match name.name.as_str() {
            "floor" => to_int(self, nums[0].0.floor()),
            "ceil" => to_int(self, nums[0].0.ceil()),
            "round" => to_int(self, nums[0].0.round()),
            "int" => to_int(self, nums[0].0.trunc()),
            "float" => Some(Value::Float(nums[0].0)),
            "log2" if nums[0].0 > 0.0 => Some(Value::Float(nums[0].0.log2())),
            "log2" => {
                self.error(
                    Diagnostic::error(
                        codes::VALUE_RANGE,
                        args[0].span,
                        format!("log2 of {}, which is not positive", values[0]),
                    )
                    .label(format!("evaluates to {}", values[0])),
                );
                None
            }
            "abs" => match values[0] {
                Value::Int(i) => i.checked_abs().map(Value::Int),
                _ => Some(Value::Float(nums[0].0.abs())),
            },
            "min" | "max" => {
                let pick_first = if name.name == "min" { nums[0].0 <= nums[1].0 } else { nums[0].0 >= nums[1].0 };
                if nums[0].1 && nums[1].1 {
                    Some(if pick_first { values[0] } else { values[1] })
                } else {
                    Some(Value::Float(if pick_first { nums[0].0 } else { nums[1].0 }))
                }
            }
            _ => unreachable!("arity table covers every function"),
        }
    }
}
