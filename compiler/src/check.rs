//! Stage 2, check: [`ast::File`]s → [`ir::Network`].
//!
//! Expands block calls and stages, evaluates expressions, applies overrides,
//! infers the shape after every layer and counts parameters and MACs. It keeps
//! going after an error so that one run reports every problem it can; each is
//! reported once even when the faulty block is expanded many times.

use crate::diag::{Diagnostic, Span, codes};
use crate::ir::{Activation, Hw, Layer, MergeExpr, Network, Node, NodeKind, Shape, Ty, Value};
use crate::names::{self, did_you_mean, is_primitive, site_names};
use crate::ops;
use crate::syntax::ast::{self, BinaryOp, Call, Combinator, DefKind, Definition, Expr, ExprKind, Op, Stmt, UnaryOp};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

/// Deepest chain of block calls inside block calls.
pub const MAX_CALL_DEPTH: usize = 32;
/// Most copies one `stage` may make.
pub const MAX_STAGE_COUNT: i64 = 10_000;
/// Most nodes one network may expand to.
pub const MAX_NODES: usize = 250_000;
/// Largest tensor dimension accepted.
pub const MAX_DIM: u64 = 1 << 31;

/// A network parameter set from outside the spec (`--set k=8`, a macro argument).
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub name: String,
    pub value: Value,
    /// Where the override was written, when it was written in a text the diagnostics know.
    pub span: Option<Span>,
}

impl Override {
    /// Parse `NAME=VALUE` as given on a command line.
    pub fn parse(text: &str) -> Result<Override, String> {
        let (name, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not NAME=VALUE"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{name}` is not a parameter name"));
        }
        let value = parse_value(value.trim())
            .ok_or_else(|| format!("`{}` is not a number, boolean, pair or activation (in `{text}`)", value.trim()))?;
        Ok(Override { name: name.to_string(), value, span: None })
    }
}

/// Parse a literal value: an integer, a float, a boolean, a pair of integers (`(1, 7)`), or an
/// activation (`mish`, `leaky_relu(0.2)`).
pub fn parse_value(text: &str) -> Option<Value> {
    if let Some((h, w)) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')).and_then(|t| t.split_once(',')) {
        return Some(Value::Pair(h.trim().parse().ok()?, w.trim().parse().ok()?));
    }
    match text {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => text
            .parse::<i64>()
            .map(Value::Int)
            .ok()
            .or_else(|| text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::Float))
            .or_else(|| parse_activation(text).map(Value::Act)),
    }
}

/// `mish` or `leaky_relu(0.2)`: an activation with its arguments (numbers only).
fn parse_activation(text: &str) -> Option<Activation> {
    let (name, args) = match text.split_once('(') {
        Some((name, rest)) => (name.trim(), Some(rest.strip_suffix(')')?)),
        None => (text, None),
    };
    let mut act = Activation::named(name)?;
    let params: Vec<&str> = act.params().collect();
    if let Some(args) = args.filter(|a| !a.trim().is_empty()) {
        let values: Vec<&str> = args.split(',').collect();
        if values.len() > params.len() {
            return None;
        }
        for (slot, v) in act.args.iter_mut().zip(values) {
            *slot = v.trim().parse::<f64>().ok().filter(|f| f.is_finite())?;
        }
    }
    Some(act)
}

