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
    ("src/preprocess.rs", include_str!("../../../runtime/src/preprocess.rs")),
    ("src/fast/mod.rs", include_str!("../../../runtime/src/fast/mod.rs")),
    ("src/fast/isa.rs", include_str!("../../../runtime/src/fast/isa.rs")),
    ("src/fast/spec.rs", include_str!("../../../runtime/src/fast/spec.rs")),
    ("src/fast/dense.rs", include_str!("../../../runtime/src/fast/dense.rs")),
    ("src/fast/depthwise.rs", include_str!("../../../runtime/src/fast/depthwise.rs")),
    ("src/fast/direct.rs", include_str!("../../../runtime/src/fast/direct.rs")),
    ("src/fast/microkernel.rs", include_str!("../../../runtime/src/fast/microkernel.rs")),
    ("src/fast/nhwc.rs", include_str!("../../../runtime/src/fast/nhwc.rs")),
    ("src/fast/peak.rs", include_str!("../../../runtime/src/fast/peak.rs")),
    ("src/fast/pool.rs", include_str!("../../../runtime/src/fast/pool.rs")),
    ("src/fast/simd.rs", include_str!("../../../runtime/src/fast/simd.rs")),
    ("src/fast/strips.rs", include_str!("../../../runtime/src/fast/strips.rs")),
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
const SCORE_TEMPLATE: &str = include_str!("templates/score.rs");
const IMAGES_TEMPLATE: &str = include_str!("templates/images.rs");
const PYTHON_TEMPLATE: &str = include_str!("templates/python.rs");

/// What an emitted crate holds beyond the model and `infer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrateOptions {
    /// Also a Python package: PyO3 bindings behind the `python` feature and a
    /// `pyproject.toml` for maturin, so that `pip install DIR` builds it.
    pub python: bool,
}

/// The manifest lines that make the crate a Python extension module as well.
const PYTHON_MANIFEST: &str = r#"
# The Python package (`pip install .` builds it with maturin and the `python` feature).
[lib]
crate-type = ["rlib", "cdylib"]

[features]
python = ["dep:pyo3", "dep:numpy"]

[dependencies.pyo3]
version = "0.30"
optional = true
features = ["abi3-py39"]

[dependencies.numpy]
version = "0.30"
optional = true
"#;

