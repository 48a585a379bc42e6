//! Helpers shared by the integration tests.
#![allow(dead_code)]

use resnetc_compiler::{Compilation, Override};
use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.net` files of a folder, sorted, as paths relative to the root.
pub fn net_files(folder: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .map(|p| format!("{folder}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

/// Load a spec into a fresh compilation.
pub fn load(path: &str) -> (Compilation, resnetc_compiler::SourceId) {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let mut c = Compilation::new();
    let id = c.add_source(path, text);
    (c, id)
}

/// Check a spec, panicking with the rendered diagnostics if it fails.
pub fn check(path: &str, overrides: &[Override]) -> resnetc_compiler::Network {
    let (c, id) = load(path);
    c.check(id, overrides).unwrap_or_else(|d| panic!("{}", c.render(&d, false)))
}

/// Snapshot name for a spec path: `specs/resnet-20.net` → `specs__resnet-20`.
pub fn snapshot_name(path: &str) -> String {
    Path::new(path).with_extension("").to_string_lossy().replace('/', "__")
}

/// Run the `resnetc` binary from the repository root, without colours.
pub fn resnetc(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_resnetc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Lossy UTF-8 of a process's output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
