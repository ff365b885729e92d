//! Winograd F(m x m, 3x3) for 3x3 stride-1 convolutions on NHWC activations, m = 2 or 4:
//! 2.25x or 4x fewer multiplications than the direct convolution. F(2x2) rounds like the
//! direct convolution; F(4x4)'s rounding errors are some ten times larger, still well inside
//! the parity target on every fixture.
//!
//! Each m x m block of outputs (a tile) needs an a x a block of input, a = m + 2. Per tile
//! and channel the input block `d` becomes `V = Bt d B` (a*a values), the weights `g` of each
//! (out, in) channel pair become `U = G g Gt` at load, and the a*a products
//! `M[xi] = V[xi] . U[xi]` summed over input channels are independent matrix products, run
//! by the direct convolution's micro-kernels as one 1x1 convolution with a*a groups
//! ([tiles, a*a * C] -> [tiles, a*a * O]). The output block is `At M A`, stored with the
//! epilogue. Transforms run over 16 channels at a time, split over the pool's threads.

use super::direct::{self, PackedConv};
use super::microkernel::MR;
use super::pool::{self, SharedMut};
use super::{ConvSpec, Isa};
use crate::kernels::{Activation, Epilogue};

/// Whether `spec` is a 3x3 stride-1 convolution wide enough to gain from Winograd.
pub fn eligible(spec: &ConvSpec) -> bool {
    let p = spec.params;
    spec.kernel == 3 && p.stride == 1 && p.dilation == 1 && p.groups == 1 && spec.input[0] >= 64 && spec.out_channels >= 64
}

/// The output tile (m) the compiler picks for an [`eligible`] `spec`: 4, unless the weights
/// it transforms (4x their size) would no longer stream from the caches, or the image is so
/// small that most of a 4x4 tile would be padding.
pub fn tile_for(spec: &ConvSpec) -> usize {
    let (oh, ow) = (spec.params.out(spec.input[1], 3), spec.params.out(spec.input[2], 3));
    if spec.input[0] * spec.out_channels <= MAX_F4_WEIGHTS && oh.min(ow) >= 8 {
        4
    } else {
        2
    }
}

/// Input x output channels up to which F(4x4) is chosen.
const MAX_F4_WEIGHTS: usize = 256 * 256;

/// Tiles a sample: (rows, columns), for output tile `m`.
fn tiles(spec: &ConvSpec, m: usize) -> (usize, usize) {
    let [_, h, w] = spec.input;
    (spec.params.out(h, 3).div_ceil(m), spec.params.out(w, 3).div_ceil(m))
}

/// The products as a grouped 1x1 convolution over `count` tiles, for `xis` = a*a.
fn products(spec: &ConvSpec, xis: usize, count: usize) -> ConvSpec {
    ConvSpec::new([xis * spec.input[0], count, 1], xis * spec.out_channels, 1).groups(xis)
}

/// Scratch floats for a batch of `n` with output tile `m`: the transformed input and the
/// products, and the zeros the direct convolution asks for.
pub fn scratch_len(spec: &ConvSpec, m: usize, n: usize) -> usize {
    let (th, tw) = tiles(spec, m);
    let count = n * th * tw;
    let xis = (m + 2) * (m + 2);
    count * xis * (spec.input[0] + spec.out_channels) + direct::scratch_len(&products(spec, xis, count))
}

