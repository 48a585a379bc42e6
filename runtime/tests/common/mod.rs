//! Helpers shared by the integration tests.

use resnetc_compiler::Compilation;

/// A shipped spec (path relative to the workspace root) checked with `--set NAME=VALUE`
/// overrides; panics with the rendered diagnostics if it does not check.
pub fn network_with(path: &str, set: &[&str]) -> resnetc_compiler::Network {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let text = std::fs::read_to_string(format!("{root}/{path}")).unwrap();
    let mut c = Compilation::new();
    let id = c.add_source(path, text);
    let overrides: Vec<resnetc_compiler::Override> =
        set.iter().map(|s| resnetc_compiler::Override::parse(s).unwrap()).collect();
    c.check(id, &overrides).unwrap_or_else(|d| panic!("{}", c.render(&d, false)))
}
