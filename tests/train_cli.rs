//! `resnetc train` and `resnetc eval` from the command line, on a CIFAR-100 binary fixture
//! built here, and their errors for bad flags and bad files.
#![cfg(feature = "train")]

mod common;

use common::{resnetc, text};
use std::path::{Path, PathBuf};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resnetc-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// CIFAR-100 binary: `train.bin` (24 records) and `test.bin` (12), coarse then fine label.
fn cifar100(dir: &Path) -> PathBuf {
    let data = dir.join("cifar-100-binary");
    std::fs::create_dir_all(&data).unwrap();
    let record = |fine: u8, seed: u8| {
        let mut r = vec![fine / 5, fine];
        r.extend((0..3072u32).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(fine)));
        r
    };
    let train: Vec<u8> = (0..24u8).flat_map(|i| record(i * 4 % 100, i)).collect();
    let test: Vec<u8> = (0..12u8).flat_map(|i| record(i * 8 % 100, i + 50)).collect();
    std::fs::write(data.join("train.bin"), train).unwrap();
    std::fs::write(data.join("test.bin"), test).unwrap();
    data
}

const TINY: &str = "network tiny(classes = 10) {\n    input 3x32x32\n    conv3x3(8)\n    bn relu\n    stage 1 × basic(8)\n    global_avg_pool linear(classes)\n}\n";

