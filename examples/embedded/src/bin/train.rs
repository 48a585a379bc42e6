//! Training a network you embedded, with resnetc-runtime's library API instead of the CLI:
//! the recipe, the data, burn-train's loop with its checkpoints and metrics, then the trained
//! weights loaded into the embedded struct (the runtime's network and the emitted one record
//! the same parameter paths, so their checkpoints are interchangeable).
//!
//! `cargo run -p resnetc-example-embedded --bin train [-- DATA]`: DATA is a dataset as
//! `resnetc train --data` takes it (CIFAR binaries or image folders, a folder or a .tar/.tar.gz);
//! without it a small synthetic set (three classes of coloured images) stands in.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use resnetc_runtime::data::{self, Augment, Dataset, Images, Split};
use resnetc_runtime::recipe::Recipe;
use resnetc_runtime::train::{self, Progress, TrainOptions};

/// The network to embed and to train: one spec, two uses.
const SPEC: &str = "network tiny(classes = 10) {
    input 3x32x32
    conv3x3(8) bn relu
    stage 1 × basic(8)
    global_avg_pool linear(classes)
}
";

mod tiny {
    resnetc::network! {
        network tiny(classes = 10) {
            input 3x32x32
            conv3x3(8) bn relu
            stage 1 x basic(8)
            global_avg_pool linear(classes)
        }
    }
}

/// `n` images of three classes: red, green or blue dominant, with noise.
fn synthetic(n: usize, seed: u32) -> Split {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 64) as u8
    };
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let class = i % 3;
        for c in 0..3 {
            let base = if c == class { 160 } else { 40 };
            pixels.extend((0..32 * 32).map(|_| base + noise()));
        }
        labels.push(class as u16);
    }
    Split { images: Images::Decoded(pixels), labels, shape: [3, 32, 32] }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The same spec the macro expanded, checked at run time for the runtime's trainer.
    let mut compilation = resnetc::compiler::Compilation::new();
    let id = compilation.add_source("tiny.net", SPEC.to_string());
    let network = compilation.check(id, &[]).map_err(|d| compilation.render(&d, false))?;

    let dataset = match std::env::args().nth(1) {
        Some(path) => data::load(path.as_ref(), [3, 32, 32])?,
        None => Dataset {
            train: synthetic(240, 1),
            test: synthetic(60, 2),
            classes: ["red", "green", "blue"].map(String::from).to_vec(),
            format: "synthetic",
            skipped: Vec::new(),
        },
    };

    // The shipped recipe of the family, shortened; every key is a field.
    let mut recipe = Recipe::shipped("resnet-cifar")?;
    recipe.epochs = 2;
    recipe.batch_size = 32;
    let out = std::env::temp_dir().join(format!("resnetc-train-embedded-{}", std::process::id()));
    let options = TrainOptions {
        spec: "tiny.net".into(),
        recipe,
        out: out.clone(),
        resume: false,
        seed: 1,
        val_split: 0,
        device: resnetc_runtime::device::Selection::cpu(),
        precision: Default::default(),
        workers: 1,
        init: None,
        progress: Progress::Plain,
    };
    let summary = train::train(&network, &dataset, &options)?;
    println!("trained: {}", serde_json::to_string(&summary)?);

    // The run's weights, into the struct the macro generated.
    let device = Device::flex();
    let model = tiny::Tiny::new(&device).try_load_file(out.join("last.bpk")).map_err(|e| format!("{e:?}"))?;
    let logits = model.forward(Tensor::<4>::zeros([1, 3, 32, 32], &device));
    println!("embedded struct with the trained weights: logits {:?}", logits.dims());

    // And scored by the runtime, for comparison with the run's last test accuracy.
    let scored = resnetc_runtime::model::DynNet::new(&network, &device)
        .try_load_file(out.join("last.bpk"))
        .map_err(|e| format!("{e:?}"))?;
    let (mean, std) = dataset.train.channel_stats()?;
    let augment = Augment::new(mean, std, 0, false);
    let result = train::evaluate(&scored, &dataset.test, &augment, 64, &device)?;
    println!("test top-1 {:.2} % on {} images", result.top1 * 100.0, result.images);
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
