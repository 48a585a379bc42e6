//! Helpers shared by the integration tests.

use resnetc_compiler::Compilation;

/// A shipped spec (path relative to the workspace root) checked with `--set NAME=VALUE`
/// overrides; panics with the rendered diagnostics if it does not check.
#[allow(dead_code)]
pub fn network_with(path: &str, set: &[&str]) -> resnetc_compiler::Network {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let text = std::fs::read_to_string(format!("{root}/{path}")).unwrap();
    let mut c = Compilation::new();
    let id = c.add_source(path, text);
    let overrides: Vec<resnetc_compiler::Override> =
        set.iter().map(|s| resnetc_compiler::Override::parse(s).unwrap()).collect();
    c.check(id, &overrides).unwrap_or_else(|d| panic!("{}", c.render(&d, false)))
}

/// An inline spec checked with no overrides; panics with the rendered diagnostics if it does
/// not check.
#[allow(dead_code)]
pub fn network_from(name: &str, text: &str) -> resnetc_compiler::Network {
    let mut c = Compilation::new();
    let id = c.add_source(name, text);
    c.check(id, &[]).unwrap_or_else(|d| panic!("{}", c.render(&d, false)))
}

/// What [`each_tensor`] hands over: a tensor's path, its parameter id, and a reader of its values.
type Visit<'a> = (String, burn::module::ParamId, &'a dyn Fn() -> burn::tensor::TensorData);

/// `f` for every float tensor a module records (`stage1.0.bn1.running_mean`).
#[allow(dead_code)]
pub fn each_tensor<M: burn::module::Module>(module: &M, f: impl FnMut(Visit<'_>)) {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct Walk<F> {
        path: Vec<String>,
        f: F,
    }
    impl<F: FnMut(Visit<'_>)> ModuleVisitor for Walk<F> {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            (self.f)((self.path.join("."), param.id, &|| param.val().into_data()));
        }
    }
    module.visit(&mut Walk { path: Vec::new(), f });
}

/// Every float tensor a module records, by path, as f64 values.
#[allow(dead_code)]
pub fn tensors<M: burn::module::Module>(module: &M) -> std::collections::BTreeMap<String, Vec<f64>> {
    let mut out = std::collections::BTreeMap::new();
    each_tensor(module, |(path, _, read)| {
        out.insert(path, read().convert::<f64>().try_to_vec::<f64>().unwrap());
    });
    out
}

/// A fresh folder under the system's temporary directory for one test.
#[allow(dead_code)]
pub fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("resnetc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// CIFAR-10 binary files in `dir/data`: 5 × `per_batch` training records and `test` test
/// records; the class sets the mean brightness of each channel, so there is something to learn.
#[allow(dead_code)]
pub fn cifar10(dir: &std::path::Path, per_batch: usize, test: usize) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut state = 12345u32;
    let mut record = |label: u8| {
        let mut r = vec![label];
        for ch in 0..3u32 {
            for _ in 0..1024 {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let noise = (state >> 24) % 64;
                r.push(((u32::from(label) * 20 + ch * 7 + noise) % 256) as u8);
            }
        }
        r
    };
    for b in 1..=5usize {
        let bytes: Vec<u8> = (0..per_batch).flat_map(|i| record(((b + i) % 10) as u8)).collect();
        std::fs::write(data.join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    let bytes: Vec<u8> = (0..test).flat_map(|i| record((i % 10) as u8)).collect();
    std::fs::write(data.join("test_batch.bin"), bytes).unwrap();
    data
}

/// A batch norm straight on the input (its batch statistics are those of the images), then
/// a small residual network with batch norms inside and after the residual addition.
#[allow(dead_code)]
pub const STATS: &str = "network stats(classes = 10) {
    input 3x32x32
    bn
    conv3x3(8) bn relu
    stage 1 × basic(8)
    stage 1 × basic(16, stride = 2)
    global_avg_pool linear(classes)
}";

/// The normalisation `train` measured and recorded in the run's `recipe.yaml`.
#[allow(dead_code)]
pub fn normalisation(out: &std::path::Path) -> resnetc_runtime::data::Augment {
    let n = resnetc_runtime::recipe::Recipe::load(&out.join("recipe.yaml")).unwrap().normalize.unwrap();
    resnetc_runtime::data::Augment::new(n.mean, n.std, 0, false)
}

/// `|a - b|` relative to `b` (at least 1e-3).
#[allow(dead_code)]
pub fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-3)
}

/// The running mean and variance a fresh batch norm (mean 0, variance 1, momentum 0.1) holds
/// after `steps` steps whose batches all have the statistics of `values` (one channel), PyTorch's
/// way: the variance unbiased over `per_batch` values per channel.
#[allow(dead_code)]
pub fn ema_of_equal_batches(values: &[f64], per_batch: usize, steps: i32) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let per_batch = per_batch as f64;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n * per_batch / (per_batch - 1.0);
    let keep = 0.9f64.powi(steps);
    ((1.0 - keep) * mean, keep + (1.0 - keep) * var)
}

/// A tensor's values as f32s.
#[allow(dead_code)]
pub fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Training and a replay of it seed the CPU device's one random generator (at the start, and
/// the loader at every epoch) and draw initial weights and masks from it: a test running beside
/// them, seeding or drawing its own, would change theirs. Such tests hold this, one at a time.
#[allow(dead_code)]
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
