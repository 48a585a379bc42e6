//! `.net` text → parse → check → emit → `syn::parse_file` (resnetc_compiler::fuzzing::spec).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| resnetc_compiler::fuzzing::spec(data));
