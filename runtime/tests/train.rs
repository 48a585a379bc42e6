//! Training end to end on a small CIFAR-10 binary fixture built here: the run folder, the
//! checkpoint loading into the emitted struct, resume after an interruption and after a
//! corrupt newest checkpoint, NaN stops, and the errors for bad setups.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use resnetc_codegen_tests::resnet_20::Resnet20;
use resnetc_compiler::Compilation;
use resnetc_runtime::data::{self, Augment};
use resnetc_runtime::model::DynNet;
use resnetc_runtime::recipe::Recipe;
use resnetc_runtime::report::{Summary, read_csv};
use resnetc_runtime::train::{Progress, TrainError, TrainOptions, evaluate, train};
use std::path::{Path, PathBuf};

mod common;

fn temp(name: &str) -> PathBuf {
    common::temp(&format!("train-{name}"))
}

/// CIFAR-10 binary files: 5 × 8 training records and 16 test records.
fn fixture(dir: &Path) -> PathBuf {
    common::cifar10(dir, 8, 16)
}

fn resnet20() -> resnetc_compiler::Network {
    common::network_with("specs/resnet-20.net", &[])
}

fn options(out: &Path, epochs: u32, val_split: usize) -> TrainOptions {
    let mut recipe = Recipe::shipped("resnet-cifar").unwrap();
    recipe.epochs = epochs;
    recipe.batch_size = 16;
    // Milestones inside the short run, so the lr column shows the schedule.
    recipe = recipe.set("schedule.milestones=[2]").unwrap();
    TrainOptions {
        spec: "specs/resnet-20.net".into(),
        recipe,
        out: out.to_path_buf(),
        resume: false,
        seed: 7,
        val_split,
        device: resnetc_runtime::device::Selection::cpu(),
        precision: Default::default(),
        workers: 1,
        init: None,
        progress: Progress::Silent,
    }
}

fn summary(out: &Path) -> Summary {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_run_leaves_its_folder_and_its_weights_load_into_the_emitted_struct() {
    let dir = temp("run");
    let dataset = data::load(&fixture(&dir), [3, 32, 32]).unwrap();
    let out = dir.join("run");
    let network = resnet20();
    let result = train(&network, &dataset, &options(&out, 3, 8)).unwrap();

    let rows = read_csv(&out.join("metrics.csv")).unwrap();
    assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        rows.iter().map(|r| r.lr).collect::<Vec<_>>(),
        [0.1, 0.1, 0.010000000000000002],
        "÷10 after 2 epochs (PyTorch's MultiStepLR)"
    );
    for r in &rows {
        assert!(r.train_loss.is_finite() && r.test_loss.is_finite(), "{r:?}");
        assert!((0.0..=1.0).contains(&r.test_acc) && r.val_acc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{r:?}");
        // Accuracies are multiples of 1/16 (test) and 1/8 (validation): counted, not estimated.
        assert_eq!((r.test_acc * 16.0).fract(), 0.0);
        assert!(r.seconds > 0.0 && r.images_per_sec > 0.0);
    }
    let s = summary(&out);
    // summary.json holds what train returned (floats up to JSON's last-digit rounding).
    assert_eq!(
        (s.epochs, s.best_epoch, s.test_accuracy, s.best_val_accuracy),
        (result.epochs, result.best_epoch, result.test_accuracy, result.best_val_accuracy)
    );
    assert!((s.test_loss.unwrap() - result.test_loss.unwrap()).abs() < 1e-9);
    assert_eq!((s.epochs, s.params, s.train_images, s.val_images, s.test_images), (3, 272_474, 32, 8, 16));
    assert_eq!(s.test_accuracy, Some(rows[2].test_acc));
    assert_eq!(s.test_top5, rows[2].test_top5);
    let best = s.best_epoch.unwrap();
    assert_eq!(s.best_val_accuracy, rows[best - 1].val_acc);
    assert!(rows.iter().all(|r| r.val_acc <= s.best_val_accuracy));
    assert!(std::fs::read_to_string(out.join("curves.svg")).unwrap().contains("<polyline"));
    let saved = Recipe::load(&out.join("recipe.yaml")).unwrap();
    assert_eq!(saved.normalize.as_ref().map(|n| n.mean.len()), Some(3), "normalisation recorded for eval");

    // last.bpk is the last epoch and loads into the code `resnetc compile` emits; the
    // evaluation of either network gives the test accuracy of the last row.
    let device = Device::flex();
    let emitted =
        Resnet20::new(&device).try_load_file(out.join("last.bpk")).expect("loads into the emitted struct").valid();
    let dynamic = DynNet::new(&network, &device).try_load_file(out.join("last.bpk")).unwrap().valid();
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let a: Vec<f32> = emitted.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    let b: Vec<f32> = dynamic.forward(x).into_data().try_to_vec::<f32>().unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4), "same weights, same outputs");
    let n = saved.normalize.unwrap();
    let augment = Augment::new(n.mean, n.std, 0, false);
    let eval = evaluate(&dynamic, &dataset.test, &augment, 5, &device).unwrap();
    assert_eq!(eval.top1, rows[2].test_acc, "eval agrees with training's last test score");
    assert!((eval.loss - rows[2].test_loss).abs() < 1e-4);
    assert!(eval.top5 >= eval.top1);
    assert_eq!(Some(eval.top5), rows[2].test_top5, "eval agrees with training's last top-5");
    assert!(rows.iter().all(|r| r.test_top5 >= Some(r.test_acc) && r.val_top5 >= r.val_acc), "{rows:?}");
    assert!(out.join("best.bpk").exists());
    // Kept: the last two epochs and the best.
    let kept: Vec<_> = (1..=3).filter(|e| out.join(format!("checkpoint/model-{e}.bpk")).exists()).collect();
    assert!(kept.contains(&2) && kept.contains(&3) && kept.contains(&best), "{kept:?}");
}

