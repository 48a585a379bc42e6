//! Training throughput on the CPU (flex backend): images per second of one full SGD step
//! (forward, backward, optimizer update, through burn-train's `Learner` as `resnetc train`
//! runs it) for resnet-20, resnet-56, wrn-16-4 and densenet-bc-100-12 at their recipes'
//! batch sizes. Data loading is left out (it runs in loader threads during training).
//!
//! `cargo bench --bench train_step`; `RESNETC_BENCH_SPECS=resnet-20,wrn-16-4` picks specs.

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use resnetc_compiler::Compilation;
use resnetc_runtime::model::DynNet;
use resnetc_runtime::recipe::{default_for, Recipe};
use resnetc_runtime::train::{Batch, Part, RecipeLr};
use std::time::Duration;

const SPECS: &[&str] = &["resnet-20", "resnet-56", "wrn-16-4", "densenet-bc-100-12"];

fn train_step(c: &mut Criterion) {
    let chosen = std::env::var("RESNETC_BENCH_SPECS").ok();
    let device = Device::flex();
    let mut group = c.benchmark_group("train_step_cpu");
    group.sample_size(10).warm_up_time(Duration::from_secs(5)).measurement_time(Duration::from_secs(30));
    for spec in SPECS.iter().filter(|s| chosen.as_deref().is_none_or(|c| c.split(',').any(|x| x == **s))) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("specs/{spec}.net"));
        let mut compilation = Compilation::new();
        let id = compilation.add_source(*spec, std::fs::read_to_string(&path).unwrap());
        let network = compilation.check(id, &[]).unwrap();
        let recipe = Recipe::shipped(default_for(&network.name)).unwrap();
        let batch_size = recipe.batch_size;
        let optimizer = burn::optim::SgdConfig::new()
            .with_momentum(Some(burn::optim::momentum::MomentumConfig { momentum: 0.9, dampening: 0.0, nesterov: false }))
            .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig { penalty: 1e-4 }))
            .init();
        let autodiff = device.clone().autodiff();
        let model = DynNet::new(&network, &autodiff);
        let mut learner = burn::train::Learner::new(model, optimizer, RecipeLr::new(recipe, 391));
        let images = Tensor::<4>::random([batch_size, 3, 32, 32], Distribution::Normal(0.0, 1.0), &autodiff);
        let labels: Vec<i64> = (0..batch_size as i64).map(|i| i % 10).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch_size]), &autodiff);
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_function(format!("{spec}/batch{batch_size}"), |b| {
            b.iter(|| {
                let batch = Batch { images: images.clone(), targets: targets.clone(), part: Part::Train };
                let out = learner.train_step(batch);
                learner.lr_step();
                learner.optimizer_step(out.grads);
                drop(out.item);
                // Wait for the device to finish the step.
                autodiff.sync().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
