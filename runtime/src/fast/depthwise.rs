//! Depthwise convolutions (groups = input channels = output channels: MobileNet's,
//! EfficientNet's and ConvNeXt's 3x3, 5x5 and 7x7 layers) on NHWC values. The weights are
//! packed tap-major ([K * K][C], the channels contiguous), so every output pixel is K * K
//! products of contiguous channel runs, one register of channels at a time
//! ([`simd::Vector`](super::simd::Vector): 16 lanes with AVX-512, 8 with AVX2+FMA or
//! portable). The general direct convolution would run these as C groups of one channel
//! each, a micro-kernel call per channel.
//!
//! An output row goes a block of pixels at a time, every channel register of a block
//! before the next block (the row read in memory order). Stride-1 3x3, 5x5 and 7x7
//! kernels run in [`sweep`]s: a kernel row's weights in registers, each input
//! register loaded once and multiplied into every output that reads it (loads, not
//! multiplies, bounded the kernel that loaded an input a tap: 20-30% of the FMA peak on a
//! Zen 4, 30-45% now). Other kernels (stride 2, dilation) run in [`block`]s of pixels,
//! two registers of channels each, a load a tap.

use super::pool::{self, SharedMut};
use super::simd::{self, Vector};
use super::{ConvSpec, Isa};
use crate::kernels::{Activation, Epilogue};

/// Whether `spec` is a depthwise convolution (one input and one output channel a group).
pub fn eligible(spec: &ConvSpec) -> bool {
    let c = spec.input[0];
    c > 1 && spec.params.groups == c && spec.out_channels == c
}

/// Packs `weight` [C, 1, K, K] (PyTorch's layout) tap-major: [K * K][C].
pub fn pack(weight: &[f32], spec: &ConvSpec) -> Vec<f32> {
    let (c, kk) = (spec.input[0], spec.kernel * spec.kernel);
    assert_eq!(weight.len(), c * kk, "invariant: the weight matches its spec");
    let mut data = vec![0.0; c * kk];
    for ch in 0..c {
        for t in 0..kk {
            data[t * c + ch] = weight[ch * kk + t];
        }
    }
    data
}

/// The static shape of one depthwise convolution.
#[derive(Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    k: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    /// The output columns `lo..hi` whose taps all lie inside the input row.
    lo: usize,
    hi: usize,
    /// The input row (numbered over the batch) that `x`'s first row holds: 0 for a whole
    /// value, the first row of a strip for [`rows_from`].
    row0: usize,
}

impl Geometry {
    /// The geometry of `spec` over input rows held from `row0`.
    fn new(spec: &ConvSpec, row0: usize) -> Geometry {
        let [c, h, wd] = spec.input;
        let p = spec.params;
        let g = Geometry {
            c,
            h,
            w: wd,
            oh: p.out(h, spec.kernel),
            ow: p.out(wd, spec.kernel),
            k: spec.kernel,
            stride: p.stride,
            padding: p.padding,
            dilation: p.dilation,
            lo: 0,
            hi: 0,
            row0,
        };
        let (lo, hi) = interior(&g);
        Geometry { lo, hi, ..g }
    }

    /// Where input row `iy` of sample `b` starts in `x`, in pixels.
    #[inline(always)]
    fn input_row(&self, b: usize, iy: usize) -> usize {
        (b * self.h + iy - self.row0) * self.w
    }

    /// Whether `x` (`len` floats from row `row0`) holds every input row that output row
    /// `at` reads: the bound the unchecked loads of [`sweep`] and [`block`] rest on.
    fn holds(&self, at: At, len: usize) -> bool {
        let first = (at.oy * self.stride).saturating_sub(self.padding).min(self.h);
        let end = (at.oy * self.stride + (self.k - 1) * self.dilation + 1).saturating_sub(self.padding).min(self.h);
        first >= end || (at.b * self.h + first >= self.row0 && (at.b * self.h + end - self.row0) * self.w * self.c <= len)
    }
}

