//! `resnetc train` and `resnetc eval`: thin shells over `resnetc-runtime`.

use crate::{Format, SpecArgs, fail, load};
use resnetc_compiler::ir::Network;
use resnetc_runtime::data::{self, Augment, Dataset};
use resnetc_runtime::model::DynNet;
use resnetc_runtime::precision::Precision;
use resnetc_runtime::recipe::{self, Recipe};
use resnetc_runtime::train::{self as runtime, Progress, TrainError, TrainOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The dataset: a folder or .tar/.tar.gz with CIFAR binaries or train/ and test/ (or val/)
    /// image folders; images of other sizes than the network's input are resized and cropped.
    #[arg(long)]
    data: PathBuf,
    /// An image that cannot be read: stop with its path (fail), or leave it out and go on (skip).
    #[arg(long, value_enum, default_value = "fail")]
    on_bad_image: BadImageArg,
    /// Streamed images (not the input's size) decoded once are kept for later epochs up to
    /// this many MiB of pixels, least recently used dropped first (0: decode every time).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    cache_mb: usize,
    /// A recipe YAML file (default: the shipped recipe of the network's family).
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Override a recipe key by its dotted path, e.g. `--set-recipe optimizer.nesterov=true` (repeatable).
    #[arg(long = "set-recipe", value_name = "KEY=VALUE")]
    recipe_overrides: Vec<String>,
    /// Epochs (recipe `epochs`).
    #[arg(long)]
    epochs: Option<u32>,
    /// Batch size (recipe `batch_size`).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Start even when the estimated training memory (`resnetc summary`) exceeds the memory
    /// available (checked on the CPU only).
    #[arg(long)]
    no_memory_check: bool,
    /// Base learning rate (recipe `optimizer.lr`; times batch / `optimizer.lr_batch` when the recipe sets it, as imagenet does).
    #[arg(long)]
    lr: Option<f64>,
    /// cpu, cpu:N (N replicas: tests data parallelism), wgpu (a hardware GPU), wgpu:N, wgpu:cpu
    /// (the software adapter) or cuda[:N[,M...]]. Several devices train data-parallel; the batch
    /// size stays the global one.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// What convolutions and linear layers compute in on a GPU: f32, f16 or bf16 (weights,
    /// batch norm and loss stay f32).
    #[arg(long, default_value = "f32", value_parser = Precision::parse)]
    precision: Precision,
    /// The run folder (default: runs/<spec>-<timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last complete epoch.
    #[arg(long, requires = "out")]
    resume: bool,
    /// Seed of initialisation, shuffling, augmentation and the validation split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Training images held out for validation (best checkpoint by validation accuracy).
    #[arg(long, default_value_t = 0)]
    val_split: usize,
    /// Data-loader worker threads. With 1 a run is reproducible bit for bit from its seed; with
    /// more, Burn's loader hands batches over in the order they finish.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Progress display: Burn's TUI on a terminal and lines otherwise (auto), or always lines.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressArg,
    /// Start from these weights (a .bpk from `resnetc import` or an earlier run) instead of a
    /// fresh initialisation: fine-tuning.
    #[arg(long, value_name = "FILE.bpk", conflicts_with = "resume")]
    init: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BadImageArg {
    Fail,
    Skip,
}

impl From<BadImageArg> for data::BadImages {
    fn from(a: BadImageArg) -> Self {
        match a {
            BadImageArg::Fail => data::BadImages::Fail,
            BadImageArg::Skip => data::BadImages::Skip,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProgressArg {
    Auto,
    Plain,
}

/// What `eval` and `lesion` score: a spec, its trained weights, the data.
#[derive(clap::Args)]
pub(crate) struct ScoreArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Weights to score (a .bpk written by `resnetc train`, or by `Module::save_file`).
    #[arg(long)]
    weights: PathBuf,
    /// The dataset, as for `train`; its test split is scored.
    #[arg(long)]
    data: PathBuf,
    /// The recipe whose normalisation to use (default: recipe.yaml beside the weights or one
    /// folder up, as `train` writes it; else statistics of the training split).
    #[arg(long)]
    recipe: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    score: ScoreArgs,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(clap::Args)]
pub(crate) struct LesionArgs {
    #[command(flatten)]
    score: ScoreArgs,
    /// Also remove each two adjacent residual units together.
    #[arg(long)]
    pairs: bool,
    /// Write the plot (test error against the removed unit) to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: LesionFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LesionFormat {
    Table,
    Csv,
    Json,
}

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// A training step (forward, backward, SGD update) or an inference pass (eval mode).
    #[arg(long, value_enum, default_value = "train")]
    mode: BenchMode,
    /// Images per step (default: the recipe's batch size for train, 256 for infer).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Start even when the estimated training memory exceeds the memory available (`--mode train`, CPU).
    #[arg(long)]
    no_memory_check: bool,
    /// Timed steps; the median step time is reported.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps before timing.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// A recipe YAML file for the optimizer (default: the shipped recipe of the network's family).
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// cpu, wgpu, wgpu:N, wgpu:cpu or cuda[:N] (the first device of a list).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, f16 or bf16 convolutions and linear layers (GPUs; as for `train`).
    #[arg(long, default_value = "f32", value_parser = Precision::parse)]
    precision: Precision,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also compare one batch's eval-mode logits on --device with the CPU's (same weights):
    /// `logits_vs_cpu` in the JSON, the largest difference over the largest CPU logit.
    #[arg(long)]
    compare_cpu: bool,
    /// Run batch norm, residual addition and ReLU as separate ops instead of the fused CPU
    /// training op (to measure what the fusion gives).
    #[arg(long)]
    no_fuse: bool,
    /// Measure the data loader alone on this dataset instead of a step: one pass of the
    /// training images decoded and augmented as `train` does, by --workers threads.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Loader threads for --data.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Passes over the training images for --data (later ones read the decoded cache).
    #[arg(long, default_value_t = 1)]
    passes: usize,
    /// The decoded cache for --data, in MiB (as `train --cache-mb`).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    cache_mb: usize,
}

#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// PyTorch weights: a state dict saved with torch.save (.pt/.pth; also under a `state_dict`
    /// key), or a .safetensors file.
    weights: PathBuf,
    /// The checkpoint to write (.bpk), for `eval`, `lesion`, `train --init` and the emitted code.
    #[arg(short, long)]
    output: PathBuf,
    /// Rename source tensors before matching them by name, e.g. `--rename '^module\.='`
    /// (regex, `$1` in the replacement; applied in order; repeatable).
    #[arg(long = "rename", value_name = "REGEX=REPLACEMENT", value_parser = parse_rename)]
    renames: Vec<resnetc_runtime::weights::Rename>,
    /// Match tensors by position (the file's order against the network's forward order), every
    /// shape verified, instead of by name.
    #[arg(long, conflicts_with = "renames")]
    by_order: bool,
}

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The weights to export (a .bpk from `resnetc train` or `resnetc import`).
    #[arg(long)]
    weights: PathBuf,
    /// The ONNX file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Bake this batch size into the graph instead of a dynamic `batch` axis.
    #[arg(long)]
    batch: Option<usize>,
}

