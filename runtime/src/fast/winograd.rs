//! Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions: the weights become 16 matrices
//! `U_e` at load, each sample's input 16 matrices `V_e` (one 4x4 transform a 2x2 output
//! tile and channel), the 16 products `M_e = U_e V_e` run on the fast GEMM, and the output
//! transform adds the bias and residual and applies the activation. 2.25x fewer multiplies
//! than direct 3x3; the transforms use only additions and halves, so results stay within
//! the parity tolerance. Opt-in: see [`enabled`].

use super::gemm::{gemm, pack_a, BSource, Epi, MR};
use super::pool::SharedMut;
use crate::kernels::Activation;
use crate::steps::ConvSpec;

/// Whether Winograd is on: only with `RESNETC_WINOGRAD=1`. On this project's 2-core Zen 4
/// machine it is not yet faster than the im2col GEMM (the transforms cost what the fewer
/// multiplies save; see BENCHMARKS.md), so it is opt-in.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RESNETC_WINOGRAD").is_some_and(|v| v == "1"))
}

/// Whether a convolution is worth running as Winograd: 3x3, stride 1, no dilation, no
/// groups, and enough output tiles for the GEMMs to stay compute-bound.
pub fn eligible(spec: &ConvSpec) -> bool {
    let p = spec.params;
    let [_, h, w] = spec.input;
    let (oh, ow) = (h + 2 * p.padding - 2, w + 2 * p.padding - 2);
    spec.kernel == 3 && p.stride == 1 && p.dilation == 1 && p.groups == 1 && oh.div_ceil(2) * ow.div_ceil(2) >= 64
}

/// Output tiles of a sample.
fn tiles(spec: &ConvSpec) -> (usize, usize, usize, usize) {
    let p = spec.params.padding;
    let [_, h, w] = spec.input;
    let (oh, ow) = (h + 2 * p - 2, w + 2 * p - 2);
    (oh, ow, oh.div_ceil(2), ow.div_ceil(2))
}

/// Scratch floats: the 16 input matrices and the 16 products of one sample.
pub fn scratch_len(spec: &ConvSpec) -> usize {
    let (_, _, th, tw) = tiles(spec);
    16 * (spec.input[0] + spec.out_channels) * th * tw
}

/// The 16 transformed weight matrices, each packed for the GEMM.
pub fn pack_weights(weight: &[f32], spec: &ConvSpec) -> Vec<f32> {
    let (o, c) = (spec.out_channels, spec.input[0]);
    let mut u = vec![0f32; 16 * o * c];
    for oc in 0..o {
        for ic in 0..c {
            let g = &weight[(oc * c + ic) * 9..(oc * c + ic) * 9 + 9];
            // Gg: 4x3, then (Gg) G^T: 4x4. G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
            let mut gg = [[0f32; 3]; 4];
            for j in 0..3 {
                let (a, b, cc) = (g[j], g[3 + j], g[6 + j]);
                gg[0][j] = a;
                gg[1][j] = 0.5 * (a + b + cc);
                gg[2][j] = 0.5 * (a - b + cc);
                gg[3][j] = cc;
            }
            for (i, row) in gg.iter().enumerate() {
                let (a, b, cc) = (row[0], row[1], row[2]);
                let vals = [a, 0.5 * (a + b + cc), 0.5 * (a - b + cc), cc];
                for (j, v) in vals.into_iter().enumerate() {
                    u[((i * 4 + j) * o + oc) * c + ic] = v;
                }
            }
        }
    }
    (0..16).flat_map(|e| pack_a(&u[e * o * c..(e + 1) * o * c], o, c)).collect()
}

