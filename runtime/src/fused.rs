//! Batch norm fused with the ReLU after it, and with the residual addition between them in a
//! residual unit's `bn` → `+ shortcut` → `relu` tail, for training on the CPU backend (`flex`).
//!
//! Unfused, Burn runs each of these as its own pass over the activation and keeps each result
//! alive for the backward pass: the batch norm's output for the ReLU's mask, the ReLU's output
//! for the next convolution. Fused, the forward writes `max(0, bn(x) + shortcut)` in the batch
//! norm's own output pass, the backward masks the gradient inside the batch norm's passes, and
//! only the input and the output stay alive. The semantics (values, gradients of the input,
//! gamma, beta and the shortcut, running statistics) are those of [`crate::norm::batch_norm`],
//! `+` and `relu`; `tests/fused.rs` checks them against the unfused ops.
//!
//! Anywhere else (inference, other devices, a frozen batch norm) [`bn_relu`] runs the unfused
//! ops.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::ops::batch_norm::{batch_norm_relu_train, batch_norm_relu_train_backward};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{DType, DispatchDevice, DispatchKindConversion, DispatchTensor};
use burn::nn::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::{GradientCheckpointingStrategy, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turn the fusion off (or back on) for the whole process: [`bn_relu`] then always runs the
/// unfused ops. For tests and side-by-side benchmarks (`resnetc bench --no-fuse`).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether [`bn_relu`] runs the fused op for these operands: training (an autodiff device, the
/// batch norm not frozen) on `flex`, f32 or f64, the residual like `x`, fusion enabled.
pub fn fuses(bn: &BatchNorm, x: &Tensor<4>, residual: Option<&Tensor<4>>) -> bool {
    let device = x.device();
    ENABLED.load(Ordering::Relaxed)
        && crate::norm::trains(bn, x)
        && matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_))
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && residual.is_none_or(|r| r.dims() == x.dims() && r.dtype() == x.dtype() && r.device() == device)
}

/// `relu(bn(x) + residual)` (`relu(bn(x))` without a residual), fused where [`fuses`] says so.
pub fn bn_relu(bn: &BatchNorm, x: Tensor<4>, residual: Option<Tensor<4>>) -> Tensor<4> {
    let fusable = fuses(bn, &x, residual.as_ref());
    match x.device().gradient_checkpointing_strategy() {
        Some(GradientCheckpointingStrategy::Balanced) if fusable => fused::<BalancedCheckpointing>(bn, x, residual),
        Some(GradientCheckpointingStrategy::Disabled) if fusable => fused::<NoCheckpointing>(bn, x, residual),
        _ => {
            let y = crate::norm::batch_norm(bn, x);
            relu(match residual {
                Some(r) => y + r,
                None => y,
            })
        }
    }
}

/// The backward step; parents are `[x, gamma, beta]` and, with `N == 4`, the residual.
#[derive(Debug)]
struct BnReluBackward;

/// What the backward keeps: the input, gamma, the batch mean and variance, epsilon and the
/// output (whose sign is the ReLU's mask).
type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, f64, FlexTensor);

impl<const N: usize> Backward<Flex, N> for BnReluBackward {
    type State = State;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, gamma, mean, var, epsilon, output) = ops.state;
        let (dx, dgamma, dbeta, dresidual) =
            batch_norm_relu_train_backward(x, gamma, mean, var, epsilon, output, grad, N == 4);
        let mut parents = ops.parents.into_iter();
        for value in [Some(dx), Some(dgamma), Some(dbeta), dresidual] {
            if let (Some(Some(node)), Some(value)) = (parents.next(), value) {
                grads.register::<Flex>(node.id, value);
            }
        }
    }
}

fn fused<C: CheckpointStrategy>(bn: &BatchNorm, x: Tensor<4>, residual: Option<Tensor<4>>) -> Tensor<4>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    type Ad<C> = Autodiff<Flex, C>;
    let device = x.device();
    let [n, _, h, w] = x.dims();
    let count = n * h * w;
    let primitive = |t: Tensor<4>| t.try_into_primitive::<Ad<C>>().expect("checked: an autodiff flex tensor");
    let x = primitive(x);
    let residual = residual.map(primitive);
    let gamma = bn.gamma.val().try_into_primitive::<Ad<C>>().expect("the batch norm lives on the input's device");
    let beta = bn.beta.val().try_into_primitive::<Ad<C>>().expect("the batch norm lives on the input's device");
    let epsilon = bn.epsilon;
    let run = |residual: Option<FlexTensor>| {
        batch_norm_relu_train(
            x.primitive().clone(),
            gamma.primitive().clone(),
            beta.primitive().clone(),
            epsilon,
            residual,
        )
    };
    let (output, mean, var) = match &residual {
        None => record::<C, 3>([x.node(), gamma.node(), beta.node()], &x, &gamma, epsilon, || run(None)),
        Some(r) => record::<C, 4>([x.node(), gamma.node(), beta.node(), r.node()], &x, &gamma, epsilon, || {
            run(Some(r.primitive().clone()))
        }),
    };
    // The running statistics, as the unfused path updates them (`norm::update_running`: the
    // batch statistics enter as constants, the variance unbiased as in PyTorch).
    let stat = |t: FlexTensor| Tensor::<1>::from_primitive::<Flex>(t).to_device(&device);
    crate::norm::update_running(bn, stat(mean), stat(var), count);
    Tensor::from_primitive::<Ad<C>>(output)
}

/// Run the fused `forward` and put it on the autodiff graph with these parents (`[x, gamma,
/// beta]`, and the residual), keeping what the backward needs where a gradient is wanted.
fn record<C: CheckpointStrategy, const N: usize>(
    parents: [NodeGuard; N],
    x: &FloatTensor<Autodiff<Flex, C>>,
    gamma: &FloatTensor<Autodiff<Flex, C>>,
    epsilon: f64,
    forward: impl FnOnce() -> (FlexTensor, FlexTensor, FlexTensor),
) -> (FloatTensor<Autodiff<Flex, C>>, FlexTensor, FlexTensor)
where
    BnReluBackward: Backward<Flex, N, State = State>,
{
    match BnReluBackward.prepare::<C>(parents).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (y, mean, var) = forward();
            let state =
                (x.primitive().clone(), gamma.primitive().clone(), mean.clone(), var.clone(), epsilon, y.clone());
            (prep.finish(state, y), mean, var)
        }
        OpsKind::UnTracked(prep) => {
            let (y, mean, var) = forward();
            (prep.finish(y), mean, var)
        }
    }
}
