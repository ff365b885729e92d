//! Human- and machine-readable reports of a graph: the layer summary and the weight list.

use serde::Serialize;

use crate::ir::Graph;
use crate::Compiled;

/// One row of `resnetc summary`.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub name: String,
    pub op: String,
    /// Output shape `[N, C, H, W]`.
    pub shape: [usize; 4],
    pub params: usize,
    pub macs: u64,
}

/// The whole summary: one row a node, and totals.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub network: String,
    pub batch: usize,
    pub input: [usize; 4],
    pub total_params: usize,
    pub total_macs: u64,
    /// Kernel calls a forward pass makes (every node but the input).
    pub kernels: usize,
    /// Of which convolutions.
    pub convs: usize,
    /// The arena the generated code uses at this batch, in bytes (the memory plan's peak).
    pub arena_peak_bytes: usize,
    /// The largest total of values alive at one point, in bytes: no plan can use less.
    pub liveness_lower_bound_bytes: usize,
    /// Load-time weight transforms (batch norms folded).
    pub weight_transforms: usize,
    pub layers: Vec<LayerRow>,
}

impl Summary {
    /// The summary at `batch`, with the compilation's memory plan. Totals saturate rather
    /// than wrap.
    pub fn new(compiled: &Compiled, batch: usize) -> Summary {
        let (graph, plan) = (&compiled.graph, &compiled.memory);
        let b64 = batch as u64;
        let layers = graph
            .ids()
            .skip(1)
            .map(|id| {
                let n = graph.node(id);
                LayerRow {
                    name: n.name.clone(),
                    op: n.op.kind().to_string(),
                    shape: [batch, n.shape.c, n.shape.h, n.shape.w],
                    params: n.params.iter().map(|&t| graph.tensor(t)).filter(|p| p.role.is_trainable()).map(|p| p.numel()).sum(),
                    macs: graph.node_macs(id).saturating_mul(b64),
                }
            })
            .collect();
        let i = graph.input_shape();
        Summary {
            network: graph.name.clone(),
            batch,
            input: [batch, i.c, i.h, i.w],
            total_params: graph.param_count(),
            total_macs: graph.macs().saturating_mul(b64),
            kernels: graph.kernel_count(),
            convs: graph.nodes.iter().filter(|n| matches!(n.op, crate::ir::Op::Conv2d(_))).count(),
            arena_peak_bytes: plan.arena.saturating_mul(batch).saturating_mul(4),
            liveness_lower_bound_bytes: plan.lower_bound.saturating_mul(batch).saturating_mul(4),
            weight_transforms: graph.transforms.len(),
            layers,
        }
    }

    /// A fixed-width table.
    pub fn to_table(&self) -> String {
        let shape = |s: &[usize; 4]| format!("[{}, {}, {}, {}]", s[0], s[1], s[2], s[3]);
        let name_w = self.layers.iter().map(|l| l.name.len()).max().unwrap_or(4).max(5);
        let mut out = format!("network {}  input {}\n", self.network, shape(&self.input));
        out.push_str(&format!("{:<name_w$}  {:<15}  {:<20}  {:>12}  {:>15}\n", "layer", "op", "output", "params", "MACs"));
        out.push_str(&format!("{}\n", "-".repeat(name_w + 70)));
        for l in &self.layers {
            out.push_str(&format!(
                "{:<name_w$}  {:<15}  {:<20}  {:>12}  {:>15}\n",
                l.name,
                l.op,
                shape(&l.shape),
                group(l.params as u64),
                group(l.macs)
            ));
        }
        out.push_str(&format!("{}\n", "-".repeat(name_w + 70)));
        out.push_str(&format!("total params: {} ({:.2} M)\n", group(self.total_params as u64), self.total_params as f64 / 1e6));
        out.push_str(&format!(
            "total MACs:   {} ({:.3} G) at batch {}\n",
            group(self.total_macs),
            self.total_macs as f64 / 1e9,
            self.batch
        ));
        out.push_str(&format!(
            "kernels:      {} ({} convolutions), {} load-time weight transforms\n",
            self.kernels, self.convs, self.weight_transforms
        ));
        out.push_str(&format!(
            "memory:       arena peak {:.2} MiB, liveness lower bound {:.2} MiB ({:.3}x)\n",
            self.arena_peak_bytes as f64 / 1048576.0,
            self.liveness_lower_bound_bytes as f64 / 1048576.0,
            self.arena_peak_bytes as f64 / self.liveness_lower_bound_bytes.max(1) as f64
        ));
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("invariant: a summary serialises")
    }
}

/// `12345678` -> `12,345,678`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Every `state_dict` key the model expects with its shape, one a line: `key [d0, d1, ...]`.
pub fn params_listing(graph: &Graph) -> String {
    graph.params().map(|p| format!("{} [{}]\n", p.key, p.shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_digits_by_thousands() {
        assert_eq!(super::group(11689512), "11,689,512");
        assert_eq!(super::group(512), "512");
        assert_eq!(super::group(1000), "1,000");
    }
}
