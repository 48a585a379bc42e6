//! Throughput of a network: `resnetc bench`.
//!
//! Measured the way timm's `benchmark.py` does it: a few untimed warm-up steps, then each
//! timed step on its own (the device synchronised at its end), and the **median** step time
//! turned into images per second. A training step is exactly what `resnetc train` runs per
//! batch — burn-train's `Learner` doing forward, per-image cross-entropy, backward and the
//! recipe's SGD update with its learning-rate schedule — on random normal images and random
//! labels, so data loading is left out (it runs in loader threads during training). An
//! inference step is a forward pass in eval mode (BatchNorm on running statistics) without
//! autodiff. The peak resident set size (`VmHWM`) of the whole process is reported beside it.

use crate::model::DynNet;
use crate::precision::Precision;
use crate::recipe::Recipe;
use crate::train::{Batch, Part, RecipeLr, sgd};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use burn::train::Learner;
use resnetc_compiler::ir::Network;
use std::time::Instant;

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Forward, loss, backward and the optimizer's update.
    Train,
    /// A forward pass in eval mode, no gradients.
    Infer,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Train => "train",
            Mode::Infer => "infer",
        })
    }
}

/// How to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub mode: Mode,
    pub batch_size: usize,
    /// Untimed steps first (allocator pools, caches, autotuning).
    pub warmup: usize,
    /// Timed steps; the median is reported.
    pub steps: usize,
    /// The optimizer and schedule of a training step.
    pub recipe: Recipe,
    pub seed: u64,
    /// What convolutions and linear layers compute in (GPUs).
    pub precision: Precision,
    /// Also run one batch in eval mode on the CPU and on `device` with the same weights and
    /// report the logits' difference ([`BenchResult::logits_vs_cpu`]).
    pub compare_cpu: bool,
}

/// One measurement; serialises to the JSON `resnetc bench --format json` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub spec: String,
    pub mode: Mode,
    pub batch_size: usize,
    pub steps: usize,
    /// `batch_size` / the median step time.
    pub images_per_sec: f64,
    pub median_step_seconds: f64,
    /// Fastest and slowest timed step, to show the spread.
    pub min_step_seconds: f64,
    pub max_step_seconds: f64,
    /// Peak resident set size of the process so far (Linux `VmHWM`); `None` where unknown.
    pub peak_rss_bytes: Option<u64>,
    /// The most device memory Burn's pools held after any step (GPUs; `None` on the CPU).
    pub device_memory_reserved_bytes: Option<u64>,
    pub precision: Precision,
    /// With `compare_cpu`: the largest difference between the device's eval-mode logits and the
    /// CPU's for the same weights and batch, over the largest CPU logit.
    pub logits_vs_cpu: Option<f64>,
}

/// One step, ready to repeat: the model, its optimizer and one batch of random images.
pub struct Stepper {
    device: Device,
    kind: StepKind,
}

// One stepper per measurement: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum StepKind {
    Train { learner: Learner<DynNet>, images: Tensor<4>, targets: Tensor<1, Int> },
    Infer { model: DynNet, images: Tensor<4> },
}

impl Stepper {
    /// Build `network` on `device` for `mode` steps of `batch_size` random images; training
    /// uses `recipe`'s optimizer and schedule. `seed` seeds the weights and the images.
    pub fn new(
        network: &Network,
        device: &Device,
        mode: Mode,
        batch_size: usize,
        recipe: &Recipe,
        seed: u64,
    ) -> Result<Self, String> {
        Self::with_precision(network, device, mode, batch_size, recipe, seed, Precision::F32)
    }

    /// [`Stepper::new`] with convolutions and linear layers computing in `precision`.
    pub fn with_precision(
        network: &Network,
        device: &Device,
        mode: Mode,
        batch_size: usize,
        recipe: &Recipe,
        seed: u64,
        precision: Precision,
    ) -> Result<Self, String> {
        let Some([c, h, w]) = network.input.as_chw() else {
            return Err(format!("the network's input {} is not an image (C×H×W)", network.input));
        };
        if batch_size == 0 {
            return Err("the batch size must be at least 1".into());
        }
        let classes = network.output.numel() as usize;
        let shape = [batch_size, c as usize, h as usize, w as usize];
        device.seed(seed);
        let kind = match mode {
            Mode::Train => {
                let autodiff = device.clone().autodiff();
                let model = DynNet::new(network, &autodiff)
                    .with_label_smoothing(recipe.label_smoothing)
                    .with_precision(precision);
                // Labels from a fixed sequence: every class present, nothing to learn.
                let labels: Vec<i64> = (0..batch_size).map(|i| ((i * 7919 + seed as usize) % classes) as i64).collect();
                StepKind::Train {
                    learner: Learner::new(model, sgd(recipe).init(), RecipeLr::new(recipe.clone(), 391)),
                    images: Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &autodiff),
                    targets: Tensor::<1, Int>::from_data(TensorData::new(labels, [batch_size]), &autodiff),
                }
            }
            Mode::Infer => StepKind::Infer {
                model: DynNet::new(network, device).with_precision(precision).valid(),
                images: Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device),
            },
        };
        Ok(Stepper { device: device.clone(), kind })
    }

    /// Run one step and wait for the device to finish it.
    pub fn step(&mut self) -> Result<(), String> {
        match &mut self.kind {
            StepKind::Train { learner, images, targets } => {
                // What `resnetc train` does per batch (burn-train's training loop).
                let batch = Batch { images: images.clone(), targets: targets.clone(), part: Part::Train };
                let out = learner.train_step(batch);
                learner.lr_step();
                learner.optimizer_step(out.grads);
                drop(out.item);
            }
            StepKind::Infer { model, images } => drop(model.forward(images.clone())),
        }
        self.device.sync().map_err(|e| format!("device error: {e:?}"))
    }
}

