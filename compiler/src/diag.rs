//! Diagnostics: errors are plain data with byte spans, rendered once at the edge.
//!
//! Every stage reports problems as [`Diagnostic`] values. Nothing below the
//! front doors (CLI, build script, macro) prints or panics on user input; the
//! front doors render with [`Sources::render`] (miette) or, in the macro, turn
//! the span into a `compile_error!`.

use std::fmt;

/// Which loaded text a [`Span`] points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SourceId(pub u32);

/// A byte range in one source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Span {
    pub source: SourceId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// Make a span covering `start..end` of `source`.
    pub fn new(source: SourceId, start: usize, end: usize) -> Self {
        Span { source, start, end }
    }

    /// Join two spans of the same source into one covering both.
    pub fn to(self, other: Span) -> Span {
        Span { source: self.source, start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// One loaded source text and the name it is reported under.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// All texts a compilation read: the prelude and the user's files.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    /// Register a text under `name` and return its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> SourceId {
        self.files.push(SourceFile { name: name.into(), text: text.into() });
        SourceId(self.files.len() as u32 - 1)
    }

    /// Look up a registered text.
    pub fn get(&self, id: SourceId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// The text a span covers.
    pub fn snippet(&self, span: Span) -> &str {
        let text = &self.get(span.source).text;
        text.get(span.start..span.end.min(text.len())).unwrap_or("")
    }

    /// The 1-based line and column (in characters) where a span starts.
    pub fn line_col(&self, span: Span) -> (usize, usize) {
        let text = &self.get(span.source).text;
        let start = span.start.min(text.len());
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// `file:line:col` of a span.
    pub fn location(&self, span: Span) -> String {
        let (line, col) = self.line_col(span);
        format!("{}:{}:{}", self.get(span.source).name, line, col)
    }

    /// Render diagnostics as miette reports, colour only when `color` is set.
    pub fn render(&self, diagnostics: &[Diagnostic], color: bool) -> String {
        use miette::{GraphicalReportHandler, GraphicalTheme};
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
        let mut out = String::new();
        for diagnostic in diagnostics {
            let report = Report::new(self, diagnostic);
            if handler.render_report(&mut out, &report).is_err() {
                out.push_str(&self.render_plain(diagnostic));
            }
        }
        out
    }

    /// Render one diagnostic as a single `file:line:col: error: message` line plus its help.
    pub fn render_plain(&self, diagnostic: &Diagnostic) -> String {
        let mut out = match diagnostic.span {
            Some(span) => format!("{}: error[{}]: {}", self.location(span), diagnostic.code, diagnostic.message),
            None => format!("error[{}]: {}", diagnostic.code, diagnostic.message),
        };
        if let Some(help) = &diagnostic.help {
            out.push_str(&format!("\n  help: {help}"));
        }
        out.push('\n');
        out
    }
}

/// A secondary place a diagnostic points at, with what it says there.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub span: Span,
    pub message: String,
}

/// One problem found in a spec: what, where, and what would fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Stable short code, e.g. `E0301`, listed in [`crate::diag::codes`].
    pub code: &'static str,
    pub message: String,
    pub span: Option<Span>,
    /// Text under the primary span (defaults to the message).
    pub label: Option<String>,
    pub notes: Vec<Note>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// Make an error at `span`.
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { code, message: message.into(), span: Some(span), label: None, notes: vec![], help: None }
    }

    /// Make an error that has no place in a text (a missing file, say).
    pub fn global(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic { code, message: message.into(), span: None, label: None, notes: vec![], help: None }
    }

    /// Set the text under the primary span.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Add a hint on how to fix it.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Point at a second place.
    pub fn note(mut self, span: Span, message: impl Into<String>) -> Self {
        self.notes.push(Note { span, message: message.into() });
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// The error codes, one per kind of defect.
pub mod codes {
    pub const SYNTAX: &str = "E0001";
    pub const IO: &str = "E0002";
    pub const DUPLICATE_DEFINITION: &str = "E0101";
    pub const NO_NETWORK: &str = "E0102";
    pub const UNKNOWN_NAME: &str = "E0103";
    pub const UNKNOWN_BLOCK: &str = "E0104";
    pub const UNKNOWN_ARGUMENT: &str = "E0105";
    pub const MISSING_ARGUMENT: &str = "E0106";
    pub const DUPLICATE_ARGUMENT: &str = "E0107";
    pub const TOO_MANY_ARGUMENTS: &str = "E0108";
    pub const UNKNOWN_PARAMETER: &str = "E0109";
    pub const BAD_OVERRIDE: &str = "E0110";
    pub const MISPLACED: &str = "E0111";
    pub const SHADOWS_PRIMITIVE: &str = "E0112";
    pub const TYPE: &str = "E0201";
    pub const ARITHMETIC: &str = "E0202";
    pub const OVERFLOW: &str = "E0203";
    pub const VALUE_RANGE: &str = "E0204";
    pub const ASSERTION: &str = "E0205";
    pub const STAGE_COUNT: &str = "E0206";
    pub const SHAPE: &str = "E0301";
    pub const GROUPS: &str = "E0302";
    pub const RESIDUAL_SHAPE: &str = "E0303";
    pub const CONCAT_SHAPE: &str = "E0304";
    pub const EMPTY_OUTPUT: &str = "E0305";
    pub const OUTPUT_RANK: &str = "E0306";
    pub const MERGE: &str = "E0307";
    pub const LIMIT: &str = "E0401";
    pub const RECURSION: &str = "E0402";
    pub const EMIT: &str = "E0501";
}

/// Adapts a [`Diagnostic`] to miette for rendering.
struct Report<'a> {
    sources: &'a Sources,
    diagnostic: &'a Diagnostic,
    source: Option<miette::NamedSource<String>>,
    related: Vec<Report<'a>>,
    labels: Vec<miette::LabeledSpan>,
    message: String,
}

