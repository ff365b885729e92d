//! Loading weights from safetensors files, with strict validation.
//!
//! A [`WeightFile`] is a memory-mapped (or in-memory) safetensors file. [`WeightFile::load`]
//! takes the list of tensors a model expects (`state_dict` key and shape) and returns them
//! as `f32` [`Weights`], converting f16, bf16 and f64. Integer tensors that the model does not
//! expect (`num_batches_tracked` and other counters) are skipped. Every failure is a
//! [`WeightError`] that names the tensor and says what was expected; nothing panics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use safetensors::Dtype;
use safetensors::{tensor::TensorView, SafeTensorError, SafeTensors};

/// What can go wrong when loading weights.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightError {
    #[error("cannot read `{path}`: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("`{file}` has no tensor `{name}`; it has {available}")]
    NoTensor { file: String, name: String, available: String },
    #[error("cannot write `{path}`: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("tensor `{name}` has shape {found:?}; expected {expected}")]
    Rank { name: String, expected: String, found: Vec<usize> },
    #[error("`{file}` is not a safetensors file: {reason}")]
    NotSafetensors { file: String, reason: String },
    #[error("`{file}` is truncated or corrupt: {reason}")]
    Corrupt { file: String, reason: String },
    #[error("missing tensor `{name}` (expected shape {expected:?}); the file has {available} tensors{hint}")]
    Missing { name: String, expected: Vec<usize>, available: usize, hint: String },
    #[error("unexpected tensor `{name}` (shape {shape:?}): the model has no such weight{hint}")]
    Unexpected { name: String, shape: Vec<usize>, hint: String },
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor `{name}` has dtype {dtype}; supported are F32, F64, F16 and BF16")]
    UnsupportedDtype { name: String, dtype: String },
    #[error("keys `{first}` and `{second}` both read as `{name}` with the key prefix option; the file is ambiguous")]
    Ambiguous { name: String, first: String, second: String },
}

/// How strict loading is, and how the file's keys map to the model's.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Accept (and ignore) floating-point tensors the model does not expect.
    pub allow_unexpected: bool,
    /// `(old, new)`: a file key that starts with `old` is read as if it started with `new`
    /// instead. `("module.", "")` strips DataParallel's prefix, `("model.", "")`
    /// Lightning's; keys without the prefix are read as they are.
    pub key_prefix: Option<(String, String)>,
}

impl LoadOptions {
    /// Options that read file keys starting with `old` as starting with `new`.
    pub fn with_key_prefix(old: impl Into<String>, new: impl Into<String>) -> LoadOptions {
        LoadOptions { key_prefix: Some((old.into(), new.into())), ..LoadOptions::default() }
    }

    /// Parses the command-line form `OLD=NEW` (`module.=` strips `module.`).
    pub fn parse_key_prefix(s: &str) -> Result<(String, String), String> {
        match s.split_once('=') {
            Some((old, new)) if old != new => Ok((old.to_string(), new.to_string())),
            Some(_) => Err(format!("`{s}` renames a prefix to itself")),
            None => Err(format!("`{s}`: expected OLD=NEW, e.g. `module.=` to strip `module.`")),
        }
    }

    /// The name the model sees for a file key.
    fn model_name<'a>(&self, file_key: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.key_prefix {
            Some((old, new)) => match file_key.strip_prefix(old.as_str()) {
                Some(rest) => format!("{new}{rest}").into(),
                None => file_key.into(),
            },
            None => file_key.into(),
        }
    }
}

/// One loaded tensor: its shape and its `f32` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Every tensor of a model, by `state_dict` key.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// The values of a tensor the model was validated to have.
    pub fn data(&self, name: &str) -> &[f32] {
        &self.tensors.get(name).unwrap_or_else(|| panic!("invariant: weight `{name}` was validated at load")).data
    }

    /// Moves a validated tensor's values out.
    pub fn take(&mut self, name: &str) -> Vec<f32> {
        self.tensors.remove(name).unwrap_or_else(|| panic!("invariant: weight `{name}` was validated at load")).data
    }

    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.tensors.insert(name.into(), t);
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Seeded random weights for the expected tensors: uniform in +-1/sqrt(fan_in) for
    /// weights and biases (PyTorch's default scale), and variances in [0.5, 1.5).
    pub fn random(expected: &[(String, Vec<usize>)], seed: u64) -> Weights {
        let mut rng = SplitMix(seed);
        let mut w = Weights::default();
        let mut fan_in = 1usize;
        for (name, shape) in expected {
            let len: usize = shape.iter().product();
            if name.ends_with(".weight") && shape.len() > 1 {
                fan_in = shape[1..].iter().product::<usize>().max(1);
            }
            let bound = 1.0 / (fan_in as f32).sqrt();
            let data = (0..len)
                .map(|_| {
                    let u = rng.next_f32();
                    if name.ends_with("running_var") {
                        0.5 + u
                    } else if name.ends_with("running_mean") {
                        (u - 0.5) * 0.2
                    } else if shape.len() == 1 && name.ends_with(".weight") {
                        0.5 + u // a batch norm's scale
                    } else {
                        (2.0 * u - 1.0) * bound
                    }
                })
                .collect();
            w.insert(name.clone(), Tensor { shape: shape.clone(), data });
        }
        w
    }
}

