//! Dataset loading over fixtures built here in both CIFAR formats and as image folders.

use resnetc_runtime::data::{Augment, DataError, load, rng, shuffled};
use std::path::{Path, PathBuf};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resnetc-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One CIFAR record: label byte(s), then 3072 pixels whose value encodes (image id, channel).
fn record(labels: &[u8], id: u8) -> Vec<u8> {
    let mut r = labels.to_vec();
    for ch in 0..3u8 {
        r.extend(std::iter::repeat_n(id.wrapping_mul(3).wrapping_add(ch), 1024));
    }
    r
}

fn cifar10(dir: &Path, per_batch: u8) {
    for b in 1..=5u8 {
        let bytes: Vec<u8> = (0..per_batch).flat_map(|i| record(&[(b + i) % 10], b * 10 + i)).collect();
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    let test: Vec<u8> = (0..per_batch).flat_map(|i| record(&[i % 10], 200 + i)).collect();
    std::fs::write(dir.join("test_batch.bin"), test).unwrap();
}

fn message(e: DataError) -> String {
    e.to_string()
}

#[test]
fn cifar10_binary_loads_every_record() {
    let dir = temp("c10");
    cifar10(&dir, 3);
    let ds = load(&dir, [3, 32, 32]).unwrap();
    assert_eq!(ds.format, "cifar10-binary");
    assert_eq!(ds.train.len(), 15);
    assert_eq!(ds.test.len(), 3);
    assert_eq!(ds.classes.len(), 10);
    assert_eq!(ds.train.labels[0], 1, "first record of data_batch_1");
    let img = ds.train.image(4).unwrap(); // data_batch_2, record 1: id 21
    assert_eq!((img[0], img[1024], img[2048]), (63, 64, 65), "R, G, B planes in order");
    assert_eq!(ds.train.labels[4], 3);
}

#[test]
fn cifar10_defects_name_the_file() {
    let dir = temp("c10-bad");
    cifar10(&dir, 2);
    let mut bytes = std::fs::read(dir.join("data_batch_2.bin")).unwrap();
    bytes.pop();
    std::fs::write(dir.join("data_batch_2.bin"), &bytes).unwrap();
    let e = message(load(&dir, [3, 32, 32]).unwrap_err());
    assert!(e.contains("data_batch_2.bin") && e.contains("truncated"), "{e}");

    cifar10(&dir, 2);
    std::fs::write(dir.join("test_batch.bin"), record(&[12], 0)).unwrap();
    let e = message(load(&dir, [3, 32, 32]).unwrap_err());
    assert!(e.contains("test_batch.bin") && e.contains("label 12 is out of range"), "{e}");

    cifar10(&dir, 2);
    std::fs::remove_file(dir.join("data_batch_4.bin")).unwrap();
    let e = message(load(&dir, [3, 32, 32]).unwrap_err());
    assert!(e.contains("data_batch_4.bin") && e.contains("missing"), "{e}");

    cifar10(&dir, 2);
    let e = message(load(&dir, [3, 64, 64]).unwrap_err());
    assert!(e.contains("3×32×32"), "{e}");
}

#[test]
fn cifar100_binary_uses_fine_labels() {
    let dir = temp("c100").join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("train.bin"), [record(&[3, 77], 1), record(&[19, 99], 2)].concat()).unwrap();
    std::fs::write(dir.join("test.bin"), record(&[0, 5], 3)).unwrap();
    let ds = load(dir.parent().unwrap(), [3, 32, 32]).unwrap();
    assert_eq!(ds.format, "cifar100-binary");
    assert_eq!(ds.train.labels, vec![77, 99]);
    assert_eq!(ds.test.labels, vec![5]);
    std::fs::write(dir.join("test.bin"), record(&[0, 100], 3)).unwrap();
    assert!(message(load(&dir, [3, 32, 32]).unwrap_err()).contains("label 100 is out of range 0..100"));
}

fn png(path: &Path, w: u32, h: u32, gray: bool, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if gray {
        image::GrayImage::from_pixel(w, h, image::Luma([value])).save(path).unwrap();
    } else {
        image::RgbImage::from_pixel(w, h, image::Rgb([value, value / 2, 255 - value])).save(path).unwrap();
    }
}

