//! Structure-aware: specs generated from the language's constructs, through every stage.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = arbitrary::Unstructured::new(data);
    if let Ok(text) = resnetc_compiler::fuzzing::generate(&mut u) {
        resnetc_compiler::fuzzing::spec(text.as_bytes());
    }
});
