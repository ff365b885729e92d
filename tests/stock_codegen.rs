//! Generated code against the reference interpreter on every stock spec (at a small input),
//! on every kernel path this CPU has, with 2 threads and (in a child process) 1 thread,
//! with the workspace poisoning every dead value (`Workspace::enable_poison`).
//! The models come from the `resnet!` macro, the same code `resnetc build` writes.

use std::path::Path;

use resnetc::compiler::{compile_file, interp, parity, Options};
use resnetc::runtime::ndarray::{Array2, Array4};
use resnetc::runtime::{Isa, Weights, Workspace};

mod models {
    resnetc::resnet!(Bottleneck1111 = "specs/bottleneck_1111.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(CifarResnet20 = "specs/cifar_resnet20.resnet");
    resnetc::resnet!(CifarResnet32 = "specs/cifar_resnet32.resnet", input_shape = [3, 16, 16]);
    resnetc::resnet!(CifarResnet44 = "specs/cifar_resnet44.resnet", input_shape = [3, 16, 16]);
    resnetc::resnet!(CifarResnet56 = "specs/cifar_resnet56.resnet", input_shape = [3, 16, 16]);
    resnetc::resnet!(CifarResnet110 = "specs/cifar_resnet110.resnet", input_shape = [3, 16, 16]);
    resnetc::resnet!(DigitsResnet8 = "specs/digits_resnet8.resnet");
    resnetc::resnet!(PreactResnet18 = "specs/preact_resnet18.resnet");
    resnetc::resnet!(Resnet18 = "specs/resnet18.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(Resnet34 = "specs/resnet34.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(Resnet50 = "specs/resnet50.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(Resnet50d = "specs/resnet50d.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(Resnet101 = "specs/resnet101.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(Resnet152 = "specs/resnet152.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(Resnext50 = "specs/resnext50_32x4d.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(Resnext101 = "specs/resnext101_32x8d.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(WideResnet50 = "specs/wide_resnet50_2.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(WideResnet101 = "specs/wide_resnet101_2.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(MobilenetV2 = "specs/mobilenet_v2.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(EfficientnetB0 = "specs/efficientnet_b0.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(MobilenetV3Large = "specs/mobilenet_v3_large.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(RegnetY400mf = "specs/regnet_y_400mf.resnet", input_shape = [3, 40, 36]);
    resnetc::resnet!(ConvnextTiny = "specs/convnext_tiny.resnet", input_shape = [3, 64, 64]);
    resnetc::resnet!(RegnetYSmall = "specs/regnet_y_small.resnet");
    resnetc::resnet!(ConvnextPico = "specs/convnext_pico.resnet");
}

/// Runs one model on every ISA against the interpreter on the same seeded weights.
macro_rules! check {
    ($ty:ident, $spec:literal) => {{
        let [c, h, w] = models::$ty::INPUT_SHAPE;
        let opts = Options { input_shape: Some([c, h, w]), ..Options::default() };
        let g = compile_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join($spec), &opts).unwrap().graph;
        let oracle_weights = Weights::random(&interp::expected_weights(&g), 5);
        let x = Array4::from_shape_fn((2, c, h, w), |(n, c, y, x)| ((n * 31 + c * 17 + y * 5 + x * 3) % 23) as f32 / 11.0 - 1.0);
        let want: Array2<f32> = interp::forward(&g, &oracle_weights, x.view()).unwrap();
        drop(oracle_weights);
        let model = models::$ty::random(5);
        for isa in Isa::available() {
            let mut ws = Workspace::with_isa(isa).unwrap();
            // The second pass runs with every dead value poisoned (NaN): the memory plan
            // is checked by the reads the code makes, not by the planner's live ranges.
            ws.enable_poison();
            model.forward_into(x.view(), &mut ws).unwrap();
            let got = model.forward_into(x.view(), &mut ws).unwrap().to_owned();
            let what = format!("{} ({isa}, {} threads)", $spec, threads());
            parity::assert_parity(&what, got.view().into_dyn(), want.view().into_dyn());
        }
    }};
}

fn threads() -> usize {
    std::env::var("STOCK_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2)
}

#[test]
fn generated_code_matches_the_interpreter_on_every_stock_spec() {
    resnetc::runtime::model::set_threads(threads()).unwrap();
    check!(Bottleneck1111, "specs/bottleneck_1111.resnet");
    check!(CifarResnet20, "specs/cifar_resnet20.resnet");
    check!(CifarResnet32, "specs/cifar_resnet32.resnet");
    check!(CifarResnet44, "specs/cifar_resnet44.resnet");
    check!(CifarResnet56, "specs/cifar_resnet56.resnet");
    check!(CifarResnet110, "specs/cifar_resnet110.resnet");
    check!(DigitsResnet8, "specs/digits_resnet8.resnet");
    check!(PreactResnet18, "specs/preact_resnet18.resnet");
    check!(Resnet18, "specs/resnet18.resnet");
    check!(Resnet34, "specs/resnet34.resnet");
    check!(Resnet50, "specs/resnet50.resnet");
    check!(Resnet50d, "specs/resnet50d.resnet");
    check!(Resnet101, "specs/resnet101.resnet");
    check!(Resnet152, "specs/resnet152.resnet");
    check!(Resnext50, "specs/resnext50_32x4d.resnet");
    check!(Resnext101, "specs/resnext101_32x8d.resnet");
    check!(WideResnet50, "specs/wide_resnet50_2.resnet");
    check!(WideResnet101, "specs/wide_resnet101_2.resnet");
    check!(MobilenetV2, "specs/mobilenet_v2.resnet");
    check!(EfficientnetB0, "specs/efficientnet_b0.resnet");
    check!(MobilenetV3Large, "specs/mobilenet_v3_large.resnet");
    check!(RegnetY400mf, "specs/regnet_y_400mf.resnet");
    check!(ConvnextTiny, "specs/convnext_tiny.resnet");
    check!(RegnetYSmall, "specs/regnet_y_small.resnet");
    check!(ConvnextPico, "specs/convnext_pico.resnet");
    if threads() == 2 {
        // The thread pool is per process: 1 thread runs in a child.
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "generated_code_matches_the_interpreter_on_every_stock_spec", "--nocapture"])
            .env("STOCK_THREADS", "1")
            .status()
            .unwrap();
        assert!(status.success(), "the 1-thread run failed");
    }
}
