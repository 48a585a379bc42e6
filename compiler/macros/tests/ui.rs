//! The macro's error messages, pinned: each case must fail to compile with exactly its `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