/// `y = act(depthwise(x) + bias + residual)` on NHWC values, `w` from [`pack`]; the output
/// rows (over the batch) are split over the pool's threads.
pub fn conv(isa: Isa, x: &[f32], n: usize, spec: &ConvSpec, w: &[f32], epi: Epilogue<'_>, y: &mut [f32]) {
    assert!(isa.supported(), "the {isa} kernels need a CPU that supports them");
    let g = Geometry::new(spec, 0);
    let [c, h, wd] = spec.input;
    let row_len = g.ow * c;
    let rows = n * g.oh;
    assert!(x.len() >= n * h * wd * c && y.len() >= rows * row_len && w.len() >= g.k * g.k * c, "invariant: buffers match the spec");
    if let Some(r) = epi.residual {
        assert!(r.len() >= rows * row_len, "invariant: the residual has the output's shape");
    }
    let threads = pool::global().threads().min(rows).max(1);
    let out = SharedMut::new(y.as_mut_ptr());
    let job = |t: usize| {
        let per = rows.div_ceil(threads);
        let (r0, r1) = ((t * per).min(rows), ((t + 1) * per).min(rows));
        if r0 == r1 {
            return;
        }
        // SAFETY: task t alone writes output rows r0..r1, which lie inside `y` (asserted
        // above: `y` holds rows * row_len floats), and `y` outlives the job (the pool
        // returns only when every task has finished).
        let y_rows = unsafe { std::slice::from_raw_parts_mut(out.get().add(r0 * row_len), (r1 - r0) * row_len) };
        let residual = epi.residual.map(|r| &r[r0 * row_len..r1 * row_len]);
        rows_on(isa, x, w, g, epi.bias, residual, epi.act, r0, y_rows);
    };
    pool::run_first(threads, &job);
}

/// `y = act(depthwise(x) + bias)` for the output rows from `r0` (numbered over the batch;
/// `y` holds whole rows) on the calling thread, `x` holding the input rows from `row0`
/// (numbered over the batch) on: at least those these output rows read (asserted), as a
/// strip of [`super::strips`] does.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rows_from(
    isa: Isa,
    x: &[f32],
    row0: usize,
    spec: &ConvSpec,
    w: &[f32],
    bias: Option<&[f32]>,
    act: Option<Activation>,
    r0: usize,
    y: &mut [f32],
) {
    rows_on(isa, x, w, Geometry::new(spec, row0), bias, None, act, r0, y);
}

multiversion!(
    /// The output rows from `r0` (over the batch) into `y`, on `isa`.
    fn rows_on(
        x: &[f32],
        w: &[f32],
        g: Geometry,
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        act: Option<Activation>,
        r0: usize,
        y: &mut [f32],
    ) => rows::<simd>
);

/// The output rows from `r0` (over the batch) into `y`, `V` registers at a time.
///
/// Each row channel register by channel register ([`sweeps`] or [`blocks`]), then the channels past
/// the last whole register one at a time ([`tail`]). The activation is applied in the
/// registers ([`simd::activate`]) when the channels are whole registers, else in one pass
/// over the finished row (a pass over the row was twice as slow for SiLU: EfficientNet's
/// depthwise layers, 16.2 against 19.8 ms for the model with AVX2 on a Zen 4).
///
/// # Safety
/// The CPU supports `V`'s ISA. (The buffers' bounds are checked: `w` and `y` here, the
/// input rows each sweep and block reads by [`Geometry::holds`], the rest by slicing.)
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rows<V: Vector>(
    x: &[f32],
    w: &[f32],
    g: Geometry,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Option<Activation>,
    r0: usize,
    y: &mut [f32],
) {
    let row_len = g.ow * g.c;
    assert!(y.len().is_multiple_of(row_len) && w.len() >= g.k * g.k * g.c, "invariant: buffers match the spec");
    if let Some(b) = bias {
        assert!(b.len() >= g.c, "invariant: a bias a channel");
    }
    // The interior bounds the unchecked blocks and sweeps rely on are this shape's.
    assert_eq!((g.lo, g.hi), interior(&g), "invariant: the geometry's interior");
    let fused = g.c.is_multiple_of(V::LANES);
    let vec_end = g.c - g.c % V::LANES;
    for (i, y_row) in y.chunks_exact_mut(row_len).enumerate() {
        let (b, oy) = ((r0 + i) / g.oh, (r0 + i) % g.oh);
        let res_row = residual.map(|r| &r[i * row_len..(i + 1) * row_len]);
        let (in_store, after) = match act {
            _ if !fused => (None, None),
            Some(Activation::Relu | Activation::Relu6) => (act, None),
            _ => (None, act),
        };
        let mut out = Out { y: y_row, residual: res_row, bias, act: in_store, after };
        let src = Src { x, w, g: &g, at: At { b, oy } };
        if sweeping(&g) {
            // P + K + 1 registers: within AVX2's 16, AVX-512's 32.
            let narrow = V::LANES < 16;
            match g.k {
                3 if narrow => sweeps::<V, 3, 1, 8>(&src, vec_end, &mut out),
                3 => sweeps::<V, 3, 1, 12>(&src, vec_end, &mut out),
                5 if narrow => sweeps::<V, 5, 1, 8>(&src, vec_end, &mut out),
                5 => sweeps::<V, 5, 1, 10>(&src, vec_end, &mut out),
                7 if narrow => sweeps::<V, 7, 1, 6>(&src, vec_end, &mut out),
                _ => sweeps::<V, 7, 1, 8>(&src, vec_end, &mut out),
            }
        } else {
            // Stride 2 and the rest.
            blocks::<V>(&src, vec_end, &mut out);
        }
        if vec_end < g.c {
            for ox in 0..g.ow {
                tail(&src, ox, vec_end, &mut out);
            }
        }
        if let (false, Some(a)) = (fused, act) {
            a.apply_slice(out.y);
        }
    }
}

