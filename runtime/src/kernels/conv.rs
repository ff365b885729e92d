//! 2-d convolution (cross-correlation, as `torch.nn.Conv2d`): stride, padding, dilation,
//! groups, optional bias. im2col per sample and group, then a GEMM.

use ndarray::{Array4, ArrayView4};

use super::{gemm_acc, Activation};

/// A convolution's attributes (square kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: 1, padding: 0, dilation: 1, groups: 1 }
    }
}

impl Conv2dParams {
    /// Output size along one axis for a `kernel`-tap window.
    pub fn out(&self, size: usize, kernel: usize) -> usize {
        super::window_out(size, kernel, self.stride, self.padding, self.dilation, false)
            .expect("invariant: the compiler checked that the window fits")
    }
}

/// What a convolution does after its sums: add the bias [O] and a residual (in the output's
/// layout), then an activation. The plain and the fast kernels both take it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
    pub act: Option<Activation>,
}

/// `x` [N, C, H, W], `weight` [O, C/groups, K, K] (row-major), `bias` [O].
pub fn conv2d(
    x: ArrayView4<f32>,
    weight: &[f32],
    out_channels: usize,
    kernel: usize,
    bias: Option<&[f32]>,
    p: Conv2dParams,
) -> Array4<f32> {
    conv2d_fused(x, weight, out_channels, kernel, bias, p, None, None)
}

/// [`conv2d`] with an epilogue: `act(conv(x) + bias + residual)`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_fused(
    x: ArrayView4<f32>,
    weight: &[f32],
    out_channels: usize,
    kernel: usize,
    bias: Option<&[f32]>,
    p: Conv2dParams,
    residual: Option<ArrayView4<f32>>,
    act: Option<Activation>,
) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = (p.out(h, kernel), p.out(w, kernel));
    let x = x.as_standard_layout();
    let mut out = Array4::<f32>::zeros((n, out_channels, oh, ow));
    let mut scratch = vec![0f32; conv2d_scratch_len(c, kernel, oh * ow, p)];
    let residual = residual.map(|r| r.as_standard_layout().to_owned());
    let epilogue = Epilogue { bias, residual: residual.as_ref().map(|r| r.as_slice().expect("invariant: standard layout")), act };
    conv2d_into(
        x.as_slice().expect("invariant: standard layout"),
        [n, c, h, w],
        weight,
        out_channels,
        kernel,
        p,
        &mut scratch,
        epilogue,
        out.as_slice_mut().expect("invariant: a new array is contiguous"),
    );
    out
}

/// Scratch floats [`conv2d_into`] needs for the im2col buffer of one group of one sample.
fn conv2d_scratch_len(in_channels: usize, kernel: usize, out_pixels: usize, p: Conv2dParams) -> usize {
    if kernel == 1 && p.stride == 1 && p.padding == 0 {
        0
    } else {
        in_channels / p.groups * kernel * kernel * out_pixels
    }
}

/// [`conv2d_fused`] on slices: `x` is [N, C, H, W] (`dims`), `y` receives [N, O, OH, OW];
/// `scratch` holds at least [`conv2d_scratch_len`] floats.
#[allow(clippy::too_many_arguments)]
fn conv2d_into(
    x: &[f32],
    dims: [usize; 4],
    weight: &[f32],
    out_channels: usize,
    kernel: usize,
    p: Conv2dParams,
    scratch: &mut [f32],
    epilogue: Epilogue<'_>,
    y: &mut [f32],
) {
    let [n, c, h, w] = dims;
    let (oh, ow) = (p.out(h, kernel), p.out(w, kernel));
    let g = p.groups;
    let (cg, og) = (c / g, out_channels / g);
    let kdim = cg * kernel * kernel;
    let cols_len = oh * ow;
    debug_assert_eq!(weight.len(), out_channels * kdim);
    debug_assert!(x.len() >= n * c * h * w && y.len() >= n * out_channels * cols_len);
    let direct = kernel == 1 && p.stride == 1 && p.padding == 0;
    for b in 0..n {
        for gi in 0..g {
            let x_g = &x[(b * c + gi * cg) * h * w..(b * c + (gi + 1) * cg) * h * w];
            let cols: &[f32] = if direct {
                x_g
            } else {
                im2col(x_g, cg, h, w, kernel, p, oh, ow, &mut scratch[..kdim * cols_len]);
                &scratch[..kdim * cols_len]
            };
            let o_start = (b * out_channels + gi * og) * cols_len;
            let out_g = &mut y[o_start..o_start + og * cols_len];
            for (oc, chunk) in out_g.chunks_mut(cols_len).enumerate() {
                chunk.fill(epilogue.bias.map_or(0.0, |bias| bias[gi * og + oc]));
            }
            gemm_acc(og, kdim, cols_len, &weight[gi * og * kdim..(gi + 1) * og * kdim], cols, out_g);
        }
        let sample = &mut y[b * out_channels * cols_len..(b + 1) * out_channels * cols_len];
        if let Some(r) = epilogue.residual {
            for (v, r) in sample.iter_mut().zip(&r[b * out_channels * cols_len..(b + 1) * out_channels * cols_len]) {
                *v += r;
            }
        }
        if let Some(act) = epilogue.act {
            for v in sample.iter_mut() {
                *v = act.apply(*v);
            }
        }
    }
}

