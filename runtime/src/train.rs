//! Training and evaluation, on burn-train's machinery.
//!
//! [`train`] drives Burn's `SupervisedTraining` with a [`Learner`] holding the network
//! ([`DynNet`], built from the IR), SGD as the recipe says (dampening 0) and a learning-rate
//! scheduler that follows the recipe ([`RecipeLr`], saved in checkpoints). What resnetc adds
//! through burn-train's extension points:
//!
//! - **data**: an [`EpochLoader`] over image indices, epoch e shuffled from (seed, e) alone so
//!   that a resumed run repeats an uninterrupted one bit for bit; the batcher augments
//!   ([`Augment`]) with a generator seeded from the run seed and the batch's own indices, so a
//!   batch's augmentation does not depend on which worker thread builds it;
//! - **validation and test in one pass**: burn-train has one validation loader, so it yields
//!   the held-out validation images and then the test images, each batch tagged with its
//!   [`Part`]; metrics ([`PartMetric`]) count only their part. Val and test are scored every
//!   epoch, and the best checkpoint is chosen on validation, never on test;
//! - **run folder**: a `MetricLogger` ([`RunLog`]) writes `metrics.csv`, `curves.svg` and the
//!   per-epoch console line when Burn closes each epoch;
//! - **checkpoints**: Burn's file checkpointers (burnpack files, written beside and renamed:
//!   atomic) under a strategy ([`KeepLastAndBest`]) that keeps the last two epochs and the best
//!   one by validation; `last.bpk`/`best.bpk` are copied out when training stops;
//! - **divergence**: the training-loss metric stops the run through Burn's `Interrupter` when
//!   a loss is NaN or infinite; Burn does not checkpoint an interrupted epoch, so the last good
//!   checkpoint stays the newest.

use crate::data::{self, Augment, Dataset, Split};
use crate::device::{Kind, Selection};
use crate::epochs::EpochLoader;
use crate::model::DynNet;
use crate::precision::Precision;
use crate::recipe::Recipe;
use crate::report::{self, Row, Summary};
use crate::transform::Geometry;
use burn::data::dataloader::DataLoader;
use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{LearningRate, OptimizerRecord, SgdConfig};
use burn::store::ModuleRecord;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::logger::MetricLogger;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::store::{EpochSummary, EventStoreClient, MetricsUpdate, Split as BurnSplit};
use burn::train::metric::{
    Adaptor, ItemLazy, Metric, MetricAttributes, MetricDefinition, MetricMetadata, MetricName, Numeric,
    NumericAttributes, NumericEntry, SerializedEntry,
};
use burn::train::{InferenceStep, Interrupter, Learner, SupervisedTraining, TrainOutput, TrainStep};
use resnetc_compiler::ir::Network;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which images a batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    Train,
    /// Training images held out for model selection (`--val-split`).
    Val,
    Test,
}

impl Part {
    fn index(self) -> usize {
        self as usize
    }
}

/// A batch on its device.
#[derive(Clone, Debug)]
pub struct Batch {
    pub images: Tensor<4>,
    pub targets: Tensor<1, Int>,
    pub part: Part,
}

fn batch_of(pixels: Vec<f32>, split: &Split, indices: &[usize], part: Part, device: &Device) -> Batch {
    let [c, h, w] = split.shape;
    let n = indices.len();
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [n, c, h, w]), device);
    let labels: Vec<i64> = indices.iter().map(|&i| i64::from(split.labels[i])).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
    Batch { images, targets, part }
}

/// What the loader's workers find wrong with images they decode: a skipped image (loaded with
/// `BadImages::Skip`) is a warning, any other stops the run with the file named.
#[derive(Clone)]
struct ImageErrors {
    shared: Shared,
    interrupter: Interrupter,
}

impl ImageErrors {
    fn report(&self, result: Result<Vec<data::DataError>, data::DataError>) {
        match result {
            Ok(skipped) => {
                for e in skipped {
                    eprintln!("warning: {e}; skipped (--on-bad-image skip): a black image in its place");
                }
            }
            Err(e) => {
                let message = e.to_string();
                lock(&self.shared).failure.get_or_insert_with(|| message.clone());
                self.interrupter.stop(Some(&message));
            }
        }
    }
}

/// Builds augmented training batches from image indices.
#[derive(Clone)]
struct TrainBatcher {
    split: Arc<Split>,
    augment: Augment,
    seed: u64,
    errors: ImageErrors,
}

/// A generator seed from the run seed and a batch's indices (splitmix64 steps).
fn batch_seed(seed: u64, indices: &[u32]) -> u64 {
    use data::{GOLDEN_GAMMA, mix64};
    indices.iter().fold(mix64(seed), |h, &i| mix64(h ^ u64::from(i).wrapping_add(GOLDEN_GAMMA)))
}

impl Batcher<u32, Batch> for TrainBatcher {
    fn batch(&self, items: Vec<u32>, device: &Device) -> Batch {
        let indices: Vec<usize> = items.iter().map(|&i| i as usize).collect();
        let mut rng = data::rng(batch_seed(self.seed, &items));
        let mut pixels = Vec::new();
        let start = Instant::now();
        self.errors.report(self.augment.batch(&self.split, &indices, Some(&mut rng), &mut pixels));
        let mut state = lock(&self.errors.shared);
        state.loader_busy += start.elapsed();
        state.loader_images += indices.len();
        drop(state);
        batch_of(pixels, &self.split, &indices, Part::Train, device)
    }
}

