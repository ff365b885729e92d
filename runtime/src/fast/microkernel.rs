//! The MR x NR (6 x 16) micro-kernel: `C[6x16] (+)= A_panel[kc x 6]^T * B_panel[kc x 16]`,
//! then on the last K block the epilogue (residual add, activation).

use super::gemm::{MR, NR};
use crate::kernels::Activation;

/// What a tile does besides multiplying.
#[derive(Clone, Copy)]
pub(crate) struct TileOps {
    /// First K block: start from the bias (or zero) instead of C.
    pub first: bool,
    /// Last K block: add the residual and apply the activation.
    pub last: bool,
    pub act: Option<Activation>,
}

/// One full 6x16 tile. `bias` has MR values; `residual`, if any, has C's layout.
///
/// # Safety
/// `a` holds `kc * MR` floats, `b` `kc * NR`; `c` (and `residual`) are valid for MR rows of
/// NR floats with row stride `ldc`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    bias: &[f32; MR],
    residual: *const f32,
    ops: TileOps,
) {
    #[cfg(target_arch = "x86_64")]
    if super::simd_enabled() {
        unsafe { tile_avx2(kc, a, b, c, ldc, bias, residual, ops) };
        return;
    }
    unsafe { tile_portable(kc, a, b, c, ldc, bias, residual, ops) };
}