/// Folds an inference batch norm (gamma, beta, mean, var) into a conv's weight [O, ...] and
/// optional bias [O]: returns the new weight and bias.
pub fn fold_batch_norm(weight: &[f32], bias: Option<&[f32]>, bn: [&[f32]; 4], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let [gamma, beta, mean, var] = bn;
    let oc = gamma.len();
    let per = weight.len() / oc.max(1);
    let scale: Vec<f32> = (0..oc).map(|o| gamma[o] / (var[o] + eps).sqrt()).collect();
    let w = weight.iter().enumerate().map(|(i, v)| v * scale[i / per]).collect();
    let b = (0..oc).map(|o| (bias.map_or(0.0, |b| b[o]) - mean[o]) * scale[o] + beta[o]).collect();
    (w, b)
}

/// Unfolds one group of one sample into `[C*K*K, OH*OW]`.
#[allow(clippy::too_many_arguments)]
fn im2col(x: &[f32], c: usize, h: usize, w: usize, k: usize, p: Conv2dParams, oh: usize, ow: usize, cols: &mut [f32]) {
    for ci in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let dst = &mut cols[row * oh * ow..(row + 1) * oh * ow];
                for oy in 0..oh {
                    let iy = (oy * p.stride + ky * p.dilation) as isize - p.padding as isize;
                    let line = &mut dst[oy * ow..(oy + 1) * ow];
                    if iy < 0 || iy >= h as isize {
                        line.fill(0.0);
                        continue;
                    }
                    let src = &x[(ci * h + iy as usize) * w..(ci * h + iy as usize + 1) * w];
                    for (ox, v) in line.iter_mut().enumerate() {
                        let ix = (ox * p.stride + kx * p.dilation) as isize - p.padding as isize;
                        *v = if ix < 0 || ix >= w as isize { 0.0 } else { src[ix as usize] };
                    }
                }
            }
        }
    }
}

/// Folds an inference batch norm over a conv's *input* channels (the conv reads `bn(x)`)
/// into its weight [O, C/groups, K, K] and bias: `W' = W * s[c]`, `b'[o] = b[o] + sum(W * t[c])`
/// with `s = gamma / sqrt(var + eps)`, `t = beta - mean * s`. Exact when the conv has no
/// padding (padded zeros would otherwise stand for `t`).
pub fn fold_batch_norm_input(
    weight: &[f32],
    bias: Option<&[f32]>,
    out_channels: usize,
    bn: [&[f32]; 4],
    eps: f32,
    groups: usize,
) -> (Vec<f32>, Vec<f32>) {
    let [gamma, beta, mean, var] = bn;
    let c = gamma.len();
    let (cg, og) = (c / groups, out_channels / groups);
    let kk = weight.len() / (out_channels * cg).max(1);
    let scale: Vec<f32> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let shift: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
    let mut w = weight.to_vec();
    let mut b: Vec<f32> = (0..out_channels).map(|o| bias.map_or(0.0, |b| b[o])).collect();
    #[allow(clippy::needless_range_loop)]
    for o in 0..out_channels {
        let group = o / og;
        for i in 0..cg {
            let ch = group * cg + i;
            for k in 0..kk {
                let at = (o * cg + i) * kk + k;
                b[o] += weight[at] * shift[ch];
                w[at] = weight[at] * scale[ch];
            }
        }
    }
    (w, b)
}

#[cfg(test)]
mod tests {

    /// A batch norm whose running variance is negative (or NaN) folds to NaN weights, so the
    /// convolution's outputs are NaN, as PyTorch's are; on either side of the convolution.
    #[test]
    fn a_negative_running_variance_gives_nan_as_in_pytorch() {
        let (w, bn) = (vec![1.0f32; 4], [&[1.0f32, 1.0][..], &[0.0, 0.0][..], &[0.0, 0.0][..], &[-1.0, 1.0][..]]);
        let (fw, fb) = super::fold_batch_norm(&w, None, bn, 1e-5);
        assert!(fw[0].is_nan() && fb[0].is_nan() && fw[2].is_finite());
        let (fw, _) = super::fold_batch_norm_input(&w, None, 2, bn, 1e-5, 1);
        assert!(fw.iter().any(|v| v.is_nan()));
    }

    use super::*;
    use crate::kernels::tests::{assert_close, seq};