/// What an output row reads: the input, the packed weights, the shape, and which row.
#[derive(Clone, Copy)]
struct Src<'a> {
    x: &'a [f32],
    w: &'a [f32],
    g: &'a Geometry,
    at: At,
}

impl Src<'_> {
    /// Tap (`r`, `q`) of output pixel `ox`: the offsets of its input pixel's first channel
    /// in `x` and of its weights in `w`, or None where it lies in the padding.
    #[inline(always)]
    fn tap(&self, ox: usize, r: usize, q: usize) -> Option<(usize, usize)> {
        let g = self.g;
        let iy = (self.at.oy * g.stride + r * g.dilation).wrapping_sub(g.padding);
        let ix = (ox * g.stride + q * g.dilation).wrapping_sub(g.padding);
        if iy < g.h && ix < g.w {
            Some(((g.input_row(self.at.b, iy) + ix) * g.c, (r * g.k + q) * g.c))
        } else {
            None
        }
    }
}

/// The sample and output row a pixel is in.
#[derive(Clone, Copy)]
struct At {
    b: usize,
    oy: usize,
}

/// One output row and what its epilogue adds: the bias (the accumulators' start), the
/// residual row, the activation applied in registers (None when a later pass applies it).
struct Out<'a> {
    y: &'a mut [f32],
    residual: Option<&'a [f32]>,
    bias: Option<&'a [f32]>,
    /// ReLU or ReLU6, applied as each register is stored.
    act: Option<Activation>,
    /// Any other activation, applied in registers to a block of pixels once all its
    /// channels are stored ([`Out::finish`]): inlined into every store, SiLU's code made
    /// the ReLU6 sweeps a third slower (register pressure) although it never ran there.
    after: Option<Activation>,
}

impl Out<'_> {
    /// The accumulators' start for channels `c0..`.
    ///
    /// # Safety
    /// The CPU supports `V`'s ISA; `c0 + V::LANES <= c`.
    #[inline(always)]
    unsafe fn init<V: Vector>(&self, c0: usize) -> V {
        match self.bias {
            Some(bias) => V::load(bias[c0..c0 + V::LANES].as_ptr()),
            None => V::splat(0.0),
        }
    }

    /// The `after` activation on output pixels `ox..ox + n` (every channel stored).
    ///
    /// # Safety
    /// The CPU supports `V`'s ISA; the channels are whole registers.
    #[inline(always)]
    unsafe fn finish<V: Vector>(&mut self, c: usize, ox: usize, n: usize) {
        if let Some(a) = self.after {
            for run in self.y[ox * c..(ox + n) * c].chunks_exact_mut(V::LANES) {
                simd::activate(V::load(run.as_ptr()), a).store(run.as_mut_ptr());
            }
        }
    }

    /// Adds the residual, applies the activation and stores `v` at offset `at` of the row.
    ///
    /// # Safety
    /// The CPU supports `V`'s ISA.
    #[inline(always)]
    unsafe fn store<V: Vector>(&mut self, mut v: V, at: usize) {
        let dst = &mut self.y[at..at + V::LANES];
        if let Some(res) = self.residual {
            v = v.add(V::load(res[at..at + V::LANES].as_ptr()));
        }
        v = match self.act {
            Some(Activation::Relu) => v.relu(),
            Some(Activation::Relu6) => v.relu6(),
            _ => v,
        };
        v.store(dst.as_mut_ptr());
    }
}