#[test]
fn resume_continues_after_the_last_complete_epoch() {
    let dir = temp("resume");
    let dataset = data::load(&fixture(&dir), [3, 32, 32]).unwrap();
    let out = dir.join("run");
    let network = resnet20();
    train(&network, &dataset, &options(&out, 2, 0)).unwrap();
    let first = read_csv(&out.join("metrics.csv")).unwrap();

    // Starting again over a run is refused; resuming it continues to the new length.
    let again = train(&network, &dataset, &options(&out, 3, 0)).unwrap_err();
    assert!(again.to_string().contains("--resume"), "{again}");
    let mut resume = options(&out, 4, 0);
    resume.resume = true;
    train(&network, &dataset, &resume).unwrap();
    let rows = read_csv(&out.join("metrics.csv")).unwrap();
    assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(rows[..2], first[..], "finished epochs untouched");
    assert_eq!(rows[2].lr, 0.010000000000000002, "the scheduler continued past its milestone");

    // A newest checkpoint cut short (a crash mid-write of a non-atomic copy): resume from
    // the epoch before, redoing the lost one.
    let before = rows.clone();
    let newest = out.join("checkpoint/model-4.bpk");
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let mut resume = options(&out, 5, 0);
    resume.resume = true;
    train(&network, &dataset, &resume).unwrap();
    let rows = read_csv(&out.join("metrics.csv")).unwrap();
    assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(rows[..3], before[..3], "epochs up to the resumed checkpoint untouched");
    assert_eq!(summary(&out).epochs, 5);

    // Nothing to resume from.
    let mut empty = options(&dir.join("empty"), 2, 0);
    empty.resume = true;
    let e = train(&network, &dataset, &empty).unwrap_err();
    assert!(e.to_string().contains("no complete checkpoint"), "{e}");
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let dir = temp("nan");
    let dataset = data::load(&fixture(&dir), [3, 32, 32]).unwrap();
    let out = dir.join("run");
    let network = resnet20();
    train(&network, &dataset, &options(&out, 1, 0)).unwrap();
    let good = std::fs::read(out.join("checkpoint/model-1.bpk")).unwrap();

    let mut blow_up = options(&out, 3, 0);
    blow_up.resume = true;
    blow_up.recipe = blow_up.recipe.set("optimizer.lr=1e30").unwrap().set("schedule={kind: constant}").unwrap();
    let e = train(&network, &dataset, &blow_up).unwrap_err();
    assert!(matches!(e, TrainError::Diverged(_)), "{e:?}");
    assert!(e.to_string().contains("training loss became"), "{e}");
    let rows = read_csv(&out.join("metrics.csv")).unwrap();
    assert_eq!(rows.len(), 1, "no row for the diverged epoch");
    assert!(!out.join("checkpoint/model-2.bpk").exists(), "the diverged epoch is not checkpointed");
    assert_eq!(std::fs::read(out.join("last.bpk")).unwrap(), good, "last.bpk is the last good epoch");
    assert!(summary(&out).stopped.unwrap().contains("training loss became"));
}

