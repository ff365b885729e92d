//! Python bindings (PyO3; built by maturin with the `python` feature): `Model`, called on
//! numpy arrays with the GIL released, and the image preprocessing of `infer --image`.

use std::sync::Mutex;

use numpy::{IntoPyArray, PyArray2, PyArray3, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::runtime::ndarray::{Array3, Array4};
use crate::runtime::preprocess::Pixels;
use crate::runtime::weights::Dtype;
use crate::runtime::{LoadOptions, WeightFile, Workspace};

/// The network, with its weights loaded and packed; callable on float32 arrays
/// [N, C, H, W]. One model may be called from several Python threads at once.
#[pyclass(frozen, name = "Model", module = "{{CRATE}}")]
struct PyModel {
    model: crate::Model,
    /// Workspaces of finished calls, reused by the next ones.
    spare: Mutex<Vec<Workspace>>,
}

/// Workspaces larger than this are freed after their call rather than kept.
const MAX_SPARE_BYTES: usize = 256 << 20;

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn set_threads(threads: Option<usize>) -> PyResult<()> {
    match threads {
        Some(t) => crate::runtime::model::set_threads(t).map_err(|e| value_error(format!("threads={t}: {e}"))),
        None => Ok(()),
    }
}

/// The safetensors dtype of a numpy dtype string (`<f4`, `|u1`, ...), little-endian.
fn dtype(code: &str) -> Option<Dtype> {
    Some(match code.trim_start_matches(['<', '|', '=']) {
        "f4" => Dtype::F32,
        "f2" => Dtype::F16,
        "f8" => Dtype::F64,
        "i8" => Dtype::I64,
        "i4" => Dtype::I32,
        "i2" => Dtype::I16,
        "i1" => Dtype::I8,
        "u1" => Dtype::U8,
        "b1" => Dtype::BOOL,
        _ => return None,
    })
}

/// The runtime's array as numpy's ndarray version (same shape, standard layout).
fn to_numpy2(a: crate::runtime::ndarray::Array2<f32>) -> numpy::ndarray::Array2<f32> {
    let (n, k) = a.dim();
    let data: Vec<f32> = a.iter().copied().collect();
    numpy::ndarray::Array2::from_shape_vec((n, k), data).expect("invariant: the length is n * k")
}

fn to_numpy3(a: Array3<f32>) -> numpy::ndarray::Array3<f32> {
    let dim = a.dim();
    let data: Vec<f32> = a.iter().copied().collect();
    numpy::ndarray::Array3::from_shape_vec(dim, data).expect("invariant: the length is the product of the shape")
}

impl PyModel {
    fn new(model: crate::Model) -> PyModel {
        PyModel { model, spare: Mutex::new(Vec::new()) }
    }
}

#[pymethods]
impl PyModel {
    /// Loads a safetensors file holding a PyTorch `state_dict` (names unchanged).
    /// `threads`: how many threads every layer is split over (process-wide; set it once).
    /// `key_prefix=("module.", "")`: read keys starting with `module.` without it.
    #[new]
    #[pyo3(signature = (path, threads = None, key_prefix = None))]
    fn load(py: Python<'_>, path: std::path::PathBuf, threads: Option<usize>, key_prefix: Option<(String, String)>) -> PyResult<PyModel> {
        set_threads(threads)?;
        let options = LoadOptions { key_prefix, ..LoadOptions::default() };
        let model = py.detach(|| crate::Model::load_with(&path, &options)).map_err(|e| value_error(format!("{}: {e}", path.display())))?;
        Ok(PyModel::new(model))
    }

    /// A model from a dict of arrays, e.g. `{k: v.numpy() for k, v in m.state_dict().items()}`
    /// (anything `numpy.asarray` takes; `num_batches_tracked` counters are skipped).
    #[staticmethod]
    #[pyo3(signature = (state_dict, threads = None, key_prefix = None))]
    fn from_state_dict(
        py: Python<'_>,
        state_dict: &Bound<'_, PyDict>,
        threads: Option<usize>,
        key_prefix: Option<(String, String)>,
    ) -> PyResult<PyModel> {
        set_threads(threads)?;
        let np = py.import("numpy")?;
        let mut tensors = Vec::with_capacity(state_dict.len());
        for (key, value) in state_dict.iter() {
            let name: String = key.extract().map_err(|_| value_error(format!("state_dict keys must be str, found {key}")))?;
            let arr = np.call_method1("ascontiguousarray", (np.call_method1("asarray", (value,))?,))?;
            let mut code: String = arr.getattr("dtype")?.getattr("str")?.extract()?;
            let arr = if code.starts_with('>') {
                // Big-endian: safetensors holds little-endian bytes.
                let little = arr.getattr("dtype")?.call_method1("newbyteorder", ("<",))?;
                code = little.getattr("str")?.extract()?;
                arr.call_method1("astype", (little,))?
            } else {
                arr
            };
            let dt = dtype(&code).ok_or_else(|| value_error(format!("tensor `{name}` has numpy dtype {code}, which a state_dict does not hold")))?;
            let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
            let bytes: Vec<u8> = arr.call_method0("tobytes")?.extract()?;
            tensors.push((name, dt, shape, bytes));
        }
        let model = py
            .detach(|| {
                let file = WeightFile::from_tensors("state_dict", tensors).map_err(|e| e.to_string())?;
                let options = LoadOptions { key_prefix, ..LoadOptions::default() };
                crate::Model::from_file(&file, &options).map_err(|e| e.to_string())
            })
            .map_err(value_error)?;
        Ok(PyModel::new(model))
    }

    /// Runs the model: `x` float32 [N, C, H, W] (any strides) -> float32 [N, classes].
    fn __call__<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let [c, h, w] = crate::Model::INPUT_SHAPE;
        let expected = format!("a float32 array [N, {c}, {h}, {w}]");
        let arr = py.import("numpy")?.call_method1("asarray", (x,))?;
        let untyped = arr.cast::<PyUntypedArray>().map_err(|_| value_error(format!("expected {expected}")))?;
        let shape = untyped.shape().to_vec();
        let dt: String = untyped.dtype().str()?.extract()?;
        if shape.is_empty() {
            let ty = x.get_type().name()?;
            return Err(value_error(format!("expected {expected}, found a {ty} (no array dimensions)")));
        }
        if shape.len() != 4 || shape[1..] != [c, h, w] {
            return Err(value_error(format!("expected {expected}, found shape {shape:?}")));
        }
        if shape[0] == 0 {
            return Ok(PyArray2::zeros(py, [0, crate::Model::OUTPUT_FEATURES], false));
        }
        let typed = arr.cast::<numpy::PyArray4<f32>>().map_err(|_| value_error(format!("expected {expected}, found dtype {dt}")))?;
        // A copy in standard layout, owned, so that the GIL can be released. (numpy's
        // ndarray may be another version than the runtime's: the data crosses as a Vec.)
        let mut data: Vec<f32> = Vec::new();
        let len = shape.iter().product::<usize>();
        data.try_reserve_exact(len).map_err(|_| PyMemoryError::new_err(format!("no memory for a copy of the input {shape:?}; use a smaller batch")))?;
        data.extend(typed.readonly().as_array().iter().copied());
        let input = Array4::from_shape_vec((shape[0], c, h, w), data).map_err(value_error)?;
        let out = py
            .detach(|| {
                let mut ws = self.spare.lock().map(|mut s| s.pop()).unwrap_or(None).unwrap_or_else(Workspace::new);
                let y = self.model.forward_into(input.view(), &mut ws).map(|y| y.to_owned());
                // Kept for the next call unless a huge batch made it huge.
                if ws.bytes() <= MAX_SPARE_BYTES {
                    if let Ok(mut s) = self.spare.lock() {
                        s.push(ws);
                    }
                }
                y
            })
            .map_err(value_error)?;
        Ok(to_numpy2(out).into_pyarray(py))
    }

    /// The input each sample must have: (C, H, W).
    #[getter]
    fn input_shape(&self) -> (usize, usize, usize) {
        let [c, h, w] = crate::Model::INPUT_SHAPE;
        (c, h, w)
    }

    /// The number of outputs (classes) a sample.
    #[getter]
    fn classes(&self) -> usize {
        crate::Model::OUTPUT_FEATURES
    }

    /// Every `state_dict` key the model reads, in load order.
    fn weight_names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, crate::Model::WEIGHTS.iter().map(|(n, _)| *n))
    }

    fn __repr__(&self) -> String {
        let [c, h, w] = crate::Model::INPUT_SHAPE;
        format!("{{CRATE}}.Model(input [N, {c}, {h}, {w}], {} classes)", crate::Model::OUTPUT_FEATURES)
    }
}

