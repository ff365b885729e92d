//! Writing a standalone crate: Cargo.toml, the model (src/lib.rs), the `infer` binary
//! (src/main.rs), a README, and a vendored copy of the runtime (runtime/), so that the crate
//! builds wherever it is moved, with no path back into this workspace.

use std::path::Path;

use super::{model_source, CodegenOptions};
use crate::Compiled;

/// The runtime's sources, vendored into every emitted crate.
const RUNTIME_FILES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../runtime/src/lib.rs")),
    ("src/io.rs", include_str!("../../../runtime/src/io.rs")),
    ("src/model.rs", include_str!("../../../runtime/src/model.rs")),
    ("src/steps.rs", include_str!("../../../runtime/src/steps.rs")),
    ("src/fast/mod.rs", include_str!("../../../runtime/src/fast/mod.rs")),
    ("src/fast/isa.rs", include_str!("../../../runtime/src/fast/isa.rs")),
    ("src/fast/spec.rs", include_str!("../../../runtime/src/fast/spec.rs")),
    ("src/fast/direct.rs", include_str!("../../../runtime/src/fast/direct.rs")),
    ("src/fast/microkernel.rs", include_str!("../../../runtime/src/fast/microkernel.rs")),
    ("src/fast/nhwc.rs", include_str!("../../../runtime/src/fast/nhwc.rs")),
    ("src/fast/peak.rs", include_str!("../../../runtime/src/fast/peak.rs")),
    ("src/fast/pool.rs", include_str!("../../../runtime/src/fast/pool.rs")),
    ("src/fast/winograd.rs", include_str!("../../../runtime/src/fast/winograd.rs")),
    ("src/weights.rs", include_str!("../../../runtime/src/weights.rs")),
    ("src/kernels/mod.rs", include_str!("../../../runtime/src/kernels/mod.rs")),
    ("src/kernels/act.rs", include_str!("../../../runtime/src/kernels/act.rs")),
    ("src/kernels/conv.rs", include_str!("../../../runtime/src/kernels/conv.rs")),
    ("src/kernels/dense.rs", include_str!("../../../runtime/src/kernels/dense.rs")),
    ("src/kernels/norm.rs", include_str!("../../../runtime/src/kernels/norm.rs")),
    ("src/kernels/pool.rs", include_str!("../../../runtime/src/kernels/pool.rs")),
    ("src/kernels/window.rs", include_str!("../../../runtime/src/kernels/window.rs")),
];

/// The runtime's manifest in an emitted crate (the workspace's versions, spelled out).
const RUNTIME_MANIFEST: &str = r#"[package]
name = "resnetc-runtime"
version = "0.1.0"
edition = "2021"
description = "Runtime for resnetc-generated models (vendored copy)"
license = "MIT OR Apache-2.0"

[dependencies]
ndarray = "0.16"
safetensors = "0.4"
memmap2 = "0.9"
half = "2"
thiserror = "2"
"#;

const MAIN_TEMPLATE: &str = include_str!("templates/main.rs");

