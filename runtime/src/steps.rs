//! The steps a generated model calls, one a node: each reads values of the [`Workspace`] by
//! node index, writes one, and calls the kernel with the static shapes the compiler put in
//! its descriptor.

use crate::fast::{self, PackedConv};
use crate::kernels::{self, Activation, Conv2dParams, PoolParams};
use crate::model::Workspace;

/// A convolution with its static input shape and the activation of its epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub input: [usize; 3],
    pub out_channels: usize,
    pub kernel: usize,
    pub params: Conv2dParams,
    pub act: Option<Activation>,
}

impl ConvSpec {
    /// `input` [C, H, W], then out channels, kernel, stride, padding, dilation, groups.
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        input: [usize; 3],
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        groups: usize,
    ) -> Self {
        ConvSpec { input, out_channels, kernel, params: Conv2dParams { stride, padding, dilation, groups }, act: None }
    }

    /// The same convolution followed by `act` (fused).
    pub const fn then(self, act: Activation) -> Self {
        ConvSpec { act: Some(act), ..self }
    }
}

/// A pooling window with its static input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    pub input: [usize; 3],
    pub params: PoolParams,
}

impl PoolSpec {
    /// `input` [C, H, W], then kernel, stride, padding, ceil mode, count_include_pad.
    pub const fn new(input: [usize; 3], kernel: usize, stride: usize, padding: usize, ceil_mode: bool, count_include_pad: bool) -> Self {
        PoolSpec { input, params: PoolParams { kernel, stride, padding, ceil_mode, count_include_pad } }
    }
}

fn dims(n: usize, s: [usize; 3]) -> [usize; 4] {
    [n, s[0], s[1], s[2]]
}

impl Workspace {
    /// Value `y` = act(conv(value `x`) + bias), the activation being the spec's, if any,
    /// through the fast GEMM with weights packed at load.
    pub fn conv(&mut self, x: usize, y: usize, spec: &ConvSpec, weight: &PackedConv, bias: Option<&[f32]>) {
        let n = self.batch();
        let ([x], y, cols, pack) = self.step_packed([x], y);
        fast::conv2d(x, n, spec, weight, bias, None, spec.act, cols, pack, y);
    }

    /// Value `y` = act(conv(value `x`) + bias + value `residual`): a convolution with the
    /// residual add fused into its epilogue.
    pub fn conv_add(&mut self, x: usize, residual: usize, y: usize, spec: &ConvSpec, weight: &PackedConv, bias: Option<&[f32]>) {
        let n = self.batch();
        let ([x, r], y, cols, pack) = self.step_packed([x, residual], y);
        fast::conv2d(x, n, spec, weight, bias, Some(r), spec.act, cols, pack, y);
    }

    /// Value `y` = batch norm of value `x` ([N, `channels`, ...]); `p` = weight, bias,
    /// running mean, running variance.
    pub fn batch_norm(&mut self, x: usize, y: usize, channels: usize, eps: f32, p: [&[f32]; 4]) {
        let (n, len) = (self.batch(), self.len(x));
        let ([x], y, _) = self.step([x], y);
        kernels::batch_norm_into(x, [n, channels, len / channels, 1], p[0], p[1], p[2], p[3], eps, y);
    }

    /// Value `y` = `act`(value `x`).
    pub fn act(&mut self, x: usize, y: usize, act: Activation) {
        let ([x], y, _) = self.step([x], y);
        kernels::activation_into(x, act, y);
    }

    /// Value `y` = value `a` + value `b`.
    pub fn add(&mut self, a: usize, b: usize, y: usize) {
        let ([a, b], y, _) = self.step([a, b], y);
        kernels::add_into(a, b, y);
    }

    /// Max pooling, its planes split over the pool's threads.
    pub fn max_pool(&mut self, x: usize, y: usize, spec: &PoolSpec) {
        let n = self.batch();
        let ([x], y, _) = self.step([x], y);
        let [c, h, w] = spec.input;
        let (oh, ow) = (kernels::pool_out(h, spec.params), kernels::pool_out(w, spec.params));
        let planes = n * c;
        let pool = fast::pool::global();
        let per = planes.div_ceil(pool.threads());
        if pool.threads() == 1 || planes * oh * ow < 50_000 {
            kernels::max_pool2d_into(x, dims(n, spec.input), spec.params, y);
            return;
        }
        let out = fast::pool::SharedMut::new(y.as_mut_ptr());
        pool.run(&|t| {
            let (p0, p1) = ((t * per).min(planes), ((t + 1) * per).min(planes));
            if p0 < p1 {
                // SAFETY: task t alone writes planes [p0, p1) of the output.
                let ys = unsafe { std::slice::from_raw_parts_mut(out.get().add(p0 * oh * ow), (p1 - p0) * oh * ow) };
                kernels::max_pool2d_into(&x[p0 * h * w..p1 * h * w], [1, p1 - p0, h, w], spec.params, ys);
            }
        });
    }

    pub fn avg_pool(&mut self, x: usize, y: usize, spec: &PoolSpec) {
        let n = self.batch();
        let ([x], y, _) = self.step([x], y);
        kernels::avg_pool2d_into(x, dims(n, spec.input), spec.params, y);
    }

    /// Value `y` [N, C] = the mean of each of the `channels` planes of value `x`.
    pub fn global_avg_pool(&mut self, x: usize, y: usize, channels: usize) {
        let (n, len) = (self.batch(), self.len(x));
        let ([x], y, _) = self.step([x], y);
        kernels::global_avg_pool_into(x, [n, channels, len / channels, 1], y);
    }

    /// Value `y` = value `x` (flattened) times `weight`^T plus `bias`.
    pub fn linear(&mut self, x: usize, y: usize, weight: &[f32], bias: Option<&[f32]>) {
        let (n, fin, fout) = (self.batch(), self.len(x), self.len(y));
        let ([x], y, _) = self.step([x], y);
        kernels::linear_into(x, n, fin, weight, fout, bias, y);
    }

    /// Option A: value `y` = value `x` ([N, C, H, W] = `input`) subsampled and zero-padded.
    pub fn pad_channels(&mut self, x: usize, y: usize, input: [usize; 3], before: usize, after: usize, stride: usize) {
        let n = self.batch();
        let ([x], y, _) = self.step([x], y);
        kernels::pad_channels_into(x, dims(n, input), before, after, stride, y);
    }

    /// Value `y` = softmax over the `channels` of value `x`.
    pub fn softmax(&mut self, x: usize, y: usize, channels: usize) {
        let (n, len) = (self.batch(), self.len(x));
        let ([x], y, _) = self.step([x], y);
        kernels::softmax_into(x, [n, channels, len / channels, 1], y);
    }

    /// Value `y` = value `x` (flatten: the layout is already flat).
    pub fn copy(&mut self, x: usize, y: usize) {
        let ([x], y, _) = self.step([x], y);
        y.copy_from_slice(x);
    }
}
