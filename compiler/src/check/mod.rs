//! Stage 2, check: [`ast::File`]s → [`ir::Network`].
//!
//! Expands block calls and stages, evaluates expressions, applies overrides,
//! infers the shape after every layer and counts parameters and MACs. It keeps
//! going after an error so that one run reports every problem it can; each is
//! reported once even when the faulty block is expanded many times.

mod eval;
mod expand;
mod lower;
mod resolve;

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
        let block_param_types: BTreeMap<String, Vec<Ty>> = self
            .block_param_types
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|t| t.unwrap_or(Ty::Int)).collect()))
            .collect();
        let block_activations = std::mem::take(&mut self.block_activations);
        let lowering =
            lower::Lowering { defs: &self.defs, param_types: &block_param_types, activations: &block_activations };
        let blocks = self.used_blocks.iter().map(|b| lowering.def(&self.defs[b], None)).collect();
        let definition = lowering.def(def, Some(&params));
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
            definition,
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
}

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

/// Whether `a` and `b` multiply by broadcasting a `C×1×1` gate over `C×H×W`.
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