/// A small deterministic generator (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

enum Backing {
    Mmap(memmap2::Mmap),
    Bytes(Vec<u8>),
}

/// A safetensors file, checked to be well-formed when opened.
pub struct WeightFile {
    name: String,
    data: Backing,
}

impl WeightFile {
    /// Memory-maps and checks a file.
    pub fn open(path: &Path) -> Result<WeightFile, WeightError> {
        let io = |e: std::io::Error| WeightError::Io { path: path.to_path_buf(), reason: e.to_string() };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            let what = if meta.is_dir() { "it is a directory" } else { "it is not a regular file" };
            return Err(WeightError::Io { path: path.to_path_buf(), reason: what.into() });
        }
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process; a file truncated by
        // another process while mapped is outside what any loader can guard against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let wf = WeightFile { name: path.display().to_string(), data: Backing::Mmap(map) };
        wf.parse()?;
        Ok(wf)
    }

    /// Checks bytes held in memory.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<WeightFile, WeightError> {
        let wf = WeightFile { name: "<memory>".into(), data: Backing::Bytes(bytes.into()) };
        wf.parse()?;
        Ok(wf)
    }

    /// A weight file from tensors held in memory (name, dtype, shape, little-endian bytes),
    /// e.g. a `state_dict` handed over from Python; `name` stands for the file in errors.
    pub fn from_tensors(name: &str, tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>) -> Result<WeightFile, WeightError> {
        let mut views = Vec::with_capacity(tensors.len());
        for (key, dtype, shape, bytes) in &tensors {
            let view = TensorView::new(*dtype, shape.clone(), bytes).map_err(|e| WeightError::Corrupt {
                file: name.to_string(),
                reason: format!("tensor `{key}` ({dtype:?}, shape {shape:?}) has {} bytes: {e}", bytes.len()),
            })?;
            views.push((key.as_str(), view));
        }
        let bytes =
            safetensors::serialize(views, &None).map_err(|e| WeightError::Corrupt { file: name.to_string(), reason: e.to_string() })?;
        let wf = WeightFile { name: name.to_string(), data: Backing::Bytes(bytes) };
        wf.parse()?;
        Ok(wf)
    }

    fn bytes(&self) -> &[u8] {
        match &self.data {
            Backing::Mmap(m) => m,
            Backing::Bytes(b) => b,
        }
    }

    fn parse(&self) -> Result<SafeTensors<'_>, WeightError> {
        SafeTensors::deserialize(self.bytes()).map_err(|e| format_error(&self.name, e))
    }

    /// Names and shapes of every tensor in the file.
    pub fn tensors(&self) -> Result<Vec<(String, Vec<usize>)>, WeightError> {
        Ok(self.parse()?.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())).collect())
    }

    /// Loads one tensor as `f32`, whatever its name.
    pub fn tensor(&self, name: &str) -> Result<Tensor, WeightError> {
        let st = self.parse()?;
        let view = st.tensor(name).map_err(|_| {
            let mut names = st.names();
            names.sort();
            let shown: Vec<String> = names.iter().take(8).map(|n| format!("`{n}`")).collect();
            let available = match names.len() {
                0 => "none".to_string(),
                n if n > 8 => format!("{} and {} more", shown.join(", "), n - 8),
                _ => shown.join(", "),
            };
            WeightError::NoTensor { file: self.name.clone(), name: name.to_string(), available }
        })?;
        to_f32(name, &view)
    }

    /// Loads exactly the `expected` tensors, validating names, shapes and dtypes.
    pub fn load(&self, expected: &[(String, Vec<usize>)], opts: &LoadOptions) -> Result<Weights, WeightError> {
        let st = self.parse()?;
        // The model's name of every file key (the key prefix option applied).
        let mut by_model_name: HashMap<String, String> = HashMap::new();
        let mut file_keys = st.names();
        file_keys.sort();
        for key in file_keys {
            let name = opts.model_name(key).into_owned();
            if let Some(first) = by_model_name.insert(name.clone(), key.clone()) {
                return Err(WeightError::Ambiguous { name, first, second: key.clone() });
            }
        }
        let wanted: HashMap<&str, &Vec<usize>> = expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
        let mut out = Weights::default();
        for (name, shape) in expected {
            let view = match by_model_name.get(name).map(|k| st.tensor(k)) {
                Some(Ok(v)) => v,
                Some(Err(e)) => return Err(format_error(&self.name, e)),
                None => {
                    let hint = match closest(name, by_model_name.keys().map(|s| s.as_str())) {
                        Some(c) => {
                            let mut h = format!("; did you mean `{}`?", by_model_name[c]);
                            if let Some(prefix) = c.strip_suffix(name.as_str()).filter(|p| p.ends_with('.')) {
                                h.push_str(&format!(
                                    " The file's keys start with `{prefix}`: load with the key prefix option (`--key-prefix {prefix}=`, in Rust `LoadOptions::with_key_prefix(\"{prefix}\", \"\")`)"
                                ));
                            }
                            h
                        }
                        None => String::new(),
                    };
                    return Err(WeightError::Missing { name: name.clone(), expected: shape.clone(), available: st.len(), hint });
                }
            };
            if view.shape() != shape.as_slice() {
                return Err(WeightError::ShapeMismatch { name: name.clone(), expected: shape.clone(), found: view.shape().to_vec() });
            }
            out.insert(name.clone(), to_f32(name, &view)?);
        }
        if !opts.allow_unexpected {
            let mut extra: Vec<(&String, &String)> = by_model_name.iter().filter(|(n, _)| !wanted.contains_key(n.as_str())).collect();
            extra.sort();
            for (name, key) in extra {
                let view = st.tensor(key).map_err(|e| format_error(&self.name, e))?;
                // BatchNorm's step counter is a buffer of PyTorch's with no use at inference,
                // whatever dtype it was saved in.
                if is_float(view.dtype()) && !name.ends_with("num_batches_tracked") {
                    let hint = match closest(name, wanted.keys().copied()) {
                        Some(c) => format!("; the closest expected name is `{c}`"),
                        None => String::new(),
                    };
                    return Err(WeightError::Unexpected { name: key.clone(), shape: view.shape().to_vec(), hint });
                }
            }
        }
        Ok(out)
    }
}

