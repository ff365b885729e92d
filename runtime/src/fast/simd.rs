//! One register of f32 lanes per kernel path, for kernels written once over a [`Vector`]
//! and compiled three times (see `multiversion!`'s `simd` form): [`Avx512`] (16 lanes),
//! [`Avx2`] (8 lanes, fused multiply-add) and [`Portable`] (8 lanes of plain arithmetic,
//! which the baseline compiles to SSE2). Written with intrinsics where LLVM's loop
//! vectoriser was unreliable: small fixed-size loops and compare-selects met its scalar
//! remainders and ran at a fraction of the speed (the depthwise convolutions at ~20% of
//! the FMA peak).
//!
//! Every method is `unsafe`: the caller promises that the CPU supports the type's
//! instruction set (the code runs inside a function compiled for it, reached through an
//! [`Isa`](super::Isa) whose `supported()` was checked) and, for the memory ones, that
//! `LANES` floats are valid at the pointer.

use crate::kernels::Activation;

/// A register of `LANES` f32 values.
pub trait Vector: Copy {
    /// Floats a register holds.
    const LANES: usize;
    /// # Safety
    /// The CPU supports the type's ISA; `p..p + LANES` is readable.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// The CPU supports the type's ISA; `p..p + LANES` is writable.
    unsafe fn store(self, p: *mut f32);
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn splat(v: f32) -> Self;
    /// `self * b + c` (fused where the ISA has it).
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn add(self, b: Self) -> Self;
    /// `max(self, 0)`, NaN kept.
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn relu(self) -> Self;
    /// `min(max(self, 0), 6)`, NaN kept.
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn relu6(self) -> Self;
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn sub(self, b: Self) -> Self;
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn mul(self, b: Self) -> Self;
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn div(self, b: Self) -> Self;
    /// `if self < lo { lo } else { self }` (NaN kept).
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn at_least(self, lo: Self) -> Self;
    /// `if self > hi { hi } else { self }` (NaN kept).
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn at_most(self, hi: Self) -> Self;
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn floor(self) -> Self;
    /// 2^n for lanes holding whole numbers n in -126..=127, from the exponent bits (as
    /// `kernels::act::exp_fast` builds it).
    /// # Safety
    /// The CPU supports the type's ISA.
    unsafe fn exp2_whole(self) -> Self;
}

/// e^x, lane by lane: `kernels::act::exp_fast`'s clamp and reduction by powers of two
/// (x = n ln 2 + r, |r| <= ln 2 / 2), then e^r = 1 + r + r^2 P(r) with P of degree 3
/// fitted here to the relative error (1.8e-7 at most before rounding; Cephes' P, in
/// `exp_fast`, has degree 5), the multiply-adds fused where the ISA has them. Two
/// multiply-adds fewer than Cephes': SiLU over a buffer in L1 went from 0.42 to 0.34 ns an
/// element with AVX2, 0.31 to 0.24 with AVX-512, on a Zen 4. The test below bounds the
/// error against f64 at 5e-7.
///
/// # Safety
/// The CPU supports `V`'s ISA.
#[inline(always)]
pub unsafe fn exp<V: Vector>(x: V) -> V {
    let x = x.at_least(V::splat(-87.0)).at_most(V::splat(88.0));
    let n = x.mul_add(V::splat(std::f32::consts::LOG2_E), V::splat(0.5)).floor();
    let r = n.mul_add(V::splat(-0.693_359_4), x);
    let r = n.mul_add(V::splat(2.121_944_4e-4), r);
    let mut p = V::splat(8.346_44e-3);
    for c in [4.192_71e-2, 0.166_667_82, 0.499_988_62] {
        p = p.mul_add(r, V::splat(c));
    }
    let p = p.mul_add(r.mul(r), r).add(V::splat(1.0));
    p.mul(n.exp2_whole())
}

