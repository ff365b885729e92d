//! The built-in ops of the language: one table. An entry names the op, its parameters
//! with their defaults (bound by `eval::bind`), whether it creates weights (and so needs a
//! unique name), and how it lowers. Everything else about an op follows from the IR op it
//! lowers to: its shape rule (`Op::output_shape`), its weights (`Op::param_shapes`), its
//! interpreter kernel (`interp`) and its generated step (`codegen::ops`), each an
//! exhaustive `match` over `ir::Op`, so the compiler points at every place a new IR op
//! needs. A new activation is one entry here plus its `Activation` variant in the runtime.

use super::eval::{opt, req, ParamSpec, Ty, Value};
use crate::ir::Activation;

/// How an op lowers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lowering {
    Conv,
    /// `pointwise(out)`: a Linear applied at every pixel (a 1x1 conv, weight [out, in]).
    Pointwise,
    BatchNorm,
    LayerNorm,
    LayerScale,
    /// An elementwise activation (`Op::Act`).
    Act(Activation),
    /// Nothing at inference (`identity`, `dropout`): the input flows through.
    Nothing,
    MaxPool,
    AvgPool,
    GlobalAvgPool,
    Flatten,
    Linear,
    Softmax,
    /// `seq { ... }`: a numbered body.
    Seq,
    /// `stage(block, ...)`: repeated blocks.
    Stage,
    /// `gate { ... }`: the body, computed from the input, scales it channel by channel.
    Gate,
}

/// One built-in op.
#[derive(Debug)]
pub(super) struct Builtin {
    pub name: &'static str,
    pub params: &'static [ParamSpec],
    /// Parameters that may be left out although they have no default (`s` of pools, which
    /// defaults to `k`).
    pub optional: &'static [&'static str],
    /// It creates weights (directly or in its body): its name must be unique in its scope.
    pub weights: bool,
    pub lowering: Lowering,
}

const fn op(name: &'static str, params: &'static [ParamSpec], weights: bool, lowering: Lowering) -> Builtin {
    Builtin { name, params, optional: &[], weights, lowering }
}

const fn act(a: Activation) -> Builtin {
    op(a.name(), &[], false, Lowering::Act(a))
}

const POOL: &[ParamSpec] = &[
    req(&["k", "kernel"], Ty::Int),
    req(&["s", "stride"], Ty::Int),
    opt(&["p", "padding"], Ty::Int, Value::Int(0)),
    opt(&["ceil"], Ty::Bool, Value::Bool(false)),
];

/// Every built-in op, in the order the language tour lists them.
pub(super) const BUILTINS: &[Builtin] = &[
    op(
        "conv",
        &[
            req(&["out"], Ty::Int),
            req(&["k", "kernel"], Ty::Int),
            opt(&["s", "stride"], Ty::Int, Value::Int(1)),
            opt(&["p", "padding"], Ty::Int, Value::Int(0)),
            opt(&["d", "dilation"], Ty::Int, Value::Int(1)),
            opt(&["groups"], Ty::Int, Value::Int(1)),
            opt(&["bias"], Ty::Bool, Value::Bool(false)),
        ],
        true,
        Lowering::Conv,
    ),
    op("bn", &[opt(&["eps"], Ty::Float, Value::Float(1e-5))], true, Lowering::BatchNorm),
    op("layernorm", &[opt(&["eps"], Ty::Float, Value::Float(1e-6))], true, Lowering::LayerNorm),
    op("pointwise", &[req(&["out"], Ty::Int), opt(&["bias"], Ty::Bool, Value::Bool(true))], true, Lowering::Pointwise),
    op("layer_scale", &[], true, Lowering::LayerScale),
    act(Activation::Relu),
    act(Activation::Relu6),
    act(Activation::Silu),
    act(Activation::Gelu),
    act(Activation::Sigmoid),
    act(Activation::Hardswish),
    act(Activation::Hardsigmoid),
    op("identity", &[], false, Lowering::Nothing),
    op("dropout", &[opt(&["p"], Ty::Float, Value::Float(0.5))], false, Lowering::Nothing),
    op("stochastic_depth", &[opt(&["p"], Ty::Float, Value::Float(0.0))], false, Lowering::Nothing),
    op("permute", &[], false, Lowering::Nothing),
    Builtin { name: "maxpool", params: POOL, optional: &["s"], weights: false, lowering: Lowering::MaxPool },
    Builtin {
        name: "avgpool",
        params: &[
            req(&["k", "kernel"], Ty::Int),
            req(&["s", "stride"], Ty::Int),
            opt(&["p", "padding"], Ty::Int, Value::Int(0)),
            opt(&["ceil"], Ty::Bool, Value::Bool(false)),
            opt(&["count_include_pad"], Ty::Bool, Value::Bool(true)),
        ],
        optional: &["s"],
        weights: false,
        lowering: Lowering::AvgPool,
    },
    op("global_avgpool", &[], false, Lowering::GlobalAvgPool),
    op("flatten", &[], false, Lowering::Flatten),
    op("linear", &[req(&["out"], Ty::Int), opt(&["bias"], Ty::Bool, Value::Bool(true))], true, Lowering::Linear),
    op("softmax", &[], false, Lowering::Softmax),
    op("seq", &[], true, Lowering::Seq),
    op("gate", &[], true, Lowering::Gate),
    op("stage", &[], true, Lowering::Stage),
];

/// The built-in op named `name`.
pub(super) fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Every built-in op's name, for hints.
pub(super) fn names() -> impl Iterator<Item = &'static str> + Clone {
    BUILTINS.iter().map(|b| b.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_activation_is_an_op() {
        let names: Vec<&str> = names().collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
        for a in Activation::ALL {
            assert_eq!(find(a.name()).map(|b| b.lowering), Some(Lowering::Act(a)), "{a:?}");
        }
    }
}
