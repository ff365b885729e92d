//! Residual add, flatten, linear, option-A channel padding, softmax.

use ndarray::{Array4, ArrayView4, Axis, Zip};

/// Elementwise sum of two tensors of one shape.
pub fn add(a: ArrayView4<f32>, b: ArrayView4<f32>) -> Array4<f32> {
    let mut y = a.to_owned();
    Zip::from(&mut y).and(&b).for_each(|y, &b| *y += b);
    y
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
    let in_features = c * h * w;
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("invariant: standard layout");
    let mut y = Array4::<f32>::zeros((n, out_features, 1, 1));
    for (b, mut row) in y.axis_iter_mut(Axis(0)).enumerate() {
        let xr = &xs[b * in_features..(b + 1) * in_features];
        for (o, v) in row.iter_mut().enumerate() {
            let wr = &weight[o * in_features..(o + 1) * in_features];
            let dot: f32 = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
            *v = dot + bias.map_or(0.0, |b| b[o]);
        }
    }
    y
}

/// Option A shortcut: `x[:, :, ::s, ::s]`, then `before` zero channels in front and `after`
/// behind.
pub fn pad_channels(x: ArrayView4<f32>, before: usize, after: usize, stride: usize) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = ((h - 1) / stride + 1, (w - 1) / stride + 1);
    Array4::from_shape_fn((n, before + c + after, oh, ow), |(b, ch, oy, ox)| {
        if ch < before || ch >= before + c {
            0.0
        } else {
            x[[b, ch - before, oy * stride, ox * stride]]
        }
    })
}

/// Softmax over the channels (`dim = 1`), numerically stable.
pub fn softmax(x: ArrayView4<f32>) -> Array4<f32> {
    let mut y = x.to_owned();
    let (n, _, h, w) = y.dim();
    for b in 0..n {
        for iy in 0..h {
            for ix in 0..w {
                let mut lane = y.slice_mut(ndarray::s![b, .., iy, ix]);
                let m = lane.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                lane.mapv_inplace(|v| (v - m).exp());
                let s = lane.sum();
                lane.mapv_inplace(|v| v / s);
            }
        }
    }
    y
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