/// A run of images of one part, scored as one batch.
#[derive(Clone, Debug)]
struct Chunk {
    part: Part,
    indices: Vec<u32>,
}

/// Builds evaluation batches (no augmentation); validation images come from the training split.
#[derive(Clone)]
struct EvalBatcher {
    train: Arc<Split>,
    test: Arc<Split>,
    augment: Augment,
    errors: ImageErrors,
}

impl Batcher<Chunk, Batch> for EvalBatcher {
    fn batch(&self, items: Vec<Chunk>, device: &Device) -> Batch {
        // The loader hands over one chunk at a time (batch size 1), so a batch never mixes parts.
        let chunk = items.into_iter().next().expect("the loader batches at least one item");
        let split = if chunk.part == Part::Test { &self.test } else { &self.train };
        let indices: Vec<usize> = chunk.indices.iter().map(|&i| i as usize).collect();
        let mut pixels = Vec::new();
        self.errors.report(self.augment.batch(split, &indices, None, &mut pixels));
        batch_of(pixels, split, &indices, chunk.part, device)
    }
}

fn chunks(part: Part, indices: &[usize], batch_size: usize) -> Vec<Chunk> {
    indices.chunks(batch_size.max(1)).map(|c| Chunk { part, indices: c.iter().map(|&i| i as u32).collect() }).collect()
}

/// The recipe's SGD: momentum with the recipe's dampening (0 in every shipped recipe, where
/// Burn's default is 0.1), Nesterov, weight decay.
pub fn sgd(recipe: &Recipe) -> SgdConfig {
    let o = &recipe.optimizer;
    SgdConfig::new()
        .with_momentum((o.momentum > 0.0).then_some(MomentumConfig {
            momentum: o.momentum,
            dampening: o.dampening,
            nesterov: o.nesterov,
        }))
        .with_weight_decay((o.weight_decay > 0.0).then_some(WeightDecayConfig { penalty: o.weight_decay as f32 }))
}

/// Per-image cross-entropy, with PyTorch's label smoothing: `(1-ε)·nll + ε·mean(-log p)`.
pub fn item_losses(logits: Tensor<2>, targets: Tensor<1, Int>, smoothing: f64) -> Tensor<1> {
    let [n, _] = logits.dims();
    let logp = log_softmax(logits, 1);
    let nll = logp.clone().gather(1, targets.reshape([n, 1])).reshape([n]).neg();
    if smoothing > 0.0 {
        let uniform = logp.mean_dim(1).reshape([n]).neg();
        nll * (1.0 - smoothing) + uniform * smoothing
    } else {
        nll
    }
}

/// For each image, how many classes score strictly above the true one (0: top-1 correct).
pub fn ranks(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1, Int> {
    let [n, c] = logits.dims();
    let truth = logits.clone().gather(1, targets.reshape([n, 1]));
    logits.greater(truth.expand([n, c])).int().sum_dim(1).reshape([n])
}

/// What a step hands to the metrics: per-image losses and ranks, read back once.
pub struct Scored {
    pub part: Part,
    pending: Option<(Tensor<1>, Tensor<2>, Tensor<1, Int>)>,
    pub losses: Vec<f32>,
    pub ranks: Vec<u32>,
}

impl Scored {
    fn new(part: Part, losses: Tensor<1>, logits: Tensor<2>, targets: Tensor<1, Int>) -> Self {
        Scored { part, pending: Some((losses, logits, targets)), losses: Vec::new(), ranks: Vec::new() }
    }

    /// Read the values back from the device (off the training thread: in Burn's metric thread).
    fn resolve(&mut self) -> Result<(), burn::tensor::ExecutionError> {
        if let Some((losses, logits, targets)) = self.pending.take() {
            let losses = losses.detach();
            let ranks = ranks(logits.detach(), targets);
            self.losses = losses.try_into_data()?.iter::<f32>().collect();
            self.ranks = ranks.try_into_data()?.iter::<i64>().map(|r| r as u32).collect();
        }
        Ok(())
    }
}

impl ItemLazy for Scored {
    fn sync(mut self) -> Result<Self, burn::tensor::ExecutionError> {
        self.resolve()?;
        Ok(self)
    }
}

impl Adaptor<Scored> for Scored {
    fn adapt(&self) -> Scored {
        Scored { part: self.part, pending: None, losses: self.losses.clone(), ranks: self.ranks.clone() }
    }
}

impl TrainStep for DynNet {
    type Input = Batch;
    type Output = Scored;

    fn step(&self, batch: Batch) -> TrainOutput<Scored> {
        let replicas = self.replicas();
        let logits = match replicas {
            1 => self.forward(batch.images),
            _ => crate::norm::as_replica(|| self.forward(batch.images)),
        };
        let losses = item_losses(logits.clone(), batch.targets.clone(), self.label_smoothing());
        // Several replicas: Burn sums their gradients, so each contributes its share of the
        // global batch's mean loss (the learning rate means what it means on one device).
        let loss = match replicas {
            1 => losses.clone().mean(),
            n => losses.clone().mean().div_scalar(n as f64),
        };
        let grads = loss.backward();
        TrainOutput::new(self, grads, Scored::new(batch.part, losses, logits, batch.targets))
    }
}

impl InferenceStep for DynNet {
    type Input = Batch;
    type Output = Scored;

    fn step(&self, batch: Batch) -> Scored {
        let logits = self.forward(batch.images);
        // Evaluation reports plain cross-entropy, comparable across recipes.
        let losses = item_losses(logits.clone(), batch.targets.clone(), 0.0);
        Scored::new(batch.part, losses, logits, batch.targets)
    }
}

/// The learning rate of [`Recipe::lr_at`], one step per iteration; its iteration count is
/// what the scheduler checkpoint holds.
#[derive(Clone)]
pub struct RecipeLr {
    recipe: Arc<Recipe>,
    per_epoch: u64,
    iteration: u64,
}

impl RecipeLr {
    pub fn new(recipe: Recipe, per_epoch: u64) -> Self {
        RecipeLr { recipe: Arc::new(recipe), per_epoch, iteration: 0 }
    }
}

impl LrScheduler for RecipeLr {
    fn step(&mut self) -> LearningRate {
        let lr = self.recipe.lr_at(self.iteration, self.per_epoch);
        self.iteration += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("iteration", self.iteration)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(iteration) = record.scalar::<u64>("iteration") {
            self.iteration = iteration;
        }
    }
}

/// Running sums of one part over the current epoch.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    loss: f64,
    correct: u64,
    top5: u64,
    images: u64,
}

