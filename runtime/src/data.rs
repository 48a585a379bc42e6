//! Dataset loading and augmentation.
//!
//! [`load`] reads a dataset from a folder or a `.tar`/`.tar.gz`, detecting the format:
//! the official CIFAR binary files (CIFAR-10 `data_batch_1..5.bin` + `test_batch.bin`,
//! CIFAR-100 `train.bin` + `test.bin`), or image folders (`train/<class>/*.png|jpg|jpeg|webp`
//! and `test/<class>/*` or `val/<class>/*`, classes by sorted folder name, as torchvision's
//! ImageFolder; grayscale, palette, alpha and CMYK images become RGB, or gray for a
//! one-channel network). Every image's header is read at load, so a corrupt file is found
//! before training, named with its path, and is an error or skipped ([`BadImages`]).
//!
//! Images that all have the network's input size (CIFAR) are decoded once into memory as `u8`
//! planes ([`Images::Decoded`]); folders of other or mixed sizes stay encoded
//! ([`Images::Encoded`]) and are decoded when a batch needs them, in the loader's workers,
//! keeping what a byte budget allows for later epochs ([`Dataset::cache_decoded`],
//! [`DecodedCache`]: least recently used first out), so memory grows with the cache, not with
//! the dataset. [`Augment`] builds normalised `f32` batches: the
//! papers' CIFAR augmentation (4-pixel zero pad, random crop, horizontal flip) for images of
//! the input size, torchvision's geometry ([`crate::transform::Geometry`]: RandomResizedCrop
//! or resize + centre crop) for the others; deterministic for a seed.

use crate::transform::{Geometry, Pixels};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Images and labels of one split.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub images: Images,
    pub labels: Vec<u16>,
    /// `[C, H, W]`: the network's input, what every image becomes.
    pub shape: [usize; 3],
}

/// Where a split's images are.
#[derive(Clone, Debug, PartialEq)]
pub enum Images {
    /// Decoded once: `len × C × H × W` bytes, channel planes (R, G, B) in row-major order.
    Decoded(Vec<u8>),
    /// Encoded files of any size, decoded when a batch needs them.
    Encoded(Arc<Encoded>),
}

/// Encoded image files of one split, in label order.
#[derive(Debug)]
pub struct Encoded {
    files: Arc<Files>,
    paths: Vec<String>,
    /// What a file that fails to decode becomes (its header was read at load).
    bad: BadImages,
    /// Decoded images kept for the next epoch, within a byte budget ([`Dataset::cache_decoded`]).
    cache: Option<Arc<DecodedCache>>,
}

/// Decoded images by file, the least recently used dropped first once their pixels exceed a
/// byte budget; shared by the splits of a dataset and the loader's workers.
#[derive(Debug)]
pub struct DecodedCache {
    budget: usize,
    state: std::sync::Mutex<CacheState>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct CacheState {
    images: lru::LruCache<(String, usize), Arc<Pixels>>,
    bytes: usize,
}

/// What a [`DecodedCache`] holds and has served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub budget: usize,
    pub bytes: usize,
    pub images: usize,
    pub hits: u64,
    pub misses: u64,
}

