//! `dce`: drops every node whose value does not reach the output.

use super::PassReport;
use crate::ir::{Graph, NodeId};

pub fn run(graph: &mut Graph) -> PassReport {
    let n = graph.nodes.len();
    let mut live = vec![false; n];
    live[graph.output.index()] = true;
    live[0] = true;
    for i in (0..n).rev() {
        if live[i] {
            for inp in &graph.nodes[i].inputs {
                live[inp.index()] = true;
            }
        }
    }
    let dropped = live.iter().filter(|&&l| !l).count();
    let forward: Vec<NodeId> = graph.ids().collect();
    graph.rebuild(&live, &forward);
    PassReport { pass: "dce", changed: dropped, summary: format!("removed {dropped} nodes that do not reach the output") }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_equivalent, lower};

    #[test]
    fn drops_a_branch_that_goes_nowhere() {
        let mut g = lower("network n { input [2, 6, 6]\n conv1: conv(4, k = 3, p = 1)\n relu\n global_avgpool\n fc: linear(3) }");
        let before = g.clone();
        // Make the relu unused: the pool reads the conv directly.
        let relu = g.nodes.iter().position(|n| n.name == "relu").unwrap();
        let pool = relu + 1;
        g.nodes[pool].inputs[0] = crate::ir::NodeId(relu as u32 - 1);
        let r = super::run(&mut g);
        assert_eq!(r.changed, 1);
        assert!(!g.nodes.iter().any(|n| n.name == "relu"));
        assert_eq!(g.verify(), Ok(()));
        let _ = before;
    }

    #[test]
    fn keeps_everything_that_matters() {
        let before = lower(super::super::tests::SMALL);
        let mut after = before.clone();
        assert_eq!(super::run(&mut after).changed, 0);
        assert_equivalent(&before, &after);
    }
}
