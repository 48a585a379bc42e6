//! Stage 3 output, the IR: a fully resolved, shape-annotated network.
//!
//! [`Network`] is the single source of truth after checking: block calls are
//! expanded, expressions evaluated, every node carries its output shape and its
//! trainable-parameter and multiply-accumulate counts. The emitter, the summary
//! and the runtime all read it.

pub mod def;

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// A tensor shape without the batch dimension: `[C, H, W]`, or `[N]` once flattened.
///
/// Stored inline (no allocation): the checker makes one per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    dims: [u64; 3],
    rank: u8,
}

impl Shape {
    /// A `C×H×W` shape.
    pub fn chw(c: u64, h: u64, w: u64) -> Self {
        Shape { dims: [c, h, w], rank: 3 }
    }

    /// A flat shape of `n` features.
    pub fn flat(n: u64) -> Self {
        Shape { dims: [n, 0, 0], rank: 1 }
    }

    /// The dimensions.
    pub fn dims(&self) -> &[u64] {
        &self.dims[..self.rank as usize]
    }

    /// The number of dimensions (3, or 1 once flattened).
    pub fn rank(&self) -> usize {
        self.rank as usize
    }

    /// `Some([c, h, w])` for a three-dimensional shape.
    pub fn as_chw(&self) -> Option<[u64; 3]> {
        (self.rank == 3).then_some(self.dims)
    }

    /// The number of elements.
    pub fn numel(&self) -> u64 {
        self.dims().iter().product()
    }
}

impl Serialize for Shape {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.dims().serialize(serializer)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.dims().iter().map(u64::to_string).collect();
        write!(f, "{}", dims.join("×"))
    }
}

/// Height and width of a kernel, stride or padding; serialised as one number when they are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hw(pub [u64; 2]);

impl Hw {
    /// The same along both axes.
    pub fn square(n: u64) -> Self {
        Hw([n, n])
    }

    pub fn h(self) -> u64 {
        self.0[0]
    }

    pub fn w(self) -> u64 {
        self.0[1]
    }
}

impl fmt::Display for Hw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [h, w] if h == w => write!(f, "{h}"),
            [h, w] => write!(f, "({h}, {w})"),
        }
    }
}

impl Serialize for Hw {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [h, w] if h == w => serializer.serialize_u64(h),
            pair => pair.serialize(serializer),
        }
    }
}

/// A value of the expression language.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An activation layer (`act = mish`, `leaky_relu(0.2)`): a parameter called as a layer.
    Act(Activation),
    /// `(h, w)`: a pair of integers, height then width (a rectangular kernel, stride or padding).
    Pair(i64, i64),
}

impl Value {
    /// The value's type.
    pub fn ty(self) -> Ty {
        match self {
            Value::Int(_) => Ty::Int,
            Value::Float(_) => Ty::Float,
            Value::Bool(_) => Ty::Bool,
            Value::Act(_) => Ty::Act,
            Value::Pair(..) => Ty::Pair,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v:?}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Act(a) => write!(f, "{a}"),
            Value::Pair(h, w) => write!(f, "({h}, {w})"),
        }
    }
}

/// An activation as a value: the primitive's name and its arguments, defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activation {
    /// The primitive (`relu`, `prelu`, `leaky_relu`, ...).
    pub function: &'static str,
    /// Its arguments in positional order; only the first [`Activation::params`] are used.
    pub args: [f64; 2],
}

impl Activation {
    /// The activation primitive `name` with its default arguments, if it is one: `relu`,
    /// `sigmoid`, `prelu`, `identity` (no activation) or a row of `ops::activation::TABLE`.
    pub fn named(name: &str) -> Option<Activation> {
        let prim = crate::ops::lookup(name)?;
        use crate::ops::Prim;
        if !matches!(prim.prim, Prim::Relu | Prim::Sigmoid | Prim::PRelu | Prim::Identity | Prim::Act(_)) {
            return None;
        }
        let mut args = [0.0; 2];
        for (slot, param) in args.iter_mut().zip(prim.params) {
            if let crate::ops::Default::Float(d) = param.default {
                *slot = d;
            }
        }
        Some(Activation { function: prim.name, args })
    }

    /// The names of the parameters the primitive takes, in positional order.
    pub fn params(&self) -> impl Iterator<Item = &'static str> {
        crate::ops::lookup(self.function).into_iter().flat_map(|p| p.params.iter().map(|q| q.name))
    }

    /// The arguments the primitive takes.
    pub fn args(&self) -> &[f64] {
        &self.args[..self.params().count()]
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.function)?;
        let args = self.args();
        if !args.is_empty() {
            let list: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
            write!(f, "({})", list.join(", "))?;
        }
        Ok(())
    }
}

