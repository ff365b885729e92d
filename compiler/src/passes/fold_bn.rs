//! `fold_bn`: an inference batch norm right after a convolution (whose only reader it is)
//! becomes the convolution's weight scale and bias; one right before a convolution without
//! padding (its only reader) folds into that convolution's input channels, which is exact
//! there. The new weight and bias are derived at load time by [`Transform::FoldBn`] steps;
//! the weight file does not change.

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
        let Op::Conv2d(conv) = graph.node(src).op else {
            if fold_into_next(graph, id, eps, &users) {
                keep[id.index()] = false;
                forward[id.index()] = src;
                folded += 1;
            }
            continue;
        };
        if users[src.index()] != 1 || conv.residual || conv.act.is_some() {
            if fold_into_next(graph, id, eps, &users) {
                keep[id.index()] = false;
                forward[id.index()] = src;
                folded += 1;
            }
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
        graph.transforms.push(Transform::FoldBn {
            weight,
            bias,
            bn,
            eps,
            input_groups: 0,
            out_weight: out_weight.clone(),
            out_bias: out_bias.clone(),
        });
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

/// Folds batch norm `bn` into the convolution that is its only reader, when that reads it
/// as its main input and has no padding. Returns whether it did.
fn fold_into_next(graph: &mut Graph, bn: NodeId, eps: f32, users: &[usize]) -> bool {
    if users[bn.index()] != 1 || graph.output == bn {
        return false;
    }
    let Some(next) = graph.ids().find(|&i| graph.node(i).inputs.contains(&bn)) else { return false };
    let Op::Conv2d(conv) = graph.node(next).op else { return false };
    if conv.padding != 0 || graph.node(next).inputs[0] != bn || graph.node(next).inputs.iter().filter(|&&i| i == bn).count() != 1 {
        return false;
    }
    let key = |node: NodeId, role: ParamRole| graph.node(node).params.iter().find(|p| p.role == role).map(|p| p.key.clone());
    let bn_keys = [ParamRole::Weight, ParamRole::Bias, ParamRole::RunningMean, ParamRole::RunningVar]
        .map(|r| key(bn, r).expect("invariant: batch norm has four slots"));
    let weight = key(next, ParamRole::Weight).expect("invariant: a conv has a weight");
    let bias = key(next, ParamRole::Bias);
    let bn_name = graph.node(bn).name.clone();
    let out_weight = format!("{bn_name}+{weight}");
    let out_bias = format!("{bn_name}+{}.bias", graph.node(next).name);
    let shape = graph.node(next).params[0].shape.clone();
    graph.transforms.push(Transform::FoldBn {
        weight,
        bias,
        bn: bn_keys,
        eps,
        input_groups: conv.groups,
        out_weight: out_weight.clone(),
        out_bias: out_bias.clone(),
    });
    let node = &mut graph.nodes[next.index()];
    node.op = Op::Conv2d(crate::ir::Conv { bias: true, ..conv });
    node.params = vec![
        ParamSlot { key: out_weight, role: ParamRole::Weight, shape: shape.clone() },
        ParamSlot { key: out_bias, role: ParamRole::Bias, shape: vec![shape[0]] },
    ];
    true
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
    fn folds_a_bn_into_the_unpadded_conv_after_it() {
        // bn2 reads the relu (no conv before it) and feeds a 1x1 conv: folded forward.
        // bn3 feeds a padded 3x3 conv: not exact, kept.
        let spec = "network n { input [4, 6, 6]\n conv1: conv(4, k = 3, p = 1)\n relu\n bn2: bn\n conv2: conv(8, k = 1, groups = 2)\n relu\n bn3: bn\n conv3: conv(8, k = 3, p = 1)\n global_avgpool\n fc: linear(3) }";
        let before = lower(spec);
        let mut after = before.clone();
        assert_eq!(super::run(&mut after).changed, 1);
        let bns: Vec<&str> =
            after.nodes.iter().filter(|n| matches!(n.op, crate::ir::Op::BatchNorm { .. })).map(|n| n.name.as_str()).collect();
        assert_eq!(bns, ["bn3"]);
        assert!(after.transforms.iter().any(|t| t.describe().contains("(before the conv)")));
        assert_equivalent(&before, &after);
    }

    #[test]
    fn snapshot_after_fold_bn() {
        let mut g = lower(SMALL);
        super::run(&mut g);
        insta::assert_snapshot!(g.dump());
    }
}
