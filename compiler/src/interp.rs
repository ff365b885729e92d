//! The reference interpreter: executes a graph node by node with the runtime's plain kernels.
//!
//! It is the oracle every optimisation and the generated code are checked against, so it
//! stays direct: one kernel call per node, every value kept.

use ndarray::{Array2, Array4, ArrayView4};
use resnetc_runtime::kernels::{self, Conv2dParams, PoolParams};
use resnetc_runtime::Weights;

use crate::ir::transform::FoldSide;
use crate::ir::{Graph, NodeId, Op, Origin, ParamRole, TensorId, Transform};

/// Why a graph could not run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InterpError {
    #[error("input has shape {found:?}, expected [N, {}, {}, {}] (any batch N >= 1)", .expected[0], .expected[1], .expected[2])]
    InputShape { expected: [usize; 3], found: [usize; 4] },
    #[error("the reference interpreter would need about {gib:.1} GiB for this input (it keeps every value); use a smaller batch or input")]
    TooLarge { gib: f64 },
}

/// The most floats the interpreter may hold at once (16 GiB).
pub const MAX_FLOATS: u128 = 1 << 32;

/// Floats the interpreter holds for a batch of `n`: every value, plus the largest im2col
/// buffer (one sample and group).
fn floats_needed(graph: &Graph, n: usize) -> u128 {
    let values: u128 = graph.nodes.iter().map(|v| v.shape.len() as u128).sum::<u128>() * n as u128;
    let im2col = graph
        .ids()
        .filter_map(|id| match graph.node(id).op {
            Op::Conv2d(c) => {
                let (x, y) = (graph.node(graph.node(id).inputs[0]).shape, graph.node(id).shape);
                Some((x.c / c.groups) as u128 * (c.kernel * c.kernel) as u128 * (y.h * y.w) as u128)
            }
            _ => None,
        })
        .max()
        .unwrap_or(0);
    values + im2col
}

/// Every `state_dict` key the graph reads, with its shape: what a weight file must hold.
pub fn expected_weights(graph: &Graph) -> Vec<(String, Vec<usize>)> {
    graph.params().map(|p| (p.key.clone(), p.shape.clone())).collect()
}

/// Every tensor of the graph by [`TensorId`]: the file's from `weights`, then the derived
/// ones, computed by the graph's load-time transforms.
pub fn tensor_values(graph: &Graph, weights: &Weights) -> Vec<Vec<f32>> {
    let mut values: Vec<Vec<f32>> =
        graph.tensors.iter().map(|t| if t.origin == Origin::File { weights.data(&t.key).to_vec() } else { vec![] }).collect();
    for t in &graph.transforms {
        match *t {
            Transform::FoldBn { weight, bias, bn, eps, side, out_weight, out_bias } => {
                let get = |id: TensorId| values[id.index()].as_slice();
                let bn = bn.map(get);
                let (fw, fb) = match side {
                    FoldSide::After => kernels::fold_batch_norm(get(weight), bias.map(get), bn, eps),
                    FoldSide::Before { groups } => {
                        let out_channels = graph.tensor(weight).shape[0];
                        kernels::fold_batch_norm_input(get(weight), bias.map(get), out_channels, bn, eps, groups)
                    }
                };
                values[out_weight.index()] = fw;
                values[out_bias.index()] = fb;
            }
        }
    }
    values
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
    let need = floats_needed(graph, n);
    if need > MAX_FLOATS {
        return Err(InterpError::TooLarge { gib: need as f64 * 4.0 / (1u64 << 30) as f64 });
    }
    let tensors = tensor_values(graph, weights);
    let mut values: Vec<Array4<f32>> = Vec::with_capacity(graph.nodes.len());
    for id in graph.ids() {
        let node = graph.node(id);
        let x = |i: usize| values[node.inputs[i].index()].view();
        let param = |role: ParamRole| graph.param(id, role).map(|t| tensors[t.index()].as_slice());
        let weight = || param(ParamRole::Weight).expect("invariant: the op has a weight slot");
        let y = match &node.op {
            Op::Input => input.to_owned(),
            Op::Conv2d(cv) => {
                let p = Conv2dParams { stride: cv.stride, padding: cv.padding, dilation: cv.dilation, groups: cv.groups };
                let residual = cv.residual.then(|| x(1));
                kernels::conv2d_fused(x(0), weight(), cv.out_channels, cv.kernel, param(ParamRole::Bias), p, residual, cv.act)
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
            Op::Act(a) => kernels::activation(x(0), *a),
            Op::Add => kernels::add(x(0), x(1)),
            Op::LayerNorm { eps } => {
                kernels::layer_norm(x(0), weight(), param(ParamRole::Bias).expect("invariant: layer norm has a bias"), *eps)
            }
            Op::LayerScale => kernels::scale_channels_by(x(0), param(ParamRole::Value).expect("invariant: a layer scale has its value")),
            Op::ScaleChannels => kernels::scale_channels(x(0), x(1)),
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

fn pool(p: &crate::ir::Pool) -> PoolParams {
    PoolParams { kernel: p.kernel, stride: p.stride, padding: p.padding, ceil_mode: p.ceil_mode, count_include_pad: p.count_include_pad }
}
