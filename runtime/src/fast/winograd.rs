//! Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions on NHWC activations: 2.25x fewer
//! multiplications than the direct convolution, with rounding errors of the same order
//! (every fixture keeps the parity target).
//!
//! Each 2x2 block of outputs (a tile) needs a 4x4 block of input. Per tile and channel the
//! input block `d` becomes `V = Bt d B` (16 values), the weights `g` of each (out, in)
//! channel pair become `U = G g Gt` at load, and the 16 products `M[xi] = V[xi] . U[xi]`
//! summed over input channels are 16 independent matrix products, run by the direct
//! convolution's micro-kernels as one 1x1 convolution with 16 groups ([tiles, 16 * C] ->
//! [tiles, 16 * O]). The output block is `At M A`, stored with the epilogue. Transforms run
//! over 16 channels at a time, split over the pool's threads.

use super::direct::{self, Epilogue, PackedConv};
use super::pool::{self, SharedMut};
use crate::kernels::{conv_out, Activation};
use crate::steps::ConvSpec;

/// Whether `spec` is a 3x3 stride-1 convolution wide enough to gain from Winograd.
pub fn eligible(spec: &ConvSpec) -> bool {
    let p = spec.params;
    spec.kernel == 3 && p.stride == 1 && p.dilation == 1 && p.groups == 1 && spec.input[0] >= 64 && spec.out_channels >= 64
}

/// Tiles a sample: (rows, columns).
fn tiles(spec: &ConvSpec) -> (usize, usize) {
    let [_, h, w] = spec.input;
    (conv_out(h, 3, spec.params).div_ceil(2), conv_out(w, 3, spec.params).div_ceil(2))
}

/// The products as a grouped 1x1 convolution over `count` tiles.
fn products(spec: &ConvSpec, count: usize) -> ConvSpec {
    ConvSpec::new([16 * spec.input[0], count, 1], 16 * spec.out_channels, 1, 1, 0, 1, 16)
}

/// Scratch floats for a batch of `n`: the transformed input and the products, and the
/// zeros the direct convolution asks for.
pub fn scratch_len(spec: &ConvSpec, n: usize) -> usize {
    let (th, tw) = tiles(spec);
    let count = n * th * tw;
    count * 16 * (spec.input[0] + spec.out_channels) + direct::scratch_len(&products(spec, count))
}

/// `weight` [O, C, 3, 3] -> the 16 transformed matrices, packed for the products.
pub fn pack(weight: &[f32], spec: &ConvSpec) -> PackedConv {
    let (c, o) = (spec.input[0], spec.out_channels);
    const G: [[f32; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
    // u[xi][oc][ic]: group xi of the products' weight [16 * O, C, 1, 1].
    let mut u = vec![0f32; 16 * o * c];
    for oc in 0..o {
        for ic in 0..c {
            let g = &weight[(oc * c + ic) * 9..(oc * c + ic + 1) * 9];
            // G g: 4x3, then (G g) Gt: 4x4.
            let mut gg = [[0f32; 3]; 4];
            for (i, row) in gg.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|k| G[i][k] * g[k * 3 + j]).sum();
                }
            }
            for i in 0..4 {
                for j in 0..4 {
                    let v: f32 = (0..3).map(|k| gg[i][k] * G[j][k]).sum();
                    u[((i * 4 + j) * o + oc) * c + ic] = v;
                }
            }
        }
    }
    PackedConv::new(&u, &products(spec, 1))
}

