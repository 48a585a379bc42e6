//! The network built at run time from the IR is the network `resnetc compile` emits:
//! same parameter names and shapes, and a checkpoint saved from one loads into the other
//! and gives the same outputs for the same input.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use resnetc_codegen_tests as generated;
use resnetc_compiler::Compilation;
use resnetc_runtime::model::{DynNet, tensor_paths};

mod common;
use common::network_with;

fn network(path: &str) -> resnetc_compiler::Network {
    network_with(path, &[])
}

fn max_diff(a: &Tensor<2>, b: &Tensor<2>) -> f32 {
    let a: Vec<f32> = a.clone().into_data().try_to_vec::<f32>().unwrap();
    let b: Vec<f32> = b.clone().into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

macro_rules! same_network {
    ($test:ident, $path:literal, $ty:ty) => {
        same_network!($test, $path, $ty, []);
    };
    ($test:ident, $path:literal, $ty:ty, [$($set:literal),*]) => {
        #[test]
        fn $test() {
            let device = Device::flex();
            let net = network_with($path, &[$($set),*]);
            let dynamic = DynNet::new(&net, &device);
            let emitted = <$ty>::new(&device);
            assert_eq!(dynamic.tensor_paths(), tensor_paths(&emitted), "parameter names and shapes");

            let [c, h, w] = <$ty>::INPUT;
            let x = Tensor::<4>::random([2, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let dynamic = dynamic.valid();

            let dir = std::env::temp_dir().join(format!("resnetc-model-{}-{}", stringify!($test), std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("weights.bpk");
            dynamic.clone().save_file(&file).unwrap();

            let before = emitted.valid().forward(x.clone());
            let loaded =
                <$ty>::new(&device).try_load_file(&file).expect("the checkpoint loads into the emitted struct").valid();
            let expected = dynamic.forward(x.clone());
            assert!(max_diff(&before, &expected) > 1e-3, "independent initialisations differ");
            let got = loaded.forward(x);
            assert!(max_diff(&got, &expected) < 1e-4, "same weights, same outputs: {}", max_diff(&got, &expected));
            std::fs::remove_dir_all(dir).unwrap();
        }
    };
}

same_network!(resnet_20, "specs/resnet-20.net", generated::resnet_20::Resnet20);
same_network!(resnet_20_a, "specs/resnet-20-a.net", generated::resnet_20_a::Resnet20A);
same_network!(preresnet_110, "specs/preresnet-110.net", generated::preresnet_110::Preresnet110);
same_network!(densenet_40_12, "specs/densenet-40-12.net", generated::densenet_40_12::Densenet4012);
same_network!(densenet_bc_100_12, "specs/densenet-bc-100-12.net", generated::densenet_bc_100_12::DensenetBc10012);
same_network!(se_resnet_20, "specs/se-resnet-20.net", generated::se_resnet_20::SeResnet20);
same_network!(wrn_16_4, "specs/wrn-16-4.net", generated::wrn_16_4::Wrn164);
same_network!(activations, "tests/cases/activations.net", generated::case_activations::Activations);
same_network!(language_tour, "tests/cases/language-tour.net", generated::case_language_tour::Tour);
same_network!(flat_head, "tests/cases/flat-head.net", generated::case_flat_head::FlatHead);
same_network!(mission_line, "tests/cases/mission-line.net", generated::case_mission_line::Mission);
same_network!(untaken_branch, "tests/cases/untaken-branch.net", generated::case_untaken_branch::Untaken);
same_network!(merge_tour, "tests/cases/merge.net", generated::case_merge::MergeTour);
same_network!(
    activation_params,
    "tests/cases/activation-params.net",
    generated::case_activation_params::ActivationParams
);
same_network!(resnet_20_prelu, "specs/resnet-20.net", generated::resnet_20_prelu::Resnet20, ["act=prelu"]);
same_network!(wrn_16_4_mish, "specs/wrn-16-4.net", generated::wrn_16_4_mish::Wrn164, ["act=mish"]);

/// `--set act=...` switches every activation of a shipped network: the layers change kind
/// (PReLU adds one learned slope per channel), everything else stays.
#[test]
fn act_switches_the_whole_family() {
    let relu = network("specs/resnet-56.net");
    let mish = network_with("specs/resnet-56.net", &["act=mish"]);
    let prelu = network_with("specs/resnet-56.net", &["act=prelu"]);
    let kinds = |n: &resnetc_compiler::Network, kind: &str| n.summary_rows().iter().filter(|r| r.kind == kind).count();
    // Stem, then two per unit of 27 basic units.
    assert_eq!(kinds(&relu, "relu"), 1 + 2 * 27);
    assert_eq!((kinds(&mish, "mish"), kinds(&mish, "relu")), (55, 0));
    assert_eq!((kinds(&prelu, "prelu"), kinds(&prelu, "relu")), (55, 0));
    assert_eq!(mish.trainable_params, relu.trainable_params);
    // One slope per channel: the stem's 16 and each unit's two activations at its width.
    let slopes: u64 = 16 + 2 * 9 * (16 + 32 + 64);
    assert_eq!(prelu.trainable_params, relu.trainable_params + slopes);
    let device = Device::flex();
    let x = Tensor::<4>::random([1, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    assert_eq!(DynNet::new(&mish, &device).valid().forward(x).dims(), [1, 10]);
}
same_network!(
    exclusive_gating,
    "specs/ablations/exclusive-gating.net",
    generated::ablation_exclusive_gating::ExclusiveGating
);
same_network!(
    constant_scaling,
    "specs/ablations/constant-scaling.net",
    generated::ablation_constant_scaling::ConstantScaling
);

/// Reads every float tensor whose module path ends with `suffix`.
struct Read {
    path: Vec<String>,
    suffix: &'static str,
    values: Vec<f32>,
    hits: usize,
}

impl burn::module::ModuleVisitor for Read {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if self.path.join(".").ends_with(self.suffix) {
            self.hits += 1;
            self.values.extend(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
}

fn read<M: Module>(module: &M, suffix: &'static str) -> Read {
    let mut r = Read { path: Vec::new(), suffix, values: Vec::new(), hits: 0 };
    module.visit(&mut r);
    r
}

/// `bias_init` starts every bias entry at its value, in the run-time and the emitted network.
#[test]
fn bias_init_sets_the_gate_bias() {
    let device = Device::flex();
    let net = network("specs/ablations/exclusive-gating.net");
    let dynamic = read(&DynNet::new(&net, &device), "conv4.bias");
    let emitted = read(&generated::ablation_exclusive_gating::ExclusiveGating::new(&device), "conv4.bias");
    for r in [&dynamic, &emitted] {
        assert_eq!(r.hits, 54, "one gate per unit of ResNet-110");
        assert_eq!(r.values.len(), 18 * 16 + 18 * 32 + 18 * 64);
        assert!(r.values.iter().all(|&v| v == -6.0));
    }
    // Other biases keep Burn's initialiser: the classifier's is not constant.
    let linear = read(&DynNet::new(&net, &device), "linear1.bias");
    assert!(linear.values.iter().any(|&v| v != linear.values[0]));
}

/// Sets `linear1.weight` to the identity and `linear1.bias` to zero.
struct IdentityHead {
    path: Vec<String>,
}

impl burn::module::ModuleMapper for IdentityHead {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
        match self.path.join(".").as_str() {
            "linear1.weight" => param.map(|t| {
                let dims = t.dims();
                let n = dims[0];
                let eye: Vec<f32> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
                Tensor::from_data(burn::tensor::TensorData::new(eye, dims), &t.device())
            }),
            "linear1.bias" => param.map(|t| t.zeros_like()),
            _ => param,
        }
    }
}

/// A merge of parameter-free branches computes its expression, element by element, with every
/// operator and operand order (tensor and scalar on either side).
#[test]
fn merge_computes_its_expression() {
    let text = "network m(classes = 6, k = 0.25) {
        input 6x1x1
        merge {
            a = { }
            b = { sigmoid }
            c = { relu }
        } => -a / 2 + k * b - a / (b + 1) + 3 / (b + 1) - (k - 1.5) * c * b - 1 + (2 - c) * 0.5
        linear(classes)
    }";
    let mut c = Compilation::new();
    let id = c.add_source("m.net", text.to_string());
    let net = c.check(id, &[]).unwrap_or_else(|d| panic!("{}", c.render(&d, false)));
    let device = Device::flex();
    let model = DynNet::new(&net, &device).map(&mut IdentityHead { path: Vec::new() }).valid();
    let input = [-2.0f32, -0.5, 0.0, 0.3, 1.0, 4.0];
    let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(input.to_vec(), [1, 6, 1, 1]), &device);
    let got: Vec<f32> = model.forward(x).into_data().try_to_vec::<f32>().unwrap();
    let k = 0.25f32;
    for (a, g) in input.iter().zip(&got) {
        let b = 1.0 / (1.0 + (-a).exp());
        let c = a.max(0.0);
        let want = -a / 2.0 + k * b - a / (b + 1.0) + 3.0 / (b + 1.0) - (k - 1.5) * c * b - 1.0 + (2.0 - c) * 0.5;
        assert!((want - g).abs() < 1e-5, "x = {a}: want {want}, got {g}");
    }
}

/// Zeroes the float tensors at the given module paths (`stage1.1.bn2.gamma`).
struct Zero {
    path: Vec<String>,
    targets: Vec<&'static str>,
    hits: usize,
}

impl burn::module::ModuleMapper for Zero {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
        if self.targets.contains(&self.path.join(".").as_str()) {
            self.hits += 1;
            param.map(|t| t.zeros_like())
        } else {
            param
        }
    }
}

#[test]
fn residual_units_are_found_in_forward_order() {
    let device = Device::flex();
    let blocks = |path| DynNet::new(&network(path), &device).residual_blocks();
    let names = |stages: usize, n: usize| -> Vec<String> {
        (1..=stages).flat_map(|s| (0..n).map(move |i| format!("stage{s}.{i}"))).collect()
    };
    assert_eq!(blocks("specs/resnet-20.net"), names(3, 3));
    assert_eq!(blocks("specs/resnet-20-a.net"), names(3, 3), "option-A shortcuts (pad) are shortcuts too");
    assert_eq!(blocks("specs/preresnet-110.net").len(), 54);
    assert_eq!(blocks("specs/wrn-16-4.net"), names(3, 2));
    assert!(blocks("specs/densenet-40-12.net").is_empty(), "concatenation is not a residual unit");
}

#[test]
fn a_lesion_removes_the_residual_branch_and_keeps_the_shortcut() {
    let device = Device::flex();
    let net = network("specs/resnet-20.net");
    // Zero the last BN's scale of stage1.1's residual branch: in eval mode the branch then adds
    // exactly beta = 0, so the intact network computes what the lesioned one does.
    let mut zero = Zero { path: Vec::new(), targets: vec!["stage1.1.bn2.gamma"], hits: 0 };
    let model = DynNet::new(&net, &device).map(&mut zero).valid();
    assert_eq!(zero.hits, 1);
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let intact = model.forward(x.clone());
    let lesioned = model.lesion(&["stage1.1"]).unwrap().forward(x.clone());
    assert!(max_diff(&intact, &lesioned) < 1e-5, "{}", max_diff(&intact, &lesioned));

    // Any other unit's branch does contribute; removing it changes the output, and lesions
    // leave the original network intact.
    let other = model.lesion(&["stage2.0"]).unwrap().forward(x.clone());
    assert!(max_diff(&intact, &other) > 1e-3);
    let both = model.lesion(&["stage1.1", "stage2.0"]).unwrap().forward(x.clone());
    assert!(max_diff(&other, &both) < 1e-5);
    assert!(max_diff(&intact, &model.forward(x)) < 1e-6);

    let e = model.lesion(&["stage4.0"]).unwrap_err();
    assert!(e.contains("stage4.0 is not a residual block") && e.contains("stage3.2"), "{e}");
    assert!(model.lesion(&["stage1"]).is_err() && model.lesion(&["conv1"]).is_err());
}