/// Output pixels [`block`] computes together.
const BLOCK: usize = 6;

/// The output columns `lo..hi` whose taps all lie inside the input row.
fn interior(g: &Geometry) -> (usize, usize) {
    let lo = g.padding.div_ceil(g.stride);
    let span = (g.k - 1) * g.dilation;
    // ox * stride - padding + span <= w - 1
    let hi = if g.w + g.padding > span { (g.w + g.padding - span - 1) / g.stride + 1 } else { 0 };
    (lo.min(g.ow), hi.min(g.ow).max(lo.min(g.ow)))
}

/// Channels `0..c_end` (whole registers) along the output row: interior pixels in
/// [`block`]s of [`BLOCK`], 3 and 1, the edges a pixel at a time (two registers of
/// channels at a time, then one); every channel of a block before the next.
///
/// # Safety
/// The CPU supports `V`'s ISA.
#[inline(always)]
unsafe fn blocks<V: Vector>(src: &Src<'_>, c_end: usize, out: &mut Out<'_>) {
    let g = src.g;
    let (lo, hi) = (g.lo, g.hi);
    let mut ox = 0;
    while ox < g.ow {
        let step = if ox >= lo && ox + BLOCK <= hi {
            block_runs::<V, BLOCK>(src, ox, c_end, out);
            BLOCK
        } else if ox >= lo && ox + 3 <= hi {
            block_runs::<V, 3>(src, ox, c_end, out);
            3
        } else if ox >= lo && ox < hi {
            block_runs::<V, 1>(src, ox, c_end, out);
            1
        } else {
            let pairs = c_end - c_end % (2 * V::LANES);
            for c0 in (0..pairs).step_by(2 * V::LANES) {
                pixel::<V, 2>(src, ox, c0, out);
            }
            if pairs < c_end {
                pixel::<V, 1>(src, ox, pairs, out);
            }
            1
        };
        out.finish::<V>(g.c, ox, step);
        ox += step;
    }
}

/// Channels `0..c_end` of interior pixels `ox..ox + P`: [`block`]s of two registers of
/// channels, then one.
///
/// # Safety
/// The CPU supports `V`'s ISA.
#[inline(always)]
unsafe fn block_runs<V: Vector, const P: usize>(src: &Src<'_>, ox: usize, c_end: usize, out: &mut Out<'_>) {
    let l = V::LANES;
    let pairs = c_end - c_end % (2 * l);
    for c0 in (0..pairs).step_by(2 * l) {
        block::<V, P, 2>(src, ox, c0, out);
    }
    if pairs < c_end {
        block::<V, P, 1>(src, ox, pairs, out);
    }
}

/// What [`sweep`] reads in the padding: a register of zeros on every path.
static ZEROS: [f32; 16] = [0.0; 16];

/// Whether [`sweeps`] run the interior pixels (else [`block`]s of two registers do).
fn sweeping(g: &Geometry) -> bool {
    g.dilation == 1 && g.stride == 1 && matches!(g.k, 3 | 5 | 7)
}