/// `G`: the weight transform, a x 3, for m = 2 and m = 4.
const G2: [[f32; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
const G4: [[f32; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `weight` [O, C, 3, 3] -> the a*a transformed matrices for output tile `m`, packed for the
/// products.
pub fn pack(weight: &[f32], spec: &ConvSpec, m: usize) -> PackedConv {
    let (c, o) = (spec.input[0], spec.out_channels);
    let a = m + 2;
    let g_rows: &[[f32; 3]] = if m == 4 { &G4 } else { &G2 };
    // u[xi][oc][ic]: group xi of the products' weight [a*a * O, C, 1, 1]. Computed in f64,
    // so that only the final value is rounded.
    let mut u = vec![0f32; a * a * o * c];
    for oc in 0..o {
        for ic in 0..c {
            let g = &weight[(oc * c + ic) * 9..(oc * c + ic + 1) * 9];
            // G g: a x 3, then (G g) Gt: a x a.
            let mut gg = [[0f64; 3]; 6];
            for (i, row) in gg.iter_mut().enumerate().take(a) {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|k| f64::from(g_rows[i][k]) * f64::from(g[k * 3 + j])).sum();
                }
            }
            for i in 0..a {
                for j in 0..a {
                    let v: f64 = (0..3).map(|k| gg[i][k] * f64::from(g_rows[j][k])).sum();
                    u[((i * a + j) * o + oc) * c + ic] = v as f32;
                }
            }
        }
    }
    PackedConv::new(&u, &products(spec, a * a, 1))
}

/// `y = act(conv(x) + bias + residual)` for an [`eligible`] `spec` with output tile `m`,
/// `x` [N, H, W, C] and `y` [N, OH, OW, O]; `w` from [`pack`], `scratch` at least
/// [`scratch_len`] for `n`; transforms and products run on `isa`.
///
/// # Panics
/// If the CPU does not support `isa`.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    isa: Isa,
    x: &[f32],
    n: usize,
    spec: &ConvSpec,
    m: usize,
    w: &PackedConv,
    epi: Epilogue<'_>,
    scratch: &mut [f32],
    y: &mut [f32],
) {
    assert!(isa.supported(), "the {isa} kernels need a CPU that supports them");
    if m == 4 {
        run::<6, 36, 4>(isa, x, n, spec, w, epi, scratch, y);
    } else {
        run::<4, 16, 2>(isa, x, n, spec, w, epi, scratch, y);
    }
}

/// Transformed weights up to this size take the chunked path of [`run`].
const CHUNKED_MAX_WEIGHTS: usize = 2 << 20;
/// Bytes of transformed tiles (input and products) a thread keeps in L2 on that path.
const CHUNK_BYTES: usize = 384 << 10;

/// [`conv`] for tile `M` (A = M + 2, AA = A * A). Layers whose transformed weights are small
/// run chunked: each thread takes its share of the tiles through all three phases, a few
/// tiles at a time, so the transformed values stay in its L2 and the layer costs one
/// fork-join. Otherwise (large weights, which should be read once for all tiles) each
/// phase runs over all tiles, split over the threads.
#[allow(clippy::too_many_arguments)]
fn run<const A: usize, const AA: usize, const M: usize>(
    isa: Isa,
    x: &[f32],
    n: usize,
    spec: &ConvSpec,
    w: &PackedConv,
    epi: Epilogue<'_>,
    scratch: &mut [f32],
    y: &mut [f32],
) {
    let (c, o) = (spec.input[0], spec.out_channels);
    let (th, tw) = tiles(spec, M);
    let count = n * th * tw;
    let none = Epilogue::default();
    let pool = pool::global();
    // A chunk: a multiple of the micro-kernel's rows.
    let chunk = (CHUNK_BYTES / (4 * AA * (c + o))).max(1).div_ceil(MR) * MR;
    let per_thread = chunk * AA * (c + o) + AA * c;
    let threads = pool.threads().min(count.div_ceil(chunk));
    if AA * c * o * 4 <= CHUNKED_MAX_WEIGHTS && threads * per_thread <= scratch.len() {
        let (base, out) = (SharedMut::new(scratch.as_mut_ptr()), SharedMut::new(y.as_mut_ptr()));
        let per = count.div_ceil(threads);
        let job = |t: usize| {
            // SAFETY: task t alone uses region t of the scratch (checked to fit above).
            let region = unsafe { std::slice::from_raw_parts_mut(base.get().add(t * per_thread), per_thread) };
            let (v, rest) = region.split_at_mut(chunk * AA * c);
            let (mm, zeros) = rest.split_at_mut(chunk * AA * o);
            let (end, vp) = (((t + 1) * per).min(count), SharedMut::new(v.as_mut_ptr()));
            for first in (t * per..end).step_by(chunk) {
                let len = chunk.min(end - first);
                for slot in 0..len {
                    input_tile::<A, AA>(isa, x, spec, th, tw, first + slot, slot, vp);
                }
                direct::conv_serial(isa, v, 1, &products(spec, AA, len), w, none, zeros, mm);
                for slot in 0..len {
                    output_tile::<A, AA, M>(isa, mm, spec, epi, th, tw, first + slot, slot, out);
                }
            }
        };
        if threads <= 1 {
            job(0);
        } else {
            pool.run(&|t| {
                if t < threads {
                    job(t);
                }
            });
        }
        return;
    }
    let (v, rest) = scratch.split_at_mut(count * AA * c);
    let (mm, zeros) = rest.split_at_mut(count * AA * o);
    input_transform::<A, AA>(isa, x, n, spec, v);
    direct::conv(isa, v, 1, &products(spec, AA, count), w, none, zeros, mm);
    output_transform::<A, AA, M>(isa, mm, n, spec, epi, y);
}

/// Runs `f(tile)` for tiles `0..count`, split over the pool's threads.
fn for_tiles(count: usize, f: &(dyn Fn(usize) + Sync)) {
    let pool = pool::global();
    let threads = pool.threads().min(count);
    if threads <= 1 {
        (0..count).for_each(f);
        return;
    }
    let per = count.div_ceil(threads);
    pool.run(&|t| {
        for tile in (t * per).min(count)..((t + 1) * per).min(count) {
            f(tile);
        }
    });
}

/// Lanes a transform step handles at once.
const L: usize = 16;
type Lanes = [f32; L];

/// `Bt` applied to `d` (A values, A = 4 or 6), lane by lane.
#[inline(always)]
fn bt<const A: usize>(d: [&Lanes; A]) -> [Lanes; A] {
    let mut t = [[0f32; L]; A];
    for l in 0..L {
        if A == 4 {
            let (d0, d1, d2, d3) = (d[0][l], d[1][l], d[2][l], d[3][l]);
            t[0][l] = d0 - d2;
            t[1][l] = d1 + d2;
            t[2][l] = d2 - d1;
            t[3][l] = d1 - d3;
        } else {
            let (d0, d1, d2, d3, d4, d5) = (d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5 % A][l]);
            t[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
            t[1][l] = -4.0 * (d1 + d2) + d3 + d4;
            t[2][l] = 4.0 * (d1 - d2) - d3 + d4;
            t[3][l] = 2.0 * (d3 - d1) - d2 + d4;
            t[4][l] = 2.0 * (d1 - d3) - d2 + d4;
            t[5 % A][l] = 4.0 * d1 - 5.0 * d3 + d5;
        }
    }
    t
}

/// `At` applied to `v` (A values), lane by lane: M = A - 2 outputs.
#[inline(always)]
fn at<const A: usize, const M: usize>(v: [&Lanes; A]) -> [Lanes; M] {
    let mut o = [[0f32; L]; M];
    for l in 0..L {
        if A == 4 {
            let (m0, m1, m2, m3) = (v[0][l], v[1][l], v[2][l], v[3][l]);
            o[0][l] = m0 + m1 + m2;
            o[1][l] = m1 - m2 - m3;
        } else {
            let (m0, m1, m2, m3, m4, m5) = (v[0][l], v[1][l], v[2][l], v[3][l], v[4][l], v[5 % A][l]);
            let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
            o[0][l] = m0 + s12 + s34;
            o[1][l] = d12 + 2.0 * d34;
            o[2 % M][l] = s12 + 4.0 * s34;
            o[3 % M][l] = d12 + 8.0 * d34 + m5;
        }
    }
    o
}

/// `V[tile][xi][c] = (Bt d B)[xi]` for every tile's A x A input block `d` (zero outside);
/// `AA` = A * A.
fn input_transform<const A: usize, const AA: usize>(isa: Isa, x: &[f32], n: usize, spec: &ConvSpec, v: &mut [f32]) {
    let (th, tw) = tiles(spec, A - 2);
    let out = SharedMut::new(v.as_mut_ptr());
    for_tiles(n * th * tw, &|t| input_tile::<A, AA>(isa, x, spec, th, tw, t, t, out));
}

multiversion! {
    /// [`input_transform`] of tile `t`.
    fn input_tile [const A: usize, const AA: usize] [A, AA]
        (x: &[f32], spec: &ConvSpec, th: usize, tw: usize, t: usize, slot: usize, out: SharedMut) => input_tile_body
}

#[inline(always)]
fn input_tile_body<const A: usize, const AA: usize>(
    x: &[f32],
    spec: &ConvSpec,
    th: usize,
    tw: usize,
    t: usize,
    slot: usize,
    out: SharedMut,
) {
    let [c, h, w] = spec.input;
    let m = A - 2;
    let pad = spec.params.padding as isize;
    let (b, ty, tx) = (t / (th * tw), t / tw % th, t % tw);
    // The input pixels of the block, or None in the padding.
    let mut src = [None; AA];
    for (k, s) in src.iter_mut().enumerate() {
        let (iy, ix) = ((m * ty + k / A) as isize - pad, (m * tx + k % A) as isize - pad);
        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
            *s = Some(((b * h + iy as usize) * w + ix as usize) * c);
        }
    }
    // SAFETY: tile t alone writes V[t].
    let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(slot * AA * c), AA * c) };
    for c0 in (0..c).step_by(L) {
        let lanes = (c - c0).min(L);
        let mut d = [[0f32; L]; AA];
        for (dk, s) in d.iter_mut().zip(&src) {
            if let Some(at) = s {
                copy_lanes(dk, &x[at + c0..], lanes);
            }
        }
        // Bt d: down each column; then (Bt d) B: along each row.
        let mut cols = [[[0f32; L]; A]; A];
        for (j, col) in cols.iter_mut().enumerate() {
            *col = bt::<A>(std::array::from_fn(|i| &d[i * A + j]));
        }
        for i in 0..A {
            let r = bt::<A>(std::array::from_fn(|j| &cols[j][i]));
            for (j, rj) in r.iter().enumerate() {
                store_lanes(&mut dst[(i * A + j) * c + c0..], rj, lanes);
            }
        }
    }
}

