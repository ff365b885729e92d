//! Direct convolution on NHWC activations, with no im2col and no packing at run time.
//!
//! In NHWC a pixel's channels are contiguous, and so is a whole kernel row of its receptive
//! field (`kernel * C` floats) when it lies inside the image. A tile of up to [`MR`] output
//! pixels therefore reads its input straight from the activation through one pointer a
//! pixel and a kernel row (a "segment"); taps in the padding point at a zeroed buffer. The
//! weights are packed at load into 16-column panels `[k][16]` (64-byte aligned, so a row is
//! one cache line) with `k = (kh * kernel + kw) * C + c`, so that each step of the inner
//! loop loads one row of a panel per 16 columns and broadcasts one input value a pixel:
//! 6 x 64 outputs (four panels) in 24 AVX-512 accumulators, or 6 x 16 (one panel) in 12
//! AVX2 ones (in `microkernel.rs`). The epilogue (bias, residual add, activation) is applied
//! as the tile is stored. This module packs, tiles, builds the segment lists and splits the
//! work over threads.

use super::microkernel::{kernel, Seg, TileOut, MR};
use super::pool::{self, SharedMut};
use super::{ConvSpec, Isa};
use crate::kernels::Epilogue;
/// Output channels a packed weight block (the last one may be narrower, a multiple of 16).
pub const OCB: usize = 64;
/// Segments a kernel call takes at most; longer lists are split, accumulating through C.
const MAX_SEGS: usize = 64;
/// Floats of a tile's edge patches (see `segments`).
const PATCH: usize = 1536;

/// A convolution's weights packed at load for [`conv`]: each group's output channels in
/// blocks of [`OCB`] (the last one zero-padded to a multiple of 16), a block made of
/// `width / 16` panels `[k][16]`, one after the other, each starting on a cache line. A
/// 16-column strip of a block (what the AVX2 and portable micro-kernels take at a time) is
/// then one contiguous run of whole cache lines, and the AVX-512 kernel reads four such
/// streams in step.
#[derive(Debug, Clone)]
pub struct PackedConv {
    /// The floats, from `start` (the first 64-byte boundary of the allocation).
    data: Vec<f32>,
    start: usize,
    /// Reduction length a group: kernel * kernel * input channels / groups.
    k: usize,
    /// Output channels a group.
    og: usize,
    /// Floats a group.
    group_len: usize,
}

/// Floats in one column panel row (the micro-kernels' strip width).
pub(super) const PANEL: usize = 16;

impl PackedConv {
    /// Packs `weight` [O, C / groups, K, K] (PyTorch's layout) for `spec`.
    pub fn new(weight: &[f32], spec: &ConvSpec) -> PackedConv {
        let (g, kernel) = (spec.params.groups, spec.kernel);
        let (cg, og) = (spec.input[0] / g, spec.out_channels / g);
        let k = kernel * kernel * cg;
        assert_eq!(weight.len(), spec.out_channels * k, "invariant: the weight matches its spec");
        let group_len = og.div_ceil(PANEL) * PANEL * k;
        let mut packed = PackedConv::aligned(g * group_len);
        let data = &mut packed.data[packed.start..];
        let mut at = 0;
        for gi in 0..g {
            for panel in 0..og.div_ceil(PANEL) {
                for r in 0..kernel {
                    for s in 0..kernel {
                        for c in 0..cg {
                            for j in 0..PANEL {
                                let o = panel * PANEL + j;
                                if o < og {
                                    data[at] = weight[(((gi * og + o) * cg + c) * kernel + r) * kernel + s];
                                }
                                at += 1;
                            }
                        }
                    }
                }
            }
        }
        packed.k = k;
        packed.og = og;
        packed.group_len = group_len;
        packed
    }

    /// `len` zeroed floats starting on a 64-byte boundary (a panel row is one cache line).
    fn aligned(len: usize) -> PackedConv {
        let data = vec![0f32; len + 15];
        let start = data.as_ptr().align_offset(64).min(15);
        PackedConv { data, start, k: 0, og: 0, group_len: 0 }
    }