/// `y = act(conv3x3(x) + bias + residual)` for a batch, `u` from [`pack_weights`].
#[allow(clippy::too_many_arguments)]
pub fn conv(
    x: &[f32],
    n: usize,
    spec: &ConvSpec,
    u: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Option<Activation>,
    scratch: &mut [f32],
    pack: &mut [f32],
    y: &mut [f32],
) {
    let [c, h, w] = spec.input;
    let o = spec.out_channels;
    let pad = spec.params.padding as isize;
    let (oh, ow, th, tw) = tiles(spec);
    let t = th * tw;
    let (v, m) = scratch[..16 * (c + o) * t].split_at_mut(16 * c * t);
    let panel = o.div_ceil(MR) * c * MR;
    let pool = super::pool::global();
    let threads = pool.threads();
    for b in 0..n {
        let xs = &x[b * c * h * w..(b + 1) * c * h * w];
        // Input transform, channels split over the threads: V[e][ci][tile] = (B^T d B)[e].
        let vp = SharedMut::new(v.as_mut_ptr());
        pool.run(&|task| {
            let per = c.div_ceil(threads);
            for ci in (task * per).min(c)..((task + 1) * per).min(c) {
                // SAFETY: channel ci's 16 rows of V are written by this task alone.
                let vrow = |e: usize| unsafe { std::slice::from_raw_parts_mut(vp.get().add((e * c + ci) * t), t) };
                let mut rows: [&mut [f32]; 16] = std::array::from_fn(vrow);
                input_transform(&xs[ci * h * w..(ci + 1) * h * w], h, w, pad, th, tw, &mut rows);
            }
        });
        // The 16 products.
        for e in 0..16 {
            let none = Epi { bias: None, residual: None, act: None };
            gemm(
                o,
                c,
                t,
                &u[e * panel..(e + 1) * panel],
                BSource::Dense(&v[e * c * t..(e + 1) * c * t]),
                &mut m[e * o * t..(e + 1) * o * t],
                none,
                pack,
            );
        }
        // Output transform with the epilogue, output channels split over the threads.
        let yp = SharedMut::new(y[b * o * oh * ow..].as_mut_ptr());
        let rs = residual.map(|r| &r[b * o * oh * ow..(b + 1) * o * oh * ow]);
        let m = &*m;
        pool.run(&|task| {
            let per = o.div_ceil(threads);
            for oc in (task * per).min(o)..((task + 1) * per).min(o) {
                // SAFETY: output channel oc's plane is written by this task alone.
                let plane = unsafe { std::slice::from_raw_parts_mut(yp.get().add(oc * oh * ow), oh * ow) };
                let res = rs.map(|r| &r[oc * oh * ow..(oc + 1) * oh * ow]);
                let mrow: [&[f32]; 16] = std::array::from_fn(|e| &m[(e * o + oc) * t..(e * o + oc + 1) * t]);
                output_transform(&mrow, bias.map_or(0.0, |bv| bv[oc]), res, act, oh, ow, th, tw, plane);
            }
        });
    }
}

/// One channel: the 16 transformed rows (`rows[e][tile]`), tiles innermost.
#[allow(clippy::too_many_arguments)]
fn input_transform(plane: &[f32], h: usize, w: usize, pad: isize, th: usize, tw: usize, rows: &mut [&mut [f32]; 16]) {
    // A zero-padded copy of the four input rows a tile row reads, 2 * tw + 2 wide.
    let width = 2 * tw + 2;
    let mut buf = [[0f32; 1024]; 4];
    let fits = width <= 1024;
    for ty in 0..th {
        let y0 = 2 * ty as isize - pad;
        if fits {
            for (i, row) in buf.iter_mut().enumerate() {
                let iy = y0 + i as isize;
                let r = &mut row[..width];
                r.fill(0.0);
                if iy >= 0 && iy < h as isize {
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    // Column j of the padded row is input column j - pad.
                    let lo = pad.max(0) as usize;
                    let n = w.min(width.saturating_sub(lo));
                    r[lo..lo + n].copy_from_slice(&src[..n]);
                }
            }
            for tx in 0..tw {
                let c0 = 2 * tx;
                let mut dd = [[0f32; 4]; 4];
                for i in 0..4 {
                    dd[i] = [buf[i][c0], buf[i][c0 + 1], buf[i][c0 + 2], buf[i][c0 + 3]];
                }
                store(rows, ty * tw + tx, &dd);
            }
        } else {
            for tx in 0..tw {
                let x0 = 2 * tx as isize - pad;
                let mut dd = [[0f32; 4]; 4];
                for (i, row) in dd.iter_mut().enumerate() {
                    let iy = y0 + i as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for (j, val) in row.iter_mut().enumerate() {
                        let ix = x0 + j as isize;
                        if ix >= 0 && ix < w as isize {
                            *val = plane[iy as usize * w + ix as usize];
                        }
                    }
                }
                store(rows, ty * tw + tx, &dd);
            }
        }
    }
}