impl Serialize for Activation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The types of the expression language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ty {
    Int,
    Float,
    Bool,
    /// An activation layer.
    Act,
    /// A pair of integers.
    Pair,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::Int => "integer",
            Ty::Float => "float",
            Ty::Bool => "boolean",
            Ty::Act => "activation",
            Ty::Pair => "pair of integers",
        })
    }
}

/// A primitive layer with its resolved configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Layer {
    Conv {
        in_channels: u64,
        out_channels: u64,
        kernel: Hw,
        stride: Hw,
        padding: Hw,
        groups: u64,
        /// Spacing of the kernel's taps (1: a plain convolution).
        #[serde(skip_serializing_if = "is_one")]
        dilation: u64,
        bias: bool,
        /// The bias's initial value (`bias_init = -6.0`), when not the default initialiser's.
        #[serde(skip_serializing_if = "Option::is_none")]
        bias_init: Option<f64>,
    },
    BatchNorm {
        features: u64,
    },
    /// Group norm (Wu & He 2018): statistics over each of `groups` channel groups per image.
    GroupNorm {
        groups: u64,
        channels: u64,
        eps: f64,
    },
    /// Layer norm over the channels at each position (ConvNeXt's `LayerNorm2d`), or over the
    /// features of a flat input.
    LayerNorm {
        channels: u64,
        eps: f64,
    },
    /// A learned per-channel scale (layer scale, Touvron et al. 2021), starting at `init`.
    Scale {
        channels: u64,
        init: f64,
    },
    Relu,
    Sigmoid,
    Identity,
    Dropout {
        p: f64,
    },
    /// Stochastic depth: the whole input dropped per sample with probability `p` in training.
    DropPath {
        p: f64,
    },
    AvgPool {
        kernel: u64,
        stride: u64,
        padding: u64,
    },
    MaxPool {
        kernel: u64,
        stride: u64,
        padding: u64,
    },
    GlobalAvgPool,
    Linear {
        in_features: u64,
        out_features: u64,
        bias: bool,
        /// The bias's initial value, when not the default initialiser's.
        #[serde(skip_serializing_if = "Option::is_none")]
        bias_init: Option<f64>,
    },
    /// The option-A shortcut: subsample by `stride`, zero-pad channels `before`/`after`.
    PadShortcut {
        stride: u64,
        before: u64,
        after: u64,
    },
    /// An element-wise activation with its resolved arguments (`leaky_relu(0.1)`: `[0.1]`).
    Activation {
        function: crate::ops::ActFn,
        args: Vec<f64>,
    },
    /// A 1-D convolution of `kernel` taps across the channels of a `C×1×1` input (ECA's gate).
    ChannelConv {
        channels: u64,
        kernel: u64,
    },
    /// PReLU: one learned slope per channel (per feature on flat input).
    PRelu {
        channels: u64,
    },
    /// Channels `start .. start + channels` of the input (features, on flat input).
    Slice {
        start: u64,
        channels: u64,
    },
    /// Every pixel taken from `rows` below and `cols` to the right, zeros past the edge.
    Shift {
        rows: u64,
        cols: u64,
    },
}

impl Layer {
    /// The primitive's name in `.net` source.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Conv { .. } => "conv",
            Layer::BatchNorm { .. } => "bn",
            Layer::GroupNorm { .. } => "group_norm",
            Layer::LayerNorm { .. } => "layer_norm",
            Layer::Scale { .. } => "scale",
            Layer::Relu => "relu",
            Layer::Sigmoid => "sigmoid",
            Layer::Identity => "identity",
            Layer::Dropout { .. } => "dropout",
            Layer::DropPath { .. } => "drop_path",
            Layer::AvgPool { .. } => "avg_pool",
            Layer::MaxPool { .. } => "max_pool",
            Layer::GlobalAvgPool => "global_avg_pool",
            Layer::Linear { .. } => "linear",
            Layer::PadShortcut { .. } => "pad_shortcut",
            Layer::Activation { function, .. } => function.name(),
            Layer::PRelu { .. } => "prelu",
            Layer::ChannelConv { .. } => "channel_conv",
            Layer::Slice { .. } => "slice",
            Layer::Shift { .. } => "shift",
        }
    }
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

