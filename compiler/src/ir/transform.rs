//! Load-time weight transforms: steps the generated `load` (and the interpreter) apply once
//! to derive the tensors nodes read from the tensors of the weight file.

use super::{Graph, ParamRole, ParamSlot};

/// One load-time step.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Folds an inference batch norm into a conv, with `s = gamma / sqrt(var + eps)` and
    /// `t = beta - mean * s`. After the conv (`input_groups == 0`), per output channel:
    /// `W' = W * s`, `b' = b * s + t`. Before it (`input_groups` = the conv's groups; exact
    /// only without padding), per input channel: `W' = W * s`, `b' = b + sum(W * t)`.
    FoldBn {
        weight: String,
        bias: Option<String>,
        /// gamma, beta, running mean, running variance.
        bn: [String; 4],
        eps: f32,
        input_groups: usize,
        out_weight: String,
        out_bias: String,
    },
}

impl Transform {
    /// The tensors this step creates, with their shapes.
    pub fn outputs(&self, graph: &Graph) -> Vec<ParamSlot> {
        match self {
            Transform::FoldBn { weight, out_weight, out_bias, .. } => {
                let shape = shape_of(graph, weight);
                let oc = shape.first().copied().unwrap_or(0);
                vec![
                    ParamSlot { key: out_weight.clone(), role: ParamRole::Weight, shape },
                    ParamSlot { key: out_bias.clone(), role: ParamRole::Bias, shape: vec![oc] },
                ]
            }
        }
    }

    /// The tensors this step reads.
    pub fn inputs(&self) -> Vec<&str> {
        match self {
            Transform::FoldBn { weight, bias, bn, .. } => {
                let mut v = vec![weight.as_str()];
                v.extend(bias.as_deref());
                v.extend(bn.iter().map(String::as_str));
                v
            }
        }
    }

    /// One line for dumps.
    pub fn describe(&self) -> String {
        match self {
            Transform::FoldBn { weight, bn, input_groups, out_weight, out_bias, .. } => {
                let side = if *input_groups == 0 { "" } else { " (before the conv)" };
                format!("fold_bn {weight} with {}{side} -> {out_weight}, {out_bias}", bn[0].trim_end_matches(".weight"))
            }
        }
    }
}

/// The shape of a file tensor or a derived one.
pub fn shape_of(graph: &Graph, key: &str) -> Vec<usize> {
    if let Some(p) = graph.weights.iter().find(|p| p.key == key) {
        return p.shape.clone();
    }
    graph.transforms.iter().flat_map(|t| t.outputs(graph)).find(|p| p.key == key).map(|p| p.shape).unwrap_or_default()
}
