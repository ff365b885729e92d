//! The reference interpreter: executes a graph node by node with the runtime's plain kernels.
//!
//! It is the oracle every optimisation and the generated code are checked against, so it
//! stays direct: one kernel call per node, every value kept.

use std::collections::HashMap;

use ndarray::{Array2, Array4, ArrayView4};
use resnetc_runtime::kernels::{self, Activation, Conv2dParams, PoolParams};
use resnetc_runtime::Weights;

use crate::ir::{Act, Graph, NodeId, Op, ParamRole, Transform};

/// Why a graph could not run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InterpError {
    #[error("input has shape {found:?}, expected [N, {}, {}, {}] (any batch N >= 1)", .expected[0], .expected[1], .expected[2])]
    InputShape { expected: [usize; 3], found: [usize; 4] },
}

/// Every `state_dict` key the graph reads, with its shape: what a weight file must hold.
pub fn expected_weights(graph: &Graph) -> Vec<(String, Vec<usize>)> {
    graph.params().map(|p| (p.key.clone(), p.shape.clone())).collect()
}

/// Applies the graph's load-time transforms to the file's tensors: the derived tensors.
pub fn derive_weights(graph: &Graph, weights: &Weights) -> HashMap<String, Vec<f32>> {
    let mut derived: HashMap<String, Vec<f32>> = HashMap::new();
    for t in &graph.transforms {
        let get = |k: &str, d: &HashMap<String, Vec<f32>>| d.get(k).cloned().unwrap_or_else(|| weights.data(k).to_vec());
        match t {
            Transform::FoldBn { weight, bias, bn, eps, input_groups, out_weight, out_bias } => {
                let w = get(weight, &derived);
                let b = bias.as_deref().map(|k| get(k, &derived));
                let bn = bn.clone().map(|k| get(&k, &derived));
                let bn = [&bn[0][..], &bn[1][..], &bn[2][..], &bn[3][..]];
                let (fw, fb) = match *input_groups {
                    0 => kernels::fold_batch_norm(&w, b.as_deref(), bn, *eps),
                    g => {
                        let out_channels = crate::ir::transform::shape_of(graph, weight)[0];
                        kernels::fold_batch_norm_input(&w, b.as_deref(), out_channels, bn, *eps, g)
                    }
                };
                derived.insert(out_weight.clone(), fw);
                derived.insert(out_bias.clone(), fb);
            }
        }
    }
    derived
}

/// The values of one run, by node.
pub struct Execution {
    values: Vec<Array4<f32>>,
    output: NodeId,
}

impl Execution {
    /// The value a node computed, [N, C, H, W].
    pub fn value(&self, id: NodeId) -> &Array4<f32> {
        &self.values[id.index()]
    }

    /// The network's output flattened to [N, C*H*W].
    pub fn output(&self) -> Array2<f32> {
        flat(self.value(self.output))
    }
}

/// A value as [N, features].
pub fn flat(v: &Array4<f32>) -> Array2<f32> {
    let (n, c, h, w) = v.dim();
    Array2::from_shape_vec((n, c * h * w), v.iter().copied().collect()).expect("invariant: same element count")
}

/// Runs `graph` on `input` with `weights`, which must have been validated against
/// [`expected_weights`].
pub fn run(graph: &Graph, weights: &Weights, input: ArrayView4<f32>) -> Result<Execution, InterpError> {
    let s = graph.input_shape();
    let (n, c, h, w) = input.dim();
    if (c, h, w) != (s.c, s.h, s.w) || n == 0 {
        return Err(InterpError::InputShape { expected: [s.c, s.h, s.w], found: [n, c, h, w] });
    }
    let derived = derive_weights(graph, weights);
    let mut values: Vec<Array4<f32>> = Vec::with_capacity(graph.nodes.len());
    for id in graph.ids() {
        let node = graph.node(id);
        let x = |i: usize| values[node.inputs[i].index()].view();
        let param = |role: ParamRole| {
            node.params.iter().find(|p| p.role == role).map(|p| derived.get(&p.key).map_or_else(|| weights.data(&p.key), Vec::as_slice))
        };
        let weight = || param(ParamRole::Weight).expect("invariant: the op has a weight slot");
        let y = match &node.op {
            Op::Input => input.to_owned(),
            Op::Conv2d(cv) => {
                let p = Conv2dParams { stride: cv.stride, padding: cv.padding, dilation: cv.dilation, groups: cv.groups };
                let residual = cv.residual.then(|| x(1));
                kernels::conv2d_fused(
                    x(0),
                    weight(),
                    cv.out_channels,
                    cv.kernel,
                    param(ParamRole::Bias),
                    p,
                    residual,
                    cv.act.map(activation),
                )
            }
            Op::BatchNorm { eps } => {
                let get = |r| param(r).expect("invariant: batch norm has four slots");
                kernels::batch_norm(
                    x(0),
                    get(ParamRole::Weight),
                    get(ParamRole::Bias),
                    get(ParamRole::RunningMean),
                    get(ParamRole::RunningVar),
                    *eps,
                )
            }
            Op::Act(a) => kernels::activation(x(0), activation(*a)),
            Op::Add => kernels::add(x(0), x(1)),
            Op::MaxPool(p) => kernels::max_pool2d(x(0), pool(p)),
            Op::AvgPool(p) => kernels::avg_pool2d(x(0), pool(p)),
            Op::GlobalAvgPool => kernels::global_avg_pool(x(0)),
            Op::Flatten => kernels::flatten(x(0)),
            Op::Linear { out_features, .. } => kernels::linear(x(0), weight(), *out_features, param(ParamRole::Bias)),
            Op::PadChannels { before, after, stride } => kernels::pad_channels(x(0), *before, *after, *stride),
            Op::Softmax => kernels::softmax(x(0)),
            Op::Shortcut(_) => unreachable!("invariant: the shortcut pass expands every shortcut before execution"),
        };
        debug_assert_eq!(&y.shape()[1..], &[node.shape.c, node.shape.h, node.shape.w], "{}", node.name);
        values.push(y);
    }
    Ok(Execution { values, output: graph.output })
}

/// Runs `graph` and returns its output [N, features].
pub fn forward(graph: &Graph, weights: &Weights, input: ArrayView4<f32>) -> Result<Array2<f32>, InterpError> {
    Ok(run(graph, weights, input)?.output())
}

pub(crate) fn activation(a: Act) -> Activation {
    match a {
        Act::Relu => Activation::Relu,
        Act::Relu6 => Activation::Relu6,
        Act::Silu => Activation::Silu,
        Act::Gelu => Activation::Gelu,
        Act::Sigmoid => Activation::Sigmoid,
    }
}

fn pool(p: &crate::ir::Pool) -> PoolParams {
    PoolParams { kernel: p.kernel, stride: p.stride, padding: p.padding, ceil_mode: p.ceil_mode, count_include_pad: p.count_include_pad }
}
