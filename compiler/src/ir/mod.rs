//! The graph IR: two arenas addressed by typed handles, nodes in topological order
//! ([`NodeId`]) and the tensors they read ([`TensorId`]).
//!
//! **Invariants** (checked by [`Graph::verify`], whose failure is a compiler bug): every
//! operand id is smaller than its user's id; every value has a static `[C, H, W]` shape, the
//! batch being the only runtime dimension; the weight file's tensors come first in the
//! tensor arena, keyed by their PyTorch `state_dict` names, then the tensors derived at load
//! time, two a [`Transform`] in transform order, so that a tensor's id is its index in the
//! generated model's weights.

mod dump;
mod op;
mod rewrite;
pub mod shape;
pub mod transform;
mod verify;

pub use op::{Activation, Conv, Op, Pool, ShortcutKind};
pub use shape::{matching_stride, window_out, Expansion, Shape};
pub use transform::Transform;
pub use verify::VerifyError;

use crate::diag::Span;

/// Handle of a node in a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Handle of a tensor in a [`Graph`]'s tensor arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u32);

impl TensorId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a parameter slot holds, in PyTorch's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    Weight,
    Bias,
    RunningMean,
    RunningVar,
    /// A parameter that is the layer itself (`layer_scale`): keyed by the layer's path.
    Value,
}

impl ParamRole {
    /// The key suffix PyTorch uses.
    pub fn suffix(self) -> &'static str {
        match self {
            ParamRole::Weight => "weight",
            ParamRole::Bias => "bias",
            ParamRole::RunningMean => "running_mean",
            ParamRole::RunningVar => "running_var",
            ParamRole::Value => "",
        }
    }

    /// Whether PyTorch counts it in `parameters()` (running statistics are buffers).
    pub fn is_trainable(self) -> bool {
        matches!(self, ParamRole::Weight | ParamRole::Bias | ParamRole::Value)
    }
}

/// Where a tensor comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The weight file (a `state_dict` entry).
    File,
    /// A load-time [`Transform`] of other tensors.
    Derived,
}

/// A weight a node reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// For the file's tensors the full `state_dict` key (`layer1.0.conv1.weight`); for
    /// derived ones a name for dumps and generated code (`layer1.0.conv1.weight+bn1`).
    pub key: String,
    pub role: ParamRole,
    pub shape: Vec<usize>,
    pub origin: Origin,
}

impl Tensor {
    /// Elements (saturating: lowering only declares shapes whose count fits).
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }
}

/// One operation and its result.
#[derive(Debug, Clone)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub shape: Shape,
    /// Dotted layer path (`layer1.0.conv1`), the prefix of its parameter keys.
    pub name: String,
    /// Where the user wrote it (none for the input).
    pub span: Option<Span>,
    /// The tensors it reads, one a role.
    pub params: Vec<TensorId>,
}

/// A value the user may want to look at: the output of a top-level layer of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub name: String,
    pub node: NodeId,
}

/// A whole network.
#[derive(Debug, Clone)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    pub output: NodeId,
    /// Outputs of the network's top-level layers, in order.
    pub marks: Vec<Mark>,
    /// Every tensor: the weight file's (declared at lowering; passes change what nodes read,
    /// never what the file must hold), then the derived ones.
    pub tensors: Vec<Tensor>,
    /// Load-time steps that derive tensors from others, in order.
    pub transforms: Vec<Transform>,
}

impl Graph {
    pub fn new(name: impl Into<String>, input: Shape) -> Graph {
        let input = Node { op: Op::Input, inputs: vec![], shape: input, name: "input".into(), span: None, params: vec![] };
        Graph { name: name.into(), nodes: vec![input], output: NodeId(0), marks: vec![], tensors: vec![], transforms: vec![] }
    }

    /// Appends a node and returns its id; the tensors its op reads are declared as tensors
    /// of the weight file, keyed `{name}.{role}` (lowering's constructor).
    pub fn push(&mut self, op: Op, inputs: Vec<NodeId>, shape: Shape, name: String, span: Option<Span>) -> NodeId {
        let in_shape = inputs.first().map(|&i| self.node(i).shape);
        let shapes = in_shape.map(|s| op.param_shapes(s)).unwrap_or_default();
        let params = shapes
            .into_iter()
            .map(|(role, shape)| {
                let key = if role.suffix().is_empty() { name.clone() } else { format!("{name}.{}", role.suffix()) };
                self.add_tensor(Tensor { key, role, shape, origin: Origin::File })
            })
            .collect();
        self.nodes.push(Node { op, inputs, shape, name, span, params });
        let id = NodeId(self.nodes.len() as u32 - 1);
        self.output = id;
        id
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn input_shape(&self) -> Shape {
        self.nodes[0].shape
    }

    pub fn output_shape(&self) -> Shape {
        self.node(self.output).shape
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    /// Appends a tensor to the arena.
    pub fn add_tensor(&mut self, tensor: Tensor) -> TensorId {
        self.tensors.push(tensor);
        TensorId(self.tensors.len() as u32 - 1)
    }

    pub fn tensor(&self, id: TensorId) -> &Tensor {
        &self.tensors[id.index()]
    }

    /// Every tensor with its id.
    pub fn tensor_ids(&self) -> impl Iterator<Item = (TensorId, &Tensor)> {
        self.tensors.iter().enumerate().map(|(i, t)| (TensorId(i as u32), t))
    }

    /// Every tensor of the weight file, in declaration order.
    pub fn params(&self) -> impl Iterator<Item = &Tensor> {
        self.tensors.iter().filter(|t| t.origin == Origin::File)
    }

    /// The tensor of `role` node `id` reads, if it reads one.
    pub fn param(&self, id: NodeId, role: ParamRole) -> Option<TensorId> {
        self.node(id).params.iter().copied().find(|&t| self.tensor(t).role == role)
    }

    /// How many nodes read each node's value (the output counts as one reader).
    pub fn users(&self) -> Vec<usize> {
        let mut u = vec![0; self.nodes.len()];
        for n in &self.nodes {
            for i in &n.inputs {
                u[i.index()] += 1;
            }
        }
        u[self.output.index()] += 1;
        u
    }

    /// Nodes that run a kernel (all but the input).
    pub fn kernel_count(&self) -> usize {
        self.nodes.len() - 1
    }

    /// The number of trainable parameters, as `sum(p.numel() for p in model.parameters())`
    /// (saturating).
    pub fn param_count(&self) -> usize {
        self.params().filter(|p| p.role.is_trainable()).map(Tensor::numel).fold(0, usize::saturating_add)
    }

    /// Multiply-accumulates of one sample (convolutions and linear layers; saturating).
    pub fn macs(&self) -> u64 {
        self.ids().map(|id| self.node_macs(id)).fold(0, u64::saturating_add)
    }

    /// Multiply-accumulates of one node for one sample.
    pub fn node_macs(&self, id: NodeId) -> u64 {
        let n = self.node(id);
        let Some(&first) = n.inputs.first() else {
            return 0;
        };
        n.op.macs(self.node(first).shape, n.shape)
    }
}
