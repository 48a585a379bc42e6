//! The random residual regularisers, as the runtime and the emitted code apply them: stochastic
//! depth's `drop_path` (`resnetc_kernels::drop_path`: per sample, all or nothing, kept samples
//! scaled by 1/(1-p); the identity at inference; the per-block rates `index` gives a stage's
//! copies) and Shake-Shake's `shake(a, b)` (`resnetc_kernels::shake`).

use burn::nn::DropoutConfig;
use burn::tensor::{Device, Distribution, Tensor};
use resnetc_compiler::ir::{Layer, Node, NodeKind};

mod common;

#[test]
fn each_sample_is_kept_whole_and_scaled_or_dropped_whole() {
    let device = Device::flex().autodiff();
    device.seed(7);
    let layer = DropoutConfig::new(0.3).init();
    let n = 20_000;
    let x = Tensor::<4>::random([n, 2, 3, 3], Distribution::Uniform(1.0, 2.0), &device).require_grad();
    let y = resnetc_kernels::drop_path(&layer, x.clone());
    let (xs, ys) = (common::values(x.clone()), common::values(y.clone()));
    let grads = y.sum().backward();
    let g: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let per = 18;
    let mut kept = 0;
    for s in 0..n {
        let range = s * per..(s + 1) * per;
        let dropped = ys[range.clone()].iter().all(|&v| v == 0.0);
        let scaled = range.clone().all(|i| (ys[i] - xs[i] / 0.7).abs() < 1e-5 * xs[i].abs());
        assert!(dropped != scaled, "sample {s} is neither dropped whole nor kept whole");
        // The gradient is the mask over the keep probability.
        let want = if scaled { 1.0 / 0.7 } else { 0.0 };
        assert!(g[range].iter().all(|&v| (v - want).abs() < 1e-6), "sample {s}: gradient");
        kept += usize::from(scaled);
    }
    let rate = kept as f64 / n as f64;
    let sigma = (0.3f64 * 0.7 / n as f64).sqrt();
    assert!((rate - 0.7).abs() < 5.0 * sigma, "kept {rate} of the samples, expected 0.7");
}

#[test]
fn inference_and_frozen_layers_and_rate_zero_are_the_identity() {
    let x = Tensor::<2>::random([64, 5], Distribution::Normal(0.0, 1.0), &Device::flex());
    let layer = DropoutConfig::new(0.5).init();
    // No autodiff device: inference.
    assert_eq!(common::values(resnetc_kernels::drop_path(&layer, x.clone())), common::values(x.clone()));
    let ad = Device::flex().autodiff();
    let on_ad = x.clone().to_device(&ad);
    let zero = DropoutConfig::new(0.0).init();
    assert_eq!(common::values(resnetc_kernels::drop_path(&zero, on_ad.clone())), common::values(on_ad.clone()));
    let frozen = burn::module::Module::freeze(layer);
    assert_eq!(common::values(resnetc_kernels::drop_path(&frozen, on_ad.clone())), common::values(on_ad));
}

/// Huang et al.'s linear decay through `index`: block l of L drops at `p_last * l / L`.
#[test]
fn a_stages_copies_get_linearly_rising_rates() {
    let network = common::network_with("specs/sd-resnet-110.net", &["depth=20"]);
    fn rates(nodes: &[Node], out: &mut Vec<f64>) {
        for node in nodes {
            match &node.kind {
                NodeKind::Layer(Layer::DropPath { p }) => out.push(*p),
                NodeKind::Layer(_) => {}
                NodeKind::Block { body, .. } => rates(body, out),
                NodeKind::Stage { blocks, .. } => rates(blocks, out),
                NodeKind::Combine { arms, .. } => arms.iter().for_each(|a| rates(a, out)),
                NodeKind::Merge { arms, .. } => arms.iter().for_each(|(_, a)| rates(a, out)),
            }
        }
    }
    let mut got = Vec::new();
    rates(&network.body, &mut got);
    let want: Vec<f64> = (1..=9).map(|l| 0.5 * l as f64 / 9.0).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
    }
}

/// Forward, each sample is `α a + (1 − α) b` for its own α in [0, 1]; backward, the gradients
/// to `a` and `b` are `β` and `1 − β` for another β per sample; at inference the mean.
#[test]
fn shake_mixes_each_sample_forward_and_backward_with_independent_coefficients() {
    let device = Device::flex().autodiff();
    device.seed(11);
    let n = 2000;
    let a = Tensor::<2>::ones([n, 4], &device).require_grad();
    let b = Tensor::<2>::zeros([n, 4], &device).require_grad();
    let y = resnetc_kernels::shake(a.clone(), b.clone());
    let ys = common::values(y.clone());
    let grads = y.sum().backward();
    let (ga, gb) = (common::values(a.grad(&grads).unwrap()), common::values(b.grad(&grads).unwrap()));
    let mut same = 0;
    let (mut mean_alpha, mut mean_beta) = (0.0, 0.0);
    for s in 0..n {
        let (alpha, beta) = (ys[s * 4], ga[s * 4]);
        assert!((0.0..=1.0).contains(&alpha) && (0.0..=1.0).contains(&beta), "sample {s}");
        for j in 0..4 {
            assert!(
                (ys[s * 4 + j] - alpha).abs() < 1e-6 && (ga[s * 4 + j] - beta).abs() < 1e-6,
                "one coefficient per sample"
            );
            assert!((ga[s * 4 + j] + gb[s * 4 + j] - 1.0).abs() < 1e-6, "the gradients sum to 1");
        }
        same += usize::from((alpha - beta).abs() < 1e-6);
        mean_alpha += f64::from(alpha) / n as f64;
        mean_beta += f64::from(beta) / n as f64;
    }
    assert!(same < n / 100, "forward and backward coefficients are drawn independently ({same} equal)");
    // Uniform on [0, 1]: mean 1/2, standard error sqrt(1/12 / n).
    let se = (1.0 / 12.0 / n as f64).sqrt();
    assert!((mean_alpha - 0.5).abs() < 5.0 * se && (mean_beta - 0.5).abs() < 5.0 * se, "{mean_alpha} {mean_beta}");
    // Inference: the mean of the branches.
    let flex = Device::flex();
    let x = Tensor::<2>::from_floats([[2.0f32, 4.0]], &flex);
    let z = Tensor::<2>::from_floats([[0.0f32, 1.0]], &flex);
    assert_eq!(common::values(resnetc_kernels::shake(x, z)), vec![1.0, 2.5]);
}