/// The model input [C, H, W] of a JPEG or PNG file, preprocessed as `infer --image` does
/// (torchvision's Resize, CenterCrop, ToTensor, Normalize on a PIL image).
#[pyfunction]
#[pyo3(signature = (path, resize = None, mean = None, std = None))]
fn load_image<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    resize: Option<usize>,
    mean: Option<Vec<f32>>,
    std: Option<Vec<f32>>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let pre = transform(resize, mean, std)?;
    let x = py.detach(|| crate::images::load(&path, &pre)).map_err(|e| value_error(format!("{}: {e}", path.display())))?;
    Ok(to_numpy3(x).into_pyarray(py))
}

/// The same preprocessing on decoded pixels: uint8 [H, W] (grey) or [H, W, 3] (RGB).
#[pyfunction]
#[pyo3(signature = (pixels, resize = None, mean = None, std = None))]
fn preprocess<'py>(
    py: Python<'py>,
    pixels: &Bound<'py, PyAny>,
    resize: Option<usize>,
    mean: Option<Vec<f32>>,
    std: Option<Vec<f32>>,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let arr = py.import("numpy")?.call_method1("asarray", (pixels,))?;
    let typed = arr.cast::<numpy::PyArrayDyn<u8>>().map_err(|_| value_error("expected a uint8 array [H, W] or [H, W, 3]"))?;
    let view = typed.readonly();
    let a = view.as_array();
    let (height, width, channels) = match *a.shape() {
        [h, w] => (h, w, 1),
        [h, w, 3] => (h, w, 3),
        ref s => return Err(value_error(format!("expected a uint8 array [H, W] or [H, W, 3], found shape {s:?}"))),
    };
    let pixels = Pixels { width, height, channels, data: a.iter().copied().collect() };
    let pre = transform(resize, mean, std)?;
    Ok(to_numpy3(pre.apply(&pixels).map_err(value_error)?).into_pyarray(py))
}

