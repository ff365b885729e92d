//! Lowering of built-in layers: convolution, batch norm, activations, pooling, linear.

use super::eval::{bind, bind_with, opt, req, Env, ParamSpec, Ty, Value};
use super::{Lowerer, Scope};
use crate::ast::Layer;
use crate::diag::{Diagnostic, Span};
use crate::ir::{Act, Conv, NodeId, Op, Pool, Shape};

/// The built-in ops, for hints.
pub(super) const BUILTINS: &[&str] = &[
    "conv",
    "bn",
    "relu",
    "relu6",
    "silu",
    "gelu",
    "sigmoid",
    "identity",
    "dropout",
    "maxpool",
    "avgpool",
    "global_avgpool",
    "flatten",
    "linear",
    "softmax",
    "stage",
    "seq",
];

const CONV: &[ParamSpec] = &[
    req(&["out"], Ty::Int),
    req(&["k", "kernel"], Ty::Int),
    opt(&["s", "stride"], Ty::Int, Value::Int(1)),
    opt(&["p", "padding"], Ty::Int, Value::Int(0)),
    opt(&["d", "dilation"], Ty::Int, Value::Int(1)),
    opt(&["groups"], Ty::Int, Value::Int(1)),
    opt(&["bias"], Ty::Bool, Value::Bool(false)),
];
const BN: &[ParamSpec] = &[opt(&["eps"], Ty::Float, Value::Float(1e-5))];
const DROPOUT: &[ParamSpec] = &[opt(&["p"], Ty::Float, Value::Float(0.5))];
const MAXPOOL: &[ParamSpec] = &[
    req(&["k", "kernel"], Ty::Int),
    req(&["s", "stride"], Ty::Int),
    opt(&["p", "padding"], Ty::Int, Value::Int(0)),
    opt(&["ceil"], Ty::Bool, Value::Bool(false)),
];
const AVGPOOL: &[ParamSpec] = &[
    req(&["k", "kernel"], Ty::Int),
    req(&["s", "stride"], Ty::Int),
    opt(&["p", "padding"], Ty::Int, Value::Int(0)),
    opt(&["ceil"], Ty::Bool, Value::Bool(false)),
    opt(&["count_include_pad"], Ty::Bool, Value::Bool(true)),
];
const LINEAR: &[ParamSpec] = &[req(&["out"], Ty::Int), opt(&["bias"], Ty::Bool, Value::Bool(true))];

