//! The optimisation pipeline, end to end: every stock spec and 200 random residual specs
//! give the same outputs before and after the passes (reference interpreter, same weights);
//! resnet50's kernel count and memory plan; the IR after each pass.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

mod common;
use common::random_spec;
use resnetc_compiler::analysis::memory_plan;
use resnetc_compiler::ir::Graph;
use resnetc_compiler::{compile, compile_file, interp, parity, passes, report, Options, Source};
use resnetc_runtime::Weights;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn at(opt_level: u8) -> Options {
    Options { opt_level, ..Options::default() }
}

/// Max |a - b| relative to max(1, max |a|) (the parity helper: fails on NaN, inf and shape).
fn compare(before: &Graph, after: &Graph, batch: usize, seed: u64) -> f32 {
    let expected = interp::expected_weights(before);
    assert_eq!(expected, interp::expected_weights(after), "the passes changed the weight file's tensors");
    let w = Weights::random(&expected, seed);
    let s = before.input_shape();
    let x = ndarray::Array4::from_shape_fn((batch, s.c, s.h, s.w), |(n, c, h, w)| {
        ((n * 131 + c * 31 + h * 7 + w * 3 + seed as usize) % 17) as f32 / 8.0 - 1.0
    });
    let a = interp::forward(before, &w, x.view()).unwrap();
    let b = interp::forward(after, &w, x.view()).unwrap();
    let c = parity::compare(b.view().into_dyn(), a.view().into_dyn()).unwrap_or_else(|e| panic!("after the passes: {e}"));
    c.max_error / c.scale
}

fn stock_networks() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "resnet") && std::fs::read_to_string(p).unwrap().contains("network "))
        .collect();
    v.sort();
    v
}

#[test]
fn every_stock_spec_is_unchanged_by_the_passes() {
    for path in stock_networks() {
        // A small input keeps the interpreter quick; 1-channel specs keep their channel.
        let g0 = compile_file(&path, &at(0)).unwrap().graph;
        let c = g0.input_shape().c;
        let small = if g0.input_shape().h <= 32 { None } else { Some([c, 40, 36]) };
        let opts = |o| Options { input_shape: small, ..at(o) };
        let before = compile_file(&path, &opts(0)).unwrap().graph;
        let after = compile_file(&path, &opts(2)).unwrap().graph;
        let err = compare(&before, &after, 2, 3);
        eprintln!("{}: relative error {err:.2e}, {} -> {} kernels", path.display(), before.kernel_count(), after.kernel_count());
        assert!(err <= 1e-4, "{}: -O2 differs from -O0 by {err:e}", path.display());
        assert!(after.kernel_count() < before.kernel_count());
    }
}

#[test]
fn resnet50_runs_one_kernel_a_conv_plus_three() {
    let c = compile_file(&root().join("specs/resnet50.resnet"), &at(2)).unwrap();
    let s = report::Summary::new(&c, 1);
    let g = &c.graph;
    assert_eq!(s.convs, 53);
    assert_eq!(s.kernels, s.convs + 3, "convs + max-pool + global pool + linear");
    let kinds: std::collections::BTreeSet<&str> = g.nodes.iter().skip(1).map(|n| n.op.kind()).collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["conv2d", "global_avg_pool", "linear", "max_pool"]);
    assert!(
        s.arena_peak_bytes as f64 <= 1.1 * s.liveness_lower_bound_bytes as f64,
        "{} vs {}",
        s.arena_peak_bytes,
        s.liveness_lower_bound_bytes
    );
}

#[test]
fn memory_plans_are_sound_and_near_the_bound_for_every_stock_spec() {
    for path in stock_networks() {
        for level in [0, 2] {
            let c = compile_file(&path, &at(level)).unwrap();
            // The pipeline's own plan (sharing only at -O2), and a sharing one at -O0 too.
            assert_eq!(c.memory.reuse, level > 0);
            let g = &c.graph;
            let p = memory_plan::plan(g, true);
            memory_plan::check(g, &p).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            memory_plan::check(g, &c.memory).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // The planner is greedy: on the graphs that run (-O2) every stock spec is within
            // 10% of the bound (all at 1.000 today); unfused -O0 graphs within 15%
            // (convnext_tiny's is at 1.111, its LayerNorm/GELU values unfused).
            let slack = if level > 0 { 1.1 } else { 1.15 };
            assert!(p.arena as f64 <= slack * p.lower_bound as f64, "{} -O{level}: {} vs {}", path.display(), p.arena, p.lower_bound);
        }
    }
}

#[test]
fn ir_after_each_pass() {
    for spec in ["resnet18", "cifar_resnet20"] {
        for pass in passes::names() {
            let g = compile_file(&root().join(format!("specs/{spec}.resnet")), &Options { stop_after: Some(pass.to_string()), ..at(2) })
                .unwrap()
                .graph;
            insta::assert_snapshot!(format!("{spec}_after_{pass}"), g.dump());
        }
    }
}

#[test]
fn pass_selection_is_checked() {
    let src = Source::inline("t.resnet", "network t { input [1, 4, 4]\n conv1: conv(2, k = 1)\n bn1: bn\n relu }");
    let only_fold = compile(&src, &Options { passes: Some(vec!["fold_bn".into()]), ..Options::default() }).unwrap();
    assert_eq!(only_fold.graph.kernel_count(), 2, "conv (bn folded) + relu");
    let e = compile(&src, &Options { passes: Some(vec!["fold".into()]), ..Options::default() }).unwrap_err();
    assert!(e.render().contains("unknown pass `fold`; the passes are shortcut, fold_bn, fuse, dce, memory_plan"), "{}", e.render());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_residual_specs_are_unchanged_by_the_passes(spec in random_spec(), seed in 0u64..1000) {
        let src = Source::inline("random.resnet", spec.clone());
        let before = compile(&src, &at(0)).map_err(|e| TestCaseError::fail(format!("{spec}\n{e}")))?.graph;
        let after = compile(&src, &at(2)).unwrap();
        let err = compare(&before, &after.graph, 2, seed);
        prop_assert!(err <= 1e-4, "{}\n-O2 differs from -O0 by {:e}", spec, err);
        prop_assert!(memory_plan::check(&after.graph, &after.memory).is_ok());
    }
}
