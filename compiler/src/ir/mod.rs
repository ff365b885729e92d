//! The graph IR: an arena of nodes in topological order, addressed by [`NodeId`].
//!
//! **Invariants:** every operand id is smaller than its user's id (checked by [`Graph::verify`]);
//! every value has a static `[C, H, W]` shape, the batch being the only runtime dimension;
//! parameters are named slots ([`ParamSlot`]) whose keys are the PyTorch `state_dict` names.

mod dump;
mod op;
mod rewrite;
pub mod transform;

pub use op::{Act, Conv, Op, Pool, ShortcutKind};
pub use transform::Transform;

use crate::diag::Span;

/// Handle of a node in a [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A static per-sample shape: channels, height, width. Flat vectors are `[F, 1, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn new(c: usize, h: usize, w: usize) -> Shape {
        Shape { c, h, w }
    }

    /// Elements per sample.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}, {}]", self.c, self.h, self.w)
    }
}

/// What a parameter slot holds, in PyTorch's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    Weight,
    Bias,
    RunningMean,
    RunningVar,
}

impl ParamRole {
    /// The key suffix PyTorch uses.
    pub fn suffix(self) -> &'static str {
        match self {
            ParamRole::Weight => "weight",
            ParamRole::Bias => "bias",
            ParamRole::RunningMean => "running_mean",
            ParamRole::RunningVar => "running_var",
        }
    }

    /// Whether PyTorch counts it in `parameters()` (running statistics are buffers).
    pub fn is_trainable(self) -> bool {
        matches!(self, ParamRole::Weight | ParamRole::Bias)
    }
}

/// A named weight a node reads at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSlot {
    /// The full `state_dict` key, e.g. `layer1.0.conv1.weight`.
    pub key: String,
    pub role: ParamRole,
    pub shape: Vec<usize>,
}

impl ParamSlot {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
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
    pub params: Vec<ParamSlot>,
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
    /// The tensors of the weight file (`state_dict` keys), fixed at lowering: passes change
    /// what nodes read, never what the file must hold.
    pub weights: Vec<ParamSlot>,
    /// Load-time steps that derive the tensors nodes read from the file's tensors, in order.
    pub transforms: Vec<Transform>,
}

impl Graph {
    pub fn new(name: impl Into<String>, input: Shape) -> Graph {
        let input = Node { op: Op::Input, inputs: vec![], shape: input, name: "input".into(), span: None, params: vec![] };
        Graph { name: name.into(), nodes: vec![input], output: NodeId(0), marks: vec![], weights: vec![], transforms: vec![] }
    }

    /// Appends a node and returns its id; parameter slots are derived from the op and name
    /// and declared as tensors of the weight file (lowering's constructor).
    pub fn push(&mut self, op: Op, inputs: Vec<NodeId>, shape: Shape, name: String, span: Option<Span>) -> NodeId {
        let in_shape = inputs.first().map(|&i| self.node(i).shape);
        let params = in_shape.map(|s| op.param_slots(&name, s)).unwrap_or_default();
        self.weights.extend(params.iter().cloned());
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

    /// Every tensor of the weight file, in declaration order.
    pub fn params(&self) -> impl Iterator<Item = &ParamSlot> {
        self.weights.iter()
    }

    /// The tensors derived at load time by [`Graph::transforms`], with their shapes.
    pub fn derived(&self) -> Vec<ParamSlot> {
        self.transforms.iter().flat_map(|t| t.outputs(self)).collect()
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

    /// The number of trainable parameters, as `sum(p.numel() for p in model.parameters())`.
    pub fn param_count(&self) -> usize {
        self.params().filter(|p| p.role.is_trainable()).map(ParamSlot::numel).sum()
    }

    /// Multiply-accumulates of one sample (convolutions and linear layers).
    pub fn macs(&self) -> u64 {
        self.ids().map(|id| self.node_macs(id)).sum()
    }

    /// Multiply-accumulates of one node for one sample.
    pub fn node_macs(&self, id: NodeId) -> u64 {
        let n = self.node(id);
        let Some(&first) = n.inputs.first() else {
            return 0;
        };
        n.op.macs(self.node(first).shape, n.shape)
    }

    /// Checks the IR invariants. A failure is a compiler bug, not a user error.
    pub fn verify(&self) -> Result<(), String> {
        if !matches!(self.nodes.first().map(|n| &n.op), Some(Op::Input)) {
            return Err("node 0 is not the input".into());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for inp in &n.inputs {
                if inp.index() >= i {
                    return Err(format!("node %{i} ({}) uses %{} which does not come before it", n.name, inp.0));
                }
            }
            if n.op.arity() != n.inputs.len() {
                return Err(format!("node %{i} ({}) has {} inputs, its op takes {}", n.name, n.inputs.len(), n.op.arity()));
            }
            if n.shape.is_empty() {
                return Err(format!("node %{i} ({}) has an empty shape {}", n.name, n.shape));
            }
        }
        if self.output.index() >= self.nodes.len() {
            return Err("the output is not a node".into());
        }
        Ok(())
    }
}
