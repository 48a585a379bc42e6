//! Stage 1, syntax: `.net` text → [`ast::File`].
//!
//! The grammar is `grammar.pest`; [`parse`] is the one entry point.

pub mod ast;
mod parser;

pub use parser::{MAX_NESTING, MAX_SOURCE_BYTES, parse};
