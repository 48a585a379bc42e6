#![doc = include_str!("../ARCHITECTURE.md")]

pub mod build;
pub mod check;
pub mod diag;
pub mod emit;
pub mod ir;
pub mod names;
pub mod syntax;

pub use build::{Build, BuildError, Generated};
pub use check::Override;
pub use diag::{Diagnostic, SourceId, Sources, Span};
pub use ir::{Network, Value};

/// The prelude: the standard blocks (`basic`, `bottleneck`, ...) every spec can call.
pub const PRELUDE: &str = include_str!("std.net");
/// The name diagnostics use for the prelude.
pub const PRELUDE_NAME: &str = "<resnetc>/std.net";

/// The parsed prelude, shared by every compilation (it is always source 0).
pub fn prelude() -> &'static syntax::ast::File {
    static PARSED: std::sync::LazyLock<syntax::ast::File> =
        std::sync::LazyLock::new(|| syntax::parse(PRELUDE, SourceId(0)).expect("the prelude parses (tested)"));
    &PARSED
}

/// One compilation: the texts it read, so diagnostics can be rendered against them.
#[derive(Debug, Default)]
pub struct Compilation {
    pub sources: Sources,
}

impl Compilation {
    /// Start a compilation with the prelude loaded.
    pub fn new() -> Self {
        let mut sources = Sources::default();
        sources.add(PRELUDE_NAME, PRELUDE);
        Compilation { sources }
    }

    /// Register a spec's text under `name` (a path, or `<inline>`).
    pub fn add_source(&mut self, name: impl Into<String>, text: impl Into<String>) -> SourceId {
        self.sources.add(name, text)
    }

    /// Stage 1: parse a registered text.
    pub fn parse(&self, id: SourceId) -> Result<syntax::ast::File, Vec<Diagnostic>> {
        syntax::parse(&self.sources.get(id).text, id)
    }

    /// Stages 1–2: parse and check a registered text.
    pub fn check(&self, id: SourceId, overrides: &[Override]) -> Result<Network, Vec<Diagnostic>> {
        let user = self.parse(id)?;
        check::check(prelude(), &user, &self.sources.get(id).name, overrides)
    }

    /// Stages 1–4: parse, check and emit formatted Burn source.
    pub fn compile(&self, id: SourceId, overrides: &[Override]) -> Result<String, Vec<Diagnostic>> {
        let network = self.check(id, overrides)?;
        emit::emit(&network)
    }

    /// Render diagnostics against this compilation's texts.
    pub fn render(&self, diagnostics: &[Diagnostic], color: bool) -> String {
        self.sources.render(diagnostics, color)
    }
}

/// Compile one spec text to Burn source in one call; errors come back rendered without colour.
pub fn compile_str(name: &str, text: &str, overrides: &[Override]) -> Result<String, String> {
    let mut c = Compilation::new();
    let id = c.add_source(name, text);
    c.compile(id, overrides).map_err(|d| c.render(&d, false))
}