/// The output size of a sliding window along one axis, as PyTorch computes it; `None` when
/// the window does not fit.
pub(crate) fn window_out(size: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<usize> {
    let span = d * (k - 1) + 1;
    let padded = size + 2 * p;
    if padded < span {
        return None;
    }
    let mut out = if ceil { (padded - span).div_ceil(s) + 1 } else { (padded - span) / s + 1 };
    // PyTorch: in ceil mode the last window must start inside the input or the left padding.
    if ceil && (out - 1) * s >= size + p {
        out -= 1;
    }
    (out > 0).then_some(out)
}

impl<'p> Lowerer<'p> {
    /// Whether a layer creates weights (and so needs a unique name).
    pub(super) fn has_params(&self, layer: &Layer) -> bool {
        matches!(layer.op.text.as_str(), "conv" | "bn" | "linear" | "stage" | "seq") || self.blocks.contains_key(layer.op.text.as_str())
    }

    /// Lowers one layer applied to `x`; `None` when it could not be lowered.
    pub(super) fn layer(&mut self, layer: &'p Layer, env: &Env, path: &str, x: NodeId) -> Option<NodeId> {
        let op = layer.op.text.as_str();
        if layer.body.is_some() && op != "seq" {
            self.diags.push(
                Diagnostic::error(layer.span, format!("`{op}` takes no `{{ ... }}` body")).help("only `seq` and shortcuts have bodies"),
            );
            return None;
        }
        let span = layer.span;
        let args = &layer.args;
        let diags = &mut self.diags;
        let act = |a| Some((Op::Act(a), None));
        let (op, shape) = match op {
            "conv" => {
                let b = bind(op, span, CONV, args, env, diags)?;
                return self.conv(&b, span, path, x);
            }
            "bn" => {
                let b = bind(op, span, BN, args, env, diags)?;
                (Op::BatchNorm { eps: b.float("eps") as f32 }, None)
            }
            "relu" | "relu6" | "silu" | "gelu" | "sigmoid" | "flatten" | "global_avgpool" | "softmax" | "identity" => {
                bind(op, span, &[], args, env, diags)?;
                match op {
                    "relu" => act(Act::Relu)?,
                    "relu6" => act(Act::Relu6)?,
                    "silu" => act(Act::Silu)?,
                    "gelu" => act(Act::Gelu)?,
                    "sigmoid" => act(Act::Sigmoid)?,
                    "flatten" => {
                        let s = self.graph.node(x).shape;
                        (Op::Flatten, Some(Shape::new(s.len(), 1, 1)))
                    }
                    "global_avgpool" => (Op::GlobalAvgPool, Some(Shape::new(self.graph.node(x).shape.c, 1, 1))),
                    "softmax" => (Op::Softmax, None),
                    _ => return Some(x),
                }
            }
            "dropout" => {
                // A no-op at inference; the argument is still checked.
                bind(op, span, DROPOUT, args, env, diags)?;
                return Some(x);
            }
            "maxpool" | "avgpool" => {
                let params = if op == "maxpool" { MAXPOOL } else { AVGPOOL };
                let b = bind_with(op, span, params, &["s"], args, env, diags)?;
                return self.pool(op, &b, span, path, x);
            }
            "linear" => {
                let b = bind(op, span, LINEAR, args, env, diags)?;
                let out = self.positive(&b, "out", span)?;
                (Op::Linear { out_features: out, bias: b.bool("bias") }, Some(Shape::new(out, 1, 1)))
            }
            "seq" => {
                bind(op, span, &[], args, env, diags)?;
                let Some(body) = &layer.body else {
                    self.diags.push(Diagnostic::error(span, "`seq` needs a body").help("write `seq { conv(...); bn; relu }`"));
                    return None;
                };
                let mut env = env.clone();
                return Some(self.body(body, &mut env, path, x, Scope::Sequential, None));
            }
            "stage" => return self.stage(layer, env, path, x),
            name => match self.blocks.get(name).copied() {
                Some(def) => return self.block_call(def, layer, &layer.args, env, path, x),
                None => {
                    self.unknown_op(layer);
                    return None;
                }
            },
        };
        let shape = shape.unwrap_or(self.graph.node(x).shape);
        Some(self.graph.push(op, vec![x], shape, path.to_string(), Some(span)))
    }

    /// A bound integer that must be at least 1.
    fn positive(&mut self, b: &super::eval::Bound, name: &str, call: Span) -> Option<usize> {
        self.at_least(b, name, 1, call)
    }

    fn at_least(&mut self, b: &super::eval::Bound, name: &str, min: i64, call: Span) -> Option<usize> {
        let v = b.int(name);
        if v < min {
            let span = b.span(name).unwrap_or(call);
            let what = if min == 1 { "at least 1" } else { "0 or more" };
            self.diags.push(Diagnostic::error(span, format!("`{name}` must be {what}, found {v}")).label(format!("this is {v}")));
            return None;
        }
        Some(v as usize)
    }

    /// Adds a convolution node, after checking its attributes against the input shape.
    pub(super) fn conv(&mut self, b: &super::eval::Bound, span: Span, path: &str, x: NodeId) -> Option<NodeId> {
        let out = self.positive(b, "out", span);
        let k = self.positive(b, "k", span);
        let s = self.positive(b, "s", span);
        let p = self.at_least(b, "p", 0, span);
        let d = self.positive(b, "d", span);
        let g = self.positive(b, "groups", span);
        let (out, k, s, p, d, g) = (out?, k?, s?, p?, d?, g?);
        let input = self.graph.node(x).shape;
        if input.c % g != 0 || out % g != 0 {
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
        let conv = Conv {
            out_channels: out,
            kernel: k,
            stride: s,
            padding: p,
            dilation: d,
            groups: g,
            bias: b.bool("bias"),
            residual: false,
            act: None,
        };
        let shape = self.spatial(span, "conv", input, k, s, p, d, false)?;
        Some(self.graph.push(Op::Conv2d(conv), vec![x], Shape::new(out, shape.0, shape.1), path.to_string(), Some(span)))
    }

    fn pool(&mut self, op: &str, b: &super::eval::Bound, span: Span, path: &str, x: NodeId) -> Option<NodeId> {
        let k = self.positive(b, "k", span)?;
        let s = match b.int_opt("s") {
            Some(_) => self.positive(b, "s", span)?,
            None => k,
        };
        let p = self.at_least(b, "p", 0, span)?;
        if 2 * p > k {
            let at = b.span("p").unwrap_or(span);
            self.diags.push(
                Diagnostic::error(at, format!("padding {p} is more than half the kernel size {k}"))
                    .help("PyTorch requires pad <= kernel / 2"),
            );
            return None;
        }
        let input = self.graph.node(x).shape;
        let ceil = b.bool("ceil");
        let (h, w) = self.spatial(span, op, input, k, s, p, 1, ceil)?;
        let pool = Pool { kernel: k, stride: s, padding: p, ceil_mode: ceil, count_include_pad: b.bool("count_include_pad") };
        let op = if op == "maxpool" { Op::MaxPool(pool) } else { Op::AvgPool(pool) };
        Some(self.graph.push(op, vec![x], Shape::new(input.c, h, w), path.to_string(), Some(span)))
    }

    /// The output height and width of a window op, or an error when it would be empty.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn spatial(
        &mut self,
        span: Span,
        op: &str,
        input: Shape,
        k: usize,
        s: usize,
        p: usize,
        d: usize,
        ceil: bool,
    ) -> Option<(usize, usize)> {
        match (window_out(input.h, k, s, p, d, ceil), window_out(input.w, k, s, p, d, ceil)) {
            (Some(h), Some(w)) => Some((h, w)),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        span,
                        format!(
                            "`{op}` would have an empty output: its input is {input} and the window is {k}x{k} (dilation {d}, padding {p})"
                        ),
                    )
                    .label("the spatial size shrinks to zero here")
                    .help("use a larger input (--input-shape), more padding, or fewer downsampling layers"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::window_out;

    #[test]
    fn window_sizes_match_pytorch() {
        assert_eq!(window_out(224, 7, 2, 3, 1, false), Some(112));
        assert_eq!(window_out(112, 3, 2, 1, 1, false), Some(56));
        assert_eq!(window_out(7, 2, 2, 0, 1, true), Some(4));
        assert_eq!(window_out(6, 3, 2, 1, 1, true), Some(4));
        assert_eq!(window_out(5, 2, 2, 0, 1, true), Some(3));
        assert_eq!(window_out(2, 3, 1, 0, 1, false), None);
        assert_eq!(window_out(10, 3, 1, 2, 2, false), Some(10));
    }
}
