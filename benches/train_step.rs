//! Training throughput on the CPU (flex backend): images per second of one full SGD step
//! (forward, backward, optimizer update, through burn-train's `Learner` as `resnetc train`
//! runs it; `resnetc_runtime::bench::Stepper`, the step `resnetc bench` times) for resnet-20,
//! resnet-56, wrn-16-4, resnext-29-8x16d and densenet-bc-100-12 at their recipes' batch
//! sizes, on random images. Data loading is left out (it runs in loader threads in training).
//!
//! `cargo bench --bench train_step`; `RESNETC_BENCH_SPECS=resnet-20,wrn-16-4` picks specs.

use burn::tensor::Device;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resnetc_compiler::Compilation;
use resnetc_runtime::bench::{Mode, Stepper};
use resnetc_runtime::recipe::{Recipe, default_for};
use std::time::Duration;

const SPECS: &[&str] = &["resnet-20", "resnet-56", "wrn-16-4", "resnext-29-8x16d", "densenet-bc-100-12"];

fn train_step(c: &mut Criterion) {
    // As the `resnetc` binary does: keep each step's freed buffers for the next one.
    resnetc_runtime::memory::keep_freed_memory();
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
        let mut stepper = Stepper::new(&network, &device, Mode::Train, batch_size, &recipe, 0).unwrap();
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_function(format!("{spec}/batch{batch_size}"), |b| b.iter(|| stepper.step().unwrap()));
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
