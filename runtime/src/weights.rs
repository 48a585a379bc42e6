//! Weights from PyTorch: a `state_dict` saved with `torch.save` (`.pt`/`.pth`, also nested
//! under a `state_dict` key as bearpaw's checkpoints are) or a `.safetensors` file, mapped
//! onto a network's tensors (`resnetc import`).
//!
//! Files are read with burn-store (`PytorchStore`, `SafetensorsStore`); tensors are in
//! PyTorch's layout and names: a batch norm's `weight`/`bias` are resnetc's `gamma`/`beta`, a
//! linear weight is `[out, in]` (resnetc's is `[in, out]`, transposed on import), and
//! `num_batches_tracked` is ignored. A source tensor finds its resnetc tensor either by name,
//! after the `--rename` regex replacements, or by position (`--by-order`): both list their
//! tensors in forward order (PyTorch modules register theirs in the order `forward` uses them,
//! as torchvision's and bearpaw's ResNets do; resnetc's order is the spec's). Every shape is
//! verified, and any missing, unexpected or mis-shaped tensor fails the whole import with the
//! list of them: never a partial load.

use crate::model::DynNet;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::store::{ModuleStore, PytorchStore, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Why weights could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("{path} does not fit {network}:\n{problems}")]
    Mismatch { path: PathBuf, network: String, problems: String },
}

/// One tensor of a weights file, in PyTorch's layout.
#[derive(Clone, Debug)]
pub struct SourceTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// A weights file's tensors, in the file's forward order where it records one.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub tensors: Vec<SourceTensor>,
    /// Whether `tensors` are in the order the file wrote them (else sorted by name).
    pub ordered: bool,
}

fn read_error(path: &Path, message: impl std::fmt::Display) -> WeightsError {
    WeightsError::Read { path: path.to_path_buf(), message: message.to_string() }
}

/// Read a `.pt`/`.pth` (`torch.save` of a state dict, or of a dict holding one under
/// `state_dict`) or a `.safetensors` file. `num_batches_tracked` is dropped.
pub fn read(path: &Path) -> Result<Source, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    let safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let (tensors, order) = if safetensors {
        let mut store = SafetensorsStore::from_bytes(Some(bytes.clone()));
        let tensors = store.get_all_tensors().map_err(|e| read_error(path, e))?.clone();
        (tensors, safetensors_order(&bytes))
    } else {
        let mut store = PytorchStore::from_file(path);
        let mut tensors = store.get_all_tensors().map_err(|e| read_error(path, e))?.clone();
        if tensors.keys().any(|k| k.starts_with("state_dict.")) {
            store = PytorchStore::from_file(path).with_top_level_key("state_dict");
            tensors = store.get_all_tensors().map_err(|e| read_error(path, e))?.clone();
        }
        let order = pickle_order(&bytes, tensors.keys());
        (tensors, order)
    };
    let mut out = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let data = burn::store::bridge::to_data(&tensor).map_err(|e| read_error(path, format!("{name}: {e}")))?;
        if !data.dtype().is_float() {
            return Err(read_error(path, format!("{name} holds {:?} values, not floats", data.dtype())));
        }
        let data = data.convert::<f32>();
        out.push(SourceTensor { name, shape: data.shape().to_vec(), data });
    }
    let ordered = match order {
        Some(order) => {
            let rank: HashMap<&str, usize> = order.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
            if out.iter().all(|t| rank.contains_key(t.name.as_str())) {
                out.sort_by_key(|t| rank[t.name.as_str()]);
                true
            } else {
                false
            }
        }
        None => false,
    };
    Ok(Source { path: path.to_path_buf(), tensors: out, ordered })
}

/// The tensor order a safetensors file's metadata records under `order` (comma-separated
/// names, as `tests/oracle/make.py` writes it); safetensors itself keeps none.
fn safetensors_order(bytes: &[u8]) -> Option<Vec<String>> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    let order = metadata.metadata().as_ref()?.get("order")?;
    Some(order.split(',').map(str::to_string).collect())
}

