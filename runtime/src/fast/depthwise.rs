//! Depthwise convolutions (groups = input channels = output channels: MobileNet's,
//! EfficientNet's and ConvNeXt's 3x3, 5x5 and 7x7 layers) on NHWC values. The weights are
//! packed tap-major ([K * K][C], the channels contiguous), so every output pixel is K * K
//! products of contiguous channel runs, which vectorise across the channels on every ISA
//! (the loops are compiled once for AVX-512, once for AVX2+FMA and once portable). The
//! general direct convolution would run these as C groups of one channel each, a
//! micro-kernel call per channel.

use super::pool::{self, SharedMut};
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
}

/// `y = act(depthwise(x) + bias + residual)` on NHWC values, `w` from [`pack`]; the output
/// rows (over the batch) are split over the pool's threads.
pub fn conv(isa: Isa, x: &[f32], n: usize, spec: &ConvSpec, w: &[f32], epi: Epilogue<'_>, y: &mut [f32]) {
    assert!(isa.supported(), "the {isa} kernels need a CPU that supports them");
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
    };
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

multiversion!(
    /// The output rows from `r0` (over the batch) into `y`, on `isa`.
    fn rows_on[][](
        x: &[f32],
        w: &[f32],
        g: Geometry,
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        act: Option<Activation>,
        r0: usize,
        y: &mut [f32],
    ) => rows_body
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows_body(
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
    for (i, y_row) in y.chunks_exact_mut(row_len).enumerate() {
        let (b, oy) = ((r0 + i) / g.oh, (r0 + i) % g.oh);
        let res_row = residual.map(|r| &r[i * row_len..(i + 1) * row_len]);
        // Pixel by pixel (a window's channels are contiguous), channels in runs of LANES
        // (one AVX-512 register, two AVX2 ones), then the tail. Where every tap of a pixel
        // lies inside the row (no left or right padding), runs of BLOCK pixels (then single
        // ones) share each weight load; the edges go a pixel at a time, checked tap by tap.
        // (No closures here: a closure is compiled apart, without the ISA's features.)
        let (lo, hi) = interior(&g);
        let tail = g.c - g.c % LANES;
        let mut ox = 0;
        while ox < g.ow {
            let step = if ox >= lo && ox + BLOCK <= hi {
                block::<BLOCK>(x, w, &g, bias, res_row, act, b, oy, ox, y_row);
                BLOCK
            } else if ox >= lo && ox < hi {
                block::<1>(x, w, &g, bias, res_row, act, b, oy, ox, y_row);
                1
            } else {
                for c0 in (0..tail).step_by(LANES) {
                    run::<LANES>(x, w, &g, bias, res_row, act, b, oy, ox, c0, LANES, y_row);
                }
                1
            };
            if tail < g.c {
                for p in ox..ox + step {
                    run::<1>(x, w, &g, bias, res_row, act, b, oy, p, tail, g.c - tail, y_row);
                }
            }
            ox += step;
        }
    }
}

/// `act` on `xs` in place (in registers: `xs` is the accumulators' array).
#[inline(always)]
fn activate(act: Option<Activation>, xs: &mut [f32]) {
    if let Some(a) = act {
        a.apply_slice(xs);
    }
}

/// Output pixels [`block`] computes together.
const BLOCK: usize = 6;

/// The output columns `lo..hi` whose taps all lie inside the input row.
fn interior(g: &Geometry) -> (usize, usize) {
    let lo = g.padding.div_ceil(g.stride);
    let span = (g.k - 1) * g.dilation;
    // ox * stride - padding + span <= w - 1
    let hi = if g.w + g.padding > span { (g.w - 1 + g.padding - span) / g.stride + 1 } else { 0 };
    (lo.min(g.ow), hi.min(g.ow).max(lo.min(g.ow)))
}

/// Channels in full runs of [`LANES`] of output pixels `ox..ox + P` (all interior: see
/// [`interior`]) of row `oy` of sample `b`: P x LANES accumulators, each weight run loaded
/// once for the P pixels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<const P: usize>(
    x: &[f32],
    w: &[f32],
    g: &Geometry,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Option<Activation>,
    b: usize,
    oy: usize,
    ox: usize,
    y_row: &mut [f32],
) {
    let c = g.c;
    // The checks once, outside the loops: `ox..ox + P` are interior columns, so every tap
    // `ix = (ox + p) * stride + q * dilation - padding` is below `w`; rows outside the
    // image are skipped; each run below has `c0 + LANES <= c`.
    let (lo, hi) = interior(g);
    assert!(ox + P <= hi && ox >= lo && w.len() >= g.k * g.k * c && x.len() >= (b + 1) * g.h * g.w * c);
    let mut c0 = 0;
    while c0 + LANES <= c {
        let init: [f32; LANES] = match bias {
            Some(bias) => bias[c0..c0 + LANES].try_into().expect("invariant: a run is LANES long"),
            None => [0.0; LANES],
        };
        let mut acc = [init; P];
        for r in 0..g.k {
            let iy = (oy * g.stride + r * g.dilation).wrapping_sub(g.padding);
            if iy >= g.h {
                continue;
            }
            // SAFETY: asserted above: columns ox..ox + P are interior and `iy < h`, so every tap
            // read is inside sample b of `x` (`c0 + LANES <= c`); every weight run ends by
            // `k * k * c <= w.len()`; `read_unaligned` needs no alignment.
            unsafe {
                let first = x.as_ptr().add(((b * g.h + iy) * g.w + ox * g.stride - g.padding) * c + c0);
                for q in 0..g.k {
                    let ws = w.as_ptr().add((r * g.k + q) * c + c0).cast::<[f32; LANES]>().read_unaligned();
                    let tap = first.add(q * g.dilation * c);
                    for (p, a) in acc.iter_mut().enumerate() {
                        let xs = tap.add(p * g.stride * c).cast::<[f32; LANES]>().read_unaligned();
                        for l in 0..LANES {
                            a[l] += xs[l] * ws[l];
                        }
                    }
                }
            }
        }
        for (p, a) in acc.iter_mut().enumerate() {
            let at = (ox + p) * c + c0;
            if let Some(res) = residual {
                for (v, rv) in a.iter_mut().zip(&res[at..at + LANES]) {
                    *v += rv;
                }
            }
            // The activation in registers, then one store.
            activate(act, a);
            y_row[at..at + LANES].copy_from_slice(a);
        }
        c0 += LANES;
    }
}

