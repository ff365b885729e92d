//! Emitted crates, built with cargo and run, against the PyTorch fixtures; one copied
//! outside the workspace; and a snapshot of the generated code.
//!
//! The crates share one target directory (dependencies compile once) and are built in
//! release mode; building takes a few minutes on a 2-core machine, so everything runs in
//! one test, in sequence (the crates' `infer` binaries share a name in that directory).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use resnetc_compiler::codegen::{self, package, CodegenOptions};
use resnetc_compiler::parity::assert_parity;
use resnetc_compiler::{compile_file, Compiled, Options};
use resnetc_runtime::Isa;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    root().join("../shared/fixtures")
}

fn spec(name: &str) -> Compiled {
    compile_file(&root().join("specs").join(format!("{name}.resnet")), &Options::default()).unwrap()
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("emitted-target")
}

/// Writes and builds the crate of `spec` in `dir`; returns the path of its `infer` copy.
fn build(spec_name: &str, dir: &Path) -> PathBuf {
    build_with(spec_name, dir, &Options::default())
}

/// [`build`] with compile options (`--set`s, the input shape).
fn build_with(spec_name: &str, dir: &Path, options: &Options) -> PathBuf {
    let c = compile_file(&root().join("specs").join(format!("{spec_name}.resnet")), options).unwrap();
    let files = package::crate_files(
        &c,
        &format!("specs/{spec_name}.resnet"),
        &package::crate_name(&c.graph.name),
        package::CrateOptions::default(),
    );
    package::write_crate(dir, &files).unwrap();
    build_at(dir)
}

fn build_at(dir: &Path) -> PathBuf {
    // Only the `infer` binary: its name is shared in the common target directory.
    let out = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "infer", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo build failed in {}:\n{}", dir.display(), String::from_utf8_lossy(&out.stderr));
    let exe = dir.join("infer-bin");
    std::fs::copy(target_dir().join("release/infer"), &exe).unwrap();
    exe
}

fn infer(exe: &Path, weights: &Path, input: &Path, output: &Path, threads: usize) -> String {
    infer_env(exe, weights, input, output, threads, &[])
}

