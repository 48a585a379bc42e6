//! See resnetc_runtime::fuzzing::cifar.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| resnetc_runtime::fuzzing::cifar(data));
