//! The cross-framework oracle: one network of every family (tests/oracle/cases.tsv) against
//! PyTorch's own numbers for the same weights and batch (tests/oracle/make.py wrote them with
//! the reference models of benches/reference/models.py). Each runs as `DynNet` (what `resnetc
//! train` trains) and as the struct `resnetc compile` emits, loaded through the same by-order
//! mapping `resnetc import --by-order` uses, and must give PyTorch's eval-mode logits, loss,
//! gradients, running statistics after a training-mode pass, and (two cases) weights after one
//! SGD step. Training passes run twice: with the fused CPU batch norm and without it.

use burn::module::{Module, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use resnetc_runtime::model::DynNet;
use resnetc_runtime::recipe::Recipe;
use resnetc_runtime::train::{item_losses, sgd};
use resnetc_runtime::weights::{self, Mapping, Target};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod common;

/// What each comparison must reach: the largest difference over the largest magnitude of
/// the reference tensor (f32 arithmetic against PyTorch's f64). Reached when these were set:
/// logits ≤ 2.9e-7, loss ≤ 1.0e-7, gradients ≤ 1.9e-6, running statistics ≤ 1.1e-7, weights
/// after the SGD step ≤ 8.9e-8, in every case, both forms, fused and unfused; a semantic
/// difference is orders of magnitude above (Burn's biased running variance: 1e-5 to 2e-5).
const LOGITS: f64 = 1e-5;
const LOSS: f64 = 1e-5;
const GRADIENTS: f64 = 2e-5;
const RUNNING: f64 = 1e-6;
const STEP: f64 = 1e-6;

/// The fusion switch is global: one case at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The networks the oracle compares, as both Rust forms run them.
trait Net: Module + Clone {
    fn run(&self, x: Tensor<4>) -> Tensor<2>;
    fn build(network: &resnetc_compiler::Network, device: &Device) -> Self;
}

impl Net for DynNet {
    fn run(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
    fn build(network: &resnetc_compiler::Network, device: &Device) -> Self {
        DynNet::new(network, device)
    }
}

/// One fixture: the tensors make.py saved and its metadata.
struct Fixture {
    path: PathBuf,
    tensors: BTreeMap<String, TensorData>,
    metadata: BTreeMap<String, String>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/oracle/{name}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let tensors = file
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let data = match view.dtype() {
                    safetensors::Dtype::F32 => TensorData::new(
                        view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
                        view.shape().to_vec(),
                    ),
                    safetensors::Dtype::I64 => TensorData::new(
                        view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect(),
                        view.shape().to_vec(),
                    ),
                    other => panic!("{name}: unexpected {other:?}"),
                };
                (name, data)
            })
            .collect();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let metadata = meta.metadata().clone().unwrap_or_default().into_iter().collect();
        Fixture { path, tensors, metadata }
    }

    fn get(&self, name: &str) -> &TensorData {
        self.tensors.get(name).unwrap_or_else(|| panic!("{}: no tensor {name}", self.path.display()))
    }

    fn values(&self, name: &str) -> Vec<f64> {
        self.get(name).clone().convert::<f64>().try_to_vec::<f64>().unwrap()
    }

    fn network(&self) -> resnetc_compiler::Network {
        let set: Vec<&str> = self.metadata["set"].split(',').collect();
        common::network_with(&self.metadata["spec"], &set)
    }
}

/// Largest absolute difference over the reference's largest magnitude.
fn error(got: &[f64], want: &[f64]) -> f64 {
    error_floored(got, want, 1e-12)
}

/// [`error`] with the reference's magnitude floored at `floor`.
fn error_floored(got: &[f64], want: &[f64], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(floor);
    got.iter().zip(want).fold(0f64, |m, (a, b)| m.max((a - b).abs())) / scale
}

/// A gradient that is zero in exact arithmetic (the bias of a batch norm that another batch
/// norm normalises away, as in PyramidNet's units: at most 1e-17 in PyTorch's f64) holds only
/// rounding noise in any f32 implementation; such a tensor (largest magnitude below this
/// fraction of the network's largest gradient) is compared against the network's largest
/// gradient instead of its own. `make.py` conditions its draws the same way.
const STRUCTURAL_ZERO: f64 = 1e-9;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

