//! Elementwise activations.

use ndarray::{Array4, ArrayView4};

/// The activation functions: the IR's and the kernels' one enum. Each is an op of the
/// language under [`Activation::name`]; NaN propagates through every one, as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    Relu,
    Relu6,
    Silu,
    /// The exact (erf) GELU, as `torch.nn.GELU()`.
    Gelu,
    Sigmoid,
    /// `x * relu6(x + 3) / 6`, as `torch.nn.Hardswish()`.
    Hardswish,
    /// `relu6(x + 3) / 6`, as `torch.nn.Hardsigmoid()`.
    Hardsigmoid,
}

impl Activation {
    /// Every activation, in declaration order.
    pub const ALL: [Activation; 7] = [
        Activation::Relu,
        Activation::Relu6,
        Activation::Silu,
        Activation::Gelu,
        Activation::Sigmoid,
        Activation::Hardswish,
        Activation::Hardsigmoid,
    ];

    /// The op's name in the language, dumps and summaries.
    pub const fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
            Activation::Sigmoid => "sigmoid",
            Activation::Hardswish => "hardswish",
            Activation::Hardsigmoid => "hardsigmoid",
        }
    }

    /// The function on one value.
    pub fn apply(self, v: f32) -> f32 {
        // `clamp` and the comparisons below keep NaN (`f32::max` would drop it).
        let relu6 = |v: f32| v.clamp(0.0, 6.0);
        match self {
            Activation::Relu => {
                if v < 0.0 {
                    0.0
                } else {
                    v
                }
            }
            Activation::Relu6 => relu6(v),
            Activation::Silu => v / (1.0 + (-v).exp()),
            Activation::Gelu => (0.5 * f64::from(v) * (1.0 + erf(f64::from(v) / std::f64::consts::SQRT_2))) as f32,
            Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Activation::Hardswish => v * relu6(v + 3.0) / 6.0,
            Activation::Hardsigmoid => relu6(v + 3.0) / 6.0,
        }
    }
}

/// Applies `act` to every element.
pub fn activation(x: ArrayView4<f32>, act: Activation) -> Array4<f32> {
    x.mapv(|v| act.apply(v))
}

/// Applies `act` to every element of a slice, into `y`.
pub fn activation_into(x: &[f32], act: Activation, y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = act.apply(xv);
    }
}

/// The error function, to about 1e-15 (W. J. Cody's rational approximations via erfc for
/// large arguments, Taylor series for small ones).
pub(crate) fn erf(x: f64) -> f64 {
    if x.abs() < 2.0 {
        // Maclaurin series: erf x = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)).
        let mut sum = 0.0f64;
        let mut term = x;
        let x2 = x * x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x2 / n;
            if n > 200.0 {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        // Continued fraction for erfc, converging fast for |x| >= 2.
        let a = x.abs();
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (a + f);
        }
        let erfc = (-a * a).exp() / (a + f) / std::f64::consts::PI.sqrt();
        (1.0 - erfc).copysign(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (-1.5, -0.966_105_146_475_310_7),
            (2.5, 0.999_593_047_982_555),
        ] {
            assert!((erf(x) - want).abs() < 1e-12, "erf({x}) = {} want {want}", erf(x));
        }
    }

    #[test]
    fn activations_on_sample_points() {
        let cases: [(Activation, f32, f32); 14] = [
            (Activation::Hardswish, -4.0, 0.0),
            (Activation::Hardswish, 1.0, 1.0 * 4.0 / 6.0),
            (Activation::Hardswish, 5.0, 5.0),
            (Activation::Hardsigmoid, -3.5, 0.0),
            (Activation::Hardsigmoid, 0.0, 0.5),
            (Activation::Hardsigmoid, 3.5, 1.0),
            (Activation::Relu, -1.0, 0.0),
            (Activation::Relu, 2.5, 2.5),
            (Activation::Relu6, 7.0, 6.0),
            (Activation::Relu6, -1.0, 0.0),
            (Activation::Sigmoid, 0.0, 0.5),
            (Activation::Silu, 1.0, 0.731_058_6),
            (Activation::Gelu, 1.0, 0.841_344_7),
            (Activation::Gelu, -2.0, -0.045_500_26),
        ];
        for (a, x, want) in cases {
            assert!((a.apply(x) - want).abs() < 1e-6, "{a:?}({x}) = {} want {want}", a.apply(x));
        }
    }

    #[test]
    fn nan_propagates_through_every_activation() {
        for a in Activation::ALL {
            assert!(a.apply(f32::NAN).is_nan(), "{a:?} dropped a NaN");
        }
    }
}
