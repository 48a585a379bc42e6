//! The emitted struct's fields: one per layer, block and stage call of a definition, `Option`s
//! inside an `if`, a flag where the `if` is decided by one.

use super::*;

impl Emitter<'_> {
    pub(super) fn fields(&mut self, body: &[Stmt], ctx: &DefCtx, optional: bool, out: &mut Vec<Field>) {
        for stmt in body {
            let Stmt::Op(op) = stmt else { continue };
            match op {
                Op::Call(call) => {
                    let ty = match ops::lookup(&call.name.name) {
                        Some(prim) => match prim.field {
                            None => continue,
                            Some(ty) => {
                                self.uses(prim.uses);
                                ty.parse::<TokenStream>().expect("field types are Rust tokens")
                            }
                        },
                        None => {
                            let t = format_ident!("{}", camel_case(&call.name.name));
                            quote!(#t)
                        }
                    };
                    out.push(Field { name: ctx.site(call.span), ty, optional, doc: call.to_string(), flag: false });
                }
                Op::Stage { count, call, span } => {
                    let t = format_ident!("{}", camel_case(&call.name.name));
                    out.push(Field {
                        name: ctx.site(*span),
                        ty: quote!(Vec<#t>),
                        optional,
                        doc: format!("stage {count} × {call}"),
                        flag: false,
                    });
                }
                Op::If { cond, then, otherwise, span } => {
                    if if_strategy(then, otherwise.as_ref(), &ctx.names) == IfStrategy::Flag {
                        out.push(Field {
                            name: ctx.site(*span),
                            ty: quote!(bool),
                            optional: false,
                            doc: format!("whether {cond} held for this call"),
                            flag: true,
                        });
                    }
                    self.fields(&then.body, ctx, true, out);
                    if let Some(o) = otherwise {
                        self.fields(&o.body, ctx, true, out);
                    }
                }
                Op::Combine { arms, .. } => {
                    for arm in arms {
                        self.fields(&arm.body, ctx, optional, out);
                    }
                }
                Op::Merge { arms, expr, span } => {
                    for (_, arm) in arms {
                        self.fields(&arm.body, ctx, optional, out);
                    }
                    let stored = merge_scalars(expr, &arm_names(arms));
                    if !stored.is_empty() {
                        let n = Literal::usize_unsuffixed(stored.len());
                        let listed: Vec<String> = stored.iter().map(|e| e.to_string()).collect();
                        out.push(Field {
                            name: ctx.site(*span),
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
