//! Lowering: a checked definition's AST into the IR's [`ir::def::Def`] that code generation
//! reads. Calls are resolved once here (primitive, block, or activation-valued parameter),
//! their arguments bound to parameter names as the checker bound them, every field site named
//! (`names::site_names`), and the parameters typed from every call the expansion saw.

use super::*;
use crate::ir::def;

/// What lowering needs besides the definition itself.
pub(super) struct Lowering<'a> {
    /// Every block definition, by name (for binding block arguments to their parameters).
    pub defs: &'a HashMap<String, Rc<Definition>>,
    /// Per block, the type of each parameter across all calls.
    pub param_types: &'a BTreeMap<String, Vec<Ty>>,
    /// Per block, the activations each parameter took across all calls.
    pub activations: &'a BTreeMap<String, Vec<Vec<Activation>>>,
}

impl Lowering<'_> {
    /// Lower `def`; `activation_params` are the names that hold activations (the network's
    /// activation-valued parameters; a block's follow from its parameter types).
    pub(super) fn def(&self, d: &Definition, network_params: Option<&[(String, Value)]>) -> def::Def {
        let types = self.param_types.get(&d.name.name);
        let acts = self.activations.get(&d.name.name);
        let params: Vec<def::DefParam> = d
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| def::DefParam {
                name: p.name.clone(),
                default: p.default.clone(),
                ty: types.and_then(|t| t.get(i).copied()).unwrap_or(Ty::Int),
                acts: acts.and_then(|a| a.get(i).cloned()).unwrap_or_default(),
            })
            .collect();
        let holds_activation: Vec<String> = match network_params {
            Some(values) => values.iter().filter(|(_, v)| matches!(v, Value::Act(_))).map(|(n, _)| n.clone()).collect(),
            None => params.iter().filter(|p| p.ty == Ty::Act).map(|p| p.name.name.clone()).collect(),
        };
        let sites = site_names(d);
        let cx = Body { lowering: self, sites: &sites, holds_activation: &holds_activation };
        def::Def {
            name: d.name.clone(),
            body: cx.body(&d.body),
            takes_index: !d.params.iter().any(|p| p.name.name == names::INDEX) && mentions(&d.body, names::INDEX),
            reads: names::BUILTIN_VARS.iter().copied().filter(|v| mentions(&d.body, v)).collect(),
            sites: sites.values().cloned().collect(),
            params,
        }
    }
}

struct Body<'a> {
    lowering: &'a Lowering<'a>,
    sites: &'a HashMap<Span, String>,
    holds_activation: &'a [String],
}

impl Body<'_> {
    fn site(&self, span: Span) -> String {
        self.sites.get(&span).cloned().unwrap_or_else(|| "unnamed".into())
    }

    fn body(&self, stmts: &[Stmt]) -> Vec<def::Stmt> {
        let mut out = Vec::new();
        for stmt in stmts {
            match stmt {
                Stmt::Input { .. } | Stmt::Assert { .. } => {}
                Stmt::Let { name, value } => out.push(def::Stmt::Let { name: name.name.clone(), value: value.clone() }),
                Stmt::Op(op) => out.push(self.op(op)),
            }
        }
        out
    }

    fn op(&self, op: &Op) -> def::Stmt {
        match op {
            Op::Call(call) => def::Stmt::Call(self.call(call)),
            Op::Stage { count, call, span } => {
                def::Stmt::Stage { count: count.clone(), call: self.call(call), site: self.site(*span), span: *span }
            }
            Op::If { cond, then, otherwise, span } => def::Stmt::If {
                cond: cond.clone(),
                then: self.body(&then.body),
                otherwise: otherwise.as_ref().map(|o| self.body(&o.body)),
                site: self.site(*span),
                span: *span,
            },
            Op::Combine { combinator, arms, .. } => {
                def::Stmt::Combine { combinator: *combinator, arms: arms.iter().map(|a| self.body(&a.body)).collect() }
            }
            Op::Merge { arms, expr, span } => def::Stmt::Merge {
                arms: arms.iter().map(|(n, b)| (n.name.clone(), self.body(&b.body))).collect(),
                expr: expr.clone(),
                site: self.site(*span),
            },
        }
    }

    fn call(&self, call: &Call) -> def::Call {
        let name = call.name.name.as_str();
        let (target, params): (def::Target, Vec<&str>) = if self.holds_activation.iter().any(|a| a == name) {
            (def::Target::Activation(name.to_string()), Vec::new())
        } else if let Some(prim) = ops::lookup(name) {
            (def::Target::Primitive(prim), prim.params.iter().map(|p| p.name).collect())
        } else {
            let params = self
                .lowering
                .defs
                .get(name)
                .map_or_else(Vec::new, |d| d.params.iter().map(|p| p.name.name.as_str()).collect::<Vec<_>>());
            (def::Target::Block(name.to_string()), params)
        };
        // Named arguments by name, the positional ones in order over the parameters not named.
        let mut positional = call.args.iter().filter(|a| a.name.is_none());
        let mut args = Vec::new();
        for p in params {
            let given =
                call.args.iter().find(|a| a.name.as_ref().is_some_and(|n| n.name == p)).or_else(|| positional.next());
            if let Some(a) = given {
                args.push((p.to_string(), a.value.clone()));
            }
        }
        def::Call { target, args, site: self.site(call.span), text: call.to_string(), span: call.span }
    }
}

/// Whether `body` reads the variable `var` (a merge's branch of that name shadows it in the
/// merge's expression).
fn mentions(body: &[Stmt], var: &str) -> bool {
    let call = |c: &Call| c.args.iter().any(|a| a.value.mentions(var));
    body.iter().any(|s| match s {
        Stmt::Let { value, .. } => value.mentions(var),
        Stmt::Assert { cond, .. } => cond.mentions(var),
        Stmt::Input { .. } => false,
        Stmt::Op(Op::Call(c)) => call(c),
        Stmt::Op(Op::Stage { count, call: c, .. }) => count.mentions(var) || call(c),
        Stmt::Op(Op::If { cond, then, otherwise, .. }) => {
            cond.mentions(var)
                || mentions(&then.body, var)
                || otherwise.as_ref().is_some_and(|o| mentions(&o.body, var))
        }
        Stmt::Op(Op::Combine { arms, .. }) => arms.iter().any(|a| mentions(&a.body, var)),
        Stmt::Op(Op::Merge { arms, expr: e, .. }) => {
            arms.iter().any(|(_, a)| mentions(&a.body, var))
                || (!arms.iter().any(|(n, _)| n.name == var) && e.mentions(var))
        }
    })
}
