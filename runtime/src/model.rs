//! Networks built at run time from the checked IR, so any `.net` file trains without Rust.
//!
//! [`DynNet`] holds the same Burn modules under the same parameter paths as the struct
//! `resnetc compile` emits (`stage2.0.conv3.weight`), initialised the same way, and runs the
//! same forward pass: a checkpoint saved from one loads into the other (`tests/model.rs`
//! proves it, with equal outputs, for specs covering every construct).

use crate::precision::Precision;
use burn::module::{Devices, Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Initializer, LayerNorm,
    LayerNormConfig, Linear, LinearConfig, PRelu, PReluConfig, PaddingConfig1d, PaddingConfig2d,
};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Tensor};
use resnetc_compiler::ir::Combinator;
use resnetc_compiler::ir::{Layer, MergeExpr, Network, Node, NodeKind};
use resnetc_compiler::ops::ActFn;

/// A module a block holds under a field name.
#[derive(Clone, Debug)]
enum Field {
    Conv(Conv2d),
    Bn(BatchNorm),
    GroupNorm(GroupNorm),
    LayerNorm(LayerNorm),
    /// A learned per-channel scale.
    Scale(Param<Tensor<1>>),
    /// A 1-D convolution across channels.
    ChannelConv(Conv1d),
    /// Stochastic depth: Burn's `Dropout` module, applied per sample.
    DropPath(Dropout),
    Linear(Linear),
    Dropout(Dropout),
    AvgPool(AvgPool2d),
    MaxPool(MaxPool2d),
    PRelu(PRelu),
    Block(DynBlock),
    Stage(Vec<DynBlock>),
}

/// One step of a block's forward pass.
#[derive(Clone, Debug)]
enum Op {
    /// Run the field at this index.
    Field(usize),
    Relu,
    Sigmoid,
    GlobalAvgPool,
    PadShortcut {
        stride: usize,
        before: usize,
        after: usize,
    },
    Activation {
        function: ActFn,
        args: Vec<f64>,
    },
    /// Pixels moved up by `rows` and left by `cols`, zeros filled in.
    Shift {
        rows: usize,
        cols: usize,
    },
    /// Channels (features) `start .. start + channels`.
    Slice {
        start: usize,
        channels: usize,
    },
    Combine {
        combinator: Option<Combinator>,
        arms: Vec<Vec<Op>>,
        /// In a residual unit (two arms added), the residual branch: the arm with more MACs
        /// (the other is the identity or a projection shortcut).
        residual: Option<usize>,
        /// The residual branch is removed (lesion study): only the shortcut runs.
        lesioned: bool,
    },
    /// Named branches combined by an element-wise expression (`merge { ... } => expr`).
    Merge {
        arms: Vec<Vec<Op>>,
        expr: MergeExpr,
    },
}

/// One expanded block (or the network's top level): its fields, named as in the emitted
/// struct, and the operations of its forward pass.
#[derive(Clone, Debug)]
pub struct DynBlock {
    fields: Vec<(String, Field)>,
    ops: Vec<Op>,
}

/// A network built from its IR; parameter paths and forward pass equal the emitted code's.
#[derive(Clone, Debug)]
pub struct DynNet {
    root: DynBlock,
    /// How it trains, beside its parameters (not recorded in checkpoints).
    config: RunConfig,
}

/// How a [`DynNet`] trains, beside its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RunConfig {
    /// Label smoothing for the training loss.
    label_smoothing: f64,
    /// Data-parallel replicas whose gradients Burn sums (1: one device).
    replicas: usize,
    /// What convolutions and linear layers compute in.
    precision: Precision,
}

/// A batch in flight: images, or feature vectors after a `linear`.
enum Act {
    Maps(Tensor<4>),
    Flat(Tensor<2>),
}

impl Act {
    fn maps(self) -> Tensor<4> {
        match self {
            Act::Maps(t) => t,
            // The checker only lets 4-D layers see C×H×W inputs.
            Act::Flat(t) => {
                let [n, c] = t.dims();
                t.reshape([n, c, 1, 1])
            }
        }
    }
    fn flat(self) -> Tensor<2> {
        match self {
            Act::Maps(t) => t.flatten::<2>(1, 3),
            Act::Flat(t) => t,
        }
    }
}

