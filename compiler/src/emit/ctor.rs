//! The constructor: each call's layer built from its arguments, the running `[C, H, W]`
//! shape threaded through, blocks and stages built with their argument expressions.

use super::*;

impl Emitter<'_> {
    // ----- constructor -----

    pub(super) fn ctor_body(
        &mut self,
        body: &[Stmt],
        ctx: &mut DefCtx,
        out: &mut Vec<TokenStream>,
    ) -> Result<(), Vec<Diagnostic>> {
        let mark = ctx.vars.len();
        for stmt in body {
            match stmt {
                Stmt::Let { name, value } => {
                    let v = self.expr(value, ctx)?;
                    let ident = ctx.var_ident(name);
                    let ty = ty_tokens(v.ty);
                    let tokens = v.tokens;
                    out.push(quote! { let #ident: #ty = #tokens; });
                    ctx.vars.push((name.clone(), ident, v.ty));
                }
                op => self.ctor_op(op, ctx, out)?,
            }
        }
        ctx.vars.truncate(mark);
        Ok(())
    }

    pub(super) fn ctor_op(
        &mut self,
        op: &Stmt,
        ctx: &mut DefCtx,
        out: &mut Vec<TokenStream>,
    ) -> Result<(), Vec<Diagnostic>> {
        match op {
            Stmt::Let { .. } => Ok(()),
            Stmt::Call(call) => match &call.target {
                Target::Primitive(prim) => self.ctor_primitive(prim, call, ctx, out),
                Target::Block(name) | Target::Activation(name) => {
                    let field = format_ident!("{}", call.site);
                    let ty = format_ident!("{}", camel_case(name));
                    let args = self.block_args(call, ctx, None)?;
                    out.push(self.comment(&call.text));
                    out.push(quote! { let (#field, out) = #ty::new(shape, #(#args,)* device); shape = out; });
                    Ok(())
                }
            },
            Stmt::Stage { count, call, site, .. } => {
                let field = format_ident!("{}", site);
                let ty = format_ident!("{}", camel_case(block_name(call)));
                let n = self.expr(count, ctx)?;
                let n = cast(n, Ty::Int).tokens;
                let args = self.block_args(call, ctx, Some(quote!(i)))?;
                out.push(self.comment(&format!("stage {count} × {}", call.text)));
                out.push(quote! {
                    let mut #field = Vec::new();
                    for i in 0..#n {
                        let (block, out) = #ty::new(shape, #(#args,)* device);
                        #field.push(block);
                        shape = out;
                    }
                });
                Ok(())
            }
            Stmt::If { cond, then, otherwise, site, .. } => {
                let c = self.expr(cond, ctx)?;
                let c = c.tokens;
                let strategy = if_strategy(then, otherwise.as_deref());
                let mut then_fields = Vec::new();
                self.fields(then, true, &mut then_fields);
                let mut else_fields = Vec::new();
                if let Some(o) = otherwise {
                    self.fields(o, true, &mut else_fields);
                }
                then_fields.retain(|f| !f.flag);
                else_fields.retain(|f| !f.flag);
                let direct_then = direct_field_sites(then);
                let direct_else = otherwise.as_ref().map_or_else(Vec::new, |o| direct_field_sites(o));
                let nested_then: Vec<String> =
                    then_fields.iter().map(|f| f.name.clone()).filter(|n| !direct_then.contains(n)).collect();
                let nested_else: Vec<String> =
                    else_fields.iter().map(|f| f.name.clone()).filter(|n| !direct_else.contains(n)).collect();
                let all: Vec<Ident> =
                    then_fields.iter().chain(&else_fields).map(|f| format_ident!("{}", f.name)).collect();
                let wrap = |fields: &[Field], nested: &[String], present: bool| -> Vec<TokenStream> {
                    then_fields
                        .iter()
                        .chain(&else_fields)
                        .map(|f| {
                            let ident = format_ident!("{}", f.name);
                            let mine = fields.iter().any(|g| g.name == f.name);
                            if mine && present {
                                if nested.contains(&f.name) { quote!(#ident) } else { quote!(Some(#ident)) }
                            } else {
                                quote!(None)
                            }
                        })
                        .collect()
                };
                let mut then_code = Vec::new();
                self.ctor_body(then, ctx, &mut then_code)?;
                let then_values = wrap(&then_fields, &nested_then, true);
                let mut else_code = Vec::new();
                if let Some(o) = otherwise {
                    self.ctor_body(o, ctx, &mut else_code)?;
                }
                let else_values = wrap(&else_fields, &nested_else, true);
                let (flag_then, flag_else) = if strategy == IfStrategy::Flag {
                    let f = format_ident!("{}", site);
                    (quote!(#f = true;), quote!(#f = false;))
                } else {
                    (quote!(), quote!())
                };
                out.push(self.comment(&format!("if {cond}")));
                out.push(quote! {
                    let (#(#all,)*) = if #c {
                        #flag_then
                        #(#then_code)*
                        (#(#then_values,)*)
                    } else {
                        #flag_else
                        #(#else_code)*
                        (#(#else_values,)*)
                    };
                });
                Ok(())
            }
            Stmt::Combine { combinator, arms } => {
                out.push(self.comment(&describe_combine(*combinator, arms.len())));
                let bodies: Vec<&[Stmt]> = arms.iter().map(Vec::as_slice).collect();
                let arm_shapes = self.ctor_arms(&bodies, ctx, out)?;
                let first = &arm_shapes[0];
                let rest = &arm_shapes[1..];
                match combinator {
                    Some(Combinator::Concat) => out.push(quote! {
                        shape = [#first[0] #(+ #rest[0])*, #first[1], #first[2]];
                    }),
                    Some(Combinator::Mul) => {
                        for r in rest {
                            out.push(
                                quote! { shape = [#first[0].max(#r[0]), #first[1].max(#r[1]), #first[2].max(#r[2])]; },
                            );
                        }
                    }
                    _ => out.push(quote! { shape = #first; }),
                }
                Ok(())
            }
            Stmt::Merge { arms, expr, site } => {
                out.push(self.comment(&format!("merge of {}: {expr}", arm_names(arms).join(", "))));
                let bodies: Vec<&[Stmt]> = arms.iter().map(|(_, b)| b.as_slice()).collect();
                let arm_shapes = self.ctor_arms(&bodies, ctx, out)?;
                // Element-wise with broadcasting: the largest extent of each dimension.
                let first = &arm_shapes[0];
                out.push(quote! { shape = #first; });
                for r in &arm_shapes[1..] {
                    out.push(quote! { shape = [shape[0].max(#r[0]), shape[1].max(#r[1]), shape[2].max(#r[2])]; });
                }
                let stored = merge_scalars(expr, &arm_names(arms));
                if !stored.is_empty() {
                    let field = format_ident!("{}", site);
                    let mut values = Vec::new();
                    for e in stored {
                        values.push(cast(self.expr(e, ctx)?, Ty::Float).tokens);
                    }
                    out.push(quote! { let #field = [#(#values),*]; });
                }
                Ok(())
            }
        }
    }

    /// Construct parallel arms from the same input shape; the locals holding each arm's output shape.
    pub(super) fn ctor_arms(
        &mut self,
        arms: &[&[Stmt]],
        ctx: &mut DefCtx,
        out: &mut Vec<TokenStream>,
    ) -> Result<Vec<Ident>, Vec<Diagnostic>> {
        let entry = ctx.fresh("entry");
        out.push(quote! { let #entry = shape; });
        let mut arm_shapes = Vec::new();
        for (i, arm) in arms.iter().enumerate() {
            if i > 0 {
                out.push(quote! { shape = #entry; });
            }
            self.ctor_body(arm, ctx, out)?;
            let s = ctx.fresh("arm");
            out.push(quote! { let #s = shape; });
            arm_shapes.push(s);
        }
        Ok(arm_shapes)
    }

    /// Arguments of a block constructor, defaults filled in; `stage_index` makes later copies take stride 1.
    pub(super) fn block_args(
        &mut self,
        call: &def::Call,
        ctx: &mut DefCtx,
        stage_index: Option<TokenStream>,
    ) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
        let name = block_name(call);
        let Some(def) = self.network.blocks.iter().find(|b| b.name.name == name) else {
            return Err(vec![Diagnostic::error(
                codes::EMIT,
                call.span,
                format!("internal error: block `{name}` was not checked"),
            )]);
        };
        let mut args = Vec::new();
        for p in &def.params {
            if p.ty == Ty::Act {
                // Fixed per block definition (see `activation_params`), not a constructor argument.
                continue;
            }
            let given = call.args.iter().find(|(n, _)| *n == p.name.name).map(|(_, e)| e);
            let value = match (given, &p.default) {
                (Some(e), _) | (None, Some(e)) => cast(self.expr(e, ctx)?, p.ty).tokens,
                (None, None) => {
                    return Err(vec![Diagnostic::error(
                        codes::EMIT,
                        call.span,
                        "internal error: unbound block argument",
                    )]);
                }
            };
            let value = match (&stage_index, p.name.name.as_str(), given.is_some()) {
                (Some(i), "stride", true) => quote! { if #i == 0 { #value } else { 1 } },
                _ => value,
            };
            args.push(value);
        }
        if def.takes_index {
            args.push(match stage_index {
                Some(i) => quote!(#i as i64),
                None => quote!(0),
            });
        }
        Ok(args)
    }

    /// The constructor statements of a primitive call: its arguments as Rust expressions, then
    /// the primitive's own `ctor` (`ops`).
    pub(super) fn ctor_primitive(
        &mut self,
        prim: &'static ops::Primitive,
        call: &def::Call,
        ctx: &mut DefCtx,
        out: &mut Vec<TokenStream>,
    ) -> Result<(), Vec<Diagnostic>> {
        let field = format_ident!("{}", call.site);
        let mut values = HashMap::new();
        for param in prim.params {
            if let Some((_, e)) = call.args.iter().find(|(n, _)| n == param.name) {
                values.insert(param.name, self.expr(e, ctx)?);
            }
        }
        let mut args = ops::EmitArgs { prim, values, span: call.span };
        out.extend(ops::ctor(self, &mut args, &field)?);
        Ok(())
    }
}
