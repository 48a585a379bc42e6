//! Fused batch normalisation.
//!
//! Burn's default `batch_norm_train` / `batch_norm_train_backward` compose ~20 element-wise
//! passes and two transposed copies of the activation; here each is two or three passes over
//! the NCHW data, per channel, with reductions over 32 vectorisable lanes (f64 totals): statistics
//! (sum and sum of squares around a per-channel shift, in one pass), then one fused output pass
//! into an unzeroed buffer. Semantics are the
//! default's: biased batch variance, `y = (x - mean) / sqrt(var + eps) * gamma + beta`, and
//! `dx = gamma / sqrt(var + eps) * (dy - mean(dy) - x̂ · mean(dy · x̂))`.
//!
//! f32 and f64 only; `crate` leaves other dtypes to Burn's own batch norm.

use burn::tensor::DType;
use burn::tensor::{Bytes, Shape};
use core::mem::{ManuallyDrop, MaybeUninit};

use burn::backend::flex::{FlexTensor, Layout};

/// Element types the fused kernels run on.
pub trait BnFloat:
    bytemuck::Pod
    + Copy
    + Send
    + Sync
    + burn::tensor::Element
    + core::ops::Add<Output = Self>
    + core::ops::Sub<Output = Self>
    + core::ops::Mul<Output = Self>
    + PartialOrd
{
    const ZERO: Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl BnFloat for f32 {
    const ZERO: Self = 0.0;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl BnFloat for f64 {
    const ZERO: Self = 0.0;
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// `[N, C, S...]` as (N, C, elements per (n, c) plane).
fn dims(shape: &Shape) -> (usize, usize, usize) {
    let dims = shape.to_vec();
    let n = dims[0];
    let c = dims[1];
    let plane = dims[2..].iter().product::<usize>();
    (n, c, plane)
}

/// A contiguous tensor's elements (without its start offset).
fn elems<T: BnFloat>(t: &FlexTensor) -> &[T] {
    let (start, end) = t.layout().contiguous_offsets().expect("made contiguous");
    &t.storage::<T>()[start..end]
}

fn tensor<T: BnFloat>(data: Vec<T>, shape: Shape) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), T::dtype())
}

/// Run `f(channel)` for every channel, in parallel where rayon is on.
fn per_channel<R: Send>(channels: usize, f: impl Fn(usize) -> R + Send + Sync) -> Vec<R> {
    use rayon::prelude::*;
    (0..channels).into_par_iter().map(f).collect()
}

/// Fill `out` plane by plane: `f(channel, plane index within the tensor, plane)`.
fn per_plane<U: Send>(out: &mut [U], plane: usize, channels: usize, f: impl Fn(usize, usize, &mut [U]) + Send + Sync) {
    if plane == 0 {
        return;
    }
    use rayon::prelude::*;
    out.par_chunks_mut(plane).enumerate().for_each(|(i, p)| f(i % channels, i, p));
}

/// Independent accumulators per reduction (two or four vector registers each): one running sum
/// is one dependent add per element (latency-bound); these let the loop vectorise and overlap.
const LANES: usize = 32;

/// Elements summed in the element type before the block's sums join the f64 totals: the f32
/// rounding error of a sum grows with its length, so it is bounded at `BLOCK / LANES` = 16
/// additions per lane whatever the plane's size.
const BLOCK: usize = 512;

/// `Σ f(a[i], b[i])` for each of the `R` components of `f`, over any number of slices (a
/// channel's planes): in the element type over [`LANES`] lanes until [`BLOCK`] elements have
/// gone in, then flushed into f64 totals. (All in f64, converting every element, the batch
/// norm's reductions took four times as long as its output pass, which moves twice the bytes;
/// flushing per plane instead of per block made 8×8 planes slower than that.)
struct LaneSums<T, const R: usize> {
    acc: [[T; LANES]; R],
    pending: usize,
    total: [f64; R],
}

impl<T: BnFloat, const R: usize> LaneSums<T, R> {
    fn new() -> Self {
        Self { acc: [[T::ZERO; LANES]; R], pending: 0, total: [0.0; R] }
    }

