//! Convolution through the fast GEMM: weights packed at load, im2col (skipped for 1x1
//! stride-1 convolutions, whose input already is B), groups one GEMM each.

use super::gemm::{gemm, pack_a, BSource, Epi};
use crate::kernels::{conv_out, Activation, Conv2dParams};
use crate::steps::ConvSpec;

/// A convolution's weights in the GEMM's packed layout, one block of panels per group; or,
/// for a [`winograd::eligible`](super::winograd::eligible) convolution, its 16 transformed
/// matrices.
#[derive(Debug, Clone)]
pub struct PackedConv {
    data: Vec<f32>,
    /// Rows of A per group (output channels / groups) and columns (C/groups * K * K).
    m: usize,
    k: usize,
    winograd: bool,
}

impl PackedConv {
    /// Packs `weight` [O, C/groups, K, K] for `spec`.
    pub fn new(weight: &[f32], spec: &ConvSpec) -> PackedConv {
        let g = spec.params.groups;
        let m = spec.out_channels / g;
        let k = spec.input[0] / g * spec.kernel * spec.kernel;
        if super::winograd::enabled() && super::winograd::eligible(spec) {
            return PackedConv { data: super::winograd::pack_weights(weight, spec), m, k, winograd: true };
        }
        let data = (0..g).flat_map(|gi| pack_a(&weight[gi * m * k..(gi + 1) * m * k], m, k)).collect();
        PackedConv { data, m, k, winograd: false }
    }

    fn group(&self, g: usize) -> &[f32] {
        let len = self.m.div_ceil(super::MR) * self.k * super::MR;
        &self.data[g * len..(g + 1) * len]
    }
}

/// `y = act(conv(x) + bias + residual)` for a batch; `x` is [N, C, H, W] (`n`, `spec.input`).
/// `scratch` holds at least [`scratch_len`] floats; `pack` the GEMM's B buffers (the
/// im2col is gathered while packing).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    n: usize,
    spec: &ConvSpec,
    w: &PackedConv,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Option<Activation>,
    scratch: &mut [f32],
    pack: &mut [f32],
    y: &mut [f32],
) {
    if w.winograd {
        super::winograd::conv(x, n, spec, &w.data, bias, residual, act, scratch, pack, y);
        return;
    }
    let [c, h, wd] = spec.input;
    let p: Conv2dParams = spec.params;
    let (oh, ow) = (conv_out(h, spec.kernel, p), conv_out(wd, spec.kernel, p));
    let g = p.groups;
    let (cg, og, pixels) = (c / g, spec.out_channels / g, oh * ow);
    let direct = spec.kernel == 1 && p.stride == 1 && p.padding == 0;
    for b in 0..n {
        for gi in 0..g {
            let xg = &x[(b * c + gi * cg) * h * wd..(b * c + (gi + 1) * cg) * h * wd];
            let bmat = if direct { BSource::Dense(xg) } else { BSource::Im2col { x: xg, h, w: wd, kernel: spec.kernel, params: p, ow } };
            let at = (b * spec.out_channels + gi * og) * pixels;
            let epi = Epi { bias: bias.map(|v| &v[gi * og..(gi + 1) * og]), residual: residual.map(|r| &r[at..at + og * pixels]), act };
            gemm(og, w.k, pixels, w.group(gi), bmat, &mut y[at..at + og * pixels], epi, pack);
        }
    }
}

/// Scratch floats [`conv2d`] needs for `spec`.
pub fn scratch_len(spec: &ConvSpec) -> usize {
    if super::winograd::eligible(spec) {
        super::winograd::scratch_len(spec)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{assert_close, seq};
    use ndarray::Array4;

    #[test]
    fn matches_the_plain_kernel() {
        for (n, c, h, w, o, k, s, pd, d, g) in [
            (2, 8, 9, 7, 12, 3, 1, 1, 1, 1),
            (1, 6, 8, 8, 6, 3, 2, 1, 1, 3),
            (1, 16, 5, 5, 32, 1, 1, 0, 1, 1),
            (1, 4, 6, 6, 8, 1, 2, 0, 1, 1),
        ] {
            let x = Array4::from_shape_vec((n, c, h, w), seq(n * c * h * w, 1)).unwrap();
            let wt = seq(o * (c / g) * k * k, 2);
            let bias = seq(o, 3);
            let p = Conv2dParams { stride: s, padding: pd, dilation: d, groups: g };
            let plain = crate::kernels::conv2d(x.view(), &wt, o, k, Some(&bias), p);
            let res = Array4::from_shape_vec(plain.dim(), seq(plain.len(), 4)).unwrap();
            let want = (&plain + &res).mapv(|v| v.max(0.0));
            let spec = ConvSpec { input: [c, h, w], out_channels: o, kernel: k, params: p, act: None };
            let packed = PackedConv::new(&wt, &spec);
            let mut cols = vec![0f32; crate::kernels::conv2d_scratch_len(c, k, plain.dim().2 * plain.dim().3, p)];
            let mut pack = vec![0f32; 2 * super::super::pack_buffer_len()];
            let mut y = vec![0f32; plain.len()];
            conv2d(
                x.as_slice().unwrap(),
                n,
                &spec,
                &packed,
                Some(&bias),
                Some(res.as_slice().unwrap()),
                Some(Activation::Relu),
                &mut cols,
                &mut pack,
                &mut y,
            );
            assert_close(&Array4::from_shape_vec(plain.dim(), y).unwrap(), &want);
        }
    }
}