impl DynNet {
    /// Build the network on `device`, initialised as the emitted `new` does.
    pub fn new(network: &Network, device: &Device) -> Self {
        let config = RunConfig { label_smoothing: 0.0, replicas: 1, precision: Precision::F32 };
        DynNet { root: DynBlock::build(&network.body, device), config }
    }

    /// Train with label smoothing `epsilon` (PyTorch's `CrossEntropyLoss(label_smoothing=)`).
    pub fn with_label_smoothing(mut self, epsilon: f64) -> Self {
        self.config.label_smoothing = epsilon;
        self
    }

    /// The label smoothing the training loss uses.
    pub fn label_smoothing(&self) -> f64 {
        self.config.label_smoothing
    }

    /// Train as one of `replicas` data-parallel copies whose gradients are summed (Burn's
    /// multi-device strategy): each copy's loss is divided by `replicas`, so the sum is the
    /// gradient of the mean loss over the global batch, as on one device; the batch-norm running
    /// statistics move by the average of the copies' updates (see `norm`).
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.config.replicas = replicas.max(1);
        self
    }

    /// The number of data-parallel replicas this copy is one of.
    pub fn replicas(&self) -> usize {
        self.config.replicas
    }

    /// Compute convolutions and linear layers in `precision` (see `precision`).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.config.precision = precision;
        self
    }

    /// Run a batch `[N, C, H, W]` to class scores `[N, classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        crate::precision::scoped(self.config.precision, || self.root.run(&self.root.ops, Act::Maps(x)).flat())
    }

    /// Names and shapes of every tensor the module records (parameters and BatchNorm statistics).
    pub fn tensor_paths(&self) -> Vec<(String, Vec<usize>)> {
        tensor_paths(self)
    }

    /// The residual units in forward order, by module path (`stage1.0`): blocks whose body
    /// adds a residual branch to a shortcut (see [`DynNet::lesion`]).
    pub fn residual_blocks(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.root.residual_blocks("", &mut out);
        out
    }

    /// This network with the residual branch of each named unit removed — its shortcut kept —
    /// as in Veit et al. (2016)'s lesion study. The weights are shared, not copied. Names not in
    /// [`DynNet::residual_blocks`] are an error.
    pub fn lesion(&self, blocks: &[&str]) -> Result<DynNet, String> {
        let mut net = self.clone();
        for name in blocks {
            if !net.root.lesion(name) {
                return Err(format!("{name} is not a residual block (have: {})", self.residual_blocks().join(", ")));
            }
        }
        Ok(net)
    }
}

/// The residual arm of a combination: two arms added, the one with more MACs. Equal MACs (two
/// identical branches) mark no residual unit.
fn residual_arm(combinator: Option<Combinator>, arms: &[Vec<Node>]) -> Option<usize> {
    if combinator != Some(Combinator::Add) || arms.len() != 2 {
        return None;
    }
    let macs = |arm: &[Node]| arm.iter().map(|n| n.macs).sum::<u64>();
    let (a, b) = (macs(&arms[0]), macs(&arms[1]));
    (a != b).then_some(if a > b { 0 } else { 1 })
}

/// Names and shapes of every tensor a module records, sorted: compare two modules' layouts.
pub fn tensor_paths<M: Module>(module: &M) -> Vec<(String, Vec<usize>)> {
    struct Paths {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>)>,
    }
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            self.out.push((self.path.join("."), param.val().dims().to_vec()));
        }
    }
    let mut p = Paths { path: Vec::new(), out: Vec::new() };
    module.visit(&mut p);
    p.out.sort();
    p.out
}

/// A convolution layer, He-normal (fan-out) initialised as the emitted code does.
fn conv(layer: &Layer, device: &Device) -> Conv2d {
    let Layer::Conv { in_channels, out_channels, kernel, stride, padding, groups, dilation, bias, bias_init } = *layer
    else {
        unreachable!("conv() is called for convolution layers only")
    };
    let pair = |v: resnetc_compiler::ir::Hw| v.0.map(|n| n as usize);
    let (k, s, [ph, pw]) = (pair(kernel), pair(stride), pair(padding));
    let mut conv = Conv2dConfig::new([in_channels as usize, out_channels as usize], k)
        .with_stride(s)
        .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
        .with_dilation([dilation as usize, dilation as usize])
        .with_groups(groups as usize)
        .with_bias(bias)
        .with_initializer(Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: true })
        .init(device);
    if let Some(value) = bias_init {
        conv.bias = fill_bias(conv.bias, value);
    }
    conv
}