impl DecodedCache {
    /// A cache holding at most `budget` bytes of pixels.
    pub fn new(budget: usize) -> Self {
        DecodedCache {
            budget,
            state: std::sync::Mutex::new(CacheState { images: lru::LruCache::unbounded(), bytes: 0 }),
            hits: 0.into(),
            misses: 0.into(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &(String, usize)) -> Option<Arc<Pixels>> {
        use std::sync::atomic::Ordering::Relaxed;
        let found = self.lock().images.get(key).cloned();
        match &found {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None => self.misses.fetch_add(1, Relaxed),
        };
        found
    }

    fn insert(&self, key: (String, usize), image: Arc<Pixels>) {
        let size = image.data.len();
        if size > self.budget {
            return;
        }
        let mut state = self.lock();
        if let Some(old) = state.images.put(key, image) {
            state.bytes -= old.data.len();
        }
        state.bytes += size;
        while state.bytes > self.budget {
            match state.images.pop_lru() {
                Some((_, old)) => state.bytes -= old.data.len(),
                None => break,
            }
        }
    }

    /// Bytes and images held, hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        use std::sync::atomic::Ordering::Relaxed;
        let state = self.lock();
        CacheStats {
            budget: self.budget,
            bytes: state.bytes,
            images: state.images.len(),
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
        }
    }
}

impl PartialEq for Encoded {
    /// The same files, whichever folder or archive holds them.
    fn eq(&self, other: &Self) -> bool {
        self.paths == other.paths
    }
}

impl Encoded {
    /// Image `i` decoded, in `channels` (1 or 3): from the cache when it holds it.
    pub fn decode(&self, i: usize, channels: usize) -> Result<Arc<Pixels>, DataError> {
        let rel = &self.paths[i];
        let key = (rel.clone(), channels);
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(&key)) {
            return Ok(hit);
        }
        let bytes = self.files.read(rel)?;
        let image = image::load_from_memory(&bytes)
            .map_err(|e| format_error(self.files.display(rel), format!("unreadable image: {e}")))?;
        let pixels =
            Arc::new(if channels == 1 { Pixels::gray(image.to_luma8()) } else { Pixels::rgb(image.to_rgb8()) });
        if let Some(cache) = &self.cache {
            cache.insert(key, pixels.clone());
        }
        Ok(pixels)
    }

    /// The decoded cache, if one is attached.
    pub fn cache(&self) -> Option<&Arc<DecodedCache>> {
        self.cache.as_ref()
    }

    /// The path of image `i`, as errors name it.
    pub fn path(&self, i: usize) -> PathBuf {
        self.files.display(&self.paths[i])
    }
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

    /// The decoded pixels of image `i` (channel planes); `None` for an encoded split.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.shape.iter().product::<usize>();
        match &self.images {
            Images::Decoded(pixels) => Some(&pixels[i * n..(i + 1) * n]),
            Images::Encoded(_) => None,
        }
    }

    /// Image `i` as interleaved pixels, decoding it if the split is encoded.
    pub fn pixels(&self, i: usize) -> Result<Arc<Pixels>, DataError> {
        match &self.images {
            Images::Encoded(e) => e.decode(i, self.shape[0]),
            Images::Decoded(_) => {
                let [c, h, w] = self.shape;
                let planes = self.image(i).expect("decoded");
                let mut data = vec![0u8; c * h * w];
                for ch in 0..c {
                    for (p, &v) in planes[ch * h * w..(ch + 1) * h * w].iter().enumerate() {
                        data[p * c + ch] = v;
                    }
                }
                Ok(Arc::new(Pixels { width: w, height: h, channels: c, data }))
            }
        }
    }

    /// The images `indices` as a split of their own.
    pub fn subset(&self, indices: &[usize]) -> Split {
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        let images = match &self.images {
            Images::Decoded(_) => {
                Images::Decoded(indices.iter().flat_map(|&i| self.image(i).expect("decoded").to_vec()).collect())
            }
            Images::Encoded(e) => Images::Encoded(Arc::new(Encoded {
                files: e.files.clone(),
                paths: indices.iter().map(|&i| e.paths[i].clone()).collect(),
                bad: e.bad,
                cache: e.cache.clone(),
            })),
        };
        Split { images, labels, shape: self.shape }
    }

    /// Per-channel mean and standard deviation of the pixels, scaled to [0, 1]: over every
    /// image when decoded, over up to 1,000 evenly spaced images (centre-cropped to the input)
    /// when encoded.
    pub fn channel_stats(&self) -> Result<(Vec<f32>, Vec<f32>), DataError> {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        let mut count = 0usize;
        let mut add = |img: &[u8]| {
            for ch in 0..c {
                for &p in &img[ch * plane..(ch + 1) * plane] {
                    let v = p as f64 / 255.0;
                    sum[ch] += v;
                    sq[ch] += v * v;
                }
            }
            count += 1;
        };
        match &self.images {
            Images::Decoded(pixels) => pixels.chunks_exact(c * plane).for_each(&mut add),
            Images::Encoded(_) => {
                let step = self.len().div_ceil(1000).max(1);
                let geometry = Geometry::CenterCrop { crop_pct: 0.875 };
                for i in (0..self.len()).step_by(step) {
                    let img = geometry.apply(&*self.pixels(i)?, h, w, None);
                    add(&planes(&img));
                }
            }
        }
        let n = (count * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq.iter().zip(&mean).map(|(q, m)| ((q / n - m * m).max(0.0)).sqrt() as f32).collect();
        Ok((mean.into_iter().map(|m| m as f32).collect(), std))
    }
}