/// The model's default transform with the given overrides (`mean`/`std`: one value a
/// channel; an empty list turns normalisation off).
fn transform(resize: Option<usize>, mean: Option<Vec<f32>>, std: Option<Vec<f32>>) -> PyResult<crate::runtime::preprocess::Preprocess> {
    let mut pre = crate::images::preprocess();
    if let Some(r) = resize {
        pre.resize = r;
    }
    let c = pre.channels;
    let pick = |name: &str, v: Option<Vec<f32>>, default: [f32; 3]| -> PyResult<Option<[f32; 3]>> {
        match v {
            None => Ok(Some(default)),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) if v.len() == c && v.iter().all(|x| x.is_finite()) => {
                let mut out = [0.0; 3];
                out[..c].copy_from_slice(&v);
                Ok(Some(out))
            }
            Some(v) => Err(value_error(format!("{name}: expected {c} finite values (one a channel), found {v:?}"))),
        }
    };
    let (dm, ds) = pre.normalize.unwrap_or(([0.0; 3], [1.0; 3]));
    let explicit = mean.is_some() || std.is_some();
    let (m, s) = (pick("mean", mean, dm)?, pick("std", std, ds)?);
    if let Some(s) = s {
        if s[..c].contains(&0.0) {
            return Err(value_error("std: a standard deviation of 0 divides by zero"));
        }
    }
    if explicit {
        pre.normalize = m.zip(s);
    }
    pre.check().map_err(value_error)?;
    Ok(pre)
}

#[pymodule]
fn {{CRATE}}(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()?;
    m.add_function(wrap_pyfunction!(load_image, m)?)?;
    m.add_function(wrap_pyfunction!(preprocess, m)?)?;
    m.add("INPUT_SHAPE", crate::Model::INPUT_SHAPE.to_vec())?;
    m.add("CLASSES", crate::Model::OUTPUT_FEATURES)?;
    Ok(())
}