/// How parallel branches are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Combinator {
    /// Element-wise sum (a residual connection).
    Add,
    /// Element-wise product, broadcasting a `C×1×1` gate over `C×H×W`.
    Mul,
    /// Channel concatenation.
    Concat,
}

impl Combinator {
    /// The spelling in `.net` source.
    pub fn symbol(self) -> &'static str {
        match self {
            Combinator::Add => "+",
            Combinator::Mul => "*",
            Combinator::Concat => "concat",
        }
    }
}

/// What a node is.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "node", rename_all = "snake_case")]
pub enum NodeKind {
    Layer(Layer),
    /// One expanded block call.
    Block {
        block: String,
        body: Vec<Node>,
    },
    /// `stage N × block`: the expanded copies.
    Stage {
        block: String,
        blocks: Vec<Node>,
    },
    /// Parallel branches merged by a combinator (a lone braced group has none).
    Combine {
        combinator: Option<Combinator>,
        arms: Vec<Vec<Node>>,
    },
    /// `merge { a = { ... } ... } => expr`: named branches combined by an element-wise expression.
    Merge {
        arms: Vec<(String, Vec<Node>)>,
        expr: MergeExpr,
    },
}

/// The element-wise expression of a `merge`, its scalar parts evaluated.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeExpr {
    /// The output of the arm at this index.
    Arm(usize),
    /// A scalar constant.
    Const(f64),
    Neg(Box<MergeExpr>),
    Add(Box<MergeExpr>, Box<MergeExpr>),
    Sub(Box<MergeExpr>, Box<MergeExpr>),
    Mul(Box<MergeExpr>, Box<MergeExpr>),
    Div(Box<MergeExpr>, Box<MergeExpr>),
    /// `shake(a, b)`: Shake-Shake's random per-sample mix in training, the mean at inference.
    Shake(Box<MergeExpr>, Box<MergeExpr>),
}

impl MergeExpr {
    /// Whether the expression involves a tensor (an arm), not only constants.
    pub fn is_tensor(&self) -> bool {
        match self {
            MergeExpr::Arm(_) => true,
            MergeExpr::Const(_) => false,
            MergeExpr::Neg(a) => a.is_tensor(),
            MergeExpr::Add(a, b)
            | MergeExpr::Sub(a, b)
            | MergeExpr::Mul(a, b)
            | MergeExpr::Div(a, b)
            | MergeExpr::Shake(a, b) => a.is_tensor() || b.is_tensor(),
        }
    }

    /// How many times each arm's output is read, indexed by arm.
    pub fn uses(&self, counts: &mut [usize]) {
        match self {
            MergeExpr::Arm(i) => counts[*i] += 1,
            MergeExpr::Const(_) => {}
            MergeExpr::Neg(a) => a.uses(counts),
            MergeExpr::Add(a, b)
            | MergeExpr::Sub(a, b)
            | MergeExpr::Mul(a, b)
            | MergeExpr::Div(a, b)
            | MergeExpr::Shake(a, b) => {
                a.uses(counts);
                b.uses(counts);
            }
        }
    }
}

/// One node of the expanded network.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    /// Dotted path, equal to the emitted module's field path (`stage1.0.conv1`).
    pub name: String,
    pub kind: NodeKind,
    pub input: Shape,
    pub output: Shape,
    /// Trainable parameters in this node and below (BatchNorm running statistics excluded).
    pub params: u64,
    /// Multiply-accumulates per image in this node and below (convolutions and linear layers).
    pub macs: u64,
}

/// A checked network, ready for code generation.
#[derive(Clone, Debug, Serialize)]
pub struct Network {
    /// The network's name in the spec (`wrn_28_10`).
    pub name: String,
    /// The emitted struct's name (`Wrn2810`).
    pub type_name: String,
    /// The file the network came from, as it was named to the compiler.
    pub source_name: String,
    /// Network parameters after defaults and overrides, in declaration order.
    pub params: Vec<(String, Value)>,
    pub input: Shape,
    pub output: Shape,
    pub trainable_params: u64,
    pub macs: u64,
    pub body: Vec<Node>,
    /// For each block used, the type each of its parameters takes across all calls.
    pub block_param_types: BTreeMap<String, Vec<Ty>>,
    /// The network's definition, lowered for code generation.
    #[serde(skip)]
    pub definition: def::Def,
    /// The definitions of the blocks used, lowered, callees before callers.
    #[serde(skip)]
    pub blocks: Vec<def::Def>,
}