/// The order of `keys` in a `torch.save` file: where each key's string first appears in the
/// pickle (a state dict pickles its keys in its own order, which is registration order). The
/// pickle is stored uncompressed ahead of the tensor data (`data.pkl`, the zip's first entry,
/// or the legacy format's stream); strings are found as the pickle writes them, their length
/// before them (`SHORT_BINUNICODE` or `BINUNICODE`), in one pass over the file.
fn pickle_order<'a>(bytes: &[u8], keys: impl Iterator<Item = &'a String>) -> Option<Vec<String>> {
    let mut first: HashMap<&[u8], Option<usize>> = keys.map(|k| (k.as_bytes(), None)).collect();
    let mut missing = first.len();
    for (at, &op) in bytes.iter().enumerate() {
        if missing == 0 {
            break;
        }
        let (len, start) = match op {
            0x8c if at + 2 <= bytes.len() => (usize::from(bytes[at + 1]), at + 2),
            b'X' if at + 5 <= bytes.len() => {
                let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().expect("four bytes"));
                (len as usize, at + 5)
            }
            _ => continue,
        };
        if let Some(slot) = bytes.get(start..start.saturating_add(len)).and_then(|s| first.get_mut(s))
            && slot.is_none()
        {
            *slot = Some(at);
            missing -= 1;
        }
    }
    let mut found: Vec<(usize, &[u8])> =
        first.into_iter().map(|(k, at)| at.map(|at| (at, k))).collect::<Option<_>>()?;
    found.sort();
    Some(found.into_iter().map(|(_, k)| String::from_utf8_lossy(k).into_owned()).collect())
}

/// What a network tensor is, for PyTorch's names and layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A batch norm's `gamma`/`beta` (PyTorch's `weight`/`bias`) or running statistics.
    Norm,
    /// A linear layer's weight, `[in, out]` (PyTorch's `[out, in]`).
    LinearWeight,
    Other,
}

/// A network tensor: its path, shape and kind, in the network's (forward) order.
#[derive(Clone, Debug)]
pub struct Target {
    pub path: String,
    pub shape: Vec<usize>,
    kind: Kind,
}

impl Target {
    /// The name PyTorch gives this tensor (`bn1.weight` for `bn1.gamma`).
    pub fn torch_name(&self) -> String {
        match (self.kind, self.path.rsplit_once('.')) {
            (Kind::Norm, Some((module, "gamma"))) => format!("{module}.weight"),
            (Kind::Norm, Some((module, "beta"))) => format!("{module}.bias"),
            _ => self.path.clone(),
        }
    }

    /// The shape of this tensor in PyTorch's layout.
    pub fn torch_shape(&self) -> Vec<usize> {
        match self.kind {
            Kind::LinearWeight => self.shape.iter().rev().copied().collect(),
            _ => self.shape.clone(),
        }
    }
}

/// Every float tensor of `module`, in the order it records them.
pub fn targets<M: Module>(module: &M) -> Vec<Target> {
    struct Walk {
        path: Vec<(String, String)>,
        out: Vec<Target>,
    }
    impl ModuleVisitor for Walk {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.path.push((name.to_string(), container.to_string()));
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // Entering a field names the struct that holds it: a tensor's own module.
            let (leaf, owner) = self.path.last().map_or(("", ""), |(n, c)| (n.as_str(), c.as_str()));
            let kind = match (owner, leaf) {
                ("Struct:BatchNorm", _) => Kind::Norm,
                ("Struct:Linear", "weight") => Kind::LinearWeight,
                _ => Kind::Other,
            };
            let path = self.path.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(".");
            self.out.push(Target { path, shape: param.val().dims().to_vec(), kind });
        }
    }
    let mut walk = Walk { path: Vec::new(), out: Vec::new() };
    module.visit(&mut walk);
    walk.out
}

/// A `--rename REGEX=REPLACEMENT` rule (the replacement may use `$1`, `${name}`).
#[derive(Clone, Debug)]
pub struct Rename {
    pattern: regex::Regex,
    replacement: String,
}

impl Rename {
    /// Parse `REGEX=REPLACEMENT`, split at the first `=` (write `\x3d` for an `=` inside the
    /// regex).
    pub fn parse(text: &str) -> Result<Rename, String> {
        let (pattern, replacement) =
            text.split_once('=').ok_or_else(|| format!("--rename {text}: expected REGEX=REPLACEMENT"))?;
        let pattern = regex::Regex::new(pattern).map_err(|e| format!("--rename {text}: {e}"))?;
        Ok(Rename { pattern, replacement: replacement.to_string() })
    }

    fn apply(&self, name: &str) -> String {
        self.pattern.replace_all(name, self.replacement.as_str()).into_owned()
    }
}

