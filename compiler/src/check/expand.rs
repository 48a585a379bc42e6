//! The expansion pass: statements applied to a shape, block calls and stages expanded into
//! nodes, arguments bound to parameters, primitives checked through the registry (`ops`),
//! combinations and merge expressions shape-checked, parameters and MACs counted.

use super::*;

impl Checker {
    /// Check a list of statements applied to a tensor of `shape`, appending nodes; returns the output shape.
    pub(super) fn body(
        &mut self,
        stmts: &[Stmt],
        scope: &mut Scope,
        mut shape: Option<Shape>,
        prefix: &str,
        names: &HashMap<Span, String>,
        nodes: &mut Vec<Node>,
    ) -> Option<Shape> {
        let mark = scope.vars.len();
        for stmt in stmts {
            if self.aborted {
                return None;
            }
            match stmt {
                Stmt::Input { span, .. } => self.error(
                    Diagnostic::error(codes::MISPLACED, *span, "`input` may only be the first statement of a network")
                        .label("misplaced input"),
                ),
                Stmt::Let { name, value } => {
                    let v = self.eval(value, scope);
                    scope.set(&name.name, v);
                }
                Stmt::Assert { cond, message, span } => {
                    if let Some(v) = self.eval(cond, scope) {
                        match v {
                            Value::Bool(true) => {}
                            Value::Bool(false) => {
                                let values = referenced_values(cond, scope);
                                let mut d = Diagnostic::error(
                                    codes::ASSERTION,
                                    *span,
                                    message.clone().unwrap_or_else(|| format!("assertion failed: {cond}")),
                                )
                                .label("this assertion fails");
                                if !values.is_empty() {
                                    d = d.help(format!("with {values}"));
                                }
                                self.error(d);
                            }
                            other => self.type_error(cond.span, Ty::Bool, other),
                        }
                    }
                }
                Stmt::Op(op) => shape = self.op(op, scope, shape, prefix, names, nodes),
            }
        }
        scope.vars.truncate(mark);
        shape
    }

