//! The properties the fuzzers check (`fuzz/fuzz_targets/`), here so that `cargo test` replays the
//! committed corpora and every finding through exactly the same code (`tests/fuzz_replay.rs`).
//!
//! Each function panics only when a property fails; whatever the input, the compiler itself must
//! answer with a value or diagnostics.

use crate::{Compilation, Override};
use proc_macro2::TokenStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

/// The files of a corpus folder, sorted (none when it does not exist).
pub fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Run `property` on every file, each within `limit` (a hang the fuzzer found must not come
/// back as a test run that never ends), panicking with the file's name; the number run.
pub fn replay(files: &[PathBuf], limit: Duration, property: fn(&[u8])) -> usize {
    for file in files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (tx, rx) = mpsc::channel();
        let name = file.display().to_string();
        let worker = std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || {
                property(&bytes);
                let _ = tx.send(());
            })
            .expect("a thread");
        match rx.recv_timeout(limit) {
            Ok(()) => worker.join().expect("finished"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{name}: the property failed (the panic above)"),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: still running after {limit:?} (a hang)"),
        }
    }
    files.len()
}

/// A spec's text through every stage: parse, check, emit. Diagnostics must render; a spec that
/// checks must emit Rust that `syn` parses, and emitting it twice gives the same text.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Overrides ride on the first line when it starts `#!set `: `#!set depth=8 classes=3`.
    let overrides: Vec<Override> = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!set "))
        .map(|l| l.split_whitespace().filter_map(|o| Override::parse(o).ok()).collect())
        .unwrap_or_default();
    let mut c = Compilation::new();
    let id = c.add_source("fuzz.net", text);
    match c.check(id, &overrides) {
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "an error without a diagnostic");
            let _ = c.render(&diagnostics, false);
        }
        Ok(network) => match crate::emit::emit(&network) {
            Err(diagnostics) => {
                let _ = c.render(&diagnostics, false);
            }
            Ok(code) => {
                if let Err(e) = syn::parse_file(&code) {
                    panic!("a checked spec emitted Rust that does not parse ({e}):\n{code}");
                }
                let again = crate::emit::emit(&network).expect("emitted once");
                assert_eq!(code, again, "emitting is not deterministic");
            }
        },
    }
}

/// `network!`'s token path: text as Rust tokens through the macro's expansion, which must be
/// Rust that parses (the code, or `compile_error!`s). A path literal reads a fixed spec instead
/// of the file system.
pub fn tokens(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(tokens) = TokenStream::from_str(text) else { return };
    let out = crate::network_macro::expand_with(tokens, &|_path: &str| Ok(("/fuzz/tiny.net".into(), FILE_SPEC.into())));
    if let Err(e) = syn::parse2::<syn::File>(out.clone()) {
        panic!("network! expanded to tokens that are not Rust ({e}):\n{out}");
    }
}

/// What a `network!("path", ...)` reads while fuzzing.
const FILE_SPEC: &str = "network tiny(classes = 10, depth = 8, width = 8) {
    input 3x16x16
    let n = (depth - 2) / 6
    conv3x3(width) bn relu
    stage n x basic(width)
    stage n x basic(2 * width, stride = 2)
    global_avg_pool linear(classes)
}";

/// Structure-aware generation: spec text built from the language's constructs (blocks,
/// stages, branches, merges, conditionals, shipped and user blocks, expressions) chosen by the
/// fuzzer's bytes, so most inputs get past the parser into the checker and the emitter.
#[cfg(feature = "fuzzing")]
pub fn generate(u: &mut arbitrary::Unstructured) -> arbitrary::Result<String> {
    Generator { u, depth: 0 }.file()
}

#[cfg(feature = "fuzzing")]
struct Generator<'a, 'b> {
    u: &'a mut arbitrary::Unstructured<'b>,
    depth: u32,
}