fn folders(root: &Path) {
    png(&root.join("train/cat/1.png"), 8, 8, false, 10);
    png(&root.join("train/cat/2.png"), 8, 8, true, 20);
    png(&root.join("train/dog/1.png"), 8, 8, false, 30);
    png(&root.join("test/cat/1.png"), 8, 8, false, 40);
    png(&root.join("test/dog/1.png"), 8, 8, false, 50);
}

#[test]
fn image_folders_load_with_sorted_classes() {
    let dir = temp("folders");
    folders(&dir);
    let ds = load(&dir, [3, 8, 8]).unwrap();
    assert_eq!(ds.format, "image-folder");
    assert_eq!(ds.classes, vec!["cat", "dog"]);
    assert_eq!(ds.train.labels, vec![0, 0, 1]);
    assert_eq!(ds.test.labels, vec![0, 1]);
    let rgb = ds.train.image(0).unwrap();
    assert_eq!((rgb[0], rgb[64], rgb[128]), (10, 5, 245));
    let gray = ds.train.image(1).unwrap();
    assert_eq!((gray[0], gray[64], gray[128]), (20, 20, 20), "grayscale becomes three equal channels");
}

#[test]
fn image_folder_defects_name_the_file() {
    let dir = temp("folders-bad");
    folders(&dir);
    std::fs::write(dir.join("train/dog/2.png"), b"not a png").unwrap();
    let e = message(load(&dir, [3, 8, 8]).unwrap_err());
    assert!(e.contains("train/dog/2.png") && e.contains("unreadable"), "{e}");

    std::fs::remove_file(dir.join("train/dog/2.png")).unwrap();
    std::fs::create_dir_all(dir.join("train/emu")).unwrap();
    std::fs::create_dir_all(dir.join("test/emu")).unwrap();
    std::fs::write(dir.join("train/emu/notes.txt"), b"no images").unwrap();
    std::fs::write(dir.join("test/emu/notes.txt"), b"no images").unwrap();
    let e = message(load(&dir, [3, 8, 8]).unwrap_err());
    assert!(e.contains("train/emu") && e.contains("empty class folder"), "{e}");

    std::fs::remove_dir_all(dir.join("test/emu")).unwrap();
    let e = message(load(&dir, [3, 8, 8]).unwrap_err());
    assert!(e.contains("differ") && e.contains("missing from test/ [\"emu\"]"), "{e}");

    let e = message(load(&temp("nothing"), [3, 8, 8]).unwrap_err());
    assert!(e.contains("no CIFAR binary files"), "{e}");
}

#[test]
fn archives_load_like_folders() {
    let dir = temp("tar");
    let tree = dir.join("tree");
    folders(&tree.join("cifar-mini"));
    for (name, gz) in [("mini.tar", false), ("mini.tar.gz", true)] {
        let file = std::fs::File::create(dir.join(name)).unwrap();
        let writer: Box<dyn std::io::Write> = if gz {
            Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()))
        } else {
            Box::new(file)
        };
        let mut builder = tar::Builder::new(writer);
        builder.append_dir_all(".", &tree).unwrap();
        builder.into_inner().unwrap().flush().unwrap();
        let ds = load(&dir.join(name), [3, 8, 8]).unwrap();
        assert_eq!(ds.classes, vec!["cat", "dog"], "{name}");
        assert_eq!(ds.train.len(), 3, "{name}");
        assert_eq!(ds, load(&tree, [3, 8, 8]).unwrap(), "{name}: same as the folder");
    }
    std::fs::write(dir.join("broken.tar.gz"), b"\x1f\x8b\x08garbage").unwrap();
    let e = message(load(&dir.join("broken.tar.gz"), [3, 8, 8]).unwrap_err());
    assert!(e.contains("broken.tar.gz") && e.contains("corrupt archive"), "{e}");
}

use std::io::Write as _;