/// One row of the per-layer summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SummaryRow {
    pub name: String,
    pub kind: String,
    pub output: Shape,
    pub params: u64,
    pub macs: u64,
}

impl Network {
    /// Flatten the tree into one row per primitive layer and combination, in execution order.
    pub fn summary_rows(&self) -> Vec<SummaryRow> {
        let mut rows = Vec::new();
        fn walk(nodes: &[Node], rows: &mut Vec<SummaryRow>) {
            for node in nodes {
                match &node.kind {
                    NodeKind::Layer(layer) => rows.push(SummaryRow {
                        name: node.name.clone(),
                        kind: layer.kind().to_string(),
                        output: node.output,
                        params: node.params,
                        macs: node.macs,
                    }),
                    NodeKind::Block { body, .. } => walk(body, rows),
                    NodeKind::Stage { blocks, .. } => walk(blocks, rows),
                    NodeKind::Merge { arms, .. } => {
                        for (_, arm) in arms {
                            walk(arm, rows);
                        }
                        rows.push(SummaryRow {
                            name: node.name.clone(),
                            kind: "merge".to_string(),
                            output: node.output,
                            params: 0,
                            macs: 0,
                        });
                    }
                    NodeKind::Combine { combinator, arms } => {
                        for arm in arms {
                            walk(arm, rows);
                        }
                        if let Some(c) = combinator {
                            let kind = match c {
                                Combinator::Add => "add",
                                Combinator::Mul => "mul",
                                Combinator::Concat => "concat",
                            };
                            rows.push(SummaryRow {
                                name: node.name.clone(),
                                kind: kind.to_string(),
                                output: node.output,
                                params: 0,
                                macs: 0,
                            });
                        }
                    }
                }
            }
        }
        walk(&self.body, &mut rows);
        rows
    }

    /// Estimated peak memory of one SGD training step at `batch` images on the CPU backend, in
    /// bytes: two thirds of every layer's output (what autodiff keeps for the backward pass,
    /// in f32) per image, 16 bytes per parameter (weights, gradients, momentum and the
    /// optimizer's copy) and 32 MiB of process. Fitted to peak RSS measured with `resnetc
    /// bench --mode train` on resnet-20, wrn-16-4 and densenet-bc-100-12 (README, "Memory"):
    /// it is 1–16 % above those measurements.
    pub fn training_memory(&self, batch: u64) -> u64 {
        let (per_image, fixed) = self.training_memory_terms();
        per_image.saturating_mul(batch).saturating_add(fixed)
    }

    /// [`Network::training_memory`]'s two terms, bytes per image and fixed bytes: the estimate
    /// is `per_image × batch + fixed`.
    pub fn training_memory_terms(&self) -> (u64, u64) {
        let outputs: u64 = self.summary_rows().iter().map(|r| r.output.numel()).sum::<u64>() + self.input.numel();
        (outputs.saturating_mul(4) / 3 * 2, self.trainable_params.saturating_mul(16).saturating_add(32 << 20))
    }

    /// The summary as JSON: `{"network", "input", "params", "macs", "layers": [...]}`.
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "network": self.name,
            "input": self.input,
            "params": self.trainable_params,
            "macs": self.macs,
            "layers": self.summary_rows(),
        })
    }

    /// The summary as an aligned text table, Keras style.
    pub fn summary_table(&self) -> String {
        let rows = self.summary_rows();
        let header = ["layer", "kind", "output", "params", "MACs"];
        let cells: Vec<[String; 5]> = rows
            .iter()
            .map(|r| [r.name.clone(), r.kind.clone(), r.output.to_string(), group(r.params), group(r.macs)])
            .collect();
        let mut widths = header.map(str::len);
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: [&str; 5]| {
            format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}\n",
                cols[0],
                cols[1],
                cols[2],
                cols[3],
                cols[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4]
            )
        };
        let total_width = widths.iter().sum::<usize>() + 8;
        let mut out = format!("network {} (input {})\n", self.name, self.input);
        out.push_str(&line(header));
        out.push_str(&"─".repeat(total_width));
        out.push('\n');
        for row in &cells {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
        }
        out.push_str(&"─".repeat(total_width));
        out.push('\n');
        out.push_str(&format!(
            "output {}  trainable params {}  MACs {}\n",
            self.output,
            group(self.trainable_params),
            group(self.macs)
        ));
        out
    }
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
