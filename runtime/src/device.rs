//! `--device` values: `cpu` (Burn's flex backend), `wgpu[:N]`, `cuda[:N[,M...]]`.
//!
//! GPU backends are cargo features of this crate (`wgpu`, `cuda`); asking for one that was
//! not built is an error that says which feature to enable.

use burn::tensor::Device;

/// The devices named by `text`, and a canonical name for them (`cuda:0,1`).
pub fn parse(text: &str) -> Result<(Vec<Device>, String), String> {
    let (kind, indices) = match text.split_once(':') {
        Some((kind, list)) => {
            let indices = list
                .split(',')
                .map(|i| i.trim().parse::<usize>().map_err(|_| format!("`{text}`: `{i}` is not a device index")))
                .collect::<Result<Vec<_>, _>>()?;
            (kind, Some(indices))
        }
        None => (text, None),
    };
    let name = match &indices {
        Some(i) => format!("{kind}:{}", i.iter().map(usize::to_string).collect::<Vec<_>>().join(",")),
        None => kind.to_string(),
    };
    let devices = match kind {
        "cpu" | "flex" => {
            if indices.is_some() {
                return Err(format!("`{text}`: the CPU backend is one device"));
            }
            vec![Device::flex()]
        }
        "wgpu" => wgpu(indices)?,
        "cuda" => cuda(indices.unwrap_or_else(|| vec![0]))?,
        other => return Err(format!("unknown device `{other}`: expected cpu, wgpu[:N] or cuda[:N[,M...]]")),
    };
    Ok((devices, name))
}

/// `wgpu`: the adapter wgpu prefers (a discrete GPU when there is one); `wgpu:N`: discrete GPU N.
#[cfg(feature = "wgpu")]
fn wgpu(indices: Option<Vec<usize>>) -> Result<Vec<Device>, String> {
    use burn::tensor::DeviceKind;
    Ok(match indices {
        None => vec![Device::wgpu(DeviceKind::DefaultDevice)],
        Some(indices) => indices.into_iter().map(|i| Device::wgpu(DeviceKind::DiscreteGpu(i))).collect(),
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_indices: Option<Vec<usize>>) -> Result<Vec<Device>, String> {
    Err("this resnetc was built without GPU support through wgpu: rebuild with `--features wgpu`".into())
}

#[cfg(feature = "cuda")]
fn cuda(indices: Vec<usize>) -> Result<Vec<Device>, String> {
    Ok(indices.into_iter().map(Device::cuda).collect())
}

#[cfg(not(feature = "cuda"))]
fn cuda(_indices: Vec<usize>) -> Result<Vec<Device>, String> {
    Err("this resnetc was built without CUDA support: rebuild with `--features cuda` (see README: CUDA needs LLVM at build time)".into())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn device_names() {
        assert_eq!(parse("cpu").unwrap().1, "cpu");
        assert!(parse("cpu:1").unwrap_err().contains("one device"));
        assert!(parse("tpu").unwrap_err().contains("unknown device `tpu`"));
        assert!(parse("cuda:0,x").unwrap_err().contains("`x` is not a device index"));
        #[cfg(not(feature = "cuda"))]
        assert!(parse("cuda:0,1").unwrap_err().contains("--features cuda"));
        #[cfg(not(feature = "wgpu"))]
        assert!(parse("wgpu").unwrap_err().contains("--features wgpu"));
    }
}