fn parse_rename(text: &str) -> Result<resnetc_runtime::weights::Rename, String> {
    resnetc_runtime::weights::Rename::parse(text)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchMode {
    Train,
    Infer,
}

fn error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

/// Check the spec of a network on images: the network and its input `[C, H, W]`.
fn image_network(spec: &SpecArgs) -> Result<(Network, [usize; 3]), ExitCode> {
    let (c, id) = load(spec)?;
    let network = c.check(id, &spec.overrides).map_err(|d| fail(&c, &d))?;
    let Some([ch, h, w]) = network.input.as_chw() else {
        return Err(error(format!(
            "{}: the network's input {} is not an image (C×H×W)",
            spec.spec.display(),
            network.input
        )));
    };
    Ok((network, [ch as usize, h as usize, w as usize]))
}

/// Check the spec and load the data in its input shape.
fn network_and_data(spec: &SpecArgs, data_path: &Path, bad: data::BadImages) -> Result<(Network, Dataset), ExitCode> {
    let (network, chw) = image_network(spec)?;
    let dataset = data::load_with(data_path, chw, bad).map_err(error)?;
    for skipped in &dataset.skipped {
        eprintln!("warning: {skipped}; left out (--on-bad-image skip)");
    }
    Ok((network, dataset))
}

/// The shipped recipe a network trains with when none is given: ImageNet's for large inputs.
fn default_recipe(network: &Network) -> &'static str {
    match network.input.as_chw() {
        Some([_, h, w]) => recipe::default_for_input(&network.name, h, w),
        None => recipe::default_for(&network.name),
    }
}

