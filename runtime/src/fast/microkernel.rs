//! The micro-kernels of the direct convolution: `rows` (up to [`MR`]) output pixels times a
//! block of up to 64 output channels, accumulated over a list of [`Seg`]ments in registers,
//! then stored with the epilogue. AVX-512 takes the whole block (6x64: 24 accumulators),
//! AVX2+FMA and the portable code 16 columns at a time; the caller chooses by [`Isa`].
//! Relu is `max(0, x)` with the operands in the order that keeps a NaN `x` (`maxps`
//! returns its second operand when either is NaN), as PyTorch does.

use super::Isa;
use crate::kernels::Activation;

/// Output pixels a tile (the rows of every micro-kernel).
pub const MR: usize = 6;

/// One contiguous run of the reduction: `len` input floats a pixel, from `ptr[i]` for pixel
/// `i`, against rows `row..row + len` of a weight block.
#[derive(Clone, Copy)]
pub(super) struct Seg {
    pub ptr: [*const f32; MR],
    pub row: usize,
    pub len: usize,
}

/// Where a tile's results go and what is applied on the way.
#[derive(Clone, Copy)]
pub(super) struct TileOut {
    /// First output of the tile; rows `ldc` apart.
    pub c: *mut f32,
    pub ldc: usize,
    /// Valid columns (the block may be zero-padded past them).
    pub cols: usize,
    pub bias: Option<*const f32>,
    pub residual: Option<*const f32>,
    pub act: Option<Activation>,
}

/// Runs `segs` for `rows` pixels over a weight block `width` columns wide, `width / 16`
/// panels of `k` rows of 16 floats one after the other (row `r`, column `16 p + j` at
/// `w[(p * k + r) * 16 + j]`), with the micro-kernel of `isa`.
///
/// # Safety
/// `isa.supported()`; `rows` in 1..=[`MR`]; every segment's pointers are valid for `len` floats (inputs),
/// `row + len <= k`, and the block holds `width * k` floats (weights); `out` describes `rows` writable rows of
/// `cols` floats (`ldc` apart) that no other thread touches, and `bias`/`residual`, when
/// set, are readable as wide.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel(
    isa: Isa,
    segs: &[Seg],
    rows: usize,
    w: *const f32,
    width: usize,
    k: usize,
    out: &TileOut,
    first: bool,
    last: bool,
) {
    // Every dispatcher below maps rows outside 1..=MR to a one-row tile: none may come in.
    debug_assert!((1..=MR).contains(&rows), "a tile has 1 to {MR} rows, not {rows}");
    let panel = k * 16;
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's contract, which covers the whole block.
        Isa::Avx512 => unsafe { avx512::dispatch(segs, rows, w, panel, width, out, first, last) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // A panel at a time, each over the whole reduction: blocks are one panel wide
            // where it is long (`direct::block_cols`), so the tile's inputs of a wider
            // block stay in L1 from one panel to the next.
            for j in (0..width).step_by(16) {
                // SAFETY: the caller's contract; panel j / 16 lies inside the block.
                unsafe { avx2::dispatch(segs, rows, w.add(j / 16 * panel), j, out, first, last) };
            }
        }
        _ => {
            for j in (0..width).step_by(16) {
                // SAFETY: as above.
                unsafe { portable(segs, rows, w.add(j / 16 * panel), j, out, first, last) };
            }
        }
    }
}

/// The epilogue of one output value.
#[inline(always)]
unsafe fn finish(v: f32, out: &TileOut, i: usize, j: usize, last: bool) -> f32 {
    let mut v = v;
    if last {
        if let Some(r) = out.residual {
            // SAFETY: `finish` is called with `i < rows` and `j < cols`, where the caller's contract makes the residual readable.
            v += unsafe { *r.add(i * out.ldc + j) };
        }
        if let Some(act) = out.act {
            v = act.apply(v);
        }
    }
    v
}

