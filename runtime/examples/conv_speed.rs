//! Times the NHWC convolutions on ResNet-50's and the CIFAR ResNets' layer shapes and on MobileNetV2's and
//! EfficientNet-B0's costliest ones (depthwise, narrow 1x1) and states each as a share of
//! this machine's measured FMA peak:
//! `cargo run --release -p resnetc-runtime --example conv_speed [threads] [filter]`, on the
//! path `RESNETC_AVX512=0` / `RESNETC_PORTABLE=1` select (the first line names it).
use resnetc_runtime::fast::{self, winograd, Epilogue, Isa};
use resnetc_runtime::kernels::Activation;
use resnetc_runtime::ConvSpec;
use std::time::Instant;

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    // An optional second argument keeps the shapes whose line contains it.
    let only = std::env::args().nth(2).unwrap_or_default();
    resnetc_runtime::model::set_threads(threads).expect("first use of the pool");
    // With a filter (a profiling run), the peak is not measured again: 117 GFLOP/s a thread.
    let peak = if only.is_empty() { fast::peak::peak_gflops(threads, 100_000_000) } else { 117.0 * threads as f64 };
    let isa = Isa::selected();
    println!("kernel {isa}, {threads} thread(s), peak {peak:.1} GFLOP/s");
    // (in channels, size, out channels, kernel, stride, padding, residual add); groups 1
    let resnet = [
        (3, 224, 64, 7, 2, 3, false),
        (64, 56, 64, 1, 1, 0, false),
        (64, 14, 64, 1, 1, 0, false),
        (64, 28, 64, 1, 1, 0, false),
        (64, 28, 256, 1, 1, 0, true),
        (64, 56, 64, 3, 1, 1, false),
        (64, 56, 256, 1, 1, 0, true),
        (256, 56, 64, 1, 1, 0, false),
        (256, 56, 128, 1, 1, 0, false),
        (128, 56, 128, 3, 2, 1, false),
        (128, 28, 512, 1, 1, 0, true),
        (128, 28, 128, 3, 1, 1, false),
        (512, 28, 128, 1, 1, 0, false),
        (256, 14, 1024, 1, 1, 0, true),
        (256, 14, 256, 3, 1, 1, false),
        (1024, 14, 256, 1, 1, 0, false),
        (512, 7, 512, 3, 1, 1, false),
        (2048, 7, 512, 1, 1, 0, false),
        (512, 7, 2048, 1, 1, 0, true),
        (256, 56, 512, 1, 2, 0, false),
    ]
    .map(|(c, h, o, k, s, p, add)| (c, h, o, k, s, p, add, 1, Activation::Relu));
    // CIFAR ResNets' layers (16, 32 and 64 channels at 32x32, 16x16 and 8x8).
    let cifar = [
        (16, 32, 16, 3, 1, 1, true),
        (16, 32, 32, 3, 2, 1, false),
        (32, 16, 32, 3, 1, 1, true),
        (32, 16, 64, 3, 2, 1, false),
        (64, 8, 64, 3, 1, 1, true),
    ]
    .map(|(c, h, o, k, s, p, add)| (c, h, o, k, s, p, add, 1, Activation::Relu));
    // The families: depthwise (groups = channels) and the narrow 1x1 layers around them.
    let families = [
        (3, 224, 32, 3, 2, 1, false, 1, Activation::Relu6),
        (16, 112, 96, 1, 1, 0, false, 1, Activation::Relu6),
        (16, 112, 96, 1, 1, 0, false, 1, Activation::Silu),
        (40, 28, 240, 1, 1, 0, false, 1, Activation::Silu),
        (32, 112, 16, 1, 1, 0, false, 1, Activation::Relu6),
        (96, 56, 24, 1, 1, 0, false, 1, Activation::Relu6),
        (144, 56, 24, 1, 1, 0, true, 1, Activation::Relu6),
        (32, 112, 32, 3, 1, 1, false, 32, Activation::Relu6),
        (96, 112, 96, 3, 2, 1, false, 96, Activation::Relu6),
        (144, 56, 144, 3, 1, 1, false, 144, Activation::Relu6),
        (192, 28, 192, 3, 1, 1, false, 192, Activation::Relu6),
        (576, 14, 576, 3, 1, 1, false, 576, Activation::Relu6),
        (960, 7, 960, 3, 1, 1, false, 960, Activation::Relu6),
        (240, 28, 240, 5, 1, 2, false, 240, Activation::Silu),
        (144, 56, 144, 5, 2, 2, false, 144, Activation::Silu),
        (672, 14, 672, 5, 1, 2, false, 672, Activation::Silu),
        // ConvNeXt-like 7x7 (a ReLU here; ConvNeXt has none after its depthwise layer).
        (96, 56, 96, 7, 1, 3, false, 96, Activation::Relu),
        (384, 14, 384, 7, 1, 3, false, 384, Activation::Relu),
    ];
    for (c, h, o, k, s, p, add, groups, act) in resnet.into_iter().chain(cifar).chain(families) {
        let dw = if groups > 1 { " dw" } else { "   " };
        let line = format!("in {c:4}x{h:3}x{h:<3} out {o:4} k{k} s{s}{dw}{} {:5}", if add { " +res" } else { "     " }, act.name());
        if !line.contains(&only) {
            continue;
        }
        let direct = ConvSpec::new([c, h, h], o, k).stride(s).padding(p).groups(groups).then(act);
        let algos = if winograd::eligible(&direct) { vec![direct, direct.winograd(2), direct.winograd(4)] } else { vec![direct] };
        for spec in algos {
            let (oh, _) = spec.output_hw();
            let macs = (o * (c / groups) * k * k * oh * oh) as f64;
            let x: Vec<f32> = (0..c * h * h).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
            let wt: Vec<f32> = (0..o * (c / groups) * k * k).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
            let bias = vec![0.1f32; o];
            let mut y = vec![0f32; o * oh * oh];
            let residual = vec![0.25f32; o * oh * oh];
            let packed = fast::pack(&wt, &spec);
            let mut scratch = vec![0f32; fast::scratch_len(&spec, 1)];
            let epi = Epilogue { bias: Some(&bias), residual: add.then_some(&residual[..]), act: spec.act };
            let mut run = || fast::conv(isa, &x, 1, &spec, &packed, epi, &mut scratch, &mut y);
            run();
            let mut times: Vec<f64> = (0..if only.is_empty() { 21 } else { 1001 })
                .map(|_| {
                    let t = Instant::now();
                    run();
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            // Winograd's rate counts the direct convolution's multiply-adds ("effective").
            let gflops = 2.0 * macs / median / 1e9;
            let algo = fast::winograd_tile(&spec).map_or(String::new(), |m| format!(" winograd F({m}x{m})"));
            println!("{line}: {:7.3} ms {gflops:6.1} GFLOP/s {:5.1}% of peak{algo}", median * 1e3, 100.0 * gflops / peak);
        }
    }
}
