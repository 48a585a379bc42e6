//! Times the CPU kernels of one CIFAR ResNet training step, shape by shape (batch 128): conv
//! forward, conv weight gradient, batch norm (alone and fused with the ReLU after it).
//! `cargo run --release -p resnetc-runtime --example kernel_times`.
use burn::backend::Flex;
use burn::tensor::module::{batch_norm_train, conv2d, conv2d_weight_backward};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use resnetc_kernels::flex::batch_norm as fbn;
use std::time::Instant;

fn time(label: &str, reps: usize, mut f: impl FnMut()) {
    f();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{label:40} {:8.2} ms", best * 1e3);
}

fn main() {
    resnetc_runtime::memory::keep_freed_memory();
    let device = Device::flex();
    let n = 128;
    for (c, hw, s) in [(16, 32, 1), (32, 16, 1), (64, 8, 1), (16, 32, 2), (32, 16, 2)] {
        let co = if s == 2 { c * 2 } else { c };
        let x = Tensor::<4>::random([n, c, hw, hw], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<4>::random([co, c, 3, 3], Distribution::Normal(0.0, 0.1), &device);
        let opts = ConvOptions::new([s, s], [1, 1], [1, 1], 1);
        let y = conv2d(x.clone(), w.clone(), None, opts.clone());
        let _ = y.clone().into_data();
        time(&format!("fwd   {c}->{co} {hw}x{hw} s{s}"), 5, || {
            let _ = conv2d(x.clone(), w.clone(), None, opts.clone()).into_data();
        });
        time(&format!("wgrad {c}->{co} {hw}x{hw} s{s}"), 5, || {
            let _ = conv2d_weight_backward(x.clone(), w.clone(), y.clone(), opts.clone()).into_data();
        });
        let ad = device.clone().autodiff();
        let xa = Tensor::<4>::from_data(x.clone().into_data(), &ad).require_grad();
        let wa = Tensor::<4>::from_data(w.clone().into_data(), &ad).require_grad();
        time(&format!("f+b   {c}->{co} {hw}x{hw} s{s}"), 5, || {
            let g = conv2d(xa.clone(), wa.clone(), None, opts.clone()).sum().backward();
            let _ = xa.grad(&g).unwrap().into_data();
        });
        if s == 1 {
            let gamma = Tensor::<1>::ones([c], &device);
            let beta = Tensor::<1>::zeros([c], &device);
            time(&format!("bn    {c} {hw}x{hw}"), 5, || {
                let _ = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5).output.into_data();
            });
            // The fused batch norm + (residual +) ReLU of `resnetc_runtime::fused`, on flex's
            // primitives, against the batch norm's own backward.
            let p = |t: &Tensor<4>| t.clone().try_into_primitive::<Flex>().unwrap();
            let p1 = |t: &Tensor<1>| t.clone().try_into_primitive::<Flex>().unwrap();
            let (y, m, v) = fbn::batch_norm_relu_train(p(&x), p1(&gamma), p1(&beta), 1e-5, Some(p(&x)));
            let dy = p(&x);
            time(&format!("bn+add+relu {c} {hw}x{hw}"), 5, || {
                let _ = fbn::batch_norm_relu_train(p(&x), p1(&gamma), p1(&beta), 1e-5, Some(y.clone()));
            });
            time(&format!("bn          bwd {c} {hw}x{hw}"), 5, || {
                let _ = fbn::batch_norm_train_backward(p(&x), p1(&gamma), m.clone(), v.clone(), 1e-5, dy.clone());
            });
            for (label, residual) in [("bn+relu    ", false), ("bn+add+relu", true)] {
                time(&format!("{label} bwd {c} {hw}x{hw}"), 5, || {
                    let (x, g, dy) = (p(&x), p1(&gamma), dy.clone());
                    let _ =
                        fbn::batch_norm_relu_train_backward(x, g, m.clone(), v.clone(), 1e-5, y.clone(), dy, residual);
                });
            }
        }
    }
}
