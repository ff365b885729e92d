//! Lowering of built-in layers through the op table (`builtins.rs`): bind the call's
//! arguments to the entry's parameters, check the numbers, build the IR op, and take the
//! output shape from the op's shape rule.

use super::builtins::{self, Lowering};
use super::eval::{bind_with, Bound, Env};
use super::{join, Lowerer, Scope};
use crate::ast::Layer;
use crate::diag::{Diagnostic, Span, Suggestion};
use crate::ir::{Conv, NodeId, Op, Pool, Shape};

impl<'p> Lowerer<'p> {
    /// Whether a layer creates weights (and so needs a unique name).
    pub(super) fn has_params(&self, layer: &Layer) -> bool {
        builtins::find(&layer.op.text).map_or_else(|| self.blocks.contains_key(layer.op.text.as_str()), |b| b.weights)
    }

    /// Lowers one layer applied to `x`; `None` when it could not be lowered.
    pub(super) fn layer(&mut self, layer: &'p Layer, env: &Env, path: &str, x: NodeId) -> Option<NodeId> {
        let name = layer.op.text.as_str();
        let Some(builtin) = builtins::find(name) else {
            if layer.body.is_some() && self.blocks.contains_key(name) {
                self.diags.push(
                    Diagnostic::error(layer.span, format!("block `{name}` takes no `{{ ... }}` body"))
                        .help("only `seq` and shortcuts have bodies"),
                );
                return None;
            }
            return match self.blocks.get(name).copied() {
                Some(def) => self.block_call(def, layer, &layer.args, env, path, x),
                None => {
                    self.unknown_op(layer);
                    None
                }
            };
        };
        if layer.body.is_some() && !matches!(builtin.lowering, Lowering::Seq | Lowering::Gate) {
            self.diags.push(
                Diagnostic::error(layer.span, format!("`{name}` takes no `{{ ... }}` body"))
                    .help("only `seq`, `gate` and shortcuts have bodies"),
            );
            return None;
        }
        let span = layer.span;
        // `stage` binds its own arguments (a block's, passed through).
        if builtin.lowering == Lowering::Stage {
            return self.stage(layer, env, path, x);
        }
        let b = bind_with(name, span, builtin.params, builtin.optional, &layer.args, env, &mut self.diags)?;
        let input = self.graph.node(x).shape;
        let op = match builtin.lowering {
            Lowering::Conv => self.conv_op(&b, span, input)?,
            Lowering::BatchNorm => Op::BatchNorm { eps: self.float_in(&b, "eps", span, f64::MIN_POSITIVE, 1.0)? as f32 },
            Lowering::LayerNorm => Op::LayerNorm { eps: self.float_in(&b, "eps", span, f64::MIN_POSITIVE, 1.0)? as f32 },
            Lowering::LayerScale => Op::LayerScale,
            Lowering::Pointwise => Op::Conv2d(Conv {
                out_channels: self.positive(&b, "out", span)?,
                kernel: 1,
                stride: 1,
                padding: 0,
                dilation: 1,
                groups: 1,
                bias: b.bool("bias"),
                weight_2d: true,
                residual: false,
                act: None,
            }),
            Lowering::Act(a) => Op::Act(a),
            Lowering::Nothing => {
                if builtin.params.iter().any(|p| p.names[0] == "p") {
                    self.float_in(&b, "p", span, 0.0, 1.0)?;
                }
                return Some(x);
            }
            Lowering::MaxPool => Op::MaxPool(self.pool(&b, span)?),
            Lowering::AvgPool => Op::AvgPool(self.pool(&b, span)?),
            Lowering::GlobalAvgPool => Op::GlobalAvgPool,
            Lowering::Flatten => Op::Flatten,
            Lowering::Linear => Op::Linear { out_features: self.positive(&b, "out", span)?, bias: b.bool("bias") },
            Lowering::Softmax => Op::Softmax,
            Lowering::Seq => {
                let Some(body) = &layer.body else {
                    self.diags.push(Diagnostic::error(span, "`seq` needs a body").help("write `seq { conv(...); bn; relu }`"));
                    return None;
                };
                let mut env = env.clone();
                return Some(self.body(body, &mut env, path, x, Scope::Sequential, None));
            }
            Lowering::Gate => {
                let Some(body) = &layer.body else {
                    self.diags.push(
                        Diagnostic::error(span, "`gate` needs a body")
                            .help("write `se: gate { global_avgpool; fc1: conv(c / 4, k = 1, bias = true); relu; fc2: conv(c, k = 1, bias = true); sigmoid }`"),
                    );
                    return None;
                };
                let mut env = env.clone();
                let before = self.diags.len();
                let factors = self.body(body, &mut env, path, x, Scope::Gate, None);
                if self.diags.len() != before {
                    return None;
                }
                let (shape, want) = (self.graph.node(factors).shape, Shape::new(input.c, 1, 1));
                if shape != want {
                    self.diags.push(
                        Diagnostic::error(span, format!("a gate's body must give one factor a channel, {want}; this one gives {shape}"))
                            .label("gate")
                            .help("pool first (`global_avgpool`), and give the last conv as many channels as the gate's input has"),
                    );
                    return None;
                }
                return Some(self.graph.push(Op::ScaleChannels, vec![x, factors], input, join(path, "scale"), Some(span)));
            }
            Lowering::Stage => unreachable!("handled above"),
        };
        self.apply(op, name, span, path, x)
    }

