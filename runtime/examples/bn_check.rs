//! Whether a checkpoint's batch-norm running statistics fit its weights: test accuracy in eval
//! mode (the stored statistics), with each batch's own statistics, and in eval mode after
//! re-estimating the statistics in a plain loop over the training images.
//!
//!     cargo run --release -p resnetc-runtime --example bn_check -- SPEC WEIGHTS DATA [RECIPE.yaml]

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use resnetc_runtime::data::{self, Augment, Split};
use resnetc_runtime::model::DynNet;
use resnetc_runtime::recipe::Recipe;
use resnetc_runtime::train::ranks;

fn batch(split: &Split, indices: &[usize], augment: &Augment, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let [c, h, w] = split.shape;
    let mut pixels = Vec::new();
    augment.batch(split, indices, None, &mut pixels).unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [indices.len(), c, h, w]), device);
    let labels: Vec<i64> = indices.iter().map(|&i| i64::from(split.labels[i])).collect();
    (x, Tensor::from_data(TensorData::new(labels, [indices.len()]), device))
}

/// Drop the autodiff graph of a training-mode pass that no gradient is wanted from (a graph
/// never backwarded stays alive, and 40 of them fill the memory).
fn release(out: Tensor<2>) {
    if out.device().is_autodiff() {
        let _ = out.sum().backward();
    }
}

fn accuracy(model: &DynNet, split: &Split, order: &[usize], augment: &Augment, device: &Device) -> f64 {
    let mut correct = 0;
    for chunk in order.chunks(200) {
        let (x, y) = batch(split, chunk, augment, device);
        let logits = model.forward(x);
        correct += ranks(logits.clone().detach(), y).into_data().iter::<i64>().filter(|&r| r == 0).count();
        release(logits);
    }
    correct as f64 / order.len() as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, weights, data, rest @ ..] = &args[..] else {
        eprintln!("usage: bn_check SPEC WEIGHTS DATA [RECIPE.yaml]");
        std::process::exit(2);
    };
    let mut c = resnetc_compiler::Compilation::new();
    let id = c.add_source(spec.as_str(), std::fs::read_to_string(spec).unwrap());
    let network = c.check(id, &[]).unwrap_or_else(|d| panic!("{}", c.render(&d, false)));
    let [ch, h, w] = network.input.as_chw().unwrap();
    let dataset = data::load(data.as_ref(), [ch as usize, h as usize, w as usize]).unwrap();
    let recipe = rest
        .first()
        .map_or_else(|| std::path::Path::new(weights).parent().unwrap().join("recipe.yaml"), std::path::PathBuf::from);
    let n = Recipe::load(&recipe).unwrap().normalize.unwrap();
    let augment = Augment::new(n.mean, n.std, 0, false);
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let test: Vec<usize> = data::shuffled(dataset.test.len(), &mut data::rng(1));

    let eval = DynNet::new(&network, &device).load_file(weights);
    println!(
        "eval mode, stored statistics:      {:.2}%",
        100.0 * accuracy(&eval, &dataset.test, &test, &augment, &device)
    );
    let training = DynNet::new(&network, &ad).load_file(weights);
    println!(
        "batch statistics (batches of 200): {:.2}%",
        100.0 * accuracy(&training, &dataset.test, &test, &augment, &ad)
    );

    // Re-estimate: 40 training-mode passes over shuffled training images, then eval mode.
    let training = DynNet::new(&network, &ad).load_file(weights);
    let train: Vec<usize> = data::shuffled(dataset.train.len(), &mut data::rng(2));
    for chunk in train.chunks(200).cycle().take(40) {
        let (x, _) = batch(&dataset.train, chunk, &augment, &ad);
        release(training.forward(x));
    }
    let reestimated = training.valid();
    println!(
        "eval mode, re-estimated:           {:.2}%",
        100.0 * accuracy(&reestimated, &dataset.test, &test, &augment, &device)
    );
    let train_sample: Vec<usize> = train.iter().copied().take(2000).collect();
    println!(
        "eval mode on 2000 training images: {:.2}% (stored), {:.2}% (re-estimated)",
        100.0 * accuracy(&eval, &dataset.train, &train_sample, &augment, &device),
        100.0 * accuracy(&reestimated, &dataset.train, &train_sample, &augment, &device)
    );
}
