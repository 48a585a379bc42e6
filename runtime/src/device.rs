//! `--device` values: `cpu[:N]` (Burn's flex backend), `wgpu`, `wgpu:N`, `wgpu:cpu`,
//! `cuda[:N[,M...]]`.
//!
//! GPU backends are cargo features of this crate (`wgpu`, `cuda`); asking for one that was
//! not built is an error that says which feature to enable. Every GPU choice is checked before
//! Burn opens the device, so a machine without the hardware or the driver gets a message saying
//! what is missing instead of a panic on Burn's device thread:
//!
//! - `wgpu` is the adapter wgpu prefers among the *hardware* ones (a discrete GPU when there is
//!   one); with only a software rasterizer (Mesa's lavapipe) it is an error that names it and
//!   points at `wgpu:cpu`, which asks for the software adapter on purpose (CI's GPU tests).
//!   `wgpu:N` is discrete GPU `N`.
//! - `cuda:N` loads the CUDA driver (`libcuda.so.1`) and counts its devices first.
//! - `cpu:N` is `N` replicas on the CPU, trained with Burn's multi-device strategy: a test of
//!   the multi-device path on any machine, not a speed-up (the replicas share the cores).

use burn::tensor::Device;

/// Give the Vulkan loader a private `XDG_RUNTIME_DIR` when the environment has none: Mesa's
/// window-system probing prints "error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment." on every wgpu start otherwise (containers and CI have no login session).
///
/// # Safety
/// Sets an environment variable: call it before any other thread exists (first in `main`).
pub unsafe fn quiet_vulkan_loader() {
    #[cfg(all(unix, feature = "wgpu"))]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { geteuid() };
        let dir = std::env::temp_dir().join(format!("resnetc-runtime-{uid}"));
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        if std::fs::metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid) {
            // SAFETY: the caller guarantees no other thread runs yet.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

#[cfg(all(unix, feature = "wgpu"))]
unsafe extern "C" {
    fn geteuid() -> u32;
}

/// What a `--device` value selected.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The devices, main device first; several mean data-parallel training.
    pub devices: Vec<Device>,
    /// A canonical name (`cpu`, `cpu:2`, `wgpu:cpu`, `cuda:0,1`).
    pub name: String,
    pub kind: Kind,
}

/// The backend family of a [`Selection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cpu,
    Wgpu,
    Cuda,
}

impl Selection {
    /// The CPU (`--device cpu`).
    pub fn cpu() -> Self {
        Selection { devices: vec![Device::flex()], name: "cpu".into(), kind: Kind::Cpu }
    }

    /// The main device (the one evaluation, benchmarks and the optimizer run on).
    pub fn main(&self) -> Device {
        self.devices[0].clone()
    }

    /// Whether this is a GPU backend (mixed precision is offered there only).
    pub fn is_gpu(&self) -> bool {
        self.kind != Kind::Cpu
    }

    /// What the main device is, for the first line of a run and `summary.json`:
    /// `flex (CPU, 2 threads)`, `NVIDIA H200 (cuda)`, `llvmpipe (LLVM 15.0.6, 256 bits) (wgpu, software)`.
    pub fn describe(&self) -> String {
        describe(&self.devices[0], self.kind)
    }
}

