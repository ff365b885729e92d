//! Load-time weight transforms: steps the generated `load` (and the interpreter) apply once
//! to derive the tensors nodes read from other tensors.

use super::{Graph, TensorId};
pub use resnetc_runtime::model::FoldSide;

/// One load-time step.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Folds an inference batch norm into a conv, with `s = gamma / sqrt(var + eps)` and
    /// `t = beta - mean * s`. After the conv, per output channel: `W' = W * s`,
    /// `b' = b * s + t`. Before it (exact only without padding), per input channel:
    /// `W' = W * s`, `b' = b + sum(W * t)`.
    FoldBn {
        weight: TensorId,
        bias: Option<TensorId>,
        /// gamma, beta, running mean, running variance.
        bn: [TensorId; 4],
        eps: f32,
        side: FoldSide,
        out_weight: TensorId,
        out_bias: TensorId,
    },
}

impl Transform {
    /// The tensors this step creates, in the order it creates them.
    pub fn outputs(&self) -> Vec<TensorId> {
        match self {
            Transform::FoldBn { out_weight, out_bias, .. } => vec![*out_weight, *out_bias],
        }
    }

    /// The tensors this step reads.
    pub fn inputs(&self) -> Vec<TensorId> {
        match self {
            Transform::FoldBn { weight, bias, bn, .. } => {
                let mut v = vec![*weight];
                v.extend(*bias);
                v.extend(bn);
                v
            }
        }
    }

    /// One line for dumps.
    pub fn describe(&self, graph: &Graph) -> String {
        let key = |t: TensorId| graph.tensor(t).key.as_str();
        match self {
            Transform::FoldBn { weight, bn, side, out_weight, out_bias, .. } => {
                let side = if *side == FoldSide::After { "" } else { " (before the conv)" };
                format!(
                    "fold_bn {} with {}{side} -> {}, {}",
                    key(*weight),
                    key(bn[0]).trim_end_matches(".weight"),
                    key(*out_weight),
                    key(*out_bias)
                )
            }
        }
    }
}