/// Channels `0..c_end` (whole registers) along the output row at a K x K kernel, stride S,
/// dilation 1: narrow rows in checked [`sweep`]s of P (the last stored in part); others
/// with the edges a pixel at a time, the interior in sweeps of P pixels, then of 4, then
/// single ones; every channel register of a block of pixels before the next block.
///
/// # Safety
/// The CPU supports `V`'s ISA.
#[inline(always)]
unsafe fn sweeps<V: Vector, const K: usize, const S: usize, const P: usize>(src: &Src<'_>, c_end: usize, out: &mut Out<'_>) {
    let g = src.g;
    let mut ox = 0;
    // Every channel register of a block of pixels, then the next block: the rows are
    // read in memory order (in a model the input comes from L2 or L3, and a pass over
    // the row per channel register was slower there than alone in a benchmark).
    if g.ow <= 2 * P && g.ow.div_ceil(P) * P - g.ow <= P / 2 {
        // Narrow rows (14 or 7 columns late in a network), where the interior is a few
        // pixels or none: checked sweeps of P over the whole row, the last one stored in
        // part, where that computes at most half a sweep more than the row holds (single
        // pixels instead made 5x5 layers at 7x7 a third slower with AVX2; without the
        // limit AVX-512's 3x3 sweeps of 12 computed 24 pixels for a row of 14, a third
        // slower than edges and one interior sweep).
        while ox < g.ow {
            let n = P.min(g.ow - ox);
            sweep_block::<V, K, S, P, true>(src, ox, n, c_end, out);
            ox += n;
        }
        return;
    }
    while ox < g.lo {
        sweep_block::<V, K, S, 1, true>(src, ox, 1, c_end, out);
        ox += 1;
    }
    while ox + P <= g.hi {
        sweep_block::<V, K, S, P, false>(src, ox, P, c_end, out);
        ox += P;
    }
    while ox + 4 <= g.hi {
        sweep_block::<V, K, S, 4, false>(src, ox, 4, c_end, out);
        ox += 4;
    }
    while ox < g.ow {
        sweep_block::<V, K, S, 1, true>(src, ox, 1, c_end, out);
        ox += 1;
    }
}

/// Every channel register (`0..c_end`) of output pixels `ox..ox + n` through [`sweep`],
/// then the block's deferred activation: the rows are read in memory order (in a model
/// the input comes from L2 or L3, and a pass over the row per channel register was slower
/// there than alone in a benchmark).
///
/// # Safety
/// The CPU supports `V`'s ISA.
#[inline(always)]
unsafe fn sweep_block<V: Vector, const K: usize, const S: usize, const P: usize, const EDGE: bool>(
    src: &Src<'_>,
    ox: usize,
    n: usize,
    c_end: usize,
    out: &mut Out<'_>,
) {
    for c0 in (0..c_end).step_by(V::LANES) {
        sweep::<V, K, S, P, EDGE>(src, ox, n, c0, out);
    }
    out.finish::<V>(src.g.c, ox, n);
}

/// Channels `c0..c0 + V::LANES` of output pixels `ox..ox + P` (interior ones, or with
/// EDGE any: the taps in the padding, and past the row's end, then read zeros; only the
/// first `n` are stored) at a K x K kernel, stride S, dilation 1: a kernel row's K weight
/// registers loaded once, then each input register of the row once, multiplied into every
/// output that reads it (a 3x3 stride-1 kernel: P + 2 loads for 3 P multiply-adds; on a Zen 4
/// the loads, not the multiplies, bounded the kernel that loaded an input a tap).
///
/// # Safety
/// The CPU supports `V`'s ISA.
#[inline(always)]
unsafe fn sweep<V: Vector, const K: usize, const S: usize, const P: usize, const EDGE: bool>(
    src: &Src<'_>,
    ox: usize,
    n: usize,
    c0: usize,
    out: &mut Out<'_>,
) {
    let Src { x, w, g, at } = *src;
    let (c, l) = (g.c, V::LANES);
    // Rows outside the image skipped, columns outside read as zeros (EDGE), the run inside
    // `c`: every read is inside sample b of `x`, inside `w`, or of ZEROS.
    assert!(g.k == K && g.stride == S && g.dilation == 1);
    assert!(ox + n <= g.ow && n <= P && c0 + l <= c && w.len() >= K * K * c && g.holds(at, x.len()));
    // Without EDGE every column read is inside the row (interior pixels: see `interior`).
    assert!(EDGE || (n == P && ox >= g.lo && ox + P <= g.hi));
    let mut acc = [out.init::<V>(c0); P];
    for r in 0..K {
        let iy = (at.oy * S + r).wrapping_sub(g.padding);
        if iy >= g.h {
            continue;
        }
        let row = x.as_ptr().add(g.input_row(at.b, iy) * c + c0);
        let wr: [V; K] = std::array::from_fn(|q| V::load(w.as_ptr().add((r * K + q) * c + c0)));
        for j in 0..(P - 1) * S + K {
            // Input column `ox * S + j - padding`; outside the row (the padding) it reads
            // zeros instead: a select, not a branch, which kept LLVM from unrolling the
            // loop into registers (3x3 ran at half the speed).
            let ix = (ox * S + j).wrapping_sub(g.padding);
            let src = if !EDGE || ix < g.w { row.add(ix * c) } else { ZEROS.as_ptr() };
            let v = V::load(src);
            for (q, wq) in wr.iter().enumerate() {
                // Input column j is tap q of output p when j = p * S + q.
                if j >= q && (j - q) % S == 0 && (j - q) / S < P {
                    let p = (j - q) / S;
                    acc[p] = v.mul_add(*wq, acc[p]);
                }
            }
        }
    }
    for (p, a) in acc.into_iter().enumerate().take(n) {
        out.store(a, (ox + p) * c + c0);
    }
}