/// `$tile::<R, extra...>(args)` with the tile's rows `R` = `$rows` fixed at compile time
/// (1..=[`MR`]; other values run one row, which `kernel`'s debug assertion excludes).
macro_rules! by_rows {
    ($rows:expr => $tile:ident [$($extra:tt)*] ($($arg:expr),* $(,)?)) => {
        match $rows {
            6 => $tile::<6 $(, $extra)*>($($arg),*),
            5 => $tile::<5 $(, $extra)*>($($arg),*),
            4 => $tile::<4 $(, $extra)*>($($arg),*),
            3 => $tile::<3 $(, $extra)*>($($arg),*),
            2 => $tile::<2 $(, $extra)*>($($arg),*),
            _ => $tile::<1 $(, $extra)*>($($arg),*),
        }
    };
}

/// Whether the micro-kernels apply `act` as a clamp in registers (see [`clamp_bounds`]).
fn clamps(act: Activation) -> bool {
    matches!(act, Activation::Relu | Activation::Relu6)
}

/// The bounds a full tile's stores clamp to: `[0, inf]` for relu, `[0, 6]` for relu6,
/// `[-inf, inf]` (no change) otherwise, the other activations being applied after.
fn clamp_bounds(act: Option<Activation>) -> (f32, f32) {
    match act {
        Some(Activation::Relu) => (0.0, f32::INFINITY),
        Some(Activation::Relu6) => (0.0, 6.0),
        _ => (f32::NEG_INFINITY, f32::INFINITY),
    }
}

/// 16 columns from `j0` (whose panel starts at `w`), plain Rust: a tile of `rows` (fixed
/// at compile time, like the other kernels') by 8 columns at a time, whose 6 x 8
/// accumulators fit the baseline's 16 SSE registers (LLVM vectorises the loops over 8).
/// Left to LLVM with the whole 6 x 16 tile in one loop nest, its code and speed changed
/// with unrelated edits elsewhere in the crate (a 14% swing in resnet18).
#[allow(clippy::too_many_arguments)]
unsafe fn portable(segs: &[Seg], rows: usize, w: *const f32, j0: usize, out: &TileOut, first: bool, last: bool) {
    // SAFETY: the caller's contract, passed on.
    unsafe { by_rows!(rows => portable_tile[](segs, w, j0, out, first, last)) }
}

