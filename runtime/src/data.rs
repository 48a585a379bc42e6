//! CIFAR-10/100 loading and augmentation.
//!
//! [`load`] reads a dataset from a folder or a `.tar`/`.tar.gz`, detecting the format:
//! the official CIFAR binary files (CIFAR-10 `data_batch_1..5.bin` + `test_batch.bin`,
//! CIFAR-100 `train.bin` + `test.bin`), or image folders (`train/<class>/*.png|jpg`,
//! `test/<class>/*`, classes by sorted folder name, as torchvision's ImageFolder).
//! Images are decoded once into memory as `u8` planes; [`Augment`] builds normalised
//! `f32` batches with the papers' augmentation (4-pixel zero pad, random crop, horizontal
//! flip), deterministic for a seed. Every defect in the input is an error naming the file.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a dataset could not be loaded; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "{path}: no CIFAR binary files (data_batch_1.bin .. test_batch.bin, or train.bin + test.bin) and no train/ + test/ image folders"
    )]
    UnknownLayout { path: PathBuf },
}

fn format_error(path: impl Into<PathBuf>, message: impl Into<String>) -> DataError {
    DataError::Format { path: path.into(), message: message.into() }
}

/// Images and labels of one split, decoded into memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// `len × C × H × W` bytes, channel planes (R, G, B) in row-major order.
    pub pixels: Vec<u8>,
    pub labels: Vec<u16>,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.iter().product::<usize>();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Per-channel mean and standard deviation of the pixels, scaled to [0, 1].
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for img in self.pixels.chunks_exact(c * plane) {
            for ch in 0..c {
                for &p in &img[ch * plane..(ch + 1) * plane] {
                    let v = p as f64 / 255.0;
                    sum[ch] += v;
                    sq[ch] += v * v;
                }
            }
        }
        let n = (self.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq.iter().zip(&mean).map(|(q, m)| ((q / n - m * m).max(0.0)).sqrt() as f32).collect();
        (mean.into_iter().map(|m| m as f32).collect(), std)
    }
}

/// A dataset: both splits and the class names.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
    pub classes: Vec<String>,
    /// Which layout was found, for logs: `cifar10-binary`, `cifar100-binary`, `image-folder`.
    pub format: &'static str,
}

/// The files of a folder or an archive, by relative path with `/` separators.
enum Files {
    Disk { root: PathBuf, paths: Vec<String> },
    Memory { archive: PathBuf, files: BTreeMap<String, Vec<u8>> },
}