    /// Adds `op` applied to `x`, its shape from the op's shape rule, or reports why the op
    /// cannot apply to `x`'s shape.
    pub(super) fn apply(&mut self, op: Op, name: &str, span: Span, path: &str, x: NodeId) -> Option<NodeId> {
        let input = self.graph.node(x).shape;
        let Some(shape) = op.output_shape(input) else {
            self.shape_error(&op, name, span, input);
            return None;
        };
        if let Some(d) = self.too_large(name, &op, input, shape, span) {
            self.diags.push(d);
            return None;
        }
        Some(self.graph.push(op, vec![x], shape, path.to_string(), Some(span)))
    }

    /// An error when the op's output or one of its weights would have more than
    /// [`super::MAX_TENSOR_ELEMENTS`] elements.
    fn too_large(&self, name: &str, op: &Op, input: Shape, output: Shape, span: Span) -> Option<Diagnostic> {
        let limit = super::MAX_TENSOR_ELEMENTS;
        let weights_too_big = op
            .param_shapes(input)
            .into_iter()
            .any(|(_, shape)| shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > limit));
        let output_too_big = output.checked_len().is_none_or(|n| n > limit);
        (weights_too_big || output_too_big).then(|| {
            let what = if weights_too_big { "a weight tensor" } else { "an output" };
            Diagnostic::error(span, format!("`{name}` would need {what} of more than {limit} elements a sample (its output is {output})"))
                .label("too large")
                .help("check the channel counts and the input size")
        })
    }

    /// (Groups that do not divide the channels are reported by `conv_op`, at the argument.)
    fn shape_error(&mut self, op: &Op, name: &str, span: Span, input: Shape) {
        let d = match op {
            Op::Conv2d(_) | Op::MaxPool(_) | Op::AvgPool(_) if !self.window_fits(op, input) => {
                let (kernel, padding, dilation) = match op {
                    Op::Conv2d(c) => (c.kernel, c.padding, c.dilation),
                    Op::MaxPool(p) | Op::AvgPool(p) => (p.kernel, p.padding, 1),
                    _ => unreachable!("matched above"),
                };
                Diagnostic::error(
                    span,
                    format!(
                        "`{name}` would have an empty output: its input is {input} and the window is {kernel}x{kernel} (dilation {dilation}, padding {padding})"
                    ),
                )
                .label("the spatial size shrinks to zero here")
                .help("use a larger input, more padding, or fewer downsampling layers")
                .suggest(Suggestion::InputShape)
            }
            _ => Diagnostic::error(span, format!("`{name}` cannot apply to an input of shape {input}: the result is too large"))
                .label("too large"),
        };
        self.diags.push(d);
    }

    /// Whether a window op's window fits its input on both axes (else its output is empty).
    fn window_fits(&self, op: &Op, input: Shape) -> bool {
        let (k, s, p, d, ceil) = match op {
            Op::Conv2d(c) => (c.kernel, c.stride, c.padding, c.dilation, false),
            Op::MaxPool(q) | Op::AvgPool(q) => (q.kernel, q.stride, q.padding, 1, q.ceil_mode),
            _ => return true,
        };
        crate::ir::window_out(input.h, k, s, p, d, ceil).is_some() && crate::ir::window_out(input.w, k, s, p, d, ceil).is_some()
    }

    /// A bound number that must lie in `[min, max]` (and be finite), as PyTorch requires.
    fn float_in(&mut self, b: &Bound, name: &str, call: Span, min: f64, max: f64) -> Option<f64> {
        let v = b.float(name);
        if v.is_finite() && v >= min && v <= max {
            return Some(v);
        }
        let span = b.span(name).unwrap_or(call);
        let range = if min > 0.0 { format!("above 0 and at most {max}") } else { format!("{min} to {max}") };
        self.diags.push(Diagnostic::error(span, format!("`{name}` must be {range}, found {v}")).label(format!("this is {v}")));
        None
    }

    /// A bound integer that must be at least 1.
    fn positive(&mut self, b: &Bound, name: &str, call: Span) -> Option<usize> {
        self.at_least(b, name, 1, call)
    }

    /// A bound integer that must be at least `min` and at most [`super::MAX_DIM`].
    fn at_least(&mut self, b: &Bound, name: &str, min: i64, call: Span) -> Option<usize> {
        let v = b.int(name);
        let span = b.span(name).unwrap_or(call);
        if v < min {
            let what = if min == 1 { "at least 1" } else { "0 or more" };
            self.diags.push(Diagnostic::error(span, format!("`{name}` must be {what}, found {v}")).label(format!("this is {v}")));
            return None;
        }
        if v > super::MAX_DIM as i64 {
            self.diags.push(
                Diagnostic::error(span, format!("`{name}` = {v} is larger than resnetc supports ({})", super::MAX_DIM)).label("too large"),
            );
            return None;
        }
        Some(v as usize)
    }

    /// A convolution's attributes, each checked.
    pub(super) fn conv_op(&mut self, b: &Bound, span: Span, input: Shape) -> Option<Op> {
        let out = self.positive(b, "out", span);
        let k = self.positive(b, "k", span);
        let s = self.positive(b, "s", span);
        let p = self.at_least(b, "p", 0, span);
        let d = self.positive(b, "d", span);
        let g = self.positive(b, "groups", span);
        let (out, k, s, p, d, g) = (out?, k?, s?, p?, d?, g?);
        if !input.c.is_multiple_of(g) || !out.is_multiple_of(g) {
            let at = b.span("groups").unwrap_or(span);
            self.diags.push(
                Diagnostic::error(
                    at,
                    format!("groups = {g} must divide both the input channels ({}) and the output channels ({out})", input.c),
                )
                .label("does not divide the channels"),
            );
            return None;
        }
        Some(Op::Conv2d(Conv {
            out_channels: out,
            kernel: k,
            stride: s,
            padding: p,
            dilation: d,
            groups: g,
            bias: b.bool("bias"),
            weight_2d: false,
            residual: false,
            act: None,
        }))
    }

    /// A pooling window's attributes, each checked (`s` defaults to `k`).
    fn pool(&mut self, b: &Bound, span: Span) -> Option<Pool> {
        let k = self.positive(b, "k", span)?;
        let s = match b.int_opt("s") {
            Some(_) => self.positive(b, "s", span)?,
            None => k,
        };
        let p = self.at_least(b, "p", 0, span)?;
        if p > k / 2 {
            let at = b.span("p").unwrap_or(span);
            self.diags.push(
                Diagnostic::error(at, format!("padding {p} is more than half the kernel size {k}"))
                    .help("PyTorch requires pad <= kernel / 2"),
            );
            return None;
        }
        Some(Pool { kernel: k, stride: s, padding: p, ceil_mode: b.bool("ceil"), count_include_pad: b.bool("count_include_pad") })
    }
}
