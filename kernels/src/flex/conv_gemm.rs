//! 2D convolution as per-image im2col + GEMM on NCHW data: the forward pass,
//! the input gradient and the weight gradient.
//!
//! - forward: `y_g = W_g · im2col(x_g)` straight into the NCHW output, images in parallel;
//!   for stride 1 with the kernel's rows folded into `kH` accumulating GEMMs over a matrix of
//!   only the `kW` horizontal shifts (see [`RowShift`]);
//! - input gradient: `dx_g = col2im(W_gᵀ · dY_g)`, images in parallel (Burn's default runs a
//!   transposed convolution, a scalar loop in flex);
//! - weight gradient: see below.
//!
//! Weight gradient: Burn's default computes `dW` as a convolution of the batch-swapped input with the
//! batch-swapped output gradient as its kernel: a GEMM whose inner dimension is N·H·W and whose
//! output is only kH·kW wide, which runs far below the GEMM's speed (15–64 GFLOP/s against
//! 61–151 for the same FLOPs as one plain GEMM, CIFAR ResNet shapes, batch 128). Here, per image
//! and group, `dW_g += dY_g · im2col(x_g)ᵀ` — M = C_out/groups, N = C_in/groups·kH·kW,
//! K = H_out·W_out — summed transposed (so `gemm` packs `dY`, not the im2col matrix), with the
//! images split across threads, each accumulating its own partial `dWᵀ`, summed and transposed
//! at the end. For stride 1 the same in `kH` slices over the row-shift matrix, with `dY`
//! transposed once per image so that no GEMM packs it. Any stride, padding (symmetric or not),
//! dilation and group count.
//!
//! f32 and f64 only; `crate::conv2d` leaves other dtypes to Burn's own convolution.

use burn::tensor::DType;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, Shape};
use core::mem::{ManuallyDrop, MaybeUninit};

use burn::backend::flex::{FlexTensor, Layout};

/// Element types the kernel runs on.
pub trait GradFloat:
    bytemuck::Pod + Copy + Send + Sync + burn::tensor::Element + core::ops::Add<Output = Self> + 'static
{
    const ZERO: Self;
    const ONE: Self;
}

