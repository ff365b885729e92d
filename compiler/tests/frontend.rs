//! End-to-end tests of the front end: stock specs, torchvision totals, fixture weight names,
//! diagnostics of broken specs, IR dumps, and options from outside the spec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use resnetc_compiler::{compile, compile_file, ir::Graph, report, Options, Source};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    let p = root().join("../shared/fixtures");
    assert!(p.is_dir(), "the golden fixtures are expected at {}", p.display());
    p
}

fn spec(name: &str) -> Graph {
    spec_with(name, &Options::default())
}

fn spec_with(name: &str, opts: &Options) -> Graph {
    let path = root().join("specs").join(format!("{name}.resnet"));
    compile_file(&path, opts).unwrap_or_else(|e| panic!("{name}: {e}")).graph
}

/// `name -> shape` of every tensor in a safetensors file except `num_batches_tracked`.
fn fixture_keys(path: &Path) -> BTreeMap<String, Vec<usize>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().filter(|(k, _)| !k.ends_with("num_batches_tracked")).map(|(k, v)| (k, v.shape().to_vec())).collect()
}

fn graph_keys(g: &Graph) -> BTreeMap<String, Vec<usize>> {
    g.params().map(|p| (p.key.clone(), p.shape.clone())).collect()
}

#[test]
fn parameter_totals_equal_torchvision() {
    for (name, total) in [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
        ("resnext50_32x4d", 25_028_904),
        ("resnext101_32x8d", 88_791_336),
        ("wide_resnet50_2", 68_883_240),
        ("wide_resnet101_2", 126_886_696),
        ("mobilenet_v2", 3_504_872),
        ("efficientnet_b0", 5_288_548),
        ("mobilenet_v3_large", 5_483_032),
        ("regnet_y_400mf", 4_344_144),
        ("convnext_tiny", 28_589_128),
    ] {
        assert_eq!(spec(name).param_count(), total, "{name}");
    }
}

#[test]
fn macs_at_224_match_published_figures() {
    for (name, gmacs) in [("resnet18", 1.814), ("resnet50", 4.089)] {
        let m = spec(name).macs() as f64 / 1e9;
        assert!((m - gmacs).abs() / gmacs < 0.005, "{name}: {m} GMACs, expected {gmacs}");
    }
}

#[test]
fn params_list_exactly_the_fixture_keys() {
    let f = fixtures();
    for (name, weights) in [
        ("resnet18", f.join("resnet18/weights.safetensors")),
        ("bottleneck_1111", f.join("bottleneck_1111/weights.safetensors")),
        ("cifar_resnet20", f.join("cifar_resnet20/weights.safetensors")),
        ("digits_resnet8", f.join("digits/resnet8_weights.safetensors")),
    ] {
        let g = spec(name);
        assert_eq!(graph_keys(&g), fixture_keys(&weights), "{name}");
        // The `params` listing is the same set, one a line.
        let listing = report::params_listing(&g);
        assert_eq!(listing.lines().count(), fixture_keys(&weights).len(), "{name}");
    }
}

#[test]
fn fixture_parameter_counts_match_meta() {
    let f = fixtures();
    for (name, dir) in [("resnet18", "resnet18"), ("bottleneck_1111", "bottleneck_1111"), ("cifar_resnet20", "cifar_resnet20")] {
        let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f.join(dir).join("meta.json")).unwrap()).unwrap();
        assert_eq!(spec(name).param_count() as u64, meta["parameters"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn every_stock_network_compiles_and_is_short() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("specs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "resnet") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains("network ") {
            continue; // a file of shared blocks
        }
        assert!(text.lines().count() <= 30, "{} has more than 30 lines", path.display());
        let g = compile_file(&path, &Options::default()).unwrap_or_else(|e| panic!("{e}")).graph;
        assert_eq!(g.verify_expanded(), Ok(()));
        n += 1;
    }
    assert!(n >= 17, "expected at least 17 stock networks, found {n}");
}