fn recipe_for(args: &TrainArgs, network: &Network) -> Result<Recipe, ExitCode> {
    let mut recipe = match &args.recipe {
        Some(path) => Recipe::load(path),
        None => Recipe::shipped(default_recipe(network)),
    }
    .map_err(error)?;
    for assignment in &args.recipe_overrides {
        recipe = recipe.set(assignment).map_err(error)?;
    }
    if let Some(epochs) = args.epochs {
        recipe.epochs = epochs;
    }
    if let Some(batch_size) = args.batch_size {
        recipe.batch_size = batch_size;
    }
    if let Some(lr) = args.lr {
        recipe.optimizer.lr = lr;
    }
    Ok(recipe)
}

pub(crate) fn train(args: TrainArgs) -> Result<(), ExitCode> {
    let device = resnetc_runtime::device::parse(&args.device).map_err(error)?;
    args.precision.check(&device).map_err(error)?;
    let (network, mut dataset) = network_and_data(&args.spec, &args.data, args.on_bad_image.into())?;
    dataset.cache_decoded(args.cache_mb << 20);
    let mut recipe = recipe_for(&args, &network)?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => {
            let stem = args.spec.spec.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned());
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            PathBuf::from("runs").join(format!("{stem}-{stamp}"))
        }
    };
    if args.resume {
        // The run's own recipe (with its normalisation) continues; only the length may change.
        let saved = out.join("recipe.yaml");
        let mut previous = Recipe::load(&saved).map_err(error)?;
        if let Some(epochs) = args.epochs {
            previous.epochs = epochs;
        }
        let changed = args.recipe.is_some()
            || !args.recipe_overrides.is_empty()
            || args.batch_size.is_some()
            || args.lr.is_some();
        if changed {
            return Err(error(format!(
                "--resume continues with {}; only --epochs may change (start a new --out for another recipe)",
                saved.display()
            )));
        }
        recipe = previous;
    }
    if !args.no_memory_check {
        resnetc_runtime::memory::check_training(&network, recipe.batch_size, !device.is_gpu()).map_err(error)?;
    }
    let options = TrainOptions {
        spec: args.spec.spec.display().to_string(),
        recipe,
        out: out.clone(),
        resume: args.resume,
        seed: args.seed,
        val_split: args.val_split,
        device,
        precision: args.precision,
        workers: args.workers.max(1),
        init: args.init.clone(),
        progress: match args.progress {
            ProgressArg::Auto => Progress::Auto,
            ProgressArg::Plain => Progress::Plain,
        },
    };
    match runtime::train(&network, &dataset, &options) {
        Ok(summary) => {
            let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", v * 100.0));
            println!(
                "{}: {} epoch{}, test accuracy {}{}{}, {:.0}s; run folder {}",
                network.name,
                summary.epochs,
                if summary.epochs == 1 { "" } else { "s" },
                pct(summary.test_accuracy),
                match summary.test_top5 {
                    Some(t) if network.output.numel() > 5 => format!(" (top-5 {})", pct(Some(t))),
                    _ => String::new(),
                },
                match summary.best_epoch {
                    Some(e) => format!(" (best validation {} at epoch {e})", pct(summary.best_val_accuracy)),
                    None => String::new(),
                },
                summary.seconds,
                out.display()
            );
            // A run that stopped before its last epoch did not do what was asked: a failure
            // exit, so that scripts notice (the run folder and its checkpoints are kept).
            match summary.stopped {
                Some(reason) => {
                    Err(error(format!("stopped early: {reason}; continue with --resume --out {}", out.display())))
                }
                None => Ok(()),
            }
        }
        Err(e @ TrainError::Diverged(_)) => Err(error(format!("{e}\n  run folder: {}", out.display()))),
        Err(e) => Err(error(e)),
    }
}