/// Check the network of `user`, with the blocks of `prelude` and `user` in scope.
pub fn check(
    prelude: &ast::File,
    user: &ast::File,
    source_name: &str,
    overrides: &[Override],
) -> Result<Network, Vec<Diagnostic>> {
    let mut checker = Checker::default();
    let mut user_defs: HashMap<&str, &Definition> = HashMap::new();
    let mut network: Option<&Definition> = None;
    for def in &prelude.definitions {
        if def.kind == DefKind::Block {
            checker.defs.insert(def.name.name.clone(), Rc::new(def.clone()));
        }
    }
    for def in &user.definitions {
        if let Some(first) = user_defs.get(def.name.name.as_str()) {
            checker.error(
                Diagnostic::error(
                    codes::DUPLICATE_DEFINITION,
                    def.name.span,
                    format!("`{}` is defined twice", def.name.name),
                )
                .label("second definition")
                .note(first.name.span, "first defined here"),
            );
            continue;
        }
        user_defs.insert(&def.name.name, def);
        match def.kind {
            DefKind::Network => {
                if let Some(first) = network {
                    checker.error(
                        Diagnostic::error(codes::DUPLICATE_DEFINITION, def.name.span, "a file declares one network")
                            .label("second network")
                            .note(first.name.span, "first network here"),
                    );
                } else {
                    network = Some(def);
                }
            }
            DefKind::Block => {
                if is_primitive(&def.name.name) {
                    checker.error(
                        Diagnostic::error(
                            codes::SHADOWS_PRIMITIVE,
                            def.name.span,
                            format!("block `{}` has the name of a primitive layer", def.name.name),
                        )
                        .help("choose another name"),
                    );
                    continue;
                }
                // A user block may replace a prelude block of the same name.
                checker.defs.insert(def.name.name.clone(), Rc::new(def.clone()));
            }
        }
    }
    let Some(network) = network else {
        let span = user.definitions.first().map_or(Span::default(), |d| d.name.span);
        let mut d = Diagnostic::global(codes::NO_NETWORK, "no `network` definition in this file")
            .help("declare one: `network name(classes = 10) { input 3x32x32 ... }`");
        if !user.definitions.is_empty() {
            d.span = Some(span);
        }
        checker.error(d);
        return Err(checker.diags);
    };
    let result = checker.network(network, source_name, overrides);
    // Report in reading order, whichever pass found each problem.
    checker.diags.sort_by_key(|d| d.span.map_or((u32::MAX, usize::MAX), |s| (s.source.0, s.start)));
    match result {
        Some(net) if checker.diags.is_empty() => Ok(net),
        _ => {
            if checker.diags.is_empty() {
                checker.diags.push(Diagnostic::error(
                    codes::SHAPE,
                    network.name.span,
                    "the network could not be checked",
                ));
            }
            Err(checker.diags)
        }
    }
}

/// Names in scope while evaluating a body; `None` marks a name whose value failed to evaluate.
#[derive(Default, Clone)]
struct Scope {
    vars: Vec<(String, Option<Value>)>,
}

impl Scope {
    fn get(&self, name: &str) -> Option<Option<Value>> {
        self.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
    fn set(&mut self, name: &str, value: Option<Value>) {
        self.vars.push((name.to_string(), value));
    }
    fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.vars.iter().map(|(n, _)| n.as_str())
    }
}

/// The checker's state while it checks one network (the primitives' rules in `ops` report
/// through it).
#[derive(Default)]
pub(crate) struct Checker {
    defs: HashMap<String, Rc<Definition>>,
    /// Site names per definition, keyed by the definition's address (stable while checking).
    site_names: HashMap<usize, Rc<HashMap<Span, String>>>,
    diags: Vec<Diagnostic>,
    seen: HashSet<(&'static str, Option<Span>, String)>,
    /// Block calls being expanded: (block, call site).
    stack: Vec<(String, Span)>,
    nodes: usize,
    aborted: bool,
    block_param_types: BTreeMap<String, Vec<Option<Ty>>>,
    /// Distinct activations each block parameter took (empty for other types).
    block_activations: BTreeMap<String, Vec<Vec<Activation>>>,
    used_blocks: Vec<String>,
}

/// A bound argument: its value and where it was written.
type Bound = Option<(Value, Span)>;

impl Checker {
    /// Record a diagnostic once, pointing back at the network-level call being expanded.
    pub(crate) fn error(&mut self, mut d: Diagnostic) {
        if !self.seen.insert((d.code, d.span, d.message.clone())) {
            return;
        }
        if let Some((block, site)) = self.stack.first()
            && d.span.is_some_and(|s| s.source != site.source || !(site.start..site.end).contains(&s.start))
        {
            d = d.note(*site, format!("while expanding `{block}` called here"));
        }
        self.diags.push(d);
    }