    #[inline(always)]
    fn add(&mut self, a: &[T], b: &[T], f: impl Fn(T, T) -> [T; R]) {
        for (ba, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
            if self.pending + ba.len() > BLOCK {
                self.flush();
            }
            self.pending += ba.len();
            let (ca, cb) = (ba.chunks_exact(LANES), bb.chunks_exact(LANES));
            let (ra, rb) = (ca.remainder(), cb.remainder());
            for (xa, xb) in ca.zip(cb) {
                for l in 0..LANES {
                    let v = f(xa[l], xb[l]);
                    for r in 0..R {
                        self.acc[r][l] = self.acc[r][l] + v[r];
                    }
                }
            }
            for (&xa, &xb) in ra.iter().zip(rb) {
                let v = f(xa, xb);
                for r in 0..R {
                    self.total[r] += v[r].to_f64();
                }
            }
        }
    }

    fn flush(&mut self) {
        for r in 0..R {
            self.total[r] += self.acc[r].iter().map(|v| v.to_f64()).sum::<f64>();
            self.acc[r] = [T::ZERO; LANES];
        }
        self.pending = 0;
    }

    fn finish(mut self) -> [f64; R] {
        self.flush();
        self.total
    }
}

/// A vector of `len` elements, every one written by `fill` (no zeroing pass first: the output
/// passes below write each element once).
fn filled<T: BnFloat>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut out: Vec<MaybeUninit<T>> = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` elements need no initialisation.
    unsafe { out.set_len(len) };
    fill(&mut out);
    let mut out = ManuallyDrop::new(out);
    // SAFETY: `MaybeUninit<T>` has `T`'s layout and `fill` wrote every element.
    unsafe { Vec::from_raw_parts(out.as_mut_ptr() as *mut T, len, out.capacity()) }
}

/// Training-mode batch norm, then (with `relu`) `max(0, · + residual)`.
fn bn_train<T: BnFloat>(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
    relu: Option<Option<&FlexTensor>>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape = x.layout().shape().clone();
    let (n, channels, plane) = dims(&shape);
    let xs = elems::<T>(x);
    let (gs, bs) = (elems::<T>(gamma), elems::<T>(beta));
    let count = (n * plane).max(1) as f64;
    // One pass: Σ (x - s) and Σ (x - s)² (see `LaneSums`) around a shift `s` (the channel's first value),
    // so that the variance does not cancel when the mean is large against the spread.
    let stats: Vec<(f64, f64)> = per_channel(channels, |c| {
        let shift = if n * plane > 0 { xs[c * plane] } else { T::ZERO };
        let mut sums = LaneSums::new();
        for b in 0..n {
            let p = &xs[(b * channels + c) * plane..][..plane];
            sums.add(p, p, |v, _| {
                let d = v - shift;
                [d, d * d]
            });
        }
        let [sum, sq] = sums.finish();
        let mean = sum / count;
        (shift.to_f64() + mean, (sq / count - mean * mean).max(0.0))
    });
    let coef: Vec<(T, T, T)> = stats
        .iter()
        .enumerate()
        .map(|(c, &(mean, var))| (T::from_f64(mean), T::from_f64(gs[c].to_f64() / (var + epsilon).sqrt()), bs[c]))
        .collect();
    let out = filled(xs.len(), |out| match relu {
        None => affine(xs, out, plane, channels, &coef),
        Some(residual) => affine_relu(xs, residual.map(elems::<T>), out, plane, channels, &coef),
    });
    let mean = stats.iter().map(|s| T::from_f64(s.0)).collect();
    let var = stats.iter().map(|s| T::from_f64(s.1)).collect();
    (tensor(out, shape), tensor(mean, Shape::new([channels])), tensor(var, Shape::new([channels])))
}

/// `out = (x - mean[c]) * scale[c] + beta[c]`, plane by plane.
fn affine<T: BnFloat>(xs: &[T], out: &mut [MaybeUninit<T>], plane: usize, channels: usize, coef: &[(T, T, T)]) {
    per_plane(out, plane, channels, |c, i, p| {
        let (mean, scale, beta) = coef[c];
        let src = &xs[i * plane..(i + 1) * plane];
        for (o, &v) in p.iter_mut().zip(src) {
            o.write((v - mean) * scale + beta);
        }
    });
}

/// Whether ReLU passes `v` (and its gradient) on: positive, or NaN, which flex's `relu` and
/// `relu_backward` propagate as PyTorch does (`!(v <= 0)` is true for NaN).
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn relu_passes<T: BnFloat>(v: T) -> bool {
    !(v <= T::ZERO)
}

/// `out = relu((x - mean[c]) * scale[c] + beta[c] + residual)`, plane by plane.
fn affine_relu<T: BnFloat>(
    xs: &[T],
    residual: Option<&[T]>,
    out: &mut [MaybeUninit<T>],
    plane: usize,
    channels: usize,
    coef: &[(T, T, T)],
) {
    let relu = |v: T| if relu_passes(v) { v } else { T::ZERO };
    per_plane(out, plane, channels, |c, i, p| {
        let (mean, scale, beta) = coef[c];
        let src = &xs[i * plane..(i + 1) * plane];
        match residual {
            Some(r) => {
                for ((o, &v), &r) in p.iter_mut().zip(src).zip(&r[i * plane..(i + 1) * plane]) {
                    o.write(relu((v - mean) * scale + beta + r));
                }
            }
            None => {
                for (o, &v) in p.iter_mut().zip(src) {
                    o.write(relu((v - mean) * scale + beta));
                }
            }
        }
    });
}

fn bn_infer<T: BnFloat>(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    mean: &FlexTensor,
    var: &FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    let shape = x.layout().shape().clone();
    let (_, channels, plane) = dims(&shape);
    let xs = elems::<T>(x);
    let (gs, bs, ms, vs) = (elems::<T>(gamma), elems::<T>(beta), elems::<T>(mean), elems::<T>(var));
    let coef: Vec<(T, T, T)> = (0..channels)
        .map(|c| (ms[c], T::from_f64(gs[c].to_f64() / (vs[c].to_f64() + epsilon).sqrt()), bs[c]))
        .collect();
    tensor(filled(xs.len(), |out| affine(xs, out, plane, channels, &coef)), shape)
}

fn bn_backward<T: BnFloat>(
    x: &FlexTensor,
    gamma: &FlexTensor,
    mean: &FlexTensor,
    var: &FlexTensor,
    epsilon: f64,
    grad: &FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape = x.layout().shape().clone();
    let (n, channels, plane) = dims(&shape);
    let (xs, dys) = (elems::<T>(x), elems::<T>(grad));
    let (gs, ms, vs) = (elems::<T>(gamma), elems::<T>(mean), elems::<T>(var));
    let count = (n * plane).max(1) as f64;
    let inv_std: Vec<f64> = (0..channels).map(|c| 1.0 / (vs[c].to_f64() + epsilon).sqrt()).collect();
    // Per channel: Σ dy and Σ dy·x̂.
    let sums: Vec<(f64, f64)> = per_channel(channels, |c| {
        let (m, s) = (ms[c], inv_std[c]);
        let mut sums = LaneSums::new();
        for b in 0..n {
            let start = (b * channels + c) * plane;
            sums.add(&xs[start..start + plane], &dys[start..start + plane], |xv, g| [g, g * (xv - m)]);
        }
        let [sum_dy, sum_dy_xc] = sums.finish();
        (sum_dy, sum_dy_xc * s)
    });
    let dx = filled(xs.len(), |dx| {
        per_plane(dx, plane, channels, |c, i, p| {
            // dx = scale·dy - scale·mean(dy) - scale·mean(dy·x̂)·s·(x - m) = a·dy + b·(x - m) + k.
            let s = inv_std[c];
            let scale = gs[c].to_f64() * s;
            let (mean_dy, mean_dy_xhat) = (sums[c].0 / count, sums[c].1 / count);
            let a = T::from_f64(scale);
            let b = T::from_f64(-scale * mean_dy_xhat * s);
            let k = T::from_f64(-scale * mean_dy);
            let m = ms[c];
            let (xp, gp) = (&xs[i * plane..(i + 1) * plane], &dys[i * plane..(i + 1) * plane]);
            for ((o, &xv), &gv) in p.iter_mut().zip(xp).zip(gp) {
                o.write(a * gv + b * (xv - m) + k);
            }
        })
    });
    let gamma_grad = sums.iter().map(|s| T::from_f64(s.1)).collect();
    let beta_grad = sums.iter().map(|s| T::from_f64(s.0)).collect();
    (tensor(dx, shape), tensor(gamma_grad, Shape::new([channels])), tensor(beta_grad, Shape::new([channels])))
}

/// Training-mode batch norm: output, batch mean and biased batch variance.
pub fn batch_norm_train(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (x, gamma, beta) = (x.to_contiguous(), gamma.to_contiguous(), beta.to_contiguous());
    match x.dtype() {
        DType::F32 => bn_train::<f32>(&x, &gamma, &beta, epsilon, None),
        DType::F64 => bn_train::<f64>(&x, &gamma, &beta, epsilon, None),
        dtype => panic!("batch_norm_train: unsupported dtype {dtype:?}"),
    }
}

/// Inference-mode batch norm with given statistics.
pub fn batch_norm(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    let [x, gamma, beta, mean, var] = [x, gamma, beta, mean, var].map(|t| t.to_contiguous());
    match x.dtype() {
        DType::F32 => bn_infer::<f32>(&x, &gamma, &beta, &mean, &var, epsilon),
        DType::F64 => bn_infer::<f64>(&x, &gamma, &beta, &mean, &var, epsilon),
        dtype => panic!("batch_norm: unsupported dtype {dtype:?}"),
    }
}

/// Gradients of [`batch_norm_train`]: input, gamma, beta.
pub fn batch_norm_train_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    epsilon: f64,
    grad: FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let [x, gamma, mean, var, grad] = [x, gamma, mean, var, grad].map(|t| t.to_contiguous());
    match x.dtype() {
        DType::F32 => bn_backward::<f32>(&x, &gamma, &mean, &var, epsilon, &grad),
        DType::F64 => bn_backward::<f64>(&x, &gamma, &mean, &var, epsilon, &grad),
        dtype => panic!("batch_norm_train_backward: unsupported dtype {dtype:?}"),
    }
}

/// Training-mode batch norm fused with an optional residual addition and a ReLU:
/// `max(0, batch_norm(x) + residual)` in the same two passes over `x` as the batch norm alone
/// (instead of two or three more for the addition and the ReLU). Output, batch mean and biased
/// batch variance. Only f32 and f64.
pub fn batch_norm_relu_train(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
    residual: Option<FlexTensor>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let [x, gamma, beta] = [x, gamma, beta].map(|t| t.to_contiguous());
    let residual = residual.map(|r| r.to_contiguous());
    match x.dtype() {
        DType::F32 => bn_train::<f32>(&x, &gamma, &beta, epsilon, Some(residual.as_ref())),
        DType::F64 => bn_train::<f64>(&x, &gamma, &beta, epsilon, Some(residual.as_ref())),
        dtype => panic!("batch_norm_relu_train: unsupported dtype {dtype:?}"),
    }
}

/// Gradients of [`batch_norm_relu_train`] from its `output` (whose sign is the ReLU's mask):
/// input, gamma, beta, and with `residual` the residual's (the masked output gradient).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_relu_train_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    epsilon: f64,
    output: FlexTensor,
    grad: FlexTensor,
    residual: bool,
) -> (FlexTensor, FlexTensor, FlexTensor, Option<FlexTensor>) {
    let [x, gamma, mean, var, output, grad] = [x, gamma, mean, var, output, grad].map(|t| t.to_contiguous());
    fn run<T: BnFloat>(
        [x, gamma, mean, var, output, grad]: [&FlexTensor; 6],
        epsilon: f64,
        residual: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor, Option<FlexTensor>) {
        // The gradient that reaches the batch norm (and the residual) is the output's where the
        // ReLU passed its input, zero elsewhere: one pass, then the batch norm's backward on it.
        // (Masking inside the batch norm's two passes instead measured 3-5x slower: the loops
        // over three inputs with the select did not vectorise.)
        let (ys, gs) = (elems::<T>(output), elems::<T>(grad));
        let plane = x.layout().shape().to_vec()[2..].iter().product::<usize>();
        let masked = filled(gs.len(), |out| {
            per_plane(out, plane, 1, |_, i, p| {
                let (yp, gp) = (&ys[i * plane..(i + 1) * plane], &gs[i * plane..(i + 1) * plane]);
                for ((o, &y), &g) in p.iter_mut().zip(yp).zip(gp) {
                    o.write(if relu_passes(y) { g } else { T::ZERO });
                }
            })
        });
        let masked = tensor(masked, x.layout().shape().clone());
        let (dx, dg, db) = bn_backward::<T>(x, gamma, mean, var, epsilon, &masked);
        (dx, dg, db, residual.then_some(masked))
    }
    let inputs = [&x, &gamma, &mean, &var, &output, &grad];
    match x.dtype() {
        DType::F32 => run::<f32>(inputs, epsilon, residual),
        DType::F64 => run::<f64>(inputs, epsilon, residual),
        dtype => panic!("batch_norm_relu_train_backward: unsupported dtype {dtype:?}"),
    }
}