/// `act` on every lane, as [`Activation::apply_slice`] computes it up to [`exp`]'s
/// rounding (within 1e-6 relative, tested below: `apply_slice` uses `exp_fast`): ReLU and
/// ReLU6 as compare-selects, SiLU and sigmoid through [`exp`], hardswish and hardsigmoid
/// through ReLU6; GELU through `apply_slice` on the stored lanes. The micro-kernels' full
/// tiles and the depthwise kernels use it; partial tiles, the portable micro-kernel and
/// the plain kernels use `apply_slice`/`apply`.
///
/// # Safety
/// The CPU supports `V`'s ISA.
#[inline(always)]
pub unsafe fn activate<V: Vector>(v: V, act: Activation) -> V {
    let one = V::splat(1.0);
    match act {
        Activation::Relu => v.relu(),
        Activation::Relu6 => v.relu6(),
        Activation::Silu => v.div(one.add(exp(v.mul(V::splat(-1.0))))),
        Activation::Sigmoid => one.div(one.add(exp(v.mul(V::splat(-1.0))))),
        Activation::Hardswish => v.mul(v.add(V::splat(3.0)).relu6()).div(V::splat(6.0)),
        Activation::Hardsigmoid => v.add(V::splat(3.0)).relu6().div(V::splat(6.0)),
        Activation::Gelu => {
            let mut lanes = [0.0f32; 16];
            let lanes = &mut lanes[..V::LANES];
            v.store(lanes.as_mut_ptr());
            act.apply_slice(lanes);
            V::load(lanes.as_ptr())
        }
    }
}

/// Eight lanes of plain Rust arithmetic (unfused, like the portable micro-kernel).
#[derive(Clone, Copy)]
pub struct Portable([f32; 8]);