/// The first `lanes` floats of `src` into `dst` (a fixed-size copy when all 16 are).
#[inline(always)]
fn copy_lanes(dst: &mut Lanes, src: &[f32], lanes: usize) {
    if lanes == L {
        dst.copy_from_slice(&src[..L]);
    } else {
        dst[..lanes].copy_from_slice(&src[..lanes]);
    }
}

/// The first `lanes` floats of `src` into `dst`.
#[inline(always)]
fn store_lanes(dst: &mut [f32], src: &Lanes, lanes: usize) {
    if lanes == L {
        dst[..L].copy_from_slice(src);
    } else {
        dst[..lanes].copy_from_slice(&src[..lanes]);
    }
}

/// `y` = the epilogue of `At M A` for every tile, its outputs inside the image; `AA` = A * A,
/// `M` = A - 2.
fn output_transform<const A: usize, const AA: usize, const M: usize>(
    isa: Isa,
    mm: &[f32],
    n: usize,
    spec: &ConvSpec,
    epi: Epilogue<'_>,
    y: &mut [f32],
) {
    let (th, tw) = tiles(spec, M);
    let out = SharedMut::new(y.as_mut_ptr());
    for_tiles(n * th * tw, &|t| output_tile::<A, AA, M>(isa, mm, spec, epi, th, tw, t, t, out));
}