    pub(super) fn op(
        &mut self,
        op: &Op,
        scope: &mut Scope,
        shape: Option<Shape>,
        prefix: &str,
        names: &HashMap<Span, String>,
        nodes: &mut Vec<Node>,
    ) -> Option<Shape> {
        let name = format!("{prefix}{}", names.get(&op.span()).map_or("", String::as_str));
        match op {
            Op::Call(call) => {
                if is_primitive(&call.name.name) {
                    self.primitive_node(call, scope, shape, name, nodes)
                } else if let Some(value) = scope.get(&call.name.name) {
                    // A parameter or `let` called as a layer: it must hold an activation.
                    let act = match value? {
                        Value::Act(a) => a,
                        other => {
                            self.error(
                                Diagnostic::error(
                                    codes::TYPE,
                                    call.name.span,
                                    format!(
                                        "`{}` is {} {}, not an activation: only activations can be called as layers",
                                        call.name.name,
                                        article(other.ty()),
                                        other.ty()
                                    ),
                                )
                                .label(format!("`{}` = {other}", call.name.name)),
                            );
                            return None;
                        }
                    };
                    if let Some(arg) = call.args.first() {
                        self.error(
                            Diagnostic::error(
                                codes::TOO_MANY_ARGUMENTS,
                                arg.span,
                                format!("`{}` holds an activation ({act}) and takes no arguments", call.name.name),
                            )
                            .help(format!("give the arguments with the value: `{}(...)`", act.function)),
                        );
                        return None;
                    }
                    self.primitive_node(&activation_call(act, call), scope, shape, name, nodes)
                } else {
                    let def = self.lookup_block(call)?;
                    let node = self.block_call(call, &def, scope, shape, name, None)?;
                    let out = node.output;
                    nodes.push(node);
                    Some(out)
                }
            }
            Op::Stage { count, call, span } => {
                let count = match self.eval(count, scope) {
                    Some(Value::Int(n)) if (1..=MAX_STAGE_COUNT).contains(&n) => Some(n),
                    Some(Value::Int(n)) if n > MAX_STAGE_COUNT => {
                        self.error(Diagnostic::error(
                            codes::LIMIT,
                            count.span,
                            format!("a stage repeats at most {MAX_STAGE_COUNT} blocks, this one {n}"),
                        ));
                        None
                    }
                    Some(v) => {
                        let mut d = Diagnostic::error(
                            codes::STAGE_COUNT,
                            count.span,
                            format!("a stage count must be a positive integer, got {v}"),
                        )
                        .label(format!("evaluates to {v}"));
                        let values = referenced_values(count, scope);
                        if !values.is_empty() {
                            d = d.help(format!("with {values}"));
                        }
                        self.error(d);
                        None
                    }
                    None => None,
                };
                if is_primitive(&call.name.name) {
                    self.error(
                        Diagnostic::error(
                            codes::MISPLACED,
                            call.name.span,
                            format!("`stage` repeats blocks, and `{}` is a primitive layer", call.name.name),
                        )
                        .help("define a block around it, or write the layers out"),
                    );
                    return None;
                }
                let def = self.lookup_block(call)?;
                let count = count?;
                let mut blocks = Vec::new();
                let mut current = shape;
                for i in 0..count {
                    let node = self.block_call(call, &def, scope, current, format!("{name}.{i}"), Some(i));
                    match node {
                        Some(node) => {
                            current = Some(node.output);
                            blocks.push(node);
                        }
                        None => return None,
                    }
                }
                let output = current?;
                let input = shape?;
                let params = sum(&blocks, |n| n.params);
                let macs = sum(&blocks, |n| n.macs);
                let (Some(params), Some(macs)) = (params, macs) else {
                    self.overflow(*span);
                    return None;
                };
                nodes.push(Node {
                    name,
                    kind: NodeKind::Stage { block: call.name.name.clone(), blocks },
                    input,
                    output,
                    params,
                    macs,
                });
                Some(output)
            }
            Op::If { cond, then, otherwise, .. } => {
                let taken = match self.eval(cond, scope)? {
                    Value::Bool(b) => b,
                    other => {
                        self.type_error(cond.span, Ty::Bool, other);
                        return None;
                    }
                };
                if taken {
                    self.body(&then.body, scope, shape, prefix, names, nodes)
                } else if let Some(other) = otherwise {
                    self.body(&other.body, scope, shape, prefix, names, nodes)
                } else {
                    shape
                }
            }
            Op::Combine { combinator, arms, span } => {
                let mut outs = Vec::new();
                let mut arm_nodes = Vec::new();
                for arm in arms {
                    let mut arm_vec = Vec::new();
                    let out = self.body(&arm.body, scope, shape, prefix, names, &mut arm_vec);
                    outs.push((out, arm.span));
                    arm_nodes.push(arm_vec);
                }
                let outs: Vec<(Shape, Span)> =
                    outs.into_iter().map(|(o, s)| o.map(|o| (o, s))).collect::<Option<_>>()?;
                let output = self.combine(*combinator, &outs, *span)?;
                let input = shape?;
                let params = sum(arm_nodes.iter().flatten(), |n| n.params);
                let macs = sum(arm_nodes.iter().flatten(), |n| n.macs);
                let (Some(params), Some(macs)) = (params, macs) else {
                    self.overflow(*span);
                    return None;
                };
                nodes.push(Node {
                    name: if combinator.is_some() { name } else { format!("{prefix}group") },
                    kind: NodeKind::Combine { combinator: *combinator, arms: arm_nodes },
                    input,
                    output,
                    params,
                    macs,
                });
                Some(output)
            }
            Op::Merge { arms, expr, span } => {
                let mut outs = Vec::new();
                let mut arm_nodes = Vec::new();
                for (arm_name, arm) in arms {
                    if let Some((first, _)) = arms.iter().find(|(n, _)| n.name == arm_name.name)
                        && first.span != arm_name.span
                    {
                        self.error(
                            Diagnostic::error(
                                codes::MERGE,
                                arm_name.span,
                                format!("branch `{}` is named twice in this merge", arm_name.name),
                            )
                            .note(first.span, "first named here"),
                        );
                        return None;
                    }
                    let mut arm_vec = Vec::new();
                    let out = self.body(&arm.body, scope, shape, prefix, names, &mut arm_vec);
                    outs.push(out.map(|o| (o, arm.span)));
                    arm_nodes.push((arm_name.name.clone(), arm_vec));
                }
                let arm_names: Vec<&str> = arms.iter().map(|(n, _)| n.name.as_str()).collect();
                let merged = self.merge_expr(expr, &arm_names, &outs, scope);
                let outs: Vec<(Shape, Span)> = outs.into_iter().collect::<Option<_>>()?;
                let (merged, output) = merged?;
                let Some(output) = output else {
                    self.error(
                        Diagnostic::error(codes::MERGE, expr.span, "a merge expression must use at least one branch")
                            .help(format!("branches: {}", arm_names.join(", "))),
                    );
                    return None;
                };
                let mut uses = vec![0; arms.len()];
                merged.uses(&mut uses);
                if let Some(unused) = uses.iter().position(|&n| n == 0) {
                    self.error(
                        Diagnostic::error(
                            codes::MERGE,
                            arms[unused].0.span,
                            format!("branch `{}` is never used in the merge expression", arms[unused].0.name),
                        )
                        .label("computed, then dropped")
                        .note(expr.span, "the merge expression")
                        .help("use it in the expression or remove the branch"),
                    );
                    return None;
                }
                let _ = outs;
                let input = shape?;
                let params = sum(arm_nodes.iter().flat_map(|(_, a)| a), |n| n.params);
                let macs = sum(arm_nodes.iter().flat_map(|(_, a)| a), |n| n.macs);
                let (Some(params), Some(macs)) = (params, macs) else {
                    self.overflow(*span);
                    return None;
                };
                nodes.push(Node {
                    name,
                    kind: NodeKind::Merge { arms: arm_nodes, expr: merged },
                    input,
                    output,
                    params,
                    macs,
                });
                Some(output)
            }
        }
    }