/// A trained network ready to score: what `eval` and `lesion` share.
struct Scoring {
    network: Network,
    dataset: Dataset,
    model: DynNet,
    augment: Augment,
    device: burn::tensor::Device,
}

/// Check the spec, load the data and the weights, and pick the normalisation: `--recipe`, else
/// the recipe.yaml `train` wrote beside the weights (or one folder up), else the training split's.
fn scoring(args: &ScoreArgs) -> Result<Scoring, ExitCode> {
    let ScoreArgs { spec, weights, data, recipe, device, .. } = args;
    let device = resnetc_runtime::device::parse(device).map_err(error)?.main();
    let (network, dataset) = network_and_data(spec, data, data::BadImages::Fail)?;
    let beside = [weights.parent(), weights.parent().and_then(Path::parent)]
        .into_iter()
        .flatten()
        .map(|d| d.join("recipe.yaml"))
        .find(|p| p.exists());
    let recipe = match recipe.as_deref().or(beside.as_deref()) {
        Some(path) => Some(Recipe::load(path).map_err(error)?),
        None => None,
    };
    let (mean, std) = match recipe.as_ref().and_then(|r| r.normalize.clone()) {
        Some(n) => n.for_channels(dataset.train.shape[0]).map_err(error)?,
        None => dataset.train.channel_stats().map_err(error)?,
    };
    let classes = network.output.numel();
    if let Some(&label) = dataset.test.labels.iter().find(|&&l| u64::from(l) >= classes) {
        return Err(error(format!(
            "the data has label {label} but {} has {classes} outputs (set classes=…)",
            network.name
        )));
    }
    use burn::module::Module;
    let model = DynNet::new(&network, &device)
        .try_load_file(weights)
        .map_err(|e| error(format!("{}: cannot load into {}: {e}", weights.display(), network.name)))?;
    // The run's evaluation geometry (its crop_pct) for images of other sizes than the input.
    let augment = match &recipe {
        Some(r) => runtime::augment_of(r, mean, std),
        None => Augment::new(mean, std, 0, false),
    };
    Ok(Scoring { network, dataset, model, augment, device })
}

pub(crate) fn eval(args: EvalArgs) -> Result<(), ExitCode> {
    let Scoring { network, dataset, model, augment, device } = scoring(&args.score)?;
    let result = runtime::evaluate(&model, &dataset.test, &augment, args.score.batch_size, &device).map_err(error)?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "spec": args.score.spec.spec.display().to_string(),
                "network": network.name,
                "weights": args.score.weights.display().to_string(),
                "images": result.images,
                "top1": result.top1,
                "top5": result.top5,
                "loss": result.loss,
            }))
            .expect("JSON of numbers")
        ),
        Format::Table => {
            println!("{} on {} test images ({})", network.name, result.images, args.score.weights.display());
            println!("  top-1 accuracy  {:>7.2}%", result.top1 * 100.0);
            println!("  top-5 accuracy  {:>7.2}%", result.top5 * 100.0);
            println!("  loss            {:>8.4}", result.loss);
        }
    }
    Ok(())
}

