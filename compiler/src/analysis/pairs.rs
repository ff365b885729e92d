//! Which expansion + depthwise pairs run as one step: a 1x1 convolution (stride 1, no
//! padding, dilation or groups) whose value only a depthwise convolution reads, neither
//! adding a residual (MobileNet's and EfficientNet's inverted residuals). The memory plan
//! finds them once (`MemoryPlan::pairs`) and keeps the expansion's input alive until the
//! depthwise step, which reads it; codegen emits each pair as one `ws.expand_depthwise`
//! step (the runtime's `fast::strips`).

use std::collections::HashMap;

use crate::ir::{Graph, NodeId, Op};

/// The pairs, keyed by the depthwise node, the expansion as the value.
pub fn expansion_pairs(graph: &Graph) -> HashMap<NodeId, NodeId> {
    let users = graph.users();
    graph
        .ids()
        .filter_map(|id| {
            let node = graph.node(id);
            let (Op::Conv2d(dw), Some(&e)) = (&node.op, node.inputs.first()) else { return None };
            let Op::Conv2d(expand) = &graph.node(e).op else { return None };
            let channels = graph.node(e).shape.c;
            let depthwise = dw.groups == channels && dw.out_channels == channels && channels > 1 && !dw.weight_2d;
            let pointwise = (expand.kernel, expand.stride, expand.padding, expand.dilation, expand.groups) == (1, 1, 0, 1, 1);
            let fits = depthwise && pointwise && !dw.residual && !expand.residual && users[e.index()] == 1;
            fits.then_some((id, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    /// In MobileNetV2 every block with an expansion pairs it with its depthwise layer (the
    /// first block has none), as in MobileNetV3 and EfficientNet; in the other families
    /// nothing pairs.
    #[test]
    fn inverted_residuals_pair_and_resnets_do_not() {
        let compiled = |name: &str| {
            let path = std::path::PathBuf::from(format!("{}/../specs/{name}.resnet", env!("CARGO_MANIFEST_DIR")));
            crate::compile_file(&path, &Options::default()).unwrap()
        };
        let m = compiled("mobilenet_v2");
        let pairs = expansion_pairs(&m.graph);
        assert_eq!(pairs.len(), 16, "mobilenet_v2's 17 blocks, all but the first expanding");
        for (dw, e) in &pairs {
            assert!(m.graph.node(*e).name.ends_with("conv.0.0"), "{}", m.graph.node(*e).name);
            assert!(m.graph.node(*dw).name.ends_with("conv.1.0"), "{}", m.graph.node(*dw).name);
        }
        // No depthwise layer after a 1x1 one: ResNets; RegNet's grouped 3x3 layers (groups
        // of 8 channels); ConvNeXt's depthwise layers, which read a residual sum or a
        // downsampling convolution.
        for name in ["resnet50", "regnet_y_400mf", "convnext_tiny"] {
            assert!(expansion_pairs(&compiled(name).graph).is_empty(), "{name}");
        }
        // MobileNetV3 and EfficientNet expand in every block but the first.
        assert_eq!(expansion_pairs(&compiled("mobilenet_v3_large").graph).len(), 14);
        assert_eq!(expansion_pairs(&compiled("efficientnet_b0").graph).len(), 15);
    }
}
