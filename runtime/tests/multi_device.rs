//! Data-parallel training on two CPU "devices" (`--device cpu:2`: burn-train's `MultiDevice`
//! strategy over two flex devices), against values computed independently:
//!
//! - the learning-rate semantics: the batch size is the global batch, each replica's loss is its
//!   share of the global mean, so the summed gradients are those of one device on the same
//!   images (checked exactly on a network without batch norm);
//! - the batch-norm running statistics: the average of the replicas' updates, folded once per
//!   step whichever replica finishes first (closed form, as in `running_stats.rs`);
//! - a whole run replayed by a plain loop (two threads per step, gradients summed by hand,
//!   the recipe's SGD), and reproducible bit for bit.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use resnetc_runtime::data::{self, Augment, Dataset};
use resnetc_runtime::device;
use resnetc_runtime::model::DynNet;
use resnetc_runtime::recipe::Recipe;
use resnetc_runtime::report::{Summary, read_csv};
use resnetc_runtime::train::{Progress, TrainOptions, item_losses, replica_slices, sgd, train};
use std::path::Path;

mod common;

/// No batch norm: a device's gradient does not depend on which other images share its batch.
const PLAIN: &str = "network plain(classes = 10) {
    input 3x32x32
    conv3x3(8) relu
    conv3x3(16, stride = 2) relu
    global_avg_pool linear(classes)
}";

fn options(out: &Path, device: &str, epochs: u32, batch_size: usize) -> TrainOptions {
    let mut recipe = Recipe::shipped("resnet-cifar").unwrap();
    recipe.epochs = epochs;
    recipe.batch_size = batch_size;
    recipe.augment.pad = 0;
    recipe.augment.flip = false;
    TrainOptions {
        spec: "stats.net".into(),
        recipe,
        out: out.to_path_buf(),
        resume: false,
        seed: 7,
        val_split: 0,
        device: device::parse(device).unwrap(),
        precision: Default::default(),
        workers: 1,
        init: None,
        progress: Progress::Silent,
    }
}

/// Images `indices` of the training split, normalised, and their labels, on `device`.
fn batch(dataset: &Dataset, augment: &Augment, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let mut pixels = Vec::new();
    augment.batch(&dataset.train, indices, None, &mut pixels).unwrap();
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [indices.len(), 3, 32, 32]), device);
    let labels: Vec<i64> = indices.iter().map(|&i| i64::from(dataset.train.labels[i])).collect();
    (images, Tensor::<1, Int>::from_data(TensorData::new(labels, [indices.len()]), device))
}

fn gradients(model: &DynNet, images: Tensor<4>, targets: Tensor<1, Int>) -> GradientsParams {
    let losses = item_losses(model.forward(images), targets, 0.0);
    let loss = match model.replicas() {
        1 => losses.mean(),
        n => losses.mean().div_scalar(n as f64),
    };
    GradientsParams::from_grads(loss.backward(), model)
}

#[test]
fn two_replicas_sum_to_the_gradient_of_the_global_batch() {
    let _serial = common::serial();
    let dir = common::temp("multi-grad");
    let dataset = data::load(&common::cifar10(&dir, 4, 4), [3, 32, 32]).unwrap();
    let network = common::network_from("plain.net", PLAIN);
    let device = Device::flex().autodiff();
    let one = DynNet::new(&network, &device);
    let (mean, std) = dataset.train.channel_stats().unwrap();
    let augment = Augment::new(mean, std, 0, false);
    let all: Vec<usize> = (0..16).collect();
    let (images, targets) = batch(&dataset, &augment, &all, &device);
    let whole = gradients(&one, images, targets);

    // Each half's gradients as TrainStep computes them, summed as burn-train's accumulator sums.
    let sum_of_halves = |model: &DynNet| {
        let mut accumulator = GradientsAccumulator::new();
        for half in all.chunks(8) {
            let (images, targets) = batch(&dataset, &augment, half, &device);
            accumulator.accumulate(model, gradients(model, images, targets));
        }
        accumulator.grads()
    };
    let summed = sum_of_halves(&one.clone().with_replicas(2));
    let mut worst = 0.0f64;
    let mut checked = 0;
    common::each_tensor(&one, |(path, id, read)| {
        let rank = read().shape().len();
        let (a, b) = (values(&whole, id, rank), values(&summed, id, rank));
        let (Some(a), Some(b)) = (a, b) else { panic!("{path}: no gradient") };
        worst = worst.max(max_diff(&a, &b));
        checked += 1;
    });
    assert_eq!(checked, 4, "two convolution weights (no bias), the linear layer's weight and bias");
    assert!(worst < 1e-6, "summed replica gradients differ from the global batch's by {worst}");

    // Without the division the sum is twice the gradient: the check above can fail.
    let doubled = sum_of_halves(&one);
    let mut worst_doubled = 0.0f64;
    common::each_tensor(&one, |(_, id, read)| {
        let rank = read().shape().len();
        let a: Vec<f32> = values(&whole, id, rank).unwrap().iter().map(|v| 2.0 * v).collect();
        worst_doubled = worst_doubled.max(max_diff(&a, &values(&doubled, id, rank).unwrap()));
    });
    assert!(worst_doubled < 1e-5, "undivided replica losses sum to twice the gradient ({worst_doubled})");
}