#[test]
fn augmentation_normalises_crops_flips_deterministically() {
    let dir = temp("aug");
    png(&dir.join("train/a/1.png"), 8, 8, false, 100);
    png(&dir.join("test/a/1.png"), 8, 8, false, 100);
    let ds = load(&dir, [3, 8, 8]).unwrap();
    let (mean, std) = ds.train.channel_stats().unwrap();
    assert!((mean[0] - 100.0 / 255.0).abs() < 1e-6 && std[0].abs() < 1e-6);
    let aug = Augment::new(vec![0.5; 3], vec![0.25; 3], 4, true);
    let mut plain = Vec::new();
    aug.batch(&ds.train, &[0], None, &mut plain).unwrap();
    assert_eq!(plain.len(), 3 * 64);
    assert!((plain[0] - (100.0 / 255.0 - 0.5) / 0.25).abs() < 1e-6, "no rng: normalised, not moved");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut zeros_seen = false;
    for seed in 0..20 {
        aug.batch(&ds.train, &[0, 0], Some(&mut rng(seed)), &mut a).unwrap();
        aug.batch(&ds.train, &[0, 0], Some(&mut rng(seed)), &mut b).unwrap();
        assert_eq!(a, b, "same seed, same batch");
        zeros_seen |= a.iter().any(|v| (v - (0.0 - 0.5) / 0.25).abs() < 1e-6);
    }
    assert!(zeros_seen, "crops reach into the zero padding");
    let p = shuffled(100, &mut rng(7));
    let mut sorted = p.clone();
    sorted.sort();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    assert_eq!(p, shuffled(100, &mut rng(7)));
    assert_ne!(p, shuffled(100, &mut rng(8)));
}

#[test]
fn flips_mirror_columns() {
    let dir = temp("flip");
    let mut img = image::RgbImage::new(4, 4);
    for (x, _, p) in img.enumerate_pixels_mut() {
        *p = image::Rgb([x as u8 * 60, 0, 0]);
    }
    std::fs::create_dir_all(dir.join("train/a")).unwrap();
    std::fs::create_dir_all(dir.join("test/a")).unwrap();
    img.save(dir.join("train/a/1.png")).unwrap();
    img.save(dir.join("test/a/1.png")).unwrap();
    let ds = load(&dir, [3, 4, 4]).unwrap();
    let aug = Augment::new(vec![0.0; 3], vec![1.0; 3], 0, true);
    let mut out = Vec::new();
    let mut flipped = false;
    for seed in 0..16 {
        aug.batch(&ds.train, &[0], Some(&mut rng(seed)), &mut out).unwrap();
        let row: Vec<u8> = out[..4].iter().map(|v| (v * 255.0).round() as u8).collect();
        assert!(row == [0, 60, 120, 180] || row == [180, 120, 60, 0], "{row:?}");
        flipped |= row[0] == 180;
    }
    assert!(flipped, "some seeds flip");
}

fn jpeg(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb)).save(path).unwrap();
}

fn fixture_image(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/images").join(name)
}

/// A folder of mixed sizes and formats (PNG, JPEG, WebP, CMYK JPEG, grayscale) with a `val/`
/// split: streamed, every image decoded on demand into the input's size.
fn mixed(root: &Path) {
    png(&root.join("train/red/a.png"), 40, 30, false, 200);
    jpeg(&root.join("train/red/b.jpg"), 33, 50, [220, 10, 10]);
    std::fs::copy(fixture_image("cmyk.jpg"), root.join("train/red/c.jpg")).unwrap();
    std::fs::create_dir_all(root.join("train/green")).unwrap();
    std::fs::copy(fixture_image("green.webp"), root.join("train/green/a.webp")).unwrap();
    png(&root.join("train/green/b.png"), 64, 64, true, 90);
    jpeg(&root.join("val/red/a.jpeg"), 100, 20, [230, 20, 20]);
    jpeg(&root.join("val/green/a.jpg"), 16, 16, [20, 230, 20]);
}