    /// Check a primitive call and append its node.
    pub(super) fn primitive_node(
        &mut self,
        call: &Call,
        scope: &Scope,
        shape: Option<Shape>,
        name: String,
        nodes: &mut Vec<Node>,
    ) -> Option<Shape> {
        let (layer, out) = self.primitive(call, scope, shape.as_ref())?;
        let input = shape?;
        if !self.count_node(call.span) {
            return None;
        }
        let (params, macs) = self.counts(&layer, &out, call.span)?;
        nodes.push(Node { name, kind: NodeKind::Layer(layer), input, output: out, params, macs });
        Some(out)
    }

    /// A merge expression over the arms' outputs: constants folded, shapes checked.
    ///
    /// Returns the expression with the shape it yields (`None` for a scalar).
    pub(super) fn merge_expr(
        &mut self,
        e: &Expr,
        arms: &[&str],
        outs: &[Option<(Shape, Span)>],
        scope: &Scope,
    ) -> Option<(MergeExpr, Option<Shape>)> {
        // A part that names no branch is an ordinary scalar expression.
        if !mentions_any(e, arms) {
            return match self.eval(e, scope)? {
                Value::Int(i) => Some((MergeExpr::Const(i as f64), None)),
                Value::Float(f) => Some((MergeExpr::Const(f), None)),
                other => {
                    self.type_error(e.span, Ty::Float, other);
                    None
                }
            };
        }
        match &e.kind {
            ExprKind::Var(name) => {
                let i = arms.iter().position(|a| a == name).expect("mentions_any found it");
                let (shape, _) = outs[i]?;
                Some((MergeExpr::Arm(i), Some(shape)))
            }
            ExprKind::Unary(UnaryOp::Neg, inner) => {
                let (m, shape) = self.merge_expr(inner, arms, outs, scope)?;
                Some((MergeExpr::Neg(Box::new(m)), shape))
            }
            ExprKind::Binary(op @ (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div), a, b) => {
                let left = self.merge_expr(a, arms, outs, scope);
                let right = self.merge_expr(b, arms, outs, scope);
                let ((ma, sa), (mb, sb)) = (left?, right?);
                let shape = match (sa, sb) {
                    (Some(x), Some(y)) if x == y => Some(x),
                    (Some(x), Some(y)) if broadcasts(&x, &y) => Some(if x.numel() >= y.numel() { x } else { y }),
                    (Some(x), Some(y)) => {
                        self.error(
                            Diagnostic::error(
                                codes::RESIDUAL_SHAPE,
                                e.span,
                                format!("element-wise `{}` of unequal shapes: {x} and {y}", op.symbol()),
                            )
                            .label(format!("{x} {} {y}", op.symbol()))
                            .note(a.span, format!("this gives {x}"))
                            .note(b.span, format!("this gives {y}"))
                            .help("branches must give equal shapes, or one a C×1×1 gate with the same C"),
                        );
                        return None;
                    }
                    (x, y) => x.or(y),
                };
                if *op == BinaryOp::Div && matches!(mb, MergeExpr::Const(c) if c == 0.0) {
                    self.error(Diagnostic::error(codes::ARITHMETIC, b.span, "division by zero"));
                    return None;
                }
                let (ma, mb) = (Box::new(ma), Box::new(mb));
                let m = match op {
                    BinaryOp::Add => MergeExpr::Add(ma, mb),
                    BinaryOp::Sub => MergeExpr::Sub(ma, mb),
                    BinaryOp::Mul => MergeExpr::Mul(ma, mb),
                    _ => MergeExpr::Div(ma, mb),
                };
                Some((m, shape))
            }
            ExprKind::Func(name, args) if name.name == names::SHAKE && args.len() == 2 => {
                let left = self.merge_expr(&args[0], arms, outs, scope);
                let right = self.merge_expr(&args[1], arms, outs, scope);
                let ((ma, sa), (mb, sb)) = (left?, right?);
                match (sa, sb) {
                    (Some(x), Some(y)) if x == y => Some((MergeExpr::Shake(Box::new(ma), Box::new(mb)), Some(x))),
                    (Some(x), Some(y)) => {
                        self.error(
                            Diagnostic::error(
                                codes::RESIDUAL_SHAPE,
                                e.span,
                                format!("`shake` of unequal shapes: {x} and {y}"),
                            )
                            .note(args[0].span, format!("this gives {x}"))
                            .note(args[1].span, format!("this gives {y}"))
                            .help("Shake-Shake mixes two residual branches of the same shape"),
                        );
                        None
                    }
                    _ => {
                        self.error(
                            Diagnostic::error(codes::MERGE, e.span, "`shake` mixes two branch outputs, not scalars")
                                .help("write `shake(a, b)` with two branch names (or expressions of them)"),
                        );
                        None
                    }
                }
            }
            _ => {
                self.error(
                    Diagnostic::error(
                        codes::MERGE,
                        e.span,
                        "only `+`, `-`, `*`, `/`, negation and `shake(a, b)` apply to branch outputs",
                    )
                    .label("a tensor here")
                    .help("branch outputs combine element-wise; functions and comparisons take scalars only"),
                );
                None
            }
        }
    }

