//! The forward pass: each field applied in order, branches run on clones of their input and
//! combined, `if`s resolved by the fields that exist (or a flag).

use super::*;

impl Emitter<'_> {
    // ----- forward -----

    /// `bound` maps fields bound by an enclosing `if let` to their local names.
    pub(super) fn forward_body(
        &mut self,
        body: &[Stmt],
        ctx: &DefCtx,
        rank: &mut usize,
        bound: &HashMap<String, Ident>,
    ) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
        let mut out = Vec::new();
        for stmt in body {
            match stmt {
                Stmt::Let { .. } => {}
                Stmt::Call(call) => {
                    let access = field_access(&call.site, bound);
                    let code = match &call.target {
                        Target::Primitive(prim) => ops::forward(self, prim.prim, access, rank),
                        Target::Block(name) | Target::Activation(name) => {
                            if let Some((_, r)) = self.ranks.get(name) {
                                *rank = *r;
                            }
                            quote! { let x = #access.forward(x); }
                        }
                    };
                    out.push(code);
                }
                Stmt::Stage { count, call, site, .. } => {
                    let access = field_access(site, bound);
                    if let Some((_, r)) = self.ranks.get(block_name(call)) {
                        *rank = *r;
                    }
                    out.push(self.comment(&format!("stage {count} × {}", call.text)));
                    out.push(quote! {
                        let mut x = x;
                        for block in #access.iter() {
                            x = block.forward(x);
                        }
                    });
                }
                Stmt::If { cond, then, otherwise, site, span } => {
                    let strategy = if_strategy(then, otherwise.as_deref());
                    let mut then_rank = *rank;
                    let mut else_rank = *rank;
                    out.push(self.comment(&format!("if {cond}")));
                    let code = match strategy {
                        IfStrategy::ThenFields | IfStrategy::ElseFields => {
                            let (first, second) = if strategy == IfStrategy::ThenFields {
                                (then.as_slice(), otherwise.as_deref())
                            } else {
                                (otherwise.as_deref().expect("ElseFields has an else"), Some(then.as_slice()))
                            };
                            let (pattern, scrutinee, inner_bound) = bind_direct(first, bound);
                            let first_code = self.forward_body(first, ctx, &mut then_rank, &inner_bound)?;
                            let second_code = match second {
                                Some(b) => self.forward_body(b, ctx, &mut else_rank, bound)?,
                                None => Vec::new(),
                            };
                            quote! {
                                let x = if let #pattern = #scrutinee {
                                    #(#first_code)*
                                    x
                                } else {
                                    #(#second_code)*
                                    x
                                };
                            }
                        }
                        IfStrategy::Flag => {
                            // Each arm binds its own optional layers; the flag says which arm ran.
                            let f = format_ident!("{}", site);
                            let then_code = self.bound_arm(then, ctx, &mut then_rank, bound)?;
                            let else_code = match otherwise {
                                Some(o) => self.bound_arm(o, ctx, &mut else_rank, bound)?,
                                None => quote!(x),
                            };
                            quote! {
                                let x = if self.#f { #then_code } else { #else_code };
                            }
                        }
                    };
                    if then_rank != else_rank {
                        return Err(vec![Diagnostic::error(
                            codes::EMIT,
                            *span,
                            "the branches of this `if` end in tensors of different rank",
                        )]);
                    }
                    *rank = then_rank;
                    out.push(code);
                }
                Stmt::Combine { combinator, arms } => {
                    out.push(self.comment(&describe_combine(*combinator, arms.len())));
                    let branch_idents: Vec<Ident> = (1..=arms.len()).map(|i| format_ident!("branch{}", i)).collect();
                    let bodies: Vec<&[Stmt]> = arms.iter().map(Vec::as_slice).collect();
                    let stmts = self.forward_arms(&bodies, &branch_idents, ctx, rank, bound)?;
                    let first = &branch_idents[0];
                    let rest = &branch_idents[1..];
                    let result = match combinator {
                        Some(Combinator::Add) => quote! { #first #(+ #rest)* },
                        Some(Combinator::Mul) => quote! { #first #(* #rest)* },
                        Some(Combinator::Concat) => quote! { Tensor::cat(vec![#(#branch_idents),*], 1) },
                        None => quote! { #first },
                    };
                    out.push(quote! { let x = { #(#stmts)* #result }; });
                }
                Stmt::Merge { arms, expr, site } => {
                    let names = arm_names(arms);
                    out.push(self.comment(&format!("merge of {}: {expr}", names.join(", "))));
                    let idents: Vec<Ident> = arms.iter().map(|(n, _)| format_ident!("branch_{}", n)).collect();
                    let bodies: Vec<&[Stmt]> = arms.iter().map(|(_, b)| b.as_slice()).collect();
                    let stmts = self.forward_arms(&bodies, &idents, ctx, rank, bound)?;
                    let mut uses: HashMap<String, usize> = HashMap::new();
                    count_uses(expr, &names, &mut uses);
                    let stored = field_access(site, bound);
                    let mut emit = MergeEmit { names: &names, uses, stored, next_stored: 0 };
                    let result = match emit.expr(self, expr, ctx)? {
                        MergeTokens::Tensor(t, _) => t,
                        MergeTokens::Scalar(_) => {
                            return Err(vec![Diagnostic::error(
                                codes::EMIT,
                                expr.span,
                                "internal error: a merge expression without a branch",
                            )]);
                        }
                    };
                    out.push(quote! { let x = { #(#stmts)* #result }; });
                }
            }
        }
        Ok(out)
    }

    /// `let branchN = { ... };` for parallel arms from the same input `x` (cloned for all but the
    /// last); `rank` becomes the arms' output rank.
    pub(super) fn forward_arms(
        &mut self,
        arms: &[&[Stmt]],
        idents: &[Ident],
        ctx: &DefCtx,
        rank: &mut usize,
        bound: &HashMap<String, Ident>,
    ) -> Result<Vec<TokenStream>, Vec<Diagnostic>> {
        let mut stmts = Vec::new();
        let mut arm_rank = *rank;
        for (i, (arm, b)) in arms.iter().zip(idents).enumerate() {
            let mut r = *rank;
            let code = self.forward_body(arm, ctx, &mut r, bound)?;
            arm_rank = r;
            let last = i + 1 == arms.len();
            let input = if last { quote!(x) } else { quote!(x.clone()) };
            if code.is_empty() {
                stmts.push(quote! { let #b = #input; });
            } else if last {
                stmts.push(quote! { let #b = { #(#code)* x }; });
            } else {
                stmts.push(quote! { let #b = { let x = #input; #(#code)* x }; });
            }
        }
        *rank = arm_rank;
        Ok(stmts)
    }

    /// The code of an `if` arm as an expression: its direct layers bound by `if let` when it has any.
    pub(super) fn bound_arm(
        &mut self,
        body: &[Stmt],
        ctx: &DefCtx,
        rank: &mut usize,
        bound: &HashMap<String, Ident>,
    ) -> Result<TokenStream, Vec<Diagnostic>> {
        if direct_field_sites(body).is_empty() {
            let code = self.forward_body(body, ctx, rank, bound)?;
            return Ok(quote! { #(#code)* x });
        }
        let (pattern, scrutinee, inner) = bind_direct(body, bound);
        let code = self.forward_body(body, ctx, rank, &inner)?;
        Ok(quote! {
            if let #pattern = #scrutinee {
                #(#code)*
                x
            } else {
                x
            }
        })
    }
}

/// How a field is reached in `forward`: through a local an enclosing `if let` bound, or `self`.
pub(super) fn field_access(site: &str, bound: &HashMap<String, Ident>) -> TokenStream {
    match bound.get(site) {
        Some(local) => quote!(#local),
        None => {
            let f = format_ident!("{}", site);
            quote!(self.#f)
        }
    }
}

/// The `if let` pattern and scrutinee that bind an arm's direct (optional) fields, and the
/// bindings its body sees.
pub(super) fn bind_direct(
    body: &[Stmt],
    bound: &HashMap<String, Ident>,
) -> (TokenStream, TokenStream, HashMap<String, Ident>) {
    let sites = direct_field_sites(body);
    let mut inner = bound.clone();
    let locals: Vec<Ident> = sites.iter().map(|s| format_ident!("{}", s)).collect();
    let fields: Vec<Ident> = locals.clone();
    for (s, l) in sites.iter().zip(&locals) {
        inner.insert(s.clone(), l.clone());
    }
    (quote!((#(Some(#locals),)*)), quote!((#(&self.#fields,)*)), inner)
}

/// How an `if` is decided at run time: by which of its layers exist, or by a flag.
pub(super) fn if_strategy(then: &[Stmt], otherwise: Option<&[Stmt]>) -> IfStrategy {
    let then_fields = !direct_field_sites(then).is_empty();
    let else_fields = otherwise.is_some_and(|o| !direct_field_sites(o).is_empty());
    match (then_fields, else_fields) {
        (true, false) => IfStrategy::ThenFields,
        (false, true) => IfStrategy::ElseFields,
        _ => IfStrategy::Flag,
    }
}

/// Field sites directly in `body`, not inside a nested `if`: the ones an `if let` binds.
pub(super) fn direct_field_sites(body: &[Stmt]) -> Vec<String> {
    let mut out = Vec::new();
    for stmt in body {
        match stmt {
            Stmt::Let { .. } | Stmt::If { .. } => {}
            Stmt::Call(call) => {
                // Calls with a field: blocks, and primitives whose table entry has a type.
                if !matches!(call.target, Target::Primitive(p) if p.field.is_none()) {
                    out.push(call.site.clone());
                }
            }
            Stmt::Stage { site, .. } => out.push(site.clone()),
            Stmt::Combine { arms, .. } => {
                for arm in arms {
                    out.extend(direct_field_sites(arm));
                }
            }
            Stmt::Merge { arms, expr, site } => {
                for (_, arm) in arms {
                    out.extend(direct_field_sites(arm));
                }
                if !merge_scalars(expr, &arm_names(arms)).is_empty() {
                    out.push(site.clone());
                }
            }
        }
    }
    out
}
