//! Residual add, flatten, linear, option-A channel padding, softmax.

use ndarray::{Array4, ArrayView4};

/// Elementwise sum of two tensors of one shape.
pub fn add(a: ArrayView4<f32>, b: ArrayView4<f32>) -> Array4<f32> {
    let mut y = a.to_owned();
    y += &b;
    y
}

/// `x` [N, C, H, W] times `s` [N, C, 1, 1]: every channel scaled by its factor.
pub fn scale_channels(x: ArrayView4<f32>, s: ArrayView4<f32>) -> Array4<f32> {
    let mut y = x.to_owned();
    for ((n, c, _, _), v) in y.indexed_iter_mut() {
        *v *= s[[n, c, 0, 0]];
    }
    y
}

/// `x` [N, C, H, W] times `s` [C] (one factor a channel, the same for every sample).
pub fn scale_channels_by(x: ArrayView4<f32>, s: &[f32]) -> Array4<f32> {
    let mut y = x.to_owned();
    for ((_, c, _, _), v) in y.indexed_iter_mut() {
        *v *= s[c];
    }
    y
}

/// `y = a + b` on slices.
pub fn add_into(a: &[f32], b: &[f32], y: &mut [f32]) {
    for ((yv, av), bv) in y.iter_mut().zip(a).zip(b) {
        *yv = av + bv;
    }
}

/// [N, C, H, W] -> [N, C*H*W, 1, 1].
pub fn flatten(x: ArrayView4<f32>) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let data: Vec<f32> = x.iter().copied().collect();
    Array4::from_shape_vec((n, c * h * w, 1, 1), data).expect("invariant: same element count")
}

/// `y = x W^T + b` over the flattened input; `weight` is [out, in] row-major.
pub fn linear(x: ArrayView4<f32>, weight: &[f32], out_features: usize, bias: Option<&[f32]>) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let x = x.as_standard_layout();
    let mut y = Array4::<f32>::zeros((n, out_features, 1, 1));
    let ys = y.as_slice_mut().expect("invariant: contiguous");
    linear_into(x.as_slice().expect("invariant: standard layout"), n, c * h * w, weight, out_features, bias, ys);
    y
}

/// [`linear`] on slices: `x` is [N, in_features], `y` [N, out_features].
pub fn linear_into(x: &[f32], n: usize, in_features: usize, weight: &[f32], out_features: usize, bias: Option<&[f32]>, y: &mut [f32]) {
    for b in 0..n {
        let xr = &x[b * in_features..(b + 1) * in_features];
        for (o, v) in y[b * out_features..(b + 1) * out_features].iter_mut().enumerate() {
            let wr = &weight[o * in_features..(o + 1) * in_features];
            let dot: f32 = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
            *v = dot + bias.map_or(0.0, |b| b[o]);
        }
    }
}

/// Option A shortcut: `x[:, :, ::s, ::s]`, then `before` zero channels in front and `after`
/// behind.
pub fn pad_channels(x: ArrayView4<f32>, before: usize, after: usize, stride: usize) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let sub = |size| super::window_out(size, 1, stride, 0, 1, false).expect("invariant: the compiler checked the stride");
    let (oh, ow) = (sub(h), sub(w));
    let x = x.as_standard_layout();
    let mut y = Array4::<f32>::zeros((n, before + c + after, oh, ow));
    let ys = y.as_slice_mut().expect("invariant: contiguous");
    pad_channels_into(x.as_slice().expect("invariant: standard layout"), [n, c, h, w], before, after, stride, ys);
    y
}

/// [`pad_channels`] on slices of [N, C, H, W] (`dims`).
fn pad_channels_into(x: &[f32], dims: [usize; 4], before: usize, after: usize, stride: usize, y: &mut [f32]) {
    let [n, c, h, w] = dims;
    let sub = |size| super::window_out(size, 1, stride, 0, 1, false).expect("invariant: the compiler checked the stride");
    let (oh, ow) = (sub(h), sub(w));
    let oc = before + c + after;
    for b in 0..n {
        for ch in 0..oc {
            let yp = &mut y[(b * oc + ch) * oh * ow..(b * oc + ch + 1) * oh * ow];
            if ch < before || ch >= before + c {
                yp.fill(0.0);
                continue;
            }
            let xp = &x[(b * c + ch - before) * h * w..(b * c + ch - before + 1) * h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    yp[oy * ow + ox] = xp[oy * stride * w + ox * stride];
                }
            }
        }
    }
}

/// Softmax over the channels (`dim = 1`), numerically stable.
pub fn softmax(x: ArrayView4<f32>) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let x = x.as_standard_layout();
    let mut y = Array4::<f32>::zeros((n, c, h, w));
    let ys = y.as_slice_mut().expect("invariant: contiguous");
    softmax_into(x.as_slice().expect("invariant: standard layout"), [n, c, h, w], ys);
    y
}

/// [`softmax`] on slices of [N, C, H, W] (`dims`).
pub fn softmax_into(x: &[f32], dims: [usize; 4], y: &mut [f32]) {
    let [n, c, h, w] = dims;
    let plane = h * w;
    for b in 0..n {
        for i in 0..plane {
            let at = |ch: usize| (b * c + ch) * plane + i;
            let m = (0..c).fold(f32::NEG_INFINITY, |m, ch| m.max(x[at(ch)]));
            let mut s = 0.0;
            for ch in 0..c {
                let e = (x[at(ch)] - m).exp();
                y[at(ch)] = e;
                s += e;
            }
            for ch in 0..c {
                y[at(ch)] /= s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::seq;

    #[test]
    fn linear_matches_a_dot_product() {
        let x = Array4::from_shape_vec((2, 3, 1, 1), vec![1.0, 2.0, 3.0, -1.0, 0.0, 1.0]).unwrap();
        let w = [1.0, 0.0, 0.0, 0.5, 0.5, 0.5];
        let y = linear(x.view(), &w, 2, Some(&[0.0, 1.0]));
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![1.0, 4.0, -1.0, 1.0]);
    }

    #[test]
    fn pad_channels_subsamples_and_centres() {
        let x = Array4::from_shape_vec((1, 2, 3, 3), seq(18, 1)).unwrap();
        let y = pad_channels(x.view(), 1, 1, 2);
        assert_eq!(y.dim(), (1, 4, 2, 2));
        assert!(y.slice(ndarray::s![0, 0, .., ..]).iter().all(|&v| v == 0.0));
        assert!(y.slice(ndarray::s![0, 3, .., ..]).iter().all(|&v| v == 0.0));
        assert_eq!(y[[0, 1, 1, 1]], x[[0, 0, 2, 2]]);
        assert_eq!(y[[0, 2, 0, 1]], x[[0, 1, 0, 2]]);
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let x = Array4::from_shape_vec((2, 3, 1, 1), vec![1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0]).unwrap();
        let y = softmax(x.view());
        assert!((y[[0, 2, 0, 0]] - 0.665_240_9).abs() < 1e-6);
        assert!((y[[1, 0, 0, 0]] - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn add_and_flatten() {
        let a = Array4::from_shape_vec((1, 2, 1, 2), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let s = add(a.view(), a.view());
        assert_eq!(flatten(s.view()).iter().copied().collect::<Vec<_>>(), vec![2.0, 4.0, 6.0, 8.0]);
        assert_eq!(flatten(s.view()).dim(), (1, 4, 1, 1));
    }
}
