//! Parameter and MAC counts of every shipped spec, for 10 and 100 classes, equal the
//! PyTorch reference implementations' (recorded by benches/reference/counts.py).

mod common;

use resnetc_compiler::{Override, Value};

#[test]
fn counts_match_the_pytorch_reference() {
    let table = std::fs::read_to_string(common::root().join("benches/reference/counts.tsv")).unwrap();
    let mut rows = 0;
    let mut seen = std::collections::BTreeSet::new();
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [spec, classes, params, macs] = cols[..] else { panic!("bad row {line}") };
        let classes: i64 = classes.parse().unwrap();
        let set = [Override { name: "classes".into(), value: Value::Int(classes), span: None }];
        let network = common::check(&format!("specs/{spec}.net"), &set);
        assert_eq!(
            network.trainable_params,
            params.parse::<u64>().unwrap(),
            "{spec} with {classes} classes: parameters"
        );
        assert_eq!(network.macs, macs.parse::<u64>().unwrap(), "{spec} with {classes} classes: MACs");
        seen.insert(spec.to_string());
        rows += 1;
    }
    for file in common::net_files("specs").into_iter().chain(common::net_files("specs/ablations")) {
        let spec = file.trim_start_matches("specs/").trim_end_matches(".net");
        assert!(seen.contains(spec), "{spec} is missing from benches/reference/counts.tsv");
    }
    assert!(rows >= 62);
}

/// Sanity figures quoted in the issue, independent of the table.
#[test]
fn headline_counts() {
    let p = |spec: &str| common::check(spec, &[]).trainable_params;
    assert_eq!(p("specs/resnet-20.net"), 272_474);
    assert_eq!(p("specs/resnet-20-a.net"), 269_722);
    assert_eq!(p("specs/wrn-28-10.net"), 36_479_194);
    assert_eq!(p("specs/densenet-bc-100-12.net"), 769_162);
}

/// The ImageNet specs (specs/imagenet) count like timm 1.0's models at 1000 classes (recorded
/// by benches/reference/timm_counts.py in benches/reference/imagenet_counts.tsv).
#[test]
fn imagenet_counts_match_timm() {
    let table = std::fs::read_to_string(common::root().join("benches/reference/imagenet_counts.tsv")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [spec, timm, params, macs] = cols[..] else { panic!("bad row {line}") };
        let network = common::check(&format!("specs/imagenet/{spec}.net"), &[]);
        assert_eq!(network.trainable_params, params.parse::<u64>().unwrap(), "{spec} ({timm}): parameters");
        assert_eq!(network.macs, macs.parse::<u64>().unwrap(), "{spec} ({timm}): MACs");
        seen.insert(spec.to_string());
    }
    for file in common::net_files("specs/imagenet") {
        let spec = file.trim_start_matches("specs/imagenet/").trim_end_matches(".net");
        assert!(seen.contains(spec), "{spec} is missing from benches/reference/imagenet_counts.tsv");
    }
    assert!(seen.len() >= 3);
}

/// The oracle's Res2Net case (tests/cases/res2net.net, checked against timm's `Bottle2neck`)
/// holds the ImageNet spec's blocks unchanged, so the oracle covers the shipped spec's code.
#[test]
fn res2net_oracle_case_has_the_specs_blocks() {
    let read = |path: &str| std::fs::read_to_string(common::root().join(path)).unwrap();
    let blocks = |text: &str| {
        let start = text.find("# One step of the hierarchy").expect("the blocks' first comment");
        let end = text.find("network ").expect("a network");
        text[start..end].to_string()
    };
    let spec = blocks(&read("specs/imagenet/res2net-50-26w-4s.net"));
    let case = blocks(&read("tests/cases/res2net.net"));
    assert!(spec.contains("block res2net_bottleneck") && spec.contains("block res2_step"));
    assert_eq!(case, spec, "tests/cases/res2net.net's blocks differ from the spec's");
}
