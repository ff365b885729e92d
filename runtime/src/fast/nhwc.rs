//! The non-convolution steps of generated code on NHWC activations ([N, H, W, C]: a pixel's
//! channels contiguous), with PyTorch's semantics as in [`crate::kernels`], and the layout
//! changes at a model's edges.

use super::pool::{self, SharedMut};
use super::Isa;
use crate::kernels::PoolParams;

/// `x` [N, C, H, W] (`dims`) -> `y` [N, H, W, C].
pub fn to_nhwc(x: &[f32], dims: [usize; 4], y: &mut [f32]) {
    let [n, c, h, w] = dims;
    transpose(x, n, c, h * w, y);
}

/// `x` [N, H, W, C] -> `y` [N, C, H, W] (`dims`).
pub fn to_nchw(x: &[f32], dims: [usize; 4], y: &mut [f32]) {
    let [n, c, h, w] = dims;
    transpose(x, n, h * w, c, y);
}

/// Each of `n` [rows, cols] matrices of `x` transposed into `y`.
fn transpose(x: &[f32], n: usize, rows: usize, cols: usize, y: &mut [f32]) {
    let len = rows * cols;
    for (xs, ys) in x.chunks_exact(len).zip(y.chunks_exact_mut(len)).take(n) {
        for (j, out) in ys.chunks_exact_mut(rows).enumerate() {
            for (i, v) in out.iter_mut().enumerate() {
                *v = xs[i * cols + j];
            }
        }
    }
}

/// Calls `f(image, oy, out_row)` for every output row ([OW, C] floats) of an [N, OH, OW, C]
/// output, the rows split over the pool's threads when there are enough of them.
fn rows_parallel(y: &mut [f32], n: usize, oh: usize, row: usize, f: &(dyn Fn(usize, usize, &mut [f32]) + Sync)) {
    let rows = n * oh;
    let pool = pool::global();
    if pool.threads() == 1 || rows * row < 100_000 {
        for (r, out) in y.chunks_exact_mut(row).take(rows).enumerate() {
            f(r / oh, r % oh, out);
        }
        return;
    }
    let per = rows.div_ceil(pool.threads());
    let out = SharedMut::new(y.as_mut_ptr());
    pool.run(&|t| {
        for r in (t * per).min(rows)..((t + 1) * per).min(rows) {
            // SAFETY: task t alone writes rows [t * per, (t + 1) * per) of the output.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(r * row), row) };
            f(r / oh, r % oh, dst);
        }
    });
}

/// Max pooling on [N, H, W, C] (`dims` = [N, C, H, W]); padding never wins, NaN does.
/// Rows run on `isa`.
///
/// # Panics
/// If the CPU does not support `isa`.
pub fn max_pool(isa: Isa, x: &[f32], dims: [usize; 4], p: PoolParams, y: &mut [f32]) {
    assert!(isa.supported(), "the {isa} kernels need a CPU that supports them");
    let [n, c, h, w] = dims;
    let (oh, ow) = (p.out(h), p.out(w));
    rows_parallel(y, n, oh, ow * c, &|b, oy, out| max_pool_row(isa, x, dims, p, b, oy, out));
}

multiversion! {
    /// One output row of [`max_pool`].
    fn max_pool_row [] [] (x: &[f32], dims: [usize; 4], p: PoolParams, b: usize, oy: usize, out: &mut [f32]) => max_pool_row_body
}

/// The larger of `m` and `v`, NaN in `v` winning (and kept once in `m`): a select with no
/// branch, which vectorises.
#[inline(always)]
fn max_nan(m: f32, v: f32) -> f32 {
    if (v > m) | v.is_nan() {
        v
    } else {
        m
    }
}

/// Channels [`max_pool_row_body`] keeps in registers at a time.
const POOL_LANES: usize = 16;

/// One output row of [`max_pool`]: for each pixel and each run of [`POOL_LANES`] channels,
/// the maximum over the window in registers, stored once. (Filling the output with -inf and
/// folding each tap into it made every 256-bit load wait on narrower stores: on AVX2 three
/// times the plain SSE2 code's time.)
#[inline(always)]
fn max_pool_row_body(x: &[f32], dims: [usize; 4], p: PoolParams, b: usize, oy: usize, out: &mut [f32]) {
    let [_, c, h, w] = dims;
    let y0 = (oy * p.stride) as isize - p.padding as isize;
    let (ys, ye) = (y0.max(0) as usize, (y0 + p.kernel as isize).min(h as isize).max(0) as usize);
    for (ox, o) in out.chunks_exact_mut(c).enumerate() {
        let x0 = (ox * p.stride) as isize - p.padding as isize;
        let (xs, xe) = (x0.max(0) as usize, (x0 + p.kernel as isize).min(w as isize).max(0) as usize);
        let mut j = 0;
        while j < c {
            let lanes = (c - j).min(POOL_LANES);
            let mut acc = [f32::NEG_INFINITY; POOL_LANES];
            for iy in ys..ye.max(ys) {
                for ix in xs..xe.max(xs) {
                    let at = ((b * h + iy) * w + ix) * c + j;
                    if lanes == POOL_LANES {
                        let v: &[f32; POOL_LANES] = x[at..at + POOL_LANES].try_into().expect("invariant: 16 lanes");
                        acc = std::array::from_fn(|l| max_nan(acc[l], v[l]));
                    } else {
                        for (m, &v) in acc.iter_mut().zip(&x[at..at + lanes]) {
                            *m = max_nan(*m, v);
                        }
                    }
                }
            }
            o[j..j + lanes].copy_from_slice(&acc[..lanes]);
            j += lanes;
        }
    }
}

