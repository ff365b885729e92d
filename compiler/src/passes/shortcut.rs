//! `shortcut`: every shortcut node becomes explicit ops (lowering has checked that each can).
//!
//! - identity: the input itself; the shapes must match;
//! - projection: identity where shapes match (unless `always`), else a 1x1 conv with the
//!   stride that maps the input's size onto the main path's, then a bn (unless
//!   `bn = false`), named `NAME.0`, `NAME.1` as torchvision's `downsample`;
//! - pad (option A): every s-th pixel, channels zero-padded equally on both sides;
//! - avgdown (ResNet-D): `NAME.0` avg-pool (k = s, ceil, padding not counted; only where
//!   s > 1), `NAME.1` 1x1 conv, `NAME.2` bn, as timm names them.
//!
//! Correctness needs this pass, so it runs at every optimisation level. It rebuilds the
//! graph, so the weight file's declarations follow node order (torchvision's order).

use super::PassReport;
use crate::ir::{Conv, Expansion, Graph, NodeId, Op, Shape};

pub fn run(graph: &mut Graph) -> PassReport {
    if !graph.nodes.iter().any(|n| matches!(n.op, Op::Shortcut(_))) {
        return PassReport { pass: "shortcut", changed: 0, summary: "no shortcuts to expand".into() };
    }
    assert!(graph.transforms.is_empty(), "invariant: the shortcut pass runs before any weight transform");
    let mut out = Graph::new(graph.name.clone(), graph.input_shape());
    let mut map: Vec<NodeId> = vec![NodeId(0); graph.nodes.len()];
    let (mut expanded, mut projections) = (0, 0);
    for id in graph.ids().skip(1) {
        let node = graph.node(id);
        let inputs: Vec<NodeId> = node.inputs.iter().map(|i| map[i.index()]).collect();
        map[id.index()] = match node.op {
            Op::Shortcut(kind) => {
                expanded += 1;
                let from = out.node(inputs[0]).shape;
                // Lowering accepted only shortcuts that can match their block's shapes.
                let expansion = kind.expansion(from, node.shape).expect("invariant: lowering checked the shortcut's shapes");
                projections += usize::from(!matches!(expansion, Expansion::Identity | Expansion::PadChannels { .. }));
                expand(&mut out, expansion, inputs[0], node.shape, &node.name, node.span)
            }
            ref op => out.push(op.clone(), inputs, node.shape, node.name.clone(), node.span),
        };
    }
    out.output = map[graph.output.index()];
    out.marks = graph.marks.iter().map(|m| crate::ir::Mark { name: m.name.clone(), node: map[m.node.index()] }).collect();
    *graph = out;
    PassReport { pass: "shortcut", changed: expanded, summary: format!("expanded {expanded} shortcuts ({projections} with a projection)") }
}

/// The ops of one shortcut from `x` to shape `to`; returns the last.
fn expand(g: &mut Graph, expansion: Expansion, x: NodeId, to: Shape, path: &str, span: Option<crate::diag::Span>) -> NodeId {
    match expansion {
        Expansion::Identity => x,
        Expansion::PadChannels { before, after, stride } => {
            g.push(Op::PadChannels { before, after, stride }, vec![x], to, path.to_string(), span)
        }
        Expansion::Projection { stride, bn } => project(g, x, to, stride, 0, path, span, bn),
        Expansion::AvgDown { pool, bn } => {
            let x = match pool {
                Some((pool, shape)) => g.push(Op::AvgPool(pool), vec![x], shape, format!("{path}.0"), span),
                None => x,
            };
            project(g, x, to, 1, 1, path, span, bn)
        }
    }
}

/// A 1x1 conv (+ bn) named `path.index` (and `path.index+1`).
#[allow(clippy::too_many_arguments)]
fn project(
    g: &mut Graph,
    x: NodeId,
    to: Shape,
    stride: usize,
    index: usize,
    path: &str,
    span: Option<crate::diag::Span>,
    bn: bool,
) -> NodeId {
    let conv = Conv {
        out_channels: to.c,
        kernel: 1,
        stride,
        padding: 0,
        dilation: 1,
        groups: 1,
        bias: false,
        weight_2d: false,
        residual: false,
        act: None,
    };
    let y = g.push(Op::Conv2d(conv), vec![x], to, format!("{path}.{index}"), span);
    if !bn {
        return y;
    }
    g.push(Op::BatchNorm { eps: 1e-5 }, vec![y], to, format!("{path}.{}", index + 1), span)
}

#[cfg(test)]
mod tests {
    use crate::ir::Op;
    use crate::{compile, Options, Source};

    fn lowered(spec: &str) -> crate::ir::Graph {
        let opts = Options { stop_after: Some("lower".into()), ..Options::default() };
        compile(&Source::inline("t.resnet", spec), &opts).unwrap_or_else(|e| panic!("{e}")).graph
    }

    fn block(kind: &str, stride: usize, out: usize) -> String {
        format!(
            "network n {{ input [8, 8, 8]\n b: blk({out}, {stride}) }}\nblock blk(c, s) {{\n conv1: conv(c, k = 3, s = s, p = 1)\n shortcut down: {kind}\n}}"
        )
    }

    fn check(kind: &str, stride: usize, out: usize, expect: &[&str]) {
        let mut g = lowered(&block(kind, stride, out));
        assert!(g.nodes.iter().any(|n| matches!(n.op, Op::Shortcut(_))));
        super::run(&mut g);
        let ops: Vec<String> = g.nodes.iter().skip(1).map(|n| format!("{} {}", n.op.kind(), n.name)).collect();
        assert_eq!(ops, expect, "{kind} s={stride} c={out}");
        let keys: Vec<&str> = g.params().map(|p| p.key.as_str()).collect();
        assert!(keys.windows(2).all(|w| w[0] != w[1]), "{keys:?}");
    }

    #[test]
    fn each_kind_expands_as_torchvision_names_it() {
        check("identity", 1, 8, &["conv2d b.conv1", "add b.add"]);
        check("projection", 1, 8, &["conv2d b.conv1", "add b.add"]);
        check("projection", 2, 16, &["conv2d b.conv1", "conv2d b.down.0", "batch_norm b.down.1", "add b.add"]);
        check("projection always", 1, 8, &["conv2d b.conv1", "conv2d b.down.0", "batch_norm b.down.1", "add b.add"]);
        check("projection(bn = false)", 2, 8, &["conv2d b.conv1", "conv2d b.down.0", "add b.add"]);
        check("pad", 2, 16, &["conv2d b.conv1", "pad_channels b.down", "add b.add"]);
        check("avgdown", 2, 16, &["conv2d b.conv1", "avg_pool b.down.0", "conv2d b.down.1", "batch_norm b.down.2", "add b.add"]);
        check("avgdown", 1, 16, &["conv2d b.conv1", "conv2d b.down.1", "batch_norm b.down.2", "add b.add"]);
    }

    #[test]
    fn shapes_that_cannot_match_are_lowering_errors_with_the_span() {
        for (kind, stride, out) in [("identity", 2, 8), ("pad", 1, 4)] {
            let opts = Options { stop_after: Some("lower".into()), ..Options::default() };
            let e = compile(&Source::inline("t.resnet", block(kind, stride, out)), &opts).unwrap_err();
            let d = &e.diagnostics;
            assert_eq!(d.len(), 1);
            assert!(d[0].message.starts_with(&format!("the {kind} shortcut cannot match shapes")), "{}", d[0].message);
            assert!(d[0].span.is_some());
        }
    }
}
