//! Each activation, as the runtime and the emitted code apply it, against its formula at
//! points on both sides of zero.

use burn::tensor::{Device, Tensor};
use resnetc_compiler::ops::{ActFn, activation::TABLE};
use resnetc_runtime::model::activation;
use std::cell::RefCell;

const POINTS: [f64; 9] = [-4.0, -2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.5, 4.0];

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn relu6(x: f64) -> f64 {
    x.clamp(0.0, 6.0)
}

thread_local! {
    /// The table rows checked so far.
    static CHECKED: RefCell<Vec<ActFn>> = const { RefCell::new(Vec::new()) };
}

fn check(function: &str, args: &[f64], formula: impl Fn(f64) -> f64) {
    let device = Device::flex();
    let input: Vec<f32> = POINTS.iter().map(|&p| p as f32).collect();
    let x = Tensor::<1>::from_floats(input.as_slice(), &device);
    let y = match function {
        // Not rows of the table: the runtime and the emitted code call Burn's directly.
        "relu" => burn::tensor::activation::relu(x),
        "sigmoid" => burn::tensor::activation::sigmoid(x),
        _ => {
            let f = ActFn::named(function).unwrap_or_else(|| panic!("`{function}` is not in the table"));
            CHECKED.with(|c| c.borrow_mut().push(f));
            activation(f, args, x)
        }
    };
    let y: Vec<f32> = y.into_data().try_to_vec::<f32>().unwrap();
    for (&p, &got) in POINTS.iter().zip(&y) {
        let want = formula(p);
        assert!((got as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "{function}({p}) = {got}, formula gives {want}");
    }
}

#[test]
fn activations_follow_their_formulas() {
    check("relu", &[], |x| x.max(0.0));
    check("sigmoid", &[], sigmoid);
    check("tanh", &[], f64::tanh);
    check("leaky_relu", &[0.1], |x| if x > 0.0 { x } else { 0.1 * x });
    check("elu", &[0.7], |x| if x > 0.0 { x } else { 0.7 * (x.exp() - 1.0) });
    check("celu", &[0.5], |x| x.max(0.0) + (0.5 * ((x / 0.5).exp() - 1.0)).min(0.0));
    let (alpha, scale) = (1.673_263_242_354_377_2, 1.050_700_987_355_480_5);
    check("selu", &[], |x| scale * if x > 0.0 { x } else { alpha * (x.exp() - 1.0) });
    check("gelu", &[], |x| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)));
    let c = (2.0 / std::f64::consts::PI).sqrt();
    check("gelu_tanh", &[], |x| 0.5 * x * (1.0 + (c * (x + 0.044715 * x.powi(3))).tanh()));
    check("silu", &[], |x| x * sigmoid(x));
    check("swish", &[], |x| x * sigmoid(x));
    check("mish", &[], |x| x * (1.0 + x.exp()).ln().tanh());
    check("hardswish", &[], |x| x * relu6(x + 3.0) / 6.0);
    check("hardsigmoid", &[], |x| relu6(x + 3.0) / 6.0);
    check("hardtanh", &[-2.0, 1.5], |x| x.clamp(-2.0, 1.5));
    check("softsign", &[], |x| x / (1.0 + x.abs()));
    check("softplus", &[2.0], |x| (1.0 + (2.0 * x).exp()).ln() / 2.0);
    // A new row of the compiler's table needs its formula here.
    let missing: Vec<&str> =
        TABLE.iter().filter(|d| !CHECKED.with(|c| c.borrow().contains(&d.function))).map(|d| d.name).collect();
    assert!(missing.is_empty(), "activations without a formula test: {missing:?}");
}

/// PReLU as the emitted code builds it: one slope per channel, 0.25 at first (PyTorch's default).
#[test]
fn prelu_scales_the_negative_half_per_channel() {
    use burn::nn::PReluConfig;
    let device = Device::flex();
    let prelu = PReluConfig::new().with_num_parameters(2).init(&device);
    let x = Tensor::<4>::from_floats([[[[-2.0f32, 3.0]], [[-4.0, 0.5]]]], &device);
    let y: Vec<f32> = prelu.forward(x).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(y, vec![-0.5, 3.0, -1.0, 0.5]);
}
