//! ONNX export of a network's eval-mode forward pass (`resnetc export`).
//!
//! burn-onnx's exporter (experimental in 0.22) runs the forward pass once on Burn's capture
//! device, records every tensor operation and lowers them to ONNX operators (opset 18), the
//! weights and running statistics embedded as initializers. What is exported is
//! [`DynNet::forward`] in eval mode, the unfused path: every batch norm uses its running
//! statistics (`BatchNormalization`), exactly what `resnetc eval` scores. The graph takes the
//! images already normalised, as the network itself does (the recipe's mean and std are not
//! part of it).
//!
//! The batch axis is dynamic (`batch`) unless a fixed batch is asked for: the forward is
//! captured at two batch sizes and the axis that differs becomes symbolic. A network whose
//! forward slices the batch axis' tensors (option-A shortcuts subsample with strided slices)
//! cannot keep it symbolic in burn-onnx 0.22; [`onnx`] says so and a fixed batch exports it.

use crate::model::DynNet;
use burn::tensor::{Device, Tensor};
use burn_onnx::export::{AxisSpec, ExportError, InputSpec, OnnxExporter};

/// The batch axis of the exported graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// A symbolic `batch` axis: any batch size at inference.
    Dynamic,
    /// This batch size, baked into every shape.
    Fixed(usize),
}

/// Why a network could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the batch axis cannot stay dynamic in this network ({0}); export a fixed batch with --batch N")]
    DynamicBatch(String),
    #[error("ONNX export failed: {0}")]
    Export(ExportError),
    #[error("a fixed batch must be at least 1")]
    EmptyBatch,
}

/// The ONNX model (serialised protobuf) of `model`'s eval-mode forward for inputs `[N, C, H, W]`
/// with `chw` = `[C, H, W]`.
///
/// The capture device has no autodiff, so every batch norm takes its eval path and the fused
/// training op ([`crate::fused`], flex and autodiff only) never runs.
pub fn onnx(model: &DynNet, [c, h, w]: [usize; 3], batch: Batch) -> Result<Vec<u8>, Error> {
    // The module is cloned onto the capture device by the exporter; the sample inputs only give
    // shapes (their values are not part of the graph).
    let device = Device::flex();
    let sample = |n: usize| Tensor::<4>::zeros([n, c, h, w], &device);
    let forward = |m: &DynNet, x: Tensor<4>| m.forward(x);
    let exporter = OnnxExporter::new();
    let exported = match batch {
        Batch::Fixed(0) => return Err(Error::EmptyBatch),
        Batch::Fixed(n) => exporter.export(model, sample(n), forward).map_err(Error::Export),
        Batch::Dynamic => {
            let specs =
                [InputSpec::new([AxisSpec::dynamic("batch"), AxisSpec::Static, AxisSpec::Static, AxisSpec::Static])];
            exporter.export_dynamic(model, sample(1), sample(2), &specs, forward).map_err(|e| match e {
                ExportError::DynamicShapeLost { .. } | ExportError::DynamicGraphMismatch { .. } => {
                    Error::DynamicBatch(e.to_string())
                }
                e => Error::Export(e),
            })
        }
    };
    Ok(exported?.into_bytes())
}
