//! Golden parity with PyTorch through the reference interpreter (../shared/fixtures):
//! every tap and the output within the fixtures' tolerance, and the same argmax per row.

use std::path::{Path, PathBuf};

use resnetc_compiler::parity::{assert_close, assert_parity, TOLERANCE};
use resnetc_compiler::{compile_file, interp, ir::Graph, Options};
use resnetc_runtime::{io, LoadOptions, WeightFile, Weights};

mod common;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    let p = root().join("../shared/fixtures");
    assert!(p.is_dir(), "the golden fixtures are expected at {}", p.display());
    p
}

fn load(spec: &str, weights: &Path) -> (Graph, Weights) {
    let g = compile_file(&root().join("specs").join(format!("{spec}.resnet")), &Options::default()).unwrap().graph;
    let w = WeightFile::open(weights).unwrap().load(&interp::expected_weights(&g), &LoadOptions::default()).unwrap();
    (g, w)
}

fn check_fixture(spec: &str, dir: &str) {
    let d = fixtures().join(dir);
    let (g, w) = load(spec, &d.join("weights.safetensors"));
    let io_path = d.join("io.safetensors");
    let input = io::read_nchw(&io_path, "input").unwrap();
    let exec = interp::run(&g, &w, input.view()).unwrap();
    // Taps: `stem` is the value entering the first stage; `layerK` a stage's output;
    // `pool` the global average pool's output.
    let first_stage = g.marks.iter().position(|m| m.name == "layer1").expect("a layer1 stage");
    let mut taps = vec![("stem".to_string(), g.marks[first_stage - 1].node)];
    for m in &g.marks {
        if m.name.starts_with("layer") {
            taps.push((m.name.clone(), m.node));
        }
        if m.name == "global_avgpool" {
            taps.push(("pool".into(), m.node));
        }
    }
    assert!(taps.len() >= 5, "{spec}: taps {taps:?}");
    for (name, node) in taps {
        let torch = io::read_any(&io_path, &name).unwrap();
        let ours = exec.value(node);
        let ours = if torch.ndim() == 2 { interp::flat(ours).into_dyn() } else { ours.clone().into_dyn() };
        assert_close(&format!("{spec}/{name}"), ours.view(), torch.view(), TOLERANCE);
    }
    let torch = io::read_any(&io_path, "output").unwrap();
    let ours = exec.output();
    assert_parity(&format!("{spec}/output"), ours.view().into_dyn(), torch.view());
}

#[test]
fn residual_families_match_pytorch() {
    for f in common::FAMILY_FIXTURES {
        let dir = f.dir;
        let d = fixtures().join(dir);
        let g = compile_file(&root().join("specs").join(format!("{}.resnet", f.spec)), &f.options()).unwrap().graph;
        let file = WeightFile::open(&d.join("weights.safetensors")).unwrap();
        // Every key of the state_dict (but the step counters) is a weight of the spec, with
        // its shape, and the other way round.
        let mut ours: Vec<(String, Vec<usize>)> = interp::expected_weights(&g);
        let mut theirs: Vec<(String, Vec<usize>)> =
            file.tensors().unwrap().into_iter().filter(|(k, _)| !k.ends_with("num_batches_tracked")).collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{dir}: the spec's weights are not the state_dict's");
        let w = file.load(&interp::expected_weights(&g), &LoadOptions::default()).unwrap();
        let io_path = d.join("io.safetensors");
        let input = io::read_nchw(&io_path, "input").unwrap();
        let out = interp::forward(&g, &w, input.view()).unwrap();
        let torch = io::read_any(&io_path, "output").unwrap();
        assert_parity(&format!("{dir}/output"), out.view().into_dyn(), torch.view());
    }
}

#[test]
fn resnet18_matches_pytorch() {
    check_fixture("resnet18", "resnet18");
}

#[test]
fn bottleneck_1111_matches_pytorch() {
    check_fixture("bottleneck_1111", "bottleneck_1111");
}

#[test]
fn cifar_resnet20_matches_pytorch() {
    check_fixture("cifar_resnet20", "cifar_resnet20");
}

#[test]
fn digits_predictions_and_accuracy_match_pytorch() {
    let d = fixtures().join("digits");
    let (g, w) = load("digits_resnet8", &d.join("resnet8_weights.safetensors"));
    let io_path = d.join("resnet8_io.safetensors");
    let input = io::read_nchw(&io_path, "input").unwrap();
    assert_eq!(input.dim().0, 360);
    let ours = interp::forward(&g, &w, input.view()).unwrap();
    let torch = io::read_any(&io_path, "output").unwrap();
    // Parity includes identical predictions (argmax) on every row.
    assert_parity("digits/output", ours.view().into_dyn(), torch.view());
    let preds: Vec<usize> = ours
        .rows()
        .into_iter()
        .map(|r| r.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0)
        .collect();
    // Labels are int64: read them from the raw file.
    let bytes = std::fs::read(&io_path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let labels: Vec<i64> = st.tensor("labels").unwrap().data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
    let correct = preds.iter().zip(&labels).filter(|(p, l)| **p as i64 == **l).count();
    let accuracy = correct as f64 / labels.len() as f64;
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).unwrap()).unwrap();
    let want = meta["test_accuracy"].as_f64().unwrap();
    assert!((accuracy - want).abs() < 1e-6, "accuracy {accuracy} vs meta.json {want}");
}

#[test]
fn wrong_input_shape_names_the_expected_shape() {
    let d = fixtures().join("cifar_resnet20");
    let (g, w) = load("cifar_resnet20", &d.join("weights.safetensors"));
    let x = ndarray::Array4::<f32>::zeros((1, 3, 28, 28));
    let e = interp::run(&g, &w, x.view()).err().unwrap();
    assert_eq!(e.to_string(), "input has shape [1, 3, 28, 28], expected [N, 3, 32, 32] (any batch N >= 1)");
}
