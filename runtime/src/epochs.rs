//! The loader burn-train iterates: each epoch's order a function of the run's seed and the
//! epoch's number alone, so a run resumed from a checkpoint sees the same batches (and draws
//! the same dropout and drop-path masks) as one never stopped.
//!
//! Burn's `DataLoaderBuilder::shuffle` keeps one generator that advances with every epoch and
//! forks when burn-train moves the loader to a device; a resumed run builds a new loader and
//! so starts that sequence over (its epoch 5 was an uninterrupted run's epoch 1), and with
//! several workers each worker shuffles its own contiguous part, so batches also depend on
//! the worker count. [`EpochLoader`] instead permutes its items with a generator seeded from
//! `(seed, epoch)` when an epoch begins ([`DataLoader::iter`], which burn-train calls once per
//! epoch), and hands batch `i` to worker `i mod workers`, reading the workers' results in
//! batch order: the batches, their order and their contents do not depend on the number of
//! workers or on how fast each runs. When an epoch begins it also reseeds the device's
//! generator from `(seed, epoch)` (dropout, drop path, shake draw from it).

use crate::data;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use burn::tensor::Device;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};

/// How many finished batches each worker may hold ahead of the training step.
const PREFETCH: usize = 2;

/// A loader over `items` in batches of `batch_size` (the last one may be smaller), built by
/// `workers` threads; shuffled per epoch when made [`shuffled`](EpochLoader::shuffled).
pub struct EpochLoader<I, O> {
    items: Arc<[I]>,
    batcher: Arc<dyn Batcher<I, O>>,
    batch_size: usize,
    workers: usize,
    device: Device,
    shuffle: Option<Shuffle>,
}

/// The seed of a shuffled loader and the epoch its next iteration is.
struct Shuffle {
    seed: u64,
    next_epoch: AtomicU64,
}

impl<I, O> EpochLoader<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    /// Batches of `items` in their order, every epoch the same.
    pub fn new(
        items: Vec<I>,
        batcher: impl Batcher<I, O> + 'static,
        batch_size: usize,
        workers: usize,
        device: &Device,
    ) -> Self {
        EpochLoader {
            items: items.into(),
            batcher: Arc::new(batcher),
            batch_size: batch_size.max(1),
            workers: workers.max(1),
            device: device.clone(),
            shuffle: None,
        }
    }

    /// Shuffled per epoch from `seed`; the next iteration is epoch `first_epoch` (numbered
    /// from 1 as burn-train numbers them: `start + 1` for a run resumed after epoch `start`).
    pub fn shuffled(mut self, seed: u64, first_epoch: u64) -> Self {
        self.shuffle = Some(Shuffle { seed, next_epoch: AtomicU64::new(first_epoch) });
        self
    }

    /// The epoch the next [`DataLoader::iter`] begins (for a shuffled loader).
    pub fn next_epoch(&self) -> Option<u64> {
        self.shuffle.as_ref().map(|s| s.next_epoch.load(Ordering::SeqCst))
    }

    /// The items of epoch `epoch`, in the order its batches take them.
    pub fn epoch_order(&self, epoch: u64) -> Vec<I> {
        match &self.shuffle {
            None => self.items.to_vec(),
            Some(s) => {
                let mut rng = data::rng(epoch_seed(s.seed, epoch, 0x6f72_6465_72));
                data::shuffled(self.items.len(), &mut rng).into_iter().map(|i| self.items[i].clone()).collect()
            }
        }
    }

    fn with(&self, items: Arc<[I]>, seed_offset: u64, device: &Device) -> Self {
        EpochLoader {
            items,
            batcher: self.batcher.clone(),
            batch_size: self.batch_size,
            workers: self.workers,
            device: device.clone(),
            shuffle: self.shuffle.as_ref().map(|s| Shuffle {
                seed: s.seed.wrapping_add(seed_offset),
                next_epoch: AtomicU64::new(s.next_epoch.load(Ordering::SeqCst)),
            }),
        }
    }
}