/// How source tensors find their network tensors.
#[derive(Clone, Debug)]
pub enum Mapping {
    /// By name after these renames, in order (PyTorch's `weight`/`bias` of a batch norm, or
    /// resnetc's `gamma`/`beta`).
    ByName(Vec<Rename>),
    /// By position: the file's forward order against the network's.
    ByOrder,
}

/// For each network tensor (in order), the index of its source tensor; or every problem.
pub fn plan(targets: &[Target], source: &Source, mapping: &Mapping, network: &str) -> Result<Vec<usize>, WeightsError> {
    let shape = |s: &[usize]| format!("[{}]", s.iter().map(usize::to_string).collect::<Vec<_>>().join(", "));
    let mut problems = Vec::new();
    let chosen: Vec<Option<usize>> = match mapping {
        Mapping::ByOrder => {
            if !source.ordered {
                return Err(WeightsError::Usage(format!(
                    "{}: --by-order needs the file's tensor order, which it does not record (safetensors keeps none): save the state dict with torch.save, or map names with --rename",
                    source.path.display()
                )));
            }
            if source.tensors.len() != targets.len() {
                problems.push(format!(
                    "  {} has {} tensors (num_batches_tracked not counted), the network {}",
                    source.path.display(),
                    source.tensors.len(),
                    targets.len()
                ));
            }
            (0..targets.len()).map(|i| (i < source.tensors.len()).then_some(i)).collect()
        }
        Mapping::ByName(renames) => {
            let renamed: Vec<String> =
                source.tensors.iter().map(|t| renames.iter().fold(t.name.clone(), |n, r| r.apply(&n))).collect();
            let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
            for (i, name) in renamed.iter().enumerate() {
                if let Some(first) = by_name.insert(name, i) {
                    problems.push(format!(
                        "  {} and {} both rename to {name}",
                        source.tensors[first].name, source.tensors[i].name
                    ));
                }
            }
            targets
                .iter()
                .map(|t| by_name.get(t.torch_name().as_str()).or_else(|| by_name.get(t.path.as_str())).copied())
                .collect()
        }
    };
    for (target, index) in targets.iter().zip(&chosen) {
        match index {
            None if matches!(mapping, Mapping::ByName(_)) => {
                problems.push(format!("  missing: {} {}", target.torch_name(), shape(&target.torch_shape())))
            }
            None => {}
            Some(i) => {
                let s = &source.tensors[*i];
                if s.shape != target.torch_shape() {
                    problems.push(format!(
                        "  shape: {} is {} in the file, {} {} in the network",
                        s.name,
                        shape(&s.shape),
                        target.torch_name(),
                        shape(&target.torch_shape())
                    ));
                }
            }
        }
    }
    let used: std::collections::BTreeSet<usize> = chosen.iter().flatten().copied().collect();
    for (_, s) in source.tensors.iter().enumerate().filter(|(i, _)| !used.contains(i)) {
        let what = if matches!(mapping, Mapping::ByOrder) { "extra" } else { "unexpected" };
        problems.push(format!("  {what}: {} {}", s.name, shape(&s.shape)));
    }
    if problems.is_empty() {
        Ok(chosen.into_iter().map(|i| i.expect("no problem: every tensor found")).collect())
    } else {
        const SHOWN: usize = 40;
        let more = problems.len().saturating_sub(SHOWN);
        problems.truncate(SHOWN);
        if more > 0 {
            problems.push(format!("  ... and {more} more"));
        }
        Err(WeightsError::Mismatch {
            path: source.path.clone(),
            network: network.to_string(),
            problems: problems.join("\n"),
        })
    }
}

/// `model` with every tensor replaced by its planned source tensor (linear weights
/// transposed to resnetc's layout), on `device`.
pub fn apply<M: Module>(model: M, source: &Source, targets: &[Target], plan: &[usize], device: &Device) -> M {
    struct Load<'a> {
        path: Vec<String>,
        values: HashMap<String, (&'a SourceTensor, Kind)>,
        device: Device,
    }
    impl ModuleMapper for Load<'_> {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some((source, kind)) = self.values.get(&self.path.join(".")) else {
                return param;
            };
            let mut tensor = Tensor::<D>::from_data(source.data.clone(), &self.device);
            if *kind == Kind::LinearWeight {
                tensor = tensor.transpose();
            }
            param.map(|old| tensor.set_require_grad(old.is_require_grad()))
        }
    }
    let values = targets.iter().zip(plan).map(|(t, &i)| (t.path.clone(), (&source.tensors[i], t.kind))).collect();
    model.map(&mut Load { path: Vec::new(), values, device: device.clone() })
}

