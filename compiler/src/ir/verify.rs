//! The IR verifier: the invariants every stage relies on. A failure is a compiler bug,
//! never a user error; the pass driver runs it after every pass.

use super::{Graph, NodeId, Op, Origin, TensorId};

/// A broken IR invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("node 0 is not the input")]
    NoInput,
    #[error("node %{node} ({name}) uses %{operand}, which does not come before it", node = .node.0, operand = .operand.0)]
    ForwardUse { node: NodeId, name: String, operand: NodeId },
    #[error("node %{node} ({name}) has {found} inputs, its op takes {expected}", node = .node.0)]
    Arity { node: NodeId, name: String, expected: usize, found: usize },
    #[error("node %{node} ({name}) has an empty shape", node = .node.0)]
    EmptyShape { node: NodeId, name: String },
    #[error("the output %{} is not a node", .0.0)]
    Output(NodeId),
    #[error("node %{node} ({name}) reads tensor #{tensor}, which does not exist", node = .node.0, tensor = .tensor.0)]
    DanglingTensor { node: NodeId, name: String, tensor: TensorId },
    #[error("tensor #{} of the weight file comes after a derived tensor", .0.0)]
    FileAfterDerived(TensorId),
    #[error("derived tensor #{} is not made by the transform at its place (two a transform, in order)", .0.0)]
    DerivedOutOfOrder(TensorId),
    #[error("node %{node} ({name}) has shape {found}, its op's shape rule gives {expected:?}", node = .node.0)]
    ShapeRule { node: NodeId, name: String, expected: Option<super::Shape>, found: super::Shape },
    #[error("a shortcut node (%{}) is left after the shortcut pass", .0.0)]
    UnexpandedShortcut(NodeId),
}

impl Graph {
    /// Checks the IR invariants.
    pub fn verify(&self) -> Result<(), VerifyError> {
        if !matches!(self.nodes.first().map(|n| &n.op), Some(Op::Input)) {
            return Err(VerifyError::NoInput);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let node = NodeId(i as u32);
            for &operand in &n.inputs {
                if operand.index() >= i {
                    return Err(VerifyError::ForwardUse { node, name: n.name.clone(), operand });
                }
            }
            if n.op.arity() != n.inputs.len() {
                return Err(VerifyError::Arity { node, name: n.name.clone(), expected: n.op.arity(), found: n.inputs.len() });
            }
            if n.shape.checked_len().is_none_or(|l| l == 0) {
                return Err(VerifyError::EmptyShape { node, name: n.name.clone() });
            }
            if !matches!(n.op, Op::Input | Op::Shortcut(_)) {
                let input = self.node(n.inputs[0]).shape;
                let expected = n.op.output_shape(input);
                // The second operand: an add's other summand, a fused conv's residual (same
                // shape), or a gate's factors (one a channel).
                let second = |i: NodeId| self.node(i).shape;
                let same = match n.op {
                    Op::ScaleChannels => n.inputs.get(1).is_some_and(|&i| second(i) == super::Shape::new(n.shape.c, 1, 1)),
                    _ => n.inputs.get(1).is_none_or(|&i| second(i) == n.shape),
                };
                if expected != Some(n.shape) || !same {
                    return Err(VerifyError::ShapeRule { node, name: n.name.clone(), expected, found: n.shape });
                }
            }
            if let Some(&tensor) = n.params.iter().find(|t| t.index() >= self.tensors.len()) {
                return Err(VerifyError::DanglingTensor { node, name: n.name.clone(), tensor });
            }
        }
        if self.output.index() >= self.nodes.len() {
            return Err(VerifyError::Output(self.output));
        }
        let files = self.tensors.iter().take_while(|t| t.origin == Origin::File).count();
        if let Some(i) = self.tensors[files..].iter().position(|t| t.origin == Origin::File) {
            return Err(VerifyError::FileAfterDerived(TensorId((files + i) as u32)));
        }
        let made: Vec<TensorId> = self.transforms.iter().flat_map(|t| t.outputs()).collect();
        let derived: Vec<TensorId> = (files..self.tensors.len()).map(|i| TensorId(i as u32)).collect();
        if made != derived {
            let at = made.iter().zip(&derived).position(|(a, b)| a != b).unwrap_or(made.len().min(derived.len()));
            return Err(VerifyError::DerivedOutOfOrder(TensorId((files + at) as u32)));
        }
        Ok(())
    }

    /// [`Graph::verify`], plus: no shortcut node is left (after the required pass).
    pub fn verify_expanded(&self) -> Result<(), VerifyError> {
        self.verify()?;
        match self.ids().find(|&id| matches!(self.node(id).op, Op::Shortcut(_))) {
            Some(id) => Err(VerifyError::UnexpandedShortcut(id)),
            None => Ok(()),
        }
    }
}
