//! resnetc's CPU kernels (the patched burn-flex in vendor/) against references: the fused batch
//! norm against the same formula composed of generic tensor ops, and the im2col + GEMM
//! convolution weight gradient against a direct six-loop sum — forward values and gradients,
//! several shapes, relative tolerance 1e-4.

use burn::tensor::module::{batch_norm, batch_norm_train, conv2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};

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
    for shape in [[3, 5, 7, 6], [2, 4, 3, 1], [8, 16, 8, 8], [1, 3, 32, 32]] {
        let c = shape[1];
        let x = Tensor::<4>::random(shape, Distribution::Normal(1.5, 2.0), &device).require_grad();
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

/// `dW[co, ci, i, j] = Σ_b,y,x dY[b, co, y, x] · X[b, g·cg + ci, y·s - p + i·d, x·s - p + j·d]`.
fn direct_weight_grad(
    x: &Tensor<4>,
    dy: &Tensor<4>,
    w_shape: [usize; 4],
    stride: usize,
    pad: usize,
    dilation: usize,
    groups: usize,
) -> Vec<f64> {
    let [n, c_in, h, w] = x.dims();
    let [_, c_out, oh, ow] = dy.dims();
    let (xs, gs) = (values(x), values(dy));
    let [_, cg, kh, kw] = w_shape;
    let co_g = c_out / groups;
    let mut out = vec![0.0f64; c_out * cg * kh * kw];
    for co in 0..c_out {
        let g = co / co_g;
        for ci in 0..cg {
            for i in 0..kh {
                for j in 0..kw {
                    let mut sum = 0.0f64;
                    for b in 0..n {
                        for y in 0..oh {
                            for xx in 0..ow {
                                let iy = (y * stride + i * dilation) as isize - pad as isize;
                                let ix = (xx * stride + j * dilation) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = xs[((b * c_in + g * cg + ci) * h + iy as usize) * w + ix as usize];
                                sum += f64::from(gs[((b * c_out + co) * oh + y) * ow + xx]) * f64::from(xv);
                            }
                        }
                    }
                    out[((co * cg + ci) * kh + i) * kw + j] = sum;
                }
            }
        }
    }
    out
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
    ];
    for (n, c_in, c_out, size, k, stride, pad, dilation, groups) in cases {
        let x = Tensor::<4>::random([n, c_in, size, size], Distribution::Normal(0.0, 1.0), &device);
        let w =
            Tensor::<4>::random([c_out, c_in / groups, k, k], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let options = ConvOptions::new([stride, stride], [pad, pad], [dilation, dilation], groups);
        let y = conv2d(x.clone(), w.clone(), None, options);
        let dy = Tensor::<4>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
        let mut grads = (y * dy.clone()).sum().backward();
        let got = w.grad_remove(&mut grads).unwrap();
        let want = direct_weight_grad(&x, &dy, [c_out, c_in / groups, k, k], stride, pad, dilation, groups);
        let want = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(want.iter().map(|&v| v as f32).collect::<Vec<f32>>(), w.dims()),
            &Device::flex(),
        );
        assert_close(
            &format!("weight grad n{n} {c_in}→{c_out} {size}² k{k} s{stride} p{pad} d{dilation} g{groups}"),
            &got,
            &want,
        );
    }
}

