//! The operations of the IR and their attributes.

use super::{ParamRole, Shape};
pub use resnetc_runtime::kernels::Activation;

/// A 2-d convolution's attributes (square kernels) and its fused epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub bias: bool,
    /// The weight is stored [out, in] (a Linear applied at every pixel), not [out, in, 1, 1].
    pub weight_2d: bool,
    /// Epilogue: add the conv's second input (a residual) after the bias.
    pub residual: bool,
    /// Epilogue: apply an activation last.
    pub act: Option<Activation>,
}

/// A pooling window (PyTorch semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub ceil_mode: bool,
    /// Average pooling only: whether padded zeros count in the divisor.
    pub count_include_pad: bool,
}

/// What a shortcut node becomes (see the `shortcut` pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortcutKind {
    /// The input as it is; shapes must match.
    Identity,
    /// A 1x1 conv (+ bn) where shapes differ, or `always`.
    Projection { bn: bool, always: bool },
    /// Option A: subsample and zero-pad channels.
    Pad,
    /// ResNet-D: avg-pool, 1x1 conv (+ bn) where shapes differ, or `always`.
    AvgDown { bn: bool, always: bool },
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The network input (always node 0).
    Input,
    Conv2d(Conv),
    /// Inference batch normalisation with running statistics.
    BatchNorm {
        eps: f32,
    },
    Act(Activation),
    /// Layer normalisation over the channels at every pixel (weight, bias [C]).
    LayerNorm {
        eps: f32,
    },
    /// A learned factor a channel ([C, 1, 1], keyed by the layer's own path).
    LayerScale,
    /// Elementwise sum of two values of one shape (the residual add).
    Add,
    /// The first operand [C, H, W] times the second [C, 1, 1], a factor a channel (the
    /// squeeze-and-excitation gate).
    ScaleChannels,
    MaxPool(Pool),
    AvgPool(Pool),
    GlobalAvgPool,
    Flatten,
    /// A fully connected layer over the flattened input.
    Linear {
        out_features: usize,
        bias: bool,
    },
    /// Option A shortcut: take every `stride`-th pixel, zero-pad channels before and after.
    PadChannels {
        before: usize,
        after: usize,
        stride: usize,
    },
    /// Softmax over the channels.
    Softmax,
    /// A residual shortcut from its input to the node's shape, before the `shortcut` pass
    /// makes it explicit ops. Named after the shortcut (`layer2.0.downsample`).
    Shortcut(ShortcutKind),
}

impl Op {
    /// How many inputs the op takes.
    pub fn arity(&self) -> usize {
        match self {
            Op::Input => 0,
            Op::Add | Op::ScaleChannels => 2,
            Op::Conv2d(c) => 1 + usize::from(c.residual),
            _ => 1,
        }
    }