/// Read `path` and load it into `model` as `mapping` says.
pub fn import(
    model: DynNet,
    network: &str,
    path: &Path,
    mapping: &Mapping,
    device: &Device,
) -> Result<DynNet, WeightsError> {
    let source = read(path)?;
    let targets = targets(&model);
    let plan = plan(&targets, &source, mapping, network)?;
    Ok(apply(model, &source, &targets, &plan, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pickled(key: &str, long: bool) -> Vec<u8> {
        let mut out = if long { vec![b'X'] } else { vec![0x8c] };
        if long {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        } else {
            out.push(key.len() as u8);
        }
        out.extend_from_slice(key.as_bytes());
        out
    }

    #[test]
    fn the_pickle_gives_the_order_of_the_keys() {
        // Keys as protocol 2 (BINUNICODE) and 4 (SHORT_BINUNICODE) write them, with a key that
        // is a prefix of another and an unrelated string in between.
        let mut bytes = b"\x80\x02}q\x00(".to_vec();
        for (key, long) in [("fc.weight", true), ("other", false), ("conv1.weight", false), ("fc.weight.x", true)] {
            bytes.extend(pickled(key, long));
            bytes.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\nq\x01");
        }
        let keys = ["conv1.weight", "fc.weight.x", "fc.weight"].map(String::from);
        assert_eq!(pickle_order(&bytes, keys.iter()).unwrap(), ["fc.weight", "conv1.weight", "fc.weight.x"]);
        // A key that the pickle does not hold: no order.
        let missing = ["conv1.weight", "bn.weight"].map(String::from);
        assert_eq!(pickle_order(&bytes, missing.iter()), None);
    }

    fn target(path: &str, shape: &[usize], kind: Kind) -> Target {
        Target { path: path.into(), shape: shape.to_vec(), kind }
    }

    fn source(names: &[(&str, &[usize])]) -> Source {
        let tensors = names
            .iter()
            .map(|(name, shape)| {
                let n = shape.iter().product();
                SourceTensor {
                    name: name.to_string(),
                    shape: shape.to_vec(),
                    data: TensorData::new(vec![0f32; n], shape.to_vec()),
                }
            })
            .collect();
        Source { path: "w.pt".into(), tensors, ordered: true }
    }

    #[test]
    fn tensors_match_by_renamed_name_or_by_order_and_every_problem_is_listed() {
        let targets = [
            target("bn1.gamma", &[8], Kind::Norm),
            target("bn1.beta", &[8], Kind::Norm),
            target("linear1.weight", &[8, 10], Kind::LinearWeight),
        ];
        let file = source(&[("module.bn.weight", &[8]), ("module.bn.bias", &[8]), ("module.fc.weight", &[10, 8])]);
        let renames = ["^module\\.=", "^bn\\.=bn1.", "^fc\\.=linear1."].map(|r| Rename::parse(r).unwrap()).to_vec();
        assert_eq!(plan(&targets, &file, &Mapping::ByName(renames.clone()), "n").unwrap(), [0, 1, 2]);
        assert_eq!(plan(&targets, &file, &Mapping::ByOrder, "n").unwrap(), [0, 1, 2]);

        // A linear layer of another width, a tensor too many, one missing.
        let other = source(&[("module.bn.weight", &[8]), ("module.fc.weight", &[12, 8]), ("module.extra", &[3])]);
        let e = plan(&targets, &other, &Mapping::ByName(renames), "n").unwrap_err().to_string();
        for want in [
            "missing: bn1.bias [8]",
            "shape: module.fc.weight is [12, 8] in the file, linear1.weight [10, 8] in the network",
            "unexpected: module.extra [3]",
        ] {
            assert!(e.contains(want), "`{want}` not in {e}");
        }
        let e = plan(&targets, &other, &Mapping::ByOrder, "n").unwrap_err().to_string();
        assert!(e.contains("shape: module.fc.weight is [12, 8] in the file, bn1.bias [8]"), "{e}");

        let unordered = Source { ordered: false, ..file };
        let e = plan(&targets, &unordered, &Mapping::ByOrder, "n").unwrap_err().to_string();
        assert!(e.contains("--by-order needs the file's tensor order"), "{e}");
        assert!(Rename::parse("no-equals").is_err() && Rename::parse("(=x").is_err());
    }
}