/// Start every entry of a bias at `value` (`bias_init`), as the emitted code does; it stays
/// trainable (a tensor made by `zeros_like` would not require a gradient, freezing the bias).
fn fill_bias(bias: Option<Param<Tensor<1>>>, value: f64) -> Option<Param<Tensor<1>>> {
    bias.map(|b| b.map(|t| Tensor::full(t.shape(), value, &t.device()).set_require_grad(t.is_require_grad())))
}

/// An operand of a merge expression while it is evaluated.
#[allow(clippy::large_enum_variant)] // short-lived, one per expression node
enum Operand<const D: usize> {
    Tensor(Tensor<D>),
    Scalar(f64),
}

/// Evaluate a merge expression over the arms' outputs with the emitted code's tensor operations.
fn merge<const D: usize>(expr: &MergeExpr, arms: &[Tensor<D>]) -> Tensor<D> {
    fn eval<const D: usize>(e: &MergeExpr, arms: &[Tensor<D>]) -> Operand<D> {
        use Operand::{Scalar, Tensor as T};
        let pair = |a: &MergeExpr, b: &MergeExpr| (eval(a, arms), eval(b, arms));
        match e {
            MergeExpr::Arm(i) => T(arms[*i].clone()),
            MergeExpr::Const(c) => Scalar(*c),
            MergeExpr::Neg(a) => match eval(a, arms) {
                T(t) => T(t.neg()),
                Scalar(c) => Scalar(-c),
            },
            MergeExpr::Add(a, b) => match pair(a, b) {
                (T(x), T(y)) => T(x + y),
                (T(t), Scalar(k)) | (Scalar(k), T(t)) => T(t.add_scalar(k)),
                (Scalar(x), Scalar(y)) => Scalar(x + y),
            },
            MergeExpr::Sub(a, b) => match pair(a, b) {
                (T(x), T(y)) => T(x - y),
                (T(t), Scalar(k)) => T(t.sub_scalar(k)),
                (Scalar(k), T(t)) => T(t.neg().add_scalar(k)),
                (Scalar(x), Scalar(y)) => Scalar(x - y),
            },
            MergeExpr::Mul(a, b) => match pair(a, b) {
                (T(x), T(y)) => T(x * y),
                (T(t), Scalar(k)) | (Scalar(k), T(t)) => T(t.mul_scalar(k)),
                (Scalar(x), Scalar(y)) => Scalar(x * y),
            },
            MergeExpr::Shake(a, b) => match pair(a, b) {
                (T(x), T(y)) => T(resnetc_kernels::shake(x, y)),
                _ => unreachable!("the checker requires `shake` of two tensors"),
            },
            MergeExpr::Div(a, b) => match pair(a, b) {
                (T(x), T(y)) => T(x / y),
                (T(t), Scalar(k)) => T(t.div_scalar(k)),
                (Scalar(k), T(t)) => T(t.recip().mul_scalar(k)),
                (Scalar(x), Scalar(y)) => Scalar(x / y),
            },
        }
    }
    match eval(expr, arms) {
        Operand::Tensor(t) => t,
        Operand::Scalar(_) => unreachable!("the checker requires a merge expression to use a branch"),
    }
}

fn leaf(name: &str) -> String {
    name.rsplit('.').next().unwrap_or(name).to_string()
}