    /// Weights in another kernel's layout (the depthwise one's), kept as given.
    pub(super) fn raw(data: Vec<f32>) -> PackedConv {
        PackedConv { data, start: 0, k: 0, og: 0, group_len: 0 }
    }

    /// The packed floats.
    pub(super) fn data(&self) -> &[f32] {
        &self.data[self.start..]
    }

    /// Block `b` of group `g` in blocks of `bw` columns (a multiple of [`PANEL`]), and its
    /// width: `bw`, or the rest rounded up to a panel.
    fn block(&self, g: usize, b: usize, bw: usize) -> (&[f32], usize) {
        let width = (self.og - b * bw).min(bw).div_ceil(PANEL) * PANEL;
        let start = self.start + g * self.group_len + b * bw * self.k;
        (&self.data[start..start + width * self.k], width)
    }
}

/// Output channels a block of the micro-kernel of `isa` for a reduction of `k` (see
/// [`OCB`]): the AVX-512 kernel takes 64 columns at once. The AVX2 and portable ones take a
/// 16-column panel at a time: for short reductions, the four panels of a 64-column block in
/// one call (the tile's inputs, 6 x `k` floats, stay in L1 from one panel to the next and
/// its segments are built once); for long ones, one panel a block, so that the block-major
/// order keeps one panel (`k` x 64 bytes) in L2 across the tiles. Measured on resnet50 with
/// `RESNETC_AVX512=0` on a Zen 4 (per-layer profile, best of 3): 64-column blocks up to
/// `k` = 512 took 3.2 ms off 73.2 (1 thread) and 2.2 ms off 38.8 (2 threads), mostly in the
/// Winograd products; up to 2,304, no further change.
fn block_cols(isa: Isa, k: usize) -> usize {
    match isa {
        Isa::Avx512 => OCB,
        _ if k <= AVX2_WIDE_K => OCB,
        _ => PANEL,
    }
}

/// Longest reduction the AVX2 and portable kernels run in 64-column blocks.
const AVX2_WIDE_K: usize = 512;

/// Zeroed floats [`conv`] needs for the padding taps of `spec`.
pub fn scratch_len(spec: &ConvSpec) -> usize {
    spec.kernel * spec.input[0]
}

/// `y = act(conv(x) + bias + residual)`, `x` [N, H, W, C] and `y` [N, OH, OW, O], split over
/// the global pool's threads, with the micro-kernel of `isa`. `zeros` holds at least
/// [`scratch_len`] floats (zeroed here).
///
/// # Panics
/// If the CPU does not support `isa`.
#[allow(clippy::too_many_arguments)]
pub fn conv(isa: Isa, x: &[f32], n: usize, spec: &ConvSpec, w: &PackedConv, epi: Epilogue<'_>, zeros: &mut [f32], y: &mut [f32]) {
    conv_on(isa, pool::global().threads(), x, n, spec, w, epi, zeros, y);
}

/// [`conv`] on the calling thread only (from inside a pool job).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_serial(
    isa: Isa,
    x: &[f32],
    n: usize,
    spec: &ConvSpec,
    w: &PackedConv,
    epi: Epilogue<'_>,
    zeros: &mut [f32],
    y: &mut [f32],
) {
    conv_on(isa, 1, x, n, spec, w, epi, zeros, y);
}