multiversion! {
    /// [`output_transform`] of tile `t`.
    fn output_tile [const A: usize, const AA: usize, const M: usize] [A, AA, M]
        (mm: &[f32], spec: &ConvSpec, epi: Epilogue<'_>, th: usize, tw: usize, t: usize, slot: usize, out: SharedMut) => output_tile_body
}

#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn output_tile_body<const A: usize, const AA: usize, const M: usize>(
    mm: &[f32],
    spec: &ConvSpec,
    epi: Epilogue<'_>,
    th: usize,
    tw: usize,
    t: usize,
    slot: usize,
    out: SharedMut,
) {
    let [_, h, w] = spec.input;
    let o = spec.out_channels;
    let (oh, ow) = (spec.params.out(h, 3), spec.params.out(w, 3));
    let (b, ty, tx) = (t / (th * tw), t / tw % th, t % tw);
    let src = &mm[slot * AA * o..(slot + 1) * AA * o];
    for c0 in (0..o).step_by(L) {
        let lanes = (o - c0).min(L);
        let mut v = [[0f32; L]; AA];
        for (xi, row) in v.iter_mut().enumerate() {
            copy_lanes(row, &src[xi * o + c0..], lanes);
        }
        // At M: down each column (M x A), then (At M) A: along each row (M x M).
        let mut cols = [[[0f32; L]; M]; A];
        for (j, col) in cols.iter_mut().enumerate() {
            *col = at::<A, M>(std::array::from_fn(|i| &v[i * A + j]));
        }
        for i in 0..M {
            let oy = M * ty + i;
            if oy >= oh {
                break;
            }
            let mut r = at::<A, M>(std::array::from_fn(|j| &cols[j][i]));
            for (j, rk) in r.iter_mut().enumerate() {
                let ox = M * tx + j;
                if ox >= ow {
                    break;
                }
                let at = ((b * oh + oy) * ow + ox) * o + c0;
                if let Some(bias) = epi.bias {
                    rk.iter_mut().zip(&bias[c0..c0 + lanes]).for_each(|(v, b)| *v += b);
                }
                if let Some(res) = epi.residual {
                    rk.iter_mut().zip(&res[at..at + lanes]).for_each(|(v, r)| *v += r);
                }
                match epi.act {
                    Some(Activation::Relu) => rk.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v }),
                    Some(act) => rk.iter_mut().for_each(|v| *v = act.apply(*v)),
                    None => {}
                }
                // SAFETY: tile t alone writes its outputs.
                store_lanes(unsafe { std::slice::from_raw_parts_mut(out.get().add(at), lanes) }, rk, lanes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::nhwc::{to_nchw, to_nhwc};
    use crate::kernels::tests::seq;
    use crate::kernels::Conv2dParams;
    use ndarray::Array4;

    /// Both tile sizes against the plain NCHW kernel (then residual and each activation),
    /// transforms and products on every ISA the CPU has: odd sizes leave partial tiles, padding 0 and 2
    /// as well as 1, a batch of 2, channel counts off the 16 lanes.
    #[test]
    fn matches_the_plain_kernel_on_every_isa() {
        for isa in Isa::available() {
            check(isa);
        }
    }

    fn check(isa: Isa) {
        // The last two have tiles enough for several chunks on each of 2 threads.
        let cases = [
            (2, 64, 9, 7, 64, 1),
            (1, 80, 6, 6, 72, 0),
            (1, 64, 5, 8, 130, 2),
            (1, 96, 7, 7, 64, 1),
            (1, 64, 14, 13, 64, 1),
            (1, 64, 30, 30, 64, 1),
            (2, 64, 19, 21, 80, 1),
        ];
        for (i, (m, (n, c, h, w, o, pd))) in [2u8, 4].into_iter().flat_map(|m| cases.map(|case| (m, case))).enumerate() {
            // Every activation through the epilogue of the output transform.
            let act = Activation::ALL[i % Activation::ALL.len()];
            let x = Array4::from_shape_vec((n, c, h, w), seq(n * c * h * w, 1)).unwrap();
            let wt = seq(o * c * 9, 2);
            let bias = seq(o, 3);
            let p = Conv2dParams { stride: 1, padding: pd, dilation: 1, groups: 1 };
            let plain = crate::kernels::conv2d(x.view(), &wt, o, 3, Some(&bias), p);
            let res = Array4::from_shape_vec(plain.dim(), seq(plain.len(), 4)).unwrap();
            let want = (&plain + &res).mapv(|v| act.apply(v));
            let (_, _, oh, ow) = plain.dim();
            let spec = ConvSpec::new([c, h, w], o, 3).padding(pd).then(act).winograd(m);
            assert!(eligible(&spec));
            let m = usize::from(m);
            let packed = pack(&wt, &spec, m);
            let mut xn = vec![0f32; x.len()];
            to_nhwc(x.as_slice().unwrap(), [n, c, h, w], &mut xn);
            let mut rn = vec![0f32; res.len()];
            to_nhwc(res.as_slice().unwrap(), [n, o, oh, ow], &mut rn);
            let mut scratch = vec![f32::NAN; scratch_len(&spec, m, n)];
            let mut yn = vec![0f32; plain.len()];
            conv(isa, &xn, n, &spec, m, &packed, Epilogue { bias: Some(&bias), residual: Some(&rn), act: spec.act }, &mut scratch, &mut yn);
            let mut y = vec![0f32; plain.len()];
            to_nchw(&yn, [n, o, oh, ow], &mut y);
            // The parity target's measure: errors against the output's scale (F(4x4)'s
            // transforms round some ten times more than the direct sum, so a value near zero
            // among values near 30 is not within 1e-4 of itself).
            // The scratch starts as NaN: a value read before it is written shows up here.
            assert!(y.iter().all(|v| v.is_finite()), "{isa} F({m}x{m}): non-finite output");
            assert_eq!(y.len(), want.len());
            let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
            let err = y.iter().zip(want.iter()).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= 1e-4 * scale, "{isa} F({m}x{m}) {n}x{c}x{h}x{w} -> {o}: max error {err} at scale {scale}");
            assert!(err <= 1e-5 * scale || m == 4, "{isa} F(2x2) rounds like the direct sum: {err} at scale {scale}");
        }
    }
}
