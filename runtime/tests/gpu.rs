//! The GPU path (`--features wgpu`), against the CPU backend: every construct's forward pass,
//! gradients and running statistics on wgpu equal flex's for the same weights and batch, and a
//! tiny fixture trains through `train()` with the loss going down.
//!
//! CI runs these on Mesa's software Vulkan driver (lavapipe: `apt-get install
//! mesa-vulkan-drivers`), which wgpu only uses when asked: the device is `wgpu:cpu` unless
//! `RESNETC_TEST_DEVICE` names another (`wgpu` on a machine with a GPU). Build and run:
//! `cargo test -p resnetc-runtime --features wgpu --test gpu`.
#![cfg(feature = "wgpu")]

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use resnetc_runtime::data;
use resnetc_runtime::device::{self, Selection};
use resnetc_runtime::model::DynNet;
use resnetc_runtime::recipe::Recipe;
use resnetc_runtime::report::read_csv;
use resnetc_runtime::train::{Progress, TrainOptions, item_losses, train};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

mod common;

/// wgpu against flex: the largest difference over the largest magnitude of flex's tensor.
/// Reached on lavapipe when set: see the README's GPU section (logits and gradients ≤ 1e-5).
const TOLERANCE: f64 = 1e-3;

/// One device for the whole binary, used one test at a time (lavapipe is CPU threads too).
static GPU: Mutex<Option<Selection>> = Mutex::new(None);

fn gpu() -> std::sync::MutexGuard<'static, Option<Selection>> {
    let mut guard = GPU.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let name = std::env::var("RESNETC_TEST_DEVICE").unwrap_or_else(|_| "wgpu:cpu".into());
        *guard = Some(device::parse(&name).unwrap_or_else(|e| panic!("--device {name}: {e}")));
    }
    guard
}

/// Every float tensor's values, by path (parameters and running statistics).
fn tensors(model: &DynNet) -> BTreeMap<String, Vec<f64>> {
    common::tensors(model)
}

/// `(error, where)`: the largest difference over the largest magnitude of `a`'s tensor.
fn worst(a: &BTreeMap<String, Vec<f64>>, b: &BTreeMap<String, Vec<f64>>) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for (name, x) in a {
        let y = &b[name];
        assert_eq!(x.len(), y.len(), "{name}");
        let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
        let e = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max) / scale;
        if e > worst.0 {
            worst = (e, name.clone());
        }
    }
    worst
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

/// What one training-mode pass gives: logits, loss, every gradient by path, and the running
/// statistics after it; then the eval-mode logits of the updated model.
struct Pass {
    logits: Vec<f64>,
    loss: f64,
    grads: BTreeMap<String, Vec<f64>>,
    after: BTreeMap<String, Vec<f64>>,
    eval: Vec<f64>,
}

fn pass(
    network: &resnetc_compiler::Network,
    weights: &Path,
    images: &TensorData,
    labels: &[i64],
    device: &Device,
) -> Pass {
    let autodiff = device.clone().autodiff();
    // A fresh copy of the weights: clones would share their running statistics.
    let model = DynNet::new(network, &autodiff).load_file(weights);
    let x = Tensor::<4>::from_data(images.clone(), &autodiff);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [labels.len()]), &autodiff);
    let logits = model.forward(x.clone());
    let loss = item_losses(logits.clone(), targets, 0.0).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut by_path = BTreeMap::new();
    common::each_tensor(&model, |(path, id, read)| {
        let rank = read().shape().len();
        let g = match rank {
            1 => grads.get::<1>(id).map(values),
            2 => grads.get::<2>(id).map(values),
            4 => grads.get::<4>(id).map(values),
            r => panic!("{path}: rank {r}"),
        };
        if let Some(g) = g {
            by_path.insert(path, g);
        }
    });
    let trained = model.valid();
    let eval = values(trained.forward(Tensor::<4>::from_data(images.clone(), device)));
    Pass { logits: values(logits), loss: values(loss)[0], grads: by_path, after: tensors(&trained), eval }
}

fn relative(a: &[f64], b: &[f64]) -> f64 {
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max) / scale
}

/// `network` on flex and on the GPU, the same weights and batch: every result within
/// [`TOLERANCE`]. Returns the worst error.
fn same_on_gpu(name: &str, network: &resnetc_compiler::Network) -> f64 {
    let guard = gpu();
    let gpu = guard.as_ref().unwrap().main();
    let cpu = Device::flex();
    cpu.seed(3);
    let weights = common::temp(&format!("gpu-{}", name.replace([' ', '/', '='], "-"))).join("weights.bpk");
    DynNet::new(network, &cpu).save_file(&weights).unwrap();
    let [c, h, w] = network.input.as_chw().expect("image input").map(|d| d as usize);
    let batch = 4;
    let images = Tensor::<4>::random([batch, c, h, w], Distribution::Normal(0.0, 1.0), &cpu).into_data();
    let classes = network.output.numel() as i64;
    let labels: Vec<i64> = (0..batch as i64).map(|i| (i * 3) % classes).collect();

    let a = pass(network, &weights, &images, &labels, &cpu);
    let b = pass(network, &weights, &images, &labels, &gpu);
    let mut errors = vec![
        ("logits".to_string(), relative(&a.logits, &b.logits)),
        ("loss".to_string(), relative(&[a.loss], &[b.loss])),
        ("eval logits".to_string(), relative(&a.eval, &b.eval)),
    ];
    assert_eq!(a.grads.keys().collect::<Vec<_>>(), b.grads.keys().collect::<Vec<_>>(), "{name}: gradients");
    assert!(!a.grads.is_empty(), "{name}: no gradient");
    let (e, at) = worst(&a.grads, &b.grads);
    errors.push((format!("gradient {at}"), e));
    let (e, at) = worst(&a.after, &b.after);
    errors.push((format!("after the step, {at}"), e));
    let (what, e) = errors.iter().cloned().fold((String::new(), 0.0), |m, (w, e)| if e > m.1 { (w, e) } else { m });
    println!("{name}: worst {e:.2e} ({what})");
    assert!(e < TOLERANCE, "{name} on {}: {what} differs from flex by {e:.2e}", guard.as_ref().unwrap().describe());
    e
}