/// The files of an emitted crate, as (relative path, contents).
pub fn crate_files(compiled: &Compiled, spec_name: &str, crate_name: &str, options: CrateOptions) -> Vec<(String, String)> {
    let graph = &compiled.graph;
    let opts = CodegenOptions::for_crate(graph, spec_name);
    let lib_name = crate_name.replace('-', "_");
    let mut manifest = format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2021"
description = "The {net} network, compiled by resnetc {version} from {spec_name}"
publish = false

[dependencies]
resnetc-runtime = {{ path = "runtime" }}
# Decoding JPEG and PNG for `infer --image` and `--images`.
image = {{ version = "0.25", default-features = false, features = ["jpeg", "png"] }}
# The progress bar of `infer --images`.
indicatif = "0.18"

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
    if options.python {
        manifest.push_str(PYTHON_MANIFEST);
    }
    let python_mod =
        if options.python { "\n/// Python bindings (the `python` feature).\n#[cfg(feature = \"python\")]\nmod python;\n" } else { "" };
    let lib = format!(
        "//! The `{net}` network, compiled by resnetc from `{spec_name}`.\n//!\n//! ```no_run\n//! let model = {lib_name}::Model::load(\"weights.safetensors\")?;\n//! let x = {lib_name}::runtime::ndarray::Array4::<f32>::zeros((1, {c}, {h}, {w}));\n//! let logits = model.forward(x.view())?;\n//! # Ok::<(), {lib_name}::runtime::ModelError>(())\n//! ```\n\npub use resnetc_runtime as runtime;\n\npub mod images;\n{python_mod}\n/// The model of this crate.\npub type Model = {ty};\n\n{src}",
        net = graph.name,
        ty = opts.type_name,
        c = graph.input_shape().c,
        h = graph.input_shape().h,
        w = graph.input_shape().w,
        src = model_source(compiled, &opts),
    );
    let fill = |t: &str| t.replace("{{CRATE}}", &lib_name).replace("{{NETWORK}}", &graph.name);
    let [c, h, w] = [graph.input_shape().c, graph.input_shape().h, graph.input_shape().w];
    let mut readme = format!(
        "# {crate_name}\n\nThe `{net}` network ({params} parameters), compiled by resnetc {version} from `{spec_name}`.\n\
         The runtime is vendored in `runtime/`: this crate builds on its own.\n\n\
         ```sh\ncargo run --release --bin infer -- --weights W.safetensors --input X.safetensors --output Y.safetensors\n\
         cargo run --release --bin infer -- --weights W.safetensors --image photo.jpg --top 5\n\
         cargo run --release --bin infer -- --weights W.safetensors --images photos/ --out results.jsonl\n\
         cargo run --release --bin infer -- --help\n```\n\n\
         As a library: `{lib_name}::Model::load(path)?.forward(input.view())?` with input [N, {c}, {h}, {w}] f32.\n",
        net = graph.name,
        params = crate::report::group(graph.param_count() as u64),
        version = env!("CARGO_PKG_VERSION"),
    );
    if options.python {
        readme.push_str(&format!(
            r#"
## From Python

`pip install .` in this folder builds and installs the Python package `{crate_name}` (PyO3,
built by maturin; needs a Rust toolchain and the package registries). Then:

```python
import numpy as np
import {lib_name}

m = {lib_name}.Model("weights.safetensors", threads=2)  # a PyTorch state_dict, names unchanged
x = np.zeros((4, {c}, {h}, {w}), dtype=np.float32)        # [N, C, H, W], any strides
y = m(x)                                                   # float32 [N, {classes}]
m.input_shape, m.classes, m.weight_names()

# Straight from PyTorch, without a file:
m = {lib_name}.Model.from_state_dict({{k: v.numpy() for k, v in model.state_dict().items()}})

# Images, preprocessed as torchvision's Resize, CenterCrop, ToTensor, Normalize on a PIL image:
x = {lib_name}.load_image("photo.png")[None]               # [1, C, H, W]
```

- A float64 array or a wrong shape raises `ValueError` saying what was expected; a weight file
  that does not fit raises `ValueError` with the same message as `infer` (the missing key and
  the closest one, or the shape expected and found).
- The GIL is released during the forward pass; one `Model` may be called from several Python
  threads at once. `threads` sets how many threads every layer is split over, for the whole
  process (set it once; the default is every core).
"#,
            classes = graph.output_shape().len(),
        ));
    }
    let mut files = vec![
        ("Cargo.toml".to_string(), manifest),
        ("src/lib.rs".to_string(), lib),
        ("src/main.rs".to_string(), fill(MAIN_TEMPLATE)),
        ("src/score.rs".to_string(), fill(SCORE_TEMPLATE)),
        ("src/images.rs".to_string(), fill(IMAGES_TEMPLATE)),
        ("README.md".to_string(), readme),
        ("runtime/Cargo.toml".to_string(), RUNTIME_MANIFEST.to_string()),
    ];
    if options.python {
        files.push(("src/python.rs".to_string(), fill(PYTHON_TEMPLATE)));
        files.push(("pyproject.toml".to_string(), pyproject(crate_name, &lib_name, &graph.name)));
    }
    files.extend(RUNTIME_FILES.iter().map(|(p, s)| (format!("runtime/{p}"), s.to_string())));
    files
}

/// The Python package's metadata: maturin builds the `python` feature into module `lib_name`.
fn pyproject(crate_name: &str, lib_name: &str, network: &str) -> String {
    format!(
        r#"[build-system]
requires = ["maturin>=1.7,<2"]
build-backend = "maturin"

[project]
name = "{crate_name}"
version = "0.1.0"
description = "The {network} network, compiled by resnetc {version}"
requires-python = ">=3.9"
dependencies = ["numpy"]

[tool.maturin]
bindings = "pyo3"
features = ["python"]
module-name = "{lib_name}"
"#,
        version = env!("CARGO_PKG_VERSION"),
    )
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

#[cfg(test)]
mod tests {
    use super::RUNTIME_FILES;
    use std::path::Path;

    /// Every source file of the runtime is vendored (a new module left out of the list
    /// breaks every emitted crate's build, which only the slow emitted-crate tests see).
    #[test]
    fn every_runtime_source_is_vendored() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/src");
        let mut found = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("the runtime's sources are readable") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
                    found.push(format!("src/{rel}"));
                }
            }
        }
        for file in &found {
            assert!(RUNTIME_FILES.iter().any(|(p, _)| p == file), "{file} is not in RUNTIME_FILES");
        }
        assert_eq!(found.len(), RUNTIME_FILES.len(), "RUNTIME_FILES lists a file the runtime no longer has");
    }
}
