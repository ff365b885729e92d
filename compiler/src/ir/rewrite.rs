//! Rebuilding a graph after a pass removed nodes or added operands.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Graph, NodeId};

impl Graph {
    /// Drops the nodes with `keep[i] == false`, sends every use of node `i` to `forward[i]`
    /// (which must be kept), and renumbers the rest in a topological order that keeps the
    /// old order wherever it is already valid.
    pub fn rebuild(&mut self, keep: &[bool], forward: &[NodeId]) {
        let resolve = |mut id: NodeId| {
            // Forwarding may chain (a bn folded into a conv whose act was then fused).
            while forward[id.index()] != id {
                id = forward[id.index()];
            }
            id
        };
        let n = self.nodes.len();
        let mut inputs: Vec<Vec<NodeId>> = self.nodes.iter().map(|nd| nd.inputs.iter().map(|&i| resolve(i)).collect()).collect();
        // Stable Kahn's algorithm over the kept nodes.
        let mut indegree = vec![0usize; n];
        let mut users: Vec<Vec<usize>> = vec![vec![]; n];
        for i in (0..n).filter(|&i| keep[i]) {
            for inp in &inputs[i] {
                indegree[i] += 1;
                users[inp.index()].push(i);
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&i| keep[i] && indegree[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &u in &users[i] {
                indegree[u] -= 1;
                if indegree[u] == 0 {
                    ready.push(Reverse(u));
                }
            }
        }
        assert_eq!(order.len(), keep.iter().filter(|&&k| k).count(), "invariant: a pass made a cycle");
        let mut new_id = vec![NodeId(u32::MAX); n];
        for (new, &old) in order.iter().enumerate() {
            new_id[old] = NodeId(new as u32);
        }
        let mut old_nodes: Vec<Option<super::Node>> = std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
        for &old in &order {
            let mut node = old_nodes[old].take().expect("invariant: each node is placed once");
            node.inputs = std::mem::take(&mut inputs[old]).into_iter().map(|i| new_id[i.index()]).collect();
            self.nodes.push(node);
        }
        self.output = new_id[resolve(self.output).index()];
        for m in &mut self.marks {
            m.node = new_id[resolve(m.node).index()];
        }
        self.marks.retain(|m| m.node.0 != u32::MAX);
    }
}