/// The files of an emitted crate, as (relative path, contents).
pub fn crate_files(compiled: &Compiled, spec_name: &str, crate_name: &str) -> Vec<(String, String)> {
    let graph = &compiled.graph;
    let opts = CodegenOptions::for_crate(graph, spec_name);
    let lib_name = crate_name.replace('-', "_");
    let manifest = format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2021"
description = "The {net} network, compiled by resnetc {version} from {spec_name}"
publish = false

[dependencies]
resnetc-runtime = {{ path = "runtime" }}
# Decoding JPEG and PNG for `infer --image`.
image = {{ version = "0.25", default-features = false, features = ["jpeg", "png"] }}

[[bin]]
name = "infer"
path = "src/main.rs"

[profile.release]
opt-level = 3
codegen-units = 4

# A standalone crate, even when generated inside another workspace.
[workspace]
"#,
        net = graph.name,
        version = env!("CARGO_PKG_VERSION"),
    );
    let lib = format!(
        "//! The `{net}` network, compiled by resnetc from `{spec_name}`.\n//!\n//! ```no_run\n//! let model = {lib_name}::Model::load(\"weights.safetensors\")?;\n//! let x = {lib_name}::runtime::ndarray::Array4::<f32>::zeros((1, {c}, {h}, {w}));\n//! let logits = model.forward(x.view())?;\n//! # Ok::<(), {lib_name}::runtime::ModelError>(())\n//! ```\n\npub use resnetc_runtime as runtime;\n\n/// The model of this crate.\npub type Model = {ty};\n\n{src}",
        net = graph.name,
        ty = opts.type_name,
        c = graph.input_shape().c,
        h = graph.input_shape().h,
        w = graph.input_shape().w,
        src = model_source(compiled, &opts),
    );
    let main = MAIN_TEMPLATE.replace("{{CRATE}}", &lib_name).replace("{{NETWORK}}", &graph.name);
    let readme = format!(
        "# {crate_name}\n\nThe `{net}` network ({params} parameters), compiled by resnetc {version} from `{spec_name}`.\n\
         The runtime is vendored in `runtime/`: this crate builds on its own.\n\n\
         ```sh\ncargo run --release --bin infer -- --weights W.safetensors --input X.safetensors --output Y.safetensors\n\
         cargo run --release --bin infer -- --help\n```\n\n\
         As a library: `{lib_name}::Model::load(path)?.forward(input.view())?` with input [N, {c}, {h}, {w}] f32.\n",
        net = graph.name,
        params = crate::report::group(graph.param_count() as u64),
        version = env!("CARGO_PKG_VERSION"),
        c = graph.input_shape().c,
        h = graph.input_shape().h,
        w = graph.input_shape().w,
    );
    let mut files = vec![
        ("Cargo.toml".to_string(), manifest),
        ("src/lib.rs".to_string(), lib),
        ("src/main.rs".to_string(), main),
        ("README.md".to_string(), readme),
        ("runtime/Cargo.toml".to_string(), RUNTIME_MANIFEST.to_string()),
    ];
    files.extend(RUNTIME_FILES.iter().map(|(p, s)| (format!("runtime/{p}"), s.to_string())));
    files
}

/// The file that marks a folder as a crate resnetc wrote (and may write again).
pub const MARKER: &str = ".resnetc-crate";

/// Whether `dir` may receive a crate without `--force`: it does not exist, is empty, or
/// holds a crate resnetc wrote.
pub fn may_write_into(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none() || dir.join(MARKER).is_file(),
        Err(_) => !dir.exists(),
    }
}

/// Checks a crate name: ASCII letters, digits, `-` and `_`, starting with a letter, at
/// most 64 characters (what Cargo accepts and a file name can hold).
pub fn check_crate_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(format!(
            "`{name}` is not a valid crate name: use ASCII letters, digits, `-` and `_`, starting with a letter (at most 64)"
        ));
    }
    // The library's name in Rust code: not a keyword, nor a crate the emitted one uses.
    let lib = name.replace('-', "_");
    let taken = ["std", "core", "alloc", "test", "proc_macro", "resnetc_runtime", "image"];
    if syn::parse_str::<syn::Ident>(&lib).is_err() || taken.contains(&lib.as_str()) {
        return Err(format!("`{name}` is not a valid crate name here: `{lib}` is a Rust keyword or a crate the emitted one uses"));
    }
    Ok(())
}

/// Writes the crate's `files` (from [`crate_files`]) into `dir`, creating it, with the
/// [`MARKER`]. Files that already hold the same text are not rewritten, so cargo does not
/// rebuild what did not change; the others are written atomically.
pub fn write_crate(dir: &Path, files: &[(String, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MARKER), "This folder holds a crate generated by resnetc; `resnetc build` may overwrite it.\n")?;
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::read_to_string(&path).is_ok_and(|old| &old == text) {
            continue;
        }
        resnetc_runtime::io::write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}

/// A valid crate name from a network name: `resnet18` -> `resnet18`, `My Net` -> `my-net`.
pub fn crate_name(network: &str) -> String {
    let s: String = network.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let s = s.trim_matches('-').to_string();
    let s = if s.starts_with(|c: char| c.is_ascii_digit()) || s.is_empty() { format!("net-{s}") } else { s };
    // `self`, `std`, `image`...: not usable as the library's name.
    if check_crate_name(&s).is_ok() {
        s
    } else {
        format!("{s}-net")
    }
}
