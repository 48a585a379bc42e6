//! Every stage snapshotted for every valid spec: the parsed AST (canonical form),
//! the checked IR (per-layer summary) and the emitted Rust. One test per file.

mod common;

use common::{check, load, net_files, snapshot_name};

fn snapshot_stages(path: &str) {
    let (c, id) = load(path);
    let ast = c.parse(id).unwrap_or_else(|d| panic!("{}", c.render(&d, false)));
    let network = check(path, &[]);
    let rust = resnetc_compiler::emit::emit(&network).unwrap_or_else(|d| panic!("{}", c.render(&d, false)));
    let name = snapshot_name(path);
    insta::with_settings!({ input_file => common::root().join(path), prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(format!("{name}.ast"), ast.to_string());
        insta::assert_snapshot!(format!("{name}.ir"), network.summary_table());
        insta::assert_snapshot!(format!("{name}.rs"), rust);
    });
}

macro_rules! stage_tests {
    ($($test:ident => $path:literal,)*) => {
        $( #[test] fn $test() { snapshot_stages($path); } )*

        /// No spec is left without its test.
        #[test]
        fn every_spec_file_has_a_stage_test() {
            let listed = [$($path),*];
            for folder in ["specs", "specs/ablations", "specs/imagenet", "tests/cases"] {
                for file in net_files(folder) {
                    assert!(listed.contains(&file.as_str()), "{file} has no stage test: add it to tests/stages.rs");
                }
            }
        }
    };
}

stage_tests! {
    densenet_40_12 => "specs/densenet-40-12.net",
    densenet_bc_100_12 => "specs/densenet-bc-100-12.net",
    densenet_bc_190_40 => "specs/densenet-bc-190-40.net",
    preresnet_1001 => "specs/preresnet-1001.net",
    preresnet_110 => "specs/preresnet-110.net",
    preresnet_164 => "specs/preresnet-164.net",
    resnet_110 => "specs/resnet-110.net",
    resnet_1202 => "specs/resnet-1202.net",
    resnet_164 => "specs/resnet-164.net",
    resnet_20_a => "specs/resnet-20-a.net",
    resnet_20 => "specs/resnet-20.net",
    resnet_32 => "specs/resnet-32.net",
    resnet_44 => "specs/resnet-44.net",
    resnet_56 => "specs/resnet-56.net",
    resnext_29_16x64d => "specs/resnext-29-16x64d.net",
    resnext_29_8x16d => "specs/resnext-29-8x16d.net",
    resnext_29_8x64d => "specs/resnext-29-8x64d.net",
    se_resnet_20 => "specs/se-resnet-20.net",
    wrn_16_4 => "specs/wrn-16-4.net",
    wrn_16_8 => "specs/wrn-16-8.net",
    wrn_28_10 => "specs/wrn-28-10.net",
    wrn_40_4 => "specs/wrn-40-4.net",
    ablation_bn_after_addition => "specs/ablations/bn-after-addition.net",
    ablation_constant_scaling => "specs/ablations/constant-scaling.net",
    ablation_conv_shortcut => "specs/ablations/conv-shortcut.net",
    ablation_dropout_shortcut => "specs/ablations/dropout-shortcut.net",
    ablation_exclusive_gating => "specs/ablations/exclusive-gating.net",
    ablation_full_preactivation => "specs/ablations/full-preactivation.net",
    ablation_original => "specs/ablations/original.net",
    ablation_relu_before_addition => "specs/ablations/relu-before-addition.net",
    ablation_relu_only_preactivation => "specs/ablations/relu-only-preactivation.net",
    ablation_shortcut_only_gating => "specs/ablations/shortcut-only-gating.net",
    case_activations => "tests/cases/activations.net",
    case_activation_params => "tests/cases/activation-params.net",
    case_merge => "tests/cases/merge.net",
    case_flat_head => "tests/cases/flat-head.net",
    case_imagenet_stem => "tests/cases/imagenet-stem.net",
    case_language_tour => "tests/cases/language-tour.net",
    case_mission_line => "tests/cases/mission-line.net",
    case_untaken_branch => "tests/cases/untaken-branch.net",
    sd_resnet_110 => "specs/sd-resnet-110.net",
    pyramidnet_110_48 => "specs/pyramidnet-110-48.net",
    pyramidnet_110_270 => "specs/pyramidnet-110-270.net",
    shake_shake_26_2x96d => "specs/shake-shake-26-2x96d.net",
    case_norms => "tests/cases/norms.net",
    imagenet_convnext_atto => "specs/imagenet/convnext-atto.net",
    imagenet_resnet_50 => "specs/imagenet/resnet-50.net",
    imagenet_resnet_50_gn => "specs/imagenet/resnet-50-gn.net",
    imagenet_resnet_50_d => "specs/imagenet/resnet-50-d.net",
    imagenet_se_resnext_50 => "specs/imagenet/se-resnext-50.net",
    imagenet_eca_resnet_50_d => "specs/imagenet/eca-resnet-50-d.net",
    imagenet_regnety_200mf => "specs/imagenet/regnety-200mf.net",
    imagenet_res2net_50_26w_4s => "specs/imagenet/res2net-50-26w-4s.net",
    case_res2net => "tests/cases/res2net.net",
    case_factorised => "tests/cases/factorised.net",
    case_channel_splits => "tests/cases/channel-splits.net",
    case_shortcuts => "tests/cases/shortcuts.net",
    case_photo_64 => "tests/cases/photo-64.net",
}

/// Emission is deterministic byte for byte, and repeated blocks do not multiply code.
#[test]
fn emission_is_deterministic_and_compact() {
    let small = resnetc_compiler::emit::emit(&check("specs/resnet-20.net", &[])).unwrap();
    let again = resnetc_compiler::emit::emit(&check("specs/resnet-20.net", &[])).unwrap();
    assert_eq!(small, again);
    assert!(small.starts_with(resnetc_compiler::emit::HEADER));
    let big = resnetc_compiler::emit::emit(&check("specs/preresnet-1001.net", &[])).unwrap();
    assert!(
        big.lines().count() < small.lines().count() * 2,
        "preresnet-1001 emits {} lines, resnet-20 {}",
        big.lines().count(),
        small.lines().count()
    );
}

/// The canonical AST text parses back to the same AST.
#[test]
fn ast_text_round_trips() {
    for folder in ["specs", "specs/ablations", "specs/imagenet", "tests/cases"] {
        for file in net_files(folder) {
            let (c, id) = load(&file);
            let printed = c.parse(id).unwrap().to_string();
            let reparsed =
                resnetc_compiler::syntax::parse(&printed, id).unwrap_or_else(|d| panic!("{file}: {d:?}\n{printed}"));
            assert_eq!(reparsed.to_string(), printed, "{file}");
        }
    }
}