/// Each tensor's parameter id, by path.
fn ids<M: Module>(module: &M) -> BTreeMap<String, ParamId> {
    let mut out = BTreeMap::new();
    common::each_tensor(module, |(path, id, _)| {
        out.insert(path, id);
    });
    out
}

/// A tensor of the fixture in resnetc's layout for `target` (linear weights transposed).
fn expected(fixture: &Fixture, prefix: &str, source_name: &str, target: &Target) -> Vec<f64> {
    let data = fixture.get(&format!("{prefix}.{source_name}")).clone();
    if target.shape.len() == 2 && target.torch_shape() != target.shape {
        values(Tensor::<2>::from_data(data.convert::<f32>(), &Device::flex()).transpose())
    } else {
        data.convert::<f64>().try_to_vec::<f64>().unwrap()
    }
}

/// Load the fixture's weights into `M` by order, on `device`: (model, targets, source names).
fn load<M: Net>(
    fixture: &Fixture,
    network: &resnetc_compiler::Network,
    device: &Device,
) -> (M, Vec<Target>, Vec<String>) {
    let model = M::build(network, device);
    let order: Vec<&str> = fixture.metadata["order"].split(',').collect();
    let tensors = order
        .iter()
        .map(|name| {
            let data = fixture.get(&format!("param.{name}")).clone();
            weights::SourceTensor { name: name.to_string(), shape: data.shape().to_vec(), data }
        })
        .collect();
    let source = weights::Source { path: fixture.path.clone(), tensors, ordered: true };
    let targets = weights::targets(&model);
    let plan = weights::plan(&targets, &source, &Mapping::ByOrder, &network.name).unwrap_or_else(|e| panic!("{e}"));
    let names = plan.iter().map(|&i| source.tensors[i].name.clone()).collect();
    (weights::apply(model, &source, &targets, &plan, device), targets, names)
}

/// Every comparison for one Rust form of one case; returns the worst error of each kind.
fn check<M: Net>(name: &str, form: &str) -> [f64; 5] {
    let fixture = Fixture::load(name);
    let network = fixture.network();
    let device = Device::flex();
    let x = fixture.get("input").clone();
    let [n, ..] = x.shape().to_vec()[..] else { unreachable!() };
    let mut worst = [0f64; 5];
    let mut record = |kind: usize, what: &str, e: f64, limit: f64| {
        assert!(e < limit, "{name} ({form}): {what} differs from PyTorch by {e:e} (limit {limit:e})");
        worst[kind] = worst[kind].max(e);
    };

    // Eval mode: the stored running statistics.
    let (model, targets, names) = load::<M>(&fixture, &network, &device);
    let logits = model.run(Tensor::from_data(x.clone(), &device));
    record(0, "eval-mode logits", error(&values(logits), &fixture.values("eval_logits")), LOGITS);

    // Training mode: one forward and backward pass, fused and unfused, then one SGD step.
    let ad = device.clone().autodiff();
    let targets_t = Tensor::<1, Int>::from_data(fixture.get("target").clone(), &ad);
    for fused in [true, false] {
        resnetc_runtime::fused::set_enabled(fused);
        let mode = if fused { "fused" } else { "unfused" };
        let (model, _, _) = load::<M>(&fixture, &network, &ad);
        let logits = model.run(Tensor::from_data(x.clone(), &ad));
        assert_eq!(logits.dims(), [n, 10]);
        let loss = item_losses(logits, targets_t.clone(), 0.0).mean();
        record(1, &format!("{mode} loss"), error(&values(loss.clone()), &fixture.values("loss")), LOSS);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let ids = ids(&model);
        let largest = names
            .iter()
            .filter(|source| fixture.tensors.contains_key(&format!("grad.{source}")))
            .flat_map(|source| fixture.values(&format!("grad.{source}")))
            .fold(0f64, |m, v| m.max(v.abs()));
        for (target, source) in targets.iter().zip(&names) {
            let key = format!("grad.{source}");
            if !fixture.tensors.contains_key(&key) {
                continue; // a running statistic
            }
            let got = match target.shape.len() {
                1 => grads.get::<1>(ids[&target.path]).map(values),
                2 => grads.get::<2>(ids[&target.path]).map(values),
                3 => grads.get::<3>(ids[&target.path]).map(values),
                4 => grads.get::<4>(ids[&target.path]).map(values),
                r => panic!("{}: rank {r}", target.path),
            }
            .unwrap_or_else(|| panic!("{name} ({form}, {mode}): no gradient for {}", target.path));
            let what = format!("{mode} gradient of {} ({source})", target.path);
            let want = expected(&fixture, "grad", source, target);
            let own = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            let floor = if own < STRUCTURAL_ZERO * largest { largest } else { 1e-12 };
            record(2, &what, error_floored(&got, &want, floor), GRADIENTS);
        }
        let after = common::tensors(&model.valid());
        for (target, source) in targets.iter().zip(&names) {
            let key = format!("running.{source}");
            if fixture.tensors.contains_key(&key) {
                let what = format!("{mode} running statistic {} ({source})", target.path);
                record(3, &what, error(&after[&target.path], &fixture.values(&key)), RUNNING);
            }
        }
        if fixture.tensors.keys().any(|k| k.starts_with("step.")) {
            let mut recipe = Recipe::shipped("resnet-cifar").unwrap();
            recipe.optimizer.weight_decay = fixture.metadata["weight_decay"].parse().unwrap();
            let mut optimizer = sgd(&recipe).init();
            let stepped = common::tensors(&optimizer.step(0.1, model, grads).valid());
            for (target, source) in targets.iter().zip(&names) {
                let key = format!("step.{source}");
                if fixture.tensors.contains_key(&key) {
                    let what = format!("{mode} weight after one SGD step {} ({source})", target.path);
                    record(4, &what, error(&stepped[&target.path], &expected(&fixture, "step", source, target)), STEP);
                }
            }
        }
    }
    resnetc_runtime::fused::set_enabled(true);
    worst
}