impl DynBlock {
    /// Does this block's own body (not its sub-blocks) hold a residual unit?
    fn is_residual(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, Op::Combine { residual: Some(_), .. }))
    }

    fn residual_blocks(&self, prefix: &str, out: &mut Vec<String>) {
        for (name, field) in &self.fields {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            match field {
                Field::Block(b) => {
                    if b.is_residual() {
                        out.push(path.clone());
                    }
                    b.residual_blocks(&path, out);
                }
                Field::Stage(blocks) => {
                    for (i, b) in blocks.iter().enumerate() {
                        let path = format!("{path}.{i}");
                        if b.is_residual() {
                            out.push(path.clone());
                        }
                        b.residual_blocks(&path, out);
                    }
                }
                _ => {}
            }
        }
    }

    /// Mark the residual units of the block at `path` (relative to this block) lesioned.
    fn lesion(&mut self, path: &str) -> bool {
        let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
        let Some((_, field)) = self.fields.iter_mut().find(|(name, _)| name == head) else { return false };
        let target = match (field, rest) {
            (Field::Block(b), None) => b,
            (Field::Block(b), Some(rest)) => return b.lesion(rest),
            (Field::Stage(blocks), Some(rest)) => {
                let (index, rest) = rest.split_once('.').map_or((rest, None), |(h, r)| (h, Some(r)));
                let Some(b) = index.parse::<usize>().ok().and_then(|i| blocks.get_mut(i)) else { return false };
                match rest {
                    None => b,
                    Some(rest) => return b.lesion(rest),
                }
            }
            _ => return false,
        };
        let mut found = false;
        for op in &mut target.ops {
            if let Op::Combine { residual: Some(_), lesioned, .. } = op {
                *lesioned = true;
                found = true;
            }
        }
        found
    }

    fn build(body: &[Node], device: &Device) -> Self {
        let mut block = DynBlock { fields: Vec::new(), ops: Vec::new() };
        block.ops = block.build_ops(body, device);
        block
    }

    fn field(&mut self, name: &str, field: Field) -> Op {
        self.fields.push((leaf(name), field));
        Op::Field(self.fields.len() - 1)
    }

    fn build_ops(&mut self, body: &[Node], device: &Device) -> Vec<Op> {
        let mut ops = Vec::new();
        for node in body {
            let op = match &node.kind {
                NodeKind::Layer(layer) => match *layer {
                    Layer::Conv { .. } => self.field(&node.name, Field::Conv(conv(layer, device))),
                    Layer::BatchNorm { features } => {
                        self.field(&node.name, Field::Bn(BatchNormConfig::new(features as usize).init(device)))
                    }
                    Layer::GroupNorm { groups, channels, eps } => self.field(
                        &node.name,
                        Field::GroupNorm(
                            GroupNormConfig::new(groups as usize, channels as usize).with_epsilon(eps).init(device),
                        ),
                    ),
                    Layer::LayerNorm { channels, eps } => self.field(
                        &node.name,
                        Field::LayerNorm(LayerNormConfig::new(channels as usize).with_epsilon(eps).init(device)),
                    ),
                    Layer::Scale { channels, init } => self.field(
                        &node.name,
                        Field::Scale(Param::from_tensor(Tensor::full([channels as usize], init, device))),
                    ),
                    Layer::ChannelConv { kernel, .. } => {
                        let (k, p) = (kernel as usize, (kernel as usize - 1) / 2);
                        let conv = Conv1dConfig::new(1, 1, k)
                            .with_padding(PaddingConfig1d::Explicit(p, p))
                            .with_bias(false)
                            .init(device);
                        self.field(&node.name, Field::ChannelConv(conv))
                    }
                    Layer::Linear { in_features, out_features, bias, bias_init } => {
                        let mut l =
                            LinearConfig::new(in_features as usize, out_features as usize).with_bias(bias).init(device);
                        if let Some(value) = bias_init {
                            l.bias = fill_bias(l.bias, value);
                        }
                        self.field(&node.name, Field::Linear(l))
                    }
                    Layer::Dropout { p } => self.field(&node.name, Field::Dropout(DropoutConfig::new(p).init())),
                    Layer::DropPath { p } => self.field(&node.name, Field::DropPath(DropoutConfig::new(p).init())),
                    Layer::AvgPool { kernel, stride, padding } => {
                        let (k, s, p) = (kernel as usize, stride as usize, padding as usize);
                        let pool = AvgPool2dConfig::new([k, k])
                            .with_strides([s, s])
                            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                            .init();
                        self.field(&node.name, Field::AvgPool(pool))
                    }
                    Layer::MaxPool { kernel, stride, padding } => {
                        let (k, s, p) = (kernel as usize, stride as usize, padding as usize);
                        let pool = MaxPool2dConfig::new([k, k])
                            .with_strides([s, s])
                            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                            .init();
                        self.field(&node.name, Field::MaxPool(pool))
                    }
                    Layer::Relu => Op::Relu,
                    Layer::Sigmoid => Op::Sigmoid,
                    Layer::Identity => continue,
                    Layer::GlobalAvgPool => Op::GlobalAvgPool,
                    Layer::PadShortcut { stride, before, after } => {
                        Op::PadShortcut { stride: stride as usize, before: before as usize, after: after as usize }
                    }
                    Layer::PRelu { channels } => self.field(
                        &node.name,
                        Field::PRelu(PReluConfig::new().with_num_parameters(channels as usize).init(device)),
                    ),
                    Layer::Activation { function, ref args } => Op::Activation { function, args: args.clone() },
                    Layer::Slice { start, channels } => {
                        Op::Slice { start: start as usize, channels: channels as usize }
                    }
                    Layer::Shift { rows, cols } => Op::Shift { rows: rows as usize, cols: cols as usize },
                },
                NodeKind::Block { body, .. } => {
                    let child = DynBlock::build(body, device);
                    self.field(&node.name, Field::Block(child))
                }
                NodeKind::Stage { blocks, .. } => {
                    let children = blocks
                        .iter()
                        .map(|b| match &b.kind {
                            NodeKind::Block { body, .. } => DynBlock::build(body, device),
                            _ => DynBlock { fields: Vec::new(), ops: Vec::new() },
                        })
                        .collect();
                    self.field(&node.name, Field::Stage(children))
                }
                NodeKind::Combine { combinator, arms } => {
                    let residual = residual_arm(*combinator, arms);
                    let arms = arms.iter().map(|arm| self.build_ops(arm, device)).collect();
                    Op::Combine { combinator: *combinator, arms, residual, lesioned: false }
                }
                NodeKind::Merge { arms, expr } => {
                    let arms = arms.iter().map(|(_, arm)| self.build_ops(arm, device)).collect();
                    Op::Merge { arms, expr: expr.clone() }
                }
            };
            ops.push(op);
        }
        ops
    }

    fn forward_block(&self, x: Act) -> Act {
        self.run(&self.ops, x)
    }

    fn run(&self, ops: &[Op], mut x: Act) -> Act {
        let mut ops = ops.iter().peekable();
        while let Some(op) = ops.next() {
            // A batch norm (alone or ending a residual unit's branch) followed by a ReLU runs
            // as one fused op (see `fused`).
            if ops.peek().is_some_and(|next| next.is_relu())
                && let Act::Maps(_) = x
                && let Some(tail) = self.bn_tail(op)
            {
                ops.next();
                x = Act::Maps(self.run_bn_relu(tail, x.maps()));
                continue;
            }
            x = match op {
                Op::Field(i) => match &self.fields[*i].1 {
                    Field::Conv(m) => Act::Maps(crate::precision::conv2d(m, x.maps())),
                    Field::Bn(m) => Act::Maps(resnetc_kernels::batch_norm_module(m, x.maps())),
                    Field::GroupNorm(m) => Act::Maps(m.forward(x.maps())),
                    Field::DropPath(m) => match x {
                        Act::Maps(t) => Act::Maps(resnetc_kernels::drop_path(m, t)),
                        Act::Flat(t) => Act::Flat(resnetc_kernels::drop_path(m, t)),
                    },
                    // The channels as the sequence of one 1-channel signal, and back.
                    Field::ChannelConv(m) => {
                        let t = x.maps();
                        let [n, c, _, _] = t.dims();
                        Act::Maps(m.forward(t.reshape([n, 1, c])).reshape([n, c, 1, 1]))
                    }
                    // Over the channels at each position: Burn's normalises the last dimension.
                    Field::LayerNorm(m) => match x {
                        Act::Maps(t) => Act::Maps(m.forward(t.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])),
                        Act::Flat(t) => Act::Flat(m.forward(t)),
                    },
                    Field::Scale(s) => {
                        let c = s.dims()[0];
                        match x {
                            Act::Maps(t) => Act::Maps(t * s.val().reshape([1, c, 1, 1])),
                            Act::Flat(t) => Act::Flat(t * s.val().reshape([1, c])),
                        }
                    }
                    Field::Linear(m) => Act::Flat(crate::precision::linear(m, x.flat())),
                    Field::Dropout(m) => match x {
                        Act::Maps(t) => Act::Maps(m.forward(t)),
                        Act::Flat(t) => Act::Flat(m.forward(t)),
                    },
                    Field::AvgPool(m) => Act::Maps(m.forward(x.maps())),
                    Field::MaxPool(m) => Act::Maps(m.forward(x.maps())),
                    Field::PRelu(m) => match x {
                        Act::Maps(t) => Act::Maps(m.forward(t)),
                        Act::Flat(t) => Act::Flat(m.forward(t)),
                    },
                    Field::Block(b) => b.forward_block(x),
                    Field::Stage(blocks) => blocks.iter().fold(x, |x, b| b.forward_block(x)),
                },
                Op::Relu => match x {
                    Act::Maps(t) => Act::Maps(relu(t)),
                    Act::Flat(t) => Act::Flat(relu(t)),
                },
                Op::Sigmoid => match x {
                    Act::Maps(t) => Act::Maps(sigmoid(t)),
                    Act::Flat(t) => Act::Flat(sigmoid(t)),
                },
                Op::Activation { function, args } => match x {
                    Act::Maps(t) => Act::Maps(activation(*function, args, t)),
                    Act::Flat(t) => Act::Flat(activation(*function, args, t)),
                },
                Op::Shift { rows, cols } => Act::Maps(resnetc_kernels::shift(x.maps(), *rows, *cols)),
                Op::Slice { start, channels } => match x {
                    Act::Maps(t) => Act::Maps(t.narrow(1, *start, *channels)),
                    Act::Flat(t) => Act::Flat(t.narrow(1, *start, *channels)),
                },
                Op::GlobalAvgPool => Act::Maps(burn::tensor::module::adaptive_avg_pool2d(x.maps(), [1, 1])),
                Op::PadShortcut { stride, before, after } => {
                    Act::Maps(resnetc_kernels::pad_shortcut(x.maps(), *stride, *before, *after))
                }
                Op::Combine { arms, residual: Some(r), lesioned: true, .. } => {
                    // Lesioned residual unit: the shortcut alone.
                    let shortcut = &arms[1 - *r];
                    self.run(shortcut, x)
                }
                Op::Combine { combinator, arms, .. } => combine(*combinator, self.run_arms(arms, x)),
                Op::Merge { arms, expr } => {
                    let outs = self.run_arms(arms, x);
                    if outs.iter().all(|o| matches!(o, Act::Flat(_))) {
                        let outs: Vec<Tensor<2>> = outs.into_iter().map(Act::flat).collect();
                        Act::Flat(merge(expr, &outs))
                    } else {
                        let outs: Vec<Tensor<4>> = outs.into_iter().map(Act::maps).collect();
                        Act::Maps(merge(expr, &outs))
                    }
                }
            };
        }
        x
    }
}

