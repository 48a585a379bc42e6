//! The image geometry of `resnetc_runtime::transform` against torchvision 0.29 / Pillow 13 on
//! the committed fixtures of `tests/fixtures/transforms/` (written by its `make.py`), and the
//! random crop's parameters against torchvision's algorithm.

use resnetc_runtime::data;
use resnetc_runtime::transform::{Crop, Geometry, Pixels, random_resized_crop};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/transforms")
}

fn rgb(name: &str) -> Pixels {
    Pixels::rgb(image::open(fixtures().join(name)).unwrap().to_rgb8())
}

fn gray(name: &str) -> Pixels {
    Pixels::gray(image::open(fixtures().join(name)).unwrap().to_luma8())
}

/// Largest and mean absolute difference in grey levels.
fn difference(got: &Pixels, want: &Pixels) -> (u8, f64) {
    assert_eq!((got.width, got.height, got.channels), (want.width, want.height, want.channels));
    let diffs: Vec<u8> = got.data.iter().zip(&want.data).map(|(a, b)| a.abs_diff(*b)).collect();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    (diffs.iter().copied().max().unwrap_or(0), mean)
}

/// Within one grey level everywhere (Pillow rounds its fixed-point sums; so does the resampler
/// here, at a different precision) and a quarter of a level on average.
fn assert_close(what: &str, got: &Pixels, want: &Pixels) {
    let (max, mean) = difference(got, want);
    eprintln!("{what}: largest difference {max}, mean {mean:.3}");
    assert!(max <= 1 && mean < 0.25, "{what}: largest difference {max}, mean {mean:.3} from torchvision");
}

#[test]
fn resizes_and_crops_match_torchvision() {
    let src = rgb("src.png");
    assert_eq!((src.width, src.height), (97, 75));
    assert_close("Resize(32)", &src.resize_shorter(32), &rgb("resize-shorter-32.png"));
    assert_close("Resize(120) (upscaling)", &src.resize_shorter(120), &rgb("resize-shorter-120.png"));
    assert_close(
        "Resize(32) + CenterCrop(28)",
        &src.resize_shorter(32).center_crop(28, 28),
        &rgb("center-crop-28.png"),
    );
    assert_close("resize to 150×120", &src.resize(150, 120), &rgb("resize-150x120.png"));
    let crop = Crop { top: 10, left: 7, height: 40, width: 60 };
    assert_close("resized_crop(10, 7, 40, 60, 24×24)", &src.crop(crop).resize(24, 24), &rgb("resized-crop.png"));
    assert_close("grayscale Resize(20)", &gray("gray-src.png").resize_shorter(20), &gray("gray-resize-shorter-20.png"));
}

#[test]
fn the_fixtures_can_tell_a_wrong_filter() {
    // A nearest-neighbour resize of the same size is far from torchvision's bilinear one: the
    // comparison above has the power to fail.
    let src = rgb("src.png");
    let nearest = image::imageops::resize(
        &image::RgbImage::from_raw(97, 75, src.data.clone()).unwrap(),
        41,
        32,
        image::imageops::FilterType::Nearest,
    );
    let (max, mean) = difference(&Pixels::rgb(nearest), &rgb("resize-shorter-32.png"));
    assert!(max > 10 && mean > 1.0, "nearest: {max}, {mean}");
    // So is a crop resampled with the pixels around the box (the edges differ).
    let whole = src.resize(24 * 97 / 60, 24 * 75 / 40);
    assert_ne!(whole.crop(Crop { top: 6, left: 3, height: 24, width: 24 }).data, rgb("resized-crop.png").data);
}

#[test]
fn center_crop_rounds_like_torchvision() {
    // 41×32 → 28×28: top round(4 / 2) = 2, left round(13 / 2) = round(6.5) = 6 (half to even).
    let img = Pixels { width: 41, height: 32, channels: 1, data: (0..41 * 32).map(|i| (i % 251) as u8).collect() };
    let crop = img.center_crop(28, 28);
    assert_eq!(crop.data[0], img.data[2 * 41 + 6]);
    let flipped = img.flip();
    assert_eq!(flipped.data[0], img.data[40]);
    assert_eq!(flipped.flip(), img);
}

#[test]
fn random_resized_crop_follows_torchvision() {
    let mut rng = data::rng(7);
    let (w, h) = (500, 375);
    let (mut small, mut aspects, n) = (0, 0.0, 8000);
    for _ in 0..n {
        let c = random_resized_crop(w, h, [0.08, 1.0], [3.0 / 4.0, 4.0 / 3.0], &mut rng);
        assert!(c.top + c.height <= h && c.left + c.width <= w, "{c:?} leaves the image");
        let fraction = (c.width * c.height) as f64 / (w * h) as f64;
        let aspect = c.width as f64 / c.height as f64;
        // Rounding to whole pixels moves the area and aspect a little past the bounds.
        assert!((0.075..=1.0).contains(&fraction), "{c:?}: area fraction {fraction}");
        assert!((0.74..=1.35).contains(&aspect), "{c:?}: aspect {aspect}");
        small += usize::from(fraction < 0.54);
        aspects += aspect;
    }
    // torchvision 0.29's own `RandomResizedCrop.get_params` on a 500×375 image, 40,000 draws:
    // 67.2 % of the crops below 0.54 of the area (large draws that do not fit are drawn again),
    // mean aspect 1.046. Here within 4 standard errors of 8,000 draws.
    let share = small as f64 / n as f64;
    assert!((share - 0.6716).abs() < 0.021, "share of crops below 0.54 of the area: {share}");
    let mean_aspect = aspects / n as f64;
    assert!((mean_aspect - 1.046).abs() < 0.01, "mean aspect {mean_aspect}");
    // Deterministic for a seed.
    let a = random_resized_crop(w, h, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut data::rng(3));
    let b = random_resized_crop(w, h, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut data::rng(3));
    assert_eq!(a, b);
    // Nothing fits (a 100×10 strip, ratio near 1, scale 1): torchvision's central fallback,
    // the widest box of the largest allowed ratio.
    let c = random_resized_crop(100, 10, [1.0, 1.0], [0.9, 1.1], &mut data::rng(1));
    assert_eq!(c, Crop { top: 0, left: 44, height: 10, width: 11 });
}

#[test]
fn geometry_brings_any_size_to_the_input() {
    let src = rgb("src.png");
    let train = Geometry::RandomResizedCrop { scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0] };
    let out = train.apply(&src, 32, 32, Some(&mut data::rng(0)));
    assert_eq!((out.width, out.height, out.channels), (32, 32, 3));
    // Evaluation: resize the shorter side to floor(32 / 0.875) = 36, crop the centre 32×32.
    let eval = Geometry::CenterCrop { crop_pct: 0.875 };
    assert_eq!(eval.apply(&src, 32, 32, None), src.resize_shorter(36).center_crop(32, 32));
    assert_eq!(train.apply(&src, 32, 32, None), eval.apply(&src, 32, 32, None));
    // An image already the input's size is left alone.
    let exact = src.resize(32, 32);
    assert_eq!(eval.apply(&exact, 32, 32, None), exact);
}