/// The gradient of parameter `id` (of rank `rank`) in `grads`, if it has one.
fn values(grads: &GradientsParams, id: burn::module::ParamId, rank: usize) -> Option<Vec<f32>> {
    let data = match rank {
        1 => grads.get::<1>(id).map(Tensor::into_data),
        2 => grads.get::<2>(id).map(Tensor::into_data),
        4 => grads.get::<4>(id).map(Tensor::into_data),
        r => panic!("unexpected rank {r}"),
    };
    data.map(|d| d.try_to_vec::<f32>().unwrap())
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs()) / (1.0 + f64::from(x.abs()))).fold(0.0, f64::max)
}

#[test]
fn the_first_batch_norm_moves_by_the_average_of_the_replicas_updates() {
    let _serial = common::serial();
    // Every training image a copy of the first: each replica's batch has the same statistics,
    // so one step moves the running mean by `m · mean` exactly once; a second fold per step
    // (the replicas' updates applied one after the other) would show as 0.9^(2·steps).
    let dir = common::temp("multi-ema");
    let mut dataset = data::load(&common::cifar10(&dir, 8, 10), [3, 32, 32]).unwrap();
    let first = dataset.train.image(0).unwrap().to_vec();
    let resnetc_runtime::data::Images::Decoded(pixels) = &mut dataset.train.images else {
        unreachable!("CIFAR is decoded")
    };
    for chunk in pixels.chunks_exact_mut(first.len()) {
        chunk.copy_from_slice(&first);
    }
    let network = common::network_from("stats.net", common::STATS);
    let out = dir.join("run");
    let (epochs, batch) = (3, 10);
    let summary = train(&network, &dataset, &options(&out, "cpu:2", epochs, batch)).unwrap();
    assert_eq!(summary.device, "cpu:2");
    assert!(summary.adapter.starts_with("flex (CPU"), "{}", summary.adapter);
    // 40 images, 20 per replica, 5 per replica and step: 4 steps an epoch.
    let steps = epochs as i32 * 4;
    let trained = DynNet::new(&network, &Device::flex()).load_file(out.join("last.bpk"));
    let stats = common::tensors(&trained);

    let augment = common::normalisation(&out);
    let mut x = Vec::new();
    augment.batch(&dataset.train, &[0], None, &mut x).unwrap();
    let plane = 32 * 32;
    for c in 0..3 {
        let values: Vec<f64> = x[c * plane..(c + 1) * plane].iter().map(|&v| f64::from(v)).collect();
        // Unbiased over a replica's batch: 5 images of 32×32 values per channel.
        let (want_mean, want_var) = common::ema_of_equal_batches(&values, batch / 2 * plane, steps);
        let (got_mean, got_var) = (stats["bn1.running_mean"][c], stats["bn1.running_var"][c]);
        assert!(
            (got_mean - want_mean).abs() < 1e-5 * (1.0 + want_mean.abs()),
            "channel {c}: running mean {got_mean}, the average of the replicas' batch means {want_mean}"
        );
        assert!(
            common::relative(got_var, want_var) < 2e-6,
            "channel {c}: running variance {got_var}, expected {want_var}"
        );
    }
}

