//! `fold_bn`: an inference batch norm right after a convolution (whose only reader it is)
//! becomes the convolution's weight scale and bias. The new weight and bias are derived at
//! load time by a [`Transform::FoldBn`] step; the weight file does not change.

use super::PassReport;
use crate::ir::{Graph, NodeId, Op, ParamRole, ParamSlot, Transform};

pub fn run(graph: &mut Graph) -> PassReport {
    let users = graph.users();
    let n = graph.nodes.len();
    let mut keep = vec![true; n];
    let mut forward: Vec<NodeId> = graph.ids().collect();
    let mut folded = 0;
    for id in graph.ids() {
        let Op::BatchNorm { eps } = graph.node(id).op else { continue };
        let src = graph.node(id).inputs[0];
        let Op::Conv2d(conv) = graph.node(src).op else { continue };
        if users[src.index()] != 1 || conv.residual || conv.act.is_some() {
            continue;
        }
        let key = |node: NodeId, role: ParamRole| graph.node(node).params.iter().find(|p| p.role == role).map(|p| p.key.clone());
        let bn = [ParamRole::Weight, ParamRole::Bias, ParamRole::RunningMean, ParamRole::RunningVar]
            .map(|r| key(id, r).expect("invariant: batch norm has four slots"));
        let weight = key(src, ParamRole::Weight).expect("invariant: a conv has a weight");
        let bias = key(src, ParamRole::Bias);
        let bn_name = graph.node(id).name.clone();
        let out_weight = format!("{weight}+{bn_name}");
        let out_bias = format!("{}.bias+{bn_name}", graph.node(src).name);
        let shape = graph.node(src).params[0].shape.clone();
        graph.transforms.push(Transform::FoldBn { weight, bias, bn, eps, out_weight: out_weight.clone(), out_bias: out_bias.clone() });
        let node = &mut graph.nodes[src.index()];
        node.op = Op::Conv2d(crate::ir::Conv { bias: true, ..conv });
        node.params = vec![
            ParamSlot { key: out_weight, role: ParamRole::Weight, shape: shape.clone() },
            ParamSlot { key: out_bias, role: ParamRole::Bias, shape: vec![shape[0]] },
        ];
        keep[id.index()] = false;
        forward[id.index()] = src;
        folded += 1;
    }
    graph.rebuild(&keep, &forward);
    PassReport { pass: "fold_bn", changed: folded, summary: format!("folded {folded} batch norms into convolutions") }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_equivalent, lower, SMALL};

    fn check(spec: &str, folded: usize) {
        let before = lower(spec);
        let mut after = before.clone();
        let report = super::run(&mut after);
        assert_eq!(report.changed, folded);
        assert!(!after.nodes.iter().any(|n| matches!(n.op, crate::ir::Op::BatchNorm { .. })) || folded == 0);
        assert_equivalent(&before, &after);
    }

    #[test]
    fn folds_every_conv_bn_pair() {
        check(SMALL, 8);
    }

    #[test]
    fn leaves_a_bn_whose_conv_has_other_readers() {
        let spec =
            "network n { input [2, 6, 6]\n conv1: conv(4, k = 3, p = 1)\n bn1: bn\n relu\n bn2: bn\n global_avgpool\n fc: linear(3) }";
        let before = lower(spec);
        let mut after = before.clone();
        assert_eq!(super::run(&mut after).changed, 1);
        // bn2 follows a relu: it stays.
        assert_eq!(after.nodes.iter().filter(|n| matches!(n.op, crate::ir::Op::BatchNorm { .. })).count(), 1);
        assert_equivalent(&before, &after);
    }

    #[test]
    fn snapshot_after_fold_bn() {
        let mut g = lower(SMALL);
        super::run(&mut g);
        insta::assert_snapshot!(g.dump());
    }
}
