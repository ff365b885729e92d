//! The `resnet!` macro: a spec file and an inline spec, against the reference interpreter
//! and the PyTorch fixture.

use std::path::Path;

use resnetc::compiler::{compile, compile_file, interp, Options, Source};
use resnetc::runtime::ndarray::Array4;
use resnetc::runtime::{io, LoadOptions, WeightFile, Weights, Workspace};

resnetc::resnet!(CifarResnet20 = "specs/cifar_resnet20.resnet");
resnetc::resnet!(Pets = "specs/resnet18.resnet", set(classes = 37), input_shape = [3, 64, 80]);

const TINY: &str = "
network tiny(classes = 3) {
    input [2, 9, 7]
    conv1: conv(4, k = 3, s = 2, p = 1, bias = true)
    bn1: bn
    relu6
    layer1: stage(down, 8, blocks = 2, stride = 2)
    maxpool(k = 2, s = 1, p = 1, ceil = true)
    avgpool(k = 2, s = 1, p = 1, count_include_pad = false)
    global_avgpool
    fc: linear(classes)
    softmax
}
block down(c, stride = 1) {
    conv1: conv(c, k = 3, s = stride, p = 1, groups = 2)
    bn1: bn
    silu
    conv2: conv(c, k = 1)
    shortcut: pad
    gelu
}
";

