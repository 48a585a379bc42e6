//! The build-script front door, in the style of prost-build.
//!
//! ```no_run
//! # #![allow(clippy::needless_doctest_main)]
//! // build.rs
//! fn main() {
//!     resnetc_compiler::Build::new()
//!         .spec("specs/resnet-56.net")
//!         .set("classes", 100)
//!         .compile_or_exit();
//! }
//! ```
//!
//! ```ignore
//! // src/main.rs: one module per spec, named after the file (`resnet-56.net` → `resnet_56.rs`).
//! mod resnet56 {
//!     include!(concat!(env!("OUT_DIR"), "/resnet_56.rs"));
//! }
//! ```

use crate::diag::{Diagnostic, codes};
use crate::ir::Value;
use crate::{Compilation, Override};
use std::fmt;
use std::path::{Path, PathBuf};

/// Compiles `.net` specs to Rust files in `OUT_DIR` from a build script.
#[derive(Clone, Debug, Default)]
pub struct Build {
    specs: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    overrides: Vec<Override>,
    out_dir: Option<PathBuf>,
    quiet: bool,
}

/// What a successful [`Build::compile`] wrote and read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// The `.rs` files, one per spec, in the order the specs were given.
    pub files: Vec<PathBuf>,
    /// Every input the output depends on; each was announced with `cargo:rerun-if-changed`.
    pub inputs: Vec<PathBuf>,
}

/// Why a build failed: the diagnostics, and their rendering with file, line and column.
#[derive(Debug)]
pub struct BuildError {
    pub diagnostics: Vec<Diagnostic>,
    pub rendered: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

impl std::error::Error for BuildError {}

impl Build {
    /// Start an empty build.
    ///
    /// # Examples
    /// ```
    /// let build = resnetc_compiler::Build::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one spec file (relative paths are relative to the build script's package).
    ///
    /// # Examples
    /// ```
    /// let build = resnetc_compiler::Build::new().spec("specs/resnet-20.net");
    /// ```
    pub fn spec(mut self, path: impl Into<PathBuf>) -> Self {
        self.specs.push(path.into());
        self
    }

    /// Add every `.net` file of a folder (sorted by name).
    ///
    /// # Examples
    /// ```
    /// let build = resnetc_compiler::Build::new().specs_in("specs/");
    /// ```
    pub fn specs_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dirs.push(dir.into());
        self
    }

    /// Override a network parameter in every spec, as `--set name=value` does.
    ///
    /// # Examples
    /// ```
    /// let build = resnetc_compiler::Build::new().spec("specs/wrn-28-10.net").set("classes", 100).set("dropout", 0.0);
    /// ```
    pub fn set(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.overrides.push(Override { name: name.into(), value: value.into(), span: None });
        self
    }

    /// Write here instead of `$OUT_DIR`.
    ///
    /// # Examples
    /// ```
    /// let build = resnetc_compiler::Build::new().out_dir(std::env::temp_dir());
    /// ```
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Do not print `cargo:` lines (for use outside build scripts).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Compile every spec; write each `.rs` file only when its content changed.
    pub fn compile(self) -> Result<Generated, BuildError> {
        let mut compilation = Compilation::new();
        let mut diagnostics = Vec::new();
        let mut inputs = Vec::new();
        let out_dir = match self.out_dir.clone().or_else(|| std::env::var_os("OUT_DIR").map(PathBuf::from)) {
            Some(dir) => dir,
            None => {
                let d =
                    Diagnostic::global(codes::IO, "OUT_DIR is not set: call from a build script or set .out_dir(...)");
                return Err(error(&compilation, vec![d]));
            }
        };
        let mut specs = self.specs.clone();
        for dir in &self.dirs {
            inputs.push(dir.clone());
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "net"))
                        .collect();
                    found.sort();
                    specs.extend(found);
                }
                Err(e) => diagnostics
                    .push(Diagnostic::global(codes::IO, format!("cannot read folder {}: {e}", dir.display()))),
            }
        }
        let mut outputs = Vec::new();
        for path in &specs {
            inputs.push(path.clone());
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    diagnostics.push(Diagnostic::global(codes::IO, format!("cannot read {}: {e}", path.display())));
                    continue;
                }
            };
            let id = compilation.add_source(path.display().to_string(), text);
            match compilation.compile(id, &self.overrides) {
                Ok(code) => outputs.push((out_dir.join(output_name(path)), code)),
                Err(d) => diagnostics.extend(d),
            }
        }
        if !self.quiet {
            for input in &inputs {
                println!("cargo:rerun-if-changed={}", input.display());
            }
        }
        if !diagnostics.is_empty() {
            return Err(error(&compilation, diagnostics));
        }
        let mut files = Vec::new();
        for (file, code) in outputs {
            let unchanged = std::fs::read_to_string(&file).is_ok_and(|old| old == code);
            if !unchanged && let Err(e) = std::fs::write(&file, code) {
                let d = Diagnostic::global(codes::IO, format!("cannot write {}: {e}", file.display()));
                return Err(error(&compilation, vec![d]));
            }
            files.push(file);
        }
        Ok(Generated { files, inputs })
    }

    /// Compile, or print the rendered diagnostics and exit the build script with status 1.
    pub fn compile_or_exit(self) -> Generated {
        match self.compile() {
            Ok(generated) => generated,
            Err(e) => {
                eprintln!("{}", e.rendered);
                for line in e.rendered.lines() {
                    // Cargo shows build-script warnings even when the build fails.
                    println!("cargo:warning={line}");
                }
                std::process::exit(1)
            }
        }
    }
}

