//! Fast kernels for generated code. Activations are NHWC inside a model; convolutions run
//! [`direct`]ly on them (no im2col, no packing at run time) against weights packed once at
//! load, with AVX-512, AVX2+FMA or portable micro-kernels (`microkernel`), the epilogue
//! (bias, residual add, activation) fused into the tile stores; 3x3 stride-1 ones the
//! compiler marks go through [`winograd`] (whose products use the same micro-kernels); the
//! other steps are in [`nhwc`]. Each layer is split over the threads of a small fork-join
//! [`pool`] that never allocates per job. Kernel descriptors ([`ConvSpec`], [`PoolSpec`])
//! are in [`spec`].
//!
//! Every kernel here with code for several instruction sets takes the [`Isa`] it runs on
//! as a value (the plain-loop steps take none); users get
//! [`Isa::selected`] through their [`Workspace`](crate::Workspace) (`RESNETC_PORTABLE=1`
//! forces the portable path, `RESNETC_AVX512=0` keeps to AVX2); tests pass each of
//! [`Isa::available`].
//!
//! Depthwise convolutions (one channel a group) have their own kernel, [`depthwise`].
//!
//! Module layering (no cycles): `spec`, `isa` <- `microkernel` <- `direct` <- `winograd`
//! <- this module's dispatch <- `strips` <- `crate::steps`; `pool`, `nhwc`, `depthwise`,
//! `simd` beside them (`strips` also calls `direct` and `depthwise` directly).