/// The oracle's networks: one of every family at a reduced size (tests/oracle/cases.tsv).
#[test]
fn every_family_matches_flex() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let cases = std::fs::read_to_string(format!("{root}/tests/oracle/cases.tsv")).unwrap();
    let mut n = 0;
    for line in cases.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let set: Vec<&str> = cols[2].split(',').filter(|s| !s.is_empty()).collect();
        same_on_gpu(cols[0], &common::network_with(cols[1], &set));
        n += 1;
    }
    assert_eq!(n, 9);
}

/// The ablations of He et al. 2016b (gating, scaling, dropout on the shortcut...).
#[test]
fn every_ablation_matches_flex() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut specs: Vec<_> = std::fs::read_dir(format!("{root}/specs/ablations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 10);
    for spec in specs {
        let rel = format!("specs/ablations/{}", spec.file_name().unwrap().to_string_lossy());
        // Dropout is random per backend: compare without it (p = 0 keeps the layer).
        let text = std::fs::read_to_string(&spec).unwrap();
        let mut set = vec!["depth=8"];
        if text.contains("p = 0.5") {
            set.push("p=0");
        }
        same_on_gpu(&rel, &common::network_with(&rel, &set));
    }
}

/// Every activation, in the residual and squeeze-and-excitation paths of SE-ResNet.
#[test]
fn every_activation_matches_flex() {
    for act in [
        "relu",
        "leaky_relu",
        "prelu",
        "elu",
        "selu",
        "celu",
        "gelu",
        "gelu_tanh",
        "silu",
        "swish",
        "mish",
        "hardswish",
        "hardsigmoid",
        "hardtanh",
        "softsign",
        "softplus",
        "tanh",
        "sigmoid",
    ] {
        let set = format!("act={act}");
        same_on_gpu(
            &format!("se-resnet-20 {set}"),
            &common::network_with("specs/se-resnet-20.net", &["depth=8", &set]),
        );
    }
}

/// The layers no shipped spec uses together: kernels other than 1 and 3, max and average
/// pooling with padding, zero-padded shortcuts, linear layers on flat features.
#[test]
fn the_remaining_layers_match_flex() {
    let spec = "block pad_basic(planes, stride = 1) {
        {
            conv3x3(planes, stride = stride) bn relu
            conv(planes, 5, padding = 2) bn
        } + {
            pad_shortcut(planes, stride = stride)
        }
        relu
    }
    network zoo(classes = 10) {
        input 3x32x32
        conv(8, 7, stride = 2, padding = 3, bias = true) bn relu
        max_pool(3, stride = 2, padding = 1)
        stage 1 × pad_basic(8)
        stage 1 × pad_basic(16, stride = 2)
        avg_pool(3, stride = 1, padding = 1)
        global_avg_pool
        linear(32) relu dropout(0)
        linear(classes)
    }";
    same_on_gpu("zoo", &common::network_from("zoo.net", spec));
}

/// A tiny learnable fixture trains on the GPU through the real `train()` (burn-train's loop,
/// checkpoints, evaluation): the loss goes down, and the run names its adapter.
#[test]
fn a_small_network_trains_on_the_gpu() {
    let guard = gpu();
    let selection = guard.as_ref().unwrap().clone();
    let dir = common::temp("gpu-train");
    let dataset = data::load(&common::cifar10(&dir, 8, 16), [3, 32, 32]).unwrap();
    let network = common::network_with("specs/resnet-20.net", &["depth=8"]);
    let run = |selection: Selection, out: &std::path::Path| {
        let mut recipe = Recipe::shipped("resnet-cifar").unwrap();
        recipe.epochs = 4;
        recipe.batch_size = 10;
        recipe.augment.pad = 0;
        recipe.augment.flip = false;
        let options = TrainOptions {
            spec: "specs/resnet-20.net".into(),
            recipe,
            out: out.to_path_buf(),
            resume: false,
            seed: 5,
            val_split: 0,
            device: selection,
            precision: Default::default(),
            workers: 1,
            init: None,
            progress: Progress::Silent,
        };
        let summary = train(&network, &dataset, &options).unwrap();
        (summary, read_csv(&out.join("metrics.csv")).unwrap())
    };
    let (summary, rows) = run(selection.clone(), &dir.join("gpu"));
    let (_, cpu_rows) = run(Selection::cpu(), &dir.join("cpu"));
    assert_eq!(summary.device, selection.name);
    assert_eq!(summary.adapter, selection.describe());
    println!("{}: {rows:?}\ncpu: {cpu_rows:?}", summary.adapter);
    let losses: Vec<f64> = rows.iter().map(|r| r.train_loss).collect();
    assert!(losses[3] < losses[0] * 0.9, "training loss {losses:?}");
    // The same run on the CPU: the GPU's curve and test scores follow it (float differences
    // grow over the steps, so the bound is loose; a running-statistics bug is far outside it).
    for (g, c) in rows.iter().zip(&cpu_rows) {
        assert!((g.train_loss - c.train_loss).abs() < 0.05 * c.train_loss, "epoch {}: {g:?} vs {c:?}", g.epoch);
        assert!((g.test_loss - c.test_loss).abs() < 0.1 * c.test_loss.max(0.1), "epoch {}: {g:?} vs {c:?}", g.epoch);
    }
}
