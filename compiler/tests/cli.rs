//! The `resnetc` binary, end to end.

use std::path::PathBuf;

mod common;
use common::{resnetc, root};

#[test]
fn check_accepts_stock_specs_and_rejects_broken_ones() {
    let (code, out, _) = resnetc(&["check", "specs/resnet50.resnet"]);
    assert_eq!(code, 0);
    assert!(out.contains("25,557,032 parameters"), "{out}");
    let (code, _, err) = resnetc(&["check", "specs/errors/several_errors.resnet"]);
    assert_eq!(code, 1);
    assert!(err.contains("[specs/errors/several_errors.resnet:3:32]"), "{err}");
    assert!(err.contains("4 errors"), "{err}");
}

#[test]
fn summary_json_has_totals_and_layers() {
    let (code, out, err) = resnetc(&["summary", "specs/resnet18.resnet", "--format", "json", "--batch", "2"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total_params"], 11_689_512);
    assert_eq!(v["total_macs"], 2 * 1_814_073_344u64);
    let fc = v["layers"].as_array().unwrap().iter().find(|l| l["name"] == "fc").unwrap();
    assert_eq!(fc["op"], "linear");
    assert_eq!(fc["shape"], serde_json::json!([2, 1000, 1, 1]));
    assert_eq!(fc["params"], 513_000);
}

#[test]
fn set_and_input_shape_apply_to_every_command() {
    let (code, out, err) = resnetc(&["params", "specs/resnet18.resnet", "--set", "classes=37"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("fc.weight [37, 512]"), "{out}");
    let (code, out, _) = resnetc(&["graph", "specs/resnet18.resnet", "--input-shape", "3,160,200", "-O0"]);
    assert_eq!(code, 0);
    assert!(out.contains("layer4.1.relu = relu(%") && out.contains("-> [512, 5, 7]"), "{out}");
    // At -O2 (the default) that relu is fused into the last conv's epilogue.
    let (_, out, _) = resnetc(&["graph", "specs/resnet18.resnet", "--input-shape", "3,160,200"]);
    assert!(out.contains("layer4.1.conv2 = conv2d(") && out.contains("+residual, relu) -> [512, 5, 7]"), "{out}");
    let (_, out, _) = resnetc(&["graph", "specs/resnet18.resnet", "--after", "fold_bn"]);
    assert!(out.contains("layer1.0.relu = relu(") && !out.contains("batch_norm"), "{out}");
    let (code, _, err) = resnetc(&["summary", "specs/resnet18.resnet", "--set", "klasses=3"]);
    assert_eq!(code, 1);
    assert!(err.contains("no parameter `klasses`") && err.contains("`classes`"), "{err}");
    // The library names what to set; the CLI adds its flag.
    let (code, _, err) = resnetc(&["check", "specs/errors/spatial_shrinks_to_zero.resnet"]);
    assert_eq!(code, 1);
    assert!(err.contains("use a larger input") && err.contains("--input-shape C,H,W"), "{err}");
    let (code, _, err) = resnetc(&["check", "specs/resnet18.resnet", "--input-shape", "3,0,4"]);
    assert_eq!(code, 2, "a malformed flag is a usage error");
    assert!(err.contains("C,H,W"), "{err}");
}

#[test]
fn graph_dot_is_graphviz() {
    let (code, out, _) = resnetc(&["graph", "specs/cifar_resnet20.resnet", "--format", "dot"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("digraph \"cifar_resnet20\""));
    assert!(out.contains("n9 -> n10;"), "{out}");
}

#[test]
fn eval_writes_the_fixture_output() {
    let fx = root().join("../shared/fixtures/cifar_resnet20");
    let dir = std::env::temp_dir().join(format!("resnetc-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("y.safetensors");
    let (w, x, y) = (fx.join("weights.safetensors"), fx.join("io.safetensors"), out.to_string_lossy().into_owned());
    let (code, _, err) =
        resnetc(&["eval", "specs/cifar_resnet20.resnet", "--weights", w.to_str().unwrap(), "--input", x.to_str().unwrap(), "--output", &y]);
    assert_eq!(code, 0, "{err}");
    let ours = resnetc_runtime::io::read_any(&out, "output").unwrap();
    let torch = resnetc_runtime::io::read_any(&x, "output").unwrap();
    assert_eq!(ours.shape(), &[4, 10]);
    resnetc_compiler::parity::assert_parity("eval cifar_resnet20", ours.view(), torch.view());
    // The wrong model for these weights: the error names a tensor and both shapes.
    let (code, _, err) = resnetc(&[
        "eval",
        "specs/cifar_resnet20.resnet",
        "--set",
        "classes=7",
        "--weights",
        w.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
        &y,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("tensor `linear.weight` has shape [10, 64], expected [7, 64]"), "{err}");
    // Input of the wrong shape names the expected one.
    let (code, _, err) = resnetc(&[
        "eval",
        "specs/cifar_resnet20.resnet",
        "--input-shape",
        "3,16,16",
        "--weights",
        w.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
        &y,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("expected [N, 3, 16, 16]"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_reads_a_dataparallel_checkpoint_with_the_key_prefix_option() {
    let fx = root().join("../shared/fixtures/cifar_resnet20");
    let dir = std::env::temp_dir().join(format!("resnetc-prefix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The fixture's state_dict as `nn.DataParallel(model).state_dict()` names it.
    let bytes = std::fs::read(fx.join("weights.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let renamed: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        st.tensors().into_iter().map(|(k, v)| (format!("module.{k}"), v)).collect();
    let w = dir.join("dp.safetensors");
    std::fs::write(&w, safetensors::serialize(renamed, &None).unwrap()).unwrap();
    let x = fx.join("io.safetensors");
    let y = dir.join("y.safetensors");
    let args = |extra: &[&'static str]| {
        let mut v = vec!["eval", "specs/cifar_resnet20.resnet", "--weights", w.to_str().unwrap(), "--input", x.to_str().unwrap()];
        v.extend(["--output", y.to_str().unwrap()]);
        v.extend(extra);
        v.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| resnetc(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, _, err) = run(args(&[]));
    assert_eq!(code, 1);
    assert!(err.contains("missing tensor `conv1.weight`") && err.contains("did you mean `module.conv1.weight`?"), "{err}");
    assert!(err.contains("--key-prefix module.="), "the error suggests the option: {err}");
    let (code, _, err) = run(args(&["--key-prefix", "module.="]));
    assert_eq!(code, 0, "{err}");
    let ours = resnetc_runtime::io::read_any(&y, "output").unwrap();
    let torch = resnetc_runtime::io::read_any(&x, "output").unwrap();
    resnetc_compiler::parity::assert_parity("eval cifar_resnet20 module.", ours.view(), torch.view());
    let (code, _, err) = run(args(&["--key-prefix", "module."]));
    assert_eq!(code, 2, "clap rejects a malformed value: {err}");
    assert!(err.contains("expected OLD=NEW"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_explains_each_command() {
    let (code, out, _) = resnetc(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["check", "summary", "params", "graph", "eval"] {
        assert!(out.contains(cmd), "{out}");
    }
    let (_, out, _) = resnetc(&["summary", "--help"]);
    assert!(out.contains("--set") && out.contains("--input-shape") && out.contains("--format"), "{out}");
}

#[test]
fn run_builds_and_runs_a_stock_spec_with_defaults() {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("run-cache");
    let (code, out, err) = resnetc(&["run", "specs/cifar_resnet20.resnet", "--cache", cache.to_str().unwrap(), "--top", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("seeded random weights"), "{err}");
    assert!(out.contains("output [1, 10]: load ") && out.contains("first pass"), "{out}");
    let isa = resnetc_runtime::Isa::selected();
    assert!(out.contains(&format!("{isa} kernels)")), "the report names the kernels that ran ({isa}): {out}");
    assert!(out.contains("row 0: top "), "{out}");
    // The second run uses the cache and gives the same answer.
    let (code, out2, err2) = resnetc(&["run", "specs/cifar_resnet20.resnet", "--cache", cache.to_str().unwrap(), "--top", "3"]);
    assert_eq!(code, 0, "{err2}");
    assert!(err2.contains("using the cached build"), "{err2}");
    let top = |s: &str| s.lines().find(|l| l.contains("row 0")).map(str::to_string);
    assert_eq!(top(&out), top(&out2));
}