/// `fn $name(isa: Isa, args...)` running `$body` (an `#[inline(always)]` fn with the
/// other arguments) compiled for `isa`: the plain loops of transforms and pools, written
/// over 16 lanes, then vectorise to AVX-512 or AVX2 instead of the baseline's SSE2.
/// `[generics] [generic args]` may be empty. Panics if the CPU does not support `isa`.
///
/// The second form, `fn name(args) => body::<simd>` (or `unsafe fn name(args) => ...`),
/// runs `body::<V>` with V the path's [`simd::Vector`] type; `body` is an `unsafe fn`
/// whose contract is that the CPU supports V's instruction set, which the generated fn
/// checks. Its other preconditions must be checked inside `body` for the safe form; the
/// `unsafe` form passes them on to its callers.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident [$($g:tt)*] [$($ga:tt)*] ($($arg:ident : $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name<$($g)*>(isa: $crate::fast::Isa, $($arg: $ty),*) {
            // The `unsafe` calls below rest on this; it is cached, so it costs a load.
            assert!(isa.supported(), "the {isa} kernels need a CPU that supports them");
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
                match isa {
                    // SAFETY: `isa.supported()` was asserted above: the CPU has AVX-512 F/VL,
                    // AVX2 and FMA, every feature `wide` is compiled for.
                    $crate::fast::Isa::Avx512 => return unsafe { wide::<$($ga)*>($($arg),*) },
                    // SAFETY: as above, the CPU has AVX2 and FMA.
                    $crate::fast::Isa::Avx2 => return unsafe { narrow::<$($ga)*>($($arg),*) },
                    $crate::fast::Isa::Portable => {}
                }
            }
            $body::<$($ga)*>($($arg),*)
        }
    };
    ($(#[$m:meta])* fn $name:ident ($($arg:ident : $ty:ty),* $(,)?) => $body:ident::<simd>) => {
        multiversion!(@simd [$(#[$m])*] [] $name ($($arg: $ty),*) => $body);
    };
    ($(#[$m:meta])* unsafe fn $name:ident ($($arg:ident : $ty:ty),* $(,)?) => $body:ident::<simd>) => {
        multiversion!(@simd [$(#[$m])*] [unsafe] $name ($($arg: $ty),*) => $body);
    };
    (@simd [$(#[$m:meta])*] [$($unsafety:tt)?] $name:ident ($($arg:ident : $ty:ty),*) => $body:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $($unsafety)? fn $name(isa: $crate::fast::Isa, $($arg: $ty),*) {
            assert!(isa.supported(), "the {isa} kernels need a CPU that supports them");
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn wide($($arg: $ty),*) {
                    $body::<$crate::fast::simd::Avx512>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn narrow($($arg: $ty),*) {
                    $body::<$crate::fast::simd::Avx2>($($arg),*)
                }
                match isa {
                    // The body's other preconditions it checks itself (safe form) or are
                    // this fn's callers' (unsafe form).
                    // SAFETY: `isa.supported()` was asserted above: the CPU has AVX-512 F/VL,
                    // AVX2 and FMA, which `wide` is compiled for and `Avx512` needs.
                    $crate::fast::Isa::Avx512 => return unsafe { wide($($arg),*) },
                    // SAFETY: as above, the CPU has AVX2 and FMA, all `Avx2` needs.
                    $crate::fast::Isa::Avx2 => return unsafe { narrow($($arg),*) },
                    $crate::fast::Isa::Portable => {}
                }
            }
            // SAFETY: the portable vector is plain Rust and needs no CPU feature; the other
            // preconditions as above.
            unsafe { $body::<$crate::fast::simd::Portable>($($arg),*) }
        }
    };
}

pub mod dense;
pub mod depthwise;
pub mod direct;
mod isa;
mod microkernel;
pub mod nhwc;
pub mod peak;
pub mod pool;
pub mod simd;
pub mod spec;
pub mod strips;
pub mod winograd;

pub use crate::kernels::Epilogue;
pub use direct::PackedConv;
pub use isa::Isa;
pub use spec::{ConvAlgo, ConvSpec, PoolSpec};

/// The Winograd output tile `spec` runs with: the compiler's choice, unless
/// `RESNETC_WINOGRAD` overrides it (0: the direct convolution; 2 or 4: that tile), as tests
/// do to check every path.
pub fn winograd_tile(spec: &ConvSpec) -> Option<usize> {
    match (spec.algo, winograd_forced()) {
        (ConvAlgo::Winograd(_), Some(0)) | (ConvAlgo::Direct, _) => None,
        (ConvAlgo::Winograd(_), Some(m)) => Some(m),
        (ConvAlgo::Winograd(m), None) => Some(usize::from(m)),
    }
}

/// What `RESNETC_WINOGRAD` forces (read once): `Some(0)` the direct convolution for every
/// layer the compiler gave Winograd, `Some(2)` or `Some(4)` that tile; `None` the compiler's
/// choice (also for values other than 0, 2 and 4).
pub fn winograd_forced() -> Option<usize> {
    static FORCED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| std::env::var("RESNETC_WINOGRAD").ok().and_then(|v| v.parse().ok()).filter(|m| [0, 2, 4].contains(m)))
}

/// Packs `weight` [O, C / groups, K, K] (PyTorch's layout) for `spec`'s algorithm.
pub fn pack(weight: &[f32], spec: &ConvSpec) -> PackedConv {
    if depthwise::eligible(spec) {
        return PackedConv::raw(depthwise::pack(weight, spec));
    }
    match winograd_tile(spec) {
        Some(m) => winograd::pack(weight, spec, m),
        None => PackedConv::new(weight, spec),
    }
}

/// `y = act(conv(x) + bias + residual)` on NHWC values by `spec`'s algorithm on `isa`
/// (which the CPU must support); `w` from [`pack`], `scratch` at least [`scratch_len`] for
/// the batch `n`. Returns the algorithm that ran.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    isa: Isa,
    x: &[f32],
    n: usize,
    spec: &ConvSpec,
    w: &PackedConv,
    epi: Epilogue<'_>,
    scratch: &mut [f32],
    y: &mut [f32],
) -> ConvAlgo {
    if depthwise::eligible(spec) {
        depthwise::conv(isa, x, n, spec, w.data(), epi, y);
        return ConvAlgo::Direct;
    }
    match winograd_tile(spec) {
        Some(m) => {
            winograd::conv(isa, x, n, spec, m, w, epi, scratch, y);
            ConvAlgo::Winograd(m as u8)
        }
        None => {
            direct::conv(isa, x, n, spec, w, epi, scratch, y);
            ConvAlgo::Direct
        }
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

/// The micro-kernel users get, for reports: "AVX-512", "AVX2+FMA" or "portable".
pub fn kernel_name() -> &'static str {
    Isa::selected().name()
}