// The same network, inline (the text above and this must stay equal).
resnetc::resnet! {
    network tiny(classes = 3) {
        input [2, 9, 7]
        conv1: conv(4, k = 3, s = 2, p = 1, bias = true)
        bn1: bn
        relu6
        layer1: stage(down, 8, blocks = 2, stride = 2)
        maxpool(k = 2, s = 1, p = 1, ceil = true)
        avgpool(k = 2, s = 1, p = 1, count_include_pad = false)
        global_avgpool
        fc: linear(classes)
        softmax
    }
    block down(c, stride = 1) {
        conv1: conv(c, k = 3, s = stride, p = 1, groups = 2)
        bn1: bn
        silu
        conv2: conv(c, k = 1)
        shortcut: pad
        gelu
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Max |a - b| through the one comparison helper (fails on NaN, inf and shape mismatch).
fn max_diff(a: &resnetc::runtime::ndarray::Array2<f32>, b: &resnetc::runtime::ndarray::Array2<f32>) -> f32 {
    resnetc::compiler::parity::compare(a.view().into_dyn(), b.view().into_dyn()).unwrap_or_else(|e| panic!("{e}")).max_error
}

#[test]
fn macro_model_matches_the_interpreter_and_pytorch() {
    let fx = root().join("../shared/fixtures/cifar_resnet20");
    let model = CifarResnet20::load(fx.join("weights.safetensors")).unwrap();
    let x = io::read_nchw(&fx.join("io.safetensors"), "input").unwrap();
    let ours = model.forward(x.view()).unwrap();
    let g = compile_file(&root().join("specs/cifar_resnet20.resnet"), &Options::default()).unwrap().graph;
    let w =
        WeightFile::open(&fx.join("weights.safetensors")).unwrap().load(&interp::expected_weights(&g), &LoadOptions::default()).unwrap();
    let oracle = interp::forward(&g, &w, x.view()).unwrap();
    assert!(max_diff(&ours, &oracle) <= 1e-5, "{}", max_diff(&ours, &oracle));
    let torch = io::read_any(&fx.join("io.safetensors"), "output").unwrap();
    resnetc::compiler::parity::assert_parity("macro vs PyTorch", ours.view().into_dyn(), torch.view());
}

#[test]
fn macro_model_loads_a_dataparallel_checkpoint_with_the_key_prefix_option() {
    let fx = root().join("../shared/fixtures/cifar_resnet20");
    let bytes = std::fs::read(fx.join("weights.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let renamed: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        st.tensors().into_iter().map(|(k, v)| (format!("module.{k}"), v)).collect();
    let path = std::env::temp_dir().join(format!("resnetc-macro-dp-{}.safetensors", std::process::id()));
    std::fs::write(&path, safetensors::serialize(renamed, &None).unwrap()).unwrap();
    let err = CifarResnet20::load(&path).err().unwrap().to_string();
    assert!(err.contains("LoadOptions::with_key_prefix(\"module.\", \"\")"), "{err}");
    let model = CifarResnet20::load_with(&path, &LoadOptions::with_key_prefix("module.", "")).unwrap();
    std::fs::remove_file(&path).ok();
    let x = io::read_nchw(&fx.join("io.safetensors"), "input").unwrap();
    let torch = io::read_any(&fx.join("io.safetensors"), "output").unwrap();
    resnetc::compiler::parity::assert_parity("macro, module. keys", model.forward(x.view()).unwrap().view().into_dyn(), torch.view());
}

#[test]
fn inline_macro_matches_the_interpreter() {
    let g = compile(&Source::inline("tiny.resnet", TINY), &Options::default()).unwrap().graph;
    assert_eq!(Tiny::WEIGHTS.len(), g.params().count());
    let w = Weights::random(&interp::expected_weights(&g), 11);
    let model = Tiny::random(11);
    let x = Array4::from_shape_fn((3, 2, 9, 7), |(n, c, h, w)| ((n * 31 + c * 17 + h * 5 + w) % 13) as f32 / 6.0 - 1.0);
    let oracle = interp::forward(&g, &w, x.view()).unwrap();
    let ours = model.forward(x.view()).unwrap();
    assert!(max_diff(&ours, &oracle) <= 1e-5, "{}", max_diff(&ours, &oracle));
    // Softmax rows sum to one.
    assert!(ours.rows().into_iter().all(|r| (r.sum() - 1.0).abs() < 1e-5));
}

#[test]
fn options_reach_the_macro() {
    assert_eq!(Pets::INPUT_SHAPE, [3, 64, 80]);
    assert_eq!(Pets::OUTPUT_FEATURES, 37);
    let model = Pets::random(1);
    let y = model.forward(Array4::<f32>::zeros((1, 3, 64, 80)).view()).unwrap();
    assert_eq!(y.dim(), (1, 37));
}

#[test]
fn forward_into_reuses_the_workspace_and_checks_shapes() {
    let model = Tiny::random(3);
    let mut ws = Workspace::new();
    let x = Array4::<f32>::from_elem((2, 2, 9, 7), 0.5);
    let first = model.forward_into(x.view(), &mut ws).unwrap().to_owned();
    let bytes = ws.bytes();
    let again = model.forward_into(x.view(), &mut ws).unwrap().to_owned();
    assert_eq!(first, again);
    assert_eq!(ws.bytes(), bytes);
    let e = model.forward(Array4::<f32>::zeros((1, 3, 9, 7)).view()).unwrap_err();
    assert_eq!(e.to_string(), "input has shape [1, 3, 9, 7], expected [N, 2, 9, 7] (any batch N >= 1)");
}

#[test]
fn spec_errors_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

/// NaN in the input reaches the output as in PyTorch (relu, pools and the fused epilogues
/// keep it), on every kernel path this CPU has and in the interpreter; the other sample of
/// the batch stays finite and equal to the interpreter.
#[test]
fn nan_in_the_input_propagates_on_every_path() {
    let fx = root().join("../shared/fixtures/cifar_resnet20");
    let model = CifarResnet20::load(fx.join("weights.safetensors")).unwrap();
    let mut x = Array4::from_shape_fn((2, 3, 32, 32), |(n, c, h, w)| ((n * 7 + c * 5 + h * 3 + w) % 11) as f32 / 5.0 - 1.0);
    x[[0, 1, 10, 20]] = f32::NAN;
    let g = compile_file(&root().join("specs/cifar_resnet20.resnet"), &Options::default()).unwrap().graph;
    let w =
        WeightFile::open(&fx.join("weights.safetensors")).unwrap().load(&interp::expected_weights(&g), &LoadOptions::default()).unwrap();
    let oracle = interp::forward(&g, &w, x.view()).unwrap();
    assert!(oracle.row(0).iter().all(|v| v.is_nan()), "the interpreter drops the NaN: {:?}", oracle.row(0));
    for isa in resnetc::runtime::Isa::available() {
        let mut ws = Workspace::with_isa(isa).unwrap();
        assert_eq!(ws.isa(), isa);
        let y = model.forward_into(x.view(), &mut ws).unwrap().to_owned();
        assert!(y.row(0).iter().all(|v| v.is_nan()), "{isa}: a NaN input gave {:?}", y.row(0));
        let clean = max_diff(
            &y.slice(resnetc::runtime::ndarray::s![1..2, ..]).to_owned(),
            &oracle.slice(resnetc::runtime::ndarray::s![1..2, ..]).to_owned(),
        );
        assert!(clean <= 1e-4, "{isa}: {clean}");
    }
}

/// A generated model is `Send + Sync`: threads with their own workspaces share one model
/// and get what a sequential call gets.
#[test]
fn one_model_serves_several_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CifarResnet20>();
    let fx = root().join("../shared/fixtures/cifar_resnet20");
    let model = CifarResnet20::load(fx.join("weights.safetensors")).unwrap();
    let inputs: Vec<Array4<f32>> = (0..4)
        .map(|s| Array4::from_shape_fn((2, 3, 32, 32), |(n, c, h, w)| ((s * 13 + n * 7 + c * 5 + h * 3 + w) % 17) as f32 / 8.0 - 1.0))
        .collect();
    let sequential: Vec<_> = inputs.iter().map(|x| model.forward(x.view()).unwrap()).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|x| {
                let model = &model;
                scope.spawn(move || {
                    let mut ws = Workspace::new();
                    (0..5).map(|_| model.forward_into(x.view(), &mut ws).unwrap().to_owned()).collect::<Vec<_>>()
                })
            })
            .collect();
        for (h, want) in handles.into_iter().zip(&sequential) {
            for got in h.join().unwrap() {
                assert_eq!(&got, want, "a thread got another answer than the sequential call");
            }
        }
    });
}
