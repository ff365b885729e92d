//! Fast kernels for generated code. Activations are NHWC inside a model; convolutions run
//! [`direct`]ly on them (no im2col, no packing at run time) against weights packed once at
//! load, with AVX-512 or AVX2+FMA micro-kernels chosen at run time (a portable one
//! otherwise), the epilogue (bias, residual add, activation) fused into the tile stores;
//! the other steps are in [`nhwc`]. Each layer is split over the threads of a small
//! fork-join [`pool`] that never allocates per job.
//!
//! Set `RESNETC_PORTABLE=1` to force the portable micro-kernel (CI tests both paths), and
//! `RESNETC_AVX512=0` to keep to AVX2.

pub mod direct;
pub mod nhwc;
pub mod peak;
pub mod pool;

pub use direct::{conv, scratch_len, Epilogue, PackedConv};

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
