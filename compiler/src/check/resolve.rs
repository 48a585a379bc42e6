//! The static pass, run once before expansion: every name, block and argument of the network
//! and of the blocks it reaches, in every branch whether a call takes it or not.

use super::*;

impl Checker {
    // ----- static resolution: names, blocks and arguments in every branch, taken or not -----

    /// Check every name in the network and the blocks it reaches, including `if` branches no
    /// call takes; return the reachable blocks.
    pub(super) fn resolve(&mut self, network: &Definition) -> Vec<String> {
        let mut reachable = Vec::new();
        let mut work: Vec<Rc<Definition>> = Vec::new();
        self.resolve_def(network, &mut reachable, &mut work);
        while let Some(def) = work.pop() {
            self.resolve_def(&def, &mut reachable, &mut work);
        }
        reachable
    }

    pub(super) fn resolve_def(
        &mut self,
        def: &Definition,
        reachable: &mut Vec<String>,
        work: &mut Vec<Rc<Definition>>,
    ) {
        let mut scope: Vec<String> = def.params.iter().map(|p| p.name.name.clone()).collect();
        if def.kind == DefKind::Block {
            scope.extend(names::BUILTIN_VARS.iter().map(|v| v.to_string()));
            scope.push(names::INDEX.to_string());
        }
        self.resolve_body(&def.body, &mut scope, reachable, work);
    }

    pub(super) fn resolve_body(
        &mut self,
        body: &[Stmt],
        scope: &mut Vec<String>,
        reachable: &mut Vec<String>,
        work: &mut Vec<Rc<Definition>>,
    ) {
        let mark = scope.len();
        for stmt in body {
            match stmt {
                Stmt::Input { .. } => {}
                Stmt::Let { name, value } => {
                    self.resolve_expr(value, scope);
                    scope.push(name.name.clone());
                }
                Stmt::Assert { cond, .. } => self.resolve_expr(cond, scope),
                Stmt::Op(Op::Call(call)) => self.resolve_call(call, scope, reachable, work),
                Stmt::Op(Op::Stage { count, call, .. }) => {
                    self.resolve_expr(count, scope);
                    self.resolve_call(call, scope, reachable, work);
                }
                Stmt::Op(Op::If { cond, then, otherwise, .. }) => {
                    self.resolve_expr(cond, scope);
                    self.resolve_body(&then.body, scope, reachable, work);
                    if let Some(o) = otherwise {
                        self.resolve_body(&o.body, scope, reachable, work);
                    }
                }
                Stmt::Op(Op::Combine { arms, .. }) => {
                    for arm in arms {
                        self.resolve_body(&arm.body, scope, reachable, work);
                    }
                }
                Stmt::Op(Op::Merge { arms, expr, .. }) => {
                    for (_, arm) in arms {
                        self.resolve_body(&arm.body, scope, reachable, work);
                    }
                    let mark = scope.len();
                    scope.extend(arms.iter().map(|(n, _)| n.name.clone()));
                    self.resolve_expr(expr, scope);
                    scope.truncate(mark);
                }
            }
        }
        scope.truncate(mark);
    }

    pub(super) fn resolve_call(
        &mut self,
        call: &Call,
        scope: &[String],
        reachable: &mut Vec<String>,
        work: &mut Vec<Rc<Definition>>,
    ) {
        for arg in &call.args {
            self.resolve_expr(&arg.value, scope);
        }
        if is_primitive(&call.name.name) {
            if let Some(prim) = ops::lookup(&call.name.name) {
                self.bind_slots(call, &prim.signature());
            }
            return;
        }
        if scope.contains(&call.name.name) {
            // A name in scope called as a layer: its value must be an activation, known when expanded.
            return;
        }
        let Some(def) = self.defs.get(&call.name.name).cloned() else {
            self.unknown_block(call);
            return;
        };
        let params: Vec<(&str, bool)> =
            def.params.iter().map(|p| (p.name.name.as_str(), p.default.is_some())).collect();
        self.bind_slots(call, &params);
        if !reachable.contains(&def.name.name) {
            reachable.push(def.name.name.clone());
            work.push(def.clone());
        }
    }

    pub(super) fn resolve_expr(&mut self, e: &Expr, scope: &[String]) {
        e.visit(&mut |e| match &e.kind {
            ExprKind::Var(name) if !scope.iter().any(|s| s == name) && Activation::named(name).is_none() => {
                self.unknown_name(name, e.span, scope.iter().map(String::as_str));
            }
            ExprKind::Func(name, args) if Activation::named(&name.name).is_none() && name.name != names::SHAKE => {
                self.function_arity(name, args.len(), e.span);
            }
            _ => {}
        });
    }

    pub(super) fn unknown_name<'n>(&mut self, name: &str, span: Span, in_scope: impl Iterator<Item = &'n str> + Clone) {
        let mut msg = format!("unknown name `{name}`");
        if let Some(s) =
            did_you_mean(name, in_scope.clone().chain(names::BUILTIN_VARS.iter().copied()).chain([names::INDEX]))
        {
            msg.push_str(&format!(" (did you mean `{s}`?)"));
        }
        let mut listed: Vec<&str> = in_scope.collect();
        listed.sort_unstable();
        listed.dedup();
        let help = if listed.is_empty() {
            "nothing is in scope here; parameter defaults must be constants".to_string()
        } else {
            format!("in scope: {}", listed.join(", "))
        };
        self.error(Diagnostic::error(codes::UNKNOWN_NAME, span, msg).label("not defined").help(help));
    }

    pub(super) fn unknown_block(&mut self, call: &Call) {
        let mut candidates: Vec<&str> =
            self.defs.keys().map(String::as_str).chain(ops::all().map(|p| p.name)).collect();
        candidates.sort_unstable();
        let mut msg = format!("unknown layer or block `{}`", call.name.name);
        if let Some(s) = did_you_mean(&call.name.name, candidates) {
            msg.push_str(&format!(" (did you mean `{s}`?)"));
        }
        self.error(
            Diagnostic::error(codes::UNKNOWN_BLOCK, call.name.span, msg)
                .label("not a primitive or a defined block")
                .help("define it with `block name(params) { ... }` or check the spelling"),
        );
    }

    /// The arity of a known function called with `argc` arguments; reports an unknown name or a wrong count.
    pub(super) fn function_arity(&mut self, name: &ast::Ident, argc: usize, span: Span) -> Option<usize> {
        let Some(arity) = names::function_arity(&name.name) else {
            let mut msg = format!("unknown function `{}`", name.name);
            if let Some(s) = did_you_mean(&name.name, names::FUNCTIONS.iter().copied()) {
                msg.push_str(&format!(" (did you mean `{s}`?)"));
            }
            self.error(
                Diagnostic::error(codes::UNKNOWN_NAME, name.span, msg)
                    .help(format!("functions: {}", names::FUNCTIONS.join(", "))),
            );
            return None;
        };
        if argc != arity {
            self.error(Diagnostic::error(
                codes::TOO_MANY_ARGUMENTS,
                span,
                format!("`{}` takes {arity} argument(s), got {argc}", name.name),
            ));
            return None;
        }
        Some(arity)
    }
}
