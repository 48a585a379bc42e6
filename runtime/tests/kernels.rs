//! resnetc's CPU kernels (the resnetc-kernels crate) against references: the fused batch norm
//! against the same formula composed of generic tensor ops, and the im2col + GEMM convolution
//! (forward, weight and input gradients) against direct six-loop sums — forward values and
//! gradients, several shapes, relative tolerance 1e-4.

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use resnetc_kernels::{batch_norm, batch_norm_train, conv2d};

fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn assert_close<const D: usize>(what: &str, got: &Tensor<D>, want: &Tensor<D>) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (g, w) = (values(got), values(want));
    // Relative to the tensor's largest magnitude, with a floor for all-but-zero tensors (the input
    // gradient of a batch norm over two samples per channel is rounding noise around zero).
    let scale = w.iter().fold(1e-2f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= 1e-4 * scale, "{what}[{i}]: {a} vs {b} (scale {scale})");
    }
}

/// Batch norm written with generic tensor ops: what Burn's default kernels compute.
fn composed_batch_norm(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, eps: f64) -> Tensor<4> {
    let c = x.dims()[1];
    let per_channel = |t: Tensor<4>| t.mean_dim(0).mean_dim(2).mean_dim(3);
    let mean = per_channel(x.clone());
    let centred = x - mean;
    let var = per_channel(centred.clone() * centred.clone());
    centred / (var + eps).sqrt() * gamma.reshape([1, c, 1, 1]) + beta.reshape([1, c, 1, 1])
}

#[test]
fn fused_batch_norm_matches_the_composed_formula() {
    let device = Device::flex().autodiff();
    device.seed(7);
    // Two samples per channel is the smallest batch; fewer than ~6 makes the input gradient
    // all cancellation, where the f32 reference itself is off by more than 1e-4.
    // The last cases have a mean 100 times their spread: the one-pass statistics (sums around a
    // shift) must not lose the variance to cancellation. The sums run over 32 lanes in the
    // element type, flushed to f64 every 512 elements: a 32×32 plane is two blocks, and 20
    // planes of 63 elements cross block boundaries with a remainder in every plane.
    let cases = [
        ([3, 5, 7, 6], 1.5, 2.0),
        ([2, 4, 3, 1], 1.5, 2.0),
        ([8, 16, 8, 8], 1.5, 2.0),
        ([1, 3, 32, 32], 1.5, 2.0),
        ([4, 3, 6, 6], 50.0, 0.5),
        ([20, 2, 7, 9], 50.0, 0.5),
    ];
    for (shape, mean, std) in cases {
        let c = shape[1];
        let x = Tensor::<4>::random(shape, Distribution::Normal(mean, std), &device).require_grad();
        let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device).require_grad();
        let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device).require_grad();
        let weights = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);

        let fused = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        let mut grads = (fused.output.clone() * weights.clone()).sum().backward();
        let (fx, fg, fb) = (
            x.grad_remove(&mut grads).unwrap(),
            gamma.grad_remove(&mut grads).unwrap(),
            beta.grad_remove(&mut grads).unwrap(),
        );

        let reference = composed_batch_norm(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        let mut grads = (reference.clone() * weights).sum().backward();
        let (rx, rg, rb) = (
            x.grad_remove(&mut grads).unwrap(),
            gamma.grad_remove(&mut grads).unwrap(),
            beta.grad_remove(&mut grads).unwrap(),
        );

        assert_close(&format!("{shape:?} output"), &fused.output, &reference);
        assert_close(&format!("{shape:?} x grad"), &fx, &rx);
        assert_close(&format!("{shape:?} gamma grad"), &fg, &rg);
        assert_close(&format!("{shape:?} beta grad"), &fb, &rb);

        // The statistics returned: batch mean and biased variance.
        let mean = x.clone().mean_dim(0).mean_dim(2).mean_dim(3).reshape([c]);
        let var = (x.clone() - mean.clone().reshape([1, c, 1, 1]))
            .powi_scalar(2)
            .mean_dim(0)
            .mean_dim(2)
            .mean_dim(3)
            .reshape([c]);
        assert_close(&format!("{shape:?} mean"), &fused.mean, &mean);
        assert_close(&format!("{shape:?} variance"), &fused.variance, &var);

        // Inference mode with those statistics equals the training-mode output.
        let infer =
            batch_norm(x.clone(), gamma.clone(), beta.clone(), fused.mean.clone(), fused.variance.clone(), 1e-5);
        assert_close(&format!("{shape:?} inference"), &infer, &fused.output);
    }
}

