//! Shared by the integration tests: the random residual networks of the passes test, also
//! run through generated code by the emitted-crate test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use resnetc_compiler::ir::Activation;

/// The repository's root (specs are found from there).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A reduced fixture of a residual family beyond ResNet (`io.safetensors` holds `input`
/// and `output` only) and the stock spec that matches it.
pub struct FamilyFixture {
    pub dir: &'static str,
    pub spec: &'static str,
    pub sets: &'static [(&'static str, &'static str)],
    pub input: [usize; 3],
}

pub const FAMILY_FIXTURES: &[FamilyFixture] = &[
    FamilyFixture { dir: "mobilenet_v2_050", spec: "mobilenet_v2", sets: &[("width", "0.5"), ("classes", "10")], input: [3, 64, 64] },
    FamilyFixture {
        dir: "efficientnet_b0_050",
        spec: "efficientnet_b0",
        sets: &[("width", "0.5"), ("depth", "0.5"), ("classes", "10")],
        input: [3, 64, 64],
    },
    FamilyFixture {
        dir: "mobilenet_v3_large_050",
        spec: "mobilenet_v3_large",
        sets: &[("width", "0.5"), ("classes", "10")],
        input: [3, 64, 64],
    },
    // RegNet's reduced model has its own stage table (same blocks): its own small spec.
    FamilyFixture { dir: "regnet_y_small", spec: "regnet_y_small", sets: &[], input: [3, 64, 64] },
    // So has ConvNeXt's.
    FamilyFixture { dir: "convnext_pico", spec: "convnext_pico", sets: &[], input: [3, 64, 64] },
];

impl FamilyFixture {
    /// The compile options of the fixture's spec.
    pub fn options(&self) -> resnetc_compiler::Options {
        resnetc_compiler::Options {
            sets: self.sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            input_shape: Some(self.input),
            ..resnetc_compiler::Options::default()
        }
    }
}

