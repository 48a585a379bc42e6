//! Builds generated networks on the flex device, runs a forward pass and checks
//! shapes, parameter counts and parameter names against the checker's IR.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Tensor};
use resnetc_codegen_tests as specs;

/// Counts trainable parameters (BatchNorm running statistics excluded) and records their paths.
#[derive(Default)]
struct Census {
    path: Vec<String>,
    trainable: usize,
    buffers: usize,
    names: Vec<String>,
}

impl ModuleVisitor for Census {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.val().shape().num_elements();
        let leaf = self.path.last().map(String::as_str).unwrap_or("");
        if leaf == "running_mean" || leaf == "running_var" {
            self.buffers += n;
        } else {
            self.trainable += n;
            self.names.push(self.path.iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join("."));
        }
    }
}

fn census<M: Module>(model: &M) -> Census {
    let mut c = Census::default();
    model.visit(&mut c);
    c
}

/// The layer names (IR paths) of the checked summary that hold parameters.
fn layers_with_params(summary: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(summary).expect("summary is JSON");
    assert!(json["params"].as_u64().unwrap() > 0);
    json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["params"].as_u64().unwrap() > 0)
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every Burn parameter lives under a layer the IR names, and every IR layer with parameters has some.
fn assert_names_match(census: &Census, summary: &str) {
    let layers = layers_with_params(summary);
    for name in &census.names {
        let owner = name.rsplit_once('.').map_or(name.as_str(), |(owner, _)| owner);
        assert!(layers.iter().any(|l| l == owner), "Burn parameter {name} has no IR layer {owner}");
    }
    for layer in &layers {
        assert!(
            census.names.iter().any(|n| n.starts_with(&format!("{layer}."))),
            "IR layer {layer} has no Burn parameter"
        );
    }
}

fn input(batch: usize, device: &Device) -> Tensor<4> {
    Tensor::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn resnet_20_builds_runs_and_counts() {
    let device = Device::flex();
    let model = specs::resnet_20::Resnet20::new(&device);
    let c = census(&model);
    assert_eq!(c.trainable, specs::resnet_20::Resnet20::PARAMS);
    assert_eq!(c.trainable, 272_474);
    assert_names_match(&c, specs::resnet_20::SUMMARY);
    let out = model.forward(input(2, &device));
    assert_eq!(out.dims(), [2, 10]);
    let values: Vec<f32> = out.into_data().try_to_vec::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite()));
}

#[test]
fn resnet_20_a_pads_channels_and_has_no_shortcut_weights() {
    let device = Device::flex();
    let model = specs::resnet_20_a::Resnet20A::new(&device);
    let c = census(&model);
    assert_eq!(c.trainable, specs::resnet_20_a::Resnet20A::PARAMS);
    assert_eq!(c.trainable, 269_722);
    assert_names_match(&c, specs::resnet_20_a::SUMMARY);
    assert_eq!(model.forward(input(2, &device)).dims(), [2, 10]);
    // The option-A shortcut (the emitted struct holds resnetc-kernels' PadShortcut) subsamples and
    // zero-pads: check it against a hand computation.
    let shortcut = resnetc_kernels::PadShortcut::new(2, 4, 2);
    let x = Tensor::<4>::ones([1, 2, 4, 4], &device);
    let y = shortcut.forward(x);
    assert_eq!(y.dims(), [1, 4, 2, 2]);
    let v: Vec<f32> = y.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(&v[0..4], &[0.0; 4], "first padded channel is zero");
    assert_eq!(&v[4..12], &[1.0; 8], "input channels are kept");
    assert_eq!(&v[12..16], &[0.0; 4], "last padded channel is zero");
}

#[test]
fn densenet_40_12_concatenates_and_counts() {
    let device = Device::flex();
    let model = specs::densenet_40_12::Densenet4012::new(&device);
    let c = census(&model);
    assert_eq!(c.trainable, specs::densenet_40_12::Densenet4012::PARAMS);
    assert_names_match(&c, specs::densenet_40_12::SUMMARY);
    assert_eq!(model.forward(input(1, &device)).dims(), [1, 10]);
}

#[test]
fn se_resnet_20_gates_and_counts() {
    let device = Device::flex();
    let model = specs::se_resnet_20::SeResnet20::new(&device);
    let c = census(&model);
    assert_eq!(c.trainable, specs::se_resnet_20::SeResnet20::PARAMS);
    assert_names_match(&c, specs::se_resnet_20::SUMMARY);
    assert_eq!(model.forward(input(2, &device)).dims(), [2, 10]);
}

