//! Replays the runtime fuzzers' committed corpora (`fuzz/corpus/<target>/`) and every finding
//! kept as a regression (`fuzz/regressions/<target>/`) through the properties they check
//! (`resnetc_runtime::fuzzing`). No fuzzing here: `fuzz/README.md` runs the fuzzers.

use resnetc_compiler::fuzzing::{inputs, replay};
use resnetc_runtime::fuzzing;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn replay_target(target: &str, property: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    replay(&inputs(&fuzz.join("corpus").join(target)), LIMIT, property)
        + replay(&inputs(&fuzz.join("regressions").join(target)), LIMIT, property)
}

#[test]
fn the_recipe_corpus_and_findings_replay() {
    assert!(replay_target("recipe", fuzzing::recipe) > 0);
}

#[test]
fn the_archive_corpus_and_findings_replay() {
    assert!(replay_target("archive", fuzzing::archive) > 0);
}

#[test]
fn the_cifar_corpus_and_findings_replay() {
    assert!(replay_target("cifar", fuzzing::cifar) > 0);
}

#[test]
fn the_checkpoint_corpus_and_findings_replay() {
    assert!(replay_target("checkpoint", fuzzing::checkpoint) > 0);
}

/// The checkpoint fuzzer's seed is a real checkpoint: it loads and runs.
#[test]
fn the_checkpoint_seed_loads() {
    fuzzing::checkpoint(&fuzzing::checkpoint_seed());
}

/// Writes the checkpoint fuzzer's seed, `fuzz/corpus/checkpoint/seed-valid.bpk` (run by hand
/// when the checkpoint format changes: `cargo test -p resnetc-runtime --test fuzz_replay --
/// --ignored`).
#[test]
#[ignore]
fn write_the_checkpoint_seed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/checkpoint");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seed-valid.bpk"), fuzzing::checkpoint_seed()).unwrap();
}