/// Channels `c0..c0 + R * V::LANES` of output pixels `ox..ox + P` (all interior: see
/// [`interior`]): P x R accumulators, each weight register loaded once for the P pixels.
///
/// # Safety
/// The CPU supports `V`'s ISA.
#[inline(always)]
unsafe fn block<V: Vector, const P: usize, const R: usize>(src: &Src<'_>, ox: usize, c0: usize, out: &mut Out<'_>) {
    let Src { x, w, g, at } = *src;
    let (c, l) = (g.c, V::LANES);
    // The checks once, outside the loops: `ox..ox + P` are interior columns, so every tap
    // `ix = (ox + p) * stride + q * dilation - padding` is below `w`; rows outside the
    // image are skipped; the runs end by `c0 + R * LANES <= c`.
    assert!(ox + P <= g.hi && ox >= g.lo && c0 + R * l <= c && w.len() >= g.k * g.k * c && g.holds(at, x.len()));
    let mut acc: [[V; R]; P] = [std::array::from_fn(|r| out.init::<V>(c0 + r * l)); P];
    for r in 0..g.k {
        let iy = (at.oy * g.stride + r * g.dilation).wrapping_sub(g.padding);
        if iy >= g.h {
            continue;
        }
        // In bounds by the assertion above (interior columns, `iy < h`, the runs in `c`).
        let first = x.as_ptr().add((g.input_row(at.b, iy) + ox * g.stride - g.padding) * c + c0);
        let mut wp = w.as_ptr().add(r * g.k * c + c0);
        for q in 0..g.k {
            let wv: [V; R] = std::array::from_fn(|j| V::load(wp.add(j * l)));
            let tap = first.add(q * g.dilation * c);
            for (p, a) in acc.iter_mut().enumerate() {
                for (j, a) in a.iter_mut().enumerate() {
                    *a = V::load(tap.add(p * g.stride * c + j * l)).mul_add(wv[j], *a);
                }
            }
            wp = wp.add(c);
        }
    }
    for (p, a) in acc.into_iter().enumerate() {
        for (j, a) in a.into_iter().enumerate() {
            out.store(a, (ox + p) * c + c0 + j * l);
        }
    }
}

/// Channels `c0..c0 + R * V::LANES` of output pixel `ox`, any pixel (taps outside the
/// image skipped).
///
/// # Safety
/// The CPU supports `V`'s ISA.
#[inline(always)]
unsafe fn pixel<V: Vector, const R: usize>(src: &Src<'_>, ox: usize, c0: usize, out: &mut Out<'_>) {
    let Src { x, w, g, .. } = *src;
    let (c, l) = (g.c, V::LANES);
    let mut acc: [V; R] = std::array::from_fn(|j| out.init::<V>(c0 + j * l));
    for r in 0..g.k {
        for q in 0..g.k {
            if let Some((xat, wat)) = src.tap(ox, r, q) {
                let xs = &x[xat + c0..][..R * l];
                let ws = &w[wat + c0..][..R * l];
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = V::load(xs[j * l..].as_ptr()).mul_add(V::load(ws[j * l..].as_ptr()), *a);
                }
            }
        }
    }
    for (j, a) in acc.into_iter().enumerate() {
        out.store(a, ox * c + c0 + j * l);
    }
}