/// Every shipped network constructs with exactly the checker's parameter count and names.
/// (Construction only: forward passes of the large ones are too slow for CI.)
#[test]
fn every_shipped_network_constructs_with_the_checked_count() {
    let device = Device::flex();
    macro_rules! check {
        ($($module:ident :: $ty:ident),* $(,)?) => {$(
            let model = specs::$module::$ty::new(&device);
            let c = census(&model);
            assert_eq!(c.trainable, specs::$module::$ty::PARAMS, stringify!($module));
            assert_names_match(&c, specs::$module::SUMMARY);
        )*};
    }
    check!(
        resnet_32::Resnet32,
        resnet_44::Resnet44,
        resnet_56::Resnet56,
        resnet_110::Resnet110,
        resnet_164::Resnet164,
        preresnet_110::Preresnet110,
        preresnet_164::Preresnet164,
        wrn_16_4::Wrn164,
        wrn_40_4::Wrn404,
        densenet_bc_100_12::DensenetBc10012,
    );
}

/// A network whose stages mix projected and identity blocks gives the same output
/// for the same input in eval mode (the forward pass is deterministic).
#[test]
fn forward_is_deterministic() {
    let device = Device::flex();
    let model = specs::preresnet_110::Preresnet110::new(&device);
    let x = input(1, &device);
    let a: Vec<f32> = model.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    let b: Vec<f32> = model.forward(x).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(a, b);
}

/// The language-feature cases of tests/cases compile, run, and count as checked:
/// Burn's `num_params()` is our trainable count plus the BatchNorm running statistics.
#[test]
fn every_case_runs_with_the_checked_count() {
    let device = Device::flex();
    assert!(!specs::CASES.is_empty());
    for (name, run, summary) in specs::CASES {
        let json: serde_json::Value = serde_json::from_str(summary).unwrap();
        let bn_buffers: u64 = json["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["kind"] == "bn")
            .map(|l| l["params"].as_u64().unwrap())
            .sum();
        let classes = json["layers"].as_array().unwrap().last().unwrap()["output"][0].as_u64().unwrap() as usize;
        let (burn_params, params, dims) = run(&device);
        assert_eq!(params as u64, json["params"].as_u64().unwrap(), "{name}: PARAMS is the checker's count");
        assert_eq!(burn_params as u64, params as u64 + bn_buffers, "{name}: Burn counts the same parameters");
        assert_eq!(dims, [2, classes], "{name}: output shape");
    }
}

/// The identity-mapping ablations (specs/ablations) construct with the checker's parameter
/// count and names, and run (batch 1) to finite class scores.
#[test]
fn every_ablation_constructs_and_runs() {
    let device = Device::flex();
    macro_rules! check {
        ($($module:ident :: $ty:ident),* $(,)?) => {$(
            let model = specs::$module::$ty::new(&device);
            let c = census(&model);
            assert_eq!(c.trainable, specs::$module::$ty::PARAMS, stringify!($module));
            assert_names_match(&c, specs::$module::SUMMARY);
            let out = model.valid().forward(input(1, &device));
            assert_eq!(out.dims(), [1, 10], stringify!($module));
            let values: Vec<f32> = out.into_data().try_to_vec::<f32>().unwrap();
            assert!(values.iter().all(|v| v.is_finite()), stringify!($module));
        )*};
    }
    check!(
        ablation_original::Original,
        ablation_constant_scaling::ConstantScaling,
        ablation_exclusive_gating::ExclusiveGating,
        ablation_shortcut_only_gating::ShortcutOnlyGating,
        ablation_conv_shortcut::ConvShortcut,
        ablation_dropout_shortcut::DropoutShortcut,
        ablation_bn_after_addition::BnAfterAddition,
        ablation_relu_before_addition::ReluBeforeAddition,
        ablation_relu_only_preactivation::ReluOnlyPreactivation,
        ablation_full_preactivation::FullPreactivation,
    );
}

/// The emitted constructor passes each copy its `index`: stochastic depth's rates rise with
/// depth as in the IR (block l of L at `0.5 * l / L`), and the network runs.
#[test]
fn sd_resnet_110_gives_each_copy_its_rate() {
    let device = Device::flex();
    let model = specs::sd_resnet_110::SdResnet110::new(&device);
    let stages = [&model.stage1, &model.stage2, &model.stage3];
    let rates: Vec<f64> = stages.iter().flat_map(|s| s.iter().map(|b| b.drop_path1.prob)).collect();
    assert_eq!(rates.len(), 54);
    for (l, p) in rates.iter().enumerate() {
        assert!((p - 0.5 * (l + 1) as f64 / 54.0).abs() < 1e-12, "block {}: {p}", l + 1);
    }
    let out = model.forward(input(2, &device));
    assert_eq!(out.dims(), [2, 10]);
}
