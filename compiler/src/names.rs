//! Names shared by the checker and the emitter: which primitives exist, and the
//! field name each layer of a definition gets (so IR paths equal Burn parameter paths).

use crate::diag::Span;
use crate::syntax::ast::{Definition, Op, Stmt};
use std::collections::HashMap;

/// Functions usable in expressions.
pub const FUNCTIONS: &[&str] = &["floor", "ceil", "round", "int", "float", "min", "max", "abs", "log2"];

/// The merge function that mixes two branches as Shake-Shake does (`=> shake(a, b)`).
pub const SHAKE: &str = "shake";

/// Variables a block body sees besides its parameters: its input shape.
pub const BUILTIN_VARS: &[&str] = &["in_channels", "in_height", "in_width"];

/// A variable a block body sees besides its parameters: the copy's position in its `stage`
/// (0 for the first, and for a call outside a stage), for per-block schedules such as
/// stochastic depth's linearly decaying drop rate or PyramidNet's widening. A parameter of the
/// same name shadows it.
pub const INDEX: &str = "index";

/// The number of arguments an expression function takes, `None` for an unknown function.
pub fn function_arity(name: &str) -> Option<usize> {
    match name {
        "min" | "max" => Some(2),
        "floor" | "ceil" | "round" | "int" | "float" | "abs" | "log2" => Some(1),
        _ => None,
    }
}

/// Whether `name` is a primitive layer.
pub fn is_primitive(name: &str) -> bool {
    crate::ops::lookup(name).is_some()
}

/// The field-name stem of a call: the primitive's (`conv` for every convolution), the block's
/// name otherwise.
fn stem(name: &str) -> &str {
    crate::ops::lookup(name).map_or(name, |p| p.stem)
}

/// Names one site: its stem, its span, the table to write into.
type NameSite<'a> = dyn FnMut(&str, Span, &mut HashMap<Span, String>) + 'a;

/// Give every call, stage and combination in `def` a name unique within it: `conv1`, `bn2`, `stage1`...
///
/// Names are numbered per stem in source order over all branches, so they do not depend on
/// which branch of an `if` a particular instance takes.
pub fn site_names(def: &Definition) -> HashMap<Span, String> {
    let mut counters: HashMap<String, usize> = HashMap::new();
    let mut names = HashMap::new();
    let mut next = |stem: &str, span: Span, names: &mut HashMap<Span, String>| {
        let n = counters.entry(stem.to_string()).or_insert(0);
        *n += 1;
        names.insert(span, format!("{stem}{n}"));
    };
    fn walk(body: &[Stmt], next: &mut NameSite<'_>, names: &mut HashMap<Span, String>) {
        for stmt in body {
            let Stmt::Op(op) = stmt else { continue };
            match op {
                Op::Call(call) => next(stem(&call.name.name), call.span, names),
                Op::Stage { span, .. } => next("stage", *span, names),
                Op::If { then, otherwise, span, .. } => {
                    // An `if` gets a name too: it becomes a flag field when no layer decides it.
                    next("cond", *span, names);
                    walk(&then.body, next, names);
                    if let Some(o) = otherwise {
                        walk(&o.body, next, names);
                    }
                }
                Op::Combine { combinator, arms, span } => {
                    for arm in arms {
                        walk(&arm.body, next, names);
                    }
                    if let Some(c) = combinator {
                        let stem = match c {
                            crate::syntax::ast::Combinator::Add => "add",
                            crate::syntax::ast::Combinator::Mul => "mul",
                            crate::syntax::ast::Combinator::Concat => "concat",
                        };
                        next(stem, *span, names);
                    }
                }
                Op::Merge { arms, span, .. } => {
                    for (_, arm) in arms {
                        walk(&arm.body, next, names);
                    }
                    next("merge", *span, names);
                }
            }
        }
    }
    walk(&def.body, &mut next, &mut names);
    names
}

/// `wrn_28_10` → `Wrn2810`, `preact_basic` → `PreactBasic`.
pub fn camel_case(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for ch in name.chars() {
        if ch == '_' || ch == '-' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'N');
    }
    out
}

/// The closest of `candidates` to `name`, if any is close enough to suggest.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len().max(name.len()))
        .min_by_key(|(d, c)| (*d, c.to_string()))
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_names() {
        assert_eq!(camel_case("wrn_28_10"), "Wrn2810");
        assert_eq!(camel_case("preact_basic"), "PreactBasic");
        assert_eq!(camel_case("resnext_29_8x64d"), "Resnext298x64d");
        assert_eq!(camel_case("_x"), "X");
        assert_eq!(camel_case("9lives"), "N9lives");
    }

    #[test]
    fn suggestions_are_close_or_absent() {
        assert_eq!(did_you_mean("basc", ["basic", "bottleneck"]), Some("basic".into()));
        assert_eq!(did_you_mean("strid", ["stride", "planes"]), Some("stride".into()));
        assert_eq!(did_you_mean("zzz", ["stride", "planes"]), None);
        assert_eq!(did_you_mean("k", ["classes", "depth"]), None);
    }

    #[test]
    fn site_names_count_per_kind_over_both_branches() {
        let file = crate::syntax::parse(
            "block b(p) { conv3x3(p) bn if p > 1 { conv1x1(p) bn } else { avg_pool(2) } relu }",
            crate::diag::SourceId(0),
        )
        .unwrap();
        let mut names: Vec<String> = site_names(&file.definitions[0]).into_values().collect();
        names.sort();
        assert_eq!(names, ["bn1", "bn2", "cond1", "conv1", "conv2", "pool1", "relu1"]);
    }
}