    pub(super) fn combine(
        &mut self,
        combinator: Option<Combinator>,
        outs: &[(Shape, Span)],
        span: Span,
    ) -> Option<Shape> {
        let Some(combinator) = combinator else {
            return outs.first().map(|o| o.0);
        };
        let first = &outs[0].0;
        match combinator {
            Combinator::Add | Combinator::Mul => {
                let mut result = *first;
                for (shape, arm_span) in &outs[1..] {
                    let broadcast = combinator == Combinator::Mul && broadcasts(&result, shape);
                    if *shape == result || broadcast {
                        if broadcast && shape.numel() > result.numel() {
                            result = *shape;
                        }
                        continue;
                    }
                    let (code, what) = if combinator == Combinator::Add {
                        (codes::RESIDUAL_SHAPE, "residual add")
                    } else {
                        (codes::RESIDUAL_SHAPE, "element-wise product")
                    };
                    let help = if combinator == Combinator::Add {
                        "make the shortcut match: a projection (`conv1x1(planes, stride = s) bn`) or `pad_shortcut(planes, stride = s)`, usually inside `if stride != 1 || in_channels != planes { ... }`"
                    } else {
                        "a product needs equal shapes, or a C×1×1 gate with the same C"
                    };
                    self.error(
                        Diagnostic::error(code, span, format!("{what} of unequal shapes: {result} and {shape}"))
                            .label(format!("{what} of {result} and {shape}"))
                            .note(outs[0].1, format!("this branch gives {result}"))
                            .note(*arm_span, format!("this branch gives {shape}"))
                            .help(help),
                    );
                    return None;
                }
                Some(result)
            }
            Combinator::Concat => {
                let mut channels = 0u64;
                for (shape, arm_span) in outs {
                    let (Some([c, h, w]), Some([_, h0, w0])) = (shape.as_chw(), first.as_chw()) else {
                        self.error(Diagnostic::error(
                            codes::CONCAT_SHAPE,
                            *arm_span,
                            format!("concat joins C×H×W tensors along channels, this branch gives {shape}"),
                        ));
                        return None;
                    };
                    if (h, w) != (h0, w0) {
                        self.error(
                            Diagnostic::error(
                                codes::CONCAT_SHAPE,
                                span,
                                format!("concat of unequal spatial sizes: {h0}×{w0} and {h}×{w}"),
                            )
                            .note(outs[0].1, format!("this branch gives {first}"))
                            .note(*arm_span, format!("this branch gives {shape}"))
                            .help("every branch of a concat must keep the same height and width"),
                        );
                        return None;
                    }
                    channels = channels.checked_add(c)?;
                }
                let [_, h, w] = first.as_chw()?;
                Some(Shape::chw(channels, h, w))
            }
        }
    }

