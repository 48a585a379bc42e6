//! Training recipes: the papers' optimiser and schedule settings, as YAML files in `recipes/`.
//!
//! Parsed with serde and `serde_norway`; an unknown or mistyped key is an error naming the
//! file, line and column. Every key can be overridden by its dotted path (`optimizer.lr=0.05`,
//! `schedule.milestones=[100,150]`), as `resnetc train --set-recipe` will do.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// SGD settings, PyTorch semantics (dampening 0 unless set: Burn's own default is 0.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimizer {
    pub lr: f64,
    pub momentum: f64,
    #[serde(default)]
    pub nesterov: bool,
    #[serde(default)]
    pub dampening: f64,
    pub weight_decay: f64,
    /// The batch `lr` is meant for: set, the run uses `lr × batch_size / lr_batch` (the linear
    /// scaling rule of Goyal et al. 2017, timm's `--lr-base-size`); unset, `lr` as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_batch: Option<usize>,
}

/// How the learning rate changes over epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    /// Constant learning rate.
    Constant,
    /// Multiply by `gamma` at each milestone epoch.
    Multistep { milestones: Vec<u32>, gamma: f64 },
    /// Cosine annealing from the base rate to `min_lr` over all epochs.
    Cosine {
        #[serde(default)]
        min_lr: f64,
    },
}

/// A constant learning rate for the first iterations (He et al. for the 110+ layer nets).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warmup {
    pub lr: f64,
    pub iterations: u64,
}

/// Data augmentation: zero padding before a random crop and horizontal flips (CIFAR), or
/// torchvision's `RandomResizedCrop` (ImageNet); images whose size is not the input's are
/// evaluated, and trained without a random resized crop, resized and centre-cropped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    pub pad: usize,
    pub flip: bool,
    /// `{ scale: [0.08, 1.0], ratio: [0.75, 1.3333] }`: a random resized crop of every training image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_resized_crop: Option<RandomResizedCrop>,
    /// Evaluation resizes the shorter side to `input / crop_pct`, then crops the centre
    /// (0.875: ImageNet's 256 → 224).
    #[serde(default = "default_crop_pct")]
    pub crop_pct: f64,
}

fn default_crop_pct() -> f64 {
    0.875
}

/// torchvision's `RandomResizedCrop` parameters: the area fraction and aspect ratio ranges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomResizedCrop {
    #[serde(default = "default_scale")]
    pub scale: [f64; 2],
    #[serde(default = "default_ratio")]
    pub ratio: [f64; 2],
}

fn default_scale() -> [f64; 2] {
    [0.08, 1.0]
}

fn default_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}

/// Per-channel normalisation; computed from the training set when absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    /// The means and deviations for a network taking `channels` channels: as many as it has.
    pub fn for_channels(&self, channels: usize) -> Result<(Vec<f32>, Vec<f32>), String> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(format!(
                "the recipe's normalize has {} means and {} stds; the network takes {channels} channels",
                self.mean.len(),
                self.std.len()
            ));
        }
        Ok((self.mean.clone(), self.std.clone()))
    }
}

/// A training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub optimizer: Optimizer,
    pub batch_size: usize,
    pub epochs: u32,
    pub schedule: Schedule,
    #[serde(default)]
    pub warmup: Option<Warmup>,
    #[serde(default)]
    pub label_smoothing: f64,
    pub augment: AugmentConfig,
    #[serde(default)]
    pub normalize: Option<Normalize>,
}

/// The most zero padding `augment.pad` may ask for (the papers use 4).
pub const MAX_PAD: usize = 1024;

/// A recipe that could not be read, with where.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct RecipeError {
    /// `file:line:column`, or just the file.
    pub location: String,
    pub message: String,
}

/// The shipped recipes, by file stem.
pub const SHIPPED: &[(&str, &str)] = &[
    ("resnet-cifar", include_str!("../../recipes/resnet-cifar.yaml")),
    ("wrn-cifar", include_str!("../../recipes/wrn-cifar.yaml")),
    ("resnext-cifar", include_str!("../../recipes/resnext-cifar.yaml")),
    ("densenet-cifar", include_str!("../../recipes/densenet-cifar.yaml")),
    ("imagenet", include_str!("../../recipes/imagenet.yaml")),
];

/// The recipe a network trains with by default: ImageNet's for inputs of 128 pixels or more,
/// else its CIFAR family's ([`default_for`]).
pub fn default_for_input(network: &str, height: u64, width: u64) -> &'static str {
    if height.min(width) >= 128 { "imagenet" } else { default_for(network) }
}

