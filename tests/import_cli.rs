//! `resnetc import`: a PyTorch training checkpoint (tests/oracle/tiny.pth, written by
//! tests/oracle/make.py as bearpaw's scripts write theirs) into a checkpoint whose network
//! gives PyTorch's logits, by order and by renamed names; and its refusals of files that do
//! not fit.
#![cfg(feature = "train")]

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use common::{resnetc, root, text};
use std::path::PathBuf;

const TINY: &str = "network tiny(classes = 10) {\n    input 3x32x32\n    conv3x3(8)\n    bn relu\n    stage 1 × basic(8)\n    global_avg_pool linear(classes)\n}\n";

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resnetc-import-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn checkpoint() -> String {
    root().join("tests/oracle/tiny.pth").display().to_string()
}

/// The eval-mode logits of the imported weights against PyTorch's (largest difference over
/// the largest magnitude).
fn logits_error(spec: &str, weights: &str) -> f64 {
    let device = Device::flex();
    let network = common::check(spec, &[]);
    let model = resnetc_runtime::model::DynNet::new(&network, &device).load_file(weights);
    let bytes = std::fs::read(root().join("tests/oracle/tiny-expected.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let read = |name: &str| {
        let view = file.tensor(name).unwrap();
        let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        TensorData::new(values, view.shape().to_vec())
    };
    let got = model.forward(Tensor::from_data(read("input"), &device)).into_data().try_to_vec::<f32>().unwrap();
    let want = read("eval_logits").try_to_vec::<f32>().unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    f64::from(got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale)
}

#[test]
fn a_pytorch_checkpoint_imports_by_order_and_by_name() {
    let dir = temp("ok");
    let spec = dir.join("tiny.net");
    std::fs::write(&spec, TINY).unwrap();
    let spec = spec.to_str().unwrap();

    let by_order = dir.join("by-order.bpk").display().to_string();
    let run = resnetc(&["import", spec, &checkpoint(), "-o", &by_order, "--by-order"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("17 tensors of tiny imported"), "{}", text(&run.stdout));
    let e = logits_error(spec, &by_order);
    assert!(e < 1e-5, "imported weights give PyTorch's logits: {e:e}");

    // The same by name: DataParallel's `module.` dropped, the block and the classifier renamed.
    let by_name = dir.join("by-name.bpk").display().to_string();
    let run = resnetc(&[
        "import",
        spec,
        &checkpoint(),
        "-o",
        &by_name,
        "--rename",
        r"^module\.=",
        "--rename",
        r"^block\.(conv|bn)(\d)\.=stage1.0.$1$2.",
        "--rename",
        r"^fc\.=linear1.",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let e = logits_error(spec, &by_name);
    assert!(e < 1e-5, "imported by name, the same logits: {e:e}");

    // `eval`, `lesion` and `train --init` read it as any checkpoint (loads into the network).
    let network = common::check(spec, &[]);
    let model = resnetc_runtime::model::DynNet::new(&network, &Device::flex());
    assert!(model.try_load_file(&by_name).is_ok());
}

#[test]
fn files_that_do_not_fit_are_refused_with_every_problem() {
    let dir = temp("bad");
    let spec = dir.join("tiny.net");
    std::fs::write(&spec, TINY).unwrap();
    let spec = spec.to_str().unwrap();
    let out = dir.join("out.bpk");
    let out_s = out.display().to_string();
    let refuse = |args: &[&str], expected: &[&str]| {
        let run = resnetc(args);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{args:?}: `{e}` not in\n{stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.exists(), "nothing written for a refused import");
    };

    // By name without renames: every tensor missing and every file tensor unexpected.
    refuse(
        &["import", spec, &checkpoint(), "-o", &out_s],
        &["tiny.pth does not fit tiny", "missing: conv1.weight [8, 3, 3, 3]", "unexpected: module.fc.weight [10, 8]"],
    );
    // Another network: the mis-shaped tensors, with both shapes.
    refuse(
        &["import", spec, "--set", "classes=100", &checkpoint(), "-o", &out_s, "--by-order"],
        &["shape: module.fc.weight is [10, 8] in the file, linear1.weight [100, 8] in the network"],
    );
    refuse(
        &["import", "specs/resnet-20.net", &checkpoint(), "-o", &out_s, "--by-order"],
        &["tiny.pth has 17 tensors (num_batches_tracked not counted), the network"],
    );
    // Not a PyTorch file, a file cut short, a missing file, a bad pattern, both mappings.
    let junk = dir.join("junk.pth");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    refuse(&["import", spec, junk.to_str().unwrap(), "-o", &out_s, "--by-order"], &["cannot read", "junk.pth"]);
    let bytes = std::fs::read(checkpoint()).unwrap();
    let cut = dir.join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refuse(&["import", spec, cut.to_str().unwrap(), "-o", &out_s, "--by-order"], &["cannot read", "cut.pth"]);
    refuse(&["import", spec, "no/such.pth", "-o", &out_s], &["cannot read no/such.pth"]);
    let bad = resnetc(&["import", spec, &checkpoint(), "-o", &out_s, "--rename", "(=x"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error: {}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("--rename"), "{}", text(&bad.stderr));
    let both = resnetc(&["import", spec, &checkpoint(), "-o", &out_s, "--by-order", "--rename", "a=b"]);
    assert_eq!(both.status.code(), Some(2), "{}", text(&both.stderr));
}

/// `resnetc export`: imported weights out as ONNX (the graph's contents are checked in
/// runtime/tests/oracle.rs), and its refusals.
#[test]
fn imported_weights_export_to_onnx() {
    let dir = temp("export");
    let spec = dir.join("tiny.net");
    std::fs::write(&spec, TINY).unwrap();
    let spec = spec.to_str().unwrap();
    let bpk = dir.join("tiny.bpk").display().to_string();
    let run = resnetc(&["import", spec, &checkpoint(), "-o", &bpk, "--by-order"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));

    let onnx = dir.join("tiny.onnx");
    let onnx_s = onnx.display().to_string();
    let run = resnetc(&["export", spec, "--weights", &bpk, "-o", &onnx_s]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("input [batch, 3, 32, 32]"), "{}", text(&run.stdout));
    let bytes = std::fs::read(&onnx).unwrap();
    // An ONNX ModelProto starts with field 1 (ir_version, a varint): tag byte 0x08.
    assert_eq!(bytes[0], 0x08, "a protobuf ModelProto");
    let run = resnetc(&["export", spec, "--weights", &bpk, "-o", &onnx_s, "--batch", "4"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("input [4, 3, 32, 32]"), "{}", text(&run.stdout));

    let refuse = |args: &[&str], expected: &str| {
        let out = dir.join("refused.onnx");
        let mut args = args.to_vec();
        let out_s = out.display().to_string();
        args.extend(["-o", &out_s]);
        let run = resnetc(&args);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: `{expected}` not in\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.exists(), "nothing written for a refused export");
    };
    // Weights of another network, no weights, not weights, an empty batch.
    refuse(&["export", "specs/resnet-20.net", "--weights", &bpk], "cannot load into resnet_20");
    refuse(&["export", spec, "--weights", "no/such.bpk"], "no/such.bpk: cannot load into tiny");
    let junk = dir.join("junk.bpk");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    refuse(&["export", spec, "--weights", junk.to_str().unwrap()], "junk.bpk: cannot load into tiny");
    refuse(&["export", spec, "--weights", &bpk, "--batch", "0"], "a fixed batch must be at least 1");
}