/// `B^T d B` of one 4x4 patch into column `tile` of the 16 rows.
#[inline(always)]
fn store(rows: &mut [&mut [f32]; 16], tile: usize, d: &[[f32; 4]; 4]) {
    let mut tt = [[0f32; 4]; 4];
    for j in 0..4 {
        tt[0][j] = d[0][j] - d[2][j];
        tt[1][j] = d[1][j] + d[2][j];
        tt[2][j] = d[2][j] - d[1][j];
        tt[3][j] = d[1][j] - d[3][j];
    }
    for (i, r) in tt.iter().enumerate() {
        let vals = [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]];
        for (j, val) in vals.into_iter().enumerate() {
            rows[i * 4 + j][tile] = val;
        }
    }
}

/// One output channel: `A^T m A` of every tile, plus bias and residual, then `act`.
#[allow(clippy::too_many_arguments)]
fn output_transform(
    m: &[&[f32]; 16],
    bias: f32,
    residual: Option<&[f32]>,
    act: Option<Activation>,
    oh: usize,
    ow: usize,
    th: usize,
    tw: usize,
    plane: &mut [f32],
) {
    for ty in 0..th {
        for tx in 0..tw {
            let tile = ty * tw + tx;
            let mut s = [[0f32; 4]; 2];
            for j in 0..4 {
                s[0][j] = m[j][tile] + m[4 + j][tile] + m[8 + j][tile];
                s[1][j] = m[4 + j][tile] - m[8 + j][tile] - m[12 + j][tile];
            }
            for (i, r) in s.iter().enumerate() {
                let out = [r[0] + r[1] + r[2], r[1] - r[2] - r[3]];
                for (j, val) in out.into_iter().enumerate() {
                    let (yy, xx) = (2 * ty + i, 2 * tx + j);
                    if yy < oh && xx < ow {
                        let at = yy * ow + xx;
                        let mut val = val + bias;
                        if let Some(r) = residual {
                            val += r[at];
                        }
                        if let Some(a) = act {
                            val = a.apply(val);
                        }
                        plane[at] = val;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{assert_close, seq};
    use crate::kernels::Conv2dParams;
    use ndarray::Array4;

    #[test]
    fn matches_the_plain_kernel() {
        for (n, c, h, w, o, pad) in [(2, 5, 17, 18, 7, 1), (1, 8, 16, 16, 12, 0), (1, 3, 19, 21, 6, 2)] {
            let x = Array4::from_shape_vec((n, c, h, w), seq(n * c * h * w, 1)).unwrap();
            let wt = seq(o * c * 9, 2);
            let bias = seq(o, 3);
            let p = Conv2dParams { stride: 1, padding: pad, dilation: 1, groups: 1 };
            let plain = crate::kernels::conv2d(x.view(), &wt, o, 3, Some(&bias), p);
            let res = Array4::from_shape_vec(plain.dim(), seq(plain.len(), 4)).unwrap();
            let want = (&plain + &res).mapv(|v| v.max(0.0));
            let spec = ConvSpec { input: [c, h, w], out_channels: o, kernel: 3, params: p, act: None };
            let u = pack_weights(&wt, &spec);
            let mut scratch = vec![0f32; scratch_len(&spec)];
            let mut pack = vec![0f32; 2 * super::super::pack_buffer_len()];
            let mut y = vec![0f32; plain.len()];
            conv(
                x.as_slice().unwrap(),
                n,
                &spec,
                &u,
                Some(&bias),
                Some(res.as_slice().unwrap()),
                Some(Activation::Relu),
                &mut scratch,
                &mut pack,
                &mut y,
            );
            assert_close(&Array4::from_shape_vec(plain.dim(), y).unwrap(), &want);
        }
    }
}
