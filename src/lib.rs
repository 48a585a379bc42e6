//! resnetc: a declarative architecture compiler for residual networks.
//!
//! This crate is the `resnetc` command line and the front door for Rust users:
//! [`network!`] expands a `.net` spec into Burn model code at compile time, and
//! [`compiler`] (the `resnetc-compiler` crate) has the build-script API
//! ([`compiler::Build`]) and every stage of the compiler; [`draw`] is `resnetc draw`'s
//! diagrams.

pub use resnetc_compiler as compiler;
pub use resnetc_macros::network;

pub mod draw;
