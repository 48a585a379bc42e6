//! The `network!` macro's expansion, here rather than in the proc-macro crate so that tests and
//! the fuzzer can call it with `proc_macro2` tokens (a proc-macro crate exports only macros).
//! `resnetc-macros` is a one-line shell over [`expand`].

use crate::diag::{Diagnostic, SourceId};
use crate::{Compilation, Override};
use proc_macro2::{Delimiter, Spacing, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};

/// The expansion of `network!(input)` for a crate whose manifest is in `manifest_dir`: the
/// emitted code, or one `compile_error!` per diagnostic. Never panics, whatever the tokens
/// (fuzzed: `fuzz/fuzz_targets/tokens.rs`).
pub fn expand(input: TokenStream, manifest_dir: &std::path::Path) -> TokenStream {
    expand_with(input, &|relative: &str| {
        let full = manifest_dir.join(relative);
        std::fs::read_to_string(&full)
            .map(|text| (full.display().to_string(), text))
            .map_err(|e| format!("cannot read {relative} (relative to {}): {e}", manifest_dir.display()))
    })
}

/// A spec file's full path (for `include_bytes!`) and text, or why it cannot be read.
pub type ReadSpec<'a> = &'a dyn Fn(&str) -> Result<(String, String), String>;

/// [`expand`], with the reading of a spec file given (the fuzzer reads no files).
pub fn expand_with(input: TokenStream, read: ReadSpec) -> TokenStream {
    let mut tokens = input.clone().into_iter().peekable();
    match tokens.peek() {
        Some(TokenTree::Literal(lit))
            if syn::parse2::<syn::LitStr>(TokenStream::from(TokenTree::Literal(lit.clone()))).is_ok() =>
        {
            from_file(input, read)
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
fn from_file(input: TokenStream, read: ReadSpec) -> TokenStream {
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
    let (full, text) = match read(&relative) {
        Ok(read) => read,
        Err(message) => return error(path_span, &message),
    };
    let id = compilation.add_source(relative.clone(), text);
    match compilation.check(id, &overrides).and_then(|n| crate::emit::emit_tokens(&n)) {
        Ok(code) => {
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
        let Some(v) = crate::check::parse_value(&value_text) else {
            return Err(error(value[0].span(), &format!("`{value_text}` is not an integer, float or boolean")));
        };
        let span = text.spans.get(start).map(|(s, e, _)| crate::Span::new(id, *s, *e));
        result.push(Override { name: name.to_string(), value: v, span });
    }
    Ok((result, (id, text)))
}

/// Inline tokens: the spec text is the tokens, and diagnostics point at them.
fn inline(input: TokenStream) -> TokenStream {
    let text = TokenText::new(input);
    let mut compilation = Compilation::new();
    let id = compilation.add_source("<network! input>", text.text.clone());
    match compilation.check(id, &[]).and_then(|n| crate::emit::emit_tokens(&n)) {
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
