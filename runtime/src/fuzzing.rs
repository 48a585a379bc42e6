//! The properties the runtime's fuzzers check (`fuzz/fuzz_targets/`), here so that `cargo test`
//! replays the committed corpora and every finding through the same code
//! (`runtime/tests/fuzz_replay.rs`). Each function panics only when a property fails: whatever
//! the bytes, the runtime answers with a value or an error.

use crate::data::{self, Augment, BadImages, Dataset};
use crate::model::DynNet;
use crate::recipe::Recipe;
use crate::transform::Geometry;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// A recipe's YAML, then `--set-recipe` assignments (the lines after one reading `---set`): a
/// recipe that is accepted must be one training can use.
pub fn recipe(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (yaml, sets) = text.split_once("\n---set\n").unwrap_or((text, ""));
    let mut recipe = match Recipe::parse("fuzz.yaml", yaml) {
        Ok(r) => r,
        // Not a recipe: the text is an assignment to a shipped one.
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            let shipped = Recipe::shipped("resnet-cifar").expect("shipped recipes parse");
            match shipped.set(yaml) {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    for assignment in sets.lines() {
        if let Ok(r) = recipe.set(assignment) {
            recipe = r;
        }
    }
    usable(&recipe);
}

/// What training relies on of an accepted recipe.
fn usable(r: &Recipe) {
    assert!(r.batch_size >= 1, "batch size {}", r.batch_size);
    let per_epoch = 7;
    let last = u64::from(r.epochs) * per_epoch;
    for i in [0, 1, per_epoch, last / 2, last.saturating_sub(1), last] {
        let lr = r.lr_at(i, per_epoch);
        assert!(lr.is_finite() && lr >= 0.0, "learning rate {lr} at iteration {i}");
    }
    assert!((0.0..1.0).contains(&r.label_smoothing), "label smoothing {}", r.label_smoothing);
    if let Some(n) = &r.normalize {
        assert_eq!(n.mean.len(), n.std.len(), "normalize: as many means as deviations");
        assert!(n.std.iter().all(|s| s.is_finite() && *s > 0.0) && n.mean.iter().all(|m| m.is_finite()));
    }
    // The augmentation of one batch, at the recipe's settings.
    let c = r.normalize.as_ref().map_or(3, |n| n.mean.len());
    if c == 1 || c == 3 {
        let (mean, std) =
            r.normalize.as_ref().map_or((vec![0.5; 3], vec![0.25; 3]), |n| (n.mean.clone(), n.std.clone()));
        let augment = crate::train::augment_of(r, mean, std);
        let split = data::Split {
            images: data::Images::Decoded(vec![7u8; 2 * c * 8 * 8]),
            labels: vec![0, 1],
            shape: [c, 8, 8],
        };
        let mut out = Vec::new();
        let mut rng = data::rng(1);
        augment.batch(&split, &[0, 1], Some(&mut rng), &mut out).expect("decoded images augment");
        assert!(out.iter().all(|v| v.is_finite()));
    }
}

/// A `.tar` or `.tar.gz` (chosen by the first byte) read as a dataset for a 3×16×16 or
/// 1×8×8 network, then every loaded image decoded and augmented, in training and evaluation.
/// With bit 4 of the first byte set, the rest is not an archive but its files, `name\0bytes`
/// separated by `\n@@`, packed into a valid tar here (headers and checksums right), so that
/// the fuzzer's mutations reach the layouts, lists and image decoders rather than stopping at
/// a header checksum.
pub fn archive(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let name = if mode & 1 == 0 { "fuzz.tar" } else { "fuzz.tar.gz" };
    let shape = if mode & 2 == 0 { [3, 16, 16] } else { [1, 8, 8] };
    let bad = if mode & 4 == 0 { BadImages::Fail } else { BadImages::Skip };
    let packed;
    let bytes = if mode & 0x10 == 0 {
        bytes
    } else {
        packed = pack(bytes, mode & 1 == 1);
        &packed
    };
    let path = scratch(name, bytes);
    if let Ok(dataset) = data::load_with(&path, shape, bad) {
        exercise(&dataset, mode & 8 != 0);
    }
}

/// `name\0bytes` entries separated by `\n@@` as a tar (gzipped when asked).
fn pack(entries: &[u8], gzip: bool) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut rest = entries;
    while !rest.is_empty() {
        let end = rest.windows(3).position(|w| w == b"\n@@").unwrap_or(rest.len());
        let entry = &rest[..end];
        rest = rest.get(end + 3..).unwrap_or(&[]);
        let Some(split) = entry.iter().position(|&b| b == 0) else { continue };
        let Ok(name) = std::str::from_utf8(&entry[..split]) else { continue };
        let mut header = tar::Header::new_gnu();
        header.set_size((entry.len() - split - 1) as u64);
        header.set_mode(0o644);
        header.set_cksum();
        // Names tar cannot hold (too long, `..`) are the fuzzer's loss, not a finding.
        let _ = tar.append_data(&mut header, name, &entry[split + 1..]);
    }
    let bytes = tar.into_inner().expect("in memory");
    if !gzip {
        return bytes;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).expect("in memory");
    gz.finish().expect("in memory")
}

/// A CIFAR binary set built from the bytes: the first byte picks CIFAR-10 or -100, a folder
/// or none, and whether a file may be left out; the next six (or two) each file's size (0–3
/// records, or one byte more or less, or left out); the rest, repeated, the files' contents
/// (so that short inputs make whole files).
pub fn cifar(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (head, body) = data.split_at(7);
    let cifar10 = head[0] & 1 == 0;
    let folder = if head[0] & 2 == 0 { "" } else { "cifar-10-batches-bin/" };
    let names: Vec<String> = if cifar10 {
        (1..=5).map(|i| format!("data_batch_{i}.bin")).chain(["test_batch.bin".to_string()]).collect()
    } else {
        vec!["train.bin".into(), "test.bin".into()]
    };
    let record = if cifar10 { 3073 } else { 3074 };
    let mut tar = tar::Builder::new(Vec::new());
    let mut offset = 0;
    for (name, &size) in names.iter().zip(&head[1..]) {
        if size & 0x20 != 0 && head[0] & 4 != 0 {
            continue; // A file left out.
        }
        let len =
            ((size as usize % 4) * record).wrapping_add([0, 0, 1, usize::MAX][(size >> 6) as usize]).min(4 * record);
        let contents: Vec<u8> = body.iter().cycle().skip(offset % body.len()).take(len).copied().collect();
        offset += len;
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("{folder}{name}"), contents.as_slice()).expect("in memory");
    }
    let bytes = tar.into_inner().expect("in memory");
    let path = scratch("cifar.tar", &bytes);
    match data::load(&path, [3, 32, 32]) {
        Ok(dataset) => {
            let classes = if cifar10 { 10 } else { 100 };
            assert_eq!(dataset.classes.len(), classes);
            for split in [&dataset.train, &dataset.test] {
                assert!(split.labels.iter().all(|&l| usize::from(l) < classes), "a label out of range was loaded");
            }
            exercise(&dataset, head[0] & 8 != 0);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Decode and augment (up to eight) images of each split; channel statistics of the training
/// images.
fn exercise(dataset: &Dataset, random_resized_crop: bool) {
    let c = dataset.train.shape[0];
    let augment = Augment::new(vec![0.5; c], vec![0.25; c], 4, true);
    let augment = if random_resized_crop {
        augment.with_geometry(Geometry::RandomResizedCrop { scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0] })
    } else {
        augment
    };
    let mut rng = data::rng(7);
    let mut out = Vec::new();
    for split in [&dataset.train, &dataset.test] {
        let indices: Vec<usize> = (0..split.len().min(8)).collect();
        for rng in [Some(&mut rng), None] {
            if augment.batch(split, &indices, rng, &mut out).is_ok() {
                assert_eq!(out.len(), indices.len() * split.shape.iter().product::<usize>());
                assert!(out.iter().all(|v| v.is_finite()));
            }
        }
    }
    let _ = dataset.train.subset(&(0..dataset.train.len().min(8)).collect::<Vec<_>>()).channel_stats();
}

/// The network checkpoints are fuzzed against, with a valid checkpoint's bytes (the seed).
pub const CHECKPOINT_SPEC: &str = "network tiny(classes = 3) {
    input 3x8x8
    conv3x3(4) bn relu
    stage 1 x basic(4)
    stage 1 x basic(8, stride = 2)
    global_avg_pool linear(classes)
}";

static NETWORK: LazyLock<resnetc_compiler::Network> = LazyLock::new(|| {
    let mut c = resnetc_compiler::Compilation::new();
    let id = c.add_source("tiny.net", CHECKPOINT_SPEC);
    c.check(id, &[]).expect("the checkpoint spec checks")
});

/// A `.bpk` checkpoint's bytes loaded into [`CHECKPOINT_SPEC`]'s network as `eval --weights`
/// does: an error, or a model whose forward pass gives finite-shaped logits.
pub fn checkpoint(data: &[u8]) {
    let path = scratch("fuzz.bpk", data);
    let device = Device::flex();
    if let Ok(model) = DynNet::new(&NETWORK, &device).try_load_file(&path) {
        let logits = model.forward(Tensor::<4>::zeros([1, 3, 8, 8], &device));
        assert_eq!(logits.dims(), [1, 3]);
    }
}

/// A valid checkpoint of [`CHECKPOINT_SPEC`]'s network (the checkpoint target's seed).
pub fn checkpoint_seed() -> Vec<u8> {
    let path = scratch_path("seed.bpk");
    DynNet::new(&NETWORK, &Device::flex()).save_file(&path).expect("a fresh model saves");
    std::fs::read(&path).expect("just written")
}

/// `bytes` written to a file of this process's scratch folder.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_path(name);
    let mut f = std::fs::File::create(&path).expect("the scratch folder is writable");
    f.write_all(bytes).expect("scratch write");
    path
}

fn scratch_path(name: &str) -> PathBuf {
    static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
        let dir = std::env::temp_dir().join(format!("resnetc-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    });
    let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
    Path::new(&*DIR).join(format!("{thread}-{name}"))
}