/// A generator seed for one epoch and one purpose (splitmix64 steps over the three).
fn epoch_seed(seed: u64, epoch: u64, purpose: u64) -> u64 {
    let mix = |z: u64| data::mix64(z.wrapping_add(data::GOLDEN_GAMMA));
    mix(mix(mix(seed) ^ epoch) ^ purpose)
}

impl<I, O> DataLoader<O> for EpochLoader<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let order = match &self.shuffle {
            None => self.items.clone(),
            Some(s) => {
                let epoch = s.next_epoch.fetch_add(1, Ordering::SeqCst);
                self.device.seed(epoch_seed(s.seed, epoch, 0x6465_7669_6365));
                self.epoch_order(epoch).into()
            }
        };
        Box::new(EpochIter::start(order, self.batcher.clone(), self.batch_size, self.workers, &self.device))
    }

    fn num_items(&self) -> usize {
        self.items.len()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.with(self.items.clone(), 0, device))
    }

    /// Items `start..end`, shuffled within themselves (burn-train gives each device one slice).
    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.with(self.items[start..end].into(), start as u64, &self.device))
    }
}

/// One epoch's batches: built in place with one worker, else by threads that each build every
/// `workers`-th batch and are read in turn.
struct EpochIter<I, O> {
    order: Arc<[I]>,
    batcher: Arc<dyn Batcher<I, O>>,
    batch_size: usize,
    device: Device,
    workers: Vec<Receiver<O>>,
    batches: usize,
    next: usize,
}

impl<I, O> EpochIter<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    fn start(
        order: Arc<[I]>,
        batcher: Arc<dyn Batcher<I, O>>,
        batch_size: usize,
        workers: usize,
        device: &Device,
    ) -> Self {
        let batches = order.len().div_ceil(batch_size);
        let threads = if workers > 1 { workers.min(batches) } else { 0 };
        let workers = (0..threads)
            .map(|w| {
                let (send, receive) = sync_channel(PREFETCH);
                let (order, batcher, device) = (order.clone(), batcher.clone(), device.clone());
                std::thread::spawn(move || {
                    for b in (w..batches).step_by(threads) {
                        let items = batch_items(&order, b, batch_size);
                        // The receiver is gone when the epoch was abandoned (an interrupted run).
                        if send.send(batcher.batch(items, &device)).is_err() {
                            break;
                        }
                    }
                });
                receive
            })
            .collect();
        EpochIter { order, batcher, batch_size, device: device.clone(), workers, batches, next: 0 }
    }
}

/// The items of batch `b` (the last batch holds the remainder).
fn batch_items<I: Clone>(order: &[I], b: usize, batch_size: usize) -> Vec<I> {
    order[b * batch_size..((b + 1) * batch_size).min(order.len())].to_vec()
}

impl<I, O> Iterator for EpochIter<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    type Item = Result<O, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.batches {
            return None;
        }
        let b = self.next;
        self.next += 1;
        let batch = if self.workers.is_empty() {
            let items = batch_items(&self.order, b, self.batch_size);
            self.batcher.batch(items, &self.device)
        } else {
            match self.workers[b % self.workers.len()].recv() {
                Ok(batch) => batch,
                // A worker ends early only by panicking (a batcher's bug): say so here.
                Err(_) => panic!("a loader worker stopped before building batch {b}"),
            }
        };
        Some(Ok(batch))
    }
}

