//! The network built at run time from the IR is the network `resnetc compile` emits:
//! same parameter names and shapes, and a checkpoint saved from one loads into the other
//! and gives the same outputs for the same input.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use resnetc_codegen_tests as generated;
use resnetc_compiler::Compilation;
use resnetc_runtime::model::{DynNet, tensor_paths};

fn network(path: &str) -> resnetc_compiler::Network {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let text = std::fs::read_to_string(format!("{root}/{path}")).unwrap();
    let mut c = Compilation::new();
    let id = c.add_source(path, text);
    c.check(id, &[]).unwrap_or_else(|d| panic!("{}", c.render(&d, false)))
}

fn max_diff(a: &Tensor<2>, b: &Tensor<2>) -> f32 {
    let a: Vec<f32> = a.clone().into_data().try_to_vec::<f32>().unwrap();
    let b: Vec<f32> = b.clone().into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

macro_rules! same_network {
    ($test:ident, $path:literal, $ty:ty) => {
        #[test]
        fn $test() {
            let device = Device::flex();
            let net = network($path);
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
