//! `fold_bn`: an inference batch norm right after a convolution (whose only reader it is)
//! becomes the convolution's weight scale and bias; one right before a convolution without
//! padding (its only reader) folds into that convolution's input channels, which is exact
//! there. The new weight and bias are derived at load time by [`Transform::FoldBn`] steps;
//! the weight file does not change.

use super::PassReport;
use crate::ir::transform::FoldSide;
use crate::ir::{Graph, NodeId, Op, Origin, ParamRole, Tensor, Transform};

pub fn run(graph: &mut Graph) -> PassReport {
    let users = graph.users();
    let n = graph.nodes.len();
    let mut keep = vec![true; n];
    let mut forward: Vec<NodeId> = graph.ids().collect();
    let mut folded = 0;
    for id in graph.ids() {
        let Op::BatchNorm { eps } = graph.node(id).op else { continue };
        let Some((conv, side)) = target(graph, id, &users) else { continue };
        fold(graph, id, conv, side, eps);
        keep[id.index()] = false;
        forward[id.index()] = graph.node(id).inputs[0];
        folded += 1;
    }
    graph.rebuild(&keep, &forward);
    PassReport { pass: "fold_bn", changed: folded, summary: format!("folded {folded} batch norms into convolutions") }
}

/// The convolution batch norm `bn` folds into, and the side: after the conv before it
/// (whose only reader it is, with no epilogue yet), or before an unpadded conv after it that
/// is its only reader and reads it as its main input.
fn target(graph: &Graph, bn: NodeId, users: &[usize]) -> Option<(NodeId, FoldSide)> {
    let src = graph.node(bn).inputs[0];
    if let Op::Conv2d(c) = graph.node(src).op {
        if users[src.index()] == 1 && !c.residual && c.act.is_none() {
            return Some((src, FoldSide::After));
        }
    }
    if users[bn.index()] != 1 || graph.output == bn {
        return None;
    }
    let next = graph.ids().find(|&i| graph.node(i).inputs.contains(&bn))?;
    let Op::Conv2d(c) = graph.node(next).op else { return None };
    let inputs = &graph.node(next).inputs;
    (c.padding == 0 && inputs[0] == bn && inputs.iter().filter(|&&i| i == bn).count() == 1)
        .then_some((next, FoldSide::Before { groups: c.groups }))
}

/// Adds the load-time fold of `bn` into `conv` on `side` and makes the conv read the
/// derived weight and bias.
fn fold(graph: &mut Graph, bn: NodeId, conv: NodeId, side: FoldSide, eps: f32) {
    let bn_tensors = [ParamRole::Weight, ParamRole::Bias, ParamRole::RunningMean, ParamRole::RunningVar]
        .map(|r| graph.param(bn, r).expect("invariant: batch norm has four tensors"));
    let weight = graph.param(conv, ParamRole::Weight).expect("invariant: a conv has a weight");
    let bias = graph.param(conv, ParamRole::Bias);
    let (bn_name, conv_name) = (graph.node(bn).name.clone(), graph.node(conv).name.clone());
    let weight_key = graph.tensor(weight).key.clone();
    let (w_key, b_key) = match side {
        FoldSide::After => (format!("{weight_key}+{bn_name}"), format!("{conv_name}.bias+{bn_name}")),
        FoldSide::Before { .. } => (format!("{bn_name}+{weight_key}"), format!("{bn_name}+{conv_name}.bias")),
    };
    let shape = graph.tensor(weight).shape.clone();
    let out_channels = shape[0];
    let out_weight = graph.add_tensor(Tensor { key: w_key, role: ParamRole::Weight, shape, origin: Origin::Derived });
    let out_bias = graph.add_tensor(Tensor { key: b_key, role: ParamRole::Bias, shape: vec![out_channels], origin: Origin::Derived });
    graph.transforms.push(Transform::FoldBn { weight, bias, bn: bn_tensors, eps, side, out_weight, out_bias });
    let node = &mut graph.nodes[conv.index()];
    let Op::Conv2d(c) = node.op else { unreachable!("invariant: the target is a conv") };
    node.op = Op::Conv2d(crate::ir::Conv { bias: true, ..c });
    node.params = vec![out_weight, out_bias];
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
        assert!(after.transforms.iter().any(|t| t.describe(&after).contains("(before the conv)")));
        assert_equivalent(&before, &after);
    }

    #[test]
    fn snapshot_after_fold_bn() {
        let mut g = lower(SMALL);
        super::run(&mut g);
        insta::assert_snapshot!(g.dump());
    }
}
