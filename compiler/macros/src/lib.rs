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

/// Expand a `.net` spec (a file path with overrides, or inline tokens) into Burn model code.
#[proc_macro]
pub fn network(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    resnetc_compiler::network_macro::expand(input.into(), std::path::Path::new(&dir)).into()
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;
    use resnetc_compiler::network_macro::expand;
    use resnetc_compiler::{Compilation, Override};
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