/// What a batch norm that a ReLU follows ends: the block's own op sequence, or the residual
/// branch of a residual unit (two arms added, not lesioned).
enum BnTail<'a> {
    Plain(&'a BatchNorm),
    Residual { bn: &'a BatchNorm, arms: &'a [Vec<Op>], residual: usize },
}

impl Op {
    fn is_relu(&self) -> bool {
        matches!(self, Op::Relu)
    }
}

impl DynBlock {
    /// The batch norm `op` is or ends, if any, for fusing with a ReLU after it.
    fn bn_tail<'a>(&'a self, op: &'a Op) -> Option<BnTail<'a>> {
        let bn = |op: Option<&Op>| match op {
            Some(Op::Field(i)) => match &self.fields[*i].1 {
                Field::Bn(bn) => Some(bn),
                _ => None,
            },
            _ => None,
        };
        match op {
            Op::Field(_) => bn(Some(op)).map(BnTail::Plain),
            Op::Combine { combinator: Some(Combinator::Add), arms, residual: Some(r), lesioned: false }
                if arms.len() == 2 =>
            {
                bn(arms[*r].last()).map(|bn| BnTail::Residual { bn, arms, residual: *r })
            }
            _ => None,
        }
    }

    /// `relu(bn(x))`, or `relu(residual branch + shortcut)` with the branch's last batch norm
    /// fused; the arms run in their order, as [`Self::run_arms`] runs them.
    fn run_bn_relu(&self, tail: BnTail<'_>, x: Tensor<4>) -> Tensor<4> {
        match tail {
            BnTail::Plain(bn) => crate::fused::bn_relu(bn, x, None),
            BnTail::Residual { bn, arms, residual } => {
                let run = |i: usize, x: Tensor<4>| match i == residual {
                    true => self.run(&arms[i][..arms[i].len() - 1], Act::Maps(x)).maps(),
                    false => self.run(&arms[i], Act::Maps(x)).maps(),
                };
                let first = run(0, x.clone());
                let second = run(1, x);
                let (branch, shortcut) = if residual == 0 { (first, second) } else { (second, first) };
                crate::fused::bn_relu(bn, branch, Some(shortcut))
            }
        }
    }

