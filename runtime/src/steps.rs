//! The steps a generated model calls, one a node: each reads values of the [`Workspace`] by
//! node index, writes one, and calls the kernel with the static shapes the compiler put in
//! its descriptor. Feature maps are NHWC here ([`Workspace::begin`] and
//! [`Workspace::output`] change the layout at the edges); shapes are still given as
//! PyTorch's [C, H, W].

use crate::fast::{self, nhwc, ConvSpec, Epilogue, PackedConv, PoolSpec};
use crate::kernels::{self, Activation};
use crate::model::Workspace;

fn dims(n: usize, s: [usize; 3]) -> [usize; 4] {
    [n, s[0], s[1], s[2]]
}

impl Workspace {
    /// Value `y` = act(conv(value `x`) + bias), the activation being the spec's, if any,
    /// by the spec's algorithm against weights packed at load.
    pub fn conv(&mut self, x: usize, y: usize, spec: &ConvSpec, weight: &PackedConv, bias: Option<&[f32]>) {
        let (n, isa) = (self.batch(), self.isa());
        let ([x], y, scratch) = self.step([x], y);
        let algo = fast::conv(isa, x, n, spec, weight, Epilogue { bias, residual: None, act: spec.act }, scratch, y);
        self.count(algo);
    }

    /// Value `y` = act(conv(value `x`) + bias + value `residual`): a convolution with the
    /// residual add fused into its epilogue.
    pub fn conv_add(&mut self, x: usize, residual: usize, y: usize, spec: &ConvSpec, weight: &PackedConv, bias: Option<&[f32]>) {
        let (n, isa) = (self.batch(), self.isa());
        let ([x, r], y, scratch) = self.step([x, residual], y);
        let algo = fast::conv(isa, x, n, spec, weight, Epilogue { bias, residual: Some(r), act: spec.act }, scratch, y);
        self.count(algo);
    }

    /// Value `y` = the depthwise convolution `dw` of value `e`, the 1x1 convolution `expand`
    /// of value `x` (an inverted residual's expansion), each (spec, packed weight, bias)
    /// with its spec's activation, as one step: where the expansion is large, in strips
    /// whose rows stay in cache, `e`'s region holding each thread's strip (see
    /// [`fast::strips`]); else `e` whole, then `y`.
    pub fn expand_depthwise(
        &mut self,
        x: usize,
        e: usize,
        y: usize,
        expand: (&ConvSpec, &PackedConv, Option<&[f32]>),
        dw: (&ConvSpec, &PackedConv, Option<&[f32]>),
    ) {
        let (n, isa) = (self.batch(), self.isa());
        let ([x], mid, y, scratch) = self.step_mid([x], e, y);
        let strips = fast::strips::expand_depthwise(isa, x, n, expand, dw, mid, scratch, y);
        self.count(fast::ConvAlgo::Direct);
        self.count(fast::ConvAlgo::Direct);
        self.count_pair(strips);
    }

    /// Value `y` = batch norm of value `x` (`channels` a pixel); `p` = weight, bias,
    /// running mean, running variance.
    pub fn batch_norm(&mut self, x: usize, y: usize, channels: usize, eps: f32, p: [&[f32]; 4]) {
        let ([x], y, _) = self.step([x], y);
        nhwc::batch_norm(x, channels, p, eps, y);
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

    /// Value `y` = value `x` with every channel times its factor in value `s` ([N, C]).
    pub fn scale_channels(&mut self, x: usize, s: usize, y: usize, channels: usize) {
        let n = self.batch();
        let ([x, s], y, _) = self.step([x, s], y);
        nhwc::scale_channels(x, s, n, channels, y);
    }

    /// Value `y` = value `x` with every channel times its factor in `s` (a layer scale).
    pub fn scale_by(&mut self, x: usize, y: usize, s: &[f32]) {
        let ([x], y, _) = self.step([x], y);
        nhwc::scale_channels_by(x, s, y);
    }

    /// Value `y` = layer normalisation of value `x` over its `channels` at every pixel.
    pub fn layer_norm(&mut self, x: usize, y: usize, channels: usize, eps: f32, weight: &[f32], bias: &[f32]) {
        let ([x], y, _) = self.step([x], y);
        nhwc::layer_norm(x, channels, weight, bias, eps, y);
    }

    /// Max pooling, its output rows split over the pool's threads.
    pub fn max_pool(&mut self, x: usize, y: usize, spec: &PoolSpec) {
        let (n, isa) = (self.batch(), self.isa());
        let ([x], y, _) = self.step([x], y);
        nhwc::max_pool(isa, x, dims(n, spec.input), spec.params, y);
    }

    pub fn avg_pool(&mut self, x: usize, y: usize, spec: &PoolSpec) {
        let n = self.batch();
        let ([x], y, _) = self.step([x], y);
        nhwc::avg_pool(x, dims(n, spec.input), spec.params, y);
    }

    /// Value `y` [N, C] = the mean of each of the `channels` of value `x`.
    pub fn global_avg_pool(&mut self, x: usize, y: usize, channels: usize) {
        let (n, len) = (self.batch(), self.len(x));
        let ([x], y, _) = self.step([x], y);
        nhwc::global_avg_pool(x, [n, channels, len / channels, 1], y);
    }

    /// Value `y` = value `x` (flattened) times `weight`^T plus `bias`.
    pub fn linear(&mut self, x: usize, y: usize, weight: &[f32], bias: Option<&[f32]>) {
        let (n, fin, fout, isa) = (self.batch(), self.len(x), self.len(y), self.isa());
        let ([x], y, _) = self.step([x], y);
        fast::dense::linear(isa, x, n, fin, weight, fout, bias, y);
    }

    /// Option A: value `y` = value `x` ([N, C, H, W] = `input`) subsampled and zero-padded.
    pub fn pad_channels(&mut self, x: usize, y: usize, input: [usize; 3], before: usize, after: usize, stride: usize) {
        let n = self.batch();
        let ([x], y, _) = self.step([x], y);
        nhwc::pad_channels(x, dims(n, input), before, after, stride, y);
    }

    /// Value `y` = softmax over the `channels` of value `x` (contiguous in NHWC).
    pub fn softmax(&mut self, x: usize, y: usize, channels: usize) {
        let (n, len) = (self.batch(), self.len(x));
        let ([x], y, _) = self.step([x], y);
        kernels::softmax_into(x, [n * len / channels, channels, 1, 1], y);
    }

    /// Value `y` = value `x` ([C, H, W] = `input` a sample) flattened in PyTorch's order.
    pub fn flatten(&mut self, x: usize, y: usize, input: [usize; 3]) {
        let n = self.batch();
        let ([x], y, _) = self.step([x], y);
        if input[1] * input[2] == 1 {
            y.copy_from_slice(x);
        } else {
            nhwc::to_nchw(x, dims(n, input), y);
        }
    }
}
