//! Every invalid spec in tests/errors fails with diagnostics rendered as the CLI shows them
//! (no colour), snapshotted. One test per file; each file holds one defect (many-errors.net holds several).

mod common;

use common::{load, net_files, snapshot_name};

fn snapshot_errors(path: &str) {
    let (c, id) = load(path);
    let diagnostics = match c.compile(id, &[]) {
        Ok(_) => panic!("{path} compiled, but it is in tests/errors"),
        Err(d) => d,
    };
    assert!(!diagnostics.is_empty());
    for d in &diagnostics {
        if let Some(span) = d.span {
            let (line, col) = c.sources.line_col(span);
            assert!(line >= 1 && col >= 1, "{path}: diagnostics point at a line and column");
        }
    }
    let rendered = c.render(&diagnostics, false);
    insta::with_settings!({ input_file => common::root().join(path), prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(format!("{}.err", snapshot_name(path)), rendered);
    });
}

macro_rules! error_tests {
    ($($test:ident => $path:literal,)*) => {
        $( #[test] fn $test() { snapshot_errors($path); } )*

        #[test]
        fn every_error_file_has_a_test() {
            let listed = [$($path),*];
            let files = net_files("tests/errors");
            assert!(files.len() >= 30, "at least 30 invalid specs");
            for file in files {
                assert!(listed.contains(&file.as_str()), "{file} has no test: add it to tests/errors.rs");
            }
        }
    };
}

error_tests! {
    act_differs_between_calls => "tests/errors/act-differs-between-calls.net",
    act_not_activation => "tests/errors/act-not-activation.net",
    act_too_many_arguments => "tests/errors/act-too-many-arguments.net",
    act_with_arguments => "tests/errors/act-with-arguments.net",
    activation_bad_range => "tests/errors/activation-bad-range.net",
    bias_init_without_bias => "tests/errors/bias-init-without-bias.net",
    merge_duplicate_branch => "tests/errors/merge-duplicate-branch.net",
    merge_no_branch => "tests/errors/merge-no-branch.net",
    merge_not_elementwise => "tests/errors/merge-not-elementwise.net",
    merge_shape_mismatch => "tests/errors/merge-shape-mismatch.net",
    merge_unused_branch => "tests/errors/merge-unused-branch.net",
    block_shadows_primitive => "tests/errors/block-shadows-primitive.net",
    bn_after_linear => "tests/errors/bn-after-linear.net",
    concat_spatial_mismatch => "tests/errors/concat-spatial-mismatch.net",
    default_not_constant => "tests/errors/default-not-constant.net",
    depth_rule => "tests/errors/depth-rule.net",
    division_by_zero => "tests/errors/division-by-zero.net",
    dropout_out_of_range => "tests/errors/dropout-out-of-range.net",
    duplicate_argument => "tests/errors/duplicate-argument.net",
    duplicate_block => "tests/errors/duplicate-block.net",
    float_channels => "tests/errors/float-channels.net",
    groups_not_divisible => "tests/errors/groups-not-divisible.net",
    group_norm_groups => "tests/errors/group-norm-groups.net",
    channel_conv_unpooled => "tests/errors/channel-conv-unpooled.net",
    drop_path_rate => "tests/errors/drop-path-rate.net",
    shake_of_a_scalar => "tests/errors/shake-of-a-scalar.net",
    slice_beyond_channels => "tests/errors/slice-beyond-channels.net",
    pair_for_channels => "tests/errors/pair-for-channels.net",
    pair_kernel_too_tall => "tests/errors/pair-kernel-too-tall.net",
    pad_shortcut_before => "tests/errors/pad-shortcut-before.net",
    shift_past_the_map => "tests/errors/shift-past-the-map.net",
    input_misplaced => "tests/errors/input-misplaced.net",
    input_missing => "tests/errors/input-missing.net",
    input_rank => "tests/errors/input-rank.net",
    integer_overflow => "tests/errors/integer-overflow.net",
    literal_too_large => "tests/errors/literal-too-large.net",
    many_errors => "tests/errors/many-errors.net",
    missing_argument => "tests/errors/missing-argument.net",
    mul_shape_mismatch => "tests/errors/mul-shape-mismatch.net",
    negative_channels => "tests/errors/negative-channels.net",
    no_network => "tests/errors/no-network.net",
    non_boolean_condition => "tests/errors/non-boolean-condition.net",
    output_not_flat => "tests/errors/output-not-flat.net",
    pad_shortcut_reduces => "tests/errors/pad-shortcut-reduces.net",
    pool_leaves_no_pixels => "tests/errors/pool-leaves-no-pixels.net",
    recursion => "tests/errors/recursion.net",
    residual_shape_mismatch => "tests/errors/residual-shape-mismatch.net",
    stage_count_float => "tests/errors/stage-count-float.net",
    stage_count_too_large => "tests/errors/stage-count-too-large.net",
    stage_count_zero => "tests/errors/stage-count-zero.net",
    stage_of_primitive => "tests/errors/stage-of-primitive.net",
    stride_leaves_no_pixels => "tests/errors/stride-leaves-no-pixels.net",
    syntax_missing_brace => "tests/errors/syntax-missing-brace.net",
    syntax_mixed_combinators => "tests/errors/syntax-mixed-combinators.net",
    syntax_stray_character => "tests/errors/syntax-stray-character.net",
    too_deep_nesting => "tests/errors/too-deep-nesting.net",
    too_many_arguments => "tests/errors/too-many-arguments.net",
    two_networks => "tests/errors/two-networks.net",
    unknown_argument => "tests/errors/unknown-argument.net",
    unknown_block => "tests/errors/unknown-block.net",
    unknown_function => "tests/errors/unknown-function.net",
    unknown_name => "tests/errors/unknown-name.net",
    typo_in_untaken_branch => "tests/errors/typo-in-untaken-branch.net",
}

/// One run reports every independent defect, not just the first.
#[test]
fn all_errors_are_reported_at_once() {
    let (c, id) = load("tests/errors/many-errors.net");
    let diagnostics = c.compile(id, &[]).unwrap_err();
    let codes: Vec<&str> = diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes.len(), 4, "{codes:?}");
    let (c, id) = load("tests/errors/typo-in-untaken-branch.net");
    assert_eq!(c.compile(id, &[]).unwrap_err().len(), 2, "both typos in the untaken branch");
}

/// An error inside a block expanded many times is reported once, pointing at the call site too.
#[test]
fn errors_in_repeated_blocks_are_reported_once() {
    let (c, id) = load("tests/errors/residual-shape-mismatch.net");
    let diagnostics = c.compile(id, &[]).unwrap_err();
    assert_eq!(diagnostics.len(), 1);
    assert!(diagnostics[0].notes.iter().any(|n| n.message.contains("while expanding `plain_basic`")));
}