fn case<M: Net>(name: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (form, worst) in [("DynNet", check::<DynNet>(name, "DynNet")), ("emitted", check::<M>(name, "emitted"))] {
        eprintln!(
            "{name:>20} {form:>8}: logits {:.1e}, loss {:.1e}, gradients {:.1e}, running statistics {:.1e}, SGD step {:.1e}",
            worst[0], worst[1], worst[2], worst[3], worst[4]
        );
    }
}

/// A test per case (the oracle and the export), and its emitted struct as a [`Net`].
macro_rules! cases {
    ($($test:ident: $name:literal => $module:ident :: $ty:ident),* $(,)?) => {$(
        impl Net for resnetc_codegen_tests::$module::$ty {
            fn run(&self, x: Tensor<4>) -> Tensor<2> {
                self.forward(x)
            }
            fn build(_: &resnetc_compiler::Network, device: &Device) -> Self {
                Self::new(device)
            }
        }

        #[test]
        fn $test() {
            case::<resnetc_codegen_tests::$module::$ty>($name);
        }
    )*
        mod onnx {$(
            #[test]
            fn $test() {
                super::export($name);
            }
        )*}
    };
}

/// `resnetc export`'s graph of a case: a dynamic batch axis (a fixed batch where the network
/// cannot keep it dynamic), the logits' shape, and every tensor of the loaded network
/// (weights and running statistics) embedded under its module path, bit for bit. onnxruntime's
/// logits for these graphs are checked against PyTorch's by tests/oracle/onnx_check.py (not in
/// CI: it needs onnxruntime).
fn export(name: &str) {
    use onnx_ir::Message;
    use resnetc_runtime::export::{self, Batch};
    let fixture = Fixture::load(name);
    let network = fixture.network();
    let (model, _, _) = load::<DynNet>(&fixture, &network, &Device::flex());
    let (bytes, batch) = match export::onnx(&model, [3, 32, 32], Batch::Dynamic) {
        Ok(bytes) => (bytes, None),
        Err(export::Error::DynamicBatch(why)) => {
            eprintln!("{name}: fixed batch ({why})");
            (export::onnx(&model, [3, 32, 32], Batch::Fixed(8)).unwrap(), Some(8))
        }
        Err(e) => panic!("{name}: {e}"),
    };
    let proto = onnx_ir::ModelProto::parse_from_bytes(&bytes).unwrap();
    let graph = &proto.graph;
    let dims = |v: &onnx_ir::ValueInfoProto| -> Vec<String> {
        let shape = &v.type_.tensor_type().shape;
        shape
            .dim
            .iter()
            .map(|d| if d.dim_param().is_empty() { d.dim_value().to_string() } else { d.dim_param().to_string() })
            .collect()
    };
    let n = batch.map_or("batch".to_string(), |n: usize| n.to_string());
    assert_eq!(graph.input.len(), 1, "{name}: one input");
    assert_eq!(dims(&graph.input[0]), [n.as_str(), "3", "32", "32"], "{name}: input shape");
    assert_eq!(graph.output.len(), 1, "{name}: one output");
    assert_eq!(dims(&graph.output[0]), [n.as_str(), "10"], "{name}: output shape");

    let initializers: BTreeMap<&str, Vec<f64>> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == 1) // f32; the rest are i64 shapes and indices
        .map(|t| {
            let values: Vec<f64> = if t.raw_data.is_empty() {
                t.float_data.iter().map(|&v| f64::from(v)).collect()
            } else {
                t.raw_data.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap()))).collect()
            };
            (t.name.as_str(), values)
        })
        .collect();
    for (path, values) in common::tensors(&model) {
        let got = initializers.get(path.as_str()).unwrap_or_else(|| panic!("{name}: {path} is not in the graph"));
        assert!(got == &values, "{name}: {path} is not embedded unchanged");
    }
    let ops: std::collections::BTreeSet<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    for op in ["Conv", "BatchNormalization", "Relu"] {
        assert!(ops.contains(op), "{name}: no {op} in {ops:?}");
    }
    eprintln!("{name}: {} nodes ({ops:?}), {} initializers", graph.node.len(), initializers.len());
}

