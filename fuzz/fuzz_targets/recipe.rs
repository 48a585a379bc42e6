//! See resnetc_runtime::fuzzing::recipe.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| resnetc_runtime::fuzzing::recipe(data));
