//! `fuse`: an activation right after a convolution becomes the convolution's epilogue; a
//! residual add whose main-path input is a convolution becomes that convolution's epilogue
//! (the other input its residual operand), and the activation after the add follows it in.
//! After `fold_bn`, a ResNet's blocks become two or three fused convolutions each.

use super::PassReport;
use crate::ir::{Graph, NodeId, Op};

pub fn run(graph: &mut Graph) -> PassReport {
    let mut users = graph.users();
    let n = graph.nodes.len();
    let mut keep = vec![true; n];
    let mut forward: Vec<NodeId> = graph.ids().collect();
    let resolve = |forward: &[NodeId], mut id: NodeId| {
        while forward[id.index()] != id {
            id = forward[id.index()];
        }
        id
    };
    let (mut acts, mut adds) = (0, 0);
    for id in graph.ids() {
        let inputs: Vec<NodeId> = graph.node(id).inputs.iter().map(|&i| resolve(&forward, i)).collect();
        let fused_into = match graph.node(id).op {
            Op::Act(a) => {
                let src = inputs[0];
                let Op::Conv2d(mut c) = graph.node(src).op else { continue };
                if users[src.index()] != 1 || c.act.is_some() {
                    continue;
                }
                c.act = Some(a);
                graph.nodes[src.index()].op = Op::Conv2d(c);
                acts += 1;
                src
            }
            Op::Add => {
                // The main path is the first operand; fall back to the shortcut's conv.
                let candidate = [0, 1].into_iter().find(|&k| {
                    matches!(graph.node(inputs[k]).op, Op::Conv2d(c) if !c.residual && c.act.is_none()) && users[inputs[k].index()] == 1
                });
                let Some(k) = candidate else { continue };
                let (conv, other) = (inputs[k], inputs[1 - k]);
                let Op::Conv2d(mut c) = graph.node(conv).op else { continue };
                c.residual = true;
                let node = &mut graph.nodes[conv.index()];
                node.op = Op::Conv2d(c);
                node.inputs.push(other);
                adds += 1;
                conv
            }
            _ => continue,
        };
        keep[id.index()] = false;
        forward[id.index()] = fused_into;
        // The fused node now has the readers of the node it absorbed.
        users[fused_into.index()] = users[fused_into.index()] - 1 + users[id.index()];
    }
    graph.rebuild(&keep, &forward);
    PassReport {
        pass: "fuse",
        changed: acts + adds,
        summary: format!("fused {acts} activations and {adds} residual adds into convolution epilogues"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_equivalent, lower, SMALL};
    use crate::ir::Op;

    #[test]
    fn after_fold_bn_only_convs_and_the_head_remain() {
        let before = lower(SMALL);
        let mut after = before.clone();
        super::super::fold_bn::run(&mut after);
        let r = super::run(&mut after);
        assert_eq!(r.changed, 1 + 3 * 2 + 3, "{}", r.summary);
        let kinds: Vec<&str> = after.nodes.iter().skip(1).map(|n| n.op.kind()).collect();
        assert!(kinds.iter().all(|k| matches!(*k, "conv2d" | "global_avg_pool" | "linear")), "{kinds:?}");
        assert_equivalent(&before, &after);
    }

    #[test]
    fn fuses_without_fold_bn_where_it_can() {
        // Without folding, bn sits between conv and relu: only the adds may fuse (they
        // cannot either: their inputs are batch norms). Nothing changes, nothing breaks.
        let before = lower(SMALL);
        let mut after = before.clone();
        super::run(&mut after);
        assert!(after.nodes.iter().any(|n| matches!(n.op, Op::Add)));
        assert_equivalent(&before, &after);
    }

    #[test]
    fn snapshot_after_fuse() {
        let mut g = lower(SMALL);
        super::super::fold_bn::run(&mut g);
        super::run(&mut g);
        insta::assert_snapshot!(g.dump());
    }
}
