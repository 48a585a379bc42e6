//! The batch-norm running statistics through the real `train()` path (burn-train's Learner,
//! data loader, optimizer and checkpointer), against values computed independently: the
//! closed-form exponential moving average of a batch norm that sees the normalised images
//! themselves, and a plain loop (forward, backward, SGD) replaying the same steps. Then the
//! symptom they cause: eval-mode accuracy far below batch-statistics accuracy.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use resnetc_runtime::data::{self, Augment, Dataset};
use resnetc_runtime::model::DynNet;
use resnetc_runtime::recipe::Recipe;
use resnetc_runtime::train::{Progress, TrainOptions, item_losses, ranks, sgd, train};
use std::collections::BTreeMap;
use std::path::Path;

mod common;

fn options(out: &Path, epochs: u32, batch_size: usize, workers: usize) -> TrainOptions {
    let mut recipe = Recipe::shipped("resnet-cifar").unwrap();
    recipe.epochs = epochs;
    recipe.batch_size = batch_size;
    // No augmentation: a batch's statistics depend only on which images it holds.
    recipe.augment.pad = 0;
    recipe.augment.flip = false;
    TrainOptions {
        spec: "stats.net".into(),
        recipe,
        out: out.to_path_buf(),
        resume: false,
        seed: 7,
        val_split: 0,
        device: resnetc_runtime::device::Selection::cpu(),
        precision: Default::default(),
        workers,
        init: None,
        progress: Progress::Silent,
    }
}

/// `(relative error, name)` of the worst of the running statistics in `b` against `a`.
fn worst_statistic(a: &BTreeMap<String, Vec<f64>>, b: &BTreeMap<String, Vec<f64>>) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for (name, values) in a.iter().filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var")) {
        let other = &b[name];
        for (x, y) in values.iter().zip(other) {
            let e = common::relative(*y, *x);
            if e > worst.0 {
                worst = (e, format!("{name}: {x} vs {y}"));
            }
        }
    }
    worst
}

/// Every image of `split` normalised as training normalises them, in index order, as f64.
fn normalised(dataset: &Dataset, augment: &Augment) -> Vec<f64> {
    let indices: Vec<usize> = (0..dataset.train.len()).collect();
    let mut pixels = Vec::new();
    augment.batch(&dataset.train, &indices, None, &mut pixels).unwrap();
    pixels.into_iter().map(f64::from).collect()
}

/// The fixture's training images all replaced by copies of the first: every batch has the
/// same statistics, whichever images it holds.
fn identical(mut dataset: Dataset) -> Dataset {
    let first = dataset.train.image(0).unwrap().to_vec();
    let resnetc_runtime::data::Images::Decoded(pixels) = &mut dataset.train.images else {
        unreachable!("CIFAR is decoded")
    };
    for chunk in pixels.chunks_exact_mut(first.len()) {
        chunk.copy_from_slice(&first);
    }
    dataset
}

#[test]
fn the_first_batch_norm_holds_the_moving_average_of_its_batch_statistics() {
    let _serial = common::serial();
    // (data loader workers, batch size, the images identical): one batch of all 40 images per
    // epoch, or four of 10 identical images (so that every step's statistics are known).
    for (workers, batch, same) in [(0, 40, false), (2, 40, false), (1, 10, true), (2, 10, true)] {
        let dir = common::temp(&format!("stats-ema-{workers}-{batch}"));
        let mut dataset = data::load(&common::cifar10(&dir, 8, 10), [3, 32, 32]).unwrap();
        if same {
            dataset = identical(dataset);
        }
        let network = common::network_from("stats.net", common::STATS);
        let out = dir.join("run");
        let epochs = 3;
        let steps = epochs * (40 / batch) as u32;
        train(&network, &dataset, &options(&out, epochs, batch, workers)).unwrap();
        let trained = DynNet::new(&network, &Device::flex()).load_file(out.join("last.bpk"));
        let stats = common::tensors(&trained);

        let x = normalised(&dataset, &common::normalisation(&out));
        let plane = 32 * 32;
        for c in 0..3 {
            let values: Vec<f64> =
                x.chunks_exact(3 * plane).flat_map(|image| image[c * plane..(c + 1) * plane].to_vec()).collect();
            // PyTorch's running variance uses the unbiased batch variance, over a batch's values.
            let (want_mean, want_var) = common::ema_of_equal_batches(&values, batch * plane, steps as i32);
            let (got_mean, got_var) = (stats["bn1.running_mean"][c], stats["bn1.running_var"][c]);
            assert!(
                (got_mean - want_mean).abs() < 1e-5 * (1.0 + want_mean.abs()),
                "workers {workers}, batch {batch}, channel {c}: running mean {got_mean}, the average of the batch means {want_mean}"
            );
            assert!(
                common::relative(got_var, want_var) < 2e-6,
                "workers {workers}, batch {batch}, channel {c}: running variance {got_var}, the average of the batch variances {want_var}"
            );
        }
    }
}