    pub(super) fn lookup_block(&mut self, call: &Call) -> Option<Rc<Definition>> {
        if let Some(def) = self.defs.get(&call.name.name) {
            return Some(def.clone());
        }
        self.unknown_block(call);
        None
    }

    pub(super) fn block_call(
        &mut self,
        call: &Call,
        def: &Definition,
        scope: &Scope,
        shape: Option<Shape>,
        name: String,
        copy: Option<i64>,
    ) -> Option<Node> {
        // The copies after a stage's first take stride 1.
        let stride_override = copy.filter(|&i| i > 0).map(|_| 1);
        let block = def.name.name.clone();
        if let Some((_, _)) = self.stack.iter().find(|(b, _)| *b == block) {
            self.error(
                Diagnostic::error(codes::RECURSION, call.name.span, format!("block `{block}` calls itself"))
                    .note(def.name.span, "defined here")
                    .help("blocks cannot recurse; use `stage N × block` to repeat"),
            );
            return None;
        }
        if self.stack.len() >= MAX_CALL_DEPTH {
            self.error(Diagnostic::error(
                codes::LIMIT,
                call.span,
                format!("block calls nested more than {MAX_CALL_DEPTH} deep"),
            ));
            return None;
        }
        let params: Vec<(&str, bool)> =
            def.params.iter().map(|p| (p.name.name.as_str(), p.default.is_some())).collect();
        let bound = self.bind(call, &params, scope)?;
        let mut inner = Scope::default();
        // The copy's position in its stage; a parameter of the same name shadows it.
        inner.set(names::INDEX, Some(Value::Int(copy.unwrap_or(0))));
        let mut ok = true;
        let mut types = Vec::new();
        let mut values = Vec::new();
        for (p, arg) in def.params.iter().zip(bound) {
            let value = match arg {
                Some((v, _)) => Some(v),
                None => p.default.as_ref().and_then(|d| self.eval(d, &Scope::default())),
            };
            let value = if p.name.name == "stride" && stride_override.is_some() && value.is_some() {
                stride_override.map(Value::Int)
            } else {
                value
            };
            ok &= value.is_some();
            types.push(value.map(Value::ty));
            values.push(value);
            inner.set(&p.name.name, value);
        }
        self.record_param_types(&block, &types);
        self.record_activations(&block, &values);
        let chw = shape.as_ref().and_then(Shape::as_chw);
        if shape.is_some() && chw.is_none() {
            self.error(Diagnostic::error(
                codes::SHAPE,
                call.span,
                format!(
                    "block `{block}` needs a C×H×W input, got {}",
                    shape.as_ref().map_or(String::new(), ToString::to_string)
                ),
            ));
            return None;
        }
        for (var, dim) in names::BUILTIN_VARS.iter().zip(chw.map_or([None; 3], |d| d.map(Some))) {
            inner.set(var, dim.map(|d| Value::Int(d as i64)));
        }
        if !ok {
            return None;
        }
        self.stack.push((block.clone(), call.span));
        let names = self.names_of(def);
        let mut body = Vec::new();
        let out = self.body(&def.body, &mut inner, shape, &format!("{name}."), &names, &mut body);
        self.stack.pop();
        if !self.used_blocks.contains(&block) {
            self.used_blocks.push(block.clone());
        }
        let (out, input) = (out?, shape?);
        let (Some(params), Some(macs)) = (sum(&body, |n| n.params), sum(&body, |n| n.macs)) else {
            self.overflow(call.span);
            return None;
        };
        Some(Node { name, kind: NodeKind::Block { block, body }, input, output: out, params, macs })
    }