fn is_float(d: Dtype) -> bool {
    matches!(d, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

fn to_f32(name: &str, view: &TensorView<'_>) -> Result<Tensor, WeightError> {
    let bytes = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        // As PyTorch's `load_state_dict` copies a double tensor into a float parameter.
        Dtype::F64 => bytes.chunks_exact(8).map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32).collect(),
        other => return Err(WeightError::UnsupportedDtype { name: name.to_string(), dtype: format!("{other:?}") }),
    };
    Ok(Tensor { shape: view.shape().to_vec(), data })
}

fn format_error(file: &str, e: SafeTensorError) -> WeightError {
    let reason = e.to_string();
    match e {
        SafeTensorError::HeaderTooSmall
        | SafeTensorError::HeaderTooLarge
        | SafeTensorError::InvalidHeader
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization
        | SafeTensorError::InvalidHeaderLength => WeightError::NotSafetensors { file: file.to_string(), reason },
        _ => WeightError::Corrupt { file: file.to_string(), reason },
    }
}

/// The most similar name (longest common suffix of dotted parts, then prefix), for hints.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let score = |c: &str| {
        // The same name under a prefix (`module.` from DataParallel) or without one.
        let wrapped = c.strip_suffix(name).is_some_and(|p| p.ends_with('.')) || name.strip_suffix(c).is_some_and(|p| p.ends_with('.'));
        let suffix = name.split('.').rev().zip(c.split('.').rev()).take_while(|(a, b)| a == b).count();
        let prefix = name.chars().zip(c.chars()).take_while(|(a, b)| a == b).count();
        // Among equals, the nearest in length (the shortest prefix for wrapped names).
        (wrapped, suffix, prefix, std::cmp::Reverse(c.len().abs_diff(name.len())))
    };
    candidates
        .filter(|c| {
            let (wrapped, suffix, prefix, _) = score(c);
            wrapped || (suffix > 0 && prefix > 0)
        })
        .max_by_key(|c| score(c))
}