impl Files {
    fn paths(&self) -> Vec<&str> {
        match self {
            Files::Disk { paths, .. } => paths.iter().map(String::as_str).collect(),
            Files::Memory { files, .. } => files.keys().map(String::as_str).collect(),
        }
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, DataError> {
        match self {
            Files::Disk { root, .. } => {
                let path = root.join(rel);
                std::fs::read(&path).map_err(|source| DataError::Io { path, source })
            }
            Files::Memory { files, archive } => {
                files.get(rel).cloned().ok_or_else(|| format_error(archive.join(rel), "not in the archive"))
            }
        }
    }

    /// The path to name in errors.
    fn display(&self, rel: &str) -> PathBuf {
        match self {
            Files::Disk { root, .. } => root.join(rel),
            Files::Memory { archive, .. } => PathBuf::from(format!("{}!/{rel}", archive.display())),
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io { path: dir.to_path_buf(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| DataError::Io { path: dir.to_path_buf(), source })?;
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
        }
    }
    Ok(())
}

fn open(path: &Path) -> Result<Files, DataError> {
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    if path.is_dir() {
        let mut paths = Vec::new();
        walk(path, path, &mut paths)?;
        paths.sort();
        return Ok(Files::Disk { root: path.to_path_buf(), paths });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let name = path.to_string_lossy();
    let reader: Box<dyn Read> = if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else if name.ends_with(".tar") {
        Box::new(file)
    } else {
        return Err(format_error(path, "expected a folder, a .tar or a .tar.gz"));
    };
    let mut archive = tar::Archive::new(reader);
    let mut files = BTreeMap::new();
    let bad = |e: std::io::Error| format_error(path, format!("corrupt archive: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let rel = entry.path().map_err(bad)?.to_string_lossy().trim_start_matches("./").to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(bad)?;
        files.insert(rel, bytes);
    }
    Ok(Files::Memory { archive: path.to_path_buf(), files })
}

/// Load a dataset from `path` (a folder, `.tar` or `.tar.gz`); images must be `shape` = `[C, H, W]`.
pub fn load(path: &Path, shape: [usize; 3]) -> Result<Dataset, DataError> {
    let files = open(path)?;
    let paths = files.paths();
    // The layout may sit one folder down (`cifar-10-batches-bin/`, `cifar10/`).
    let prefixes: Vec<String> = std::iter::once(String::new())
        .chain(paths.iter().filter_map(|p| p.split_once('/').map(|(d, _)| format!("{d}/"))))
        .collect();
    for prefix in &prefixes {
        let has = |name: &str| paths.contains(&format!("{prefix}{name}").as_str());
        if has("data_batch_1.bin") || has("test_batch.bin") {
            return cifar_binary(&files, prefix, 10, shape);
        }
        if has("train.bin") && has("test.bin") {
            return cifar_binary(&files, prefix, 100, shape);
        }
        let under = |split: &str| {
            paths.iter().any(|p| p.strip_prefix(prefix).is_some_and(|r| r.starts_with(&format!("{split}/"))))
        };
        if under("train") && under("test") {
            return image_folders(&files, prefix, shape);
        }
    }
    Err(DataError::UnknownLayout { path: path.to_path_buf() })
}

fn cifar_binary(files: &Files, prefix: &str, classes: u16, shape: [usize; 3]) -> Result<Dataset, DataError> {
    let pixels_per_image = 3 * 32 * 32;
    let label_bytes = if classes == 10 { 1 } else { 2 };
    if shape != [3, 32, 32] {
        return Err(format_error(
            files.display(prefix),
            format!("CIFAR images are 3×32×32, the network takes {shape:?}"),
        ));
    }
    let read_split = |names: &[String]| -> Result<Split, DataError> {
        let mut split = Split { pixels: Vec::new(), labels: Vec::new(), shape };
        for name in names {
            let bytes = files.read(name)?;
            let record = label_bytes + pixels_per_image;
            if bytes.is_empty() || bytes.len() % record != 0 {
                return Err(format_error(
                    files.display(name),
                    format!("truncated: {} bytes is not a whole number of {record}-byte records", bytes.len()),
                ));
            }
            for (i, r) in bytes.chunks_exact(record).enumerate() {
                // CIFAR-100 records hold the coarse label first, then the fine one (used here).
                let label = r[label_bytes - 1] as u16;
                if label >= classes {
                    return Err(format_error(
                        files.display(name),
                        format!("record {i}: label {label} is out of range 0..{classes}"),
                    ));
                }
                split.labels.push(label);
                split.pixels.extend_from_slice(&r[label_bytes..]);
            }
        }
        Ok(split)
    };
    let (train_names, test_names): (Vec<String>, Vec<String>) = if classes == 10 {
        ((1..=5).map(|i| format!("{prefix}data_batch_{i}.bin")).collect(), vec![format!("{prefix}test_batch.bin")])
    } else {
        (vec![format!("{prefix}train.bin")], vec![format!("{prefix}test.bin")])
    };
    let paths = files.paths();
    for name in train_names.iter().chain(&test_names) {
        if !paths.contains(&name.as_str()) {
            return Err(format_error(files.display(name), "missing: a CIFAR binary dataset needs all of its files"));
        }
    }
    Ok(Dataset {
        train: read_split(&train_names)?,
        test: read_split(&test_names)?,
        classes: (0..classes).map(|c| c.to_string()).collect(),
        format: if classes == 10 { "cifar10-binary" } else { "cifar100-binary" },
    })
}

fn image_folders(files: &Files, prefix: &str, shape: [usize; 3]) -> Result<Dataset, DataError> {
    let paths = files.paths();
    let classes_of = |split: &str| -> BTreeMap<String, Vec<String>> {
        let mut classes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let root = format!("{prefix}{split}/");
        for p in &paths {
            if let Some((class, file)) = p.strip_prefix(root.as_str()).and_then(|r| r.split_once('/')) {
                let entry = classes.entry(class.to_string()).or_default();
                let lower = file.to_ascii_lowercase();
                if lower.ends_with(".png") || lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
                    entry.push(p.to_string());
                }
            }
        }
        classes
    };
    let train = classes_of("train");
    let test = classes_of("test");
    let names: Vec<String> = train.keys().cloned().collect();
    if names != test.keys().cloned().collect::<Vec<_>>() {
        return Err(format_error(
            files.display(&format!("{prefix}test")),
            format!("the test classes {:?} differ from the train classes {:?}", test.keys().collect::<Vec<_>>(), names),
        ));
    }
    let read_split = |classes: &BTreeMap<String, Vec<String>>, split: &str| -> Result<Split, DataError> {
        let mut out = Split { pixels: Vec::new(), labels: Vec::new(), shape };
        for (label, (class, images)) in classes.iter().enumerate() {
            if images.is_empty() {
                return Err(format_error(
                    files.display(&format!("{prefix}{split}/{class}")),
                    "empty class folder: no .png/.jpg images",
                ));
            }
            for path in images {
                decode_into(files, path, shape, &mut out.pixels)?;
                out.labels.push(label as u16);
            }
        }
        Ok(out)
    };
    Ok(Dataset {
        train: read_split(&train, "train")?,
        test: read_split(&test, "test")?,
        classes: names,
        format: "image-folder",
    })
}

fn decode_into(files: &Files, rel: &str, shape: [usize; 3], out: &mut Vec<u8>) -> Result<(), DataError> {
    let bytes = files.read(rel)?;
    let image = image::load_from_memory(&bytes)
        .map_err(|e| format_error(files.display(rel), format!("unreadable image: {e}")))?;
    let [c, h, w] = shape;
    if (image.width() as usize, image.height() as usize) != (w, h) {
        return Err(format_error(
            files.display(rel),
            format!(
                "image is {}×{}, the network takes {w}×{h} (images are not resized)",
                image.width(),
                image.height()
            ),
        ));
    }
    match c {
        3 => {
            let rgb = image.to_rgb8();
            for ch in 0..3 {
                out.extend(rgb.pixels().map(|p| p.0[ch]));
            }
        }
        1 => out.extend(image.to_luma8().into_raw()),
        _ => {
            return Err(format_error(
                files.display(rel),
                format!("images have 1 or 3 channels, the network takes {c}"),
            ));
        }
    }
    Ok(())
}

/// Turns images into normalised `f32` batches, with or without augmentation.
#[derive(Clone, Debug)]
pub struct Augment {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Zero padding before the random crop (4 in the papers); 0 disables cropping.
    pub pad: usize,
    pub flip: bool,
}

impl Augment {
    /// Write images `indices` of `split` into `out` (`len × C × H × W`), augmenting with `rng` when given.
    pub fn batch(&self, split: &Split, indices: &[usize], mut rng: Option<&mut ChaCha8Rng>, out: &mut Vec<f32>) {
        let [c, h, w] = split.shape;
        out.clear();
        out.resize(indices.len() * c * h * w, 0.0);
        for (slot, &i) in indices.iter().enumerate() {
            let img = split.image(i);
            let (dy, dx, flip) = match rng.as_deref_mut() {
                Some(r) => {
                    let span = 2 * self.pad as u32 + 1;
                    let dy = (r.next_u32() % span) as isize - self.pad as isize;
                    let dx = (r.next_u32() % span) as isize - self.pad as isize;
                    (dy, dx, self.flip && r.next_u32() & 1 == 1)
                }
                None => (0, 0, false),
            };
            let dst = &mut out[slot * c * h * w..(slot + 1) * c * h * w];
            for ch in 0..c {
                let (m, s) = (self.mean[ch], self.std[ch]);
                // A padded pixel is 0 before normalisation, as torchvision pads the raw image.
                let zero = (0.0 - m) / s;
                for y in 0..h {
                    let sy = y as isize + dy;
                    for x in 0..w {
                        let xx = if flip { w - 1 - x } else { x };
                        let sx = xx as isize + dx;
                        let v = if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                            zero
                        } else {
                            (img[ch * h * w + sy as usize * w + sx as usize] as f32 / 255.0 - m) / s
                        };
                        dst[ch * h * w + y * w + x] = v;
                    }
                }
            }
        }
    }
}

/// A deterministic random generator for a seed.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A random permutation of `0..n` (Fisher–Yates), deterministic for the generator's state.
pub fn shuffled(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}