/// `y = act(conv(x) + bias + residual)` for an [`eligible`] `spec`, `x` [N, H, W, C] and `y`
/// [N, OH, OW, O]; `w` from [`pack`], `scratch` at least [`scratch_len`] for `n`.
pub fn conv(x: &[f32], n: usize, spec: &ConvSpec, w: &PackedConv, epi: Epilogue<'_>, scratch: &mut [f32], y: &mut [f32]) {
    let (c, o) = (spec.input[0], spec.out_channels);
    let (th, tw) = tiles(spec);
    let count = n * th * tw;
    let (v, rest) = scratch.split_at_mut(count * 16 * c);
    let (m, zeros) = rest.split_at_mut(count * 16 * o);
    input_transform(x, n, spec, v);
    let none = Epilogue { bias: None, residual: None, act: None };
    direct::conv(v, 1, &products(spec, count), w, none, zeros, m);
    output_transform(m, n, spec, epi, y);
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

/// `V[tile][xi][c] = (Bt d B)[xi]` for every tile's 4x4 input block `d` (zero outside).
fn input_transform(x: &[f32], n: usize, spec: &ConvSpec, v: &mut [f32]) {
    let [c, h, w] = spec.input;
    let (th, tw) = tiles(spec);
    let pad = spec.params.padding as isize;
    let out = SharedMut::new(v.as_mut_ptr());
    for_tiles(n * th * tw, &|t| {
        let (b, ty, tx) = (t / (th * tw), t / tw % th, t % tw);
        // The 16 input pixels of the block, or None in the padding.
        let mut src = [None; 16];
        for (k, s) in src.iter_mut().enumerate() {
            let (iy, ix) = ((2 * ty + k / 4) as isize - pad, (2 * tx + k % 4) as isize - pad);
            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                *s = Some(((b * h + iy as usize) * w + ix as usize) * c);
            }
        }
        // SAFETY: tile t alone writes V[t].
        let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(t * 16 * c), 16 * c) };
        for c0 in (0..c).step_by(L) {
            let lanes = (c - c0).min(L);
            let mut d = [[0f32; L]; 16];
            for (dk, s) in d.iter_mut().zip(&src) {
                if let Some(at) = s {
                    copy_lanes(dk, &x[at + c0..], lanes);
                }
            }
            // Bt d: rows.
            let mut t4 = [[0f32; L]; 16];
            for j in 0..4 {
                for l in 0..L {
                    let (d0, d1, d2, d3) = (d[j][l], d[4 + j][l], d[8 + j][l], d[12 + j][l]);
                    t4[j][l] = d0 - d2;
                    t4[4 + j][l] = d1 + d2;
                    t4[8 + j][l] = d2 - d1;
                    t4[12 + j][l] = d1 - d3;
                }
            }
            // (Bt d) B: columns.
            for i in 0..4 {
                let mut r = [[0f32; L]; 4];
                for l in 0..L {
                    let (t0, t1, t2, t3) = (t4[4 * i][l], t4[4 * i + 1][l], t4[4 * i + 2][l], t4[4 * i + 3][l]);
                    r[0][l] = t0 - t2;
                    r[1][l] = t1 + t2;
                    r[2][l] = t2 - t1;
                    r[3][l] = t1 - t3;
                }
                for (j, rj) in r.iter().enumerate() {
                    store_lanes(&mut dst[(4 * i + j) * c + c0..], rj, lanes);
                }
            }
        }
    });
}

/// The first `lanes` floats of `src` into `dst` (a fixed-size copy when all 16 are).
#[inline(always)]
fn copy_lanes(dst: &mut [f32; L], src: &[f32], lanes: usize) {
    if lanes == L {
        dst.copy_from_slice(&src[..L]);
    } else {
        dst[..lanes].copy_from_slice(&src[..lanes]);
    }
}

/// The first `lanes` floats of `src` into `dst`.
#[inline(always)]
fn store_lanes(dst: &mut [f32], src: &[f32; L], lanes: usize) {
    if lanes == L {
        dst[..L].copy_from_slice(src);
    } else {
        dst[..lanes].copy_from_slice(&src[..lanes]);
    }
}