/// The devices named by `text`.
pub fn parse(text: &str) -> Result<Selection, String> {
    let (kind, list) = match text.split_once(':') {
        Some((kind, list)) => (kind, Some(list)),
        None => (text, None),
    };
    let indices = |list: &str| -> Result<Vec<usize>, String> {
        let indices = list
            .split(',')
            .map(|i| i.trim().parse::<usize>().map_err(|_| format!("`{text}`: `{i}` is not a device index")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = indices.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != indices.len() {
            return Err(format!("`{text}`: a device is named twice"));
        }
        Ok(indices)
    };
    match kind {
        "cpu" | "flex" => {
            let replicas = match list {
                None => 1,
                Some(n) => match n.trim().parse::<usize>() {
                    Ok(n @ 1..=64) => n,
                    _ => {
                        return Err(format!(
                            "`{text}`: `cpu:N` asks for N replicas on the CPU (1 to 64), as in `cpu:2`"
                        ));
                    }
                },
            };
            let name = if replicas == 1 { "cpu".to_string() } else { format!("cpu:{replicas}") };
            Ok(Selection { devices: vec![Device::flex(); replicas], name, kind: Kind::Cpu })
        }
        "wgpu" => {
            let (devices, name) = match list {
                None => (wgpu_default()?, "wgpu".to_string()),
                Some("cpu") => (vec![wgpu_software()?], "wgpu:cpu".to_string()),
                Some(list) => {
                    let i = indices(list)?;
                    let name = format!("wgpu:{}", join(&i));
                    (wgpu_discrete(i)?, name)
                }
            };
            Ok(Selection { devices, name, kind: Kind::Wgpu })
        }
        "cuda" => {
            let i = match list {
                None => vec![0],
                Some(list) => indices(list)?,
            };
            let name = format!("cuda:{}", join(&i));
            Ok(Selection { devices: cuda(i)?, name, kind: Kind::Cuda })
        }
        other => Err(format!("unknown device `{other}`: expected cpu[:N], wgpu, wgpu:N, wgpu:cpu or cuda[:N[,M...]]")),
    }
}

fn join(indices: &[usize]) -> String {
    indices.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(feature = "wgpu")]
fn wgpu_default() -> Result<Vec<Device>, String> {
    use burn::tensor::DeviceKind;
    let adapters = wgpu_adapters();
    if adapters.iter().any(|a| !a.software) {
        return Ok(vec![Device::wgpu(DeviceKind::DefaultDevice)]);
    }
    Err(match adapters.first() {
        Some(a) => format!(
            "wgpu found no hardware GPU, only the software adapter `{}` ({}): pass `--device wgpu:cpu` to run on \
             it anyway (slow: it is for tests), or `--device cpu`",
            a.name, a.backend
        ),
        None => "wgpu found no adapter at all: install a Vulkan driver (on Debian/Ubuntu the GPU vendor's, or \
                 `mesa-vulkan-drivers` for the software one) or use `--device cpu`"
            .into(),
    })
}

#[cfg(feature = "wgpu")]
fn wgpu_software() -> Result<Device, String> {
    use burn::tensor::DeviceKind;
    if wgpu_adapters().iter().any(|a| a.software) {
        return Ok(Device::wgpu(DeviceKind::Cpu));
    }
    Err("`wgpu:cpu`: wgpu found no software adapter: install Mesa's Vulkan driver (`apt-get install \
         mesa-vulkan-drivers`: lavapipe)"
        .into())
}

#[cfg(feature = "wgpu")]
fn wgpu_discrete(indices: Vec<usize>) -> Result<Vec<Device>, String> {
    use burn::tensor::DeviceKind;
    // The same card shows up once per graphics API (Vulkan and GL): count on the API with most.
    let adapters = wgpu_adapters();
    let discrete = adapters
        .iter()
        .map(|a| adapters.iter().filter(|b| b.discrete && b.backend == a.backend).count())
        .max()
        .unwrap_or(0);
    if let Some(&i) = indices.iter().find(|&&i| i >= discrete) {
        return Err(format!("`wgpu:{i}`: wgpu found {discrete} discrete GPU(s) (counted from 0)"));
    }
    Ok(indices.into_iter().map(|i| Device::wgpu(DeviceKind::DiscreteGpu(i))).collect())
}

/// One adapter wgpu offers.
#[cfg(feature = "wgpu")]
#[derive(Clone, Debug)]
pub struct Adapter {
    pub name: String,
    pub backend: String,
    pub software: bool,
    pub discrete: bool,
}

/// The adapters wgpu finds on this machine, on every graphics API it was built with, asked of
/// the drivers without opening a device (what cubecl chooses among).
#[cfg(feature = "wgpu")]
pub fn wgpu_adapters() -> Vec<Adapter> {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::all(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    // Native adapter enumeration completes at once; its future is polled a single time.
    let mut future = std::pin::pin!(instance.enumerate_adapters(wgpu::Backends::all()));
    let adapters = match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(adapters) => adapters,
        Poll::Pending => Vec::new(),
    };
    adapters
        .iter()
        .map(|adapter| {
            let info = adapter.get_info();
            Adapter {
                name: info.name,
                backend: format!("{:?}", info.backend),
                software: info.device_type == wgpu::DeviceType::Cpu,
                discrete: info.device_type == wgpu::DeviceType::DiscreteGpu,
            }
        })
        .collect()
}

#[cfg(not(feature = "wgpu"))]
const NO_WGPU: &str = "this resnetc was built without GPU support through wgpu: rebuild with `--features wgpu`";

#[cfg(not(feature = "wgpu"))]
fn wgpu_default() -> Result<Vec<Device>, String> {
    Err(NO_WGPU.into())
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_software() -> Result<Device, String> {
    Err(NO_WGPU.into())
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_discrete(_indices: Vec<usize>) -> Result<Vec<Device>, String> {
    Err(NO_WGPU.into())
}

#[cfg(feature = "cuda")]
fn cuda(indices: Vec<usize>) -> Result<Vec<Device>, String> {
    let count = cuda_driver::device_count()?;
    if let Some(&i) = indices.iter().find(|&&i| i >= count) {
        return Err(format!("`cuda:{i}`: the CUDA driver reports {count} device(s) (counted from 0)"));
    }
    Ok(indices.into_iter().map(Device::cuda).collect())
}

#[cfg(not(feature = "cuda"))]
fn cuda(_indices: Vec<usize>) -> Result<Vec<Device>, String> {
    Err("this resnetc was built without CUDA support: rebuild with `--features cuda` (see README: \
         scripts/setup-cuda-build.sh provides the LLVM it needs at build time)"
        .into())
}

/// The name of `device` and its backend.
fn describe(device: &Device, kind: Kind) -> String {
    match kind {
        Kind::Cpu => format!("flex (CPU, {} threads)", std::thread::available_parallelism().map_or(1, |n| n.get())),
        Kind::Wgpu | Kind::Cuda => identity(device, kind),
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn identity(device: &Device, kind: Kind) -> String {
    let identity = device.identity();
    #[cfg(feature = "wgpu")]
    let api = identity
        .as_ref()
        .filter(|_| kind == Kind::Wgpu)
        .and_then(|id| wgpu_adapters().into_iter().find(|a| a.name == id.name).map(|a| format!("wgpu, {}", a.backend)));
    #[cfg(not(feature = "wgpu"))]
    let api: Option<String> = None;
    let backend = api.unwrap_or_else(|| if kind == Kind::Cuda { "cuda" } else { "wgpu" }.to_string());
    match identity {
        Some(id) if id.physical.is_none() => format!("{} ({backend}, software)", id.name),
        Some(id) => format!("{} ({backend})", id.name),
        None => backend,
    }
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn identity(_device: &Device, _kind: Kind) -> String {
    unreachable!("GPU selections need a GPU feature")
}

/// The CUDA driver API, loaded the way cudarc loads it, to check for it before Burn does (Burn
/// panics on its device thread when the library is missing).
#[cfg(all(unix, any(feature = "cuda", test)))]
pub mod cuda_driver {
    use std::ffi::{CStr, CString, c_char, c_int, c_void};

    const LIBRARIES: [&str; 2] = ["libcuda.so.1", "libcuda.so"];

    unsafe extern "C" {
        fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
        fn dlerror() -> *mut c_char;
    }
    const RTLD_NOW: c_int = 2;

    /// How many CUDA devices the driver sees; an error saying what is missing otherwise.
    pub fn device_count() -> Result<usize, String> {
        device_count_from(&LIBRARIES)
    }

    /// [`device_count`] with the library names to try (tests pass one that does not exist).
    pub fn device_count_from(libraries: &[&str]) -> Result<usize, String> {
        let mut reasons = Vec::new();
        let handle = libraries.iter().find_map(|name| {
            let c = CString::new(*name).expect("no NUL in library names");
            // SAFETY: dlopen with a valid C string; the handle is never closed (the driver stays
            // loaded for Burn, as cudarc keeps it).
            let handle = unsafe { dlopen(c.as_ptr(), RTLD_NOW) };
            if handle.is_null() {
                // SAFETY: dlerror returns NULL or a C string valid until the next dl call.
                let why = unsafe { dlerror() };
                let why = if why.is_null() {
                    "not found".to_string()
                } else {
                    unsafe { CStr::from_ptr(why) }.to_string_lossy().into_owned()
                };
                reasons.push(why);
                None
            } else {
                Some(handle)
            }
        });
        let Some(handle) = handle else {
            return Err(format!(
                "no CUDA driver found ({}): install the NVIDIA driver (it provides libcuda.so.1; check with \
                 `nvidia-smi`), or use --device wgpu or cpu",
                reasons.join("; ")
            ));
        };
        type Init = unsafe extern "C" fn(u32) -> c_int;
        type Count = unsafe extern "C" fn(*mut c_int) -> c_int;
        let symbol = |name: &str| {
            let c = CString::new(name).expect("no NUL in symbol names");
            // SAFETY: handle is a live dlopen handle.
            let p = unsafe { dlsym(handle, c.as_ptr()) };
            (!p.is_null()).then_some(p).ok_or_else(|| format!("the CUDA driver has no `{name}`: is it a CUDA driver?"))
        };
        // SAFETY: the driver API's documented signatures (cuda.h): CUresult cuInit(unsigned int),
        // CUresult cuDeviceGetCount(int*).
        let init: Init = unsafe { std::mem::transmute::<*mut c_void, Init>(symbol("cuInit")?) };
        let count: Count = unsafe { std::mem::transmute::<*mut c_void, Count>(symbol("cuDeviceGetCount")?) };
        let code = unsafe { init(0) };
        if code != 0 {
            return Err(format!(
                "the CUDA driver loaded but cuInit failed with error {code}{}: check `nvidia-smi` and \
                 CUDA_VISIBLE_DEVICES",
                match code {
                    100 => " (CUDA_ERROR_NO_DEVICE: no GPU visible)",
                    35 => " (CUDA_ERROR_INSUFFICIENT_DRIVER: the driver is older than the runtime)",
                    999 => " (CUDA_ERROR_UNKNOWN)",
                    _ => "",
                }
            ));
        }
        let mut n: c_int = 0;
        let code = unsafe { count(&mut n) };
        if code != 0 {
            return Err(format!("the CUDA driver could not count its devices (error {code})"));
        }
        if n <= 0 {
            return Err("the CUDA driver sees no device: check `nvidia-smi` and CUDA_VISIBLE_DEVICES".into());
        }
        Ok(n as usize)
    }
}

#[cfg(all(not(unix), feature = "cuda"))]
pub mod cuda_driver {
    /// No probe off Unix: Burn's own initialisation reports a missing driver there.
    pub fn device_count() -> Result<usize, String> {
        Ok(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn device_names() {
        assert_eq!(parse("cpu").unwrap().name, "cpu");
        assert_eq!(parse("cpu:1").unwrap().name, "cpu");
        let two = parse("cpu:2").unwrap();
        assert_eq!((two.name.as_str(), two.devices.len()), ("cpu:2", 2));
        assert!(two.describe().starts_with("flex (CPU"));
        assert!(parse("cpu:0").unwrap_err().contains("replicas"));
        assert!(parse("cpu:x").unwrap_err().contains("replicas"));
        assert!(parse("tpu").unwrap_err().contains("unknown device `tpu`"));
        assert!(parse("cuda:0,x").unwrap_err().contains("`x` is not a device index"));
        assert!(parse("cuda:1,1").unwrap_err().contains("named twice"));
        #[cfg(not(feature = "cuda"))]
        assert!(parse("cuda:0,1").unwrap_err().contains("--features cuda"));
        #[cfg(not(feature = "wgpu"))]
        assert!(parse("wgpu").unwrap_err().contains("--features wgpu"));
        #[cfg(not(feature = "wgpu"))]
        assert!(parse("wgpu:cpu").unwrap_err().contains("--features wgpu"));
    }

    /// Without the driver library the probe says what to install (and does not panic).
    #[cfg(unix)]
    #[test]
    fn missing_cuda_driver_is_a_clear_error() {
        let e = super::cuda_driver::device_count_from(&["libcuda-that-does-not-exist.so.1"]).unwrap_err();
        assert!(e.starts_with("no CUDA driver found"), "{e}");
        assert!(e.contains("libcuda-that-does-not-exist.so.1"), "{e}");
        assert!(e.contains("nvidia-smi"), "{e}");
    }

    /// A library that is not the driver (libc has no `cuInit`) is reported as such.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_library_without_the_driver_api_is_refused() {
        let e = super::cuda_driver::device_count_from(&["libc.so.6"]).unwrap_err();
        assert!(e.contains("no `cuInit`"), "{e}");
    }
}
