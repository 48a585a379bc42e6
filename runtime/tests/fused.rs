//! The fused batch norm + (residual addition +) ReLU computes what the unfused ops compute:
//! output, gradients of the input, gamma, beta and the residual, and the running statistics;
//! and a whole network's training step gives the same loss and parameter gradients with the
//! fusion on and off.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use resnetc_runtime::fused;
use resnetc_runtime::model::DynNet;
use std::sync::Mutex;

mod common;
use common::network_with;

/// The fusion switch is process-wide: tests that flip it run one at a time.
static SWITCH: Mutex<()> = Mutex::new(());

fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest difference relative to the larger magnitude (at least 1).
fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().chain(b).fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(diff <= 1e-4 * scale, "{what}: max difference {diff} (scale {scale})");
}

/// A batch norm with random gamma and beta, the same for every call.
fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(channels).init(device);
    device.seed(7);
    bn.gamma = Param::from_tensor(Tensor::random([channels], Distribution::Normal(1.0, 0.5), device));
    bn.beta = Param::from_tensor(Tensor::random([channels], Distribution::Normal(0.0, 0.5), device));
    bn
}

struct Result {
    output: Vec<f32>,
    grads: Vec<(&'static str, Vec<f32>)>,
    running: [Vec<f32>; 2],
}

/// Run `relu(bn(x) + residual)` fused or not, then backward from `Σ output · weight`.
fn run(fuse: bool, with_residual: bool, shape: [usize; 4]) -> Result {
    let device = Device::flex().autodiff();
    let bn = batch_norm(shape[1], &device);
    device.seed(11);
    // A mean far from zero and a small spread: the statistics must not cancel.
    let x = Tensor::<4>::random(shape, Distribution::Normal(3.0, 0.7), &device).require_grad();
    let residual = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
    let weight = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let r = with_residual.then(|| residual.clone());
    fused::set_enabled(fuse);
    assert_eq!(fused::fuses(&bn, &x, r.as_ref()), fuse, "the fused path is the one under test");
    let output = fused::bn_relu(&bn, x.clone(), r);
    fused::set_enabled(true);
    let zeros = values(&output).iter().filter(|v| **v == 0.0).count();
    assert!(zeros > 0 && zeros < output.shape().num_elements(), "the ReLU cuts some outputs and not all");
    let grads = (output.clone() * weight).sum().backward();
    let mut all = vec![
        ("x", values(&x.grad(&grads).unwrap())),
        ("gamma", values(&bn.gamma.val().grad(&grads).unwrap())),
        ("beta", values(&bn.beta.val().grad(&grads).unwrap())),
    ];
    if with_residual {
        all.push(("residual", values(&residual.grad(&grads).unwrap())));
    }
    Result {
        output: values(&output),
        grads: all,
        running: [values(&bn.running_mean.value()), values(&bn.running_var.value())],
    }
}

fn compare(with_residual: bool, shape: [usize; 4]) {
    let _guard = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let fused = run(true, with_residual, shape);
    let plain = run(false, with_residual, shape);
    assert_close("output", &fused.output, &plain.output);
    for ((name, a), (_, b)) in fused.grads.iter().zip(&plain.grads) {
        assert_close(name, a, b);
    }
    assert_close("running mean", &fused.running[0], &plain.running[0]);
    assert_close("running variance", &fused.running[1], &plain.running[1]);
}

#[test]
fn batch_norm_relu_matches_the_unfused_ops() {
    compare(false, [4, 3, 5, 7]);
    compare(false, [2, 16, 8, 8]);
}

#[test]
fn batch_norm_residual_relu_matches_the_unfused_ops() {
    compare(true, [4, 3, 5, 7]);
    compare(true, [3, 8, 4, 4]);
}

/// A NaN in the input propagates as through the unfused ops (flex's ReLU passes NaN on, and
/// its backward keeps the gradient there): training must see the loss go NaN to stop.
#[test]
fn nan_propagates_as_unfused() {
    let _guard = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let run = |fuse: bool| {
        let device = Device::flex().autodiff();
        let bn = batch_norm(3, &device);
        device.seed(13);
        let mut v = values(&Tensor::<4>::random([2, 3, 4, 4], Distribution::Normal(0.0, 1.0), &device));
        v[5] = f32::NAN;
        let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(v, [2, 3, 4, 4]), &device).require_grad();
        let residual = Tensor::<4>::random([2, 3, 4, 4], Distribution::Normal(0.0, 1.0), &device).require_grad();
        fused::set_enabled(fuse);
        let y = fused::bn_relu(&bn, x.clone(), Some(residual.clone()));
        fused::set_enabled(true);
        let grads = y.clone().sum().backward();
        let nan = |t: &Tensor<4>| values(t).iter().map(|v| v.is_nan()).collect::<Vec<_>>();
        (nan(&y), nan(&x.grad(&grads).unwrap()), nan(&residual.grad(&grads).unwrap()))
    };
    let (fused, plain) = (run(true), run(false));
    assert!(plain.0.iter().any(|&n| n), "the unfused ops propagate the NaN");
    assert_eq!(fused, plain, "NaN positions of the output and the input and residual gradients");
}