    /// Run each arm on the same input (cloned for all but the last).
    fn run_arms(&self, arms: &[Vec<Op>], x: Act) -> Vec<Act> {
        let mut outs = Vec::with_capacity(arms.len());
        let (mut maps_in, mut flat_in) = match x {
            Act::Maps(t) => (Some(t), None),
            Act::Flat(t) => (None, Some(t)),
        };
        for (i, arm) in arms.iter().enumerate() {
            let last = i + 1 == arms.len();
            let input = match (&mut maps_in, &mut flat_in) {
                (Some(t), _) if !last => Act::Maps(t.clone()),
                (_, Some(t)) if !last => Act::Flat(t.clone()),
                _ => match (maps_in.take(), flat_in.take()) {
                    (Some(t), _) => Act::Maps(t),
                    (_, Some(t)) => Act::Flat(t),
                    (None, None) => unreachable!("the input is kept for the last arm"),
                },
            };
            outs.push(self.run(arm, input));
        }
        outs
    }
}

/// An element-wise activation of the compiler's table (`ops::activation::TABLE`) with its
/// arguments, as the emitted code applies it: one arm per row.
pub fn activation<const D: usize>(function: ActFn, args: &[f64], x: Tensor<D>) -> Tensor<D> {
    use burn::tensor::activation as a;
    let arg = |i: usize| args.get(i).copied().unwrap_or(0.0);
    match function {
        ActFn::LeakyRelu => a::leaky_relu(x, arg(0)),
        ActFn::Elu => a::elu(x, arg(0)),
        ActFn::Celu => a::celu(x, arg(0)),
        ActFn::Softplus => a::softplus(x, arg(0)),
        ActFn::Hardtanh => a::hardtanh(x, arg(0), arg(1)),
        ActFn::Selu => a::selu(x),
        ActFn::Gelu => resnetc_kernels::gelu(x),
        ActFn::GeluTanh => a::gelu_approximate(x),
        ActFn::Silu | ActFn::Swish => a::silu(x),
        ActFn::Mish => a::mish(x),
        ActFn::Hardswish => a::hard_swish(x),
        // PyTorch's hardsigmoid: relu6(x + 3) / 6.
        ActFn::Hardsigmoid => a::hard_sigmoid(x, 1.0 / 6.0, 0.5),
        ActFn::Softsign => a::softsign(x),
        ActFn::Tanh => a::tanh(x),
    }
}