/// A convolution's geometry, square kernels and images.
#[derive(Clone, Copy)]
struct Conv {
    n: usize,
    c_in: usize,
    size: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    groups: usize,
}

impl Conv {
    fn out(&self) -> usize {
        (self.size + 2 * self.pad - self.dilation * (self.k - 1) - 1) / self.stride + 1
    }

    /// Every multiply of the direct convolution, as flat NCHW indices `(x, w, y)`:
    /// `y[b, co, oy, ox] += W[co, ci, i, j] · X[b, g·cg + ci, oy·s - p + i·d, ox·s - p + j·d]`.
    fn taps(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (o, cg, co_g) = (self.out(), self.c_in / self.groups, self.c_out / self.groups);
        for b in 0..self.n {
            for co in 0..self.c_out {
                let g = co / co_g;
                for oy in 0..o {
                    for ox in 0..o {
                        let y = ((b * self.c_out + co) * o + oy) * o + ox;
                        for ci in 0..cg {
                            for i in 0..self.k {
                                for j in 0..self.k {
                                    let iy = (oy * self.stride + i * self.dilation) as isize - self.pad as isize;
                                    let ix = (ox * self.stride + j * self.dilation) as isize - self.pad as isize;
                                    let inside = 0..self.size as isize;
                                    if !inside.contains(&iy) || !inside.contains(&ix) {
                                        continue;
                                    }
                                    let x = ((b * self.c_in + g * cg + ci) * self.size + iy as usize) * self.size
                                        + ix as usize;
                                    f(x, ((co * cg + ci) * self.k + i) * self.k + j, y);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn to_tensor(v: &[f64], dims: [usize; 4]) -> Tensor<4> {
    let data = burn::tensor::TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), dims);
    Tensor::<4>::from_data(data, &Device::flex())
}

#[test]
fn gemm_weight_gradient_matches_the_direct_sum() {
    let device = Device::flex().autodiff();
    device.seed(8);
    // (batch, c_in, c_out, size, kernel, stride, padding, dilation, groups)
    let cases = [
        (4, 16, 16, 8, 3, 1, 1, 1, 1),
        (3, 8, 16, 9, 3, 2, 1, 1, 1),
        (2, 6, 4, 7, 1, 2, 0, 1, 1),
        (2, 8, 8, 8, 3, 1, 1, 1, 4),
        (2, 4, 6, 10, 3, 1, 2, 2, 2),
        (5, 3, 5, 6, 5, 1, 2, 1, 1),
        (1, 2, 3, 4, 3, 3, 0, 1, 1),
        (2, 3, 4, 2, 5, 1, 2, 1, 1),
        // 16×16 outputs: the im2col rows get a padded stride (p a multiple of 256).
        (2, 4, 4, 16, 3, 1, 1, 1, 1),
        // Stride 1 with outputs narrower and wider than the input.
        (2, 3, 4, 7, 3, 1, 0, 1, 1),
        (2, 3, 4, 6, 3, 1, 2, 1, 1),
    ];
    for (n, c_in, c_out, size, k, stride, pad, dilation, groups) in cases {
        let conv = Conv { n, c_in, size, c_out, k, stride, pad, dilation, groups };
        let x = Tensor::<4>::random([n, c_in, size, size], Distribution::Normal(0.0, 1.0), &device);
        let w =
            Tensor::<4>::random([c_out, c_in / groups, k, k], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let options = ConvOptions::new([stride, stride], [pad, pad], [dilation, dilation], groups);
        let y = conv2d(x.clone(), w.clone(), None, options);
        let dy = Tensor::<4>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
        let mut grads = (y * dy.clone()).sum().backward();
        let got = w.grad_remove(&mut grads).unwrap();
        // dW[w] = Σ over the taps using w of dY · X.
        let (xs, dys) = (values(&x), values(&dy));
        let mut want = vec![0.0f64; w.dims().iter().product()];
        conv.taps(|xi, wi, yi| want[wi] += f64::from(dys[yi]) * f64::from(xs[xi]));
        assert_close(
            &format!("weight grad n{n} {c_in}→{c_out} {size}² k{k} s{stride} p{pad} d{dilation} g{groups}"),
            &got,
            &to_tensor(&want, w.dims()),
        );
    }
}

#[test]
fn gemm_convolution_and_input_gradient_match_the_direct_sums() {
    let device = Device::flex().autodiff();
    device.seed(9);
    // (batch, c_in, c_out, size, kernel, stride, padding, dilation, groups, bias)
    let cases = [
        (4, 16, 16, 8, 3, 1, 1, 1, 1, false),
        (3, 8, 16, 9, 3, 2, 1, 1, 1, true),
        (2, 6, 4, 7, 1, 2, 0, 1, 1, false),
        (2, 8, 8, 8, 3, 1, 1, 1, 4, true),
        (2, 4, 6, 10, 3, 1, 2, 2, 2, false),
        (5, 3, 5, 6, 5, 1, 2, 1, 1, true),
        (1, 2, 3, 4, 3, 3, 0, 1, 1, false),
        (2, 4, 4, 6, 3, 1, 1, 1, 4, false),
        (2, 3, 4, 2, 5, 1, 2, 1, 1, true),
        (2, 4, 4, 16, 3, 1, 1, 1, 1, true),
        (1, 3, 4, 32, 3, 2, 1, 1, 1, false),
        (2, 3, 4, 7, 3, 1, 0, 1, 1, true),
        (2, 3, 4, 6, 3, 1, 2, 1, 1, false),
    ];
    for (n, c_in, c_out, size, k, stride, pad, dilation, groups, with_bias) in cases {
        let conv = Conv { n, c_in, size, c_out, k, stride, pad, dilation, groups };
        let what = format!("n{n} {c_in}→{c_out} {size}² k{k} s{stride} p{pad} d{dilation} g{groups} bias {with_bias}");
        let x = Tensor::<4>::random([n, c_in, size, size], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let w = Tensor::<4>::random([c_out, c_in / groups, k, k], Distribution::Normal(0.0, 1.0), &device);
        let bias =
            with_bias.then(|| Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device).require_grad());
        let options = ConvOptions::new([stride, stride], [pad, pad], [dilation, dilation], groups);
        let y = conv2d(x.clone(), w.clone(), bias.clone(), options.clone());
        // The same without autodiff (inference): the kernel itself, no graph.
        let plain = conv2d(x.clone().inner(), w.clone().inner(), bias.clone().map(|b| b.inner()), options);

        // y = bias + Σ over its taps of W · X.
        let (xs, ws) = (values(&x), values(&w));
        let o = conv.out();
        let plane = o * o;
        let mut want = match bias.as_ref().map(values) {
            Some(bs) => (0..n * c_out * plane).map(|i| f64::from(bs[i / plane % c_out])).collect(),
            None => vec![0.0f64; n * c_out * plane],
        };
        conv.taps(|xi, wi, yi| want[yi] += f64::from(ws[wi]) * f64::from(xs[xi]));
        assert_close(&format!("{what}: output"), &y, &to_tensor(&want, [n, c_out, o, o]));
        assert_close(&format!("{what}: output without autodiff"), &plain, &to_tensor(&want, [n, c_out, o, o]));

        // dX[x] = Σ over the taps reading x of dY · W.
        let dy = Tensor::<4>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
        let mut grads = (y * dy.clone()).sum().backward();
        let got = x.grad_remove(&mut grads).unwrap();
        let dys = values(&dy);
        let mut want = vec![0.0f64; n * c_in * size * size];
        conv.taps(|xi, wi, yi| want[xi] += f64::from(dys[yi]) * f64::from(ws[wi]));
        assert_close(&format!("{what}: input grad"), &got, &to_tensor(&want, [n, c_in, size, size]));
        if let Some(b) = &bias {
            // dB[c] = Σ of dY over the batch and the positions of channel c.
            let got = b.grad_remove(&mut grads).unwrap();
            let mut want = vec![0.0f64; c_out];
            for (i, v) in dys.iter().enumerate() {
                want[i / plane % c_out] += f64::from(*v);
            }
            let want = burn::tensor::TensorData::new(want.iter().map(|&v| v as f32).collect::<Vec<f32>>(), [c_out]);
            assert_close(&format!("{what}: bias grad"), &got, &Tensor::<1>::from_data(want, &Device::flex()));
        }
    }
}
