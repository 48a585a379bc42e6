//! Replays the fuzzers' committed corpora (`fuzz/corpus/<target>/`) and every finding kept as a
//! regression (`fuzz/regressions/<target>/`) through the properties the fuzzers check
//! (`resnetc_compiler::fuzzing`), and the seed specs (`specs/`, `tests/`). No fuzzing here: see
//! `fuzz/README.md` to run the fuzzers.

use resnetc_compiler::fuzzing;
use resnetc_compiler::fuzzing::{inputs, replay};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus(kind: &str, target: &str) -> Vec<PathBuf> {
    inputs(&root().join("fuzz").join(kind).join(target))
}

fn generated(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    if let Ok(text) = fuzzing::generate(&mut u) {
        fuzzing::spec(text.as_bytes());
    }
}

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn the_spec_corpus_and_findings_replay() {
    let n = replay(&corpus("corpus", "spec"), LIMIT, fuzzing::spec)
        + replay(&corpus("regressions", "spec"), LIMIT, fuzzing::spec);
    assert!(n > 0, "no committed spec corpus under fuzz/");
}

#[test]
fn the_generated_spec_corpus_replays() {
    let n = replay(&corpus("corpus", "spec_gen"), LIMIT, generated)
        + replay(&corpus("regressions", "spec_gen"), LIMIT, generated);
    assert!(n > 0, "no committed spec_gen corpus under fuzz/");
}

#[test]
fn the_network_macro_token_corpus_and_findings_replay() {
    let n = replay(&corpus("corpus", "tokens"), LIMIT, fuzzing::tokens)
        + replay(&corpus("regressions", "tokens"), LIMIT, fuzzing::tokens);
    assert!(n > 0, "no committed tokens corpus under fuzz/");
}

/// The seeds: every spec in the repository passes the fuzzers' property.
#[test]
fn every_spec_in_the_repository_passes_the_property() {
    let mut specs = Vec::new();
    for dir in ["specs", "tests"] {
        collect(&root().join(dir), &mut specs);
    }
    specs.sort();
    assert!(replay(&specs, LIMIT, fuzzing::spec) > 50);
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "net") {
            out.push(path);
        }
    }
}

/// Brackets nested sixty deep parsed in 2^60 steps before `paren` merged `(e)` and `(a, b)`
/// (found by fuzzing, 2026-12-03): now at once, and nesting beyond the limit is a diagnostic.
#[test]
fn nested_brackets_parse_in_linear_time() {
    let deep = format!("network n {{ input 3x8x8 conv({}8{}) }}", "(".repeat(60), ")".repeat(60));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(resnetc_compiler::compile_str("deep.net", &deep, &[])));
    let e =
        rx.recv_timeout(Duration::from_secs(30)).expect("sixty nested brackets parse in well under 30 s").unwrap_err();
    assert!(!e.contains("brackets nested"), "{e}");
    let deeper = format!("network n {{ input 3x8x8 conv({}8{}) }}", "(".repeat(200), ")".repeat(200));
    let e = resnetc_compiler::compile_str("deep.net", &deeper, &[]).unwrap_err();
    assert!(e.contains("brackets nested more than 64 deep"), "{e}");
}