/// [`portable`] for `R` rows.
///
/// # Safety
/// The contract of [`kernel`] for `R` rows (the caller's `rows`).
#[allow(clippy::needless_range_loop)]
unsafe fn portable_tile<const R: usize>(segs: &[Seg], w: *const f32, j0: usize, out: &TileOut, first: bool, last: bool) {
    const { assert!(R <= MR) };
    let cols = out.cols.saturating_sub(j0).min(16);
    for h0 in [0, 8] {
        let n = cols.saturating_sub(h0).min(8);
        if n == 0 {
            break;
        }
        let mut acc = [[0f32; 8]; R];
        for i in 0..R {
            for j in 0..n {
                acc[i][j] = match (first, out.bias) {
                    // SAFETY: `j0 + h0 + j < cols`: the bias is readable that far (the contract of `kernel`).
                    (true, Some(b)) => unsafe { *b.add(j0 + h0 + j) },
                    (true, None) => 0.0,
                    // SAFETY: row `i < rows`, column `j0 + h0 + j < cols` is inside the tile.
                    (false, _) => unsafe { *out.c.add(i * out.ldc + j0 + h0 + j) },
                };
            }
        }
        for s in segs {
            for l in 0..s.len {
                // SAFETY: rows `row..row + len` of the panel hold 16 floats each.
                let wrow = unsafe { w.add((s.row + l) * 16 + h0).cast::<[f32; 8]>().read_unaligned() };
                for i in 0..R {
                    // SAFETY: each segment pointer is valid for `len` floats.
                    let a = unsafe { *s.ptr[i].add(l) };
                    for j in 0..8 {
                        acc[i][j] += a * wrow[j];
                    }
                }
            }
        }
        for i in 0..R {
            for j in 0..n {
                // SAFETY: as for the loads above: inside the tile.
                unsafe { *out.c.add(i * out.ldc + j0 + h0 + j) = finish(acc[i][j], out, i, j0 + h0 + j, last) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{clamp_bounds, clamps, Seg, TileOut, MR};
    use crate::fast::simd::{self, Avx2, Vector};
    use std::arch::x86_64::*;

    /// 16 columns from `j0` (their panel at `w`), `rows` (1..=6) pixels.
    pub(super) unsafe fn dispatch(segs: &[Seg], rows: usize, w: *const f32, j0: usize, out: &TileOut, first: bool, last: bool) {
        // SAFETY: the contract of `kernel`, which the caller passed on; `target_feature` code runs only when `isa` is AVX2 (checked by the caller).
        unsafe { by_rows!(rows => tile[](segs, w, j0, out, first, last)) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile<const R: usize>(segs: &[Seg], w: *const f32, j0: usize, out: &TileOut, first: bool, last: bool) {
        const { assert!(R <= MR) };
        let cols = out.cols.saturating_sub(j0).min(16);
        let lanes = Lanes::new(cols);
        // SAFETY: the caller guarantees AVX2+FMA and the pointer ranges of `kernel`'s
        // contract; every load and store touches only the tile's `cols` columns (`Lanes`)
        // of its `R <= MR` rows.
        unsafe {
            // Every access to `acc` below is by a constant index once the row loops unroll
            // (their bodies are straight-line vector code): with a scalar loop over the
            // columns of a partial tile among them, the accumulators went through the stack
            // before and after the reduction on every call.
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            if first {
                if let Some(b) = out.bias {
                    acc = [lanes.load(b.add(j0)); R];
                }
            } else {
                for i in 0..R {
                    acc[i] = lanes.load(out.c.add(i * out.ldc + j0));
                }
            }
            acc = run::<R>(acc, segs, w);
            if !last {
                for i in 0..R {
                    lanes.store(out.c.add(i * out.ldc + j0), acc[i]);
                }
                return;
            }
            // Relu and relu6 in registers as a clamp (none: to the infinities), the other
            // activations once every row is stored: with the 12 accumulators live, the exp
            // code had too few registers left.
            let (lo, hi) = clamp_bounds(out.act);
            let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
            for i in 0..R {
                let mut v = acc[i];
                if let Some(r) = out.residual {
                    let rv = lanes.load(r.add(i * out.ldc + j0));
                    v = [_mm256_add_ps(v[0], rv[0]), _mm256_add_ps(v[1], rv[1])];
                }
                // `max(lo, x)`, `min(hi, x)`: a NaN `x` is returned as it is.
                let v = v.map(|x| _mm256_min_ps(hi, _mm256_max_ps(lo, x)));
                lanes.store(out.c.add(i * out.ldc + j0), v);
            }
            if let Some(act) = out.act.filter(|a| !clamps(*a)) {
                for i in 0..R {
                    let dst = out.c.add(i * out.ldc + j0);
                    if lanes.full {
                        for half in [dst, dst.add(8)] {
                            simd::activate(Avx2::load(half), act).store(half);
                        }
                    } else {
                        act.apply_slice(std::slice::from_raw_parts_mut(dst, cols));
                    }
                }
            }
        }
    }

    /// The columns of a 16-column tile that exist: all (plain loads and stores) or the first
    /// `cols` (masked ones, which leave the other lanes zero and untouched).
    #[derive(Clone, Copy)]
    struct Lanes {
        full: bool,
        masks: [__m256i; 2],
    }

    impl Lanes {
        #[inline(always)]
        unsafe fn new(cols: usize) -> Lanes {
            // SAFETY: plain AVX register arithmetic (the caller runs with AVX2).
            unsafe {
                let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let mask = |n: usize| _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), idx);
                Lanes { full: cols == 16, masks: [mask(cols), mask(cols.saturating_sub(8))] }
            }
        }

        /// 16 floats at `p`, the missing columns zero.
        ///
        /// # Safety
        /// AVX2; the tile's columns at `p` are readable.
        #[inline(always)]
        unsafe fn load(self, p: *const f32) -> [__m256; 2] {
            // SAFETY: the caller's contract; masked-off lanes are not accessed.
            unsafe {
                if self.full {
                    [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))]
                } else {
                    [_mm256_maskload_ps(p, self.masks[0]), _mm256_maskload_ps(p.add(8), self.masks[1])]
                }
            }
        }

        /// Stores the tile's columns of `v` at `p`.
        ///
        /// # Safety
        /// AVX2; the tile's columns at `p` are writable.
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, v: [__m256; 2]) {
            // SAFETY: the caller's contract; masked-off lanes are not accessed.
            unsafe {
                if self.full {
                    _mm256_storeu_ps(p, v[0]);
                    _mm256_storeu_ps(p.add(8), v[1]);
                } else {
                    _mm256_maskstore_ps(p, self.masks[0], v[0]);
                    _mm256_maskstore_ps(p.add(8), self.masks[1], v[1]);
                }
            }
        }
    }

    /// Every segment into the accumulators, which stay in registers (a value in, a value
    /// out: updating an array in place made the compiler keep it in memory, at a third of
    /// the FMA peak).
    ///
    /// # Safety
    /// AVX2 and FMA; segment pointers valid for `len` floats; the panel at `w` holds rows
    /// `row..row + len` (16 floats each).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    unsafe fn run<const R: usize>(acc: [[__m256; 2]; R], segs: &[Seg], w: *const f32) -> [[__m256; 2]; R] {
        let mut acc = acc;
        // SAFETY: the function's contract.
        unsafe {
            for s in segs {
                let ptr = s.ptr;
                let mut wp = w.add(s.row * 16);
                for l in 0..s.len {
                    // The panel's row PREFETCH_ROWS ahead asked for now (a prefetch never
                    // faults): one stream of 64 bytes a step runs ahead of the hardware
                    // prefetcher otherwise (deep layers' weights come from L3 or memory).
                    _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(16 * PREFETCH_ROWS).cast());
                    let w0 = _mm256_loadu_ps(wp);
                    let w1 = _mm256_loadu_ps(wp.add(8));
                    for i in 0..R {
                        let a = _mm256_set1_ps(*ptr[i].add(l));
                        acc[i][0] = _mm256_fmadd_ps(a, w0, acc[i][0]);
                        acc[i][1] = _mm256_fmadd_ps(a, w1, acc[i][1]);
                    }
                    wp = wp.add(16);
                }
            }
        }
        acc
    }

    /// How far ahead `run` prefetches the weights, in panel rows (12 KiB). Measured on a
    /// Zen 4 with `RESNETC_AVX512=0` (conv_speed, 1 thread), 512 x 7x7 3x3 layers: direct
    /// 77% of peak without, 80% at 12 rows, 85-91% at 96-384; Winograd F(2x2) 71% without,
    /// 110-120% at 192; F(4x4) 60%, 80-92%. (The AVX-512 kernel, four streams, lost as much
    /// with it as the AVX2 one gains: it has none.)
    const PREFETCH_ROWS: usize = 192;
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{clamp_bounds, clamps, Seg, TileOut, MR};
    use crate::fast::simd::{self, Avx512, Vector};
    use std::arch::x86_64::*;

    /// The whole block (`width` = 16..=64 columns), `rows` (1..=6) pixels.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn dispatch(
        segs: &[Seg],
        rows: usize,
        w: *const f32,
        panel: usize,
        width: usize,
        out: &TileOut,
        first: bool,
        last: bool,
    ) {
        // SAFETY: the caller guarantees AVX-512 and the ranges of `kernel`'s contract; `width / 16` selects a tile no wider than the block.
        unsafe {
            match width / 16 {
                4 => by_rows!(rows => tile[4](segs, w, panel, out, first, last)),
                3 => by_rows!(rows => tile[3](segs, w, panel, out, first, last)),
                2 => by_rows!(rows => tile[2](segs, w, panel, out, first, last)),
                _ => by_rows!(rows => tile[1](segs, w, panel, out, first, last)),
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn tile<const R: usize, const V: usize>(segs: &[Seg], w: *const f32, panel: usize, out: &TileOut, first: bool, last: bool) {
        const { assert!(R <= MR) };
        // SAFETY: the caller guarantees AVX-512 and the ranges of `kernel`'s contract; masked loads and stores touch only the `cols` valid columns.
        unsafe {
            let masks: [__mmask16; V] = std::array::from_fn(|v| mask(out.cols, v));
            // Every column valid: plain loads and stores (masked ones cost more on some cores).
            let full = out.cols >= 16 * V;
            let at = |i: usize, v: usize| i * out.ldc + 16 * v;
            // Only constant indices into `acc` once the loops unroll (straight-line bodies),
            // so that it stays in registers (see the AVX2 tile).
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            if first {
                if let Some(b) = out.bias {
                    let bv: [__m512; V] = std::array::from_fn(|v| load(full, masks[v], b.add(16 * v)));
                    acc = [bv; R];
                }
            } else {
                for i in 0..R {
                    for v in 0..V {
                        acc[i][v] = load(full, masks[v], out.c.add(at(i, v)));
                    }
                }
            }
            acc = run::<R, V>(acc, segs, w, panel);
            if !last {
                for i in 0..R {
                    for v in 0..V {
                        store(full, masks[v], out.c.add(at(i, v)), acc[i][v]);
                    }
                }
                return;
            }
            // Relu and relu6 as a clamp (none: to the infinities), the other activations
            // once the tile is stored.
            let (lo, hi) = clamp_bounds(out.act);
            let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
            for i in 0..R {
                for v in 0..V {
                    let mut x = acc[i][v];
                    if let Some(r) = out.residual {
                        x = _mm512_add_ps(x, load(full, masks[v], r.add(at(i, v))));
                    }
                    // `max(lo, x)`, `min(hi, x)`: a NaN `x` is returned as it is.
                    store(full, masks[v], out.c.add(at(i, v)), _mm512_min_ps(hi, _mm512_max_ps(lo, x)));
                }
            }
            if let Some(act) = out.act.filter(|a| !clamps(*a)) {
                for i in 0..R {
                    if full {
                        for v in 0..V {
                            let p = out.c.add(at(i, v));
                            simd::activate(Avx512::load(p), act).store(p);
                        }
                    } else {
                        act.apply_slice(std::slice::from_raw_parts_mut(out.c.add(at(i, 0)), out.cols));
                    }
                }
            }
        }
    }

    /// Every segment into the accumulators (kept in registers: a value in, a value out).
    #[inline(always)]
    unsafe fn run<const R: usize, const V: usize>(acc: [[__m512; V]; R], segs: &[Seg], w: *const f32, panel: usize) -> [[__m512; V]; R] {
        let mut acc = acc;
        // SAFETY: segment pointers are valid for `len` floats; the block holds `V` panels
        // `panel` floats apart, each with rows `row..row + len` of 16 floats.
        unsafe {
            for s in segs {
                let ptr = s.ptr;
                let mut wp = w.add(s.row * 16);
                for l in 0..s.len {
                    let wv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(wp.add(panel * v)));
                    for i in 0..R {
                        let a = _mm512_set1_ps(*ptr[i].add(l));
                        for v in 0..V {
                            acc[i][v] = _mm512_fmadd_ps(a, wv[v], acc[i][v]);
                        }
                    }
                    wp = wp.add(16);
                }
            }
        }
        acc
    }

    /// 16 floats from `p`, only the `mask` lanes unless `full`.
    #[inline(always)]
    unsafe fn load(full: bool, mask: __mmask16, p: *const f32) -> __m512 {
        // SAFETY: unless `full`, only the lanes of `mask` are read; with `full` all 16 are inside the row.
        unsafe {
            if full {
                _mm512_loadu_ps(p)
            } else {
                _mm512_maskz_loadu_ps(mask, p)
            }
        }
    }

    /// Stores `x` at `p`, only the `mask` lanes unless `full`.
    #[inline(always)]
    unsafe fn store(full: bool, mask: __mmask16, p: *mut f32, x: __m512) {
        // SAFETY: unless `full`, only the lanes of `mask` are written; with `full` all 16 are inside the row.
        unsafe {
            if full {
                _mm512_storeu_ps(p, x)
            } else {
                _mm512_mask_storeu_ps(p, mask, x)
            }
        }
    }

    /// Lanes of vector `v` below `cols`.
    #[inline(always)]
    fn mask(cols: usize, v: usize) -> __mmask16 {
        let n = cols.saturating_sub(16 * v).min(16);
        ((1u32 << n) - 1) as __mmask16
    }
}