/// `resnetc bench --data`: the loader's throughput alone.
fn bench_loader(args: &BenchArgs, network: &Network, recipe: Recipe, data_path: &Path) -> Result<(), ExitCode> {
    let Some([c, h, w]) = network.input.as_chw() else {
        return Err(error(format!(
            "{}: the network's input {} is not an image",
            args.spec.spec.display(),
            network.input
        )));
    };
    let start = std::time::Instant::now();
    let mut dataset = data::load(data_path, [c as usize, h as usize, w as usize]).map_err(error)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let cache = dataset.cache_decoded(args.cache_mb << 20);
    let (mean, std) = match &recipe.normalize {
        Some(n) => n.for_channels(c as usize).map_err(error)?,
        None => dataset.train.channel_stats().map_err(error)?,
    };
    let augment = runtime::augment_of(&recipe, mean, std);
    let batch_size = args.batch_size.unwrap_or(recipe.batch_size);
    // Each pass is measured: the first decodes, later ones find what the cache kept.
    let mut passes = Vec::new();
    for pass in 0..args.passes.max(1) {
        let seed = args.seed.wrapping_add(pass as u64);
        passes.push(
            resnetc_runtime::bench::loader(&dataset.train, &augment, batch_size, args.workers, seed).map_err(error)?,
        );
    }
    let result = passes.last().expect("one pass").clone();
    let cache = cache.map(|c| c.stats());
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string(&serde_json::json!({
                "format": dataset.format,
                "load_seconds": load_seconds,
                "loader": result,
                "passes": passes,
                "cache": cache.map(|c| serde_json::json!({
                    "budget_bytes": c.budget, "bytes": c.bytes, "images": c.images,
                    "hits": c.hits, "misses": c.misses,
                })),
            }))
            .expect("JSON of numbers")
        ),
        Format::Table => {
            let rss =
                result.peak_rss_bytes.map_or("-".into(), |b| format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64));
            println!(
                "loader: {} {} training images ({}), batch {batch_size}, {} worker(s), {h}×{w} input",
                result.images, network.name, dataset.format, result.workers
            );
            println!("  loaded in          {load_seconds:>10.2} s (headers, or decoding once)");
            for (k, pass) in passes.iter().enumerate() {
                println!("  images/s, pass {:<3} {:>10.1}", k + 1, pass.images_per_sec);
            }
            println!("  pass               {:>10.2} s", result.seconds);
            println!("  skipped            {:>10}", result.skipped);
            println!("  peak RSS           {rss:>10}");
            if let Some(c) = cache {
                println!(
                    "  decoded cache      {} images, {:.0} of {} MiB; {} hits, {} misses",
                    c.images,
                    c.bytes as f64 / (1u64 << 20) as f64,
                    c.budget >> 20,
                    c.hits,
                    c.misses
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn bench(args: BenchArgs) -> Result<(), ExitCode> {
    use resnetc_runtime::bench::{self, BenchOptions, Mode};
    let selection = resnetc_runtime::device::parse(&args.device).map_err(error)?;
    args.precision.check(&selection).map_err(error)?;
    let device = selection.main();
    let device_name = format!("{} [{}]", selection.name, selection.describe());
    let (c, id) = load(&args.spec)?;
    let network = c.check(id, &args.spec.overrides).map_err(|d| fail(&c, &d))?;
    let recipe = match &args.recipe {
        Some(path) => Recipe::load(path),
        None => Recipe::shipped(default_recipe(&network)),
    }
    .map_err(error)?;
    if let Some(data_path) = &args.data {
        return bench_loader(&args, &network, recipe, data_path);
    }
    resnetc_runtime::fused::set_enabled(!args.no_fuse);
    let mode = match args.mode {
        BenchMode::Train => Mode::Train,
        BenchMode::Infer => Mode::Infer,
    };
    let batch_size = args.batch_size.unwrap_or(match mode {
        Mode::Train => recipe.batch_size,
        Mode::Infer => 256,
    });
    if mode == Mode::Train && !args.no_memory_check {
        resnetc_runtime::memory::check_training(&network, batch_size, !selection.is_gpu()).map_err(error)?;
    }
    let options = BenchOptions {
        mode,
        batch_size,
        warmup: args.warmup,
        steps: args.steps,
        recipe,
        seed: args.seed,
        precision: args.precision,
        compare_cpu: args.compare_cpu,
    };
    let spec = args.spec.spec.display().to_string();
    let result = bench::run(&spec, &network, &device, &options).map_err(error)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&result).expect("JSON of numbers")),
        Format::Table => {
            let rss =
                result.peak_rss_bytes.map_or("-".into(), |b| format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64));
            println!("{} ({mode}, batch {batch_size}, {device_name}, {} timed steps)", network.name, result.steps);
            println!("  images/s (median)  {:>10.1}", result.images_per_sec);
            println!(
                "  step time          {:>10.4} s (min {:.4}, max {:.4})",
                result.median_step_seconds, result.min_step_seconds, result.max_step_seconds
            );
            println!("  peak RSS           {rss:>10}");
            if let Some(e) = result.logits_vs_cpu {
                println!("  logits vs CPU      {e:>10.2e} (largest difference / largest logit)");
            }
            if let Some(b) = result.device_memory_reserved_bytes {
                println!(
                    "  device memory      {:>10.0} MiB (most reserved by Burn's pools)",
                    b as f64 / (1u64 << 20) as f64
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn lesion(args: LesionArgs) -> Result<(), ExitCode> {
    let Scoring { network, dataset, model, augment, device } = scoring(&args.score)?;
    let progress = |what: &str| eprintln!("evaluating: {what}");
    let report = resnetc_runtime::lesion::study(
        &network.name,
        &model,
        &dataset.test,
        &augment,
        args.score.batch_size,
        &device,
        args.pairs,
        progress,
    )
    .map_err(error)?;
    if let Some(path) = &args.plot {
        let svg = report.plot().map_err(error)?;
        resnetc_runtime::report::write_atomic(path, svg.as_bytes())
            .map_err(|e| error(format!("cannot write {}: {e}", path.display())))?;
    }
    match args.format {
        LesionFormat::Table => print!("{}", report.table()),
        LesionFormat::Csv => print!("{}", report.csv().map_err(error)?),
        LesionFormat::Json => println!("{}", serde_json::to_string_pretty(&report).expect("JSON of numbers")),
    }
    Ok(())
}

pub(crate) fn import(args: ImportArgs) -> Result<(), ExitCode> {
    use burn::module::Module;
    use resnetc_runtime::weights::{self, Mapping};
    let (c, id) = load(&args.spec)?;
    let network = c.check(id, &args.spec.overrides).map_err(|d| fail(&c, &d))?;
    let device = burn::tensor::Device::flex();
    let mapping = if args.by_order { Mapping::ByOrder } else { Mapping::ByName(args.renames.clone()) };
    let model = DynNet::new(&network, &device);
    let count = model.tensor_paths().len();
    let model = weights::import(model, &network.name, &args.weights, &mapping, &device).map_err(error)?;
    let tmp = args.output.with_extension("bpk.partial");
    model.save_file(&tmp).map_err(|e| error(format!("cannot write {}: {e}", args.output.display()))).and_then(
        |()| {
            std::fs::rename(&tmp, &args.output)
                .map_err(|e| error(format!("cannot write {}: {e}", args.output.display())))
        },
    )?;
    println!(
        "{}: {count} tensors of {} imported from {} into {}",
        args.spec.spec.display(),
        network.name,
        args.weights.display(),
        args.output.display()
    );
    Ok(())
}

pub(crate) fn export(args: ExportArgs) -> Result<(), ExitCode> {
    use burn::module::Module;
    use resnetc_runtime::export::{self, Batch};
    let (network, chw) = image_network(&args.spec)?;
    let [ch, h, w] = chw;
    let device = burn::tensor::Device::flex();
    let model = DynNet::new(&network, &device)
        .try_load_file(&args.weights)
        .map_err(|e| error(format!("{}: cannot load into {}: {e}", args.weights.display(), network.name)))?;
    let batch = args.batch.map_or(Batch::Dynamic, Batch::Fixed);
    let bytes = export::onnx(&model, chw, batch).map_err(|e| error(format!("{}: {e}", network.name)))?;
    resnetc_runtime::report::write_atomic(&args.output, &bytes)
        .map_err(|e| error(format!("cannot write {}: {e}", args.output.display())))?;
    let shape = match batch {
        Batch::Dynamic => format!("[batch, {ch}, {h}, {w}]"),
        Batch::Fixed(n) => format!("[{n}, {ch}, {h}, {w}]"),
    };
    println!(
        "{}: {} (input {shape}, eval mode) exported to {} ({} bytes)",
        args.spec.spec.display(),
        network.name,
        args.output.display(),
        bytes.len()
    );
    Ok(())
}
