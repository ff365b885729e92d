//! Max, average and global average pooling with PyTorch's semantics (floor or ceil mode;
//! `count_include_pad` as in `torch.nn.AvgPool2d`).

use ndarray::{Array4, ArrayView4};

/// A pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolParams {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

impl PoolParams {
    /// Output size along one axis, as `torch.nn.MaxPool2d` computes it.
    pub fn out(&self, size: usize) -> usize {
        super::window_out(size, self.kernel, self.stride, self.padding, 1, self.ceil_mode)
            .expect("invariant: the compiler checked that the window fits")
    }
}

/// Max pooling; padding never wins (it is -inf).
pub fn max_pool2d(x: ArrayView4<f32>, p: PoolParams) -> Array4<f32> {
    wrap(x, (p.out(x.dim().2), p.out(x.dim().3)), |x, d, y| max_pool2d_into(x, d, p, y))
}

/// Average pooling. The divisor follows PyTorch: with `count_include_pad` the window is
/// clipped to the padded input; without it, to the input itself.
pub fn avg_pool2d(x: ArrayView4<f32>, p: PoolParams) -> Array4<f32> {
    wrap(x, (p.out(x.dim().2), p.out(x.dim().3)), |x, d, y| avg_pool2d_into(x, d, p, y))
}

/// Mean over each channel's plane: [N, C, H, W] -> [N, C, 1, 1].
pub fn global_avg_pool(x: ArrayView4<f32>) -> Array4<f32> {
    wrap(x, (1, 1), global_avg_pool_into)
}

/// Runs a slice kernel that keeps N and C and maps H, W to `out`.
fn wrap(x: ArrayView4<f32>, out: (usize, usize), f: impl Fn(&[f32], [usize; 4], &mut [f32])) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let x = x.as_standard_layout();
    let mut y = Array4::<f32>::zeros((n, c, out.0, out.1));
    f(x.as_slice().expect("invariant: standard layout"), [n, c, h, w], y.as_slice_mut().expect("invariant: contiguous"));
    y
}

/// Calls `f(plane_in, plane_out)` for every (sample, channel) plane.
fn planes(x: &[f32], dims: [usize; 4], out_plane: usize, y: &mut [f32], mut f: impl FnMut(&[f32], &mut [f32])) {
    let [n, c, h, w] = dims;
    for (xp, yp) in x.chunks_exact(h * w).zip(y.chunks_exact_mut(out_plane)).take(n * c) {
        f(xp, yp);
    }
}

/// [`max_pool2d`] on slices of [N, C, H, W] (`dims`).
fn max_pool2d_into(x: &[f32], dims: [usize; 4], p: PoolParams, y: &mut [f32]) {
    let [_, _, h, w] = dims;
    let (oh, ow) = (p.out(h), p.out(w));
    planes(x, dims, oh * ow, y, |xp, yp| {
        for oy in 0..oh {
            let y0 = (oy * p.stride) as isize - p.padding as isize;
            for ox in 0..ow {
                let x0 = (ox * p.stride) as isize - p.padding as isize;
                let mut m = f32::NEG_INFINITY;
                for iy in y0.max(0)..(y0 + p.kernel as isize).min(h as isize) {
                    for ix in x0.max(0)..(x0 + p.kernel as isize).min(w as isize) {
                        let v = xp[iy as usize * w + ix as usize];
                        if v > m || v.is_nan() {
                            m = v;
                        }
                    }
                }
                yp[oy * ow + ox] = m;
            }
        }
    });
}

/// [`avg_pool2d`] on slices of [N, C, H, W] (`dims`).
fn avg_pool2d_into(x: &[f32], dims: [usize; 4], p: PoolParams, y: &mut [f32]) {
    let [_, _, h, w] = dims;
    let (oh, ow) = (p.out(h), p.out(w));
    let pad = p.padding as isize;
    planes(x, dims, oh * ow, y, |xp, yp| {
        for oy in 0..oh {
            let y0 = (oy * p.stride) as isize - pad;
            let y1 = (y0 + p.kernel as isize).min(h as isize + pad);
            for ox in 0..ow {
                let x0 = (ox * p.stride) as isize - pad;
                let x1 = (x0 + p.kernel as isize).min(w as isize + pad);
                let padded_count = (y1 - y0) * (x1 - x0);
                let (ys, ye, xs, xe) = (y0.max(0), y1.min(h as isize), x0.max(0), x1.min(w as isize));
                let mut s = 0.0f32;
                for iy in ys..ye {
                    for ix in xs..xe {
                        s += xp[iy as usize * w + ix as usize];
                    }
                }
                let count = if p.count_include_pad { padded_count } else { (ye - ys) * (xe - xs) };
                yp[oy * ow + ox] = s / count as f32;
            }
        }
    });
}

/// [`global_avg_pool`] on slices: [N, C, H, W] (`dims`) -> [N, C].
fn global_avg_pool_into(x: &[f32], dims: [usize; 4], y: &mut [f32]) {
    let [_, _, h, w] = dims;
    planes(x, dims, 1, y, |xp, yp| yp[0] = xp.iter().sum::<f32>() / (h * w) as f32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::seq;

    fn p(kernel: usize, stride: usize, padding: usize, ceil_mode: bool, count_include_pad: bool) -> PoolParams {
        PoolParams { kernel, stride, padding, ceil_mode, count_include_pad }
    }

    #[test]
    fn max_pool_on_a_small_grid() {
        // 1..=16 in a 4x4 grid; 3x3 windows, stride 2, padding 1 -> 2x2.
        let x = Array4::from_shape_vec((1, 1, 4, 4), (1..=16).map(|v| v as f32).collect()).unwrap();
        let y = max_pool2d(x.view(), p(3, 2, 1, false, true));
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![6.0, 8.0, 14.0, 16.0]);
    }

    #[test]
    fn avg_pool_divisors_follow_pytorch() {
        let x = Array4::from_shape_vec((1, 1, 3, 3), vec![1.0; 9]).unwrap();
        // count_include_pad: corner window sees 4 ones out of 9 cells.
        let y = avg_pool2d(x.view(), p(3, 2, 1, false, true));
        assert_eq!(y.dim(), (1, 1, 2, 2));
        assert!((y[[0, 0, 0, 0]] - 4.0 / 9.0).abs() < 1e-6);
        // Without it, padding does not count: all ones.
        let y = avg_pool2d(x.view(), p(3, 2, 1, false, false));
        assert!(y.iter().all(|v| (v - 1.0).abs() < 1e-6));
        // Ceil mode on 5x5 with k = s = 2 (ResNet-D's shortcut pool): 3x3, the last window
        // holds 2 (or 1) cells and is divided by them.
        let x = Array4::from_shape_vec((1, 1, 5, 5), seq(25, 7)).unwrap();
        let y = avg_pool2d(x.view(), p(2, 2, 0, true, false));
        assert_eq!(y.dim(), (1, 1, 3, 3));
        assert!((y[[0, 0, 2, 2]] - x[[0, 0, 4, 4]]).abs() < 1e-6);
        assert!((y[[0, 0, 0, 2]] - (x[[0, 0, 0, 4]] + x[[0, 0, 1, 4]]) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn global_average_is_the_mean() {
        let x = Array4::from_shape_vec((1, 2, 2, 2), vec![1.0, 2.0, 3.0, 4.0, -1.0, -1.0, -1.0, -5.0]).unwrap();
        let y = global_avg_pool(x.view());
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![2.5, -2.0]);
    }
}