    fn network(&mut self, def: &Definition, source_name: &str, overrides: &[Override]) -> Option<Network> {
        // Parameters: defaults are constants; overrides replace them.
        let mut scope = Scope::default();
        let mut params = Vec::new();
        let mut param_ok = true;
        for p in &def.params {
            let over = overrides.iter().find(|o| o.name == p.name.name);
            let value = match (over, &p.default) {
                (Some(o), default) => {
                    let default_ty = default.as_ref().and_then(|d| self.eval(d, &Scope::default())).map(Value::ty);
                    match (default_ty, o.value) {
                        (Some(Ty::Float), Value::Int(i)) => Some(Value::Float(i as f64)),
                        (Some(ty), v) if ty != v.ty() => {
                            self.override_error(
                                o,
                                format!(
                                    "parameter `{}` takes {} {ty}, but the override gives {} ({})",
                                    p.name.name,
                                    article(ty),
                                    v,
                                    v.ty()
                                ),
                                Some(p.name.span),
                            );
                            None
                        }
                        (_, v) => Some(v),
                    }
                }
                (None, Some(default)) => self.eval(default, &Scope::default()),
                (None, None) => {
                    self.error(
                        Diagnostic::error(
                            codes::MISSING_ARGUMENT,
                            p.name.span,
                            format!("network parameter `{}` has no default and no override", p.name.name),
                        )
                        .help(format!(
                            "give it a default (`{} = ...`) or set it (`--set {}=...`)",
                            p.name.name, p.name.name
                        )),
                    );
                    None
                }
            };
            param_ok &= value.is_some();
            if let Some(v) = value {
                params.push((p.name.name.clone(), v));
            }
            scope.set(&p.name.name, value);
        }
        for o in overrides {
            if !def.params.iter().any(|p| p.name.name == o.name) {
                let known: Vec<&str> = def.params.iter().map(|p| p.name.name.as_str()).collect();
                let mut msg = format!("network `{}` has no parameter `{}`", def.name.name, o.name);
                if let Some(s) = did_you_mean(&o.name, known.iter().copied()) {
                    msg.push_str(&format!(" (did you mean `{s}`?)"));
                }
                let help = if known.is_empty() {
                    "it takes no parameters".to_string()
                } else {
                    format!("its parameters: {}", known.join(", "))
                };
                self.override_error(o, msg, None);
                if let Some(d) = self.diags.last_mut() {
                    d.help = Some(help);
                }
            }
        }

        let reachable = self.resolve(def);

        // The first statement fixes the input shape.
        let names = self.names_of(def);
        let (input, rest) = match def.body.first() {
            Some(Stmt::Input { dims, span }) => (self.input_shape(dims, *span), &def.body[1..]),
            other => {
                let span = other.map_or(def.name.span, stmt_span);
                self.error(
                    Diagnostic::error(codes::MISPLACED, span, "a network must start with its input shape")
                        .help("begin the body with e.g. `input 3x32x32`"),
                );
                (None, &def.body[..])
            }
        };
        let mut nodes = Vec::new();
        let output = self.body(rest, &mut scope, input, "", &names, &mut nodes);
        let output = output?;
        if output.rank() != 1 {
            let end = def.body.last().map_or(def.span, stmt_span);
            self.error(
                Diagnostic::error(
                    codes::OUTPUT_RANK,
                    end,
                    format!("the network must end in a flat vector of class scores, but it ends with shape {output}"),
                )
                .help("end with e.g. `global_avg_pool linear(classes)`"),
            );
            return None;
        }
        if !param_ok || !self.diags.is_empty() {
            return None;
        }
        let trainable_params = sum(&nodes, |n| n.params)?;
        let macs = sum(&nodes, |n| n.macs)?;
        // Blocks only named in branches no call takes still get structs (their fields are
        // `None`); their parameter types come from their defaults.
        for block in reachable {
            if !self.used_blocks.contains(&block) {
                let def = self.defs[&block].clone();
                let values: Vec<Option<Value>> = def
                    .params
                    .iter()
                    .map(|p| p.default.as_ref().and_then(|d| self.eval(d, &Scope::default())))
                    .collect();
                let types: Vec<Option<Ty>> = values.iter().map(|v| v.map(Value::ty)).collect();
                self.record_param_types(&block, &types);
                self.record_activations(&block, &values);
                self.used_blocks.push(block);
            }
        }
        let block_param_types = self
            .block_param_types
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|t| t.unwrap_or(Ty::Int)).collect()))
            .collect();
        let blocks = self.used_blocks.iter().map(|b| (*self.defs[b]).clone()).collect();
        Some(Network {
            name: def.name.name.clone(),
            type_name: names::camel_case(&def.name.name),
            source_name: source_name.to_string(),
            params,
            input: input?,
            output,
            trainable_params,
            macs,
            body: nodes,
            block_param_types,
            block_activations: std::mem::take(&mut self.block_activations),
            definition: def.clone(),
            blocks,
        })
    }

    fn override_error(&mut self, o: &Override, message: String, param_span: Option<Span>) {
        let mut d = match o.span {
            Some(span) => Diagnostic::error(codes::BAD_OVERRIDE, span, message),
            None => Diagnostic::global(codes::BAD_OVERRIDE, message),
        };
        if let Some(p) = param_span {
            if o.span.is_some() {
                d = d.note(p, "declared here");
            } else {
                d.span = Some(p);
                d.label = Some("declared here".into());
            }
        }
        self.error(d);
    }

    fn input_shape(&mut self, dims: &[(u64, Span)], span: Span) -> Option<Shape> {
        if dims.len() != 3 {
            self.error(
                Diagnostic::error(
                    codes::SHAPE,
                    span,
                    format!("the input must be C×H×W, got {} dimension(s)", dims.len()),
                )
                .help("write e.g. `input 3x32x32`"),
            );
            return None;
        }
        for (d, s) in dims {
            if *d == 0 || *d > MAX_DIM {
                self.error(Diagnostic::error(
                    codes::VALUE_RANGE,
                    *s,
                    format!("input dimension {d} is out of range 1..={MAX_DIM}"),
                ));
                return None;
            }
        }
        Some(Shape::chw(dims[0].0, dims[1].0, dims[2].0))
    }

    fn names_of(&mut self, def: &Definition) -> Rc<HashMap<Span, String>> {
        let key = def as *const Definition as usize;
        self.site_names.entry(key).or_insert_with(|| Rc::new(site_names(def))).clone()
    }

    fn count_node(&mut self, span: Span) -> bool {
        self.nodes += 1;
        if self.nodes > MAX_NODES && !self.aborted {
            self.aborted = true;
            self.error(Diagnostic::error(
                codes::LIMIT,
                span,
                format!("the network expands to more than {MAX_NODES} layers"),
            ));
        }
        !self.aborted
    }

    /// Check a list of statements applied to a tensor of `shape`, appending nodes; returns the output shape.
    fn body(
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

    fn op(
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
    fn primitive_node(
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
    fn merge_expr(
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

    fn combine(&mut self, combinator: Option<Combinator>, outs: &[(Shape, Span)], span: Span) -> Option<Shape> {
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

    fn lookup_block(&mut self, call: &Call) -> Option<Rc<Definition>> {
        if let Some(def) = self.defs.get(&call.name.name) {
            return Some(def.clone());
        }
        self.unknown_block(call);
        None
    }

    fn block_call(
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

    fn record_activations(&mut self, block: &str, values: &[Option<Value>]) {
        let entry = self.block_activations.entry(block.to_string()).or_insert_with(|| vec![Vec::new(); values.len()]);
        for (seen, value) in entry.iter_mut().zip(values) {
            if let Some(Value::Act(a)) = value
                && !seen.contains(a)
            {
                seen.push(*a);
            }
        }
    }

    fn record_param_types(&mut self, block: &str, types: &[Option<Ty>]) {
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
    fn bind_slots<'c>(&mut self, call: &'c Call, params: &[(&str, bool)]) -> Option<Vec<Option<&'c ast::Arg>>> {
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
    fn bind(&mut self, call: &Call, params: &[(&str, bool)], scope: &Scope) -> Option<Vec<Bound>> {
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

    // ----- static resolution: names, blocks and arguments in every branch, taken or not -----

    /// Check every name in the network and the blocks it reaches, including `if` branches no
    /// call takes; return the reachable blocks.
    fn resolve(&mut self, network: &Definition) -> Vec<String> {
        let mut reachable = Vec::new();
        let mut work: Vec<Rc<Definition>> = Vec::new();
        self.resolve_def(network, &mut reachable, &mut work);
        while let Some(def) = work.pop() {
            self.resolve_def(&def, &mut reachable, &mut work);
        }
        reachable
    }

    fn resolve_def(&mut self, def: &Definition, reachable: &mut Vec<String>, work: &mut Vec<Rc<Definition>>) {
        let mut scope: Vec<String> = def.params.iter().map(|p| p.name.name.clone()).collect();
        if def.kind == DefKind::Block {
            scope.extend(names::BUILTIN_VARS.iter().map(|v| v.to_string()));
            scope.push(names::INDEX.to_string());
        }
        self.resolve_body(&def.body, &mut scope, reachable, work);
    }

    fn resolve_body(
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

    fn resolve_call(
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

    fn resolve_expr(&mut self, e: &Expr, scope: &[String]) {
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

    fn unknown_name<'n>(&mut self, name: &str, span: Span, in_scope: impl Iterator<Item = &'n str> + Clone) {
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

    fn unknown_block(&mut self, call: &Call) {
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
    fn function_arity(&mut self, name: &ast::Ident, argc: usize, span: Span) -> Option<usize> {
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

    fn primitive(&mut self, call: &Call, scope: &Scope, shape: Option<&Shape>) -> Option<(Layer, Shape)> {
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

    fn counts(&mut self, layer: &Layer, out: &Shape, span: Span) -> Option<(u64, u64)> {
        let r = ops::counts(layer, out);
        if r.is_none() {
            self.overflow(span);
        }
        r
    }

    fn overflow(&mut self, span: Span) {
        self.error(Diagnostic::error(codes::OVERFLOW, span, "parameter or MAC count overflows 64 bits"));
    }

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
    fn eval(&mut self, e: &Expr, scope: &Scope) -> Option<Value> {
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
    fn activation_value(&mut self, mut act: Activation, values: &[Value], args: &[Expr], span: Span) -> Option<Value> {
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

    fn binary(&mut self, op: BinaryOp, a: Value, b: Value, e: &Expr, sa: Span, sb: Span) -> Option<Value> {
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

    fn func(&mut self, name: &ast::Ident, values: &[Value], args: &[Expr], span: Span) -> Option<Value> {
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

/// Whether `a` and `b` multiply by broadcasting a `C×1×1` gate over `C×H×W`.
/// The primitive call an activation-valued name stands for, at the name's call site.
fn activation_call(act: Activation, call: &Call) -> Call {
    let args = act
        .args()
        .iter()
        .map(|v| ast::Arg { name: None, value: Expr { kind: ExprKind::Float(*v), span: call.span }, span: call.span })
        .collect();
    Call { name: ast::Ident { name: act.function.to_string(), span: call.name.span }, args, span: call.span }
}

/// Whether `e` mentions any of `names` as a variable.
fn mentions_any(e: &Expr, names: &[&str]) -> bool {
    e.any(&mut |e| matches!(&e.kind, ExprKind::Var(v) if names.contains(&v.as_str())))
}

fn broadcasts(a: &Shape, b: &Shape) -> bool {
    match (a.as_chw(), b.as_chw()) {
        (Some([c1, h1, w1]), Some([c2, h2, w2])) => c1 == c2 && ((h1, w1) == (1, 1) || (h2, w2) == (1, 1)),
        _ => false,
    }
}

fn sum<'a>(nodes: impl IntoIterator<Item = &'a Node>, f: impl Fn(&Node) -> u64) -> Option<u64> {
    nodes.into_iter().try_fold(0u64, |acc, n| acc.checked_add(f(n)))
}

fn article(ty: Ty) -> &'static str {
    match ty {
        Ty::Int | Ty::Act => "an",
        _ => "a",
    }
}

fn signature(name: &str, params: &[(&str, bool)]) -> String {
    let ps: Vec<String> = params.iter().map(|(p, d)| if *d { format!("{p} = ...") } else { p.to_string() }).collect();
    format!("signature: {name}({})", ps.join(", "))
}

fn stmt_span(stmt: &Stmt) -> Span {
    match stmt {
        Stmt::Input { span, .. } | Stmt::Assert { span, .. } => *span,
        Stmt::Let { name, value } => name.span.to(value.span),
        Stmt::Op(op) => op.span(),
    }
}

/// `depth = 21, k = 4`: the values of the variables an expression mentions.
fn referenced_values(e: &Expr, scope: &Scope) -> String {
    let mut vars: Vec<String> = Vec::new();
    e.visit(&mut |e| {
        if let ExprKind::Var(n) = &e.kind
            && !vars.contains(n)
        {
            vars.push(n.clone());
        }
    });
    vars.iter().filter_map(|v| scope.get(v).flatten().map(|val| format!("{v} = {val}"))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_values() {
        assert_eq!(Override::parse("k=8").unwrap().value, Value::Int(8));
        assert_eq!(Override::parse("dropout = 0.3").unwrap().value, Value::Float(0.3));
        assert_eq!(Override::parse("bias=true").unwrap().value, Value::Bool(true));
        assert_eq!(Override::parse("k=-2").unwrap().value, Value::Int(-2));
        assert_eq!(Override::parse("kernel=(1, 7)").unwrap().value, Value::Pair(1, 7));
        assert!(Override::parse("kernel=(1, 7.5)").is_err());
        assert!(Override::parse("k").unwrap_err().contains("NAME=VALUE"));
        assert!(Override::parse("k=ten").is_err());
        assert!(Override::parse("bad name=1").is_err());
        assert!(Override::parse("x=inf").is_err());
    }

    #[test]
    fn overrides_parse_activations() {
        let act = |text: &str| match Override::parse(text).map(|o| o.value) {
            Ok(Value::Act(a)) => Ok(a.to_string()),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(act("act=mish").unwrap(), "mish");
        assert_eq!(act("act=prelu").unwrap(), "prelu");
        assert_eq!(act("act=leaky_relu").unwrap(), "leaky_relu(0.01)", "defaults filled in");
        assert_eq!(act("act=leaky_relu(0.2)").unwrap(), "leaky_relu(0.2)");
        assert_eq!(act("act=hardtanh(-2, 2.5)").unwrap(), "hardtanh(-2.0, 2.5)");
        assert!(act("act=leaky_relu(0.2, 3)").is_err(), "too many arguments");
        assert!(act("act=leaky_relu(x)").is_err());
        assert!(act("act=conv3x3").is_err(), "a layer, not an activation");
        assert!(act("act=mish(1)").is_err());
    }

    #[test]
    fn activations_are_values() {
        assert_eq!(eval("mish").unwrap().to_string(), "mish");
        assert_eq!(eval("elu(0.5)").unwrap().to_string(), "elu(0.5)");
        assert_eq!(eval("relu == relu").unwrap(), Value::Bool(true));
        assert_eq!(eval("relu != leaky_relu(0.1)").unwrap(), Value::Bool(true));
        assert!(eval("relu + 1").is_err(), "no arithmetic on activations");
        assert!(eval("elu(true)").is_err());
    }

    fn eval(text: &str) -> Result<Value, Vec<Diagnostic>> {
        let spec = format!("network t(v = {text}) {{ input 1x1x1 global_avg_pool linear(1) }}");
        let file = crate::syntax::parse(&spec, crate::diag::SourceId(1)).unwrap();
        let prelude = crate::syntax::ast::File { definitions: vec![] };
        check(&prelude, &file, "t", &[]).map(|n| n.params[0].1)
    }

    #[test]
    fn expressions_follow_integer_and_float_rules() {
        assert_eq!(eval("(164 - 2) / 9").unwrap(), Value::Int(18));
        assert_eq!(eval("7 / 2").unwrap(), Value::Int(3), "integer division truncates");
        assert_eq!(eval("7 / 2.0").unwrap(), Value::Float(3.5));
        assert_eq!(eval("2 + 3 * 4").unwrap(), Value::Int(14));
        assert_eq!(eval("floor(2.7) + ceil(0.2) + round(2.5)").unwrap(), Value::Int(6));
        assert_eq!(eval("min(3, 4) * max(2, 1.5)").unwrap(), Value::Float(6.0));
        assert_eq!(eval("1 < 2 && !(3 == 4)").unwrap(), Value::Bool(true));
        assert_eq!(eval("-7 % 3").unwrap(), Value::Int(-1));
        assert!(eval("1 / 0").is_err());
        assert!(eval("9223372036854775807 + 1").is_err());
        assert!(eval("true + 1").is_err());
    }
}