cases!(
    resnet_20: "resnet-20" => oracle_resnet_20::Resnet20,
    resnet_20_a: "resnet-20-a" => oracle_resnet_20_a::Resnet20A,
    resnet_164: "resnet-164" => oracle_resnet_164::Resnet164,
    preresnet_164: "preresnet-164" => oracle_preresnet_164::Preresnet164,
    wrn_16_4: "wrn-16-4" => oracle_wrn_16_4::Wrn164,
    resnext_29_8x16d: "resnext-29-8x16d" => oracle_resnext_29_8x16d::Resnext298x16d,
    densenet_bc_100_12: "densenet-bc-100-12" => oracle_densenet_bc_100_12::DensenetBc10012,
    se_resnet_20: "se-resnet-20" => oracle_se_resnet_20::SeResnet20,
    exclusive_gating: "exclusive-gating" => oracle_exclusive_gating::ExclusiveGating,
    res2net: "res2net" => oracle_res2net::Res2net,
    factorised: "factorised" => oracle_factorised::FactorisedConvs,
    pyramidnet_110_48: "pyramidnet-110-48" => oracle_pyramidnet_110_48::Pyramidnet11048,
    shortcuts: "shortcuts" => oracle_shortcuts::Shortcuts,
);

// Group norm, layer norm, layer scale, dilation (tests/cases/norms.net): the oracle as above;
// burn-onnx 0.22 cannot export group norm's reduction yet, so its export is an error, not a graph.
impl Net for resnetc_codegen_tests::oracle_norms::Norms {
    fn run(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
    fn build(_: &resnetc_compiler::Network, device: &Device) -> Self {
        Self::new(device)
    }
}

#[test]
fn norms() {
    case::<resnetc_codegen_tests::oracle_norms::Norms>("norms");
}

#[test]
fn norms_export_is_refused_with_the_operation_named() {
    use resnetc_runtime::export::{self, Batch};
    let fixture = Fixture::load("norms");
    let network = fixture.network();
    let (model, _, _) = load::<DynNet>(&fixture, &network, &Device::flex());
    let err = export::onnx(&model, [3, 32, 32], Batch::Fixed(8)).unwrap_err().to_string();
    assert!(err.contains("MeanDim"), "{err}");
}