/// `y[b, co, oy, ox] = bias[co] + Σ_ci,i,j W[co, ci, i, j] · X[b, g·cg + ci, oy·s - p + i·d, ox·s - p + j·d]`.
#[allow(clippy::too_many_arguments)]
fn direct_conv(
    x: &[f32],
    xd: [usize; 4],
    w: &[f32],
    wd: [usize; 4],
    bias: Option<&[f32]>,
    stride: usize,
    pad: usize,
    dilation: usize,
    groups: usize,
) -> (Vec<f64>, [usize; 4]) {
    let [n, c_in, h, wi] = xd;
    let [c_out, cg, kh, kw] = wd;
    let oh = (h + 2 * pad - dilation * (kh - 1) - 1) / stride + 1;
    let ow = (wi + 2 * pad - dilation * (kw - 1) - 1) / stride + 1;
    let co_g = c_out / groups;
    let mut out = vec![0.0f64; n * c_out * oh * ow];
    for b in 0..n {
        for co in 0..c_out {
            let g = co / co_g;
            for y in 0..oh {
                for xx in 0..ow {
                    let mut sum = bias.map_or(0.0, |bs| f64::from(bs[co]));
                    for ci in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (y * stride + i * dilation) as isize - pad as isize;
                                let ix = (xx * stride + j * dilation) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wi as isize {
                                    continue;
                                }
                                let xv = x[((b * c_in + g * cg + ci) * h + iy as usize) * wi + ix as usize];
                                sum += f64::from(w[((co * cg + ci) * kh + i) * kw + j]) * f64::from(xv);
                            }
                        }
                    }
                    out[((b * c_out + co) * oh + y) * ow + xx] = sum;
                }
            }
        }
    }
    (out, [n, c_out, oh, ow])
}

#[test]
fn gemm_convolution_and_input_gradient_match_the_direct_sums() {
    let device = Device::flex().autodiff();
    device.seed(9);
    let plain = Device::flex();
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
    ];
    let to_tensor = |v: Vec<f64>, dims: [usize; 4]| {
        Tensor::<4>::from_data(
            burn::tensor::TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), dims),
            &plain,
        )
    };
    for (n, c_in, c_out, size, k, stride, pad, dilation, groups, with_bias) in cases {
        let what = format!("n{n} {c_in}→{c_out} {size}² k{k} s{stride} p{pad} d{dilation} g{groups} bias {with_bias}");
        let x = Tensor::<4>::random([n, c_in, size, size], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let wd = [c_out, c_in / groups, k, k];
        let w = Tensor::<4>::random(wd, Distribution::Normal(0.0, 1.0), &device);
        let bias = with_bias.then(|| Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device));
        let options = ConvOptions::new([stride, stride], [pad, pad], [dilation, dilation], groups);
        let y = conv2d(x.clone(), w.clone(), bias.clone(), options);

        let (xv, wv) = (values(&x), values(&w));
        let bv = bias.as_ref().map(values);
        let (want, yd) = direct_conv(&xv, x.dims(), &wv, wd, bv.as_deref(), stride, pad, dilation, groups);
        assert_close(&format!("{what}: output"), &y, &to_tensor(want, yd));

        // dx[b, ci, iy, ix] = Σ over the outputs that read it of dY · W.
        let dy = Tensor::<4>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
        let mut grads = (y * dy.clone()).sum().backward();
        let got = x.grad_remove(&mut grads).unwrap();
        let dyv = values(&dy);
        let [_, _, oh, ow] = yd;
        let cg = c_in / groups;
        let co_g = c_out / groups;
        let mut want = vec![0.0f64; n * c_in * size * size];
        for b in 0..n {
            for co in 0..c_out {
                let g = co / co_g;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let d = f64::from(dyv[((b * c_out + co) * oh + oy) * ow + ox]);
                        for ci in 0..cg {
                            for i in 0..k {
                                for j in 0..k {
                                    let iy = (oy * stride + i * dilation) as isize - pad as isize;
                                    let ix = (ox * stride + j * dilation) as isize - pad as isize;
                                    if iy < 0 || ix < 0 || iy >= size as isize || ix >= size as isize {
                                        continue;
                                    }
                                    want[((b * c_in + g * cg + ci) * size + iy as usize) * size + ix as usize] +=
                                        d * f64::from(wv[((co * cg + ci) * k + i) * k + j]);
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_close(&format!("{what}: input grad"), &got, &to_tensor(want, [n, c_in, size, size]));
    }
}
