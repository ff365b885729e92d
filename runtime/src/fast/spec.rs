//! Kernel descriptors: the static shape and attributes of one convolution or pooling
//! layer, written by the compiler into generated code as builder calls
//! (`ConvSpec::new([64, 56, 56], 64, 3).padding(1).then(Activation::Relu)`), all `const`.

use crate::kernels::{Activation, Conv2dParams, PoolParams};

/// A convolution with its static input shape, the activation of its epilogue and the
/// algorithm the compiler chose for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub input: [usize; 3],
    pub out_channels: usize,
    pub kernel: usize,
    pub params: Conv2dParams,
    pub act: Option<Activation>,
    pub algo: ConvAlgo,
}

/// How a convolution is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvAlgo {
    /// [`direct`](super::direct): any convolution.
    Direct,
    /// [`winograd`](super::winograd) with output tiles of this size (2 or 4): 3x3 stride-1
    /// ones (see `winograd::eligible`).
    Winograd(u8),
}

impl ConvSpec {
    /// A `kernel` x `kernel` convolution of an `input` [C, H, W] to `out_channels`, with
    /// stride 1, no padding, dilation 1, one group, no activation, computed directly.
    pub const fn new(input: [usize; 3], out_channels: usize, kernel: usize) -> Self {
        ConvSpec {
            input,
            out_channels,
            kernel,
            params: Conv2dParams { stride: 1, padding: 0, dilation: 1, groups: 1 },
            act: None,
            algo: ConvAlgo::Direct,
        }
    }

    pub const fn stride(mut self, stride: usize) -> Self {
        self.params.stride = stride;
        self
    }

    pub const fn padding(mut self, padding: usize) -> Self {
        self.params.padding = padding;
        self
    }

    pub const fn dilation(mut self, dilation: usize) -> Self {
        self.params.dilation = dilation;
        self
    }

    pub const fn groups(mut self, groups: usize) -> Self {
        self.params.groups = groups;
        self
    }

    /// The same convolution followed by `act` (fused).
    pub const fn then(self, act: Activation) -> Self {
        ConvSpec { act: Some(act), ..self }
    }

    /// The same convolution through Winograd F(m x m, 3x3), `m` = 2 or 4.
    pub const fn winograd(self, m: u8) -> Self {
        assert!(m == 2 || m == 4, "Winograd tiles are 2x2 or 4x4");
        ConvSpec { algo: ConvAlgo::Winograd(m), ..self }
    }

    /// The output's height and width.
    pub fn output_hw(&self) -> (usize, usize) {
        (self.params.out(self.input[1], self.kernel), self.params.out(self.input[2], self.kernel))
    }
}

/// A pooling window with its static input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    pub input: [usize; 3],
    pub params: PoolParams,
}

impl PoolSpec {
    /// A `kernel` x `kernel` window over an `input` [C, H, W], with stride `kernel` (as
    /// PyTorch's default), no padding, floor mode, padded zeros counted by averages.
    pub const fn new(input: [usize; 3], kernel: usize) -> Self {
        PoolSpec { input, params: PoolParams { kernel, stride: kernel, padding: 0, ceil_mode: false, count_include_pad: true } }
    }

    pub const fn stride(mut self, stride: usize) -> Self {
        self.params.stride = stride;
        self
    }

    pub const fn padding(mut self, padding: usize) -> Self {
        self.params.padding = padding;
        self
    }

    /// Output sizes rounded up (`ceil_mode=True`).
    pub const fn ceil_mode(mut self) -> Self {
        self.params.ceil_mode = true;
        self
    }

    /// Averages divide by the unpadded window (`count_include_pad=False`).
    pub const fn exclude_padding(mut self) -> Self {
        self.params.count_include_pad = false;
        self
    }
}