/// Interleaved pixels as channel planes.
fn planes(img: &Pixels) -> Vec<u8> {
    let c = img.channels;
    let mut out = vec![0u8; img.data.len()];
    let plane = img.width * img.height;
    for (p, px) in img.data.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            out[ch * plane + p] = v;
        }
    }
    out
}

/// What to do with an image that cannot be read (a corrupt or truncated file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadImages {
    /// Stop with an error naming the file (the default).
    #[default]
    Fail,
    /// Leave the image out (at load), or train on a black image in its place (a file that
    /// breaks only when the loader decodes it), reporting each.
    Skip,
}

/// A dataset: both splits and the class names.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
    pub classes: Vec<String>,
    /// Which layout was found, for logs: `cifar10-binary`, `cifar100-binary`, `image-folder`
    /// (decoded once), `image-folder (streamed)`.
    pub format: &'static str,
    /// Images left out as unreadable ([`BadImages::Skip`]), with why.
    pub skipped: Vec<String>,
}

impl Dataset {
    /// Keep decoded images of streamed splits for later epochs, up to `budget` bytes of pixels
    /// shared by both splits (0: none); the cache, if the data is streamed. Decoded-once data
    /// needs none.
    pub fn cache_decoded(&mut self, budget: usize) -> Option<Arc<DecodedCache>> {
        let cache = (budget > 0).then(|| Arc::new(DecodedCache::new(budget)));
        let mut attached = false;
        for split in [&mut self.train, &mut self.test] {
            if let Images::Encoded(e) = &mut split.images {
                let mut inner = Encoded { files: e.files.clone(), paths: e.paths.clone(), bad: e.bad, cache: None };
                inner.cache = cache.clone();
                *e = Arc::new(inner);
                attached = true;
            }
        }
        cache.filter(|_| attached)
    }
}

