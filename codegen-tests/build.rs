//! Generates Burn code for every shipped spec with the compiler library, as a user's build script would.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rerun-if-changed={}", specs.display());
    let mut paths: Vec<_> = std::fs::read_dir(&specs)
        .expect("specs/ is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .collect();
    paths.sort();
    let mut index = String::new();
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
        let stem = path.file_stem().unwrap().to_string_lossy().replace('-', "_");
        let text = std::fs::read_to_string(&path).expect("spec is readable");
        let name = format!("specs/{}", path.file_name().unwrap().to_string_lossy());
        let mut compilation = resnetc_compiler::Compilation::new();
        let id = compilation.add_source(&name, text);
        let network = match compilation.check(id, &[]) {
            Ok(n) => n,
            Err(d) => panic!("{}", compilation.render(&d, false)),
        };
        let code = resnetc_compiler::emit::emit(&network).unwrap_or_else(|d| panic!("{}", compilation.render(&d, false)));
        std::fs::write(Path::new(&out_dir).join(format!("{stem}.rs")), code).expect("OUT_DIR is writable");
        let summary = serde_json::to_string(&network.summary_json()).expect("summary serialises");
        std::fs::write(Path::new(&out_dir).join(format!("{stem}.json")), summary).expect("OUT_DIR is writable");
        writeln!(
            index,
            "pub mod {stem} {{ include!(concat!(env!(\"OUT_DIR\"), \"/{stem}.rs\")); \
             pub const SUMMARY: &str = include_str!(concat!(env!(\"OUT_DIR\"), \"/{stem}.json\")); }}"
        )
        .unwrap();
    }
    std::fs::write(Path::new(&out_dir).join("specs.rs"), index).expect("OUT_DIR is writable");
}
