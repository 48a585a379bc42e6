//! The example's two programs run and print what they promise (`cargo test --workspace` builds
//! them with the tests' dependency features, so running them here costs no second Burn build,
//! which `cargo run -p resnetc-example-embedded` on its own would).

use std::process::Command;

fn run(program: &str) -> String {
    let out = Command::new(program).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{program}: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_embedded_networks_run() {
    let out = run(env!("CARGO_BIN_EXE_resnetc-example-embedded"));
    // resnet-20 and se-resnet-20 are embedded for CIFAR-100 (build.rs and `network!` set
    // classes = 100); ResNet-20's trainable parameters are PyTorch's count for it.
    for (name, classes) in [("resnet-20 ", 100), ("se-resnet-20 ", 100), ("tiny (inline) ", 10)] {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} line:\n{out}"));
        assert!(line.ends_with(&format!("output [4, {classes}]")), "{line}");
    }
    assert!(out.contains("trainable params    278324"), "{out}");
}

#[test]
fn the_embedded_network_trains_through_the_runtime() {
    let out = run(env!("CARGO_BIN_EXE_train"));
    let summary: serde_json::Value = out
        .lines()
        .find_map(|l| l.strip_prefix("trained: "))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_else(|| panic!("no summary line:\n{out}"));
    assert!(out.contains("embedded struct with the trained weights: logits [1, 10]"), "{out}");
    let top1: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("test top-1 "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no test top-1 line:\n{out}"));
    // Three classes told apart by colour: learnt in two epochs, and the embedded weights score
    // on the runtime's evaluation what the run reported.
    let reported = summary["test_accuracy"].as_f64().unwrap() * 100.0;
    assert!(top1 > 90.0 && (top1 - reported).abs() < 0.01, "{out}");
}