/// The files of a folder or an archive, by relative path with `/` separators.
#[derive(Debug)]
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

    /// A file's bytes: read from disk, or borrowed from the archive in memory (no copy per
    /// decoded image).
    fn read(&self, rel: &str) -> Result<std::borrow::Cow<'_, [u8]>, DataError> {
        match self {
            Files::Disk { root, .. } => {
                let path = root.join(rel);
                std::fs::read(&path).map(std::borrow::Cow::Owned).map_err(|source| DataError::Io { path, source })
            }
            Files::Memory { files, archive } => files
                .get(rel)
                .map(|b| std::borrow::Cow::Borrowed(b.as_slice()))
                .ok_or_else(|| format_error(archive.join(rel), "not in the archive")),
        }
    }

    /// The `(width, height)` in an image file's header, reading no more of the file than the
    /// header (a folder of a million photos is not read whole at load).
    fn dimensions(&self, rel: &str) -> Result<(u32, u32), DataError> {
        let unreadable = |e: image::ImageError| format_error(self.display(rel), format!("unreadable image: {e}"));
        let guessed = |e: std::io::Error| format_error(self.display(rel), format!("unreadable image: {e}"));
        match self {
            Files::Disk { root, .. } => {
                let path = root.join(rel);
                let reader = image::ImageReader::open(&path).map_err(|source| DataError::Io { path, source })?;
                reader.with_guessed_format().map_err(guessed)?.into_dimensions().map_err(unreadable)
            }
            Files::Memory { files, archive } => {
                let bytes = files.get(rel).ok_or_else(|| format_error(archive.join(rel), "not in the archive"))?;
                let reader = image::ImageReader::new(std::io::Cursor::new(bytes.as_slice()));
                reader.with_guessed_format().map_err(guessed)?.into_dimensions().map_err(unreadable)
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

/// Load a dataset from `path` (a folder, `.tar` or `.tar.gz`) for a network taking `shape` =
/// `[C, H, W]`; an unreadable image is an error.
pub fn load(path: &Path, shape: [usize; 3]) -> Result<Dataset, DataError> {
    load_with(path, shape, BadImages::Fail)
}

/// [`load`], with what to do about unreadable images.
pub fn load_with(path: &Path, shape: [usize; 3], bad: BadImages) -> Result<Dataset, DataError> {
    let files = Arc::new(open(path)?);
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
            paths.iter().any(|p| p.strip_prefix(prefix.as_str()).is_some_and(|r| r.starts_with(&format!("{split}/"))))
        };
        let list = |stem: &str| {
            ["csv", "tsv"].iter().map(|e| format!("{prefix}{stem}.{e}")).find(|p| paths.contains(&p.as_str()))
        };
        if let (Some(train), Some(eval)) = (list("train"), list("test").or_else(|| list("val"))) {
            return image_lists(&files, prefix, [train, eval], shape, bad);
        }
        if under("train") && (under("test") || under("val")) {
            let eval = if under("test") { "test" } else { "val" };
            return image_folders(&files, prefix, eval, shape, bad);
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
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
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
                labels.push(label);
                pixels.extend_from_slice(&r[label_bytes..]);
            }
        }
        Ok(Split { images: Images::Decoded(pixels), labels, shape })
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
        skipped: Vec::new(),
    })
}

/// The file extensions image folders hold.
const IMAGE_EXTENSIONS: &[&str] = &[".png", ".jpg", ".jpeg", ".webp"];

fn image_folders(
    files: &Arc<Files>,
    prefix: &str,
    eval: &str,
    shape: [usize; 3],
    bad: BadImages,
) -> Result<Dataset, DataError> {
    let c = shape[0];
    if c != 1 && c != 3 {
        return Err(format_error(files.display(prefix), format!("images have 1 or 3 channels, the network takes {c}")));
    }
    let paths = files.paths();
    let classes_of = |split: &str| -> BTreeMap<String, Vec<String>> {
        let mut classes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let root = format!("{prefix}{split}/");
        for p in &paths {
            if let Some((class, file)) = p.strip_prefix(root.as_str()).and_then(|r| r.split_once('/')) {
                let entry = classes.entry(class.to_string()).or_default();
                let lower = file.to_ascii_lowercase();
                if IMAGE_EXTENSIONS.iter().any(|e| lower.ends_with(e)) {
                    entry.push(p.to_string());
                }
            }
        }
        classes
    };
    let train = classes_of("train");
    let test = classes_of(eval);
    let names: Vec<String> = train.keys().cloned().collect();
    if names != test.keys().cloned().collect::<Vec<_>>() {
        let missing: Vec<&String> = names.iter().filter(|n| !test.contains_key(*n)).collect();
        let extra: Vec<&String> = test.keys().filter(|n| !train.contains_key(*n)).collect();
        return Err(format_error(
            files.display(&format!("{prefix}{eval}")),
            format!(
                "the {eval} classes differ from the train classes: missing from {eval}/ {missing:?}, not in train/ {extra:?}"
            ),
        ));
    }
    let mut entries = Vec::new();
    for (split, classes) in [("train", &train), (eval, &test)] {
        let mut list = Vec::new();
        for (label, (class, images)) in classes.iter().enumerate() {
            if images.is_empty() {
                return Err(format_error(
                    files.display(&format!("{prefix}{split}/{class}")),
                    "empty class folder: no .png/.jpg/.jpeg/.webp images",
                ));
            }
            list.extend(images.iter().map(|p| (p.clone(), label as u16)));
        }
        entries.push(list);
    }
    let [train, test]: [Vec<(String, u16)>; 2] = entries.try_into().expect("two splits");
    let place = |split: usize, label: u16| {
        files.display(&format!("{prefix}{}/{}", ["train", eval][split], names[usize::from(label)]))
    };
    let formats = ("image-folder", "image-folder (streamed)");
    assemble(files, [train, test], names.clone(), shape, bad, &place, formats)
}