/// [`conv`] split over up to `threads` of the pool's threads.
#[allow(clippy::too_many_arguments)]
fn conv_on(
    isa: Isa,
    threads: usize,
    x: &[f32],
    n: usize,
    spec: &ConvSpec,
    w: &PackedConv,
    epi: Epilogue<'_>,
    zeros: &mut [f32],
    y: &mut [f32],
) {
    // The micro-kernels' safety rests on this: a path the CPU lacks is refused, not run.
    assert!(isa.supported(), "the {isa} kernels need a CPU that supports them");
    let [c, h, wd] = spec.input;
    let p = spec.params;
    let (oh, ow) = (p.out(h, spec.kernel), p.out(wd, spec.kernel));
    let o = spec.out_channels;
    let pixels = n * oh * ow;
    assert!(x.len() >= n * h * wd * c && y.len() >= pixels * o, "invariant: buffers match the spec");
    let zeros = &mut zeros[..scratch_len(spec)];
    zeros.fill(0.0);
    let zeros: &[f32] = zeros;
    let geo = Geometry {
        h,
        w: wd,
        c: c / p.groups,
        pixel_stride: c,
        oh,
        ow,
        kernel: spec.kernel,
        stride: p.stride,
        padding: p.padding,
        dilation: p.dilation,
    };
    // Tiles of as equal sizes as can be (`base` or `base + 1` <= MR rows): 49 pixels run
    // as 4 x 6 + 5 x 5, not 8 x 6 + 1, whose one-row tile would take two thirds of a full
    // tile's time (its few accumulator chains wait on the FMA latency).
    let tiles = pixels.div_ceil(MR);
    let (base, extra) = (pixels / tiles, pixels % tiles);
    // Blocks over all groups: group `gb / per_group`, block `gb % per_group`.
    let bw = block_cols(isa, w.k);
    let blocks = p.groups * w.og.div_ceil(bw);
    let items = tiles * blocks;
    let threads = threads.min(items);
    // The (tile, block) items in one of two orders, split evenly over the threads. Tile-major
    // keeps each input tile in L1 while it meets every block, the packed weights staying in
    // L2/L3; block-major streams one block at a time over all tiles, for weights too large
    // for that, and for the late layers' few pixels, so that each thread reads only its
    // share of the weights.
    let tile_major = w.data().len() * 4 <= WEIGHT_CACHE_BYTES && tiles >= 16 * threads;
    let out = SharedMut::new(y.as_mut_ptr());
    let job = |t: usize| {
        let per = items.div_ceil(threads);
        let (i0, i1) = ((t * per).min(items), ((t + 1) * per).min(items));
        // SAFETY: task t alone writes the outputs of items [i0, i1); the geometry keeps every
        // pointer inside `x` or `zeros`.
        let run = |b: std::ops::Range<usize>, tile: usize| unsafe {
            run_tile(isa, x, zeros, &geo, w, bw, b, tile * base + tile.min(extra), base + usize::from(tile < extra), epi, out.get(), o)
        };
        if i0 == i1 {
            return;
        }
        if tile_major {
            for tile in i0 / blocks..=(i1 - 1) / blocks {
                run(i0.max(tile * blocks) - tile * blocks..i1.min((tile + 1) * blocks) - tile * blocks, tile);
            }
        } else {
            for b in i0 / tiles..=(i1 - 1) / tiles {
                for tile in i0.max(b * tiles) - b * tiles..i1.min((b + 1) * tiles) - b * tiles {
                    run(b..b + 1, tile);
                }
            }
        }
    };
    pool::run_first(threads, &job);
}

/// Packed weights up to this size are run tile-major (see [`conv`]): measured on resnet50,
/// streaming them from L2/L3 for each input tile beats re-reading the tiles.
const WEIGHT_CACHE_BYTES: usize = 4 << 20;

/// The static shape of one convolution.
struct Geometry {
    h: usize,
    w: usize,
    /// Input channels a group (the reduction's inner length).
    c: usize,
    /// Floats from one input pixel to the next (all channels).
    pixel_stride: usize,
    oh: usize,
    ow: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
}