fn combine(combinator: Option<Combinator>, outs: Vec<Act>) -> Act {
    let mut it = outs.into_iter();
    let first = it.next().expect("a combination has an arm");
    match combinator {
        None => first,
        Some(Combinator::Concat) => {
            let mut all = vec![first.maps()];
            all.extend(it.map(Act::maps));
            Act::Maps(Tensor::cat(all, 1))
        }
        Some(c) => it.fold(first, |acc, next| match (acc, next) {
            (Act::Flat(a), Act::Flat(b)) => Act::Flat(if c == Combinator::Add { a + b } else { a * b }),
            (a, b) => {
                let (a, b) = (a.maps(), b.maps());
                Act::Maps(if c == Combinator::Add { a + b } else { a * b })
            }
        }),
    }
}

// The Module implementation walks fields under their names, as `#[derive(Module)]` does for
// the emitted structs, so records (checkpoints) are interchangeable.

macro_rules! each_field {
    ($field:expr, $m:ident => $body:expr) => {
        match $field {
            Field::Conv($m) => Field::Conv($body),
            Field::Bn($m) => Field::Bn($body),
            Field::GroupNorm($m) => Field::GroupNorm($body),
            Field::LayerNorm($m) => Field::LayerNorm($body),
            Field::Scale($m) => Field::Scale($body),
            Field::ChannelConv($m) => Field::ChannelConv($body),
            Field::DropPath($m) => Field::DropPath($body),
            Field::Linear($m) => Field::Linear($body),
            Field::Dropout($m) => Field::Dropout($body),
            Field::AvgPool($m) => Field::AvgPool($body),
            Field::MaxPool($m) => Field::MaxPool($body),
            Field::PRelu($m) => Field::PRelu($body),
            Field::Block($m) => Field::Block($body),
            Field::Stage($m) => Field::Stage($body),
        }
    };
}

