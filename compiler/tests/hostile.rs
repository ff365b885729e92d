//! Hostile input, end to end: the reliability report's reproducers, each a regression test.
//! Nothing here may panic, hang, run out of memory, destroy a file or give a silent wrong
//! answer; every failure is an error that names the file, the flag or the tensor.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{resnetc, root};

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A spec file in `dir` with `text`.
fn spec(dir: &Path, text: &str) -> String {
    let p = dir.join("s.resnet");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// An error (exit 1), never a crash: no panic message, no signal.
fn fails_cleanly(args: &[&str]) -> String {
    let (code, _, err) = resnetc(args);
    assert_eq!(code, 1, "{args:?} should fail with 1: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{args:?} panicked: {err}");
    err
}

#[test]
fn eval_never_writes_over_its_own_inputs() {
    let d = scratch("eval");
    let fx = root().join("../shared/fixtures/cifar_resnet20");
    let (w, x) = (d.join("w.safetensors"), d.join("x.safetensors"));
    std::fs::copy(fx.join("weights.safetensors"), &w).unwrap();
    std::fs::copy(fx.join("io.safetensors"), &x).unwrap();
    let before: Vec<Vec<u8>> = [&w, &x].iter().map(|p| std::fs::read(p).unwrap()).collect();
    let s = root().join("specs/cifar_resnet20.resnet");
    let spec_before = std::fs::read(&s).unwrap();
    for out in [&x, &w, &s] {
        let err = fails_cleanly(&[
            "eval",
            s.to_str().unwrap(),
            "--weights",
            w.to_str().unwrap(),
            "--input",
            x.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(err.contains("refusing to overwrite an input"), "{err}");
    }
    let after: Vec<Vec<u8>> = [&w, &x].iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(spec_before, std::fs::read(&s).unwrap());
    // A failed write is reported as a write, naming the path.
    let err = fails_cleanly(&[
        "eval",
        s.to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
        d.join("no/such/dir/y.safetensors").to_str().unwrap(),
    ]);
    assert!(err.contains("cannot write") && err.contains("no/such/dir"), "{err}");
    // A weights path that is a directory says so.
    let err =
        fails_cleanly(&["eval", s.to_str().unwrap(), "--weights", d.to_str().unwrap(), "--input", x.to_str().unwrap(), "--output", "y"]);
    assert!(err.contains("it is a directory"), "{err}");
}

#[test]
fn build_keeps_a_users_folder_and_validates_names() {
    let d = scratch("build");
    let mine = d.join("mine");
    std::fs::create_dir_all(mine.join("src")).unwrap();
    std::fs::write(mine.join("Cargo.toml"), "# my own\n").unwrap();
    std::fs::write(mine.join("src/main.rs"), "fn main() {}\n").unwrap();
    let err = fails_cleanly(&["build", "specs/cifar_resnet20.resnet", "--out", mine.to_str().unwrap()]);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(mine.join("Cargo.toml")).unwrap(), "# my own\n");
    assert_eq!(std::fs::read_to_string(mine.join("src/main.rs")).unwrap(), "fn main() {}\n");
    // A folder resnetc wrote may be written again; --force writes into the user's.
    let ours = d.join("ours");
    for _ in 0..2 {
        let (code, _, err) = resnetc(&["build", "specs/cifar_resnet20.resnet", "--out", ours.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = resnetc(&["build", "specs/cifar_resnet20.resnet", "--out", mine.to_str().unwrap(), "--force"]);
    assert_eq!(code, 0, "{err}");
    for name in ["x\"\nversion = \"9", "a b", "1abc", ""] {
        let err = fails_cleanly(&["build", "specs/cifar_resnet20.resnet", "--out", d.join("n").to_str().unwrap(), "--name", name]);
        assert!(err.contains("not a valid crate name"), "{name:?}: {err}");
    }
    for name in ["a b", "fn", "1x", "Self", ""] {
        let err = fails_cleanly(&["emit", "specs/cifar_resnet20.resnet", "--name", name]);
        assert!(err.contains("not a valid type name"), "{name:?}: {err}");
    }
}

#[test]
fn numbers_from_users_never_wrap() {
    let d = scratch("numbers");
    // A padding near 2^63 used to give a 30x30 output.
    let s = spec(&d, "network n { input [3, 32, 32]\n conv1: conv(16, k = 1, p = 9223372036854775807) }");
    let err = fails_cleanly(&["check", &s]);
    assert!(err.contains("larger than resnetc supports"), "{err}");
    // Channel counts whose MACs or sizes overflow.
    let s = spec(&d, "network n { input [3, 32, 32]\n conv1: conv(4000000000, k = 3) }");
    let err = fails_cleanly(&["check", &s]);
    assert!(err.contains("larger than resnetc supports") || err.contains("too large"), "{err}");
    // Input dimensions whose product overflows, or that would not fit in memory.
    for dims in ["[3, 100000, 100000]", "[4294967296, 4294967296, 4294967296]"] {
        let s = spec(&d, &format!("network n {{ input {dims}\n relu }}"));
        let err = fails_cleanly(&["check", &s]);
        assert!(err.contains("input"), "{err}");
    }
    let err = fails_cleanly(&["check", "specs/resnet18.resnet", "--set", "classes=1e20"]);
    assert!(err.contains("must be an integer") || err.contains("classes"), "{err}");
    let err = fails_cleanly(&["check", "specs/resnet18.resnet", "--set", "classes=99999999999999999999"]);
    assert!(err.contains("does not fit in a 64-bit"), "{err}");
    let s = spec(&d, "network n { input [3, 8, 8]\n layer1: stage(b, blocks = 1000000) }\nblock b() { relu }");
    let err = fails_cleanly(&["check", &s]);
    assert!(err.contains("more than a stage may repeat"), "{err}");
    for (flag, value) in
        [("--batch", "0"), ("--batch", "18446744073709551615"), ("--threads", "0"), ("--threads", "100000"), ("--bench", "0")]
    {
        let (code, _, err) = resnetc(&["run", "specs/cifar_resnet20.resnet", flag, value]);
        assert_eq!(code, 2, "{flag} {value} is a usage error: {err}");
        assert!(err.contains(flag), "{err}");
    }
}

#[test]
fn deep_or_huge_specs_are_errors_not_crashes() {
    let d = scratch("deep");
    let cases = [
        format!("network n {{ input [3, 8, 8]\n {} relu {} }}", "seq { ".repeat(10_000), "} ".repeat(10_000)),
        format!("network n {{ input [3, 8, 8]\n let x = {}1{}\n relu }}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("network n {{ input [3, 8, 8]\n let x = {}1\n relu }}", "1 + ".repeat(30_000)),
        // An error past column 65535.
        format!("network n {{ input [3, 8, 8]\n relu{} bogus(1) }}", " ".repeat(70_000)),
        // A block named like a built-in op.
        "network n { input [3, 8, 8]\n relu }\nblock relu() { sigmoid }".to_string(),
        // Two layers with the same state_dict key.
        "network n { input [3, 8, 8]\n a: seq { b: conv(4, k = 1) }\n a.b: conv(4, k = 1) }".to_string(),
    ];
    for (i, text) in cases.iter().enumerate() {
        let s = spec(&d, text);
        let err = fails_cleanly(&["check", &s]);
        assert!(err.contains("s.resnet"), "case {i}: {err}");
    }
    // Not a regular file, and files too large to be specs.
    let err = fails_cleanly(&["check", "/dev/zero"]);
    assert!(err.contains("not a regular file"), "{err}");
    let s = spec(&d, "network n { input [3, 8, 8]\n use \"/dev/zero\"\n relu }");
    let _ = fails_cleanly(&["check", &s]);
    let big = d.join("big.resnet");
    std::fs::write(&big, format!("network n {{ input [3, 8, 8]\n{}}}", "relu\n".repeat(300_000))).unwrap();
    let err = fails_cleanly(&["check", big.to_str().unwrap()]);
    assert!(err.contains("larger than"), "{err}");
    let err = fails_cleanly(&["check", d.to_str().unwrap()]);
    assert!(err.contains("directory"), "{err}");
}

/// Two `run`s of one spec with different `--set`s at once each get their own model, and so
/// does every later run (the cache is keyed by the generated code and locked while building).
#[test]
fn concurrent_runs_serve_the_right_model() {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("run-cache");
    let spawn = |classes: &str| {
        Command::new(env!("CARGO_BIN_EXE_resnetc"))
            .args(["run", "specs/cifar_resnet20.resnet", "--set", &format!("classes={classes}"), "--cache", cache.to_str().unwrap()])
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("16"), spawn("17"));
    for (child, classes) in [(a, 16), (b, 17)] {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("output [1, {classes}]")), "classes={classes}: {stdout}");
    }
    let out = spawn("16").wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("output [1, 16]"));
}

/// Two `run`s of the same spec at once into an empty cache: one builds, the other waits for
/// the lock and uses that build (no "Text file busy", no half-copied binary).
#[test]
fn concurrent_runs_of_one_spec_share_one_build() {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("run-cache-same");
    let _ = std::fs::remove_dir_all(&cache);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_resnetc"))
            .args(["run", "specs/digits_resnet8.resnet", "--cache", cache.to_str().unwrap()])
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    for out in &outs {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("output [1, 10]"));
    }
    let reused = outs.iter().filter(|o| String::from_utf8_lossy(&o.stderr).contains("using the cached build")).count();
    assert_eq!(reused, 1, "one run builds, the other reuses its build");
}

/// The second round of reproducers (a hostile read of the first fixes).
#[test]
fn second_round_of_hostile_inputs() {
    let d = scratch("round2");
    // A network called `self` compiles to a usable type; bad names are refused.
    let s = spec(&d, "network self {\n input [1, 8, 8]\n fc: linear(3)\n}");
    let (code, out, err) = resnetc(&["emit", &s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("SelfModel"), "{out}");
    for name in ["fn", "self", "std", "resnetc-runtime", "image"] {
        let err = fails_cleanly(&["build", &s, "--out", d.join("n").to_str().unwrap(), "--name", name]);
        assert!(err.contains("not a valid crate name"), "{name}: {err}");
    }
    for name in ["Result", "Vec", "ConvSpec"] {
        let err = fails_cleanly(&["emit", &s, "--name", name]);
        assert!(err.contains("not a valid type name"), "{name}: {err}");
    }
    // 850 blocks each calling the next.
    let mut text = String::from("network n { input [1, 8, 8]\n x: b0(1) }\n");
    for i in 0..850 {
        text.push_str(&format!("block b{i}(c) {{ x: b{}(c) }}\n", i + 1));
    }
    text.push_str("block b850(c) { relu }\n");
    let err = fails_cleanly(&["check", &spec(&d, &text)]);
    assert!(err.contains("blocks nest more than"), "{err}");
    // Values PyTorch rejects.
    for layer in ["dropout(p = 2)", "dropout(p = -1)", "bn(eps = -1)", "bn(eps = 0)", "bn(eps = 1e400)"] {
        let err = fails_cleanly(&["check", &spec(&d, &format!("network n {{ input [1, 8, 8]\n {layer} }}"))]);
        assert!(err.contains("must be"), "{layer}: {err}");
    }
    // Huge batches and thread counts are refused, not reported as u64::MAX or run.
    let (code, _, err) = resnetc(&["summary", "specs/resnet18.resnet", "--batch", "99999999999999"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = resnetc(&["peak", "--threads", "0"]);
    assert_eq!(code, 2, "{err}");
    // The interpreter refuses what it cannot hold instead of aborting.
    let fx = root().join("../shared/fixtures/cifar_resnet20");
    let x = d.join("big.safetensors");
    let big = resnetc_runtime::ndarray::ArrayD::<f32>::zeros(resnetc_runtime::ndarray::IxDyn(&[1, 3, 4096, 4096]));
    resnetc_runtime::io::write(&x, &[("input", &big)]).unwrap();
    let w = fx.join("weights.safetensors");
    let args = [
        "eval",
        "specs/cifar_resnet20.resnet",
        "--input-shape",
        "3,4096,4096",
        "--weights",
        w.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
    ];
    let y = d.join("y.safetensors");
    let err = fails_cleanly(&[&args[..], &[y.to_str().unwrap()]].concat());
    assert!(err.contains("GiB"), "{err}");
    // --output through a symlink writes the link's target; a read-only file is refused;
    // a file the spec `use`s is protected.
    let small_x = fx.join("io.safetensors");
    let target = d.join("target.safetensors");
    std::fs::write(&target, b"old").unwrap();
    let link = d.join("link.safetensors");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let eval = |out: &Path, spec: &str| {
        resnetc(&["eval", spec, "--weights", w.to_str().unwrap(), "--input", small_x.to_str().unwrap(), "--output", out.to_str().unwrap()])
    };
    #[cfg(unix)]
    {
        let (code, _, err) = eval(&link, "specs/cifar_resnet20.resnet");
        assert_eq!(code, 0, "{err}");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
        assert!(std::fs::metadata(&target).unwrap().len() > 3, "the target got the output");
    }
    let ro = d.join("ro.safetensors");
    std::fs::write(&ro, b"keep").unwrap();
    let mut perm = std::fs::metadata(&ro).unwrap().permissions();
    perm.set_readonly(true);
    std::fs::set_permissions(&ro, perm).unwrap();
    let (code, _, _) = eval(&ro, "specs/cifar_resnet20.resnet");
    assert_eq!(code, 1);
    assert_eq!(std::fs::read(&ro).unwrap(), b"keep");
    let g = d.join("g");
    std::fs::create_dir_all(&g).unwrap();
    for f in ["cifar_resnet20.resnet", "cifar.resnet"] {
        std::fs::copy(root().join("specs").join(f), g.join(f)).unwrap();
    }
    let used = g.join("cifar.resnet");
    let before = std::fs::read(&used).unwrap();
    let err = fails_cleanly(&[
        "eval",
        g.join("cifar_resnet20.resnet").to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
        "--input",
        small_x.to_str().unwrap(),
        "--output",
        used.to_str().unwrap(),
    ]);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&used).unwrap(), before);
    // build --force never writes over the spec; --out a file says so.
    let sd = d.join("sd");
    std::fs::create_dir_all(&sd).unwrap();
    std::fs::copy(root().join("specs/digits_resnet8.resnet"), sd.join("README.md")).unwrap();
    std::fs::copy(root().join("specs/cifar.resnet"), sd.join("cifar.resnet")).unwrap();
    let err = fails_cleanly(&["build", sd.join("README.md").to_str().unwrap(), "--out", sd.to_str().unwrap(), "--force"]);
    assert!(err.contains("which the spec reads"), "{err}");
    let err = fails_cleanly(&["build", "specs/digits_resnet8.resnet", "--out", target.to_str().unwrap()]);
    assert!(err.contains("is a file, not a folder"), "{err}");
    // --after a pass that does not run.
    let err = fails_cleanly(&["graph", "specs/resnet18.resnet", "--after", "fuse", "-O0"]);
    assert!(err.contains("cannot stop after `fuse`"), "{err}");
    // An input file without `input` lists what it has.
    let err = fails_cleanly(&[
        "eval",
        "specs/cifar_resnet20.resnet",
        "--weights",
        w.to_str().unwrap(),
        "--input",
        w.to_str().unwrap(),
        "--output",
        y.to_str().unwrap(),
    ]);
    assert!(err.contains("has no tensor `input`; it has"), "{err}");
}