/// A dataset from the two splits' `(file, label)` lists: every header read (an unreadable file
/// an error or left out, per `bad`), then decoded once when every image is the input's size, or
/// kept encoded for the loader; `place(split, label)` names a class in errors.
fn assemble(
    files: &Arc<Files>,
    splits: [Vec<(String, u16)>; 2],
    names: Vec<String>,
    shape: [usize; 3],
    bad: BadImages,
    place: &dyn Fn(usize, u16) -> PathBuf,
    (decoded, streamed): (&'static str, &'static str),
) -> Result<Dataset, DataError> {
    let [c, h, w] = shape;
    // Every image's header: its size, and whether it reads at all.
    let mut skipped = Vec::new();
    let mut listed = Vec::new();
    for (split, entries) in splits.into_iter().enumerate() {
        let labels: std::collections::BTreeSet<u16> = entries.iter().map(|(_, l)| *l).collect();
        let sizes = header_sizes(files, &entries);
        let mut kept = Vec::new();
        for ((path, label), size) in entries.into_iter().zip(sizes) {
            match size {
                Ok(size) => kept.push((path, label, size)),
                Err(e) if bad == BadImages::Skip => skipped.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        for label in labels {
            if !kept.iter().any(|(_, l, _)| *l == label) {
                return Err(format_error(place(split, label), "every image of this class is unreadable (skipped)"));
            }
        }
        listed.push(kept);
    }
    let exact = listed.iter().flatten().all(|(_, _, size)| *size == (w as u32, h as u32));
    let mut out = Vec::new();
    for kept in listed {
        let labels = kept.iter().map(|(_, l, _)| *l).collect();
        let images = if exact {
            let mut pixels = Vec::with_capacity(kept.len() * c * h * w);
            for (path, _, _) in &kept {
                decode_into(files, path, shape, &mut pixels)?;
            }
            Images::Decoded(pixels)
        } else {
            Images::Encoded(Arc::new(Encoded {
                files: files.clone(),
                paths: kept.into_iter().map(|(p, _, _)| p).collect(),
                bad,
                cache: None,
            }))
        };
        out.push(Split { images, labels, shape });
    }
    let test = out.pop().expect("two splits");
    let train = out.pop().expect("two splits");
    Ok(Dataset { train, test, classes: names, format: if exact { decoded } else { streamed }, skipped })
}

/// Image lists (`train.csv` + `val.csv` or `test.csv`, or `.tsv`): one `path,label` per line
/// (an optional `path,label` header first), paths relative to the list's folder, labels class
/// indices (classes `0 ..= max`) or names (classes sorted, as folders are).
fn image_lists(
    files: &Arc<Files>,
    prefix: &str,
    lists: [String; 2],
    shape: [usize; 3],
    bad: BadImages,
) -> Result<Dataset, DataError> {
    if shape[0] != 1 && shape[0] != 3 {
        return Err(format_error(
            files.display(&lists[0]),
            format!("images have 1 or 3 channels, the network takes {}", shape[0]),
        ));
    }
    let present: std::collections::HashSet<&str> = files.paths().into_iter().collect();
    let mut rows: Vec<Vec<(String, String)>> = Vec::new();
    for list in &lists {
        let text = String::from_utf8(files.read(list)?.into_owned())
            .map_err(|_| format_error(files.display(list), "not UTF-8 text"))?;
        let sep = if list.ends_with(".tsv") { '\t' } else { ',' };
        let mut split = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || (n == 0 && line.eq_ignore_ascii_case(&format!("path{sep}label"))) {
                continue;
            }
            let Some((path, label)) = line.rsplit_once(sep) else {
                return Err(format_error(
                    files.display(list),
                    format!("line {}: expected path{sep}label, got `{line}`", n + 1),
                ));
            };
            let rel = format!("{prefix}{}", path.trim().trim_start_matches("./"));
            if !present.contains(rel.as_str()) {
                return Err(format_error(
                    files.display(list),
                    format!("line {}: no file {}", n + 1, files.display(&rel).display()),
                ));
            }
            split.push((rel, label.trim().to_string()));
        }
        if split.is_empty() {
            return Err(format_error(files.display(list), "no images listed"));
        }
        rows.push(split);
    }
    let numeric = rows.iter().flatten().all(|(_, l)| l.parse::<u16>().is_ok());
    let names: Vec<String> = if numeric {
        let max = rows.iter().flatten().map(|(_, l)| l.parse::<u16>().expect("numeric")).max().unwrap_or(0);
        (0..=max).map(|c| c.to_string()).collect()
    } else {
        let set: std::collections::BTreeSet<&String> = rows.iter().flatten().map(|(_, l)| l).collect();
        set.into_iter().cloned().collect()
    };
    let label_of = |l: &str| -> u16 {
        if numeric {
            l.parse().expect("numeric")
        } else {
            names.iter().position(|n| n == l).expect("a listed class") as u16
        }
    };
    let train_classes: std::collections::BTreeSet<u16> = rows[0].iter().map(|(_, l)| label_of(l)).collect();
    if let Some((_, l)) = rows[1].iter().find(|(_, l)| !train_classes.contains(&label_of(l))) {
        return Err(format_error(
            files.display(&lists[1]),
            format!("class {l} is not in {}", files.display(&lists[0]).display()),
        ));
    }
    let splits: Vec<Vec<(String, u16)>> =
        rows.iter().map(|r| r.iter().map(|(p, l)| (p.clone(), label_of(l))).collect()).collect();
    let splits: [Vec<(String, u16)>; 2] = splits.try_into().expect("two lists");
    let place = |split: usize, label: u16| {
        PathBuf::from(format!("{} (class {})", files.display(&lists[split]).display(), names[usize::from(label)]))
    };
    assemble(files, splits, names.clone(), shape, bad, &place, ("image-list", "image-list (streamed)"))
}

/// The `(width, height)` in each file's header (threads over the list), or why it cannot be read.
fn header_sizes(files: &Files, entries: &[(String, u16)]) -> Vec<Result<(u32, u32), DataError>> {
    let size = |rel: &str| files.dimensions(rel);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let chunk = entries.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|(p, _)| size(p)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("header reads do not panic")).collect()
    })
}