    /// The op's name in dumps and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Conv2d(_) => "conv2d",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Act(a) => a.name(),
            Op::Add => "add",
            Op::LayerNorm { .. } => "layer_norm",
            Op::LayerScale => "layer_scale",
            Op::ScaleChannels => "scale_channels",
            Op::MaxPool(_) => "max_pool",
            Op::AvgPool(_) => "avg_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten => "flatten",
            Op::Linear { .. } => "linear",
            Op::PadChannels { .. } => "pad_channels",
            Op::Softmax => "softmax",
            Op::Shortcut(_) => "shortcut",
        }
    }

    /// The shape rule: the output shape for an `input` shape (the first operand's), or
    /// `None` where the op cannot apply to it (a window that does not fit, groups that do
    /// not divide the channels, a size that overflows). The input and shortcut nodes have no
    /// rule (their shapes are given).
    pub fn output_shape(&self, input: Shape) -> Option<Shape> {
        let shape = match *self {
            Op::Input | Op::Shortcut(_) => return None,
            Op::Conv2d(c) => {
                if c.groups == 0 || !input.c.is_multiple_of(c.groups) || !c.out_channels.is_multiple_of(c.groups) || c.out_channels == 0 {
                    return None;
                }
                let out = |size| super::window_out(size, c.kernel, c.stride, c.padding, c.dilation, false);
                Shape::new(c.out_channels, out(input.h)?, out(input.w)?)
            }
            Op::MaxPool(p) | Op::AvgPool(p) => {
                let out = |size| super::window_out(size, p.kernel, p.stride, p.padding, 1, p.ceil_mode);
                Shape::new(input.c, out(input.h)?, out(input.w)?)
            }
            Op::BatchNorm { .. } | Op::LayerNorm { .. } | Op::LayerScale | Op::Act(_) | Op::Add | Op::ScaleChannels | Op::Softmax => input,
            Op::GlobalAvgPool => Shape::new(input.c, 1, 1),
            Op::Flatten => Shape::new(input.checked_len()?, 1, 1),
            Op::Linear { out_features, .. } => Shape::new(out_features, 1, 1),
            Op::PadChannels { before, after, stride } => {
                let c = input.c.checked_add(before)?.checked_add(after)?;
                let sub = |size: usize| super::window_out(size, 1, stride, 0, 1, false);
                Shape::new(c, sub(input.h)?, sub(input.w)?)
            }
        };
        shape.checked_len().filter(|&l| l > 0).map(|_| shape)
    }

    /// The weights this op reads (role and shape), given its input shape.
    pub fn param_shapes(&self, input: Shape) -> Vec<(ParamRole, Vec<usize>)> {
        let slot = |role: ParamRole, shape: Vec<usize>| (role, shape);
        match *self {
            Op::Conv2d(c) => {
                let weight =
                    if c.weight_2d { vec![c.out_channels, input.c] } else { vec![c.out_channels, input.c / c.groups, c.kernel, c.kernel] };
                let mut v = vec![slot(ParamRole::Weight, weight)];
                if c.bias {
                    v.push(slot(ParamRole::Bias, vec![c.out_channels]));
                }
                v
            }
            Op::BatchNorm { .. } => [ParamRole::Weight, ParamRole::Bias, ParamRole::RunningMean, ParamRole::RunningVar]
                .into_iter()
                .map(|r| slot(r, vec![input.c]))
                .collect(),
            Op::LayerNorm { .. } => vec![slot(ParamRole::Weight, vec![input.c]), slot(ParamRole::Bias, vec![input.c])],
            Op::LayerScale => vec![slot(ParamRole::Value, vec![input.c, 1, 1])],
            Op::Linear { out_features, bias } => {
                let mut v = vec![slot(ParamRole::Weight, vec![out_features, input.len()])];
                if bias {
                    v.push(slot(ParamRole::Bias, vec![out_features]));
                }
                v
            }
            _ => vec![],
        }
    }

    /// Multiply-accumulates for one sample (saturating: a count past `u64::MAX` shows as
    /// `u64::MAX`, never as a wrapped small number).
    pub fn macs(&self, input: Shape, output: Shape) -> u64 {
        let product = |factors: &[usize]| factors.iter().fold(1u64, |acc, &f| acc.saturating_mul(f as u64));
        match *self {
            Op::Conv2d(c) => product(&[output.c, output.h, output.w, input.c / c.groups, c.kernel, c.kernel]),
            Op::Linear { out_features, .. } => product(&[input.c, input.h, input.w, out_features]),
            _ => 0,
        }
    }

    /// The attributes, as shown in the dump.
    pub fn attrs(&self) -> String {
        match *self {
            Op::Conv2d(c) => {
                let mut s = format!("out={}, k={}", c.out_channels, c.kernel);
                for (n, v, d) in [("s", c.stride, 1), ("p", c.padding, 0), ("d", c.dilation, 1), ("groups", c.groups, 1)] {
                    if v != d {
                        s.push_str(&format!(", {n}={v}"));
                    }
                }
                if c.bias {
                    s.push_str(", bias");
                }
                if c.residual {
                    s.push_str(", +residual");
                }
                if let Some(a) = c.act {
                    s.push_str(&format!(", {}", a.name()));
                }
                s
            }
            Op::BatchNorm { eps } => format!("eps={eps:e}"),
            Op::MaxPool(p) | Op::AvgPool(p) => {
                let mut s = format!("k={}, s={}, p={}", p.kernel, p.stride, p.padding);
                if p.ceil_mode {
                    s.push_str(", ceil");
                }
                if matches!(self, Op::AvgPool(_)) && !p.count_include_pad {
                    s.push_str(", exclude_pad");
                }
                s
            }
            Op::Linear { out_features, bias } => {
                format!("out={out_features}{}", if bias { ", bias" } else { "" })
            }
            Op::PadChannels { before, after, stride } => format!("before={before}, after={after}, s={stride}"),
            Op::Shortcut(k) => match k {
                ShortcutKind::Identity => "identity".into(),
                ShortcutKind::Pad => "pad".into(),
                ShortcutKind::Projection { bn, always } | ShortcutKind::AvgDown { bn, always } => format!(
                    "{}{}{}",
                    if matches!(k, ShortcutKind::Projection { .. }) { "projection" } else { "avgdown" },
                    if always { ", always" } else { "" },
                    if bn { "" } else { ", no bn" }
                ),
            },
            _ => String::new(),
        }
    }
}
