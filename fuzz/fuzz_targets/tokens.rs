//! `network!`'s token path: text → Rust tokens → the macro's expansion, which must parse.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| resnetc_compiler::fuzzing::tokens(data));
