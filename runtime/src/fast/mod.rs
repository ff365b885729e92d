//! Fast kernels for generated code: convolution as a cache-blocked GEMM over weights packed
//! once at load, with an AVX2+FMA micro-kernel chosen at run time (a portable one otherwise),
//! the epilogue (bias, residual add, activation) fused into the tile stores, and each layer
//! split over the threads of a small fork-join [`pool`] that never allocates per job.
//!
//! Set `RESNETC_PORTABLE=1` to force the portable micro-kernel (CI tests both paths).

mod conv;
mod gemm;
mod microkernel;
pub mod peak;
pub mod pool;
pub mod winograd;

pub use conv::{conv2d, scratch_len, PackedConv};
pub use gemm::{pack_buffer_len, KC, MR, NC, NR};

/// Whether the AVX2+FMA micro-kernel runs: detected once, unless `RESNETC_PORTABLE` is set.
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