/// The CIFAR recipe of a network's family (from its name).
pub fn default_for(network: &str) -> &'static str {
    if network.starts_with("wrn") || network.starts_with("wide") {
        "wrn-cifar"
    } else if network.starts_with("resnext") {
        "resnext-cifar"
    } else if network.starts_with("densenet") {
        "densenet-cifar"
    } else {
        "resnet-cifar"
    }
}

impl Recipe {
    /// Parse YAML text; `name` is used in error locations.
    pub fn parse(name: &str, text: &str) -> Result<Recipe, RecipeError> {
        let recipe: Recipe = serde_norway::from_str(text).map_err(|e| yaml_error(name, &e))?;
        recipe.check().map_err(|message| RecipeError { location: name.to_string(), message })?;
        Ok(recipe)
    }

    /// The learning rate after warm-up and before any decay: `optimizer.lr`, scaled to the
    /// batch size when the recipe names the batch it is for (`optimizer.lr_batch`).
    pub fn base_lr(&self) -> f64 {
        match self.optimizer.lr_batch {
            Some(reference) => self.optimizer.lr * self.batch_size as f64 / reference as f64,
            None => self.optimizer.lr,
        }
    }

    /// The ranges serde cannot state.
    fn check(&self) -> Result<(), String> {
        if self.optimizer.lr_batch == Some(0) {
            return Err("optimizer.lr_batch must be at least 1".into());
        }
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        let o = &self.optimizer;
        let mut rates = vec![("optimizer.lr", o.lr), ("optimizer.weight_decay", o.weight_decay)];
        rates.extend(self.warmup.as_ref().map(|w| ("warmup.lr", w.lr)));
        match &self.schedule {
            Schedule::Multistep { gamma, .. } => rates.push(("schedule.gamma", *gamma)),
            Schedule::Cosine { min_lr } => rates.push(("schedule.min_lr", *min_lr)),
            Schedule::Constant => {}
        }
        for (key, v) in rates {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{key} must be a finite number >= 0, got {v}"));
            }
        }
        for (key, v) in [
            ("optimizer.momentum", o.momentum),
            ("optimizer.dampening", o.dampening),
            ("label_smoothing", self.label_smoothing),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("{key} must be in [0, 1), got {v}"));
            }
        }
        if self.augment.pad > MAX_PAD {
            return Err(format!("augment.pad must be at most {MAX_PAD}, got {}", self.augment.pad));
        }
        if let Some(n) = &self.normalize {
            if n.mean.len() != n.std.len() || n.mean.is_empty() {
                return Err(format!(
                    "normalize needs one mean and one std per channel, got {} and {}",
                    n.mean.len(),
                    n.std.len()
                ));
            }
            if let Some(s) = n.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(format!("normalize.std must be finite and > 0, got {s}"));
            }
            if let Some(m) = n.mean.iter().find(|m| !m.is_finite()) {
                return Err(format!("normalize.mean must be finite, got {m}"));
            }
        }
        let a = &self.augment;
        if !(a.crop_pct > 0.0 && a.crop_pct <= 1.0) {
            return Err(format!("augment.crop_pct must be in (0, 1], got {}", a.crop_pct));
        }
        if let Some(r) = &a.random_resized_crop {
            let [lo, hi] = r.scale;
            if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
                return Err(format!(
                    "augment.random_resized_crop.scale must be 0 < low <= high <= 1, got [{lo}, {hi}]"
                ));
            }
            let [lo, hi] = r.ratio;
            if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
                return Err(format!("augment.random_resized_crop.ratio must be 0 < low <= high, got [{lo}, {hi}]"));
            }
        }
        Ok(())
    }

    /// Read a recipe file.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RecipeError { location: path.display().to_string(), message: format!("cannot read: {e}") })?;
        Recipe::parse(&path.display().to_string(), &text)
    }

    /// A shipped recipe by name (`resnet-cifar`, ...).
    pub fn shipped(name: &str) -> Result<Recipe, RecipeError> {
        let (_, text) = SHIPPED.iter().find(|(n, _)| *n == name).ok_or_else(|| RecipeError {
            location: format!("recipes/{name}.yaml"),
            message: format!(
                "no such shipped recipe; the recipes are {}",
                SHIPPED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        })?;
        Recipe::parse(&format!("recipes/{name}.yaml"), text)
    }

    /// Set a key by dotted path from `KEY=VALUE` text (the value is YAML: `0.05`, `true`, `[60, 120]`).
    pub fn set(&self, assignment: &str) -> Result<Recipe, RecipeError> {
        let bad = |message: String| RecipeError { location: format!("--set {assignment}"), message };
        let (key, value) =
            assignment.split_once('=').ok_or_else(|| bad("expected KEY=VALUE, e.g. optimizer.lr=0.05".into()))?;
        let value: serde_norway::Value =
            serde_norway::from_str(value.trim()).map_err(|e| bad(format!("bad value: {e}")))?;
        let mut tree = serde_norway::to_value(self).map_err(|e| bad(e.to_string()))?;
        let mut node = &mut tree;
        let parts: Vec<&str> = key.trim().split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let map =
                node.as_mapping_mut().ok_or_else(|| bad(format!("`{}` is not a section", parts[..i].join("."))))?;
            let k = serde_norway::Value::String(part.to_string());
            if i + 1 == parts.len() {
                map.insert(k, value.clone());
                break;
            }
            if !map.contains_key(&k) {
                // Optional sections (warmup, normalize) may be set key by key.
                map.insert(k.clone(), serde_norway::Value::Mapping(Default::default()));
            }
            node = map.get_mut(&k).expect("inserted above");
        }
        let recipe: Recipe = serde_norway::from_value(tree).map_err(|e| bad(e.to_string()))?;
        recipe.check().map_err(bad)?;
        Ok(recipe)
    }

    /// The learning rate for a 0-based `iteration`, with `per_epoch` iterations an epoch.
    pub fn lr_at(&self, iteration: u64, per_epoch: u64) -> f64 {
        if let Some(w) = &self.warmup
            && iteration < w.iterations
        {
            return w.lr;
        }
        let base = self.base_lr();
        let epoch = iteration / per_epoch.max(1);
        match &self.schedule {
            Schedule::Constant => base,
            Schedule::Multistep { milestones, gamma } => {
                let passed = milestones.iter().filter(|m| epoch >= u64::from(**m)).count();
                base * gamma.powi(passed as i32)
            }
            Schedule::Cosine { min_lr } => {
                let total = (u64::from(self.epochs) * per_epoch.max(1)) as f64;
                let t = (iteration as f64 / total).min(1.0);
                min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

fn yaml_error(name: &str, e: &serde_norway::Error) -> RecipeError {
    let location = match e.location() {
        Some(l) => format!("{name}:{}:{}", l.line(), l.column()),
        None => name.to_string(),
    };
    // serde_norway appends "at line L column C" to its message; the location says it already.
    let message = e.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message).to_string();
    RecipeError { location, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_recipe_parses_and_matches_its_paper() {
        for (name, _) in SHIPPED {
            Recipe::shipped(name).unwrap();
        }
        let r = Recipe::shipped("resnet-cifar").unwrap();
        assert_eq!((r.batch_size, r.epochs, r.optimizer.weight_decay), (128, 164, 1e-4));
        assert_eq!(r.optimizer.dampening, 0.0);
        let w = Recipe::shipped("wrn-cifar").unwrap();
        assert!(w.optimizer.nesterov);
        assert_eq!(w.schedule, Schedule::Multistep { milestones: vec![60, 120, 160], gamma: 0.2 });
        let d = Recipe::shipped("densenet-cifar").unwrap();
        assert_eq!((d.batch_size, d.epochs), (64, 300));
    }

    /// Values training cannot use are errors at load, not panics or NaNs later (found while
    /// fuzzing, `fuzz/regressions/recipe/`).
    #[test]
    fn values_training_cannot_use_are_errors() {
        let r = Recipe::shipped("resnet-cifar").unwrap();
        for (set, message) in [
            ("batch_size=0", "batch_size must be at least 1"),
            ("optimizer.lr=.nan", "optimizer.lr must be a finite number >= 0"),
            ("schedule.gamma=-1", "schedule.gamma must be a finite number >= 0"),
            ("optimizer.momentum=1.5", "optimizer.momentum must be in [0, 1)"),
            ("label_smoothing=1.0", "label_smoothing must be in [0, 1)"),
            ("augment.pad=2147483648", "augment.pad must be at most 1024"),
            ("normalize={mean: [0.5], std: [0.2, 0.2, 0.2]}", "one mean and one std per channel"),
            ("normalize={mean: [0.5], std: [0.0]}", "normalize.std must be finite and > 0"),
        ] {
            let e = r.set(set).unwrap_err();
            assert!(e.message.contains(message), "{set}: {e}");
        }
        let n = Normalize { mean: vec![0.5], std: vec![0.25] };
        assert!(n.for_channels(3).unwrap_err().contains("the network takes 3 channels"));
        assert_eq!(n.for_channels(1).unwrap(), (vec![0.5], vec![0.25]));
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let text = "optimizer:\n  lr: 0.1\n  momentom: 0.9\n  weight_decay: 1e-4\nbatch_size: 128\n";
        let e = Recipe::parse("my.yaml", text).unwrap_err();
        assert!(e.location.starts_with("my.yaml:3:"), "{e}");
        assert!(e.message.contains("unknown field `momentom`"), "{e}");
        let e = Recipe::parse("my.yaml", "optimizer: {lr: fast, momentum: 0.9, weight_decay: 0}\n").unwrap_err();
        assert!(e.location.starts_with("my.yaml:1:"), "{e}");
        let e = Recipe::shipped("resnet-imagenet").unwrap_err();
        assert!(e.message.contains("resnet-cifar"), "{e}");
    }

    #[test]
    fn any_key_can_be_overridden() {
        let r = Recipe::shipped("resnet-cifar").unwrap();
        let r2 = r.set("optimizer.lr=0.05").unwrap().set("schedule.milestones=[100, 150]").unwrap();
        assert_eq!(r2.optimizer.lr, 0.05);
        assert_eq!(r2.schedule, Schedule::Multistep { milestones: vec![100, 150], gamma: 0.1 });
        let r3 = r.set("warmup.iterations=400").unwrap();
        assert_eq!(r3.warmup, Some(Warmup { lr: 0.01, iterations: 400 }));
        let cosine = r.set("schedule={kind: cosine}").unwrap();
        assert_eq!(cosine.schedule, Schedule::Cosine { min_lr: 0.0 });
        assert!(r.set("optimizer.lrr=0.05").unwrap_err().message.contains("unknown field `lrr`"));
        assert!(r.set("batch_size=big").is_err());
        assert!(r.set("optimizer").is_err());
    }

    #[test]
    fn learning_rate_follows_the_schedule() {
        let r = Recipe::shipped("resnet-cifar").unwrap().set("warmup.iterations=400").unwrap();
        let per_epoch = 391; // 50,000 images / 128
        assert_eq!(r.lr_at(0, per_epoch), 0.01, "warm-up");
        assert_eq!(r.lr_at(399, per_epoch), 0.01);
        assert_eq!(r.lr_at(400, per_epoch), 0.1);
        assert!((r.lr_at(82 * per_epoch, per_epoch) - 0.01).abs() < 1e-12);
        assert!((r.lr_at(82 * per_epoch - 1, per_epoch) - 0.1).abs() < 1e-12);
        assert!((r.lr_at(123 * per_epoch, per_epoch) - 0.001).abs() < 1e-12);
        let c = r.set("schedule={kind: cosine, min_lr: 0.0}").unwrap().set("warmup.iterations=0").unwrap();
        assert!((c.lr_at(0, 10) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(82 * 10, 10) - 0.05).abs() < 1e-9, "half way");
        assert!(c.lr_at(164 * 10, 10).abs() < 1e-12);
        // ImageNet's lr is for a batch of 256 and follows the batch size.
        let i = Recipe::shipped("imagenet").unwrap();
        assert_eq!((i.lr_at(0, 10), i.set("batch_size=64").unwrap().lr_at(0, 10)), (0.1, 0.025));
        assert!((i.set("batch_size=64").unwrap().lr_at(300, 10) - 0.0025).abs() < 1e-12, "÷10 at 30");
        assert!(i.set("optimizer.lr_batch=0").is_err());
    }

    #[test]
    fn families_pick_their_recipe() {
        assert_eq!(default_for("wrn_28_10"), "wrn-cifar");
        assert_eq!(default_for("resnext_29_8x64d"), "resnext-cifar");
        assert_eq!(default_for("densenet_bc_100_12"), "densenet-cifar");
        assert_eq!(default_for("preresnet_164"), "resnet-cifar");
        assert_eq!(default_for("se_resnet_20"), "resnet-cifar");
        assert_eq!(default_for_input("resnet_50", 224, 224), "imagenet");
        assert_eq!(default_for_input("resnet_20", 32, 32), "resnet-cifar");
        let imagenet = Recipe::shipped("imagenet").unwrap();
        assert_eq!(imagenet.augment.random_resized_crop.unwrap().scale, [0.08, 1.0]);
        assert_eq!(imagenet.normalize.unwrap().mean, vec![0.485, 0.456, 0.406]);
        let e = Recipe::shipped("imagenet").unwrap().set("augment.random_resized_crop.scale=[0.5, 0.2]").unwrap_err();
        assert!(e.message.contains("0 < low <= high <= 1"), "{e}");
        let e = Recipe::shipped("imagenet").unwrap().set("augment.crop_pct=1.5").unwrap_err();
        assert!(e.message.contains("crop_pct"), "{e}");
    }
}