/// The same steps as `train` takes with one batch of every training image per epoch: the
/// network initialised from the run's seed, forward, backward, the recipe's SGD.
fn plain_loop(network: &resnetc_compiler::Network, dataset: &Dataset, options: &TrainOptions) -> DynNet {
    let recipe = &options.recipe;
    let device = Device::flex();
    device.seed(options.seed);
    let mut model = DynNet::new(network, &device.clone().autodiff());
    let mut optimizer = sgd(recipe).init();
    let augment = common::normalisation(&options.out);
    let n = dataset.train.len();
    let images = Tensor::<4>::from_data(
        TensorData::new(normalised(dataset, &augment).into_iter().map(|v| v as f32).collect(), [n, 3, 32, 32]),
        &device.clone().autodiff(),
    );
    let labels: Vec<i64> = dataset.train.labels.iter().map(|&l| i64::from(l)).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &device.clone().autodiff());
    for step in 0..u64::from(recipe.epochs) {
        let logits = model.forward(images.clone());
        let loss = item_losses(logits, targets.clone(), recipe.label_smoothing).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(recipe.lr_at(step, 1), model, grads);
    }
    model.valid()
}

#[test]
fn every_batch_norm_after_training_equals_a_plain_loop_of_the_same_steps() {
    let _serial = common::serial();
    let dir = common::temp("stats-loop");
    let dataset = data::load(&common::cifar10(&dir, 8, 10), [3, 32, 32]).unwrap();
    let network = common::network_from("stats.net", common::STATS);
    let out = dir.join("run");
    let options = options(&out, 4, 40, 2);
    train(&network, &dataset, &options).unwrap();
    let trained = DynNet::new(&network, &Device::flex()).load_file(out.join("last.bpk"));
    let replayed = plain_loop(&network, &dataset, &options);
    let (a, b) = (common::tensors(&replayed), common::tensors(&trained));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let (error, worst) = worst_statistic(&a, &b);
    assert!(error < 1e-4, "running statistics of train() and the plain loop differ: {worst}");
}

/// Top-1 accuracy on the test split with the running statistics (eval mode) and with each
/// batch's own statistics (train mode, over batches of `batch` images), of the weights in `file`.
fn accuracies(
    network: &resnetc_compiler::Network,
    file: &Path,
    dataset: &Dataset,
    augment: &Augment,
    batch: usize,
) -> (f64, f64) {
    let device = Device::flex();
    let (mut eval, mut batch_stats) = (0usize, 0usize);
    let indices: Vec<usize> = (0..dataset.test.len()).collect();
    // Two copies: training-mode passes update their own running statistics only.
    let model = DynNet::new(network, &device).load_file(file).valid();
    let training = DynNet::new(network, &device.clone().autodiff()).load_file(file);
    for chunk in indices.chunks(batch) {
        let mut pixels = Vec::new();
        augment.batch(&dataset.test, chunk, None, &mut pixels).unwrap();
        let shape = [chunk.len(), 3, 32, 32];
        let labels: Vec<i64> = chunk.iter().map(|&i| i64::from(dataset.test.labels[i])).collect();
        let correct = |logits: Tensor<2>, device: &Device| {
            let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [chunk.len()]), device);
            ranks(logits, targets).into_data().iter::<i64>().filter(|&r| r == 0).count()
        };
        let x = Tensor::<4>::from_data(TensorData::new(pixels.clone(), shape), &device);
        eval += correct(model.forward(x), &device);
        let ad = device.clone().autodiff();
        let x = Tensor::<4>::from_data(TensorData::new(pixels, shape), &ad);
        let logits = training.forward(x);
        batch_stats += correct(logits.clone().detach(), &ad);
        let _ = logits.sum().backward(); // frees the graph
    }
    let n = dataset.test.len() as f64;
    (eval as f64 / n, batch_stats as f64 / n)
}

#[test]
fn eval_mode_scores_as_well_as_batch_statistics() {
    let _serial = common::serial();
    let dir = common::temp("stats-accuracy");
    let dataset = data::load(&common::cifar10(&dir, 200, 400), [3, 32, 32]).unwrap();
    let network = common::network_from("stats.net", common::STATS);
    let out = dir.join("run");
    // A cosine schedule: the weights settle at the end, so correct running statistics catch
    // up with them (at a constant rate of 0.1 both this and a plain loop of the same steps
    // trail the batch statistics by 10 points on this fixture: the moving average lags).
    let mut options = options(&out, 4, 25, 2);
    options.recipe = options.recipe.set("schedule={kind: cosine}").unwrap();
    train(&network, &dataset, &options).unwrap();
    let (eval, batch_stats) = accuracies(&network, &out.join("last.bpk"), &dataset, &common::normalisation(&out), 100);
    assert!(batch_stats > 0.3, "the fixture is learnable: {batch_stats}");
    assert!(eval >= batch_stats - 0.02, "eval mode {eval}, batch statistics {batch_stats}");
}
