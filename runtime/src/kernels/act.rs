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

/// The body of [`Activation::apply_slice`]: one loop a variant over `$xs`.
macro_rules! apply_each {
    ($act:expr, $xs:expr) => {
        match $act {
            Activation::Relu => {
                for v in $xs.iter_mut() {
                    if *v < 0.0 {
                        *v = 0.0;
                    }
                }
            }
            Activation::Relu6 => $xs.iter_mut().for_each(|v| *v = relu6_lanes(*v)),
            Activation::Silu => $xs.iter_mut().for_each(|v| *v = *v / (1.0 + exp_fast(-*v))),
            Activation::Gelu => $xs.iter_mut().for_each(|v| *v = 0.5 * *v * (1.0 + erf_fast(*v * std::f32::consts::FRAC_1_SQRT_2))),
            Activation::Sigmoid => $xs.iter_mut().for_each(|v| *v = 1.0 / (1.0 + exp_fast(-*v))),
            Activation::Hardswish => $xs.iter_mut().for_each(|v| *v = *v * relu6_lanes(*v + 3.0) / 6.0),
            Activation::Hardsigmoid => $xs.iter_mut().for_each(|v| *v = relu6_lanes(*v + 3.0) / 6.0),
        }
    };
}

impl Activation {
    /// The function on every value of `xs`, in place, for the fast kernels: one loop a
    /// variant, with no library calls (exp and erf are the f32 approximations below), so
    /// that it vectorises wherever it is inlined (into AVX-512 or AVX2 code, it uses those).
    /// Within a few ulp of [`Activation::apply`], the reference; NaN stays NaN.
    #[inline(always)]
    pub fn apply_slice(self, xs: &mut [f32]) {
        apply_each!(self, xs);
    }
}

/// `v.clamp(0.0, 6.0)` as two compare-selects in the operand order of `maxps` and `minps`
/// (NaN stays NaN): `f32::clamp` compiled to far slower AVX-512 code (relu6 depthwise
/// layers ran at half the AVX2 speed).
#[inline(always)]
fn relu6_lanes(v: f32) -> f32 {
    let t = if v < 0.0 { 0.0 } else { v };
    if t > 6.0 {
        6.0
    } else {
        t
    }
}

/// e^x in f32 without a library call: Cephes' `expf` (a reduction by powers of two, then
/// a degree-6 polynomial), within 2 ulp for x in [-87, 88]; arguments outside are clamped
/// (e^88 ~ 1.7e38, e^-87 ~ 1.6e-38); NaN gives NaN.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    // Compare-selects, not `clamp` (see `relu6_lanes`); NaN passes through both.
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5) * r * r
        + r
        + 1.0;
    // 2^n from its exponent bits, without a float-to-int conversion (which would not
    // vectorise as well): 2^23 + 127 + n holds 127 + n (in 1..=254 after the clamp) in its
    // low mantissa bits, which the shift moves into the exponent field.
    p * f32::from_bits((n + 8_388_735.0).to_bits() << 23)
}

/// erf(x) in f32: Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7 in exact
/// arithmetic, 5e-7 in f32).
#[inline(always)]
pub fn erf_fast(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_72) * t + 0.254_829_6) * t;
    (1.0 - poly * exp_fast(-a * a)).copysign(x)
}

/// Applies `act` to every element.
pub fn activation(x: ArrayView4<f32>, act: Activation) -> Array4<f32> {
    x.mapv(|v| act.apply(v))
}

/// Applies `act` to every element of a slice, into `y` (the fast kernels' form).
pub fn activation_into(x: &[f32], act: Activation, y: &mut [f32]) {
    y.copy_from_slice(&x[..y.len()]);
    act.apply_slice(y);
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
    fn the_fast_forms_follow_the_reference() {
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 / 100.0).chain([-100.0, 100.0, 1e-8, -1e-8]).collect();
        for x in [-87.0f32, -20.0, -1.0, -1e-3, 0.0, 0.5, 1.0, 10.0, 80.0, 88.0] {
            let (got, want) = (exp_fast(x), x.exp());
            assert!((got - want).abs() <= 4.0 * f32::EPSILON * want, "exp({x}): {got} vs {want}");
        }
        for &x in &xs {
            assert!((f64::from(erf_fast(x)) - erf(f64::from(x))).abs() < 5e-7, "erf({x})");
        }
        for act in Activation::ALL {
            let mut fast = xs.clone();
            act.apply_slice(&mut fast);
            for (&x, &f) in xs.iter().zip(&fast) {
                let r = act.apply(x);
                assert!((f - r).abs() <= 1e-6 * r.abs().max(1.0), "{act:?}({x}): {f} vs {r}");
            }
            let mut nan = [f32::NAN; 3];
            act.apply_slice(&mut nan);
            assert!(nan.iter().all(|v| v.is_nan()), "{act:?} keeps NaN");
        }
    }

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