/// One epoch = one step of both replicas on their whole slices (batch 40 = 2 × 20), replayed:
/// each replica's forward and backward on its own thread (as burn-train's workers), the
/// gradients summed, the recipe's SGD; then the next epoch.
fn replay(network: &resnetc_compiler::Network, dataset: &Dataset, options: &TrainOptions) -> DynNet {
    let recipe = &options.recipe;
    let device = Device::flex();
    device.seed(options.seed);
    let autodiff = device.clone().autodiff();
    let mut model = DynNet::new(network, &autodiff).with_replicas(2);
    let mut optimizer = sgd(recipe).init();
    let augment = common::normalisation(&options.out);
    let all: Vec<usize> = (0..dataset.train.len()).collect();
    let slices = replica_slices(&all, 2, options.seed);
    for step in 0..u64::from(recipe.epochs) {
        let grads: Vec<GradientsParams> = std::thread::scope(|s| {
            let workers: Vec<_> = slices
                .iter()
                .map(|slice| {
                    let model = model.clone();
                    let autodiff = autodiff.clone();
                    let augment = augment.clone();
                    s.spawn(move || {
                        let (images, targets) = batch(dataset, &augment, slice, &autodiff);
                        resnetc_runtime::norm::as_replica(|| gradients(&model, images, targets))
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let mut accumulator = GradientsAccumulator::new();
        for g in grads {
            accumulator.accumulate(&model, g);
        }
        model = optimizer.step(recipe.lr_at(step, 1), model, accumulator.grads());
        // The epoch's end: burn-train's validation (`valid()`) folds the replicas' last updates
        // (their threads end with the epoch).
        let _ = model.valid();
    }
    model.valid()
}

#[test]
fn a_two_device_run_equals_its_replay_and_repeats_bit_for_bit() {
    let _serial = common::serial();
    let dir = common::temp("multi-run");
    let dataset = data::load(&common::cifar10(&dir, 8, 10), [3, 32, 32]).unwrap();
    let network = common::network_from("stats.net", common::STATS);
    let out = dir.join("run");
    let opts = options(&out, "cpu:2", 4, 40);
    train(&network, &dataset, &opts).unwrap();
    let trained = DynNet::new(&network, &Device::flex()).load_file(out.join("last.bpk"));
    let replayed = replay(&network, &dataset, &opts);
    let (a, b) = (common::tensors(&replayed), common::tensors(&trained));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = (0.0, String::new());
    for (name, values) in &a {
        for (x, y) in values.iter().zip(&b[name]) {
            let e = (x - y).abs() / (1e-3 + x.abs());
            if e > worst.0 {
                worst = (e, format!("{name}: {x} vs {y}"));
            }
        }
    }
    assert!(worst.0 < 1e-4, "train() on cpu:2 and its replay differ: {}", worst.1);

    // Again, same seed: the same metrics and the same weights, bit for bit.
    let again = dir.join("again");
    train(&network, &dataset, &options(&again, "cpu:2", 4, 40)).unwrap();
    let (r1, r2) = (read_csv(&out.join("metrics.csv")).unwrap(), read_csv(&again.join("metrics.csv")).unwrap());
    let losses =
        |rows: &[resnetc_runtime::report::Row]| rows.iter().map(|r| (r.train_loss, r.test_loss)).collect::<Vec<_>>();
    assert_eq!(losses(&r1), losses(&r2));
    // Every tensor equal bit for bit (the files differ in their random parameter ids only).
    let repeated = DynNet::new(&network, &Device::flex()).load_file(again.join("last.bpk"));
    assert!(common::tensors(&repeated) == b, "a second run of the same seed gives other weights");
    let s: Summary = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!((s.device.as_str(), s.train_images), ("cpu:2", 40));
}

#[test]
fn a_batch_that_does_not_split_over_the_devices_is_refused() {
    let _serial = common::serial();
    let dir = common::temp("multi-odd");
    let dataset = data::load(&common::cifar10(&dir, 2, 2), [3, 32, 32]).unwrap();
    let network = common::network_from("stats.net", common::STATS);
    let e = train(&network, &dataset, &options(&dir.join("run"), "cpu:2", 1, 5)).unwrap_err().to_string();
    assert!(e.contains("does not split evenly over the 2 devices"), "{e}");
}