/// One tile: pixels `q0..q0 + rows` (flattened over the batch), blocks `blocks` (numbered
/// over all groups).
///
/// # Safety
/// `isa.supported()`; `y` holds the whole output ([pixels, `ldc`]); no other thread
/// writes these outputs.
#[allow(clippy::too_many_arguments)]
unsafe fn run_tile(
    isa: Isa,
    x: &[f32],
    zeros: &[f32],
    g: &Geometry,
    w: &PackedConv,
    bw: usize,
    blocks: std::ops::Range<usize>,
    q0: usize,
    rows: usize,
    epi: Epilogue<'_>,
    y: *mut f32,
    ldc: usize,
) {
    let per_group = w.og.div_ceil(bw);
    let out = |gi: usize, b: usize, width: usize| {
        let col0 = gi * w.og + b * bw;
        TileOut {
            // SAFETY: the tile's first output, `q0 * ldc + col0`, lies inside the output `y` (the caller's contract).
            c: unsafe { y.add(q0 * ldc + col0) },
            ldc,
            cols: (w.og - b * bw).min(width),
            bias: epi.bias.map(|v| v[col0..].as_ptr()),
            residual: epi.residual.map(|r| r[q0 * ldc + col0..].as_ptr()),
            act: epi.act,
        }
    };
    if g.kernel == 1 && g.stride == 1 && g.padding == 0 && g.c == g.pixel_stride {
        // A 1x1 stride-1 convolution without groups: output pixel q reads input pixel q,
        // one segment; none of the list's machinery (a third of the time of a narrow
        // layer, 32 -> 16 channels, went there).
        let mut seg = Seg { ptr: [zeros.as_ptr(); MR], row: 0, len: g.c };
        for (i, p) in seg.ptr.iter_mut().enumerate().take(rows) {
            *p = x[(q0 + i) * g.c..][..g.c].as_ptr();
        }
        for b in blocks {
            let (wb, width) = w.block(0, b, bw);
            // SAFETY: the caller's contract (`isa` supported, `y` ours for these outputs);
            // each pointer starts `c` floats of `x` (sliced above), and the block is
            // `width * k` floats long.
            unsafe { kernel(isa, std::slice::from_ref(&seg), rows, wb.as_ptr(), width, w.k, &out(0, b, width), true, true) };
        }
        return;
    }
    let mut list = SegList::new();
    let mut overflow = false;
    let mut patch = [const { std::mem::MaybeUninit::<f32>::uninit() }; PATCH];
    let patch = patch.as_mut_ptr().cast::<f32>();
    segments(x, zeros, patch, g, q0, rows, &mut |seg| overflow |= !list.push(seg));
    if !overflow {
        // The usual case: one list of segments serves every block (of group 0; the others
        // read their channels `gi * c` further on, the padding taps too: `zeros` is long
        // enough).
        let mut shifted = SegList::new();
        for gb in blocks {
            let (gi, b) = (gb / per_group, gb % per_group);
            let (wb, width) = w.block(gi, b, bw);
            let segs = if gi == 0 {
                list.as_slice()
            } else {
                shifted.clear();
                for s in list.as_slice() {
                    shifted.push(Seg { ptr: s.ptr.map(|p| p.wrapping_add(gi * g.c)), ..*s });
                }
                shifted.as_slice()
            };
            // SAFETY: the caller's contract (`isa` supported, `y` ours for these outputs);
            // `segments` keeps every pointer inside `x`, `zeros` or `patch`, and the block
            // is `width * k` floats long.
            unsafe { kernel(isa, segs, rows, wb.as_ptr(), width, w.k, &out(gi, b, width), true, true) };
        }
        return;
    }
    // Very large kernels: the list is made again a block, run in chunks through C.
    for gb in blocks {
        let (gi, b) = (gb / per_group, gb % per_group);
        let (wb, width) = w.block(gi, b, bw);
        let tile = out(gi, b, width);
        let mut first = true;
        list.clear();
        segments(x, zeros, patch, g, q0, rows, &mut |seg| {
            let seg = Seg { ptr: seg.ptr.map(|p| p.wrapping_add(gi * g.c)), ..seg };
            if !list.push(seg) {
                // SAFETY: as above.
                unsafe { kernel(isa, list.as_slice(), rows, wb.as_ptr(), width, w.k, &tile, first, false) };
                first = false;
                list.clear();
                list.push(seg);
            }
        });
        // SAFETY: as above.
        unsafe { kernel(isa, list.as_slice(), rows, wb.as_ptr(), width, w.k, &tile, first, true) };
    }
}

/// Up to [`MAX_SEGS`] segments on the stack, not initialised ahead: filling 4 KiB a tile
/// would cost as much as a short reduction.
struct SegList {
    items: [std::mem::MaybeUninit<Seg>; MAX_SEGS],
    len: usize,
}