#[test]
fn inference_and_frozen_batch_norms_are_not_fused() {
    let _guard = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let x = Tensor::<4>::random([2, 3, 4, 4], Distribution::Default, &Device::flex());
    assert!(!fused::fuses(&batch_norm(3, &Device::flex()), &x, None), "no autodiff: inference");
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random([2, 3, 4, 4], Distribution::Default, &device);
    assert!(fused::fuses(&batch_norm(3, &device), &x, None));
    let frozen = batch_norm(3, &device).freeze();
    assert!(!fused::fuses(&frozen, &x, None), "a frozen batch norm keeps its running statistics");
    let other = Tensor::<4>::random([2, 3, 2, 2], Distribution::Default, &device);
    assert!(!fused::fuses(&batch_norm(3, &device), &x, Some(&other)), "a residual of another shape");
    // The unfused fallback is the plain composition.
    let bn = batch_norm(3, &Device::flex());
    let x = Tensor::<4>::random([2, 3, 4, 4], Distribution::Default, &Device::flex());
    assert_close("fallback", &values(&fused::bn_relu(&bn, x.clone(), None)), &values(&relu(bn.forward(x))));
}

/// Every parameter's gradient, in visiting order.
struct Grads<'a> {
    grads: &'a burn::tensor::Gradients,
    out: Vec<Vec<f32>>,
}

impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            self.out.push(values(&g));
        }
    }
}

/// One forward and backward pass of a network on a fixed batch (and fixed dropout masks), fused
/// or not: the loss and every parameter gradient.
fn step(net: &resnetc_compiler::Network, fuse: bool) -> (Vec<f32>, Vec<Vec<f32>>) {
    let device = Device::flex().autodiff();
    device.seed(3);
    let model = DynNet::new(net, &device);
    device.seed(5);
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    fused::set_enabled(fuse);
    let logits = model.forward(x);
    fused::set_enabled(true);
    let loss = (logits.clone() * logits).sum();
    let grads = loss.backward();
    let mut visitor = Grads { grads: &grads, out: Vec::new() };
    model.visit(&mut visitor);
    (values(&loss), visitor.out)
}

/// Whole networks: plain and projection residual units (ResNet), pre-activation units, a unit
/// with dropout in its branch (Wide ResNet), dense blocks (DenseNet).
#[test]
fn networks_train_the_same_fused_and_unfused() {
    let _guard = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    for (spec, set) in [
        ("specs/resnet-20.net", &["depth=8"][..]),
        ("specs/preresnet-110.net", &["depth=8"][..]),
        ("specs/wrn-16-4.net", &["depth=10", "k=1", "dropout=0.3"][..]),
        ("specs/densenet-40-12.net", &["depth=7", "growth=4"][..]),
    ] {
        let net = network_with(spec, set);
        let (loss_a, grads_a) = step(&net, true);
        let (loss_b, grads_b) = step(&net, false);
        assert_close(&format!("{spec} loss"), &loss_a, &loss_b);
        assert_eq!(grads_a.len(), grads_b.len(), "{spec}: every parameter has a gradient both ways");
        assert!(!grads_a.is_empty());
        for (i, (a, b)) in grads_a.iter().zip(&grads_b).enumerate() {
            assert_close(&format!("{spec} gradient {i}"), a, b);
        }
    }
}