#[test]
fn mixed_sizes_and_formats_stream() {
    let dir = temp("mixed");
    mixed(&dir);
    let ds = load(&dir, [3, 16, 16]).unwrap();
    assert_eq!(ds.format, "image-folder (streamed)");
    assert_eq!(ds.classes, vec!["green", "red"]);
    assert_eq!((ds.train.len(), ds.test.len()), (5, 2), "val/ is the evaluation split");
    assert!(ds.train.image(0).is_none(), "nothing decoded at load");
    // Every format decodes; CMYK and grayscale become RGB.
    let px = |split: &resnetc_runtime::data::Split, i: usize| {
        let p = split.pixels(i).unwrap();
        (p.width, p.height, p.data[..3].to_vec())
    };
    assert_eq!(px(&ds.train, 0), (20, 10, vec![10, 200, 30]), "lossless WebP");
    assert_eq!(px(&ds.train, 1), (64, 64, vec![90, 90, 90]), "grayscale PNG as three equal channels");
    let (w, h, cmyk) = px(&ds.train, 4);
    assert_eq!((w, h), (16, 12));
    assert!(cmyk[0] > 240 && cmyk[1] < 15 && cmyk[2] < 15, "CMYK red as RGB red, got {cmyk:?}");
    // Evaluation batches: resized and centre-cropped to 16×16; a solid colour stays that colour.
    let aug = Augment::new(vec![0.0; 3], vec![1.0; 3], 0, false);
    let mut out = Vec::new();
    let skipped = aug.batch(&ds.test, &[0, 1], None, &mut out).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(out.len(), 2 * 3 * 16 * 16);
    let green = &out[..3 * 256]; // classes sorted: green is label 0
    assert!((green[0] - 20.0 / 255.0).abs() < 0.02 && (green[256] - 230.0 / 255.0).abs() < 0.02, "{:?}", &green[..2]);
    // Training batches with a random resized crop are deterministic for a seed.
    let train = aug.clone().with_geometry(resnetc_runtime::transform::Geometry::RandomResizedCrop {
        scale: [0.08, 1.0],
        ratio: [0.75, 4.0 / 3.0],
    });
    let (mut a, mut b) = (Vec::new(), Vec::new());
    train.batch(&ds.train, &[0, 1, 2, 3, 4], Some(&mut rng(5)), &mut a).unwrap();
    train.batch(&ds.train, &[0, 1, 2, 3, 4], Some(&mut rng(5)), &mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 5 * 3 * 256);
    // Normalisation measured on the (sampled, centre-cropped) training images.
    let (mean, std) = ds.train.channel_stats().unwrap();
    assert!(mean.iter().all(|m| (0.0..=1.0).contains(m)) && std.iter().all(|s| *s >= 0.0), "{mean:?} {std:?}");
}

#[test]
fn unreadable_images_fail_or_are_skipped() {
    use resnetc_runtime::data::{BadImages, load_with};
    let dir = temp("bad-images");
    mixed(&dir);
    // Garbage: the header does not read; found at load.
    std::fs::write(dir.join("train/red/z.png"), b"not a png").unwrap();
    let e = message(load(&dir, [3, 16, 16]).unwrap_err());
    assert!(e.contains("train/red/z.png") && e.contains("unreadable image"), "{e}");
    let ds = load_with(&dir, [3, 16, 16], BadImages::Skip).unwrap();
    assert_eq!(ds.train.len(), 5, "left out");
    assert_eq!(ds.skipped.len(), 1);
    assert!(ds.skipped[0].contains("train/red/z.png"), "{:?}", ds.skipped);
    std::fs::remove_file(dir.join("train/red/z.png")).unwrap();

    // Truncated: the header reads, the pixels do not; found when a batch decodes it.
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(48, 48, image::Rgb([200, 0, 0]))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(dir.join("train/red/t.png"), &bytes[..bytes.len() / 2]).unwrap();
    let aug = Augment::new(vec![0.0; 3], vec![1.0; 3], 0, false);
    let mut out = Vec::new();
    let ds = load(&dir, [3, 16, 16]).unwrap();
    let t = (0..ds.train.len()).find(|&i| ds.train.pixels(i).is_err()).expect("the truncated file");
    let e = message(aug.batch(&ds.train, &[t], None, &mut out).unwrap_err());
    assert!(e.contains("train/red/t.png") && e.contains("unreadable image"), "{e}");
    let ds = load_with(&dir, [3, 16, 16], BadImages::Skip).unwrap();
    let skipped = aug.batch(&ds.train, &[0, t], None, &mut out).unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(out[3 * 256..].iter().all(|&v| v == 0.0), "a black image in its place");

    // Every image of a class unreadable: an error even when skipping.
    std::fs::write(dir.join("val/green/a.jpg"), b"garbage").unwrap();
    let e = message(load_with(&dir, [3, 16, 16], BadImages::Skip).unwrap_err());
    assert!(e.contains("val/green") && e.contains("every image of this class is unreadable"), "{e}");
}

#[test]
fn the_loader_benchmark_decodes_every_training_image() {
    let dir = temp("loader-bench");
    mixed(&dir);
    let ds = load(&dir, [3, 16, 16]).unwrap();
    let aug = Augment::new(vec![0.5; 3], vec![0.25; 3], 0, true);
    let r = resnetc_runtime::bench::loader(&ds.train, &aug, 2, 2, 0).unwrap();
    assert_eq!((r.images, r.workers, r.skipped), (5, 2, 0));
    assert!(r.images_per_sec > 0.0);
}