/// Time `options.steps` steps of `network` on `device` (after the warm-up).
pub fn run(spec: &str, network: &Network, device: &Device, options: &BenchOptions) -> Result<BenchResult, String> {
    if options.steps == 0 {
        return Err("--steps must be at least 1".into());
    }
    let mut stepper = Stepper::with_precision(
        network,
        device,
        options.mode,
        options.batch_size,
        &options.recipe,
        options.seed,
        options.precision,
    )?;
    let mut times = Vec::with_capacity(options.steps);
    let mut reserved: Option<u64> = None;
    for i in 0..options.warmup + options.steps {
        let start = Instant::now();
        stepper.step()?;
        if i >= options.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
        if let Some(usage) = device.memory_pool_usage() {
            reserved = Some(reserved.unwrap_or(0).max(usage.bytes_reserved));
        }
    }
    let median = median(&mut times);
    let n = options.batch_size;
    Ok(BenchResult {
        spec: spec.to_string(),
        mode: options.mode,
        batch_size: n,
        steps: options.steps,
        images_per_sec: n as f64 / median,
        median_step_seconds: median,
        min_step_seconds: times[0],
        max_step_seconds: times[times.len() - 1],
        peak_rss_bytes: peak_rss_bytes(),
        device_memory_reserved_bytes: reserved.filter(|_| !device_is_cpu(device)),
        precision: options.precision,
        logits_vs_cpu: if options.compare_cpu { Some(logits_vs_cpu(network, device, options)?) } else { None },
    })
}

/// One batch of 8 random images through `network` in eval mode on the CPU, then on `device`
/// with the same weights (and `options.precision`): the largest logit difference over the
/// largest CPU logit.
pub fn logits_vs_cpu(network: &Network, device: &Device, options: &BenchOptions) -> Result<f64, String> {
    let Some([c, h, w]) = network.input.as_chw() else {
        return Err(format!("the network's input {} is not an image (C×H×W)", network.input));
    };
    let cpu = Device::flex();
    cpu.seed(options.seed);
    let model = DynNet::new(network, &cpu).valid();
    let images = Tensor::<4>::random([8, c as usize, h as usize, w as usize], Distribution::Normal(0.0, 1.0), &cpu);
    let read = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| format!("{e:?}"));
    let expected = read(model.forward(images.clone()))?;
    // After the CPU pass: `to_device` moves the running statistics the two copies share.
    let moved = model.to_device(device).with_precision(options.precision);
    let got = read(moved.forward(images.to_device(device)))?;
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = expected.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    if got.iter().any(|v| !v.is_finite()) {
        return Err("the device's logits are not finite".into());
    }
    Ok(f64::from(worst / scale))
}

fn device_is_cpu(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// The data loader alone (`resnetc bench --data PATH`): every training image decoded and
/// augmented as a training batch is (for a streamed folder: decode, the recipe's random resized
/// crop or resize + centre crop, flip, normalisation), by `workers` threads each building whole
/// batches, as burn's loader workers do; no network runs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoaderResult {
    pub images: usize,
    pub workers: usize,
    pub batch_size: usize,
    pub seconds: f64,
    pub images_per_sec: f64,
    /// Images that could not be decoded (skipped under `--on-bad-image skip`).
    pub skipped: usize,
    pub peak_rss_bytes: Option<u64>,
}

/// Time one pass of the training split through `augment` (see [`LoaderResult`]).
pub fn loader(
    split: &crate::data::Split,
    augment: &crate::data::Augment,
    batch_size: usize,
    workers: usize,
    seed: u64,
) -> Result<LoaderResult, String> {
    let indices: Vec<usize> = crate::data::shuffled(split.len(), &mut crate::data::rng(seed));
    let batches: Vec<&[usize]> = indices.chunks(batch_size.max(1)).collect();
    let workers = workers.max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    let results: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (batches, next) = (&batches, &next);
                scope.spawn(move || -> Result<usize, String> {
                    let (mut out, mut skipped) = (Vec::new(), 0);
                    let mut rng = crate::data::rng(seed ^ (w as u64 + 1));
                    loop {
                        let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(batch) = batches.get(b) else { return Ok(skipped) };
                        skipped +=
                            augment.batch(split, batch, Some(&mut rng), &mut out).map_err(|e| e.to_string())?.len();
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a loader thread panicked".into()))).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut skipped = 0;
    for r in results {
        skipped += r?;
    }
    Ok(LoaderResult {
        images: split.len(),
        workers,
        batch_size,
        seconds,
        images_per_sec: split.len() as f64 / seconds.max(1e-9),
        skipped,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// Sorts `times` and returns their median (mean of the middle two for an even count).
pub fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let k = times.len();
    if k % 2 == 1 { times[k / 2] } else { (times[k / 2 - 1] + times[k / 2]) / 2.0 }
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut words = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [5.0]), 5.0);
    }

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t  900 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(12345 * 1024));
        assert_eq!(parse_vm_hwm("VmHWM:\t12 MB\n"), None);
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
        #[cfg(target_os = "linux")]
        assert!(peak_rss_bytes().unwrap() > 1024 * 1024, "a running test binary holds more than 1 MiB");
    }
}
