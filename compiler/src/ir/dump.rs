//! Text and Graphviz renderings of a graph. The text form is what snapshot tests compare.

use std::fmt::Write;

use super::Graph;

impl Graph {
    /// One node a line: `%id name = op(inputs; attrs) -> [C, H, W]`.
    pub fn dump(&self) -> String {
        let mut s = format!("graph {} input {} output %{}\n", self.name, self.input_shape(), self.output.0);
        for id in self.ids() {
            let n = self.node(id);
            let inputs: Vec<String> = n.inputs.iter().map(|i| format!("%{}", i.0)).collect();
            let attrs = n.op.attrs();
            let sep = if inputs.is_empty() || attrs.is_empty() { "" } else { "; " };
            let _ = writeln!(s, "%{} {} = {}({}{sep}{attrs}) -> {}", id.0, n.name, n.op.kind(), inputs.join(", "), n.shape);
        }
        for t in &self.transforms {
            let _ = writeln!(s, "load: {}", t.describe(self));
        }
        s
    }

    /// Graphviz `dot` source.
    pub fn to_dot(&self) -> String {
        let mut s = format!("digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n", self.name);
        for id in self.ids() {
            let n = self.node(id);
            let attrs = n.op.attrs();
            let _ = writeln!(
                s,
                "  n{} [label=\"{}\\n{}{}{}\\n{}\"];",
                id.0,
                n.name,
                n.op.kind(),
                if attrs.is_empty() { "" } else { " " },
                attrs,
                n.shape
            );
            for i in &n.inputs {
                let _ = writeln!(s, "  n{} -> n{};", i.0, id.0);
            }
        }
        s.push_str("}\n");
        s
    }
}
