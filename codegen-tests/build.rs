//! Generates Burn code for every shipped spec with the compiler library, as a user's build script would.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut index = String::new();
    let mut cases = Vec::new();
    for (folder, prefix) in
        [("specs", ""), ("specs/ablations", "ablation_"), ("specs/imagenet", "imagenet_"), ("tests/cases", "case_")]
    {
        let dir = root.join(folder);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .expect("spec folder is readable")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "net"))
            .collect();
        paths.sort();
        for path in paths {
            println!("cargo:rerun-if-changed={}", path.display());
            let stem = format!("{prefix}{}", path.file_stem().unwrap().to_string_lossy().replace('-', "_"));
            let text = std::fs::read_to_string(&path).expect("spec is readable");
            let name = format!("{folder}/{}", path.file_name().unwrap().to_string_lossy());
            let mut compilation = resnetc_compiler::Compilation::new();
            let id = compilation.add_source(&name, text);
            let network = match compilation.check(id, &[]) {
                Ok(n) => n,
                Err(d) => panic!("{}", compilation.render(&d, false)),
            };
            let code =
                resnetc_compiler::emit::emit(&network).unwrap_or_else(|d| panic!("{}", compilation.render(&d, false)));
            std::fs::write(Path::new(&out_dir).join(format!("{stem}.rs")), code).expect("OUT_DIR is writable");
            let summary = serde_json::to_string(&network.summary_json()).expect("summary serialises");
            std::fs::write(Path::new(&out_dir).join(format!("{stem}.json")), summary).expect("OUT_DIR is writable");
            // Each module also gets type-erased entry points, so tests can loop over all of them.
            let ty = &network.type_name;
            let [c, h, w] = network.input.as_chw().expect("checked networks take C×H×W");
            writeln!(
                index,
                "pub mod {stem} {{\n\
             include!(concat!(env!(\"OUT_DIR\"), \"/{stem}.rs\"));\n\
             pub const SUMMARY: &str = include_str!(concat!(env!(\"OUT_DIR\"), \"/{stem}.json\"));\n\
             /// Build the network, run a zero batch of two, return Burn's parameter count and the output dims.\n\
             pub fn run(device: &burn::tensor::Device) -> (usize, usize, [usize; 2]) {{\n\
                 use burn::module::Module;\n\
                 let model = {ty}::new(device);\n\
                 let out = model.forward(burn::tensor::Tensor::zeros([2, {c}, {h}, {w}], device));\n\
                 (model.num_params(), {ty}::PARAMS, out.dims())\n\
             }}\n}}"
            )
            .unwrap();
            if prefix == "case_" {
                cases.push(stem);
            }
        }
    }
    // Shipped specs with network parameters overridden (`--set`): an activation switched, and
    // the reduced networks of the PyTorch oracle (tests/oracle/cases.tsv, as `oracle_<name>`).
    let mut variants: Vec<(String, String, String)> = vec![
        ("resnet_20_prelu".into(), "specs/resnet-20.net".into(), "act=prelu".into()),
        ("wrn_16_4_mish".into(), "specs/wrn-16-4.net".into(), "act=mish".into()),
    ];
    let oracle = root.join("tests/oracle/cases.tsv");
    println!("cargo:rerun-if-changed={}", oracle.display());
    for line in std::fs::read_to_string(&oracle).expect("tests/oracle/cases.tsv is readable").lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let [name, spec, set] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("tests/oracle/cases.tsv: expected name, spec and overrides: {line}")
        };
        variants.push((format!("oracle_{}", name.replace('-', "_")), spec.into(), set.into()));
    }
    for (stem, spec, set) in &variants {
        let path = root.join(spec);
        let text = std::fs::read_to_string(&path).expect("spec is readable");
        let mut compilation = resnetc_compiler::Compilation::new();
        let id = compilation.add_source(spec.as_str(), text);
        let set: Vec<_> =
            set.split(',').map(|s| resnetc_compiler::Override::parse(s).expect("an override NAME=VALUE")).collect();
        let network = compilation.check(id, &set).unwrap_or_else(|d| panic!("{}", compilation.render(&d, false)));
        let code =
            resnetc_compiler::emit::emit(&network).unwrap_or_else(|d| panic!("{}", compilation.render(&d, false)));
        std::fs::write(Path::new(&out_dir).join(format!("{stem}.rs")), code).expect("OUT_DIR is writable");
        writeln!(index, "pub mod {stem} {{ include!(concat!(env!(\"OUT_DIR\"), \"/{stem}.rs\")); }}").unwrap();
    }
    writeln!(
        index,
        "/// Builds a network, runs it, returns (Burn's parameter count, `PARAMS`, output dims).\npub type Runner = fn(&burn::tensor::Device) -> (usize, usize, [usize; 2]);\n/// Every spec of tests/cases: its name, `run` entry point and checked summary (JSON).\npub const CASES: &[(&str, Runner, &str)] = &[{}];",
        cases.iter().map(|c| format!("(\"{c}\", {c}::run, {c}::SUMMARY)")).collect::<Vec<_>>().join(", ")
    )
    .unwrap();
    std::fs::write(Path::new(&out_dir).join("specs.rs"), index).expect("OUT_DIR is writable");
}