/// Runs `infer` with `env` set and every other `RESNETC_*` variable of this process removed.
fn infer_env(exe: &Path, weights: &Path, input: &Path, output: &Path, threads: usize, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(exe);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RESNETC_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .envs(env.iter().copied())
        .args(["--weights", weights.to_str().unwrap(), "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .args(["--threads", &threads.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "infer failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fixture parity (the one comparison helper: finite values, same shape, tolerance, argmax).
fn check(what: &str, ours: &Path, torch: &Path) {
    let ours = resnetc_runtime::io::read_any(ours, "output").unwrap();
    let torch = resnetc_runtime::io::read_any(torch, "output").unwrap();
    assert_parity(what, ours.view(), torch.view());
}

/// The `direct, F(2x2), F(4x4)` convolution counts of `infer`'s report.
fn algorithms(stdout: &str) -> [usize; 3] {
    let line = stdout.lines().find(|l| l.starts_with("convolutions a pass:")).expect("infer reports the convolutions");
    let nums: Vec<usize> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|t| t.parse().ok()).collect();
    // "…: D direct, F Winograd F(2x2), G Winograd F(4x4)": the digits of 2x2 / 4x4 come along.
    [nums[0], nums[1], nums[4]]
}

/// The expansion + depthwise pairs infer reports: [in strips, all] (none reported: none).
fn strip_pairs(stdout: &str) -> [usize; 2] {
    let Some(line) = stdout.lines().find(|l| l.starts_with("expansion + depthwise pairs a pass:")) else { return [0, 0] };
    let nums: Vec<usize> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|t| t.parse().ok()).collect();
    [nums[1], nums[0]]
}

/// Asserts that `infer`'s report names the kernels that ran.
fn assert_ran(what: &str, stdout: &str, kernels: &str) {
    let want = format!("{kernels} kernels)");
    assert!(stdout.contains(&want), "{what}: expected `{want}` in infer's report:\n{stdout}");
}

#[test]
fn emitted_crates_match_pytorch() {
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("emitted");
    let fx = fixtures();
    let resnets = [("cifar_resnet20", "cifar_resnet20"), ("bottleneck_1111", "bottleneck_1111"), ("resnet18", "resnet18")]
        .map(|(s, d)| (s, d, Options::default()));
    let families = common::FAMILY_FIXTURES.iter().map(|f| (f.spec, f.dir, f.options()));
    for (spec_name, dir, options) in resnets.into_iter().chain(families) {
        let exe = build_with(spec_name, &work.join(dir), &options);
        // Every micro-kernel path this CPU has (AVX-512, AVX2+FMA, portable), each asserted
        // from infer's report of what ran; and 3x3 stride-1 convolutions direct, or all
        // through one Winograd tile size, instead of the compiler's choice; each on 1 and 2
        // threads.
        let widest = Isa::detect();
        if widest < Isa::Avx512 {
            eprintln!("note: this CPU has no AVX-512; the AVX-512 path is not tested here");
        }
        let avx2 = if Isa::Avx2.supported() { Isa::Avx2 } else { Isa::Portable };
        let w = widest.name();
        let paths = [
            ("widest", vec![], w.to_string()),
            ("avx2", vec![("RESNETC_AVX512", "0")], avx2.name().to_string()),
            ("portable", vec![("RESNETC_PORTABLE", "1")], "portable".to_string()),
            ("no winograd", vec![("RESNETC_WINOGRAD", "0")], format!("{w}, Winograd off")),
            ("winograd 2x2 only", vec![("RESNETC_WINOGRAD", "2")], format!("{w}, Winograd F(2x2) forced")),
            ("winograd 4x4 only", vec![("RESNETC_WINOGRAD", "4")], format!("{w}, Winograd F(4x4) forced")),
            ("strips", vec![("RESNETC_STRIPS", "1")], w.to_string()),
            ("no strips", vec![("RESNETC_STRIPS", "0")], w.to_string()),
        ];
        for threads in [1, 2] {
            for (path, env, kernels) in &paths {
                let y = work.join(format!("{spec_name}-{threads}-{path}.safetensors"));
                let (weights, io) = (fx.join(dir).join("weights.safetensors"), fx.join(dir).join("io.safetensors"));
                let what = format!("{spec_name} ({threads} threads, {path}: {kernels})");
                let stdout = infer_env(&exe, &weights, &io, &y, threads, env);
                assert_ran(&what, &stdout, kernels);
                // Which convolution algorithms ran, as the workspace counted them.
                let [direct, f2, f4] = algorithms(&stdout);
                match *path {
                    "no winograd" => assert_eq!((f2, f4), (0, 0), "{what}"),
                    "winograd 2x2 only" => assert_eq!(f4, 0, "{what}"),
                    "winograd 4x4 only" => assert_eq!(f2, 0, "{what}"),
                    _ => {}
                }
                // Expansion + depthwise pairs: in strips when forced, whole when not (the
                // fixtures' 64x64 expansions are below the automatic threshold).
                let [in_strips, pairs] = strip_pairs(&stdout);
                match *path {
                    "strips" => assert_eq!(in_strips, pairs, "{what}"),
                    _ => assert_eq!(in_strips, 0, "{what}"),
                }
                if spec_name.starts_with("mobilenet") || spec_name.starts_with("efficientnet") {
                    assert!(pairs > 0, "{what}: its inverted residuals run as pairs");
                }
                if spec_name == "resnet18" {
                    // Its 3x3 stride-1 convolutions of 64+ channels take Winograd unless off.
                    assert_eq!(f2 + f4 > 0, *path != "no winograd", "{what}: {direct} {f2} {f4}");
                }
                check(&what, &y, &io);
            }
        }
    }
    image_input_is_preprocessed_as_imagenet(&work);
    infer_refuses_counts_it_would_have_to_change(&work);

    // The digits model: identical predictions on the 360 test images.
    let exe = build("digits_resnet8", &work.join("digits_resnet8"));
    let io = fx.join("digits/resnet8_io.safetensors");
    let y = work.join("digits.safetensors");
    infer(&exe, &fx.join("digits/resnet8_weights.safetensors"), &io, &y, 2);
    check("digits_resnet8", &y, &io);

    // A crate copied to a fresh folder outside the workspace builds and runs there.
    let copy = std::env::temp_dir().join(format!("resnetc-copied-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(&work.join("cifar_resnet20"), &copy);
    let exe = build_at(&copy);
    let y = copy.join("y.safetensors");
    let d = fx.join("cifar_resnet20");
    infer(&exe, &d.join("weights.safetensors"), &d.join("io.safetensors"), &y, 1);
    check("cifar_resnet20 (copied crate)", &y, &d.join("io.safetensors"));
    std::fs::remove_dir_all(&copy).ok();
}

/// `infer` refuses zero or huge counts instead of silently changing them, and never writes
/// its output over an input.
fn infer_refuses_counts_it_would_have_to_change(work: &Path) {
    let exe = work.join("cifar_resnet20/infer-bin");
    for (flag, value) in
        [("--threads", "0"), ("--threads", "100000"), ("--batch", "0"), ("--batch", "18446744073709551615"), ("--bench", "0")]
    {
        let out = Command::new(&exe).args([flag, value]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "infer {flag} {value}: {err}");
        assert!(err.contains(flag) && err.contains("expected 1 to"), "infer {flag} {value}: {err}");
    }
    let w = fixtures().join("cifar_resnet20/weights.safetensors");
    let out = Command::new(&exe).args(["--weights", w.to_str().unwrap(), "--output", w.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite an input"));
}

/// `infer --image` on a one-colour PNG equals `infer --input` on the tensor ImageNet
/// preprocessing gives for that colour: (v / 255 - mean) / std in every pixel.
fn image_input_is_preprocessed_as_imagenet(work: &Path) {
    let exe = work.join("cifar_resnet20/infer-bin");
    let png = work.join("colour.png");
    std::fs::write(&png, solid_png(50, 40, [200, 100, 50])).unwrap();
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let want = ndarray::Array4::from_shape_fn((1, 3, 32, 32), |(_, c, _, _)| ([200.0f32, 100.0, 50.0][c] / 255.0 - mean[c]) / std[c]);
    let x = work.join("colour-input.safetensors");
    resnetc_runtime::io::write(&x, &[("input", &want.into_dyn())]).unwrap();
    let w = fixtures().join("cifar_resnet20/weights.safetensors");
    let (ya, yb) = (work.join("colour-a.safetensors"), work.join("colour-b.safetensors"));
    infer(&exe, &w, &x, &ya, 1);
    let out = Command::new(&exe)
        .args(["--weights", w.to_str().unwrap(), "--image", png.to_str().unwrap(), "--output", yb.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (a, b) = (resnetc_runtime::io::read_any(&ya, "output").unwrap(), resnetc_runtime::io::read_any(&yb, "output").unwrap());
    resnetc_compiler::parity::assert_close("--image vs the preprocessed tensor", b.view(), a.view(), 1e-5);
}

/// An uncompressed RGB PNG of one colour (stored deflate blocks).
fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    let mut raw = Vec::new();
    for _ in 0..height {
        raw.push(0); // filter: none
        raw.extend(rgb.repeat(width as usize));
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        z.extend((b.len() as u16).to_le_bytes());
        z.extend((!(b.len() as u16)).to_le_bytes());
        z.extend(*b);
    }
    let (mut s1, mut s2) = (1u32, 0u32);
    for &b in &raw {
        s1 = (s1 + u32::from(b)) % 65_521;
        s2 = (s2 + s1) % 65_521;
    }
    z.extend(((s2 << 16) | s1).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    png
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "target" || name == "infer-bin" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// The random networks of the passes test (12 drawn deterministically) through generated
/// code, one crate holding them all: every ISA this CPU has, 1 and 2 threads, the workspace
/// poisoning dead values, and the batch run both in order (every step over it) and sample-major, against the
/// interpreter on the same seeded weights and input.
#[test]
fn random_networks_through_generated_code_match_the_interpreter() {
    use resnetc_compiler::{compile, interp, parity, Source};
    let specs = common::random_specs(12);
    let compiled: Vec<Compiled> = specs
        .iter()
        .map(|s| compile(&Source::inline("random.resnet", s.as_str()), &Options::default()).unwrap_or_else(|e| panic!("{s}\n{e}")))
        .collect();
    let mut lib = String::from("pub use resnetc_runtime as runtime;\n");
    for (i, c) in compiled.iter().enumerate() {
        let opts = CodegenOptions { type_name: format!("M{i}"), ..CodegenOptions::for_crate(&c.graph, "random.resnet") };
        lib.push_str(&codegen::model_source(c, &opts));
    }
    let names: Vec<String> = (0..compiled.len()).map(|i| format!("M{i}")).collect();
    let main = format!(
        r#"use random_nets::*;
use random_nets::runtime::{{io, ndarray::Array4, BatchOrder, Isa, Workspace}};
fn main() {{
    let args: Vec<String> = std::env::args().collect();
    let (out, threads): (&str, usize) = (&args[1], args[2].parse().unwrap());
    random_nets::runtime::model::set_threads(threads).unwrap();
    macro_rules! run {{ ($($t:ident),*) => {{ $({{
        let m = $t::random(7);
        let [c, h, w] = $t::INPUT_SHAPE;
        let x = Array4::from_shape_fn((2, c, h, w), |(n, c, y, x)| ((n * 31 + c * 17 + y * 5 + x * 3) % 23) as f32 / 11.0 - 1.0);
        for isa in Isa::available() {{
            for (order, tag) in [(BatchOrder::Batched, "batched"), (BatchOrder::SampleMajor, "sample")] {{
                let mut ws = Workspace::with_isa(isa).unwrap();
                ws.set_batch_order(order);
                ws.enable_poison();
                m.forward_into(x.view(), &mut ws).unwrap();
                assert_eq!(ws.is_sample_major(), order == BatchOrder::SampleMajor);
                let y = m.forward_into(x.view(), &mut ws).unwrap().to_owned();
                let path = format!("{{out}}/{{}}-{{}}-{{threads}}-{{tag}}.safetensors", stringify!($t), isa.name());
                io::write(std::path::Path::new(&path), &[("output", &y.into_dyn())]).unwrap();
            }}
        }}
    }})* }} }}
    run!({});
}}
"#,
        names.join(", ")
    );
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("emitted").join("random-nets");
    let mut files = package::crate_files(&compiled[0], "random.resnet", "random-nets", package::CrateOptions::default());
    for (rel, text) in &mut files {
        match rel.as_str() {
            "src/lib.rs" => *text = lib.clone(),
            "src/main.rs" => *text = main.clone(),
            _ => {}
        }
    }
    package::write_crate(&work, &files).unwrap();
    let exe = build_at(&work);
    let out = work.join("out");
    std::fs::create_dir_all(&out).unwrap();
    for threads in [1, 2] {
        let status = Command::new(&exe).arg(&out).arg(threads.to_string()).status().unwrap();
        assert!(status.success());
    }
    for (i, c) in compiled.iter().enumerate() {
        let g = &c.graph;
        let s = g.input_shape();
        let w = resnetc_runtime::Weights::random(&interp::expected_weights(g), 7);
        let x =
            ndarray::Array4::from_shape_fn((2, s.c, s.h, s.w), |(n, c, y, x)| ((n * 31 + c * 17 + y * 5 + x * 3) % 23) as f32 / 11.0 - 1.0);
        let want = interp::forward(g, &w, x.view()).unwrap();
        for isa in Isa::available() {
            for threads in [1, 2] {
                // The batch both ways: every step over the batch, and once a sample.
                for order in ["batched", "sample"] {
                    let y =
                        resnetc_runtime::io::read_any(&out.join(format!("M{i}-{}-{threads}-{order}.safetensors", isa.name())), "output")
                            .unwrap();
                    let what = format!("random network {i} ({isa}, {threads} threads, {order}):\n{}", specs[i]);
                    parity::assert_close(&what, y.view(), want.view().into_dyn(), 1e-4);
                }
            }
        }
    }
}

#[test]
fn generated_code_snapshot_cifar_resnet20() {
    let c = spec("cifar_resnet20");
    let opts = CodegenOptions::for_crate(&c.graph, "specs/cifar_resnet20.resnet");
    insta::assert_snapshot!(codegen::model_source(&c, &opts));
}

#[test]
fn generated_code_stays_compact_for_resnet152() {
    let c = spec("resnet152");
    let g = &c.graph;
    let start = std::time::Instant::now();
    let src = codegen::model_source(&c, &CodegenOptions::for_crate(g, "specs/resnet152.resnet"));
    let elapsed = start.elapsed();
    eprintln!("resnet152: {} lines, {} bytes of code generated in {:.0} ms", src.lines().count(), src.len(), elapsed.as_secs_f64() * 1e3);
    // Layers call kernels: a few lines a node, a line a table row and a tensor constant, a
    // named `Fold { .. }` literal (about 13 lines) a folded batch norm; nothing unrolled.
    let rows = g.nodes.len() + g.tensors.len() + g.params().count();
    let limit = 3 * rows + 14 * g.transforms.len();
    assert!(src.lines().count() < limit, "{} lines for {rows} nodes and table rows and {} folds", src.lines().count(), g.transforms.len());
}