/// Channels `from..c` of output pixel `ox` one at a time (bias and residual added; the
/// activation is left to the pass over the finished pixels).
fn tail(src: &Src<'_>, ox: usize, from: usize, out: &mut Out<'_>) {
    let Src { x, w, g, .. } = *src;
    let c = g.c;
    for ch in from..c {
        let mut a = out.bias.map_or(0.0, |b| b[ch]);
        for r in 0..g.k {
            for q in 0..g.k {
                if let Some((xat, wat)) = src.tap(ox, r, q) {
                    a += x[xat + ch] * w[wat + ch];
                }
            }
        }
        if let Some(res) = out.residual {
            a += res[ox * c + ch];
        }
        out.y[ox * c + ch] = a;
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{conv2d_fused, Conv2dParams};
    use ndarray::Array4;

    /// Every kernel size, stride, padding and dilation the families use (and odd channel
    /// counts around the registers, rows wide enough for every sweep and block width), on
    /// every ISA here, with and without a residual, each activation (in registers or in
    /// the pass after), against the reference convolution.
    #[test]
    fn depthwise_matches_the_reference_on_every_isa() {
        let acts = [None, Some(Activation::Relu), Some(Activation::Relu6), Some(Activation::Silu), Some(Activation::Hardswish)];
        for (i, (c, k, stride, padding, dilation, wd)) in [
            (48, 3, 1, 1, 1, 27),
            (32, 3, 2, 1, 1, 11),
            (20, 3, 1, 3, 1, 11),
            (16, 7, 1, 3, 2, 11),
            (72, 5, 2, 2, 1, 11),
            (24, 7, 1, 3, 1, 11),
            (130, 3, 2, 1, 1, 11),
            (8, 3, 1, 2, 2, 11),
            (3, 5, 1, 0, 1, 11),
            (16, 3, 1, 1, 1, 31),
            (40, 5, 1, 2, 1, 29),
            (16, 7, 1, 3, 1, 23),
            (24, 3, 1, 0, 1, 7),
            (32, 5, 1, 1, 1, 4),
        ]
        .into_iter()
        .enumerate()
        {
            let (n, h) = (2, 9);
            let act = acts[i % acts.len()];
            let x = Array4::from_shape_fn((n, c, h, wd), |(b, ch, i, j)| ((b * 7 + ch * 13 + i * 5 + j * 3) % 17) as f32 / 8.0 - 1.0);
            let weight: Vec<f32> = (0..c * k * k).map(|i| ((i * 11) % 23) as f32 / 11.0 - 1.0).collect();
            let bias: Vec<f32> = (0..c).map(|i| i as f32 / 10.0 - 0.3).collect();
            let p = Conv2dParams { stride, padding, dilation, groups: c };
            let want = conv2d_fused(x.view(), &weight, c, k, Some(&bias), p, None, act);
            let spec = ConvSpec { params: p, act, ..ConvSpec::new([c, h, wd], c, k) };
            assert!(eligible(&spec));
            let packed = pack(&weight, &spec);
            let nhwc: Vec<f32> = x.view().permuted_axes([0, 2, 3, 1]).iter().copied().collect();
            let (oh, ow) = (p.out(h, k), p.out(wd, k));
            // With a residual too (where the output keeps the input's shape).
            let residual = (oh, ow) == (h, wd);
            let want_res = residual.then(|| conv2d_fused(x.view(), &weight, c, k, Some(&bias), p, Some(x.view()), act));
            let close = |got: f32, exp: f32| (got - exp).abs() <= 1e-5 * exp.abs().max(1.0) * (k * k) as f32;
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; n * oh * ow * c];
                conv(isa, &nhwc, n, &spec, &packed, Epilogue { bias: Some(&bias), residual: None, act }, &mut y);
                for (b, ch, i, j) in indices(n, c, oh, ow) {
                    let (got, exp) = (y[((b * oh + i) * ow + j) * c + ch], want[[b, ch, i, j]]);
                    assert!(close(got, exp), "c={c} k={k} s={stride} w={wd} {act:?} ({isa}) [{b},{ch},{i},{j}]: {got} vs {exp}");
                }
                if let Some(want) = &want_res {
                    conv(isa, &nhwc, n, &spec, &packed, Epilogue { bias: Some(&bias), residual: Some(&nhwc), act }, &mut y);
                    for (b, ch, i, j) in indices(n, c, oh, ow) {
                        let (got, exp) = (y[((b * oh + i) * ow + j) * c + ch], want[[b, ch, i, j]]);
                        assert!(close(got, exp), "residual c={c} k={k} w={wd} {act:?} ({isa}) [{b},{ch},{i},{j}]: {got} vs {exp}");
                    }
                }
            }
        }
    }

    fn indices(n: usize, c: usize, h: usize, w: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        (0..n).flat_map(move |b| (0..c).flat_map(move |ch| (0..h).flat_map(move |i| (0..w).map(move |j| (b, ch, i, j)))))
    }
}