/// `y` = the epilogue of `At M A` for every tile, its outputs inside the image.
fn output_transform(m: &[f32], n: usize, spec: &ConvSpec, epi: Epilogue<'_>, y: &mut [f32]) {
    let [_, h, w] = spec.input;
    let o = spec.out_channels;
    let (oh, ow) = (conv_out(h, 3, spec.params), conv_out(w, 3, spec.params));
    let (th, tw) = tiles(spec);
    let out = SharedMut::new(y.as_mut_ptr());
    for_tiles(n * th * tw, &|t| {
        let (b, ty, tx) = (t / (th * tw), t / tw % th, t % tw);
        let src = &m[t * 16 * o..(t + 1) * 16 * o];
        for c0 in (0..o).step_by(L) {
            let lanes = (o - c0).min(L);
            let mut mm = [[0f32; L]; 16];
            for (xi, row) in mm.iter_mut().enumerate() {
                copy_lanes(row, &src[xi * o + c0..], lanes);
            }
            // At M: 2x4, then (At M) A: 2x2.
            let mut a = [[0f32; L]; 8];
            for j in 0..4 {
                for l in 0..L {
                    let (m0, m1, m2, m3) = (mm[j][l], mm[4 + j][l], mm[8 + j][l], mm[12 + j][l]);
                    a[j][l] = m0 + m1 + m2;
                    a[4 + j][l] = m1 - m2 - m3;
                }
            }
            let mut r = [[0f32; L]; 4];
            for i in 0..2 {
                for l in 0..L {
                    let (a0, a1, a2, a3) = (a[4 * i][l], a[4 * i + 1][l], a[4 * i + 2][l], a[4 * i + 3][l]);
                    r[2 * i][l] = a0 + a1 + a2;
                    r[2 * i + 1][l] = a1 - a2 - a3;
                }
            }
            for (k, rk) in r.iter_mut().enumerate() {
                let (oy, ox) = (2 * ty + k / 2, 2 * tx + k % 2);
                if oy >= oh || ox >= ow {
                    continue;
                }
                let at = ((b * oh + oy) * ow + ox) * o + c0;
                if let Some(bias) = epi.bias {
                    rk.iter_mut().zip(&bias[c0..c0 + lanes]).for_each(|(v, b)| *v += b);
                }
                if let Some(res) = epi.residual {
                    rk.iter_mut().zip(&res[at..at + lanes]).for_each(|(v, r)| *v += r);
                }
                match epi.act {
                    Some(Activation::Relu) => rk.iter_mut().for_each(|v| *v = v.max(0.0)),
                    Some(act) => rk.iter_mut().for_each(|v| *v = act.apply(*v)),
                    None => {}
                }
                // SAFETY: tile t alone writes its outputs.
                store_lanes(unsafe { std::slice::from_raw_parts_mut(out.get().add(at), lanes) }, rk, lanes);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::nhwc::{to_nchw, to_nhwc};
    use crate::kernels::tests::{assert_close, seq};
    use crate::kernels::Conv2dParams;
    use ndarray::Array4;

    /// Against the plain NCHW kernel (then residual and relu): odd sizes leave partial
    /// tiles, padding 0 and 2 as well as 1, a batch of 2, channel counts off the 16 lanes.
    #[test]
    fn matches_the_plain_kernel() {
        for (n, c, h, w, o, pd) in [(2, 64, 9, 7, 64, 1), (1, 80, 6, 6, 72, 0), (1, 64, 5, 8, 130, 2), (1, 96, 7, 7, 64, 1)] {
            let x = Array4::from_shape_vec((n, c, h, w), seq(n * c * h * w, 1)).unwrap();
            let wt = seq(o * c * 9, 2);
            let bias = seq(o, 3);
            let p = Conv2dParams { stride: 1, padding: pd, dilation: 1, groups: 1 };
            let plain = crate::kernels::conv2d(x.view(), &wt, o, 3, Some(&bias), p);
            let res = Array4::from_shape_vec(plain.dim(), seq(plain.len(), 4)).unwrap();
            let want = (&plain + &res).mapv(|v| v.max(0.0));
            let (_, _, oh, ow) = plain.dim();
            let spec = ConvSpec::new([c, h, w], o, 3, 1, pd, 1, 1).then(Activation::Relu).winograd();
            assert!(eligible(&spec));
            let packed = pack(&wt, &spec);
            let mut xn = vec![0f32; x.len()];
            to_nhwc(x.as_slice().unwrap(), [n, c, h, w], &mut xn);
            let mut rn = vec![0f32; res.len()];
            to_nhwc(res.as_slice().unwrap(), [n, o, oh, ow], &mut rn);
            let mut scratch = vec![f32::NAN; scratch_len(&spec, n)];
            let mut yn = vec![0f32; plain.len()];
            conv(&xn, n, &spec, &packed, Epilogue { bias: Some(&bias), residual: Some(&rn), act: spec.act }, &mut scratch, &mut yn);
            let mut y = vec![0f32; plain.len()];
            to_nchw(&yn, [n, o, oh, ow], &mut y);
            assert_close(&Array4::from_shape_vec(plain.dim(), y).unwrap(), &want);
        }
    }
}