fn decode_into(files: &Files, rel: &str, shape: [usize; 3], out: &mut Vec<u8>) -> Result<(), DataError> {
    let bytes = files.read(rel)?;
    let image = image::load_from_memory(&bytes)
        .map_err(|e| format_error(files.display(rel), format!("unreadable image: {e}")))?;
    match shape[0] {
        3 => {
            let rgb = image.to_rgb8();
            for ch in 0..3 {
                out.extend(rgb.pixels().map(|p| p.0[ch]));
            }
        }
        _ => out.extend(image.to_luma8().into_raw()),
    }
    Ok(())
}

/// Turns images into normalised `f32` batches, with or without augmentation.
#[derive(Clone, Debug)]
pub struct Augment {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Zero padding before the random crop (4 in the papers); 0 disables cropping. For images
    /// of the input's size.
    pub pad: usize,
    pub flip: bool,
    /// How training images become the input when they are not its size, or always when it is a
    /// random resized crop; evaluation resizes and crops the centre (`Geometry::apply`).
    pub geometry: Geometry,
}

impl Augment {
    /// Normalisation, the CIFAR augmentation, and ImageNet's evaluation geometry for images of
    /// other sizes.
    pub fn new(mean: Vec<f32>, std: Vec<f32>, pad: usize, flip: bool) -> Augment {
        Augment { mean, std, pad, flip, geometry: Geometry::CenterCrop { crop_pct: 0.875 } }
    }

