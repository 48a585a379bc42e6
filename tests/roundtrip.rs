//! Property test: random well-formed specs built from the prelude's blocks check,
//! emit Rust that parses, and print to an AST text that parses back to itself.

use proptest::prelude::*;
use resnetc_compiler::Compilation;

#[derive(Debug, Clone)]
struct Stage {
    count: u32,
    block: &'static str,
    planes: u32,
    stride2: bool,
}

fn stage() -> impl Strategy<Value = Stage> {
    let blocks = prop::sample::select(vec![
        "basic",
        "bottleneck",
        "preact_basic",
        "preact_bottleneck",
        "wide_basic",
        "resnext_bottleneck",
        "dense_layer",
        "dense_bottleneck",
    ]);
    (1u32..4, blocks, prop::sample::select(vec![4u32, 8, 16, 32]), any::<bool>())
        .prop_map(|(count, block, planes, stride2)| Stage { count, block, planes, stride2 })
}

fn spec() -> impl Strategy<Value = String> {
    (
        1u32..5,
        prop::sample::select(vec![8u32, 16, 32]),
        prop::sample::select(vec![4u32, 8, 16]),
        prop::collection::vec(stage(), 1..4),
        any::<bool>(),
        2u32..200,
    )
        .prop_map(|(channels, size, stem, stages, head_bn, classes)| {
            let mut body = format!("    input {channels}x{size}x{size}\n    conv3x3({stem})\n");
            let mut spatial = size;
            for s in &stages {
                let stride = if s.stride2 && spatial >= 4 {
                    spatial /= 2;
                    2
                } else {
                    1
                };
                let call = match s.block {
                    "dense_layer" | "dense_bottleneck" => format!("{}({})", s.block, s.planes),
                    "wide_basic" => format!("wide_basic({}, stride = {stride}, dropout = 0.1)", s.planes),
                    "resnext_bottleneck" => {
                        format!("resnext_bottleneck({}, stride = {stride}, cardinality = 4)", s.planes * 4)
                    }
                    "preact_bottleneck" => format!("preact_bottleneck({}, stride = {stride}, k = 2)", s.planes),
                    block => format!("{block}({}, stride = {stride})", s.planes),
                };
                body.push_str(&format!("    stage {} × {call}\n", s.count));
                if s.block.starts_with("dense") && stride == 2 {
                    body.push_str("    transition(0.5)\n");
                }
            }
            if head_bn {
                body.push_str("    bn relu\n");
            }
            body.push_str("    global_avg_pool linear(classes)\n");
            format!("# generated\nnetwork random(classes = {classes}) {{\n{body}}}\n")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_specs_check_and_emit(text in spec()) {
        let mut c = Compilation::new();
        let id = c.add_source("<random>", text.clone());
        let network = c.check(id, &[]).map_err(|d| TestCaseError::fail(format!("{}\n{}", text, c.render(&d, false))))?;
        prop_assert!(network.trainable_params > 0);
        let rust = resnetc_compiler::emit::emit(&network).map_err(|d| TestCaseError::fail(c.render(&d, false)))?;
        prop_assert!(syn::parse_file(&rust).is_ok());
        let printed = c.parse(id).unwrap().to_string();
        let reparsed = resnetc_compiler::syntax::parse(&printed, id).unwrap();
        prop_assert_eq!(reparsed.to_string(), printed);
    }

    /// Arbitrary bytes never panic the compiler: they compile or produce diagnostics.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let mut c = Compilation::new();
        let id = c.add_source("<fuzz>", text);
        if let Err(d) = c.compile(id, &[]) {
            prop_assert!(!d.is_empty());
            let _ = c.render(&d, false);
        }
    }

    /// Spec-shaped noise: valid tokens in random order never panic either.
    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(vec![
        "network", "block", "n", "(", ")", "{", "}", "input", "3x32x32", "stage", "×", "x", "basic", "conv3x3",
        "16", "-1", "0", "2.5", "=", ",", "+", "*", "/", "%", "concat", "if", "else", "let", "assert", "true",
        "in_channels", "relu", "bn", "linear", "global_avg_pool", "dropout", "pad_shortcut", "\n",
    ]), 0..60)) {
        let mut c = Compilation::new();
        let id = c.add_source("<soup>", tokens.join(" "));
        if let Err(d) = c.compile(id, &[]) {
            prop_assert!(!d.is_empty());
            let _ = c.render(&d, false);
        }
    }
}