/// `specs/resnet-56.net` → `resnet_56.rs`.
pub fn output_name(spec: &Path) -> String {
    let stem = spec.file_stem().map_or_else(|| "network".into(), |s| s.to_string_lossy().into_owned());
    format!("{}.rs", stem.replace(['-', '.', ' '], "_"))
}

fn error(compilation: &Compilation, diagnostics: Vec<Diagnostic>) -> BuildError {
    let rendered = compilation.render(&diagnostics, false);
    BuildError { diagnostics, rendered }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("resnetc-build-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_one_file_per_spec_and_lists_its_inputs() {
        let dir = temp("ok");
        let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
        let generated = Build::new()
            .spec(specs.join("resnet-20.net"))
            .spec(specs.join("wrn-16-4.net"))
            .set("classes", 100)
            .out_dir(&dir)
            .quiet(true)
            .compile()
            .unwrap();
        assert_eq!(generated.files, vec![dir.join("resnet_20.rs"), dir.join("wrn_16_4.rs")]);
        assert_eq!(generated.inputs, vec![specs.join("resnet-20.net"), specs.join("wrn-16-4.net")]);
        let code = std::fs::read_to_string(dir.join("resnet_20.rs")).unwrap();
        assert!(code.contains("pub const PARAMS: usize = 278324;"), "classes = 100 applied");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rewrites_only_changed_output() {
        let dir = temp("unchanged");
        let spec = dir.join("tiny.net");
        std::fs::write(&spec, "network tiny(classes = 10) { input 3x8x8 conv3x3(4) global_avg_pool linear(classes) }")
            .unwrap();
        let build = || Build::new().spec(&spec).out_dir(&dir).quiet(true).compile().unwrap();
        build();
        let out = dir.join("tiny.rs");
        let first = std::fs::metadata(&out).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        build();
        assert_eq!(std::fs::metadata(&out).unwrap().modified().unwrap(), first, "same content, file untouched");
        std::fs::write(&spec, "network tiny(classes = 10) { input 3x8x8 conv3x3(8) global_avg_pool linear(classes) }")
            .unwrap();
        build();
        assert!(std::fs::read_to_string(&out).unwrap().contains("conv3x3(8)"), "edit reaches the output");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_are_rendered_with_paths() {
        let dir = temp("err");
        let spec = dir.join("bad.net");
        std::fs::write(&spec, "network bad(classes = 10) {\n    input 3x8x8\n    conv3x3(4) basik(4)\n    global_avg_pool linear(classes)\n}\n").unwrap();
        let err =
            Build::new().spec(&spec).spec(dir.join("missing.net")).out_dir(&dir).quiet(true).compile().unwrap_err();
        assert_eq!(err.diagnostics.len(), 2);
        assert!(err.rendered.contains("bad.net:3:16"), "{}", err.rendered);
        assert!(err.rendered.contains("cannot read"), "{}", err.rendered);
        assert!(!dir.join("bad.rs").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn specs_in_takes_every_net_file_sorted() {
        let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
        let dir = temp("dir");
        let generated = Build::new().specs_in(&specs).out_dir(&dir).quiet(true).compile().unwrap();
        let net_files = std::fs::read_dir(&specs)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "net"))
            .count();
        assert_eq!(generated.files.len(), net_files, "the .net files of the folder, not its subfolders");
        assert_eq!(generated.inputs[0], specs, "the folder itself is watched for new specs");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