impl Tally {
    fn loss(&self) -> f64 {
        self.loss / self.images.max(1) as f64
    }
    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images.max(1) as f64
    }
    fn top5(&self) -> f64 {
        self.top5 as f64 / self.images.max(1) as f64
    }
}

/// State shared by the metrics (which count), the logger (which closes epochs) and the
/// checkpointing strategy (which needs the validation accuracies).
struct RunState {
    tallies: [Tally; 3],
    epoch_start: Instant,
    train_end: Option<Instant>,
    rows: Vec<Row>,
    diverged: Option<String>,
    failure: Option<String>,
    out: PathBuf,
    title: String,
    plain: bool,
    has_val: bool,
    epochs: usize,
    recipe: Recipe,
    per_epoch: u64,
    train_images: usize,
    /// Time the loader's workers spent building this epoch's training batches (decoding and
    /// augmenting), summed over workers, and the images they built.
    loader_busy: std::time::Duration,
    loader_images: usize,
    workers: usize,
    /// The network's outputs (top-5 is shown only beyond five).
    classes: usize,
}

type Shared = Arc<Mutex<RunState>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, RunState> {
    // A panic elsewhere must not hide the run's numbers: take the data anyway.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl RunState {
    /// Close an epoch: one row, rewritten `metrics.csv` and `curves.svg`, a console line.
    fn close_epoch(&mut self, epoch: usize) {
        let now = Instant::now();
        let [train, val, test] = self.tallies;
        let train_secs = self.train_end.unwrap_or(now).duration_since(self.epoch_start).as_secs_f64();
        let last_iteration = (epoch as u64 * self.per_epoch).saturating_sub(1);
        let row = Row {
            epoch,
            lr: self.recipe.lr_at(last_iteration, self.per_epoch),
            train_loss: train.loss(),
            train_acc: train.accuracy(),
            val_loss: self.has_val.then(|| val.loss()),
            val_acc: self.has_val.then(|| val.accuracy()),
            test_loss: test.loss(),
            test_acc: test.accuracy(),
            val_top5: self.has_val.then(|| val.top5()),
            test_top5: Some(test.top5()),
            seconds: now.duration_since(self.epoch_start).as_secs_f64(),
            images_per_sec: self.train_images as f64 / train_secs.max(1e-9),
        };
        // What the loader could deliver with its workers, beside what the training consumed: a
        // loader slower than the step starves the model.
        let loader = self.loader_busy.as_secs_f64() / self.workers.max(1) as f64;
        let loader = if self.loader_images > 0 && loader > 0.0 {
            format!(" (loader {:.0} img/s)", self.loader_images as f64 / loader)
        } else {
            String::new()
        };
        self.loader_busy = std::time::Duration::ZERO;
        self.loader_images = 0;
        if self.plain {
            let val = match (row.val_loss, row.val_acc) {
                (Some(l), Some(a)) => format!("  val loss {l:.4} acc {:.2}%", a * 100.0),
                _ => String::new(),
            };
            // Top-5 says something only with more than five classes.
            let top5 = match row.test_top5 {
                Some(t) if self.classes > 5 => format!(" top-5 {:.2}%", t * 100.0),
                _ => String::new(),
            };
            println!(
                "epoch {epoch:>3}/{}  lr {:.4}  train loss {:.4} acc {:.2}%{val}  test loss {:.4} acc {:.2}%{top5}  {:.0}s  {:.0} img/s{loader}",
                self.epochs,
                row.lr,
                row.train_loss,
                row.train_acc * 100.0,
                row.test_loss,
                row.test_acc * 100.0,
                row.seconds,
                row.images_per_sec
            );
        }
        self.rows.retain(|r| r.epoch < epoch);
        self.rows.push(row);
        self.write_rows();
        self.tallies = Default::default();
        self.train_end = None;
        self.epoch_start = Instant::now();
    }

    fn write_rows(&mut self) {
        let csv = report::csv(&self.rows);
        if let Err(e) = report::write_atomic(&self.out.join("metrics.csv"), csv.as_bytes()) {
            self.failure.get_or_insert(format!("cannot write {}: {e}", self.out.join("metrics.csv").display()));
        }
        match report::curves(&self.rows, &self.title) {
            Ok(svg) => {
                if let Err(e) = report::write_atomic(&self.out.join("curves.svg"), svg.as_bytes()) {
                    self.failure.get_or_insert(format!("cannot write {}: {e}", self.out.join("curves.svg").display()));
                }
            }
            Err(e) => eprintln!("warning: curves.svg not drawn: {e}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Measure {
    Loss,
    Accuracy,
    /// The true class among the five highest logits.
    Top5,
}

/// Loss or accuracy of one part, shown by Burn's renderer and tallied for `metrics.csv`.
#[derive(Clone)]
struct PartMetric {
    part: Part,
    measure: Measure,
    name: MetricName,
    state: NumericMetricState,
    shared: Shared,
    /// Stops the run when a training loss is not finite.
    interrupter: Option<Interrupter>,
}

impl PartMetric {
    fn new(part: Part, measure: Measure, shared: &Shared, interrupter: Option<Interrupter>) -> Self {
        let prefix = match part {
            Part::Train => "",
            Part::Val => "Val ",
            Part::Test => "Test ",
        };
        let what = match measure {
            Measure::Loss => "Loss",
            Measure::Accuracy => "Accuracy",
            Measure::Top5 => "Top-5",
        };
        PartMetric {
            part,
            measure,
            name: Arc::new(format!("{prefix}{what}")),
            state: NumericMetricState::default(),
            shared: shared.clone(),
            interrupter,
        }
    }

    fn format(&self) -> FormatOptions {
        match self.measure {
            Measure::Loss => FormatOptions::new(self.name()).precision(4),
            Measure::Accuracy | Measure::Top5 => FormatOptions::new(self.name()).unit("%").precision(2),
        }
    }
}

impl Metric for PartMetric {
    type Input = Scored;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: (self.measure != Measure::Loss).then(|| "%".to_string()),
            higher_is_better: self.measure != Measure::Loss,
        }
        .into()
    }

    fn update(
        &mut self,
        item: &Scored,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, burn::tensor::TensorReadError> {
        if item.part == self.part && !item.losses.is_empty() {
            let n = item.losses.len();
            let mut shared = lock(&self.shared);
            let tally = &mut shared.tallies[self.part.index()];
            let value = match self.measure {
                Measure::Loss => {
                    let sum: f64 = item.losses.iter().map(|&l| f64::from(l)).sum();
                    tally.loss += sum;
                    tally.images += n as u64;
                    sum / n as f64
                }
                Measure::Accuracy => {
                    let correct = item.ranks.iter().filter(|&&r| r == 0).count();
                    tally.correct += correct as u64;
                    100.0 * correct as f64 / n as f64
                }
                Measure::Top5 => {
                    let top5 = item.ranks.iter().filter(|&&r| r < 5).count();
                    tally.top5 += top5 as u64;
                    100.0 * top5 as f64 / n as f64
                }
            };
            if self.part == Part::Train {
                shared.train_end = Some(Instant::now());
            }
            if self.measure == Measure::Loss && !value.is_finite() && shared.diverged.is_none() {
                let message = format!(
                    "the training loss became {value} at iteration {} of epoch {}: stopped, the last good checkpoint is kept (lower the learning rate?)",
                    metadata.iteration.unwrap_or(0),
                    shared.rows.last().map_or(1, |r| r.epoch + 1),
                );
                shared.diverged = Some(message.clone());
                if let Some(interrupter) = &self.interrupter {
                    interrupter.stop(Some(&message));
                }
            }
            drop(shared);
            self.state.update(value, n);
        }
        Ok(self.state.compute_update(self.format()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, burn::tensor::TensorReadError> {
        Ok(self.state.compute_final(self.format()))
    }

    fn clear(&mut self) {
        self.state.reset();
    }
}

impl Numeric for PartMetric {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }
    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }
    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}

/// Burn's metric logger slot: closes each epoch when Burn ends its validation split.
struct RunLog {
    shared: Shared,
}

impl MetricLogger for RunLog {
    fn log(&mut self, _update: MetricsUpdate, _epoch: usize, _split: &BurnSplit) {}

    fn read_numeric(&mut self, name: &str, epoch: usize, split: &BurnSplit) -> Result<Vec<NumericEntry>, String> {
        let shared = lock(&self.shared);
        let row = shared.rows.iter().find(|r| r.epoch == epoch).ok_or_else(|| format!("no epoch {epoch}"))?;
        let value = match (name, split) {
            ("Loss", BurnSplit::Train) => Some(row.train_loss),
            ("Accuracy", BurnSplit::Train) => Some(100.0 * row.train_acc),
            ("Val Loss", BurnSplit::Valid) => row.val_loss,
            ("Val Accuracy", BurnSplit::Valid) => row.val_acc.map(|a| 100.0 * a),
            ("Test Loss", BurnSplit::Valid) => Some(row.test_loss),
            ("Test Accuracy", BurnSplit::Valid) => Some(100.0 * row.test_acc),
            ("Val Top-5", BurnSplit::Valid) => row.val_top5.map(|a| 100.0 * a),
            ("Test Top-5", BurnSplit::Valid) => row.test_top5.map(|a| 100.0 * a),
            _ => None,
        };
        value.map(|v| vec![NumericEntry::Value(v)]).ok_or_else(|| format!("no metric {name} for {split:?}"))
    }

    fn log_metric_definition(&mut self, _definition: MetricDefinition) {}

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        if matches!(summary.split, BurnSplit::Valid) {
            lock(&self.shared).close_epoch(summary.epoch_number);
        }
    }
}

/// Keeps the two newest epochs (one is always complete, even if the process dies while the
/// three checkpoint files of the newest are being written) and the best one by validation.
struct KeepLastAndBest {
    shared: Shared,
    saved: BTreeSet<usize>,
}

impl CheckpointingStrategy for KeepLastAndBest {
    fn checkpointing(&mut self, epoch: usize, _store: &EventStoreClient) -> Vec<CheckpointingAction> {
        let best = report::best_by_validation(&lock(&self.shared).rows).map(|r| r.epoch);
        self.saved.insert(epoch);
        let mut actions = vec![CheckpointingAction::Save];
        let stale: Vec<usize> = self.saved.iter().copied().filter(|&e| e + 2 <= epoch && Some(e) != best).collect();
        for e in stale {
            self.saved.remove(&e);
            actions.push(CheckpointingAction::Delete(e));
        }
        actions
    }
}

/// A renderer that prints nothing: the per-epoch lines come from [`RunLog`].
struct Quiet;

mod quiet {
    use super::Quiet;
    use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
    use burn::train::metric::MetricDefinition;
    use burn::train::renderer::{
        EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation, MetricsRendererTraining,
    };

    impl MetricsRendererTraining for Quiet {
        fn update_train(&mut self, _state: MetricState) {}
        fn update_valid(&mut self, _state: MetricState) {}
    }
    impl MetricsRendererEvaluation for Quiet {
        fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
    }
    impl TrainingProgressLogger for Quiet {
        fn start(&mut self, _total: usize, _starting: usize, _items: Option<usize>, _label: Option<&str>) {}
        fn update_epoch(&mut self, _epoch: usize) {}
        fn start_split(&mut self, _split: &str, _total_items: usize) {}
        fn update_split(&mut self, _items_processed: usize) {}
        fn end_split(&mut self) {}
        fn end(&mut self) {}
        fn log_event_training(&mut self, _event: String) {}
    }
    impl EvaluationProgressLogger for Quiet {
        fn start_global_progress(&mut self, _total_tests: usize) {}
        fn start_test(&mut self, _name: &str, _total_items: usize) {}
        fn update_test_progress(&mut self, _items_processed: usize) {}
        fn end_test(&mut self) {}
        fn end_global_progress(&mut self) {}
        fn log_event_evaluation(&mut self, _event: String) {}
    }
    impl MetricsRenderer for Quiet {
        fn manual_close(&mut self) {}
        fn register_metric(&mut self, _definition: MetricDefinition) {}
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Burn's TUI when stdout is a terminal, plain lines otherwise.
    Auto,
    /// One line per epoch.
    Plain,
    /// Nothing (tests).
    Silent,
}

/// Everything a run needs besides the network and the data.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The spec file (recorded in the summary) and the title of the curves.
    pub spec: String,
    pub recipe: Recipe,
    pub out: PathBuf,
    pub resume: bool,
    pub seed: u64,
    /// Training images held out for validation.
    pub val_split: usize,
    /// One device, or several for data-parallel training (`cpu:2`, `cuda:0,1`): the recipe's
    /// batch size is the global batch, split evenly over the devices.
    pub device: Selection,
    /// What convolutions and linear layers compute in (GPUs only).
    pub precision: Precision,
    /// Data-loader worker threads.
    pub workers: usize,
    /// Weights to start from instead of a fresh initialisation (fine-tuning; not with `resume`).
    pub init: Option<PathBuf>,
    pub progress: Progress,
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Setup(String),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Diverged(String),
    #[error("training failed: {0}")]
    Failed(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

/// The newest epoch whose model, optimizer and scheduler checkpoints all exist and load into
/// `model`; epochs after a partially written one are ignored.
fn resumable_epoch(dir: &Path, model: &DynNet) -> Option<usize> {
    let epochs = checkpoint_epochs(dir);
    epochs.into_iter().rev().find(|&e| {
        let file = |kind: &str| dir.join(format!("{kind}-{e}.bpk"));
        ModuleRecord::load(file("model")).ok().is_some_and(|r| model.clone().try_load_record(r).is_ok())
            && OptimizerRecord::load(file("optim")).is_ok()
            && LrSchedulerRecord::load(file("scheduler")).is_ok()
    })
}

/// Epochs with a model checkpoint in `dir`, ascending.
fn checkpoint_epochs(dir: &Path) -> Vec<usize> {
    let mut epochs: Vec<usize> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("model-")?.strip_suffix(".bpk")?.parse().ok()
        })
        .collect();
    epochs.sort_unstable();
    epochs
}

/// Train `network` on `dataset` as `options` say; returns the summary also written to
/// `summary.json`. A NaN loss is [`TrainError::Diverged`], after the run folder is finalised.
pub fn train(network: &Network, dataset: &Dataset, options: &TrainOptions) -> Result<Summary, TrainError> {
    let recipe = &options.recipe;
    let out = &options.out;
    let checkpoints = out.join("checkpoint");
    let main_device = options.device.main();
    let replicas = options.device.devices.len();
    options.precision.check(&options.device).map_err(TrainError::Setup)?;
    if options.resume && options.init.is_some() {
        return Err(TrainError::Setup("--init starts a new run; --resume continues one: give one of them".into()));
    }
    if recipe.batch_size == 0 {
        return Err(TrainError::Setup("batch_size must be at least 1".into()));
    }
    if recipe.batch_size % replicas != 0 {
        return Err(TrainError::Setup(format!(
            "batch_size {} does not split evenly over the {replicas} devices of `{}` (it is the global batch)",
            recipe.batch_size, options.device.name
        )));
    }
    let device_batch = recipe.batch_size / replicas;
    if options.val_split >= dataset.train.len() {
        return Err(TrainError::Setup(format!(
            "--val-split {} leaves no training image ({} in the training split)",
            options.val_split,
            dataset.train.len()
        )));
    }
    if dataset.test.is_empty() {
        return Err(TrainError::Setup("the test split is empty".into()));
    }
    let classes = network.output.numel() as usize;
    if let Some(&label) = dataset.train.labels.iter().chain(&dataset.test.labels).find(|&&l| usize::from(l) >= classes)
    {
        return Err(TrainError::Setup(format!(
            "the data has label {label} but {} has {classes} outputs (set classes=…)",
            network.name
        )));
    }
    std::fs::create_dir_all(&checkpoints).map_err(io(&checkpoints))?;

    // Hold out the validation images: the last `val_split` of a seeded permutation.
    let order = data::shuffled(dataset.train.len(), &mut data::rng(options.seed ^ 0x7661_6c69_6461_7465));
    let (train_idx, val_idx) = order.split_at(dataset.train.len() - options.val_split);
    let mut train_idx = train_idx.to_vec();
    let mut val_idx = val_idx.to_vec();
    train_idx.sort_unstable();
    val_idx.sort_unstable();

    // Normalisation from the training images actually trained on, unless the recipe fixes it.
    let (mean, std) = match &recipe.normalize {
        Some(n) => n.for_channels(dataset.train.shape[0]).map_err(TrainError::Setup)?,
        None => dataset.train.subset(&train_idx).channel_stats().map_err(|e| TrainError::Setup(e.to_string()))?,
    };
    let mut resolved = recipe.clone();
    resolved.normalize = Some(crate::recipe::Normalize { mean: mean.clone(), std: std.clone() });
    let augment = augment_of(recipe, mean, std);

    // Iterations (optimizer steps) per epoch: until the longest device's slice is done.
    let longest_slice = replica_slices(&train_idx, replicas, options.seed).iter().map(Vec::len).max().unwrap_or(0);
    let per_epoch = longest_slice.div_ceil(device_batch) as u64;
    let epochs = recipe.epochs as usize;
    let model = DynNet::new(network, &main_device).with_label_smoothing(recipe.label_smoothing);

    // Resume: the newest complete checkpoint; rows and files after it are dropped.
    let mut rows = Vec::new();
    let mut start = None;
    if options.resume {
        let epoch = resumable_epoch(&checkpoints, &model).ok_or_else(|| {
            TrainError::Setup(format!("--resume: no complete checkpoint in {} to continue from", checkpoints.display()))
        })?;
        let csv = out.join("metrics.csv");
        rows = report::read_csv(&csv).map_err(TrainError::Setup)?;
        rows.retain(|r| r.epoch <= epoch);
        if rows.len() != epoch {
            return Err(TrainError::Setup(format!(
                "--resume: {} has {} rows for {epoch} checkpointed epochs",
                csv.display(),
                rows.len()
            )));
        }
        for e in checkpoint_epochs(&checkpoints).into_iter().filter(|&e| e > epoch) {
            for kind in ["model", "optim", "scheduler"] {
                let _ = std::fs::remove_file(checkpoints.join(format!("{kind}-{e}.bpk")));
            }
        }
        start = Some(epoch);
    } else if !checkpoint_epochs(&checkpoints).is_empty() {
        return Err(TrainError::Setup(format!(
            "{} already holds a run: pass --resume to continue it, or choose another --out",
            out.display()
        )));
    }
    let recipe_path = out.join("recipe.yaml");
    let yaml = serde_norway::to_string(&resolved).map_err(|e| TrainError::Setup(e.to_string()))?;
    report::write_atomic(&recipe_path, yaml.as_bytes()).map_err(io(&recipe_path))?;

    let mut summary = Summary {
        spec: options.spec.clone(),
        network: network.name.clone(),
        params: network.trainable_params,
        epochs: 0,
        epochs_planned: epochs,
        test_accuracy: None,
        test_loss: None,
        test_top5: None,
        best_val_accuracy: None,
        best_epoch: None,
        test_accuracy_at_best_val: None,
        test_top5_at_best_val: None,
        seconds: 0.0,
        images_per_sec: None,
        device: options.device.name.clone(),
        adapter: options.device.describe(),
        precision: options.precision,
        seed: options.seed,
        train_images: train_idx.len(),
        val_images: val_idx.len(),
        test_images: dataset.test.len(),
        stopped: None,
    };

    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let plain = match options.progress {
        Progress::Auto => !terminal,
        Progress::Plain => true,
        Progress::Silent => false,
    };
    let shared: Shared = Arc::new(Mutex::new(RunState {
        tallies: Default::default(),
        epoch_start: Instant::now(),
        train_end: None,
        rows,
        diverged: None,
        failure: None,
        out: out.clone(),
        title: network.name.clone(),
        plain,
        has_val: !val_idx.is_empty(),
        epochs,
        recipe: recipe.clone(),
        per_epoch,
        train_images: train_idx.len(),
        loader_busy: std::time::Duration::ZERO,
        loader_images: 0,
        workers: options.workers.max(1),
        classes,
    }));

    if start.is_none_or(|s| s < epochs) {
        if plain {
            println!(
                "training {} ({} parameters) on {} [{}{}]: {} train / {} val / {} test images, {} epochs of {per_epoch} iterations{}",
                network.name,
                network.trainable_params,
                options.device.name,
                summary.adapter,
                match options.precision {
                    Precision::F32 => String::new(),
                    p => format!(", {} compute", p.name()),
                },
                train_idx.len(),
                val_idx.len(),
                dataset.test.len(),
                epochs,
                start.map_or(String::new(), |s| format!(", resuming after epoch {s}")),
            );
        }
        let train_split = Arc::new(dataset.train.clone());
        let test_split = Arc::new(dataset.test.clone());
        let interrupter = Interrupter::new();
        let errors = ImageErrors { shared: shared.clone(), interrupter: interrupter.clone() };
        // Epoch e's order (and the device generator's stream) depends on (seed, e) only, so a
        // resumed run trains on the batches an uninterrupted one would (`epochs`).
        let train_loader: Arc<dyn DataLoader<Batch>> = Arc::new(
            EpochLoader::new(
                train_items(&train_idx, replicas, options.seed),
                TrainBatcher {
                    split: train_split.clone(),
                    augment: augment.clone(),
                    seed: options.seed,
                    errors: errors.clone(),
                },
                device_batch,
                options.workers,
                &main_device,
            )
            .shuffled(options.seed, start.unwrap_or(0) as u64 + 1),
        );
        let mut eval_items = chunks(Part::Val, &val_idx, recipe.batch_size);
        let test_idx: Vec<usize> = (0..dataset.test.len()).collect();
        eval_items.extend(chunks(Part::Test, &test_idx, recipe.batch_size));
        let eval_loader: Arc<dyn DataLoader<Batch>> = Arc::new(EpochLoader::new(
            eval_items,
            EvalBatcher { train: train_split, test: test_split, augment, errors },
            1,
            options.workers,
            &main_device,
        ));

        let optimizer = sgd(recipe).init();
        main_device.seed(options.seed);
        // Parameters are created tracked (on the autodiff device): Burn's fork keeps that state.
        let mut model = DynNet::new(network, &main_device.clone().autodiff())
            .with_label_smoothing(recipe.label_smoothing)
            .with_replicas(replicas)
            .with_precision(options.precision);
        if let Some(init) = options.init.as_ref().filter(|_| start.is_none()) {
            model = model.try_load_file(init).map_err(|e| {
                TrainError::Setup(format!("--init {}: cannot load into {}: {e}", init.display(), network.name))
            })?;
        }
        let learner = Learner::new(model, optimizer, RecipeLr::new(recipe.clone(), per_epoch));

        let metric =
            |part, measure, stop: bool| PartMetric::new(part, measure, &shared, stop.then(|| interrupter.clone()));
        let mut training = SupervisedTraining::new(out, train_loader, eval_loader)
            .num_epochs(epochs)
            .with_interrupter(interrupter.clone())
            .with_application_logger(None)
            .with_metric_logger(RunLog { shared: shared.clone() })
            .with_default_checkpointers()
            .with_checkpointing_strategy(KeepLastAndBest {
                shared: shared.clone(),
                saved: checkpoint_epochs(&checkpoints).into_iter().collect(),
            })
            .metric_train_numeric(metric(Part::Train, Measure::Loss, true))
            .metric_train_numeric(metric(Part::Train, Measure::Accuracy, false));
        if !val_idx.is_empty() {
            training = training
                .metric_valid_numeric(metric(Part::Val, Measure::Loss, false))
                .metric_valid_numeric(metric(Part::Val, Measure::Accuracy, false))
                .metric_valid_numeric(metric(Part::Val, Measure::Top5, false));
        }
        training = training
            .metric_valid_numeric(metric(Part::Test, Measure::Loss, false))
            .metric_valid_numeric(metric(Part::Test, Measure::Accuracy, false))
            .metric_valid_numeric(metric(Part::Test, Measure::Top5, false));
        if replicas > 1 {
            training = training.with_training_strategy(data_parallel(&options.device).into());
        }
        if let Some(epoch) = start {
            training = training.checkpoint(epoch);
        }
        if !(options.progress == Progress::Auto && terminal) {
            training = training.renderer(Box::new(Quiet));
        }
        lock(&shared).epoch_start = Instant::now();
        let result = training.launch(learner);
        let state = lock(&shared);
        if let Some(error) = &result.error {
            summary.stopped = Some(format!("{error}"));
        } else if let Some(diverged) = &state.diverged {
            summary.stopped = Some(diverged.clone());
        } else if let Some(interrupted) = &result.interrupted {
            summary.stopped = Some(format!("interrupted: {}", interrupted.reason.as_deref().unwrap_or("by the user")));
        }
        if let Some(failure) = &state.failure {
            summary.stopped.get_or_insert(failure.clone());
        }
    }

    // Finalise: summary, last and best weights.
    let state = lock(&shared);
    summary.fill_from(&state.rows);
    let last = state.rows.last().map(|r| r.epoch);
    let best = report::best_by_validation(&state.rows).map(|r| r.epoch);
    drop(state);
    for (name, epoch) in [("last.bpk", last), ("best.bpk", best)] {
        if let Some(epoch) = epoch {
            let from = checkpoints.join(format!("model-{epoch}.bpk"));
            let to = out.join(name);
            if from.exists() {
                report::copy_atomic(&from, &to).map_err(io(&to))?;
            }
        }
    }
    let path = out.join("summary.json");
    let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
    report::write_atomic(&path, json.as_bytes()).map_err(io(&path))?;
    match &summary.stopped {
        Some(reason) if reason.starts_with("the training loss became") => Err(TrainError::Diverged(reason.clone())),
        Some(reason) if !reason.starts_with("interrupted") => Err(TrainError::Failed(reason.clone())),
        _ => Ok(summary),
    }
}

/// The training set's items in the order burn-train slices them over `replicas` devices: as
/// they are for one device, a seeded permutation for several, so that each device's contiguous
/// slice is a random sample of the classes (image folders list them class by class).
fn train_items(train_idx: &[usize], replicas: usize, seed: u64) -> Vec<u32> {
    let items: Vec<u32> = train_idx.iter().map(|&i| i as u32).collect();
    if replicas == 1 {
        return items;
    }
    let order = data::shuffled(items.len(), &mut data::rng(seed ^ 0x7265_706c_6963_6173));
    order.into_iter().map(|i| items[i]).collect()
}

/// The training images (indices into the training split) each of `replicas` devices trains on,
/// given the images `train_idx` left after the validation split: burn-train's contiguous slices
/// of [`train_items`]' order (each epoch shuffles inside a slice only).
pub fn replica_slices(train_idx: &[usize], replicas: usize, seed: u64) -> Vec<Vec<usize>> {
    let items = train_items(train_idx, replicas, seed);
    let step = items.len() / replicas;
    (0..replicas)
        .map(|r| {
            let end = if r + 1 == replicas { items.len() } else { (r + 1) * step };
            items[r * step..end].iter().map(|&i| i as usize).collect()
        })
        .collect()
}

/// burn-train's strategy for several devices: on CUDA, data-parallel training with NCCL
/// all-reduce (each device its own optimizer copy, gradients averaged: the loss needs no
/// scaling there, but [`DynNet::with_replicas`] divides it, so the all-reduce sums); elsewhere
/// `MultiDevice` (gradients summed on the main device, which runs the optimizer), which needs
/// no collectives and so runs on several flex or wgpu devices.
fn data_parallel(device: &Selection) -> burn::train::ExecutionStrategy {
    use burn::train::ExecutionStrategy;
    match device.kind {
        Kind::Cuda => ExecutionStrategy::ddp(
            device.devices.clone(),
            burn::tensor::distributed::DistributedConfig {
                all_reduce_op: burn::tensor::distributed::ReduceOperation::Sum,
            },
        ),
        Kind::Cpu | Kind::Wgpu => {
            ExecutionStrategy::multi(device.devices.clone(), burn::train::MultiDeviceOptim::OptimMainDevice)
        }
    }
}

/// The recipe's augmentation with a normalisation.
pub fn augment_of(recipe: &Recipe, mean: Vec<f32>, std: Vec<f32>) -> Augment {
    let a = &recipe.augment;
    let geometry = match &a.random_resized_crop {
        Some(r) => Geometry::RandomResizedCrop { scale: r.scale, ratio: r.ratio },
        None => Geometry::CenterCrop { crop_pct: a.crop_pct },
    };
    Augment::new(mean, std, a.pad, a.flip).with_geometry(geometry)
}

/// Test-split scores of a model.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub images: usize,
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
}

/// Score `model` on the test split, with `augment`'s normalisation.
pub fn evaluate(
    model: &DynNet,
    test: &Split,
    augment: &Augment,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation, TrainError> {
    let model = model.valid();
    let (mut loss, mut top1, mut top5) = (0.0f64, 0u64, 0u64);
    let indices: Vec<usize> = (0..test.len()).collect();
    let mut pixels = Vec::new();
    for chunk in indices.chunks(batch_size.max(1)) {
        for skipped in augment.batch(test, chunk, None, &mut pixels).map_err(|e| TrainError::Failed(e.to_string()))? {
            eprintln!("warning: {skipped}; skipped (--on-bad-image skip): a black image in its place");
        }
        let batch = batch_of(std::mem::take(&mut pixels), test, chunk, Part::Test, device);
        let mut scored = InferenceStep::step(&model, batch);
        scored.resolve().map_err(|e| TrainError::Failed(e.to_string()))?;
        loss += scored.losses.iter().map(|&l| f64::from(l)).sum::<f64>();
        top1 += scored.ranks.iter().filter(|&&r| r == 0).count() as u64;
        top5 += scored.ranks.iter().filter(|&&r| r < 5).count() as u64;
    }
    let n = test.len().max(1) as f64;
    Ok(Evaluation { images: test.len(), loss: loss / n, top1: top1 as f64 / n, top5: top5 as f64 / n })
}
