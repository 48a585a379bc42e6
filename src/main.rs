//! `resnetc`: compile, check and summarise `.net` network specs; train and evaluate them
//! (with the default `train` feature).

use clap::{Parser, Subcommand, ValueEnum};
use resnetc::draw;
use resnetc_compiler::diag::{Diagnostic, codes};
use resnetc_compiler::{Compilation, Override};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "train")]
mod train;

#[derive(Parser)]
#[command(name = "resnetc", version, about = "A declarative architecture compiler for residual networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
pub(crate) struct SpecArgs {
    /// The `.net` spec file.
    pub(crate) spec: PathBuf,
    /// Override a network parameter, e.g. `--set classes=100` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_override)]
    pub(crate) overrides: Vec<Override>,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a spec to Burn model code (Rust to stdout or -o FILE).
    Compile {
        #[command(flatten)]
        spec: SpecArgs,
        /// Write the output here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// What to emit: the parsed AST, the checked IR (JSON), or Rust.
        #[arg(long, value_enum, default_value = "rust")]
        emit: Emit,
    },
    /// Check a spec: a one-line summary, or the diagnostics.
    Check {
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Print the per-layer summary: output shape, parameters and MACs of every layer.
    Summary {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// The batch the training-memory estimate is for.
        #[arg(long, default_value_t = 128)]
        batch_size: u64,
    },
    /// Draw the network: an SVG diagram, or an HTML page whose stages and blocks open on click.
    Draw {
        #[command(flatten)]
        spec: SpecArgs,
        /// Write here (`.svg` or `.html`, by extension); SVG to stdout without it.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Which containers are drawn open: none (stages and blocks as one box each), stages
        /// (stages opened into blocks), all (every layer).
        #[arg(long, value_enum, default_value = "none")]
        expand: ExpandArg,
        /// Which way data flows.
        #[arg(long, value_enum, default_value = "down")]
        direction: DirectionArg,
    },
    /// Train a spec on CIFAR-10/100 (binary or image folders, a folder or .tar/.tar.gz).
    #[cfg(feature = "train")]
    Train(Box<train::TrainArgs>),
    /// Evaluate trained weights on the test split: top-1/top-5 accuracy and loss.
    #[cfg(feature = "train")]
    Eval(Box<train::EvalArgs>),
    /// Lesion study (Veit et al. 2016): test accuracy with each residual unit's branch removed.
    #[cfg(feature = "train")]
    Lesion(Box<train::LesionArgs>),
    /// Measure training or inference throughput (median img/s over timed steps, peak RSS).
    #[cfg(feature = "train")]
    Bench(Box<train::BenchArgs>),
    /// Import PyTorch weights (a state dict .pt/.pth, or .safetensors) into a checkpoint.
    #[cfg(feature = "train")]
    Import(Box<train::ImportArgs>),
    /// Export trained weights as ONNX (the eval-mode forward; burn-onnx, experimental).
    #[cfg(feature = "train")]
    Export(Box<train::ExportArgs>),
}

#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    Ast,
    Ir,
    Rust,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExpandArg {
    None,
    Stages,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
enum DirectionArg {
    Down,
    Right,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

fn parse_override(text: &str) -> Result<Override, String> {
    Override::parse(text)
}

fn main() -> ExitCode {
    #[cfg(feature = "train")]
    resnetc_runtime::memory::keep_freed_memory();
    // SAFETY: first in main, before any thread is started.
    #[cfg(feature = "train")]
    unsafe {
        resnetc_runtime::device::quiet_vulkan_loader()
    };
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// Load the spec into a compilation, or render why it could not be read.
pub(crate) fn load(args: &SpecArgs) -> Result<(Compilation, resnetc_compiler::SourceId), ExitCode> {
    let mut compilation = Compilation::new();
    match std::fs::read_to_string(&args.spec) {
        Ok(text) => {
            let id = compilation.add_source(args.spec.display().to_string(), text);
            Ok((compilation, id))
        }
        Err(e) => {
            let d = Diagnostic::global(codes::IO, format!("cannot read {}: {e}", args.spec.display()));
            eprint!("{}", compilation.render(&[d], color()));
            Err(ExitCode::from(1))
        }
    }
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub(crate) fn fail(compilation: &Compilation, diagnostics: &[Diagnostic]) -> ExitCode {
    eprint!("{}", compilation.render(diagnostics, color()));
    let n = diagnostics.len();
    eprintln!("error: {n} problem{} found", if n == 1 { "" } else { "s" });
    ExitCode::from(1)
}

fn write_out(output: &Option<PathBuf>, text: &str) -> Result<(), ExitCode> {
    match output {
        Some(path) => std::fs::write(path, text).map_err(|e| {
            eprintln!("error: cannot write {}: {e}", path.display());
            ExitCode::from(1)
        }),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn run(cli: Cli) -> Result<(), ExitCode> {
    match cli.command {
        Command::Compile { spec, output, emit } => {
            let (c, id) = load(&spec)?;
            let text = match emit {
                Emit::Ast => c.parse(id).map(|ast| ast.to_string()),
                Emit::Ir => c
                    .check(id, &spec.overrides)
                    .map(|net| serde_json::to_string_pretty(&net).expect("the IR serialises") + "\n"),
                Emit::Rust => c.compile(id, &spec.overrides),
            };
            let text = text.map_err(|d| fail(&c, &d))?;
            write_out(&output, &text)
        }
        Command::Check { spec } => {
            let (c, id) = load(&spec)?;
            let net = c.check(id, &spec.overrides).map_err(|d| fail(&c, &d))?;
            println!(
                "{}: network {} ok — input {}, output {}, {} trainable parameters, {} MACs",
                spec.spec.display(),
                net.name,
                net.input,
                net.output,
                resnetc_compiler::ir::group(net.trainable_params),
                resnetc_compiler::ir::group(net.macs)
            );
            Ok(())
        }
        Command::Summary { spec, format, batch_size } => {
            let (c, id) = load(&spec)?;
            let net = c.check(id, &spec.overrides).map_err(|d| fail(&c, &d))?;
            let memory = net.training_memory(batch_size);
            match format {
                Format::Table => {
                    print!("{}", net.summary_table());
                    let gib = memory as f64 / (1u64 << 30) as f64;
                    println!(
                        "training memory at batch {batch_size} ≈ {gib:.2} GiB (CPU, f32; estimated from the layer outputs)"
                    );
                }
                Format::Json => {
                    let mut json = net.summary_json();
                    json["training_memory"] = serde_json::json!({ "batch_size": batch_size, "bytes": memory });
                    println!("{}", serde_json::to_string_pretty(&json).expect("the summary serialises"))
                }
            }
            Ok(())
        }
        Command::Draw { spec, output, expand, direction } => {
            let (c, id) = load(&spec)?;
            let net = c.check(id, &spec.overrides).map_err(|d| fail(&c, &d))?;
            let options = draw::Options {
                expand: match expand {
                    ExpandArg::None => draw::Expand::None,
                    ExpandArg::Stages => draw::Expand::Stages,
                    ExpandArg::All => draw::Expand::All,
                },
                direction: match direction {
                    DirectionArg::Down => draw::Direction::Down,
                    DirectionArg::Right => draw::Direction::Right,
                },
            };
            let html = match output.as_ref().and_then(|p| p.extension()).and_then(|e| e.to_str()) {
                None | Some("svg") => false,
                Some("html" | "htm") => true,
                Some(other) => {
                    eprintln!(
                        "error: -o {}: draw writes .svg or .html, not .{other}",
                        output.as_ref().unwrap().display()
                    );
                    return Err(ExitCode::from(2));
                }
            };
            let text = if html { draw::html(&net, &options) } else { draw::svg(&net, &options) };
            let text = text.map_err(|e| {
                eprintln!("error: cannot draw {}: {e}", spec.spec.display());
                ExitCode::from(1)
            })?;
            write_out(&output, &text)
        }
        #[cfg(feature = "train")]
        Command::Train(args) => train::train(*args),
        #[cfg(feature = "train")]
        Command::Eval(args) => train::eval(*args),
        #[cfg(feature = "train")]
        Command::Lesion(args) => train::lesion(*args),
        #[cfg(feature = "train")]
        Command::Bench(args) => train::bench(*args),
        #[cfg(feature = "train")]
        Command::Import(args) => train::import(*args),
        #[cfg(feature = "train")]
        Command::Export(args) => train::export(*args),
    }
}