#[allow(clippy::too_many_arguments)]
unsafe fn tile_portable(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    bias: &[f32; MR],
    residual: *const f32,
    ops: TileOps,
) {
    let mut acc = [[0f32; NR]; MR];
    for (r, row) in acc.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = if ops.first { bias[r] } else { unsafe { *c.add(r * ldc + j) } };
        }
    }
    for p in 0..kc {
        let bp = unsafe { std::slice::from_raw_parts(b.add(p * NR), NR) };
        for (r, row) in acc.iter_mut().enumerate() {
            let av = unsafe { *a.add(p * MR + r) };
            for (v, bv) in row.iter_mut().zip(bp) {
                *v += av * bv;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let mut v = v;
            if ops.last {
                if !residual.is_null() {
                    v += unsafe { *residual.add(r * ldc + j) };
                }
                if let Some(act) = ops.act {
                    v = act.apply(v);
                }
            }
            unsafe { *c.add(r * ldc + j) = v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx2(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    bias: &[f32; MR],
    residual: *const f32,
    ops: TileOps,
) {
    use std::arch::x86_64::*;
    unsafe {
        macro_rules! init {
            ($r:expr) => {
                if ops.first {
                    let v = _mm256_set1_ps(bias[$r]);
                    (v, v)
                } else {
                    (_mm256_loadu_ps(c.add($r * ldc)), _mm256_loadu_ps(c.add($r * ldc + 8)))
                }
            };
        }
        let (mut c00, mut c01) = init!(0);
        let (mut c10, mut c11) = init!(1);
        let (mut c20, mut c21) = init!(2);
        let (mut c30, mut c31) = init!(3);
        let (mut c40, mut c41) = init!(4);
        let (mut c50, mut c51) = init!(5);
        let mut ap = a;
        let mut bp = b;
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            let a0 = _mm256_broadcast_ss(&*ap);
            c00 = _mm256_fmadd_ps(a0, b0, c00);
            c01 = _mm256_fmadd_ps(a0, b1, c01);
            let a1 = _mm256_broadcast_ss(&*ap.add(1));
            c10 = _mm256_fmadd_ps(a1, b0, c10);
            c11 = _mm256_fmadd_ps(a1, b1, c11);
            let a2 = _mm256_broadcast_ss(&*ap.add(2));
            c20 = _mm256_fmadd_ps(a2, b0, c20);
            c21 = _mm256_fmadd_ps(a2, b1, c21);
            let a3 = _mm256_broadcast_ss(&*ap.add(3));
            c30 = _mm256_fmadd_ps(a3, b0, c30);
            c31 = _mm256_fmadd_ps(a3, b1, c31);
            let a4 = _mm256_broadcast_ss(&*ap.add(4));
            c40 = _mm256_fmadd_ps(a4, b0, c40);
            c41 = _mm256_fmadd_ps(a4, b1, c41);
            let a5 = _mm256_broadcast_ss(&*ap.add(5));
            c50 = _mm256_fmadd_ps(a5, b0, c50);
            c51 = _mm256_fmadd_ps(a5, b1, c51);
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        let rows = [(c00, c01), (c10, c11), (c20, c21), (c30, c31), (c40, c41), (c50, c51)];
        let zero = _mm256_setzero_ps();
        let six = _mm256_set1_ps(6.0);
        for (r, (mut v0, mut v1)) in rows.into_iter().enumerate() {
            let dst = c.add(r * ldc);
            if ops.last {
                if !residual.is_null() {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(residual.add(r * ldc)));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(residual.add(r * ldc + 8)));
                }
                match ops.act {
                    Some(Activation::Relu) => {
                        v0 = _mm256_max_ps(v0, zero);
                        v1 = _mm256_max_ps(v1, zero);
                    }
                    Some(Activation::Relu6) => {
                        v0 = _mm256_min_ps(_mm256_max_ps(v0, zero), six);
                        v1 = _mm256_min_ps(_mm256_max_ps(v1, zero), six);
                    }
                    _ => {}
                }
            }
            _mm256_storeu_ps(dst, v0);
            _mm256_storeu_ps(dst.add(8), v1);
            if ops.last {
                if let Some(act @ (Activation::Silu | Activation::Gelu | Activation::Sigmoid)) = ops.act {
                    for j in 0..NR {
                        *dst.add(j) = act.apply(*dst.add(j));
                    }
                }
            }
        }
    }
}

/// Whether the 6x32 AVX-512 tile is available (and not disabled with `RESNETC_PORTABLE` or
/// `RESNETC_AVX512=0`).
pub(crate) fn avx512_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            super::simd_enabled()
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::env::var_os("RESNETC_AVX512").is_none_or(|v| v != "0")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Two full 6x16 tiles side by side (B panels `b0`, `b1`; C columns 0..32) in one pass with
/// AVX-512: half the instructions per FMA of the AVX2 tile.
///
/// # Safety
/// As [`tile`], for a 6x32 tile; [`avx512_enabled`] must be true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile2_avx512(
    kc: usize,
    a: *const f32,
    b0: *const f32,
    b1: *const f32,
    c: *mut f32,
    ldc: usize,
    bias: &[f32; MR],
    residual: *const f32,
    ops: TileOps,
) {
    use std::arch::x86_64::*;
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for (r, row) in acc.iter_mut().enumerate() {
            if ops.first {
                let v = _mm512_set1_ps(bias[r]);
                *row = [v, v];
            } else {
                *row = [_mm512_loadu_ps(c.add(r * ldc)), _mm512_loadu_ps(c.add(r * ldc + 16))];
            }
        }
        let [mut c00, mut c01] = acc[0];
        let [mut c10, mut c11] = acc[1];
        let [mut c20, mut c21] = acc[2];
        let [mut c30, mut c31] = acc[3];
        let [mut c40, mut c41] = acc[4];
        let [mut c50, mut c51] = acc[5];
        let (mut ap, mut p0, mut p1) = (a, b0, b1);
        for _ in 0..kc {
            let x0 = _mm512_loadu_ps(p0);
            let x1 = _mm512_loadu_ps(p1);
            let a0 = _mm512_set1_ps(*ap);
            c00 = _mm512_fmadd_ps(a0, x0, c00);
            c01 = _mm512_fmadd_ps(a0, x1, c01);
            let a1 = _mm512_set1_ps(*ap.add(1));
            c10 = _mm512_fmadd_ps(a1, x0, c10);
            c11 = _mm512_fmadd_ps(a1, x1, c11);
            let a2 = _mm512_set1_ps(*ap.add(2));
            c20 = _mm512_fmadd_ps(a2, x0, c20);
            c21 = _mm512_fmadd_ps(a2, x1, c21);
            let a3 = _mm512_set1_ps(*ap.add(3));
            c30 = _mm512_fmadd_ps(a3, x0, c30);
            c31 = _mm512_fmadd_ps(a3, x1, c31);
            let a4 = _mm512_set1_ps(*ap.add(4));
            c40 = _mm512_fmadd_ps(a4, x0, c40);
            c41 = _mm512_fmadd_ps(a4, x1, c41);
            let a5 = _mm512_set1_ps(*ap.add(5));
            c50 = _mm512_fmadd_ps(a5, x0, c50);
            c51 = _mm512_fmadd_ps(a5, x1, c51);
            ap = ap.add(MR);
            p0 = p0.add(NR);
            p1 = p1.add(NR);
        }
        let rows = [(c00, c01), (c10, c11), (c20, c21), (c30, c31), (c40, c41), (c50, c51)];
        let zero = _mm512_setzero_ps();
        let six = _mm512_set1_ps(6.0);
        for (r, (mut v0, mut v1)) in rows.into_iter().enumerate() {
            let dst = c.add(r * ldc);
            if ops.last {
                if !residual.is_null() {
                    v0 = _mm512_add_ps(v0, _mm512_loadu_ps(residual.add(r * ldc)));
                    v1 = _mm512_add_ps(v1, _mm512_loadu_ps(residual.add(r * ldc + 16)));
                }
                match ops.act {
                    Some(Activation::Relu) => {
                        v0 = _mm512_max_ps(v0, zero);
                        v1 = _mm512_max_ps(v1, zero);
                    }
                    Some(Activation::Relu6) => {
                        v0 = _mm512_min_ps(_mm512_max_ps(v0, zero), six);
                        v1 = _mm512_min_ps(_mm512_max_ps(v1, zero), six);
                    }
                    _ => {}
                }
            }
            _mm512_storeu_ps(dst, v0);
            _mm512_storeu_ps(dst.add(16), v1);
            if ops.last {
                if let Some(act @ (Activation::Silu | Activation::Gelu | Activation::Sigmoid)) = ops.act {
                    for j in 0..2 * NR {
                        *dst.add(j) = act.apply(*dst.add(j));
                    }
                }
            }
        }
    }
}
