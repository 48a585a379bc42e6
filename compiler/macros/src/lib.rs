//! `network!`: a thin shell over `resnetc-compiler` that expands a `.net` spec into Burn code.
//!
//! ```ignore
//! // From a file, relative to the calling crate's CARGO_MANIFEST_DIR, with optional overrides:
//! resnetc::network!("specs/wrn-28-10.net", classes = 100, k = 8);
//!
//! // Inline, as Rust tokens (write `x` for `×` and `//` for comments):
//! resnetc::network! {
//!     network tiny(classes = 10) {
//!         input 3x32x32
//!         conv3x3(16) bn relu
//!         stage 2 x basic(16)
//!         global_avg_pool linear(classes)
//!     }
//! }
//! ```
//!
//! The expansion is exactly the code `resnetc compile` emits (plus, for a file, an
//! `include_bytes!` of it so that editing the spec rebuilds the crate); the caller's
//! crate needs `burn` as a dependency. Errors become `compile_error!`s: inline, at the
//! offending token; for a file, at the path literal, with the rendered diagnostic
//! (file:line:column, the line, a caret) as the message.

use proc_macro2::{Delimiter, Spacing, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use resnetc_compiler::diag::{Diagnostic, SourceId};
use resnetc_compiler::{Compilation, Override};

/// Expand a `.net` spec (a file path with overrides, or inline tokens) into Burn model code.
#[proc_macro]
pub fn network(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    expand(input.into(), std::path::Path::new(&dir)).into()
}

/// The macro's expansion, callable from tests with `proc_macro2` tokens.
fn expand(input: TokenStream, manifest_dir: &std::path::Path) -> TokenStream {
    let mut tokens = input.clone().into_iter().peekable();
    match tokens.peek() {
        Some(TokenTree::Literal(lit))
            if syn::parse2::<syn::LitStr>(TokenStream::from(TokenTree::Literal(lit.clone()))).is_ok() =>
        {
            from_file(input, manifest_dir)
        }
        None => error(
            Span::call_site(),
            "network! needs a spec: a file path (\"specs/x.net\") or inline `network ... { ... }`",
        ),
        _ => inline(input),
    }
}

/// Source text rebuilt from tokens, with each token's byte range, so diagnostics map back to spans.
struct TokenText {
    text: String,
    spans: Vec<(usize, usize, Span)>,
}

impl TokenText {
    fn new(tokens: TokenStream) -> Self {
        let mut t = TokenText { text: String::new(), spans: Vec::new() };
        t.push_stream(tokens);
        t
    }

    fn push(&mut self, s: &str, span: Span, space: bool) {
        let start = self.text.len();
        self.text.push_str(s);
        self.spans.push((start, self.text.len(), span));
        if space {
            self.text.push(' ');
        }
    }

    fn push_stream(&mut self, tokens: TokenStream) {
        for tree in tokens {
            match tree {
                TokenTree::Group(g) => {
                    let (open, close) = match g.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::None => ("", ""),
                    };
                    self.push(open, g.span_open(), true);
                    // Line breaks keep rendered diagnostics readable.
                    if g.delimiter() == Delimiter::Brace {
                        self.text.push('\n');
                    }
                    self.push_stream(g.stream());
                    self.push(close, g.span_close(), true);
                }
                TokenTree::Punct(p) => self.push(&p.as_char().to_string(), p.span(), p.spacing() == Spacing::Alone),
                TokenTree::Ident(i) => self.push(&i.to_string(), i.span(), true),
                TokenTree::Literal(l) => self.push(&l.to_string(), l.span(), true),
            }
        }
    }

    /// The span of the first token overlapping `start..end`.
    fn span_of(&self, start: usize, end: usize) -> Option<Span> {
        let end = end.max(start + 1);
        let mut hits = self.spans.iter().filter(|(s, e, _)| *s < end && start < *e);
        let first = hits.next()?.2;
        let last = hits.next_back().map(|h| h.2);
        Some(last.and_then(|l| first.join(l)).unwrap_or(first))
    }
}