#[test]
fn bad_setups_are_errors_before_training() {
    let dir = temp("bad");
    let dataset = data::load(&fixture(&dir), [3, 32, 32]).unwrap();
    let network = resnet20();
    let e = train(&network, &dataset, &options(&dir.join("a"), 1, 40)).unwrap_err();
    assert!(e.to_string().contains("--val-split 40 leaves no training image"), "{e}");

    let mut c = Compilation::new();
    let id =
        c.add_source("five.net", "network five(classes = 5) {\n input 3x32x32\n global_avg_pool linear(classes)\n}\n");
    let five = c.check(id, &[]).unwrap();
    let e = train(&five, &dataset, &options(&dir.join("b"), 1, 0)).unwrap_err();
    assert!(e.to_string().contains("label 5 but five has 5 outputs"), "{e}");

    let mut zero = options(&dir.join("c"), 1, 0);
    zero.recipe.batch_size = 0;
    assert!(train(&network, &dataset, &zero).unwrap_err().to_string().contains("batch_size"));
}

#[test]
fn init_starts_from_the_given_weights() {
    let dir = temp("init");
    let dataset = data::load(&fixture(&dir), [3, 32, 32]).unwrap();
    let network = resnet20();
    let first = dir.join("first");
    train(&network, &dataset, &options(&first, 1, 0)).unwrap();

    // From those weights at learning rate 0 the parameters stay the first run's exactly (the
    // running statistics move on); from a fresh initialisation they would not.
    let mut again = options(&dir.join("again"), 1, 0);
    again.init = Some(first.join("last.bpk"));
    again.recipe = again.recipe.set("optimizer.lr=0").unwrap().set("schedule={kind: constant}").unwrap();
    train(&network, &dataset, &again).unwrap();
    let device = Device::flex();
    let load = |path: PathBuf| common::tensors(&DynNet::new(&network, &device).load_file(path));
    let (a, b) = (load(first.join("last.bpk")), load(dir.join("again/last.bpk")));
    let params: Vec<&String> = a.keys().filter(|k| !k.contains("running_")).collect();
    assert!(params.len() > 60);
    for k in params {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert_ne!(a["bn1.running_mean"], b["bn1.running_mean"], "training passes still update the statistics");

    // Weights that do not fit, and --init with --resume, are refused before training.
    let mut wrong = options(&dir.join("wrong"), 1, 0);
    let other = common::network_from(
        "tiny.net",
        "network tiny(classes = 10) {\n input 3x32x32\n conv3x3(8) bn relu\n global_avg_pool linear(classes)\n}\n",
    );
    wrong.init = Some(first.join("last.bpk"));
    let e = train(&other, &dataset, &wrong).unwrap_err();
    assert!(e.to_string().contains("--init") && e.to_string().contains("last.bpk"), "{e}");
    let mut both = options(&first, 2, 0);
    both.resume = true;
    both.init = Some(first.join("last.bpk"));
    assert!(train(&network, &dataset, &both).unwrap_err().to_string().contains("--init"));
}

/// The newer residual family's layers train through `train()` as the classic ones do: group
/// norm, layer norm, layer scale, dilation and ECA (tests/cases/norms.net), and stochastic depth
/// with per-block rates (sd-resnet-110 at depth 8), Shake-Shake (depth 8, width 16), Res2Net's
/// channel slicing (tests/cases/res2net.net, CSP and dual-path blocks in
/// tests/cases/channel-splits.net), rectangular kernels (tests/cases/factorised.net): finite losses every epoch, the training loss
/// falling, and the checkpoint loading back into the same network.
#[test]
fn the_newer_layers_train() {
    for (name, network) in [
        ("norms", common::network_with("tests/cases/norms.net", &[])),
        ("sd-resnet", common::network_with("specs/sd-resnet-110.net", &["depth=8"])),
        ("shake-shake", common::network_with("specs/shake-shake-26-2x96d.net", &["depth=8", "width=16"])),
        ("res2net", common::network_with("tests/cases/res2net.net", &[])),
        ("factorised", common::network_with("tests/cases/factorised.net", &[])),
        ("channel-splits", common::network_with("tests/cases/channel-splits.net", &[])),
    ] {
        let dir = temp(name);
        let dataset = data::load(&fixture(&dir), [3, 32, 32]).unwrap();
        let out = dir.join("run");
        let mut opts = options(&out, 6, 0);
        opts.recipe = opts.recipe.set("optimizer.lr=0.05").unwrap();
        train(&network, &dataset, &opts).unwrap();
        let rows = read_csv(&out.join("metrics.csv")).unwrap();
        assert_eq!(rows.len(), 6, "{name}");
        assert!(rows.iter().all(|r| r.train_loss.is_finite() && r.test_loss.is_finite()), "{name}: {rows:?}");
        let (first, last) = (rows[0].train_loss, rows[5].train_loss);
        assert!(last < first, "{name}: training loss {first} -> {last}");
        let trained = DynNet::new(&network, &burn::tensor::Device::flex()).load_file(out.join("last.bpk"));
        assert_eq!(trained.tensor_paths(), DynNet::new(&network, &burn::tensor::Device::flex()).tensor_paths());
    }
}

/// A folder of images of mixed sizes and formats: three classes by dominant colour, each image
/// a random size between 40 and 110 pixels a side, PNG or JPEG.
fn photo_folder(root: &Path) -> PathBuf {
    use rand_core::Rng as _;
    let mut rng = data::rng(11);
    let colours = [[200u8, 40, 40], [40, 200, 40], [40, 40, 200]];
    for (split, per_class) in [("train", 20), ("val", 6)] {
        for (c, colour) in colours.iter().enumerate() {
            let dir = root.join(split).join(format!("class{c}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let (w, h) = (40 + rng.next_u32() % 70, 40 + rng.next_u32() % 70);
                let img = image::RgbImage::from_fn(w, h, |_, _| {
                    let n = (rng.next_u32() % 60) as u8;
                    image::Rgb(colour.map(|v| v.saturating_add(n).saturating_sub(30)))
                });
                let ext = if i % 2 == 0 { "png" } else { "jpg" };
                img.save(dir.join(format!("{i}.{ext}"))).unwrap();
            }
        }
    }
    root.to_path_buf()
}

/// `resnetc train` on a folder of mixed-size images: streamed, a random resized crop in
/// training, resize and centre crop in evaluation; it learns the colours.
#[test]
fn a_folder_of_mixed_size_images_trains() {
    let dir = temp("photos");
    let dataset = data::load(&photo_folder(&dir.join("photos")), [3, 64, 64]).unwrap();
    assert_eq!(dataset.format, "image-folder (streamed)");
    let network = common::network_with("tests/cases/photo-64.net", &[]);
    let out = dir.join("run");
    let mut opts = options(&out, 6, 0);
    opts.recipe = opts
        .recipe
        .set("augment.random_resized_crop.scale=[0.35, 1.0]")
        .and_then(|r| r.set("augment.pad=0"))
        .and_then(|r| r.set("optimizer.lr=0.05"))
        .unwrap();
    opts.workers = 2;
    let summary = train(&network, &dataset, &opts).unwrap();
    let rows = read_csv(&out.join("metrics.csv")).unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows[5].train_loss < rows[0].train_loss, "{rows:?}");
    assert!(summary.test_accuracy.unwrap_or(0.0) > 0.6, "{summary:?}");
    // The run's recipe records the crop, and scoring with it reproduces the test accuracy.
    let saved = Recipe::load(&out.join("recipe.yaml")).unwrap();
    assert!(saved.augment.random_resized_crop.is_some());
    let n = saved.normalize.clone().unwrap();
    let model = DynNet::new(&network, &Device::flex()).load_file(out.join("last.bpk"));
    let augment = resnetc_runtime::train::augment_of(&saved, n.mean, n.std);
    let scored = evaluate(&model, &dataset.test, &augment, 16, &Device::flex()).unwrap();
    assert_eq!(scored.images, 18);
    assert!((scored.top1 - rows[5].test_acc).abs() < 1e-6, "{} vs {}", scored.top1, rows[5].test_acc);
}