macro_rules! visit_field {
    ($field:expr, $m:ident => $body:expr) => {
        match $field {
            Field::Conv($m) => $body,
            Field::Bn($m) => $body,
            Field::GroupNorm($m) => $body,
            Field::LayerNorm($m) => $body,
            Field::Scale($m) => $body,
            Field::ChannelConv($m) => $body,
            Field::DropPath($m) => $body,
            Field::Linear($m) => $body,
            Field::Dropout($m) => $body,
            Field::AvgPool($m) => $body,
            Field::MaxPool($m) => $body,
            Field::PRelu($m) => $body,
            Field::Block($m) => $body,
            Field::Stage($m) => $body,
        }
    };
}

impl Module for Field {
    fn collect_devices(&self, devices: Devices) -> Devices {
        visit_field!(self, m => Module::collect_devices(m, devices))
    }
    fn fork(self, device: &Device) -> Self {
        each_field!(self, m => Module::fork(m, device))
    }
    fn to_device(self, device: &Device) -> Self {
        each_field!(self, m => Module::to_device(m, device))
    }
    fn train(self) -> Self {
        each_field!(self, m => Module::train(m))
    }
    fn valid(&self) -> Self {
        each_field!(self, m => Module::valid(m))
    }
    fn materialize(self) -> Self {
        each_field!(self, m => Module::materialize(m))
    }
    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        visit_field!(self, m => Module::visit(m, visitor))
    }
    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        each_field!(self, m => Module::map(m, mapper))
    }
}

impl DynBlock {
    fn map_fields(self, mut f: impl FnMut(&str, Field) -> Field) -> Self {
        let fields = self.fields.into_iter().map(|(name, field)| {
            let field = f(&name, field);
            (name, field)
        });
        DynBlock { fields: fields.collect(), ops: self.ops }
    }
}

const CONTAINER: &str = "Struct:DynBlock";

impl Module for DynBlock {
    fn collect_devices(&self, devices: Devices) -> Devices {
        self.fields.iter().fold(devices, |d, (_, f)| f.collect_devices(d))
    }
    fn fork(self, device: &Device) -> Self {
        self.map_fields(|_, f| f.fork(device))
    }
    fn to_device(self, device: &Device) -> Self {
        self.map_fields(|_, f| f.to_device(device))
    }
    fn train(self) -> Self {
        self.map_fields(|_, f| f.train())
    }
    fn valid(&self) -> Self {
        DynBlock { fields: self.fields.iter().map(|(n, f)| (n.clone(), f.valid())).collect(), ops: self.ops.clone() }
    }
    fn materialize(self) -> Self {
        self.map_fields(|_, f| f.materialize())
    }
    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        for (name, field) in &self.fields {
            visitor.enter_module(name, CONTAINER);
            field.visit(visitor);
            visitor.exit_module(name, CONTAINER);
        }
    }
    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        self.map_fields(|name, f| {
            mapper.enter_module(name, CONTAINER);
            let f = f.map(mapper);
            mapper.exit_module(name, CONTAINER);
            f
        })
    }
}

impl Module for DynNet {
    fn collect_devices(&self, devices: Devices) -> Devices {
        self.root.collect_devices(devices)
    }
    fn fork(self, device: &Device) -> Self {
        DynNet { root: self.root.fork(device), config: self.config }
    }
    fn to_device(self, device: &Device) -> Self {
        DynNet { root: self.root.to_device(device), config: self.config }
    }
    fn train(self) -> Self {
        DynNet { root: self.root.train(), config: self.config }
    }
    fn valid(&self) -> Self {
        DynNet { root: self.root.valid(), config: self.config }
    }
    fn materialize(self) -> Self {
        DynNet { root: self.root.materialize(), config: self.config }
    }
    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        self.root.visit(visitor)
    }
    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        DynNet { root: self.root.map(mapper), config: self.config }
    }
}

/// Burn's learner prints its model; a run-time network prints its size.
impl std::fmt::Display for DynNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DynNet ({} tensors, {} values)", self.tensor_paths().len(), self.num_params())
    }
}