#[test]
fn image_lists_name_their_files_and_labels() {
    let dir = temp("lists");
    mixed(&dir);
    // Names as labels, a header, paths relative to the list's folder.
    std::fs::write(
        dir.join("train.csv"),
        "path,label\ntrain/red/a.png,red\ntrain/green/b.png,green\n./train/red/c.jpg,red\n",
    )
    .unwrap();
    std::fs::write(dir.join("val.csv"), "val/green/a.jpg,green\nval/red/a.jpeg,red\n").unwrap();
    let ds = load(&dir, [3, 16, 16]).unwrap();
    assert_eq!(ds.format, "image-list (streamed)");
    assert_eq!(ds.classes, vec!["green", "red"]);
    assert_eq!(ds.train.labels, vec![1, 0, 1]);
    assert_eq!(ds.test.labels, vec![0, 1]);
    assert_eq!(ds.train.pixels(1).unwrap().data[..3], [90, 90, 90], "train/green/b.png");
    // Indices as labels (TSV).
    std::fs::remove_file(dir.join("train.csv")).unwrap();
    std::fs::remove_file(dir.join("val.csv")).unwrap();
    std::fs::write(dir.join("train.tsv"), "train/red/a.png\t2\ntrain/green/a.webp\t0\n").unwrap();
    std::fs::write(dir.join("test.tsv"), "val/red/a.jpeg\t2\n").unwrap();
    let ds = load(&dir, [3, 16, 16]).unwrap();
    assert_eq!(ds.classes, vec!["0", "1", "2"]);
    assert_eq!(ds.train.labels, vec![2, 0]);
    // Defects name the list and the line.
    std::fs::write(dir.join("test.tsv"), "val/red/missing.jpg\t2\n").unwrap();
    let e = message(load(&dir, [3, 16, 16]).unwrap_err());
    assert!(e.contains("test.tsv") && e.contains("line 1") && e.contains("missing.jpg"), "{e}");
    std::fs::write(dir.join("test.tsv"), "val/red/a.jpeg 2\n").unwrap();
    let e = message(load(&dir, [3, 16, 16]).unwrap_err());
    assert!(e.contains("test.tsv") && e.contains("line 1: expected path\tlabel"), "{e}");
    std::fs::write(dir.join("test.tsv"), "val/red/a.jpeg\t1\n").unwrap();
    let e = message(load(&dir, [3, 16, 16]).unwrap_err());
    assert!(e.contains("class 1 is not in") && e.contains("train.tsv"), "{e}");
}

#[test]
fn the_decoded_cache_keeps_what_fits_and_serves_the_same_pixels() {
    let dir = temp("cache");
    mixed(&dir);
    let uncached = load(&dir, [3, 16, 16]).unwrap();
    let mut ds = load(&dir, [3, 16, 16]).unwrap();
    // The largest training image is 64×64×3 = 12,288 bytes; 20,000 hold one or two of them.
    let small = ds.cache_decoded(20_000).expect("a streamed folder takes a cache");
    let aug = Augment::new(vec![0.5; 3], vec![0.25; 3], 0, false);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        aug.batch(&ds.train, &[0, 1, 2, 3, 4], None, &mut a).unwrap();
        aug.batch(&uncached.train, &[0, 1, 2, 3, 4], None, &mut b).unwrap();
        assert_eq!(a, b, "cached pixels are the decoded pixels");
        let s = small.stats();
        assert!(s.bytes <= 20_000 && s.bytes > 0, "{s:?}");
    }
    let s = small.stats();
    assert_eq!(s.hits + s.misses, 15);
    assert!(s.misses > 5, "a cache smaller than the images decodes again: {s:?}");

    let mut ds = load(&dir, [3, 16, 16]).unwrap();
    let large = ds.cache_decoded(1 << 20).unwrap();
    let subset = ds.train.subset(&[4, 0]);
    for _ in 0..2 {
        aug.batch(&ds.train, &[0, 1, 2, 3, 4], None, &mut a).unwrap();
        aug.batch(&ds.test, &[0, 1], None, &mut a).unwrap();
    }
    aug.batch(&subset, &[0, 1], None, &mut a).unwrap();
    let s = large.stats();
    assert_eq!((s.misses, s.hits, s.images), (7, 9, 7), "each image decoded once, subsets share the cache: {s:?}");
    // Decoded-once data takes no cache.
    let cifar = temp("cache-cifar");
    cifar10(&cifar, 2);
    assert!(load(&cifar, [3, 32, 32]).unwrap().cache_decoded(1 << 20).is_none());
}