impl SegList {
    fn new() -> SegList {
        SegList { items: [const { std::mem::MaybeUninit::uninit() }; MAX_SEGS], len: 0 }
    }

    /// Appends `s`; false (and nothing appended) when full.
    fn push(&mut self, s: Seg) -> bool {
        if self.len == MAX_SEGS {
            return false;
        }
        self.items[self.len].write(s);
        self.len += 1;
        true
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn as_slice(&self) -> &[Seg] {
        // SAFETY: the first `len` items were written by `push`.
        unsafe { std::slice::from_raw_parts(self.items.as_ptr().cast::<Seg>(), self.len) }
    }
}

/// Calls `f` with each segment of the reduction of pixels `q0..q0 + rows` (group 0), in
/// weight-row order: a whole kernel row where every pixel's row lies inside the image width
/// (or entirely in the top/bottom padding) and the group has every channel, one tap
/// otherwise; taps in the padding read `zeros`.
///
/// `patch` holds [`PATCH`] floats (written here before they are read) and must outlive the
/// segments' use.
fn segments(x: &[f32], zeros: &[f32], patch: *mut f32, g: &Geometry, q0: usize, rows: usize, f: &mut dyn FnMut(Seg)) {
    let (k, c) = (g.kernel, g.c);
    if k == 1 && g.stride == 1 && g.padding == 0 {
        // A 1x1 stride-1 convolution: output pixel q reads input pixel q.
        let mut seg = Seg { ptr: [zeros.as_ptr(); MR], row: 0, len: c };
        for (i, p) in seg.ptr.iter_mut().enumerate().take(rows) {
            *p = x[(q0 + i) * g.pixel_stride..].as_ptr();
        }
        f(seg);
        return;
    }
    // Each pixel's image, and its receptive field's top-left corner (may be negative); one
    // division for the tile, then stepping along the output row.
    let mut at = [(0usize, 0isize, 0isize); MR];
    let (mut img, rem) = (q0 / (g.oh * g.ow), q0 % (g.oh * g.ow));
    let (mut oy, mut ox) = (rem / g.ow, rem % g.ow);
    for a in at.iter_mut().take(rows) {
        *a = (img, (oy * g.stride) as isize - g.padding as isize, (ox * g.stride) as isize - g.padding as isize);
        ox += 1;
        if ox == g.ow {
            ox = 0;
            oy += 1;
            if oy == g.oh {
                oy = 0;
                img += 1;
            }
        }
    }
    // The usual tile away from the edges: one output row, every tap inside the image, whole
    // kernel rows. Its pointers by arithmetic alone (the checks below took a third of the
    // stem's time: 3x3 stride 2 over 3 channels, 6 pixels a tile).
    let (img0, iy0, ix0) = at[0];
    let span = k as isize;
    if g.dilation == 1
        && c == g.pixel_stride
        && at[..rows].iter().all(|&(img, iy, _)| img == img0 && iy == iy0)
        && iy0 >= 0
        && iy0 + span <= g.h as isize
        && ix0 >= 0
        && at[rows - 1].2 + span <= g.w as isize
    {
        for r in 0..k {
            let start = ((img0 * g.h + iy0 as usize + r) * g.w + ix0 as usize) * c;
            let mut seg = Seg { ptr: [zeros.as_ptr(); MR], row: r * k * c, len: k * c };
            let run = &x[start..start + ((rows - 1) * g.stride + k) * c];
            for (i, p) in seg.ptr.iter_mut().enumerate().take(rows) {
                *p = run[i * g.stride * c..].as_ptr();
            }
            f(seg);
        }
        return;
    }
    let pixel = |img: usize, iy: isize, ix: isize| -> Option<*const f32> {
        (iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w)
            .then(|| x[((img * g.h + iy as usize) * g.w + ix as usize) * g.pixel_stride..].as_ptr())
    };
    // Small receptive fields (the stem: 7x7 over 3 channels) copy the kernel rows that cross
    // the left or right edge into `patch`, zero-filled, so that every row is one segment.
    let patched = g.dilation == 1 && c == g.pixel_stride && MR * k * k * c <= PATCH;
    for r in 0..k {
        let dy = (r * g.dilation) as isize;
        let whole = patched
            || (g.dilation == 1
                && c == g.pixel_stride
                && at[..rows].iter().all(|&(_, iy, ix)| {
                    let row_in = iy + dy >= 0 && ((iy + dy) as usize) < g.h;
                    !row_in || (ix >= 0 && ix as usize + k <= g.w)
                }));
        if whole {
            let mut seg = Seg { ptr: [zeros.as_ptr(); MR], row: r * k * c, len: k * c };
            for (i, &(img, iy, ix)) in at[..rows].iter().enumerate() {
                let yy = iy + dy;
                if yy < 0 || yy as usize >= g.h {
                    continue;
                }
                if ix >= 0 && ix as usize + k <= g.w {
                    seg.ptr[i] = pixel(img, yy, ix).expect("invariant: inside the image");
                    continue;
                }
                // SAFETY: slot (i, r) of `patch` holds k * c floats (PATCH >= MR * k * k * c);
                // every one is written here before the kernel reads it.
                let slot = unsafe { patch.add((i * k + r) * k * c) };
                // Taps s0..s1 are inside the image, one contiguous run; zeros around it.
                let s0 = (-ix).clamp(0, k as isize) as usize;
                let s1 = (g.w as isize - ix).clamp(s0 as isize, k as isize) as usize;
                // SAFETY: `slot` has room for k * c floats; taps s0..s1 are inside the image (so `src` points at (s1 - s0) * c valid floats of `x`), and `x` and `patch` do not overlap.
                unsafe {
                    std::ptr::write_bytes(slot, 0, s0 * c);
                    if s1 > s0 {
                        let src = pixel(img, yy, ix + s0 as isize).expect("invariant: tap s0 is inside the image");
                        std::ptr::copy_nonoverlapping(src, slot.add(s0 * c), (s1 - s0) * c);
                    }
                    std::ptr::write_bytes(slot.add(s1 * c), 0, (k - s1) * c);
                }
                seg.ptr[i] = slot;
            }
            f(seg);
            continue;
        }
        for s in 0..k {
            let dx = (s * g.dilation) as isize;
            let mut seg = Seg { ptr: [zeros.as_ptr(); MR], row: (r * k + s) * c, len: c };
            for (i, &(img, iy, ix)) in at[..rows].iter().enumerate() {
                if let Some(p) = pixel(img, iy + dy, ix + dx) {
                    seg.ptr[i] = p;
                }
            }
            f(seg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::nhwc::{to_nchw, to_nhwc};
    use crate::kernels::tests::{assert_close, seq};
    use crate::kernels::Activation;
    use crate::kernels::Conv2dParams;
    use ndarray::Array4;

    /// The plain NCHW kernel, then residual add and an activation, against [`conv`] on NHWC
    /// copies, on every micro-kernel the CPU has: batches, padding, strides, dilation,
    /// groups (depthwise too), channel counts that leave a narrow last block, tiles of fewer
    /// than [`MR`] pixels, every activation and none.
    #[test]
    fn matches_the_plain_kernel_on_every_isa() {
        let isas = Isa::available();
        eprintln!("micro-kernels tested: {isas:?}");
        for isa in isas {
            for (case, &(n, c, h, w, o, k, s, pd, d, g)) in CASES.iter().enumerate() {
                let acts = [None, Some(Activation::Relu)].into_iter().chain(Activation::ALL.map(Some));
                let act = acts.clone().nth(case % acts.count()).unwrap();
                check(isa, (n, c, h, w, o, k, s, pd, d, g), act, true);
                check(isa, (n, c, h, w, o, k, s, pd, d, g), Some(Activation::Relu), true);
            }
        }
    }

    /// Every activation (none, the ones clamped in registers, the ones applied after the
    /// stores) on tiles whose every column is valid, with and without a residual: the
    /// micro-kernels' fast stores.
    #[test]
    fn full_tiles_apply_every_activation() {
        for isa in Isa::available() {
            let acts = [None].into_iter().chain(Activation::ALL.map(Some));
            for act in acts {
                for residual in [true, false] {
                    check(isa, (1, 16, 5, 5, 80, 1, 1, 0, 1, 1), act, residual);
                    check(isa, (2, 24, 6, 6, 64, 3, 1, 1, 1, 1), act, residual);
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    const CASES: &[(usize, usize, usize, usize, usize, usize, usize, usize, usize, usize)] = &[
        (2, 8, 9, 7, 12, 3, 1, 1, 1, 1),
        (1, 6, 8, 8, 6, 3, 2, 1, 1, 3),
        (1, 16, 5, 5, 80, 1, 1, 0, 1, 1),
        (1, 4, 6, 6, 8, 1, 2, 0, 1, 1),
        (2, 3, 11, 10, 70, 7, 2, 3, 1, 1),
        (1, 5, 9, 9, 7, 3, 1, 2, 2, 1),
        (1, 8, 7, 7, 8, 3, 1, 1, 1, 8),
        (1, 2, 12, 12, 130, 3, 1, 1, 1, 1),
        (1, 3, 12, 12, 4, 11, 1, 5, 1, 1),
        (1, 64, 6, 5, 64, 3, 1, 1, 1, 1),
        // Groups with reductions past 512 (one-panel blocks on AVX2), a partial panel.
        (1, 128, 5, 5, 40, 3, 1, 1, 1, 2),
        // Rows wide enough for tiles inside one row and away from every edge (the
        // arithmetic segments), stride 1 and 2, 3x3 and a 7x7 stem over 3 channels.
        (2, 16, 7, 26, 16, 3, 1, 1, 1, 1),
        (1, 3, 9, 40, 32, 3, 2, 1, 1, 1),
        (1, 3, 15, 44, 24, 7, 2, 3, 1, 1),
        // 1x1 layers with weights past L2 (tile-major at one and two threads), reductions
        // at and past 512.
        (1, 512, 14, 14, 300, 1, 1, 0, 1, 1),
        (1, 640, 14, 14, 250, 1, 1, 0, 1, 1),
    ];

    fn check(
        isa: Isa,
        (n, c, h, w, o, k, s, pd, d, g): (usize, usize, usize, usize, usize, usize, usize, usize, usize, usize),
        act: Option<Activation>,
        with_residual: bool,
    ) {
        {
            let x = Array4::from_shape_vec((n, c, h, w), seq(n * c * h * w, 1)).unwrap();
            let wt = seq(o * (c / g) * k * k, 2);
            let bias = seq(o, 3);
            let p = Conv2dParams { stride: s, padding: pd, dilation: d, groups: g };
            let plain = crate::kernels::conv2d(x.view(), &wt, o, k, Some(&bias), p);
            let res = Array4::from_shape_vec(plain.dim(), seq(plain.len(), 4)).unwrap();
            let sum = if with_residual { &plain + &res } else { plain.clone() };
            let want = sum.mapv(|v| act.map_or(v, |a| a.apply(v)));
            let (_, _, oh, ow) = plain.dim();
            let mut spec = ConvSpec::new([c, h, w], o, k).stride(s).padding(pd).dilation(d).groups(g);
            spec.act = act;
            let packed = PackedConv::new(&wt, &spec);
            let mut xn = vec![0f32; x.len()];
            to_nhwc(x.as_slice().unwrap(), [n, c, h, w], &mut xn);
            let mut rn = vec![0f32; res.len()];
            to_nhwc(res.as_slice().unwrap(), [n, o, oh, ow], &mut rn);
            let mut zeros = vec![1f32; scratch_len(&spec)];
            let mut yn = vec![0f32; plain.len()];
            let residual = with_residual.then_some(&rn[..]);
            conv(isa, &xn, n, &spec, &packed, Epilogue { bias: Some(&bias), residual, act: spec.act }, &mut zeros, &mut yn);
            let mut y = vec![0f32; plain.len()];
            to_nchw(&yn, [n, o, oh, ow], &mut y);
            assert_close(&Array4::from_shape_vec(plain.dim(), y).unwrap(), &want);
        }
    }
}