impl<I, O> DataLoaderIterator<O> for EpochIter<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    fn progress(&self) -> Progress {
        let done = (self.next * self.batch_size).min(self.order.len());
        Progress::new(done, self.order.len(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Batches as the items they hold, and which epochs drew which batches.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<usize>>);

    impl Batcher<u32, Vec<u32>> for Collect {
        fn batch(&self, items: Vec<u32>, _device: &Device) -> Vec<u32> {
            // Uneven work, so that threads finish out of order.
            std::thread::sleep(std::time::Duration::from_micros(u64::from(items[0] % 7) * 200));
            *self.0.lock().unwrap() += 1;
            items
        }
    }

    /// Shuffled loaders reseed the device's (global) generator: one test at a time.
    static GENERATOR: Mutex<()> = Mutex::new(());

    fn epoch(loader: &dyn DataLoader<Vec<u32>>) -> Vec<Vec<u32>> {
        loader.iter().map(|b| b.unwrap()).collect()
    }

    fn loader(workers: usize, first_epoch: u64) -> EpochLoader<u32, Vec<u32>> {
        EpochLoader::new((0..103).collect(), Collect::default(), 10, workers, &Device::flex()).shuffled(7, first_epoch)
    }

    #[test]
    fn an_epochs_batches_depend_on_the_seed_and_the_epoch_only() {
        let _one_at_a_time = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        // Epochs 1..=4 in one run; a run resumed after epoch 2; other worker counts.
        let one = loader(1, 1);
        let uninterrupted: Vec<_> = (0..4).map(|_| epoch(&one)).collect();
        let resumed = loader(1, 3);
        assert_eq!(epoch(&resumed), uninterrupted[2]);
        assert_eq!(epoch(&resumed), uninterrupted[3]);
        for workers in [2, 3, 16] {
            let many = loader(workers, 1).to_device(&Device::flex());
            let batches: Vec<_> = (0..4).map(|_| epoch(many.as_ref())).collect();
            assert_eq!(batches, uninterrupted, "{workers} workers");
        }
        // Every epoch is a permutation, epochs differ, the last batch holds the remainder.
        for batches in &uninterrupted {
            assert_eq!(batches.len(), 11);
            assert_eq!(batches[10].len(), 3);
            let mut all: Vec<u32> = batches.concat();
            all.sort_unstable();
            assert_eq!(all, (0..103).collect::<Vec<_>>());
        }
        assert_ne!(uninterrupted[0], uninterrupted[1]);
        assert_ne!(loader(1, 1).shuffled(8, 1).epoch_order(1), uninterrupted[0].concat());
    }

    #[test]
    fn the_device_generator_is_reseeded_per_epoch() {
        let _one_at_a_time = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        use burn::tensor::{Distribution, Tensor};
        let device = Device::flex();
        let draw = || Tensor::<1>::random([4], Distribution::Default, &device).into_data().try_to_vec::<f32>().unwrap();
        let one = loader(1, 1);
        drop(one.iter());
        drop(one.iter());
        let second = draw();
        device.seed(12345);
        let resumed = loader(1, 2);
        drop(resumed.iter());
        assert_eq!(draw(), second);
    }

    #[test]
    fn slices_are_disjoint_and_shuffle_within_themselves() {
        let _one_at_a_time = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        let whole = loader(2, 1);
        let (a, b) = (whole.slice(0, 50), whole.slice(50, 103));
        let mut first: Vec<u32> = epoch(a.as_ref()).concat();
        let mut second: Vec<u32> = epoch(b.as_ref()).concat();
        first.sort_unstable();
        second.sort_unstable();
        assert_eq!(first, (0..50).collect::<Vec<_>>());
        assert_eq!(second, (50..103).collect::<Vec<_>>());
    }

    #[test]
    fn an_abandoned_epoch_stops_its_workers() {
        let built = Arc::new(Mutex::new(0));
        let many = EpochLoader::new((0..1000).collect(), Collect(built.clone()), 1, 4, &Device::flex());
        let mut it = many.iter();
        it.next();
        drop(it);
        std::thread::sleep(std::time::Duration::from_millis(200));
        // Each worker holds at most PREFETCH batches plus the one it was building.
        assert!(*built.lock().unwrap() <= 1 + 4 * (PREFETCH + 1), "{} batches built", built.lock().unwrap());
    }
}