fn error(span: Span, message: &str) -> TokenStream {
    quote_spanned!(span=> ::core::compile_error!(#message);)
}

/// `"path", name = value, ...`
fn from_file(input: TokenStream, manifest_dir: &std::path::Path) -> TokenStream {
    let mut trees: Vec<TokenTree> = input.into_iter().collect();
    let path_tree = trees.remove(0);
    let path_span = path_tree.span();
    let path: syn::LitStr = match syn::parse2(TokenStream::from(path_tree)) {
        Ok(p) => p,
        Err(e) => return e.to_compile_error(),
    };
    let rest: TokenStream = match trees.first() {
        None => TokenStream::new(),
        Some(TokenTree::Punct(p)) if p.as_char() == ',' => trees[1..].iter().cloned().collect(),
        Some(other) => return error(other.span(), "expected `,` and then overrides `name = value`"),
    };
    let mut compilation = Compilation::new();
    let (overrides, args) = match overrides(rest, &mut compilation) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let relative = path.value();
    let full = manifest_dir.join(&relative);
    let text = match std::fs::read_to_string(&full) {
        Ok(t) => t,
        Err(e) => {
            return error(
                path_span,
                &format!("cannot read {} (relative to {}): {e}", relative, manifest_dir.display()),
            );
        }
    };
    let id = compilation.add_source(relative.clone(), text);
    match compilation.check(id, &overrides).and_then(|n| resnetc_compiler::emit::emit_tokens(&n)) {
        Ok(code) => {
            let full = full.display().to_string();
            quote! {
                const _: &[u8] = include_bytes!(#full);
                #code
            }
        }
        Err(diagnostics) => errors(&compilation, &diagnostics, None, Some(&args), path_span),
    }
}

/// Parse `name = value` pairs (values: integer, float, boolean, optionally negative).
fn overrides(
    tokens: TokenStream,
    compilation: &mut Compilation,
) -> Result<(Vec<Override>, (SourceId, TokenText)), TokenStream> {
    let text = TokenText::new(tokens.clone());
    let id = compilation.add_source("<network! arguments>", text.text.clone());
    let mut result = Vec::new();
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    // Arguments hold no groups, so the k-th token tree is the k-th entry of `text.spans`.
    let mut offset = 0;
    for item in trees.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ',')) {
        let start = offset;
        offset += item.len() + 1;
        if item.is_empty() {
            continue;
        }
        let (name, value) = match item {
            [TokenTree::Ident(name), TokenTree::Punct(eq), value @ ..] if eq.as_char() == '=' && !value.is_empty() => {
                (name, value)
            }
            _ => return Err(error(item[0].span(), "expected an override `name = value`")),
        };
        let value_text: String = value.iter().map(ToString::to_string).collect();
        let Some(v) = resnetc_compiler::check::parse_value(&value_text) else {
            return Err(error(value[0].span(), &format!("`{value_text}` is not an integer, float or boolean")));
        };
        let span = text.spans.get(start).map(|(s, e, _)| resnetc_compiler::Span::new(id, *s, *e));
        result.push(Override { name: name.to_string(), value: v, span });
    }
    Ok((result, (id, text)))
}

/// Inline tokens: the spec text is the tokens, and diagnostics point at them.
fn inline(input: TokenStream) -> TokenStream {
    let text = TokenText::new(input);
    let mut compilation = Compilation::new();
    let id = compilation.add_source("<network! input>", text.text.clone());
    match compilation.check(id, &[]).and_then(|n| resnetc_compiler::emit::emit_tokens(&n)) {
        Ok(code) => code,
        Err(diagnostics) => errors(&compilation, &diagnostics, Some((id, &text)), None, Span::call_site()),
    }
}

/// One `compile_error!` per diagnostic, at the most precise span available.
fn errors(
    compilation: &Compilation,
    diagnostics: &[Diagnostic],
    inline: Option<(SourceId, &TokenText)>,
    args: Option<&(SourceId, TokenText)>,
    fallback: Span,
) -> TokenStream {
    let mut out = TokenStream::new();
    for d in diagnostics {
        let mapped = d.span.and_then(|s| {
            let table = match (inline, args) {
                (Some((id, t)), _) if id == s.source => Some(t),
                (_, Some((id, t))) if *id == s.source => Some(t),
                _ => None,
            }?;
            table.span_of(s.start, s.end)
        });
        let message = match (mapped, inline) {
            // Inline: rustc shows the span, so the message stays short.
            (Some(_), Some(_)) => {
                let mut m = d.message.clone();
                if let Some(h) = &d.help {
                    m.push_str(&format!("\nhelp: {h}"));
                }
                m
            }
            _ => compilation.render(std::slice::from_ref(d), false),
        };
        out.extend(error(mapped.unwrap_or(fallback), &message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn root() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
    }

    /// Both sides parsed and printed the same way; the macro's `include_bytes!` item is checked and dropped.
    fn normalise_expansion(tokens: TokenStream, spec: &Path) -> String {
        let mut file: syn::File = syn::parse2(tokens).unwrap();
        let first = file.items.remove(0);
        let full = spec.display().to_string();
        assert_eq!(
            quote!(#first).to_string(),
            quote!(
                const _: &[u8] = include_bytes!(#full);
            )
            .to_string()
        );
        prettyplease::unparse(&file)
    }

    fn normalise_text(code: &str) -> String {
        prettyplease::unparse(&syn::parse_str::<syn::File>(code).unwrap())
    }

    /// The macro expands to the same tokens `resnetc compile` writes (its `//` comments aside).
    #[test]
    fn expansion_equals_the_cli_output() {
        let expanded = expand(quote!("specs/wrn-28-10.net", classes = 100), root());
        let mut c = Compilation::new();
        let text = std::fs::read_to_string(root().join("specs/wrn-28-10.net")).unwrap();
        let id = c.add_source("specs/wrn-28-10.net", text);
        let emitted = c.compile(id, &[Override::parse("classes=100").unwrap()]).unwrap();
        assert_eq!(normalise_expansion(expanded, &root().join("specs/wrn-28-10.net")), normalise_text(&emitted));
    }

    /// The build-script API writes the same code the macro expands to, for the same spec and overrides.
    #[test]
    fn build_script_output_equals_the_expansion() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let spec = "../../specs/se-resnet-20.net";
        let dir = std::env::temp_dir().join(format!("resnetc-macro-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let generated = resnetc_compiler::Build::new()
            .spec(here.join(spec))
            .set("classes", 100)
            .out_dir(&dir)
            .quiet(true)
            .compile()
            .unwrap();
        let written = std::fs::read_to_string(&generated.files[0]).unwrap();
        let expanded = expand(quote!(#spec, classes = 100), here);
        // The build script names the spec by the path it was given: align that one string.
        let written = written.replace(&here.join(spec).display().to_string(), spec);
        assert_eq!(normalise_expansion(expanded, &here.join(spec)), normalise_text(&written));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn inline_specs_expand() {
        let out = expand(
            quote! {
                network tiny(classes = 10) {
                    input 3x32x32
                    conv3x3(16) bn relu
                    stage 2 x basic(16)
                    global_avg_pool linear(classes)
                }
            },
            root(),
        )
        .to_string();
        assert!(out.contains("pub struct Tiny"), "{out}");
        assert!(!out.contains("compile_error"));
    }

    #[test]
    fn inline_errors_point_at_the_token() {
        let out = expand(
            quote! { network tiny(classes = 10) { input 3x32x32 basc(16) global_avg_pool linear(classes) } },
            root(),
        );
        let text = out.to_string();
        assert!(text.contains("compile_error"), "{text}");
        assert!(text.contains("did you mean `basic`?"), "{text}");
    }

    #[test]
    fn file_errors_carry_the_rendered_diagnostic() {
        let out = expand(quote!("tests/errors/unknown-block.net"), root()).to_string();
        assert!(out.contains("tests/errors/unknown-block.net:4:"), "{out}");
        let out = expand(quote!("specs/resnet-20.net", clases = 100), root()).to_string();
        assert!(out.contains("did you mean `classes`?"), "{out}");
        let out = expand(quote!("specs/nope.net"), root()).to_string();
        assert!(out.contains("cannot read specs/nope.net"), "{out}");
    }
}