/// Average pooling on [N, H, W, C] (`dims` = [N, C, H, W]), divisors as PyTorch's.
pub fn avg_pool(x: &[f32], dims: [usize; 4], p: PoolParams, y: &mut [f32]) {
    let [n, c, h, w] = dims;
    let (oh, ow) = (p.out(h), p.out(w));
    let pad = p.padding as isize;
    rows_parallel(y, n, oh, ow * c, &|b, oy, out| {
        let y0 = (oy * p.stride) as isize - pad;
        let y1 = (y0 + p.kernel as isize).min(h as isize + pad);
        for (ox, o) in out.chunks_exact_mut(c).enumerate() {
            let x0 = (ox * p.stride) as isize - pad;
            let x1 = (x0 + p.kernel as isize).min(w as isize + pad);
            let padded_count = (y1 - y0) * (x1 - x0);
            let (ys, ye, xs, xe) = (y0.max(0), y1.min(h as isize), x0.max(0), x1.min(w as isize));
            o.fill(0.0);
            for iy in ys..ye {
                for ix in xs..xe {
                    let at = ((b * h + iy as usize) * w + ix as usize) * c;
                    for (s, &v) in o.iter_mut().zip(&x[at..at + c]) {
                        *s += v;
                    }
                }
            }
            let count = if p.count_include_pad { padded_count } else { (ye - ys) * (xe - xs) } as f32;
            o.iter_mut().for_each(|s| *s /= count);
        }
    });
}

/// [N, H, W, C] (`dims` = [N, C, H, W]) -> [N, C]: the mean of each channel.
/// NHWC `x` (`n` samples of `channels` a pixel) times `s` [n, channels] at every pixel.
pub fn scale_channels(x: &[f32], s: &[f32], n: usize, channels: usize, y: &mut [f32]) {
    let per = x.len() / n.max(1);
    for b in 0..n {
        let factors = &s[b * channels..(b + 1) * channels];
        let (xs, ys) = (&x[b * per..(b + 1) * per], &mut y[b * per..(b + 1) * per]);
        for (xp, yp) in xs.chunks_exact(channels).zip(ys.chunks_exact_mut(channels)) {
            for ((yv, xv), f) in yp.iter_mut().zip(xp).zip(factors) {
                *yv = xv * f;
            }
        }
    }
}

/// NHWC `x` times `s` [channels] at every pixel of every sample.
pub fn scale_channels_by(x: &[f32], s: &[f32], y: &mut [f32]) {
    for (xp, yp) in x.chunks_exact(s.len()).zip(y.chunks_exact_mut(s.len())) {
        for ((yv, xv), f) in yp.iter_mut().zip(xp).zip(s) {
            *yv = xv * f;
        }
    }
}

/// Layer normalisation over the `channels` of every NHWC pixel (mean and biased variance
/// in f32 with a second pass for the variance, as PyTorch's CPU kernel does in spirit).
pub fn layer_norm(x: &[f32], channels: usize, weight: &[f32], bias: &[f32], eps: f32, y: &mut [f32]) {
    let c = channels as f32;
    for (xp, yp) in x.chunks_exact(channels).zip(y.chunks_exact_mut(channels)) {
        let mean = xp.iter().sum::<f32>() / c;
        let var = xp.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c;
        let inv = 1.0 / (var + eps).sqrt();
        for (((yv, xv), w), b) in yp.iter_mut().zip(xp).zip(weight).zip(bias) {
            *yv = (xv - mean) * inv * w + b;
        }
    }
}

pub fn global_avg_pool(x: &[f32], dims: [usize; 4], y: &mut [f32]) {
    let [n, c, h, w] = dims;
    let plane = h * w;
    for b in 0..n {
        let out = &mut y[b * c..(b + 1) * c];
        out.fill(0.0);
        for pixel in x[b * plane * c..(b + 1) * plane * c].chunks_exact(c) {
            for (s, &v) in out.iter_mut().zip(pixel) {
                *s += v;
            }
        }
        out.iter_mut().for_each(|s| *s /= plane as f32);
    }
}

/// Batch norm (inference) on [.., C] pixels; `p` = weight, bias, running mean, running var.
pub fn batch_norm(x: &[f32], c: usize, p: [&[f32]; 4], eps: f32, y: &mut [f32]) {
    let [weight, bias, mean, var] = p;
    for (yp, xp) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        for ch in 0..c {
            let scale = weight[ch] / (var[ch] + eps).sqrt();
            yp[ch] = xp[ch] * scale + (bias[ch] - mean[ch] * scale);
        }
    }
}