impl Vector for Portable {
    const LANES: usize = 8;

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Portable(p.cast::<[f32; 8]>().read_unaligned())
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        p.cast::<[f32; 8]>().write_unaligned(self.0)
    }

    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Portable([v; 8])
    }

    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] * b.0[i] + c.0[i]))
    }

    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] + b.0[i]))
    }

    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // `v < 0` is false for NaN, which stays.
        Portable(self.0.map(|v| if v < 0.0 { 0.0 } else { v }))
    }

    #[inline(always)]
    unsafe fn relu6(self) -> Self {
        Portable(self.relu().0.map(|v| if v > 6.0 { 6.0 } else { v }))
    }

    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] - b.0[i]))
    }

    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] * b.0[i]))
    }

    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] / b.0[i]))
    }

    #[inline(always)]
    unsafe fn at_least(self, lo: Self) -> Self {
        Portable(std::array::from_fn(|i| if self.0[i] < lo.0[i] { lo.0[i] } else { self.0[i] }))
    }

    #[inline(always)]
    unsafe fn at_most(self, hi: Self) -> Self {
        Portable(std::array::from_fn(|i| if self.0[i] > hi.0[i] { hi.0[i] } else { self.0[i] }))
    }

    #[inline(always)]
    unsafe fn floor(self) -> Self {
        Portable(self.0.map(f32::floor))
    }

    #[inline(always)]
    unsafe fn exp2_whole(self) -> Self {
        Portable(self.0.map(|n| f32::from_bits((n + 8_388_735.0).to_bits() << 23)))
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Vector;
    use std::arch::x86_64::*;

    /// Eight lanes in a ymm register, AVX2 and FMA.
    #[derive(Clone, Copy)]
    pub struct Avx2(__m256);

    /// Sixteen lanes in a zmm register, AVX-512 F.
    #[derive(Clone, Copy)]
    pub struct Avx512(__m512);

    // The intrinsics below need the type's features; every method's contract (see the
    // trait) is that the CPU has them, and the kernels call these only from functions
    // compiled with them, where they inline (to one or two instructions each).
    impl Vector for Avx2 {
        const LANES: usize = 8;

        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx2(_mm256_loadu_ps(p))
        }

        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0)
        }

        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Avx2(_mm256_set1_ps(v))
        }

        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            Avx2(_mm256_fmadd_ps(self.0, b.0, c.0))
        }

        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            Avx2(_mm256_add_ps(self.0, b.0))
        }

        #[inline(always)]
        unsafe fn relu(self) -> Self {
            // maxps returns its second operand when either is NaN: the value, kept.
            Avx2(_mm256_max_ps(_mm256_setzero_ps(), self.0))
        }

        #[inline(always)]
        unsafe fn relu6(self) -> Self {
            Avx2(_mm256_min_ps(_mm256_set1_ps(6.0), self.relu().0))
        }

        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            Avx2(_mm256_sub_ps(self.0, b.0))
        }

        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            Avx2(_mm256_mul_ps(self.0, b.0))
        }

        #[inline(always)]
        unsafe fn div(self, b: Self) -> Self {
            Avx2(_mm256_div_ps(self.0, b.0))
        }

        #[inline(always)]
        unsafe fn at_least(self, lo: Self) -> Self {
            // maxps(lo, v) = lo > v ? lo : v: NaN in v is returned.
            Avx2(_mm256_max_ps(lo.0, self.0))
        }

        #[inline(always)]
        unsafe fn at_most(self, hi: Self) -> Self {
            Avx2(_mm256_min_ps(hi.0, self.0))
        }

        #[inline(always)]
        unsafe fn floor(self) -> Self {
            Avx2(_mm256_floor_ps(self.0))
        }

        #[inline(always)]
        unsafe fn exp2_whole(self) -> Self {
            let biased = _mm256_castps_si256(_mm256_add_ps(self.0, _mm256_set1_ps(8_388_735.0)));
            Avx2(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased)))
        }
    }

    impl Vector for Avx512 {
        const LANES: usize = 16;

        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx512(_mm512_loadu_ps(p))
        }

        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }

        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Avx512(_mm512_set1_ps(v))
        }

        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            Avx512(_mm512_fmadd_ps(self.0, b.0, c.0))
        }

        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            Avx512(_mm512_add_ps(self.0, b.0))
        }

        #[inline(always)]
        unsafe fn relu(self) -> Self {
            // As in the AVX2 one: NaN in the second operand is returned.
            Avx512(_mm512_max_ps(_mm512_setzero_ps(), self.0))
        }

        #[inline(always)]
        unsafe fn relu6(self) -> Self {
            Avx512(_mm512_min_ps(_mm512_set1_ps(6.0), self.relu().0))
        }

        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            Avx512(_mm512_sub_ps(self.0, b.0))
        }

        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            Avx512(_mm512_mul_ps(self.0, b.0))
        }

        #[inline(always)]
        unsafe fn div(self, b: Self) -> Self {
            Avx512(_mm512_div_ps(self.0, b.0))
        }

        #[inline(always)]
        unsafe fn at_least(self, lo: Self) -> Self {
            // As in the AVX2 one: NaN in the second operand is returned.
            Avx512(_mm512_max_ps(lo.0, self.0))
        }

        #[inline(always)]
        unsafe fn at_most(self, hi: Self) -> Self {
            Avx512(_mm512_min_ps(hi.0, self.0))
        }

        #[inline(always)]
        unsafe fn floor(self) -> Self {
            // Round toward negative infinity (1), exceptions suppressed (8).
            Avx512(_mm512_roundscale_ps::<0x09>(self.0))
        }

        #[inline(always)]
        unsafe fn exp2_whole(self) -> Self {
            let biased = _mm512_castps_si512(_mm512_add_ps(self.0, _mm512_set1_ps(8_388_735.0)));
            Avx512(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::Isa;

    /// Every operation of every vector type here, lane by lane, against plain arithmetic
    /// (NaN kept by the activations).
    #[test]
    fn vectors_match_plain_arithmetic() {
        fn check<V: Vector>() {
            let a: Vec<f32> = (0..V::LANES).map(|i| i as f32 * 1.5 - 5.0).collect();
            let mut b: Vec<f32> = (0..V::LANES).map(|i| 7.0 - i as f32).collect();
            b[1] = f32::NAN;
            let c: Vec<f32> = (0..V::LANES).map(|i| i as f32 * 0.25).collect();
            let same = |x: f32, y: f32| (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-6 * y.abs().max(1.0);
            let r6 = |v: f32| if v.is_nan() { v } else { v.clamp(0.0, 6.0) };
            let mut out = vec![vec![0.0f32; V::LANES]; 6];
            // SAFETY: the caller checked the ISA; every buffer holds LANES floats.
            unsafe {
                let (x, y, z) = (V::load(a.as_ptr()), V::load(b.as_ptr()), V::load(c.as_ptr()));
                x.mul_add(y, z).store(out[0].as_mut_ptr());
                x.add(y).store(out[1].as_mut_ptr());
                y.relu().store(out[2].as_mut_ptr());
                x.mul_add(V::splat(2.0), y).relu6().store(out[3].as_mut_ptr());
                activate(y, Activation::Silu).store(out[4].as_mut_ptr());
                activate(x, Activation::Relu6).store(out[5].as_mut_ptr());
            }
            for i in 0..V::LANES {
                assert!(same(out[0][i], a[i] * b[i] + c[i]), "mul_add {:?}", out[0]);
                assert!(same(out[1][i], a[i] + b[i]), "add {:?}", out[1]);
                assert!(same(out[2][i], if b[i] < 0.0 { 0.0 } else { b[i] }), "relu {:?}", out[2]);
                assert!(same(out[3][i], r6(a[i] * 2.0 + b[i])), "relu6 {:?}", out[3]);
                let silu = Activation::Silu.apply(b[i]);
                assert!(
                    (out[4][i].is_nan() && silu.is_nan()) || (out[4][i] - silu).abs() <= 1e-5 * silu.abs().max(1.0),
                    "silu {:?}",
                    out[4]
                );
                assert!(same(out[5][i], r6(a[i])), "activate relu6 {:?}", out[5]);
            }
            // e^x against f64 over the whole clamped range (and past it: the clamps).
            let xs: Vec<f32> = (0..1024 * V::LANES).map(|i| -90.0 + 180.0 * i as f32 / (1024 * V::LANES) as f32).collect();
            for chunk in xs.chunks_exact(V::LANES) {
                let mut got = vec![0.0f32; V::LANES];
                // SAFETY: the caller checked the ISA; both buffers hold LANES floats.
                unsafe { exp(V::load(chunk.as_ptr())).store(got.as_mut_ptr()) };
                for (g, x) in got.iter().zip(chunk) {
                    let want = f64::from(x.clamp(-87.0, 88.0)).exp();
                    assert!((f64::from(*g) - want).abs() <= 5e-7 * want, "exp({x}): {g} vs {want}");
                }
            }
            // Every activation against the slice form the micro-kernels use, over
            // arguments past exp's clamps, zeros of both signs and NaN.
            let mut xs: Vec<f32> = (0..64 * V::LANES).map(|i| (i as f32 - 32.0 * V::LANES as f32) * 0.37).collect();
            xs[..4].copy_from_slice(&[0.0, -0.0, f32::NAN, 1e-30]);
            for act in Activation::ALL {
                let mut want = xs.clone();
                act.apply_slice(&mut want);
                for (chunk, want) in xs.chunks_exact(V::LANES).zip(want.chunks_exact(V::LANES)) {
                    let mut got = vec![0.0f32; V::LANES];
                    // SAFETY: the caller checked the ISA; both buffers hold LANES floats.
                    unsafe { activate(V::load(chunk.as_ptr()), act).store(got.as_mut_ptr()) };
                    for ((g, w), x) in got.iter().zip(want).zip(chunk) {
                        assert!((g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6 * w.abs().max(1e-6), "{act:?}({x}): {g} vs {w}");
                    }
                }
            }
        }
        for isa in Isa::available() {
            match isa {
                Isa::Portable => check::<Portable>(),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => check::<Avx2>(),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => check::<Avx512>(),
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
    }
}
