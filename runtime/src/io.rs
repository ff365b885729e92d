//! Reading and writing the named tensors of a safetensors file (`input`, `output`, taps).

use std::path::Path;

use ndarray::{Array4, ArrayD, IxDyn};

use crate::weights::{WeightError, WeightFile};

/// Reads tensor `name` as a 4-d `f32` array [N, C, H, W].
pub fn read_nchw(path: &Path, name: &str) -> Result<Array4<f32>, WeightError> {
    let t = WeightFile::open(path)?.tensor(name)?;
    match t.shape.as_slice() {
        &[n, c, h, w] => Ok(Array4::from_shape_vec((n, c, h, w), t.data).expect("invariant: safetensors validated the size")),
        _ => Err(WeightError::Rank { name: name.to_string(), expected: "4 dimensions [N, C, H, W]".into(), found: t.shape }),
    }
}

/// Reads tensor `name` as an `f32` array of any rank.
pub fn read_any(path: &Path, name: &str) -> Result<ArrayD<f32>, WeightError> {
    let t = WeightFile::open(path)?.tensor(name)?;
    Ok(ArrayD::from_shape_vec(IxDyn(&t.shape), t.data).expect("invariant: safetensors validated the size"))
}

/// Writes `f32` tensors to a safetensors file, atomically ([`write_atomic`]).
pub fn write(path: &Path, tensors: &[(&str, &ArrayD<f32>)]) -> Result<(), WeightError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> =
        tensors.iter().map(|(n, a)| (n.to_string(), a.iter().flat_map(|v| v.to_le_bytes()).collect(), a.shape().to_vec())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, s)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).expect("invariant: sizes match"))
        })
        .collect();
    let fail = |reason: String| WeightError::Write { path: path.to_path_buf(), reason };
    let data = safetensors::serialize(views, &None).map_err(|e| fail(e.to_string()))?;
    write_atomic(path, &data).map_err(|e| fail(e.to_string()))
}

/// Writes `data` to `path` through a temporary file in the same folder, renamed over `path`
/// once complete: readers see the old file or the new one, never a part, and a failure
/// leaves the old file as it was.
///
/// A symbolic link is followed (the link stays, its target gets the data); a device or a
/// pipe (`/dev/null`) is written through, not replaced; a directory or a read-only file is
/// an error.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind, Write};
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let resolved = if is_link { std::fs::canonicalize(path)? } else { path.to_path_buf() };
    let path = resolved.as_path();
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(Error::new(ErrorKind::InvalidInput, "it is a directory"));
        }
        if !meta.is_file() {
            return std::fs::OpenOptions::new().write(true).open(path)?.write_all(data);
        }
        if meta.permissions().readonly() {
            return Err(Error::new(ErrorKind::PermissionDenied, "the file is read-only"));
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether `a` and `b` name the same existing file (through links or different spellings).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return (x.dev(), x.ino()) == (y.dev(), y.ino());
        }
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
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
