//! Criterion benchmarks: ResNet-18 and ResNet-50 (seeded random weights; speed does not
//! depend on the values) at batch 1 and 8, through `forward_into` with a reused workspace,
//! on the default thread count (RESNETC_THREADS to change it). The comparison with ONNX
//! Runtime in the same run is `benches/compare.sh`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use resnetc::runtime::ndarray::Array4;
use resnetc::runtime::Workspace;

resnetc::resnet!(Resnet18 = "specs/resnet18.resnet");
resnetc::resnet!(Resnet50 = "specs/resnet50.resnet");

fn models(c: &mut Criterion) {
    if let Some(t) = std::env::var("RESNETC_THREADS").ok().and_then(|t| t.parse().ok()) {
        resnetc::runtime::model::set_threads(t).expect("threads are set before the first pass");
    }
    let mut group = c.benchmark_group("forward");
    group.sample_size(10);
    let (r18, r50) = (Resnet18::random(0), Resnet50::random(0));
    for batch in [1usize, 8] {
        let x = Array4::<f32>::from_elem((batch, 3, 224, 224), 0.5);
        let mut ws = Workspace::new();
        group.bench_with_input(BenchmarkId::new("resnet18", batch), &x, |b, x| {
            b.iter(|| black_box(r18.forward_into(x.view(), &mut ws).unwrap()[[0, 0]]))
        });
        group.bench_with_input(BenchmarkId::new("resnet50", batch), &x, |b, x| {
            b.iter(|| black_box(r50.forward_into(x.view(), &mut ws).unwrap()[[0, 0]]))
        });
    }
    group.finish();
}

criterion_group!(benches, models);
criterion_main!(benches);