    /// The definition, summed directly.
    fn naive(x: &Array4<f32>, wt: &[f32], o: usize, k: usize, bias: Option<&[f32]>, p: Conv2dParams) -> Array4<f32> {
        let (n, c, h, w) = x.dim();
        let (oh, ow) = (p.out(h, k), p.out(w, k));
        let (cg, og) = (c / p.groups, o / p.groups);
        Array4::from_shape_fn((n, o, oh, ow), |(b, oc, oy, ox)| {
            let g = oc / og;
            let mut s = bias.map_or(0.0, |b| b[oc]);
            for ci in 0..cg {
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * p.stride + ky * p.dilation) as isize - p.padding as isize;
                        let ix = (ox * p.stride + kx * p.dilation) as isize - p.padding as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            s += x[[b, g * cg + ci, iy as usize, ix as usize]] * wt[((oc * cg + ci) * k + ky) * k + kx];
                        }
                    }
                }
            }
            s
        })
    }

    #[test]
    fn matches_the_definition_on_odd_cases() {
        let cases = [
            // (n, c, h, w, o, k, stride, pad, dilation, groups, bias)
            (1, 3, 7, 5, 4, 3, 1, 1, 1, 1, true),
            (2, 4, 9, 11, 6, 3, 3, 0, 1, 2, false),
            (1, 4, 10, 10, 4, 3, 1, 2, 2, 4, true), // depthwise, dilation 2
            (2, 8, 1, 1, 5, 1, 1, 0, 1, 1, true),   // 1x1 input, direct path
            (1, 6, 6, 9, 6, 1, 2, 0, 1, 3, false),  // strided 1x1, groups
            (1, 2, 5, 5, 3, 5, 2, 2, 1, 1, false),
            (1, 3, 2, 2, 2, 3, 1, 1, 1, 1, false), // kernel larger than input, padded
        ];
        for (n, c, h, w, o, k, s, pd, d, g, has_bias) in cases {
            let x = Array4::from_shape_vec((n, c, h, w), seq(n * c * h * w, 1)).unwrap();
            let wt = seq(o * (c / g) * k * k, 2);
            let bias = seq(o, 3);
            let bias = has_bias.then_some(bias.as_slice());
            let p = Conv2dParams { stride: s, padding: pd, dilation: d, groups: g };
            assert_close(&conv2d(x.view(), &wt, o, k, bias, p), &naive(&x, &wt, o, k, bias, p));
        }
    }

    #[test]
    fn epilogue_adds_the_residual_then_activates() {
        let x = Array4::from_shape_vec((2, 3, 5, 4), seq(120, 4)).unwrap();
        let wt = seq(6 * 3 * 9, 5);
        let bias = seq(6, 6);
        let p = Conv2dParams { stride: 1, padding: 1, dilation: 1, groups: 1 };
        let plain = naive(&x, &wt, 6, 3, Some(&bias), p);
        let r = Array4::from_shape_vec(plain.dim(), seq(plain.len(), 7)).unwrap();
        let want = (&plain + &r).mapv(|v| v.max(0.0));
        let got = conv2d_fused(x.view(), &wt, 6, 3, Some(&bias), p, Some(r.view()), Some(Activation::Relu));
        assert_close(&got, &want);
    }

    #[test]
    fn folding_a_preceding_batch_norm_equals_bn_then_conv() {
        let x = Array4::from_shape_vec((1, 4, 5, 5), seq(100, 14)).unwrap();
        let wt = seq(6 * 2 * 9, 15);
        let bias = seq(6, 16);
        let p = Conv2dParams { stride: 2, padding: 0, dilation: 1, groups: 2 };
        let (gamma, beta, mean) = (seq(4, 17), seq(4, 18), seq(4, 19));
        let var: Vec<f32> = seq(4, 20).iter().map(|v| v.abs() + 0.5).collect();
        let normed = crate::kernels::batch_norm(x.view(), &gamma, &beta, &mean, &var, 1e-5);
        let want = conv2d(normed.view(), &wt, 6, 3, Some(&bias), p);
        let (fw, fb) = fold_batch_norm_input(&wt, Some(&bias), 6, [&gamma, &beta, &mean, &var], 1e-5, 2);
        assert_close(&conv2d(x.view(), &fw, 6, 3, Some(&fb), p), &want);
    }

    #[test]
    fn folding_batch_norm_equals_conv_then_bn() {
        let x = Array4::from_shape_vec((1, 2, 4, 4), seq(32, 8)).unwrap();
        let wt = seq(3 * 2 * 9, 9);
        let p = Conv2dParams { stride: 1, padding: 1, dilation: 1, groups: 1 };
        let gamma = seq(3, 10);
        let beta = seq(3, 11);
        let mean = seq(3, 12);
        let var: Vec<f32> = seq(3, 13).iter().map(|v| v.abs() + 0.5).collect();
        let want = crate::kernels::batch_norm(conv2d(x.view(), &wt, 3, 3, None, p).view(), &gamma, &beta, &mean, &var, 1e-5);
        let (fw, fb) = fold_batch_norm(&wt, None, [&gamma, &beta, &mean, &var], 1e-5);
        assert_close(&conv2d(x.view(), &fw, 3, 3, Some(&fb), p), &want);
    }
}