/// Runs the `resnetc` binary from the repository's root: exit code, stdout, stderr.
pub fn resnetc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_resnetc")).args(args).current_dir(root()).env("NO_COLOR", "1").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A random residual network as `.resnet` text: five block kinds (basic, bottleneck,
/// pre-activation; an inverted residual with a squeeze-excitation `gate`, depthwise conv,
/// `if`s for the expansion and the residual; a ConvNeXt block with `layernorm`,
/// `pointwise` and `layer_scale`), every shortcut kind (the drawn one, also in
/// pre-activation blocks), groups, dilation, biases, max- and average-pooling stems, every
/// activation.
pub fn random_spec() -> impl Strategy<Value = String> {
    // (block kind, shortcut kind, blocks, stride, log2 groups, activation, dilation, bias)
    let stage = (0usize..5, 0usize..6, 1usize..3, 1usize..3, 0usize..3, 0usize..Activation::ALL.len(), 1usize..3, any::<bool>());
    // (channels, height, width, stem width, stem activation, stem pool, stages, classes)
    (1usize..4, 8usize..17, 7usize..15, 1usize..3, 0usize..Activation::ALL.len(), 0usize..3, proptest::collection::vec(stage, 1..4), 2usize..6)
        .prop_map(|(c, h, w, stem_mult, stem_act, pool, stages, classes)| {
            // Every activation the language has.
            let acts: Vec<&str> = Activation::ALL.iter().map(|a| a.name()).collect();
            let kinds = ["projection", "projection always", "pad", "avgdown", "identity", "projection(bn = false)"];
            let mut width = 4 * stem_mult;
            let mut body =
                format!("    input [{c}, {h}, {w}]\n    conv1: conv({width}, k = 3, p = 1, bias = true)\n    bn1: bn\n    {}\n", acts[stem_act]);
            body.push_str(match pool {
                0 => "",
                1 => "    maxpool(k = 3, s = 1, p = 1)\n",
                _ => "    avgpool(k = 2, s = 1, p = 1, ceil = true, count_include_pad = false)\n",
            });
            let mut blocks = String::new();
            for (i, (block, kind, blocks_n, stride, groups_log, act, dilation, bias)) in stages.into_iter().enumerate() {
                let groups = 1 << groups_log;
                // A ConvNeXt block keeps its input's shape.
                let grow = if block == 4 { 0 } else { (i % 2) * 4 };
                let stride = if block == 4 { 1 } else { stride };
                let next = width + grow;
                let mut kind = kinds[kind];
                // identity needs equal shapes; pad cannot shrink channels (widths never do).
                if kind == "identity" && (stride > 1 || next != width) {
                    kind = "projection";
                }
                let name = format!("b{i}");
                let a = acts[act];
                // A dilated 3x3 keeps the size with padding = dilation.
                let (d, b) = (dilation, bias);
                let text = match block {
                    0 => format!(
                        "block {name}(c, stride = 1) {{\n    conv1: conv(c, k = 3, s = stride, p = {d}, d = {d}, groups = {groups}, bias = {b})\n    bn1: bn\n    {a}\n    conv2: conv(c, k = 3, p = 1)\n    bn2: bn\n    shortcut downsample: {kind}\n    {a}\n}}\n"
                    ),
                    1 => format!(
                        "block {name}(c, stride = 1) {{\n    conv1: conv(c, k = 1, bias = {b})\n    bn1: bn\n    relu\n    conv2: conv(c, k = 3, s = stride, p = {d}, d = {d}, groups = {groups})\n    bn2: bn\n    relu\n    conv3: conv(c, k = 1, bias = true)\n    bn3: bn\n    shortcut downsample: {kind}\n    {a}\n}}\n"
                    ),
                    3 => {
                        let gate_act = if bias { "hardsigmoid" } else { "sigmoid" };
                        format!(
                            "block {name}(c, stride = 1, expand = {e}) {{\n    let hidden = in_channels * expand\n    block: seq {{\n        if hidden != in_channels {{\n            seq {{ conv(hidden, k = 1); bn; {a} }}\n        }}\n        seq {{ conv(hidden, k = 3, s = stride, p = 1, groups = hidden); bn; {a} }}\n        gate {{\n            global_avgpool\n            fc1: conv(max(1, in_channels / 2), k = 1, bias = true)\n            relu\n            fc2: conv(hidden, k = 1, bias = true)\n            {gate_act}\n        }}\n        seq {{ conv(c, k = 1); bn }}\n    }}\n    if stride == 1 and in_channels == c {{\n        shortcut: identity\n    }}\n}}\n",
                            e = 1 + groups_log % 2
                        )
                    }
                    4 => format!(
                        "block {name}(c, stride = 1) {{\n    block: seq {{\n        conv(c, k = 3, p = 1, groups = c, bias = true)\n        permute\n        layernorm(eps = 1e-6)\n        pointwise(2 * c)\n        {a}\n        pointwise(c, bias = {b})\n    }}\n    layer_scale\n    shortcut: identity\n}}\n"
                    ),
                    _ => format!(
                        "block {name}(c, stride = 1) {{\n    bn1: bn\n    pre: {a}\n    conv1: conv(c, k = 3, s = stride, p = {d}, d = {d}, bias = {b})\n    bn2: bn\n    relu\n    conv2: conv(c, k = 3, p = 1)\n    shortcut shortcut: {kind} from pre\n}}\n"
                    ),
                };
                blocks.push_str(&text);
                body.push_str(&format!("    layer{}: stage({name}, {next}, blocks = {blocks_n}, stride = {stride})\n", i + 1));
                width = next;
            }
            body.push_str("    global_avgpool\n    fc: linear(classes)\n");
            format!("network r(classes = {classes}) {{\n{body}}}\n{blocks}")
        })
}

/// `count` networks drawn deterministically from [`random_spec`].
pub fn random_specs(count: usize) -> Vec<String> {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    (0..count).map(|_| random_spec().new_tree(&mut runner).expect("invariant: the strategy draws").current()).collect()
}
