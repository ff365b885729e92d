//! Reading and writing the named tensors of a safetensors file (`input`, `output`, taps).

use std::path::Path;

use ndarray::{Array4, ArrayD, IxDyn};

use crate::weights::{WeightError, WeightFile};

/// Reads tensor `name` as a 4-d `f32` array [N, C, H, W].
pub fn read_nchw(path: &Path, name: &str) -> Result<Array4<f32>, WeightError> {
    let t = WeightFile::open(path)?.tensor(name)?;
    match t.shape.as_slice() {
        &[n, c, h, w] => Ok(Array4::from_shape_vec((n, c, h, w), t.data).expect("invariant: safetensors validated the size")),
        _ => Err(WeightError::ShapeMismatch { name: name.to_string(), expected: vec![], found: t.shape }),
    }
}

/// Reads tensor `name` as an `f32` array of any rank.
pub fn read_any(path: &Path, name: &str) -> Result<ArrayD<f32>, WeightError> {
    let t = WeightFile::open(path)?.tensor(name)?;
    Ok(ArrayD::from_shape_vec(IxDyn(&t.shape), t.data).expect("invariant: safetensors validated the size"))
}

/// Writes `f32` tensors to a safetensors file.
pub fn write(path: &Path, tensors: &[(&str, &ArrayD<f32>)]) -> Result<(), WeightError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> =
        tensors.iter().map(|(n, a)| (n.to_string(), a.iter().flat_map(|v| v.to_le_bytes()).collect(), a.shape().to_vec())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, s)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).expect("invariant: sizes match"))
        })
        .collect();
    safetensors::serialize_to_file(views, &None, path).map_err(|e| WeightError::Io { path: path.to_path_buf(), reason: e.to_string() })
}

/// Restores the default SIGPIPE action, so that a command-line program piped into `head`
/// ends quietly instead of panicking on its next write (Rust ignores SIGPIPE by default).
/// Call it first thing in `main`, before any thread starts.
pub fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    {
        extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        // SAFETY: resetting a signal to its default action before any thread is started.
        unsafe { signal(SIGPIPE, SIG_DFL) };
    }
}