#[test]
fn train_then_eval_agree() {
    let dir = temp("train");
    let data = cifar100(&dir);
    let spec = dir.join("tiny.net");
    std::fs::write(&spec, TINY).unwrap();
    let out = dir.join("run");
    let (spec, data, out) = (spec.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let run = resnetc(&[
        "train",
        spec,
        "--set",
        "classes=100",
        "--data",
        data,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--val-split",
        "4",
        "--set-recipe",
        "label_smoothing=0.1",
        "--out",
        out,
        "--seed",
        "3",
    ]);
    let stdout = text(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}{}", text(&run.stderr));
    assert!(stdout.contains("20 train / 4 val / 12 test images, 2 epochs of 3 iterations"), "{stdout}");
    assert!(stdout.contains("epoch   1/2") && stdout.contains("epoch   2/2"), "plain lines off a terminal: {stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(out).join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"], 2);
    assert_eq!(summary["spec"], spec);
    let recipe = std::fs::read_to_string(Path::new(out).join("recipe.yaml")).unwrap();
    assert!(recipe.contains("label_smoothing: 0.1") && recipe.contains("epochs: 2"), "{recipe}");

    let weights = format!("{out}/last.bpk");
    let eval =
        resnetc(&["eval", spec, "--set", "classes=100", "--weights", &weights, "--data", data, "--format", "json"]);
    assert_eq!(eval.status.code(), Some(0), "{}", text(&eval.stderr));
    let scores: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(scores["images"], 12);
    assert_eq!(scores["top1"], summary["test_accuracy"], "eval uses the run's normalisation");
    assert!(scores["top5"].as_f64().unwrap() >= scores["top1"].as_f64().unwrap());
    let table = text(&resnetc(&["eval", spec, "--set", "classes=100", "--weights", &weights, "--data", data]).stdout);
    assert!(table.contains("top-1 accuracy") && table.contains("top-5 accuracy"), "{table}");

    // The lesion study: the intact row is eval's result; the one residual unit removed.
    let plot = dir.join("lesion.svg");
    let lesion = resnetc(&[
        "lesion",
        spec,
        "--set",
        "classes=100",
        "--weights",
        &weights,
        "--data",
        data,
        "--pairs",
        "--format",
        "json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(lesion.status.code(), Some(0), "{}", text(&lesion.stderr));
    let report: serde_json::Value = serde_json::from_slice(&lesion.stdout).unwrap();
    assert_eq!(report["intact"]["top1"], scores["top1"]);
    assert_eq!(report["intact"]["loss"], scores["loss"]);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one unit, no adjacent pair: {report}");
    assert_eq!(rows[0]["removed"], serde_json::json!(["stage1.0"]));
    assert_eq!(rows[0]["images"], 12);
    assert_ne!(rows[0]["loss"], scores["loss"], "removing the branch changes the network");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("test error"), "{svg}");
    let csv =
        resnetc(&["lesion", spec, "--set", "classes=100", "--weights", &weights, "--data", data, "--format", "csv"]);
    let csv = text(&csv.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "removed,positions,top1,top5,loss,images");
    assert!(lines[1].starts_with(",,") && lines[2].starts_with("stage1.0,1,") && lines.len() == 3, "{csv}");

    // The weights of another network are refused with the file's name.
    let wrong =
        resnetc(&["eval", "specs/resnet-20.net", "--set", "classes=100", "--weights", &weights, "--data", data]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(text(&wrong.stderr).contains("last.bpk: cannot load into resnet_20"), "{}", text(&wrong.stderr));
    // So is a file that is not a checkpoint.
    std::fs::write(dir.join("junk.bpk"), b"not a checkpoint").unwrap();
    let junk = resnetc(&[
        "eval",
        spec,
        "--set",
        "classes=100",
        "--weights",
        dir.join("junk.bpk").to_str().unwrap(),
        "--data",
        data,
    ]);
    assert_eq!(junk.status.code(), Some(1));
    assert!(text(&junk.stderr).contains("junk.bpk"), "{}", text(&junk.stderr));
}

#[test]
fn train_flags_and_inputs_are_checked() {
    let dir = temp("flags");
    let data = cifar100(&dir);
    let data = data.to_str().unwrap();
    let fail = |args: &[&str], needle: &str| {
        let out = resnetc(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    fail(&["train", "specs/resnet-20.net", "--data", data, "--device", "tpu"], "unknown device `tpu`");
    fail(&["train", "specs/resnet-20.net", "--data", "/no/such/cifar"], "/no/such/cifar");
    fail(&["train", "specs/resnet-20.net", "--data", data, "--set-recipe", "optimizer.lrr=1"], "unknown field `lrr`");
    fail(&["train", "specs/resnet-20.net", "--data", data, "--recipe", "/no/such.yaml"], "/no/such.yaml");
    fail(&["train", "specs/resnet-20.net", "--data", data, "--epochs", "1"], "but resnet_20 has 10 outputs");
    fail(&["train", "tests/errors/unknown-block.net", "--data", data], "unknown-block.net:4:");
    let out = dir.join("none");
    fail(&["train", "specs/resnet-20.net", "--data", data, "--resume", "--out", out.to_str().unwrap()], "recipe.yaml");
    // Usage errors are clap's: exit 2.
    assert_eq!(resnetc(&["train", "specs/resnet-20.net"]).status.code(), Some(2), "--data is required");
    assert_eq!(
        resnetc(&["train", "specs/resnet-20.net", "--data", data, "--resume"]).status.code(),
        Some(2),
        "--resume needs --out"
    );
    assert_eq!(resnetc(&["train", "specs/resnet-20.net", "--data", data, "--epochs", "many"]).status.code(), Some(2));
}

#[test]
fn the_same_seed_trains_the_same_network() {
    let dir = temp("seed");
    let data = cifar100(&dir);
    let spec = dir.join("tiny.net");
    std::fs::write(&spec, TINY).unwrap();
    let run = |name: &str, seed: &str| {
        let out = dir.join(name);
        let args = [
            "train",
            spec.to_str().unwrap(),
            "--set",
            "classes=100",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "3",
        ];
        let status =
            resnetc(&[&args[..], &["--batch-size", "8", "--seed", seed, "--out", out.to_str().unwrap()]].concat());
        assert_eq!(status.status.code(), Some(0), "{}", text(&status.stderr));
        // Everything but the timings.
        let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        csv.lines().map(|l| l.split(',').take(8).collect::<Vec<_>>().join(",")).collect::<Vec<_>>()
    };
    let a = run("a", "11");
    assert_eq!(a.len(), 4);
    assert_eq!(a, run("b", "11"), "initialisation, shuffling and augmentation follow the seed");
    assert_ne!(a, run("c", "12"));
}

#[test]
fn bench_reports_throughput_as_json_and_checks_its_flags() {
    for mode in ["train", "infer"] {
        let out = resnetc(&[
            "bench",
            "specs/resnet-20.net",
            "--mode",
            mode,
            "--batch-size",
            "4",
            "--steps",
            "3",
            "--warmup",
            "1",
            "--format",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["spec"], "specs/resnet-20.net");
        assert_eq!(json["mode"], mode);
        assert_eq!(json["batch_size"], 4);
        assert_eq!(json["steps"], 3);
        let ips = json["images_per_sec"].as_f64().unwrap();
        let median = json["median_step_seconds"].as_f64().unwrap();
        assert!(ips > 0.0 && (ips * median - 4.0).abs() < 1e-6, "img/s = batch / median step: {json}");
        assert!(
            json["min_step_seconds"].as_f64().unwrap() <= median
                && median <= json["max_step_seconds"].as_f64().unwrap()
        );
        assert!(json["peak_rss_bytes"].as_u64().unwrap() > 10 << 20, "{json}");
    }
    let table = resnetc(&[
        "bench",
        "specs/resnet-20.net",
        "--set",
        "classes=100",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--warmup",
        "0",
    ]);
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    assert!(text(&table.stdout).contains("images/s (median)"), "{}", text(&table.stdout));

    let zero = resnetc(&["bench", "specs/resnet-20.net", "--steps", "0"]);
    assert_eq!(zero.status.code(), Some(1));
    assert!(text(&zero.stderr).contains("--steps must be at least 1"), "{}", text(&zero.stderr));
    let batch = resnetc(&["bench", "specs/resnet-20.net", "--batch-size", "0"]);
    assert_eq!(batch.status.code(), Some(1));
    assert!(text(&batch.stderr).contains("batch size must be at least 1"), "{}", text(&batch.stderr));
    let mode = resnetc(&["bench", "specs/resnet-20.net", "--mode", "fast"]);
    assert_eq!(mode.status.code(), Some(2));
    let device = resnetc(&["bench", "specs/resnet-20.net", "--device", "tpu"]);
    assert_eq!(device.status.code(), Some(1));
}
