//! The emitted struct's fields: one per layer, block and stage call of a definition, `Option`s
//! inside an `if`, a flag where the `if` is decided by one.

use super::*;

impl Emitter<'_> {
    pub(super) fn fields(&mut self, body: &[Stmt], optional: bool, out: &mut Vec<Field>) {
        for stmt in body {
            match stmt {
                Stmt::Let { .. } => {}
                Stmt::Call(call) => {
                    let ty = match &call.target {
                        Target::Primitive(prim) => match prim.field {
                            None => continue,
                            Some(ty) => {
                                self.uses(prim.uses);
                                ty.parse::<TokenStream>().expect("field types are Rust tokens")
                            }
                        },
                        Target::Block(name) | Target::Activation(name) => {
                            let t = format_ident!("{}", camel_case(name));
                            quote!(#t)
                        }
                    };
                    out.push(Field { name: call.site.clone(), ty, optional, doc: call.text.clone(), flag: false });
                }
                Stmt::Stage { count, call, site, .. } => {
                    let t = format_ident!("{}", camel_case(block_name(call)));
                    out.push(Field {
                        name: site.clone(),
                        ty: quote!(Vec<#t>),
                        optional,
                        doc: format!("stage {count} × {}", call.text),
                        flag: false,
                    });
                }
                Stmt::If { cond, then, otherwise, site, .. } => {
                    if if_strategy(then, otherwise.as_deref()) == IfStrategy::Flag {
                        out.push(Field {
                            name: site.clone(),
                            ty: quote!(bool),
                            optional: false,
                            doc: format!("whether {cond} held for this call"),
                            flag: true,
                        });
                    }
                    self.fields(then, true, out);
                    if let Some(o) = otherwise {
                        self.fields(o, true, out);
                    }
                }
                Stmt::Combine { arms, .. } => {
                    for arm in arms {
                        self.fields(arm, optional, out);
                    }
                }
                Stmt::Merge { arms, expr, site } => {
                    for (_, arm) in arms {
                        self.fields(arm, optional, out);
                    }
                    let stored = merge_scalars(expr, &arm_names(arms));
                    if !stored.is_empty() {
                        let n = Literal::usize_unsuffixed(stored.len());
                        let listed: Vec<String> = stored.iter().map(|e| e.to_string()).collect();
                        out.push(Field {
                            name: site.clone(),
                            ty: quote!([f64; #n]),
                            optional,
                            doc: listed.join(", "),
                            flag: false,
                        });
                    }
                }
            }
        }
    }
}

/// The block a call or stage constructs (for its struct's name).
pub(super) fn block_name(call: &def::Call) -> &str {
    match &call.target {
        Target::Block(name) | Target::Activation(name) => name,
        Target::Primitive(prim) => prim.name,
    }
}
