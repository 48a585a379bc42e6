//! Image geometry as torchvision does it, for images of any size: `RandomResizedCrop` (training),
//! `Resize` of the shorter side then `CenterCrop` (evaluation), and the crops and resizes they
//! are made of.
//!
//! Resizing goes through `fast_image_resize`'s convolution resampler with the bilinear filter,
//! the algorithm of Pillow's `Image.resize(..., BILINEAR)` (antialiased when shrinking), which is
//! what torchvision's transforms run on PIL images. Measured against PIL 13 / torchvision 0.29
//! on the fixtures of `tests/fixtures/transforms/`: every output within one grey level
//! (rounding), mean difference below 0.25 (`runtime/tests/transforms.rs`). Crops are taken
//! before resizing, as `torchvision.transforms.functional.resized_crop` does (a resampler
//! reading past the crop box would not match at the edges). Random parameters follow
//! torchvision's algorithm with this crate's generator: the same distribution, not the same
//! draws as `torch.manual_seed`.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

/// A decoded image: `height` rows of `width` pixels of `channels` (1 or 3) interleaved bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Pixels {
    /// From an RGB image.
    pub fn rgb(image: image::RgbImage) -> Pixels {
        let (width, height) = (image.width() as usize, image.height() as usize);
        Pixels { width, height, channels: 3, data: image.into_raw() }
    }

    /// From a grayscale image.
    pub fn gray(image: image::GrayImage) -> Pixels {
        let (width, height) = (image.width() as usize, image.height() as usize);
        Pixels { width, height, channels: 1, data: image.into_raw() }
    }

    /// The pixel rows `top .. top + height`, columns `left .. left + width` (inside the image).
    pub fn crop(&self, c: Crop) -> Pixels {
        let ch = self.channels;
        let mut data = Vec::with_capacity(c.height * c.width * ch);
        for y in c.top..c.top + c.height {
            let row = (y * self.width + c.left) * ch;
            data.extend_from_slice(&self.data[row..row + c.width * ch]);
        }
        Pixels { width: c.width, height: c.height, channels: ch, data }
    }

    /// Resized to `width × height` with Pillow's bilinear convolution (antialiased downscaling).
    pub fn resize(&self, width: usize, height: usize) -> Pixels {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let kind = if self.channels == 1 { PixelType::U8 } else { PixelType::U8x3 };
        let src = ImageRef::new(self.width as u32, self.height as u32, &self.data, kind)
            .expect("the buffer holds width × height pixels");
        let mut dst = Image::new(width as u32, height as u32, kind);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        Resizer::new().resize(&src, &mut dst, &options).expect("same pixel type, non-empty sizes");
        Pixels { width, height, channels: self.channels, data: dst.into_vec() }
    }

    /// torchvision's `Resize(size)` with an integer: the shorter side becomes `size`, the longer
    /// `int(size * long / short)`.
    pub fn resize_shorter(&self, size: usize) -> Pixels {
        let (w, h) = (self.width, self.height);
        if w <= h {
            self.resize(size, (size as f64 * h as f64 / w as f64) as usize)
        } else {
            self.resize((size as f64 * w as f64 / h as f64) as usize, size)
        }
    }

    /// torchvision's `CenterCrop((height, width))` of an image at least that large.
    pub fn center_crop(&self, height: usize, width: usize) -> Pixels {
        let top = ((self.height - height) as f64 / 2.0).round_ties_even() as usize;
        let left = ((self.width - width) as f64 / 2.0).round_ties_even() as usize;
        self.crop(Crop { top, left, height, width })
    }

    /// Mirrored left to right.
    pub fn flip(&self) -> Pixels {
        let ch = self.channels;
        let mut data = Vec::with_capacity(self.data.len());
        for row in self.data.chunks_exact(self.width * ch) {
            for px in row.chunks_exact(ch).rev() {
                data.extend_from_slice(px);
            }
        }
        Pixels { data, ..*self }
    }
}

/// A crop box in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// A uniform draw in `[lo, hi)`.
fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// torchvision's `RandomResizedCrop.get_params`: up to ten draws of an area fraction in `scale`
/// and a log-uniform aspect ratio in `ratio`, the first box that fits placed uniformly; else
/// the largest central box within `ratio`.
pub fn random_resized_crop(
    width: usize,
    height: usize,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut ChaCha8Rng,
) -> Crop {
    let area = (width * height) as f64;
    let (log_lo, log_hi) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * uniform(rng, scale[0], scale[1]);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        let w = (target * aspect).sqrt().round_ties_even() as usize;
        let h = (target / aspect).sqrt().round_ties_even() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = (rng.next_u64() % (height - h + 1) as u64) as usize;
            let left = (rng.next_u64() % (width - w + 1) as u64) as usize;
            return Crop { top, left, height: h, width: w };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio[0] {
        (width, ((width as f64 / ratio[0]).round_ties_even() as usize).max(1))
    } else if in_ratio > ratio[1] {
        (((height as f64 * ratio[1]).round_ties_even() as usize).max(1), height)
    } else {
        (width, height)
    };
    Crop { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
}

/// How an image of any size becomes the network's `height × width` input.
#[derive(Clone, Debug, PartialEq)]
pub enum Geometry {
    /// Training: torchvision's `RandomResizedCrop((height, width), scale, ratio)` (ImageNet:
    /// scale `[0.08, 1]`, ratio `[3/4, 4/3]`).
    RandomResizedCrop { scale: [f64; 2], ratio: [f64; 2] },
    /// `Resize(floor(size / crop_pct))` of the shorter side, then `CenterCrop(size)`, `size` the
    /// input's shorter side (ImageNet's evaluation: crop_pct 0.875, 256 → 224). Images already
    /// the input's size are left as they are.
    CenterCrop { crop_pct: f64 },
}

impl Geometry {
    /// `image` brought to `height × width`; `rng` draws the random crop (training only).
    pub fn apply(&self, image: &Pixels, height: usize, width: usize, rng: Option<&mut ChaCha8Rng>) -> Pixels {
        match (self, rng) {
            (Geometry::RandomResizedCrop { scale, ratio }, Some(rng)) => {
                let crop = random_resized_crop(image.width, image.height, *scale, *ratio, rng);
                image.crop(crop).resize(width, height)
            }
            _ if (image.width, image.height) == (width, height) => image.clone(),
            (Geometry::CenterCrop { crop_pct }, _) => center_crop_pct(image, height, width, *crop_pct),
            // Evaluating a network trained with random crops: ImageNet's 0.875.
            (Geometry::RandomResizedCrop { .. }, None) => center_crop_pct(image, height, width, 0.875),
        }
    }
}

fn center_crop_pct(image: &Pixels, height: usize, width: usize, crop_pct: f64) -> Pixels {
    let size = height.max(width);
    let resized = image.resize_shorter(((size as f64 / crop_pct).floor() as usize).max(size));
    resized.center_crop(height, width)
}