impl<'a> Report<'a> {
    fn new(sources: &'a Sources, diagnostic: &'a Diagnostic) -> Self {
        let mut labels = Vec::new();
        let mut related = Vec::new();
        let source = diagnostic.span.map(|span| {
            let file = sources.get(span.source);
            labels.push(miette::LabeledSpan::new_primary_with_span(
                Some(diagnostic.label.clone().unwrap_or_else(|| diagnostic.message.clone())),
                (span.start, span.end.saturating_sub(span.start)),
            ));
            miette::NamedSource::new(file.name.clone(), file.text.clone())
        });
        for note in &diagnostic.notes {
            if Some(note.span.source) == diagnostic.span.map(|s| s.source) {
                labels.push(miette::LabeledSpan::new_with_span(
                    Some(note.message.clone()),
                    (note.span.start, note.span.end.saturating_sub(note.span.start)),
                ));
            } else {
                let file = sources.get(note.span.source);
                related.push(Report {
                    sources,
                    diagnostic,
                    source: Some(miette::NamedSource::new(file.name.clone(), file.text.clone())),
                    related: vec![],
                    labels: vec![miette::LabeledSpan::new_primary_with_span(
                        Some(note.message.clone()),
                        (note.span.start, note.span.end.saturating_sub(note.span.start)),
                    )],
                    message: note.message.clone(),
                });
            }
        }
        let message = diagnostic.message.clone();
        Report { sources, diagnostic, source, related, labels, message }
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        if self.message == self.diagnostic.message { Some(Box::new(self.diagnostic.code)) } else { None }
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        if self.message == self.diagnostic.message {
            self.diagnostic.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
        } else {
            None
        }
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.labels.is_empty() { None } else { Some(Box::new(self.labels.iter().cloned())) }
    }

    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.related.is_empty() {
            None
        } else {
            let _ = self.sources;
            Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
        }
    }
}
