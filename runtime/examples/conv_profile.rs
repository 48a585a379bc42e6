//! Where a ResNet training step spends its time on the CPU: the three convolutions of every
//! 3×3 layer shape of a CIFAR ResNet (forward, input gradient, weight gradient — computed the
//! way Burn's autodiff does: the backend's `conv2d_x_backward` and `conv2d_weight_backward`), next
//! to one plain GEMM of the same FLOPs (the im2col formulation), all on the flex backend.
//!
//! `cargo run --release -p resnetc-runtime --example conv_profile [-- BATCH]`
//!
//! Median of 5 timed runs after 1 warm-up; GFLOP/s counts 2 FLOPs per multiply-add.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

fn median_seconds(mut f: impl FnMut(), device: &Device) -> f64 {
    f();
    device.sync().unwrap();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            f();
            device.sync().unwrap();
            start.elapsed().as_secs_f64()
        })
        .collect();
    resnetc_runtime::bench::median(&mut times)
}

fn main() {
    let n: usize = std::env::args().nth(1).map_or(128, |a| a.parse().expect("BATCH is a number"));
    let device = Device::flex();
    // (channels in, channels out, input size, stride, how many in ResNet-20)
    let layers = [(16, 16, 32, 1, 6), (16, 32, 32, 2, 1), (32, 32, 16, 1, 5), (32, 64, 16, 2, 1), (64, 64, 8, 1, 5)];
    println!("batch {n}, flex; times in ms (GFLOP/s)");
    println!(
        "{:<22} {:>16} {:>16} {:>16} {:>16} {:>5}",
        "3×3 conv", "forward", "input grad", "weight grad", "GEMM same FLOPs", "count"
    );
    let mut totals = [0.0f64; 4];
    for (cin, cout, size, stride, count) in layers {
        let out = size / stride;
        let flops = 2.0 * (n * out * out * cout * cin * 9) as f64;
        let x = Tensor::<4>::random([n, cin, size, size], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Normal(0.0, 1.0), &device);
        let options = ConvOptions::new([stride, stride], [1, 1], [1, 1], 1);
        let forward = median_seconds(|| drop(conv2d(x.clone(), w.clone(), None, options.clone())), &device);
        // The weight gradient as autodiff computes it (the backend's conv2d_weight_backward):
        // forward + backward with only the weight tracked, less the forward.
        let ad = device.clone().autodiff();
        let xa = Tensor::<4>::random([n, cin, size, size], Distribution::Normal(0.0, 1.0), &ad);
        let ga = Tensor::<4>::random([n, cout, out, out], Distribution::Normal(0.0, 1.0), &ad);
        let wa = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Normal(0.0, 1.0), &ad).require_grad();
        let both = median_seconds(
            || {
                let y = conv2d(xa.clone(), wa.clone(), None, options.clone());
                let mut grads = (y * ga.clone()).sum().backward();
                drop(wa.grad_remove(&mut grads));
            },
            &ad,
        );
        let forward_ad =
            median_seconds(|| drop((conv2d(xa.clone(), wa.clone(), None, options.clone()) * ga.clone()).sum()), &ad);
        let weight_grad = (both - forward_ad).max(1e-9);
        // The input gradient likewise (the backend's conv2d_x_backward), only the input tracked.
        let (xt, wt) = (xa.clone().require_grad(), wa.clone().detach());
        let both = median_seconds(
            || {
                let y = conv2d(xt.clone(), wt.clone(), None, options.clone());
                let mut grads = (y * ga.clone()).sum().backward();
                drop(xt.grad_remove(&mut grads));
            },
            &ad,
        );
        let input_grad = (both - forward_ad).max(1e-9);
        let a = Tensor::<2>::random([n * out * out, cin * 9], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([cin * 9, cout], Distribution::Normal(0.0, 1.0), &device);
        let gemm = median_seconds(|| drop(a.clone().matmul(b.clone())), &device);
        let cell = |t: f64| format!("{:.1} ({:.0})", t * 1e3, flops / t / 1e9);
        println!(
            "{:<22} {:>16} {:>16} {:>16} {:>16} {:>5}",
            format!("{cin}→{cout} {size}×{size} s{stride}"),
            cell(forward),
            cell(input_grad),
            cell(weight_grad),
            cell(gemm),
            count
        );
        for (total, t) in totals.iter_mut().zip([forward, input_grad, weight_grad, gemm]) {
            *total += t * count as f64;
        }
    }
    println!(
        "ResNet-20's 3×3 convs per step: forward {:.0} ms, input grad {:.0} ms, weight grad {:.0} ms (GEMM-equivalent {:.0} ms ×3)",
        totals[0] * 1e3,
        totals[1] * 1e3,
        totals[2] * 1e3,
        totals[3] * 1e3
    );
}
