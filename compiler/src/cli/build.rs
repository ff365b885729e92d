//! `resnetc emit`, `build` and `run`: generated code, emitted crates, and running them.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Args;
use resnetc_compiler::codegen::{self, package, CodegenOptions};

use super::SpecArgs;

#[derive(Args)]
pub(crate) struct EmitArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The model type's name (default: the network's name in CamelCase); a Rust identifier.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Args)]
pub(crate) struct BuildArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The directory to write the crate into (created if needed). A folder that holds
    /// anything but a crate resnetc wrote is refused unless --force.
    #[arg(long)]
    out: PathBuf,
    /// The crate's name (default: the network's name): ASCII letters, digits, `-`, `_`.
    #[arg(long)]
    name: Option<String>,
    /// Write into --out even though it holds files resnetc did not write (they may be
    /// overwritten).
    #[arg(long)]
    force: bool,
    /// Also make it a Python package: PyO3 bindings and a pyproject.toml, so that
    /// `pip install DIR` builds and installs it (import it by the crate's name, `-` as `_`).
    #[arg(long)]
    python: bool,
}

/// The flags `run` passes on to the emitted `infer` binary.
#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Weights (a PyTorch state_dict in safetensors); default: seeded random weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Read weight keys that start with OLD as starting with NEW (`module.=` strips
    /// DataParallel's prefix).
    #[arg(long, value_name = "OLD=NEW", value_parser = resnetc_runtime::LoadOptions::parse_key_prefix)]
    key_prefix: Option<(String, String)>,
    /// Input (tensor `input` [N, C, H, W]); default: a seeded random input.
    #[arg(long)]
    input: Option<PathBuf>,
    /// A JPEG or PNG as the input, preprocessed as torchvision's evaluation transform.
    #[arg(long, conflicts_with_all = ["input", "images"])]
    image: Option<PathBuf>,
    /// Score every .jpg/.jpeg/.png of this folder (results to --output FILE.jsonl|.csv).
    #[arg(long, conflicts_with = "input")]
    images: Option<PathBuf>,
    /// With --image/--images: the shorter side before the centre crop.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    resize: Option<u64>,
    /// The batch of the random input.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=65536))]
    batch: u64,
    /// Write tensor `output` here (with --images: the results, .jsonl or .csv).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Threads to split every layer over (default: available cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
    /// Time this many forward passes after a warm-up.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    bench: Option<u64>,
    /// With --bench: print the time spent in each layer.
    #[arg(long)]
    profile: bool,
    /// How many of the best classes to print a row.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Class names, one a line.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Where built crates are cached (default: $RESNETC_CACHE, else ~/.cache/resnetc).
    #[arg(long)]
    cache: Option<PathBuf>,
}