impl GradFloat for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl GradFloat for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// The geometry of one convolution.
#[derive(Clone, Copy)]
struct Geometry {
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    c_per_group: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Geometry {
    /// Rows of one group's im2col matrix: (input channel, kernel row, kernel column).
    fn k(&self) -> usize {
        self.c_per_group * self.kh * self.kw
    }
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Row stride of the im2col matrix: `p`, plus one cache line where `p` is a multiple of 1 KiB
    /// (CIFAR's 32×32 and 16×16 maps). `gemm` reads the matrix in place, one element of each of
    /// up to `k` rows per step; rows a multiple of 4 KiB apart all fall in the same L1 sets and
    /// evict each other.
    fn ps(&self) -> usize {
        let p = self.p();
        if p % 256 == 0 { p + 16 } else { p }
    }
}

/// Fill `col` (`k × p`, row-major) with group `g`'s patches of image `x` (`[C_in, H, W]`).
fn im2col<T: GradFloat>(x: &[T], geo: &Geometry, g: usize, col: &mut [T]) {
    let (p, ps) = (geo.p(), geo.ps());
    let [sh, sw] = geo.stride;
    let [ph, pw] = geo.pad;
    let [dh, dw] = geo.dilation;
    for ci in 0..geo.c_per_group {
        let plane = &x[(g * geo.c_per_group + ci) * geo.h * geo.w..][..geo.h * geo.w];
        for ki in 0..geo.kh {
            for kj in 0..geo.kw {
                let row = &mut col[((ci * geo.kh + ki) * geo.kw + kj) * ps..][..p];
                if sh == 1 && sw == 1 && geo.oh == geo.h && geo.ow == geo.w {
                    let dy = (ki * dh) as isize - ph as isize;
                    let dx = (kj * dw) as isize - pw as isize;
                    shifted_plane(plane, geo.h, geo.w, dy, dx, row);
                    continue;
                }
                for oy in 0..geo.oh {
                    let out = &mut row[oy * geo.ow..][..geo.ow];
                    let iy = (oy * sh + ki * dh) as isize - ph as isize;
                    if iy < 0 || iy >= geo.h as isize {
                        out.fill(T::ZERO);
                        continue;
                    }
                    let src = &plane[iy as usize * geo.w..][..geo.w];
                    let x0 = (kj * dw) as isize - pw as isize;
                    if sw == 1 {
                        // Contiguous: zeros, one copied run, zeros.
                        let first = (-x0).clamp(0, geo.ow as isize) as usize;
                        let last = ((geo.w as isize - x0).clamp(0, geo.ow as isize) as usize).max(first);
                        out[..first].fill(T::ZERO);
                        let start = (first as isize + x0) as usize;
                        out[first..last].copy_from_slice(&src[start..start + (last - first)]);
                        out[last..].fill(T::ZERO);
                    } else {
                        for (ox, o) in out.iter_mut().enumerate() {
                            let ix = x0 + (ox * sw) as isize;
                            *o = if ix >= 0 && ix < geo.w as isize { src[ix as usize] } else { T::ZERO };
                        }
                    }
                }
            }
        }
    }
}

/// One im2col row of a stride-1 "same" convolution: `out[y][x] = plane[y + dy][x + dx]`, zero
/// outside the plane. The whole shifted plane is one contiguous copy; only the columns that
/// wrapped around a row edge and the rows past the top or bottom are zeroed afterwards, instead
/// of a copy and two fills per output row (which cost more in calls than in bytes on 8–32-wide
/// CIFAR feature maps).
fn shifted_plane<T: GradFloat>(plane: &[T], h: usize, w: usize, dy: isize, dx: isize, out: &mut [T]) {
    let (hi, wi) = (h as isize, w as isize);
    if dy.abs() >= hi || dx.abs() >= wi {
        out.fill(T::ZERO);
        return;
    }
    // Output rows y0..y1 read input rows inside the plane.
    let y0 = (-dy).max(0) as usize;
    let y1 = (hi - dy).min(hi) as usize;
    out[..y0 * w].fill(T::ZERO);
    out[y1 * w..].fill(T::ZERO);
    let offset = dy * wi + dx;
    let lo = ((y0 * w) as isize).max(-offset) as usize;
    let hi_end = ((y1 * w) as isize).min(hi * wi - offset) as usize;
    out[y0 * w..lo].fill(T::ZERO);
    out[hi_end..y1 * w].fill(T::ZERO);
    let src = (lo as isize + offset) as usize;
    out[lo..hi_end].copy_from_slice(&plane[src..src + (hi_end - lo)]);
    // Columns whose source lies left or right of the plane picked up the neighbouring row.
    let (c0, c1) = if dx < 0 { (0, (-dx) as usize) } else { (w - dx as usize, w) };
    for y in y0..y1 {
        for v in &mut out[y * w + c0..y * w + c1] {
            *v = T::ZERO;
        }
    }
}

/// Stride-1 convolutions: im2col over the kernel's columns only.
///
/// For stride 1 the patch matrix of kernel row `i` is the patch matrix of kernel row 0 moved
/// down by `i·dh` image rows. So only the `kW` horizontal shifts of each input plane are
/// materialised, each with the vertical padding rows included (`hp = H + pad_top + pad_bottom`
/// rows of `ow`), and kernel row `i` reads that matrix `i·dh·ow` elements further on, in place.
/// The convolution is `kH` GEMMs with `K = C_in/groups · kW` accumulating into the output (and
/// the weight gradient `kH` GEMMs into `kH` slices of it): a third of im2col's copying for 3×3
/// kernels.
#[derive(Clone, Copy)]
struct RowShift {
    /// Rows of the materialised matrix (`C_in/groups · kW`) and their stride (`hp · ow`).
    rows: usize,
    stride: usize,
}

impl Geometry {
    fn row_shift(&self, pad_end: [usize; 2]) -> Option<RowShift> {
        (self.stride == [1, 1]).then(|| RowShift {
            rows: self.c_per_group * self.kw,
            stride: (self.h + self.pad[0] + pad_end[0]) * self.ow,
        })
    }
}

/// Fill `col` (`rows × stride`) with group `g`'s horizontally shifted, vertically padded planes:
/// `col[(ci, j)][r·ow + ox] = x[ci][r - pad_top][ox + j·dw - pad_left]`, zero outside the image.
/// The padding rows are left as they are: the caller's buffer starts zeroed and this function
/// never writes them.
fn row_shifted<T: GradFloat>(x: &[T], geo: &Geometry, rs: RowShift, g: usize, col: &mut [T]) {
    let ow = geo.ow;
    let pw = geo.pad[1] as isize;
    for ci in 0..geo.c_per_group {
        let plane = &x[(g * geo.c_per_group + ci) * geo.h * geo.w..][..geo.h * geo.w];
        for kj in 0..geo.kw {
            let dx = (kj * geo.dilation[1]) as isize - pw;
            let out = &mut col[(ci * geo.kw + kj) * rs.stride + geo.pad[0] * ow..][..geo.h * ow];
            if ow == geo.w {
                shifted_plane(plane, geo.h, geo.w, 0, dx, out);
                continue;
            }
            for (src, row) in plane.chunks_exact(geo.w).zip(out.chunks_exact_mut(ow)) {
                for (ox, o) in row.iter_mut().enumerate() {
                    let ix = ox as isize + dx;
                    *o = if ix >= 0 && ix < geo.w as isize { src[ix as usize] } else { T::ZERO };
                }
            }
        }
    }
}

/// The weight rearranged for [`RowShift`]: `[kH, C_out, C_in/groups · kW]`, row `i` holding
/// `W[co, ci, i, j]` at `(ci, j)`.
fn weight_by_kernel_row<T: GradFloat>(ws: &[T], geo: &Geometry) -> Vec<T> {
    let (kh, kw, cg) = (geo.kh, geo.kw, geo.c_per_group);
    let mut out = vec![T::ZERO; ws.len()];
    for i in 0..kh {
        for co in 0..geo.c_out {
            for ci in 0..cg {
                for j in 0..kw {
                    out[((i * geo.c_out + co) * cg + ci) * kw + j] = ws[((co * cg + ci) * kh + i) * kw + j];
                }
            }
        }
    }
    out
}

fn forward_row_shift<T: GradFloat>(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: Option<&FlexTensor>,
    geo: Geometry,
    rs: RowShift,
) -> Vec<T> {
    let xs = elems::<T>(x);
    let wr = weight_by_kernel_row(elems::<T>(w), &geo);
    let bs = bias.map(|b| elems::<T>(b));
    let n = x.layout().shape()[0];
    let p = geo.p();
    let co_g = geo.c_out / geo.groups;
    let mut out = uninit(n * geo.c_out * p);
    per_image(&mut out, geo.c_out * p, rs.rows * rs.stride, |b, y, col| {
        let x = &xs[b * geo.c_in * geo.h * geo.w..][..geo.c_in * geo.h * geo.w];
        let y_ptr = y.as_mut_ptr() as *mut T;
        for g in 0..geo.groups {
            row_shifted(x, &geo, rs, g, col);
            for i in 0..geo.kh {
                // y[co, q] (+)= Σ_(ci,j) W[co, ci, i, j] · col[(ci, j), q + i·dh·ow]
                unsafe {
                    gemm::gemm(
                        co_g,
                        p,
                        rs.rows,
                        y_ptr.add(g * co_g * p),
                        1,
                        p as isize,
                        i > 0,
                        wr[(i * geo.c_out + g * co_g) * rs.rows..].as_ptr(),
                        1,
                        rs.rows as isize,
                        col.as_ptr().add(i * geo.dilation[0] * geo.ow),
                        1,
                        rs.stride as isize,
                        T::ONE,
                        T::ONE,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        }
        // SAFETY: the first kernel row's GEMM (`read_dst = false`) wrote every output of each group.
        let y: &mut [T] = unsafe { std::slice::from_raw_parts_mut(y_ptr, y.len()) };
        add_bias(y, bs, p);
    });
    // SAFETY: every image's chunk was written above.
    unsafe { assume_init(out) }
}

/// Image `b`'s contribution to the weight gradient, kept as `[kH, groups, C_in/groups · kW, co_g]`.
fn accumulate_row_shift<T: GradFloat>(
    xs: &[T],
    dys: &[T],
    geo: &Geometry,
    rs: RowShift,
    b: usize,
    dwt: &mut [T],
    col: &mut [T],
) {
    let p = geo.p();
    let co_g = geo.c_out / geo.groups;
    let x = &xs[b * geo.c_in * geo.h * geo.w..][..geo.c_in * geo.h * geo.w];
    // `dy` transposed once per group (`[p, co_g]`, column-major as `gemm`'s left operand), so
    // that the `kH` GEMMs read it in place instead of each packing it.
    let (col, dyt) = col.split_at_mut(rs.rows * rs.stride);
    for g in 0..geo.groups {
        row_shifted(x, geo, rs, g, col);
        let dy = &dys[(b * geo.c_out + g * co_g) * p..][..co_g * p];
        for (co, row) in dy.chunks_exact(p).enumerate() {
            for (q, &v) in row.iter().enumerate() {
                dyt[q * co_g + co] = v;
            }
        }
        for i in 0..geo.kh {
            let dst = &mut dwt[(i * geo.groups + g) * rs.rows * co_g..][..rs.rows * co_g];
            // dst[(ci, j), co] += Σ_q dy[co, q] · col[(ci, j), q + i·dh·ow]
            unsafe {
                gemm::gemm(
                    co_g,
                    rs.rows,
                    p,
                    dst.as_mut_ptr(),
                    co_g as isize,
                    1,
                    true,
                    dyt.as_ptr(),
                    co_g as isize,
                    1,
                    col.as_ptr().add(i * geo.dilation[0] * geo.ow),
                    rs.stride as isize,
                    1,
                    T::ONE,
                    T::ONE,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    }
}

/// `[kH, groups, C_in/groups · kW, co_g]` (the layout [`accumulate_row_shift`] sums into) to the
/// weight's `[C_out, C_in/groups, kH, kW]`.
fn untranspose_row_shift<T: GradFloat>(dwt: &[T], geo: &Geometry) -> Vec<T> {
    let (kh, kw, cg) = (geo.kh, geo.kw, geo.c_per_group);
    let co_g = geo.c_out / geo.groups;
    let rows = cg * kw;
    let mut dw = vec![T::ZERO; dwt.len()];
    for i in 0..kh {
        for g in 0..geo.groups {
            let src = &dwt[(i * geo.groups + g) * rows * co_g..][..rows * co_g];
            for ci in 0..cg {
                for j in 0..kw {
                    for c in 0..co_g {
                        dw[(((g * co_g + c) * cg + ci) * kh + i) * kw + j] = src[(ci * kw + j) * co_g + c];
                    }
                }
            }
        }
    }
    dw
}

/// Scatter-add `col` (`k × p`, the layout [`im2col`] writes) into group `g` of image `dx`.
fn col2im<T: GradFloat>(col: &[T], geo: &Geometry, g: usize, dx: &mut [T]) {
    let (p, ps) = (geo.p(), geo.ps());
    let [sh, sw] = geo.stride;
    let [ph, pw] = geo.pad;
    let [dh, dw] = geo.dilation;
    for ci in 0..geo.c_per_group {
        let plane = &mut dx[(g * geo.c_per_group + ci) * geo.h * geo.w..][..geo.h * geo.w];
        for ki in 0..geo.kh {
            for kj in 0..geo.kw {
                let row = &col[((ci * geo.kh + ki) * geo.kw + kj) * ps..][..p];
                for oy in 0..geo.oh {
                    let src = &row[oy * geo.ow..][..geo.ow];
                    let iy = (oy * sh + ki * dh) as isize - ph as isize;
                    if iy < 0 || iy >= geo.h as isize {
                        continue;
                    }
                    let out = &mut plane[iy as usize * geo.w..][..geo.w];
                    let x0 = (kj * dw) as isize - pw as isize;
                    if sw == 1 {
                        let first = (-x0).clamp(0, geo.ow as isize) as usize;
                        let last = ((geo.w as isize - x0).clamp(0, geo.ow as isize) as usize).max(first);
                        let start = (first as isize + x0) as usize;
                        for (o, &v) in out[start..start + (last - first)].iter_mut().zip(&src[first..last]) {
                            *o = *o + v;
                        }
                    } else {
                        for (ox, &v) in src.iter().enumerate() {
                            let ix = x0 + (ox * sw) as isize;
                            if ix >= 0 && ix < geo.w as isize {
                                out[ix as usize] = out[ix as usize] + v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The geometry of `conv2d(x, weight)` with output spatial size `oh × ow`.
fn geometry(x: &[usize], w: &[usize], oh: usize, ow: usize, options: &ConvOptions<2>) -> Geometry {
    Geometry {
        c_in: x[1],
        h: x[2],
        w: x[3],
        c_out: w[0],
        c_per_group: w[1],
        kh: w[2],
        kw: w[3],
        oh,
        ow,
        stride: options.stride,
        pad: options.padding_begin(),
        dilation: options.dilation,
        groups: options.groups,
    }
}

/// Run `f(b, chunk, scratch)` for every image's `chunk` of `out`, in parallel where rayon is on.
fn per_image<T: GradFloat, U: Send>(
    out: &mut [U],
    chunk: usize,
    scratch: usize,
    f: impl Fn(usize, &mut [U], &mut [T]) + Send + Sync,
) {
    if chunk == 0 {
        return;
    }
    use rayon::prelude::*;
    // One contiguous run of images per thread: `init` runs once per split, and each run
    // allocates and zeroes an im2col buffer (hundreds of kilobytes on CIFAR's first stage).
    let per_thread = (out.len() / chunk).div_ceil(rayon::current_num_threads()).max(1);
    out.par_chunks_mut(chunk)
        .enumerate()
        .with_min_len(per_thread)
        .for_each_init(|| vec![T::ZERO; scratch], |col, (b, o)| f(b, o, col));
}

/// `len` uninitialised elements for the convolution outputs: the GEMMs write every output (they
/// do not read it), so no zeroing pass over megabytes that a single thread would otherwise
/// memset before the parallel work starts.
fn uninit<T>(len: usize) -> Vec<MaybeUninit<T>> {
    let mut out = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` elements need no initialisation.
    unsafe { out.set_len(len) };
    out
}

/// `y[co, q] += bias[co]` over one image's `[C_out, p]` output.
fn add_bias<T: GradFloat>(y: &mut [T], bias: Option<&[T]>, p: usize) {
    if let Some(bs) = bias {
        for (plane, &b) in y.chunks_mut(p).zip(bs) {
            for v in plane {
                *v = *v + b;
            }
        }
    }
}

/// `v` with its elements taken as initialised.
///
/// # Safety
/// Every element must have been written.
unsafe fn assume_init<T>(v: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut v = ManuallyDrop::new(v);
    // SAFETY: `MaybeUninit<T>` has `T`'s layout; the caller vouches for the contents.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut T, v.len(), v.capacity()) }
}

fn forward<T: GradFloat>(x: &FlexTensor, w: &FlexTensor, bias: Option<&FlexTensor>, geo: Geometry) -> Vec<T> {
    let (xs, ws) = (elems::<T>(x), elems::<T>(w));
    let bs = bias.map(|b| elems::<T>(b));
    let n = x.layout().shape()[0];
    let (k, p) = (geo.k(), geo.p());
    let co_g = geo.c_out / geo.groups;
    let mut out = uninit(n * geo.c_out * p);
    per_image(&mut out, geo.c_out * p, k * geo.ps(), |b, y, col| {
        let x = &xs[b * geo.c_in * geo.h * geo.w..][..geo.c_in * geo.h * geo.w];
        let y_ptr = y.as_mut_ptr() as *mut T;
        for g in 0..geo.groups {
            im2col(x, &geo, g, col);
            // y[co, q] = Σ_j W[co, j] · col[j, q]
            unsafe {
                gemm::gemm(
                    co_g,
                    p,
                    k,
                    y_ptr.add(g * co_g * p),
                    1,
                    p as isize,
                    false,
                    ws[g * co_g * k..].as_ptr(),
                    1,
                    k as isize,
                    col.as_ptr(),
                    1,
                    geo.ps() as isize,
                    T::ZERO,
                    T::ONE,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
        // SAFETY: the groups' GEMMs (`read_dst = false`) wrote all `c_out × p` outputs of the image.
        let y: &mut [T] = unsafe { std::slice::from_raw_parts_mut(y_ptr, y.len()) };
        add_bias(y, bs, p);
    });
    // SAFETY: every image's chunk was written above.
    unsafe { assume_init(out) }
}

fn input_grad<T: GradFloat>(w: &FlexTensor, dy: &FlexTensor, geo: Geometry, n: usize) -> Vec<T> {
    let (ws, dys) = (elems::<T>(w), elems::<T>(dy));
    let (k, p) = (geo.k(), geo.p());
    let co_g = geo.c_out / geo.groups;
    let mut dx = vec![T::ZERO; n * geo.c_in * geo.h * geo.w];
    per_image(&mut dx, geo.c_in * geo.h * geo.w, k * geo.ps(), |b, dx, col| {
        for g in 0..geo.groups {
            let dy = &dys[(b * geo.c_out + g * co_g) * p..][..co_g * p];
            // col[j, q] = Σ_co W[co, j] · dy[co, q]
            unsafe {
                gemm::gemm(
                    k,
                    p,
                    co_g,
                    col.as_mut_ptr(),
                    1,
                    geo.ps() as isize,
                    false,
                    ws[g * co_g * k..].as_ptr(),
                    k as isize,
                    1,
                    dy.as_ptr(),
                    1,
                    p as isize,
                    T::ZERO,
                    T::ONE,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            col2im(col, &geo, g, dx);
        }
    });
    dx
}

/// Add image `b`'s contribution to `dw` (`[C_out, C_per_group·kH·kW]`).
fn accumulate<T: GradFloat>(xs: &[T], dys: &[T], geo: &Geometry, b: usize, dwt: &mut [T], col: &mut [T]) {
    let (k, p) = (geo.k(), geo.p());
    let co_g = geo.c_out / geo.groups;
    let x = &xs[b * geo.c_in * geo.h * geo.w..][..geo.c_in * geo.h * geo.w];
    for g in 0..geo.groups {
        im2col(x, geo, g, col);
        let dy = &dys[(b * geo.c_out + g * co_g) * p..][..co_g * p];
        // The group's gradient transposed, `[k, co_g]`: a column-major destination keeps `gemm`
        // from transposing the product, so it packs only `dy` (`co_g × p`) and reads `col`
        // (`k × p`, nine times larger for 3×3 kernels) in place.
        let dst = &mut dwt[g * co_g * k..][..co_g * k];
        // dst[j, co] += Σ_q dy[co, q] · col[j, q]
        unsafe {
            gemm::gemm(
                co_g,
                k,
                p,
                dst.as_mut_ptr(),
                co_g as isize,
                1,
                true,
                dy.as_ptr(),
                1,
                p as isize,
                col.as_ptr(),
                geo.ps() as isize,
                1,
                T::ONE,
                T::ONE,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}

/// `[groups, k, co_g]` (the layout [`accumulate`] sums into) to the weight's `[groups, co_g, k]`.
fn untranspose<T: GradFloat>(dwt: &[T], geo: &Geometry) -> Vec<T> {
    let k = geo.k();
    let co_g = geo.c_out / geo.groups;
    let mut dw = vec![T::ZERO; dwt.len()];
    for g in 0..geo.groups {
        let (src, dst) = (&dwt[g * co_g * k..][..co_g * k], &mut dw[g * co_g * k..][..co_g * k]);
        for j in 0..k {
            for co in 0..co_g {
                dst[co * k + j] = src[j * co_g + co];
            }
        }
    }
    dw
}

fn weight_grad<T: GradFloat>(x: &FlexTensor, dy: &FlexTensor, geo: Geometry, row_shift: Option<RowShift>) -> Vec<T> {
    let (xs, dys) = (elems::<T>(x), elems::<T>(dy));
    let n = x.layout().shape()[0];
    let len = geo.c_out * geo.k();
    let col_len = row_shift.map_or(geo.k() * geo.ps(), |rs| rs.rows * rs.stride + geo.p() * geo.c_out / geo.groups);
    let accumulate = |b: usize, dw: &mut [T], col: &mut [T]| match row_shift {
        Some(rs) => accumulate_row_shift(xs, dys, &geo, rs, b, dw, col),
        None => accumulate(xs, dys, &geo, b, dw, col),
    };
    let dwt = {
        use rayon::prelude::*;
        // As in `per_image`: one split per thread, so one partial sum and one im2col buffer each.
        (0..n)
            .into_par_iter()
            .with_min_len(n.div_ceil(rayon::current_num_threads()).max(1))
            .fold(
                || (vec![T::ZERO; len], vec![T::ZERO; col_len]),
                |(mut dw, mut col), b| {
                    accumulate(b, &mut dw, &mut col);
                    (dw, col)
                },
            )
            .map(|(dw, _)| dw)
            .reduce(
                || vec![T::ZERO; len],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x = *x + y;
                    }
                    a
                },
            )
    };
    match row_shift {
        Some(_) => untranspose_row_shift(&dwt, &geo),
        None => untranspose(&dwt, &geo),
    }
}

fn elems<T: GradFloat>(t: &FlexTensor) -> &[T] {
    let (start, end) = t.layout().contiguous_offsets().expect("made contiguous");
    &t.storage::<T>()[start..end]
}

/// `conv2d(x, weight, bias, options)` by im2col + GEMM, or `None` where flex's own kernels are
/// the better choice (1×1 and depthwise convolutions, which need no im2col) or the dtype is not
/// f32 or f64.
pub fn conv2d_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    let xs = x.layout().shape().to_vec();
    let ws = weight.layout().shape().to_vec();
    let pointwise = ws[2] == 1 && ws[3] == 1 && options.stride == [1, 1] && options.padding_begin() == [0, 0];
    let depthwise = ws[1] == 1 && options.groups > 1;
    if pointwise || depthwise || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return None;
    }
    let size = |i: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize| {
        (i + p0 + p1).checked_sub(d * (k - 1) + 1).map(|v| v / s + 1)
    };
    let [p0h, p0w] = options.padding_begin();
    let [p1h, p1w] = options.padding_end();
    let oh = size(xs[2], ws[2], options.stride[0], options.dilation[0], p0h, p1h)?;
    let ow = size(xs[3], ws[3], options.stride[1], options.dilation[1], p0w, p1w)?;
    let geo = geometry(&xs, &ws, oh, ow, options);
    let shape = Shape::new([xs[0], ws[0], oh, ow]);
    let row_shift = geo.row_shift(options.padding_end());
    let run = |t: &[FlexTensor]| -> FlexTensor {
        let bias = t.get(2);
        match t[0].dtype() {
            DType::F32 => FlexTensor::new(
                Bytes::from_elems(match row_shift {
                    Some(rs) => forward_row_shift::<f32>(&t[0], &t[1], bias, geo, rs),
                    None => forward::<f32>(&t[0], &t[1], bias, geo),
                }),
                Layout::contiguous(shape.clone()),
                DType::F32,
            ),
            _ => FlexTensor::new(
                Bytes::from_elems(match row_shift {
                    Some(rs) => forward_row_shift::<f64>(&t[0], &t[1], bias, geo, rs),
                    None => forward::<f64>(&t[0], &t[1], bias, geo),
                }),
                Layout::contiguous(shape.clone()),
                DType::F64,
            ),
        }
    };
    let mut inputs = vec![x.to_contiguous(), weight.to_contiguous()];
    inputs.extend(bias.map(FlexTensor::to_contiguous));
    Some(run(&inputs))
}

/// `dx` of `conv2d(x, weight, options)` given the output's gradient (f32 or f64).
pub fn conv2d_x_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let xs = x.layout().shape().clone();
    let ws = weight.layout().shape().to_vec();
    let ds = output_grad.layout().shape().to_vec();
    let geo = geometry(&xs.to_vec(), &ws, ds[2], ds[3], options);
    let n = xs[0];
    let run = |t: &[FlexTensor]| -> FlexTensor {
        match t[0].dtype() {
            DType::F32 => FlexTensor::new(
                Bytes::from_elems(input_grad::<f32>(&t[0], &t[1], geo, n)),
                Layout::contiguous(xs.clone()),
                DType::F32,
            ),
            _ => FlexTensor::new(
                Bytes::from_elems(input_grad::<f64>(&t[0], &t[1], geo, n)),
                Layout::contiguous(xs.clone()),
                DType::F64,
            ),
        }
    };
    run(&[weight.to_contiguous(), output_grad.to_contiguous()])
}

/// `dW` of `conv2d(x, weight, options)` given the output's gradient (f32 or f64).
pub fn conv2d_weight_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let (x, dy) = (x.to_contiguous(), output_grad.to_contiguous());
    let xs = x.layout().shape().to_vec();
    let ws = weight.layout().shape().clone();
    let ds = dy.layout().shape().to_vec();
    let geo = Geometry {
        c_in: xs[1],
        h: xs[2],
        w: xs[3],
        c_out: ws[0],
        c_per_group: ws[1],
        kh: ws[2],
        kw: ws[3],
        oh: ds[2],
        ow: ds[3],
        stride: options.stride,
        pad: options.padding_begin(),
        dilation: options.dilation,
        groups: options.groups,
    };
    let row_shift = geo.row_shift(options.padding_end());
    let dtype = x.dtype();
    let tensor = |bytes: Bytes, dtype: DType| FlexTensor::new(bytes, Layout::contiguous(ws.clone()), dtype);
    match dtype {
        DType::F32 => tensor(Bytes::from_elems(weight_grad::<f32>(&x, &dy, geo, row_shift)), DType::F32),
        DType::F64 => tensor(Bytes::from_elems(weight_grad::<f64>(&x, &dy, geo, row_shift)), DType::F64),
        dtype => panic!("conv2d_weight_backward: unsupported dtype {dtype:?}"),
    }
}