#[cfg(feature = "fuzzing")]
impl Generator<'_, '_> {
    fn pick<'s>(&mut self, options: &[&'s str]) -> arbitrary::Result<&'s str> {
        Ok(options[self.u.choose_index(options.len())?])
    }

    fn small(&mut self) -> arbitrary::Result<u32> {
        Ok(*self.u.choose(&[0, 1, 1, 2, 2, 3, 4, 8, 16, 32, 64, 3, 7])?)
    }

    fn file(&mut self) -> arbitrary::Result<String> {
        let mut out = String::new();
        for _ in 0..self.u.int_in_range(0..=2)? {
            out.push_str(&format!("block b{}(planes, stride = 1) {{\n", out.len() % 7));
            out.push_str(&self.body(&["planes", "stride"])?);
            out.push_str("}\n");
        }
        let (c, h, w) = (
            self.pick(&["1", "3", "4"])?,
            self.pick(&["8", "16", "32", "7", "224"])?,
            self.pick(&["8", "16", "32", "5"])?,
        );
        out.push_str(&format!(
            "network n(classes = {}, depth = {}) {{\n    input {c}x{h}x{w}\n",
            self.small()?,
            self.small()?
        ));
        out.push_str(&self.body(&["classes", "depth"])?);
        if self.u.arbitrary()? {
            out.push_str("    global_avg_pool linear(classes)\n");
        }
        out.push_str("}\n");
        Ok(out)
    }

    fn body(&mut self, vars: &[&str]) -> arbitrary::Result<String> {
        let mut out = String::new();
        let n = self.u.int_in_range(0..=6)?;
        for _ in 0..n {
            out.push_str("    ");
            out.push_str(&self.statement(vars)?);
            out.push('\n');
        }
        Ok(out)
    }

    fn statement(&mut self, vars: &[&str]) -> arbitrary::Result<String> {
        self.depth += 1;
        let deep = self.depth > 3;
        let s = match self.u.int_in_range(0..=9)? {
            0 => format!("let v = {}", self.expr(vars)?),
            1 => format!("assert {} > 0, \"positive\"", self.expr(vars)?),
            2 => format!("stage {} x {}", self.expr(vars)?, self.call(vars)?),
            3 if !deep => {
                let (a, b) = (self.body(vars)?, self.body(vars)?);
                let op = self.pick(&["+", "*", "concat"])?;
                format!("{{\n{a}}} {op} {{\n{b}}}")
            }
            4 if !deep => {
                let (a, b) = (self.body(vars)?, self.body(vars)?);
                let e = self.pick(&["f + g", "g * f + (1 - g) * x", "f * 0.5", "x + f", "shake(f, g)"])?;
                format!("merge {{ f = {{\n{a}}} g = {{\n{b}}} }} => {e}")
            }
            5 if !deep => format!("if {} {{\n{}}} else {{\n{}}}", self.expr(vars)?, self.body(vars)?, self.body(vars)?),
            _ => self.call(vars)?,
        };
        self.depth -= 1;
        Ok(s)
    }

    fn call(&mut self, vars: &[&str]) -> arbitrary::Result<String> {
        // Every registered primitive and prelude block (new ones are fuzzed without an edit
        // here), and the user blocks `file` defines (`b0`..`b6`).
        static NAMES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
            let primitives = crate::ops::all().map(|p| p.name.to_string());
            let blocks = crate::prelude().definitions.iter().map(|d| d.name.name.clone());
            primitives.chain(blocks).chain((0..7).map(|i| format!("b{i}"))).collect()
        });
        let name = NAMES[self.u.choose_index(NAMES.len())?].as_str();
        let mut args = Vec::new();
        for _ in 0..self.u.int_in_range(0..=3)? {
            let key = self.pick(&[
                "",
                "",
                "stride = ",
                "groups = ",
                "kernel = ",
                "padding = ",
                "bias = ",
                "k = ",
                "act = ",
                "dilation = ",
            ])?;
            let value = if key == "act = " {
                self.pick(&["relu", "gelu", "mish", "nope"])?.to_string()
            } else {
                self.expr(vars)?
            };
            args.push(format!("{key}{value}"));
        }
        Ok(if args.is_empty() && self.u.arbitrary()? {
            name.to_string()
        } else {
            format!("{name}({})", args.join(", "))
        })
    }

    fn expr(&mut self, vars: &[&str]) -> arbitrary::Result<String> {
        self.depth += 1;
        let e = match self.u.int_in_range(0..=7)? {
            0 | 1 => self.small()?.to_string(),
            2 => self.pick(vars)?.to_string(),
            3 => {
                self.pick(&["0.5", "1.0", "0.0", "2e-1", "true", "false", "(1, 3)", "-1", "1000000000000"])?.to_string()
            }
            4 if self.depth < 6 => {
                let op = self.pick(&["+", "-", "*", "/", "%", "==", "<", "&&", "||"])?;
                format!("({} {op} {})", self.expr(vars)?, self.expr(vars)?)
            }
            5 if self.depth < 6 => {
                format!("{}({})", self.pick(&["min", "max", "log2", "index", "floor", "ceil"])?, self.expr(vars)?)
            }
            _ => self.small()?.to_string(),
        };
        self.depth -= 1;
        Ok(e)
    }
}