/// Option A on [N, H, W, C] (`dims` = [N, C, H, W]): subsample by `stride`, then zero
/// channels `before` and `after` the input's.
pub fn pad_channels(x: &[f32], dims: [usize; 4], before: usize, after: usize, stride: usize, y: &mut [f32]) {
    let [n, c, h, w] = dims;
    let sub = |size| crate::kernels::window_out(size, 1, stride, 0, 1, false).expect("invariant: the compiler checked the stride");
    let (oh, ow) = (sub(h), sub(w));
    let oc = before + c + after;
    for (q, out) in y.chunks_exact_mut(oc).take(n * oh * ow).enumerate() {
        let (b, oy, ox) = (q / (oh * ow), q / ow % oh, q % ow);
        let at = ((b * h + oy * stride) * w + ox * stride) * c;
        out[..before].fill(0.0);
        out[before..before + c].copy_from_slice(&x[at..at + c]);
        out[before + c..].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::seq;
    use crate::kernels::{self, PoolParams};
    use ndarray::Array4;

    /// Runs an NHWC step on the NHWC copy of `x` and returns its output in NCHW.
    fn through(x: &Array4<f32>, out: [usize; 4], f: impl Fn(&[f32], [usize; 4], &mut [f32])) -> Array4<f32> {
        let (n, c, h, w) = x.dim();
        let mut xn = vec![0.0; x.len()];
        to_nhwc(x.as_slice().unwrap(), [n, c, h, w], &mut xn);
        let mut yn = vec![0.0; out.iter().product()];
        f(&xn, [n, c, h, w], &mut yn);
        let mut y = vec![0.0; yn.len()];
        to_nchw(&yn, out, &mut y);
        Array4::from_shape_vec(out, y).unwrap()
    }

    #[test]
    fn layout_changes_are_inverse() {
        let x = seq(2 * 3 * 4 * 5, 1);
        let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        to_nhwc(&x, [2, 3, 4, 5], &mut a);
        assert_eq!(a[1], x[20], "channel 1 of pixel 0 follows channel 0");
        to_nchw(&a, [2, 3, 4, 5], &mut b);
        assert_eq!(b, x);
    }

    #[test]
    fn pools_match_the_nchw_kernels() {
        let x = Array4::from_shape_vec((2, 5, 9, 7), seq(2 * 5 * 9 * 7, 3)).unwrap();
        for (k, s, pd, ceil, cip) in [(3, 2, 1, false, true), (2, 2, 0, true, false), (3, 2, 1, true, false), (3, 1, 1, false, true)] {
            let p = PoolParams { kernel: k, stride: s, padding: pd, ceil_mode: ceil, count_include_pad: cip };
            let want = kernels::max_pool2d(x.view(), p);
            let d = want.dim();
            for isa in Isa::available() {
                assert_eq!(through(&x, [d.0, d.1, d.2, d.3], |x, dims, y| max_pool(isa, x, dims, p, y)), want, "{isa}");
            }
            let want = kernels::avg_pool2d(x.view(), p);
            kernels::tests::assert_close(&through(&x, [d.0, d.1, d.2, d.3], |x, dims, y| avg_pool(x, dims, p, y)), &want);
        }
        let want = kernels::global_avg_pool(x.view());
        kernels::tests::assert_close(&through(&x, [2, 5, 1, 1], global_avg_pool), &want);
    }

    #[test]
    fn max_pool_propagates_nan() {
        let mut x = Array4::from_shape_vec((1, 2, 4, 4), seq(32, 4)).unwrap();
        x[[0, 1, 2, 2]] = f32::NAN;
        let p = PoolParams { kernel: 2, stride: 2, padding: 0, ceil_mode: false, count_include_pad: true };
        for isa in Isa::available() {
            let y = through(&x, [1, 2, 2, 2], |x, dims, y| max_pool(isa, x, dims, p, y));
            assert!(y[[0, 1, 1, 1]].is_nan() && !y[[0, 0, 1, 1]].is_nan(), "{isa}");
        }
    }

    #[test]
    fn batch_norm_and_pad_channels_match_the_nchw_kernels() {
        let x = Array4::from_shape_vec((2, 3, 5, 4), seq(120, 5)).unwrap();
        let [w, b, m] = [seq(3, 6), seq(3, 7), seq(3, 8)];
        let v: Vec<f32> = seq(3, 9).iter().map(|v| v.abs() + 0.5).collect();
        let want = kernels::batch_norm(x.view(), &w, &b, &m, &v, 1e-5);
        let got = through(&x, [2, 3, 5, 4], |x, dims, y| batch_norm(x, dims[1], [&w, &b, &m, &v], 1e-5, y));
        kernels::tests::assert_close(&got, &want);
        let want = kernels::pad_channels(x.view(), 2, 1, 2);
        let d = want.dim();
        assert_eq!(through(&x, [d.0, d.1, d.2, d.3], |x, dims, y| pad_channels(x, dims, 2, 1, 2, y)), want);
    }
}