/// Channels a vectorised run covers.
const LANES: usize = 16;

/// Channels `c0..c0 + len` of output pixel (`oy`, `ox`) of sample `b`: with `L == LANES` in fixed-size
/// arrays (`len == L`), with `L == 1` through slices of any `len` below [`LANES`] (a stack
/// buffer either way: nothing is allocated per call).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn run<const L: usize>(
    x: &[f32],
    w: &[f32],
    g: &Geometry,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Option<Activation>,
    b: usize,
    oy: usize,
    ox: usize,
    c0: usize,
    len: usize,
    y_row: &mut [f32],
) {
    let c = g.c;
    {
        let mut acc = [0.0f32; LANES];
        let acc = &mut acc[..len];
        if let Some(bias) = bias {
            acc.copy_from_slice(&bias[c0..c0 + len]);
        }
        for r in 0..g.k {
            let iy = (oy * g.stride + r * g.dilation).wrapping_sub(g.padding);
            if iy >= g.h {
                continue;
            }
            for q in 0..g.k {
                let ix = (ox * g.stride + q * g.dilation).wrapping_sub(g.padding);
                if ix >= g.w {
                    continue;
                }
                let at = ((b * g.h + iy) * g.w + ix) * c + c0;
                let wat = (r * g.k + q) * c + c0;
                if L > 1 {
                    // Fixed-size runs: one register each, no bounds checks in the loop.
                    let xs: &[f32; L] = x[at..at + L].try_into().expect("invariant: a run is L long");
                    let ws: &[f32; L] = w[wat..wat + L].try_into().expect("invariant: a run is L long");
                    let a: &mut [f32; L] = (&mut acc[..L]).try_into().expect("invariant: a run is L long");
                    for l in 0..L {
                        a[l] += xs[l] * ws[l];
                    }
                } else {
                    for ((a, xv), wv) in acc.iter_mut().zip(&x[at..at + len]).zip(&w[wat..wat + len]) {
                        *a += xv * wv;
                    }
                }
            }
        }
        let at = ox * c + c0;
        if let Some(res) = residual {
            for (a, rv) in acc.iter_mut().zip(&res[at..at + len]) {
                *a += rv;
            }
        }
        activate(act, acc);
        y_row[at..at + len].copy_from_slice(acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{conv2d_fused, Conv2dParams};
    use ndarray::Array4;

    /// Every kernel size, stride, padding and dilation the families use (and odd channel
    /// counts around the chunk), on every ISA here, against the reference convolution.
    #[test]
    fn depthwise_matches_the_reference_on_every_isa() {
        for (c, k, stride, padding, dilation) in [
            (48, 3, 1, 1, 1),
            (32, 3, 2, 1, 1),
            (20, 3, 1, 3, 1),
            (16, 7, 1, 3, 2),
            (72, 5, 2, 2, 1),
            (24, 7, 1, 3, 1),
            (130, 3, 2, 1, 1),
            (8, 3, 1, 2, 2),
            (3, 5, 1, 0, 1),
        ] {
            let (n, h, wd) = (2, 9, if c == 48 { 27 } else { 11 });
            let x = Array4::from_shape_fn((n, c, h, wd), |(b, ch, i, j)| ((b * 7 + ch * 13 + i * 5 + j * 3) % 17) as f32 / 8.0 - 1.0);
            let weight: Vec<f32> = (0..c * k * k).map(|i| ((i * 11) % 23) as f32 / 11.0 - 1.0).collect();
            let bias: Vec<f32> = (0..c).map(|i| i as f32 / 10.0 - 0.3).collect();
            let p = Conv2dParams { stride, padding, dilation, groups: c };
            let act = Some(Activation::Relu6);
            let want = conv2d_fused(x.view(), &weight, c, k, Some(&bias), p, None, act);
            let spec = ConvSpec { params: p, act, ..ConvSpec::new([c, h, wd], c, k) };
            assert!(eligible(&spec));
            let packed = pack(&weight, &spec);
            let nhwc: Vec<f32> = x.view().permuted_axes([0, 2, 3, 1]).iter().copied().collect();
            let (oh, ow) = (p.out(h, k), p.out(wd, k));
            // With a residual too (where the output keeps the input's shape).
            let residual = (oh, ow) == (h, wd);
            let want_res = residual.then(|| conv2d_fused(x.view(), &weight, c, k, Some(&bias), p, Some(x.view()), act));
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; n * oh * ow * c];
                conv(isa, &nhwc, n, &spec, &packed, Epilogue { bias: Some(&bias), residual: None, act }, &mut y);
                for (b, ch, i, j) in indices(n, c, oh, ow) {
                    let (got, exp) = (y[((b * oh + i) * ow + j) * c + ch], want[[b, ch, i, j]]);
                    assert!((got - exp).abs() <= 1e-5, "c={c} k={k} s={stride} ({isa}) [{b},{ch},{i},{j}]: {got} vs {exp}");
                }
                if let Some(want) = &want_res {
                    conv(isa, &nhwc, n, &spec, &packed, Epilogue { bias: Some(&bias), residual: Some(&nhwc), act }, &mut y);
                    for (b, ch, i, j) in indices(n, c, oh, ow) {
                        let (got, exp) = (y[((b * oh + i) * ow + j) * c + ch], want[[b, ch, i, j]]);
                        assert!((got - exp).abs() <= 1e-5, "residual c={c} k={k} ({isa}) [{b},{ch},{i},{j}]: {got} vs {exp}");
                    }
                }
            }
        }
    }

    fn indices(n: usize, c: usize, h: usize, w: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        (0..n).flat_map(move |b| (0..c).flat_map(move |ch| (0..h).flat_map(move |i| (0..w).map(move |j| (b, ch, i, j)))))
    }
}