#[test]
fn rectangular_inputs_and_set_parameters() {
    let opts = Options { sets: vec![("classes".into(), "37".into())], input_shape: Some([3, 160, 200]), ..Options::default() };
    let g = spec_with("resnet50", &opts);
    assert_eq!(g.output_shape().c, 37);
    let layer4 = g.marks.iter().find(|m| m.name == "layer4").unwrap();
    let s = g.node(layer4.node).shape;
    assert_eq!((s.c, s.h, s.w), (2048, 5, 7));
    assert_eq!(g.param_count(), 25_557_032 - 2048 * 963 - 963);
}

#[test]
fn an_unknown_set_is_an_error() {
    let opts = Options { sets: vec![("clases".into(), "37".into())], ..Options::default() };
    let e = compile_file(&root().join("specs/resnet18.resnet"), &opts).unwrap_err();
    let text = e.render();
    assert!(text.contains("no parameter `clases`"), "{text}");
    assert!(text.contains("`classes`"), "{text}");
}

#[test]
fn ir_dump_snapshots() {
    // The graph as lowered (before any pass); see passes.rs for the graph after each pass.
    for name in ["resnet18", "cifar_resnet20"] {
        insta::assert_snapshot!(format!("ir_{name}"), spec_with(name, &Options { opt_level: 0, ..Options::default() }).dump());
    }
}

#[test]
fn resnet50d_uses_timm_names() {
    let g = spec("resnet50d");
    let keys = graph_keys(&g);
    for k in [
        "conv1.0.weight",
        "conv1.1.running_var",
        "conv1.3.weight",
        "conv1.6.weight",
        "layer2.0.downsample.1.weight",
        "layer2.0.downsample.2.bias",
    ] {
        assert!(keys.contains_key(k), "missing {k}");
    }
    assert!(!keys.contains_key("layer1.0.downsample.0.weight"));
}

#[test]
fn preact_blocks_branch_after_the_first_activation() {
    let g = spec_with("preact_resnet18", &Options { opt_level: 0, ..Options::default() });
    let sc = g.nodes.iter().find(|n| n.name == "layer2.0.shortcut.0").expect("projection conv");
    let from = g.node(sc.inputs[0]);
    assert_eq!(from.name, "layer2.0.pre");
    // No bn in this projection (bn = false).
    assert!(!g.nodes.iter().any(|n| n.name == "layer2.0.shortcut.1"));
}

#[test]
fn broken_specs_render_diagnostics() {
    insta::glob!("../../specs/errors", "*.resnet", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let name = format!("errors/{}", path.file_name().unwrap().to_string_lossy());
        let src = Source { name, text, dir: path.parent().map(Path::to_path_buf), path: path.canonicalize().ok() };
        let err = compile(&src, &Options::default()).expect_err("a broken spec must not compile");
        let rendered = err.render();
        // Every diagnostic points at a line and column of the file it names.
        assert!(rendered.contains("errors/") || rendered.contains("cycle"), "{rendered}");
        insta::assert_snapshot!(rendered);
    });
}

#[test]
fn lets_in_if_branches_and_loop_bodies_stay_there() {
    let text = "
block b(c) {
    let q = 3
    if c == 8 {
        let q = 5
        x: conv(q, k = 1)
    }
    z: conv(q, k = 1)
    for i in 0..1 {
        let q = 7
    }
    y: conv(q, k = 1)
}
network n {
    input [8, 4, 4]
    b1: b(8)
}
";
    let g = compile(&Source::inline("scopes.resnet", text), &Options::default()).unwrap().graph;
    let keys = graph_keys(&g);
    assert_eq!(keys["b1.x.weight"], vec![5, 8, 1, 1], "the branch's own `let`");
    assert_eq!(keys["b1.z.weight"], vec![3, 5, 1, 1], "the block's `q` after the `if`");
    assert_eq!(keys["b1.y.weight"], vec![3, 3, 1, 1], "the block's `q` after the `for`");
}
