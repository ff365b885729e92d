//! Fast kernels for generated code. Activations are NHWC inside a model; convolutions run
//! [`direct`]ly on them (no im2col, no packing at run time) against weights packed once at
//! load, with AVX-512 or AVX2+FMA micro-kernels chosen at run time (a portable one
//! otherwise), the epilogue (bias, residual add, activation) fused into the tile stores;
//! 3x3 stride-1 ones the compiler marks go through [`winograd`] (whose products use the
//! same micro-kernels); the other steps are in [`nhwc`]. Each layer is split over the threads of a small
//! fork-join [`pool`] that never allocates per job.
//!
//! Set `RESNETC_PORTABLE=1` to force the portable micro-kernel (CI tests both paths), and
//! `RESNETC_AVX512=0` to keep to AVX2.

/// `fn $name` running `$body` (an `#[inline(always)]` fn with the same arguments) compiled
/// for the widest SIMD the machine has, chosen at run time: the plain loops of transforms
/// and pools, written over 16 lanes, then vectorise to AVX-512 or AVX2 instead of the
/// baseline's SSE2. `[generics] [generic args]` may be empty.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident [$($g:tt)*] [$($ga:tt)*] ($($arg:ident : $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name<$($g)*>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn wide<$($g)*>($($arg: $ty),*) {
                    $body::<$($ga)*>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn narrow<$($g)*>($($arg: $ty),*) {
                    $body::<$($ga)*>($($arg),*)
                }
                if $crate::fast::avx512_enabled() {
                    // SAFETY: the features were detected.
                    return unsafe { wide::<$($ga)*>($($arg),*) };
                }
                if $crate::fast::simd_enabled() {
                    // SAFETY: as above.
                    return unsafe { narrow::<$($ga)*>($($arg),*) };
                }
            }
            $body::<$($ga)*>($($arg),*)
        }
    };
}

pub mod direct;
mod microkernel;
pub mod nhwc;
pub mod peak;
pub mod pool;
pub mod winograd;

pub use crate::kernels::Epilogue;
pub use direct::PackedConv;

use crate::steps::{ConvAlgo, ConvSpec};

/// The Winograd output tile `spec` runs with: the compiler's choice, unless
/// `RESNETC_WINOGRAD` overrides it (0: the direct convolution; 2 or 4: that tile), as tests
/// do to check every path.
pub fn winograd_tile(spec: &ConvSpec) -> Option<usize> {
    static FORCED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let forced =
        *FORCED.get_or_init(|| std::env::var("RESNETC_WINOGRAD").ok().and_then(|v| v.parse().ok()).filter(|m| [0, 2, 4].contains(m)));
    match (spec.algo, forced) {
        (ConvAlgo::Winograd(_), Some(0)) | (ConvAlgo::Direct, _) => None,
        (ConvAlgo::Winograd(_), Some(m)) => Some(m),
        (ConvAlgo::Winograd(m), None) => Some(usize::from(m)),
    }
}

/// Packs `weight` [O, C / groups, K, K] (PyTorch's layout) for `spec`'s algorithm.
pub fn pack(weight: &[f32], spec: &ConvSpec) -> PackedConv {
    match winograd_tile(spec) {
        Some(m) => winograd::pack(weight, spec, m),
        None => PackedConv::new(weight, spec),
    }
}

/// `y = act(conv(x) + bias + residual)` on NHWC values by `spec`'s algorithm; `w` from
/// [`pack`], `scratch` at least [`scratch_len`] for the batch `n`.
pub fn conv(x: &[f32], n: usize, spec: &ConvSpec, w: &PackedConv, epi: Epilogue<'_>, scratch: &mut [f32], y: &mut [f32]) {
    match winograd_tile(spec) {
        Some(m) => winograd::conv(x, n, spec, m, w, epi, scratch, y),
        None => direct::conv(x, n, spec, w, epi, scratch, y),
    }
}

/// Scratch floats [`conv`] needs for `spec` and a batch of `n`, whichever algorithm (and
/// tile) runs.
pub fn scratch_len(spec: &ConvSpec, n: usize) -> usize {
    match spec.algo {
        ConvAlgo::Winograd(_) => [2, 4].map(|m| winograd::scratch_len(spec, m, n)).into_iter().fold(direct::scratch_len(spec), usize::max),
        ConvAlgo::Direct => direct::scratch_len(spec),
    }
}

/// Whether the SIMD micro-kernels run (AVX2+FMA detected), unless `RESNETC_PORTABLE` is set.
pub fn simd_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        if std::env::var_os("RESNETC_PORTABLE").is_some_and(|v| v != "0") {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Whether the AVX-512 micro-kernel runs (detected; not disabled with `RESNETC_PORTABLE` or
/// `RESNETC_AVX512=0`).
pub fn avx512_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            simd_enabled() && std::arch::is_x86_feature_detected!("avx512f") && std::env::var_os("RESNETC_AVX512").is_none_or(|v| v != "0")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// The micro-kernel in use, for reports: "AVX-512", "AVX2+FMA" or "portable".
pub fn kernel_name() -> &'static str {
    if avx512_enabled() {
        "AVX-512"
    } else if simd_enabled() {
        "AVX2+FMA"
    } else {
        "portable"
    }
}