fn fail(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

pub(crate) fn emit(a: &EmitArgs) -> Result<(), ExitCode> {
    let c = a.spec.compile()?;
    let mut opts = CodegenOptions::for_crate(&c.graph, &a.spec.spec.display().to_string());
    if let Some(n) = &a.name {
        codegen::check_type_name(n).map_err(|e| fail(format!("--name: {e}")))?;
        opts.type_name = n.clone();
    }
    print!("{}", codegen::model_source(&c, &opts));
    Ok(())
}

pub(crate) fn build(a: &BuildArgs) -> Result<(), ExitCode> {
    if let Some(n) = &a.name {
        package::check_crate_name(n).map_err(|e| fail(format!("--name: {e}")))?;
    }
    if a.out.exists() && !a.out.is_dir() {
        return Err(fail(format!("--out {} is a file, not a folder", a.out.display())));
    }
    if !a.force && !package::may_write_into(&a.out) {
        return Err(fail(format!(
            "{} is not empty and holds no crate resnetc wrote; choose an empty or new folder, or pass --force",
            a.out.display()
        )));
    }
    let c = a.spec.compile()?;
    let name = a.name.clone().unwrap_or_else(|| package::crate_name(&c.graph.name));
    let start = std::time::Instant::now();
    let files = package::crate_files(&c, &a.spec.spec.display().to_string(), &name, package::CrateOptions { python: a.python });
    // Even with --force, never over the spec or a file it uses.
    for (rel, _) in &files {
        if let Some(input) = c.files.iter().find(|f| resnetc_runtime::io::same_file(&a.out.join(rel), f)) {
            return Err(fail(format!(
                "{} would overwrite {}, which the spec reads; choose another --out",
                a.out.join(rel).display(),
                input.display()
            )));
        }
    }
    package::write_crate(&a.out, &files).map_err(|e| fail(format!("{}: {e}", a.out.display())))?;
    eprintln!(
        "wrote crate `{name}` to {} in {:.0} ms; build it with `cargo build --release --manifest-path {}/Cargo.toml`{}",
        a.out.display(),
        start.elapsed().as_secs_f64() * 1e3,
        a.out.display(),
        if a.python { format!(", or install the Python package with `pip install {}`", a.out.display()) } else { String::new() }
    );
    Ok(())
}

fn cache_dir(explicit: &Option<PathBuf>) -> PathBuf {
    if let Some(p) = explicit {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("RESNETC_CACHE") {
        return PathBuf::from(p);
    }
    let home =
        std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    home.unwrap_or_else(std::env::temp_dir).join("resnetc")
}

/// FNV-1a: a stable content hash for cache keys.
fn fnv(parts: &[(String, String)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (a, b) in parts {
        for byte in a.bytes().chain([0]).chain(b.bytes()).chain([0]) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

pub(crate) fn run(a: &RunArgs) -> Result<(), ExitCode> {
    let c = a.spec.compile()?;
    let name = package::crate_name(&c.graph.name);
    let files = package::crate_files(&c, &a.spec.spec.display().to_string(), &name, package::CrateOptions::default());
    // The generated files hold the spec's content (as code), the options and the compiler
    // version: their hash is the cache key.
    let key = fnv(&files);
    let cache = cache_dir(&a.cache);
    let dir = cache.join(format!("{name}-{key:016x}"));
    let exe = dir.join(if cfg!(windows) { "infer.exe" } else { "infer" });
    {
        // One build at a time in a cache: builds share a target folder, whose `infer` each
        // copies out. The binary of a keyed folder is written once (renamed into place).
        std::fs::create_dir_all(&cache).map_err(|e| fail(format!("{}: {e}", cache.display())))?;
        let lock = std::fs::File::create(cache.join(".lock")).map_err(|e| fail(format!("{}: {e}", cache.display())))?;
        lock.lock().map_err(|e| fail(format!("cannot lock {}: {e}", cache.display())))?;
        if !exe.exists() {
            package::write_crate(&dir, &files).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
            build_crate(&dir, &cache.join("target"), &exe)?;
        } else {
            eprintln!("using the cached build in {}", dir.display());
        }
    }
    let mut cmd = Command::new(&exe);
    let path = |p: &Path| p.display().to_string();
    if let Some(w) = &a.weights {
        cmd.args(["--weights", &path(w)]);
    }
    if let Some(x) = &a.input {
        cmd.args(["--input", &path(x)]);
    }
    if let Some((old, new)) = &a.key_prefix {
        cmd.args(["--key-prefix", &format!("{old}={new}")]);
    }
    if let Some(x) = &a.image {
        cmd.args(["--image", &path(x)]);
    }
    if let Some(x) = &a.images {
        cmd.args(["--images", &path(x)]);
    }
    if let Some(r) = a.resize {
        cmd.args(["--resize", &r.to_string()]);
    }
    // --images batches 16 unless told otherwise.
    if a.images.is_none() || a.batch != 1 {
        cmd.args(["--batch", &a.batch.to_string()]);
    }
    cmd.args(["--top", &a.top.to_string()]);
    if let Some(y) = &a.output {
        cmd.args(["--output", &path(y)]);
    }
    if let Some(t) = a.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    if let Some(r) = a.bench {
        cmd.args(["--bench", &r.to_string()]);
    }
    if a.profile {
        cmd.arg("--profile");
    }
    if let Some(l) = &a.labels {
        cmd.args(["--labels", &path(l)]);
    }
    if a.weights.is_none() {
        eprintln!("no --weights: using seeded random weights");
    }
    let status = cmd.status().map_err(|e| fail(format!("cannot start {}: {e}", exe.display())))?;
    if status.success() {
        Ok(())
    } else {
        // infer's own status: 2 when --images could not read some files.
        Err(ExitCode::from(status.code().and_then(|c| u8::try_from(c).ok()).filter(|&c| c != 0).unwrap_or(1)))
    }
}

/// `cargo build --release` of an emitted crate, showing cargo's progress; copies the
/// `infer` binary to `exe`.
fn build_crate(dir: &Path, target: &Path, exe: &Path) -> Result<(), ExitCode> {
    eprintln!("building {} (the first build compiles the dependencies: about a minute)", dir.display());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "infer", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| fail(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(fail(format!("cargo build failed for the emitted crate in {}", dir.display())));
    }
    let built = target.join("release").join(exe.file_name().expect("invariant: exe has a name"));
    let tmp = exe.with_extension(format!("tmp{}", std::process::id()));
    std::fs::copy(&built, &tmp)
        .and_then(|_| std::fs::rename(&tmp, exe))
        .map_err(|e| fail(format!("cannot copy {} to {}: {e}", built.display(), exe.display())))?;
    Ok(())
}