    /// The same with `geometry`.
    pub fn with_geometry(self, geometry: Geometry) -> Augment {
        Augment { geometry, ..self }
    }

    /// Write images `indices` of `split` into `out` (`len × C × H × W`), augmenting with `rng`
    /// when given. An encoded image that cannot be decoded is an error naming it, or, when the
    /// split was loaded with [`BadImages::Skip`], black in the batch and listed in the result.
    pub fn batch(
        &self,
        split: &Split,
        indices: &[usize],
        mut rng: Option<&mut ChaCha8Rng>,
        out: &mut Vec<f32>,
    ) -> Result<Vec<DataError>, DataError> {
        let bad = match &split.images {
            Images::Encoded(e) => e.bad,
            Images::Decoded(_) => BadImages::Fail,
        };
        let [c, h, w] = split.shape;
        out.clear();
        out.resize(indices.len() * c * h * w, 0.0);
        let random_crop = matches!(self.geometry, Geometry::RandomResizedCrop { .. }) && rng.is_some();
        let mut skipped = Vec::new();
        for (slot, &i) in indices.iter().enumerate() {
            let dst = &mut out[slot * c * h * w..(slot + 1) * c * h * w];
            match split.image(i) {
                Some(img) if !random_crop => self.pad_crop_flip(img, [c, h, w], rng.as_deref_mut(), dst),
                _ => {
                    let img = match split.pixels(i) {
                        Ok(img) => img,
                        Err(e) if bad == BadImages::Skip => {
                            self.normalise(&vec![0; c * h * w], c, dst);
                            skipped.push(e);
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let mut img = self.geometry.apply(&img, h, w, rng.as_deref_mut());
                    if let Some(r) = rng.as_deref_mut()
                        && self.flip
                        && r.next_u32() & 1 == 1
                    {
                        img = img.flip();
                    }
                    self.normalise(&planes(&img), c, dst);
                }
            }
        }
        Ok(skipped)
    }

    /// Planes of `c` channels normalised into `dst`.
    fn normalise(&self, planes: &[u8], c: usize, dst: &mut [f32]) {
        let plane = planes.len() / c;
        for ch in 0..c {
            let (m, s) = (self.mean[ch], self.std[ch]);
            for (d, &p) in dst[ch * plane..(ch + 1) * plane].iter_mut().zip(&planes[ch * plane..(ch + 1) * plane]) {
                *d = (p as f32 / 255.0 - m) / s;
            }
        }
    }

    /// The CIFAR augmentation of an image of the input's size (channel planes).
    fn pad_crop_flip(&self, img: &[u8], [c, h, w]: [usize; 3], rng: Option<&mut ChaCha8Rng>, dst: &mut [f32]) {
        let (dy, dx, flip) = match rng {
            Some(r) => {
                let span = 2 * self.pad as u32 + 1;
                let dy = (r.next_u32() % span) as isize - self.pad as isize;
                let dx = (r.next_u32() % span) as isize - self.pad as isize;
                (dy, dx, self.flip && r.next_u32() & 1 == 1)
            }
            None => (0, 0, false),
        };
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

/// splitmix64's finaliser: a well-mixed 64-bit value from `z` (seeds derived from seeds).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64's increment.
pub const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

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