    pub(super) fn record_activations(&mut self, block: &str, values: &[Option<Value>]) {
        let entry = self.block_activations.entry(block.to_string()).or_insert_with(|| vec![Vec::new(); values.len()]);
        for (seen, value) in entry.iter_mut().zip(values) {
            if let Some(Value::Act(a)) = value
                && !seen.contains(a)
            {
                seen.push(*a);
            }
        }
    }

    pub(super) fn record_param_types(&mut self, block: &str, types: &[Option<Ty>]) {
        if !self.block_param_types.contains_key(block) {
            self.block_param_types.insert(block.to_string(), vec![None; types.len()]);
        }
        let entry = self.block_param_types.get_mut(block).expect("inserted above");
        for (slot, ty) in entry.iter_mut().zip(types) {
            *slot = match (*slot, *ty) {
                (None, t) | (t, None) => t,
                (Some(Ty::Float), Some(Ty::Int)) | (Some(Ty::Int), Some(Ty::Float)) => Some(Ty::Float),
                (Some(a), Some(_)) => Some(a),
            };
        }
    }

    /// Match a call's arguments to parameters, positional first, then by name; report
    /// unknown, duplicate, surplus and missing arguments.
    pub(super) fn bind_slots<'c>(
        &mut self,
        call: &'c Call,
        params: &[(&str, bool)],
    ) -> Option<Vec<Option<&'c ast::Arg>>> {
        let what = || {
            if is_primitive(&call.name.name) {
                format!("`{}`", call.name.name)
            } else {
                format!("block `{}`", call.name.name)
            }
        };
        let mut slots: Vec<Option<&ast::Arg>> = vec![None; params.len()];
        let mut ok = true;
        let mut positional = 0;
        for arg in &call.args {
            let slot = match &arg.name {
                None => {
                    if positional >= params.len() {
                        self.error(
                            Diagnostic::error(
                                codes::TOO_MANY_ARGUMENTS,
                                arg.span,
                                format!(
                                    "{} takes {} argument(s), this is argument {}",
                                    what(),
                                    params.len(),
                                    positional + 1
                                ),
                            )
                            .help(signature(&call.name.name, params)),
                        );
                        ok = false;
                        continue;
                    }
                    positional += 1;
                    positional - 1
                }
                Some(name) => match params.iter().position(|(p, _)| *p == name.name) {
                    Some(i) => i,
                    None => {
                        let mut msg = format!("{} has no parameter `{}`", what(), name.name);
                        if let Some(s) = did_you_mean(&name.name, params.iter().map(|(p, _)| *p)) {
                            msg.push_str(&format!(" (did you mean `{s}`?)"));
                        }
                        self.error(
                            Diagnostic::error(codes::UNKNOWN_ARGUMENT, name.span, msg)
                                .label("unknown argument")
                                .help(signature(&call.name.name, params)),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            if slots[slot].is_some() {
                self.error(
                    Diagnostic::error(
                        codes::DUPLICATE_ARGUMENT,
                        arg.span,
                        format!("`{}` is given twice", params[slot].0),
                    )
                    .label("given again here"),
                );
                ok = false;
                continue;
            }
            slots[slot] = Some(arg);
        }
        for (i, (p, has_default)) in params.iter().enumerate() {
            if slots[i].is_none() && !has_default {
                self.error(
                    Diagnostic::error(codes::MISSING_ARGUMENT, call.span, format!("{} needs argument `{p}`", what()))
                        .label(format!("`{p}` missing"))
                        .help(signature(&call.name.name, params)),
                );
                ok = false;
            }
        }
        ok.then_some(slots)
    }

    /// Bind a call's arguments and evaluate them in `scope`.
    pub(super) fn bind(&mut self, call: &Call, params: &[(&str, bool)], scope: &Scope) -> Option<Vec<Bound>> {
        let slots = self.bind_slots(call, params)?;
        let mut ok = true;
        let mut bound = Vec::with_capacity(slots.len());
        for slot in slots {
            bound.push(match slot {
                Some(arg) => {
                    let v = self.eval(&arg.value, scope);
                    ok &= v.is_some();
                    v.map(|v| (v, arg.value.span))
                }
                None => None,
            });
        }
        ok.then_some(bound)
    }

    pub(super) fn primitive(&mut self, call: &Call, scope: &Scope, shape: Option<&Shape>) -> Option<(Layer, Shape)> {
        let prim = ops::lookup(&call.name.name)?;
        let values = self.bind(call, &prim.signature(), scope)?;
        let chw = match shape {
            Some(s) => match s.as_chw() {
                Some(chw) => Some(chw),
                None if prim.flat => None,
                None => {
                    self.error(Diagnostic::error(codes::SHAPE, call.span, format!(
                        "`{}` needs a C×H×W input, got {s}", prim.name
                    ))
                    .help("flat vectors come after `global_avg_pool`/`linear`; only `linear`, `dropout` and activations apply there"));
                    return None;
                }
            },
            None => None,
        };
        let args = ops::Args { call, prim, values };
        ops::check(self, &args, ops::Input { shape: shape.copied(), chw })
    }

    /// Output height and width of a sliding window, or an error if nothing is left.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spatial(
        &mut self,
        call: &Call,
        h: u64,
        w: u64,
        kernel: u64,
        stride: u64,
        padding: u64,
        what: &str,
    ) -> Option<(u64, u64)> {
        self.spatial_hw(call, h, w, Hw::square(kernel), Hw::square(stride), Hw::square(padding), what)
    }

    /// The output size of a sliding window with per-axis kernel (its dilated extent), stride
    /// and padding, or an error when it leaves no pixels.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spatial_hw(
        &mut self,
        call: &Call,
        h: u64,
        w: u64,
        kernel: Hw,
        stride: Hw,
        padding: Hw,
        what: &str,
    ) -> Option<(u64, u64)> {
        let out =
            |n: u64, axis: usize| (n + 2 * padding.0[axis]).checked_sub(kernel.0[axis]).map(|r| r / stride.0[axis] + 1);
        match (out(h, 0), out(w, 1)) {
            (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Some((oh, ow)),
            _ => {
                self.error(
                    Diagnostic::error(
                        codes::EMPTY_OUTPUT,
                        call.span,
                        format!("{what} with kernel {kernel}, padding {padding} leaves no pixels of a {h}×{w} input"),
                    )
                    .label(format!("input here is {h}×{w}"))
                    .help(
                        "the network has downsampled too far: remove a stride-2 stage or pool, or use a larger input",
                    ),
                );
                None
            }
        }
    }

    pub(super) fn counts(&mut self, layer: &Layer, out: &Shape, span: Span) -> Option<(u64, u64)> {
        let r = ops::counts(layer, out);
        if r.is_none() {
            self.overflow(span);
        }
        r
    }

    pub(super) fn overflow(&mut self, span: Span) {
        self.error(Diagnostic::error(codes::OVERFLOW, span, "parameter or MAC count overflows 64 bits"));
    }
}
