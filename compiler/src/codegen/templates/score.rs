//! `infer --images DIR`: scores every JPEG and PNG of a folder in batches, with a progress
//! bar; unreadable images are reported and skipped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use {{CRATE}}::runtime::ndarray::{Array4, ArrayView1, Axis};
use {{CRATE}}::runtime::preprocess::Preprocess;
use {{CRATE}}::runtime::{io, Workspace};
use {{CRATE}}::{images, Model};

/// How to score a folder.
pub struct Options<'a> {
    pub dir: &'a Path,
    /// Results file: `.jsonl` or `.csv`; none prints a line an image.
    pub out: Option<&'a Path>,
    pub top: usize,
    pub labels: &'a [String],
    pub batch: usize,
    pub threads: usize,
    pub pre: Preprocess,
}

/// What a run did.
pub struct Outcome {
    pub scored: usize,
    pub failed: usize,
}

/// The results formats, chosen by the `--out` file's extension.
#[derive(Clone, Copy, PartialEq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" => Some(Format::JsonLines),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// The regular files of `dir` (symbolic links followed) named `*.jpg`, `*.jpeg` or `*.png`
/// (any case), sorted by name; other entries with those names (folders, pipes, devices)
/// are reported and passed over.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("--images {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("--images {}: {e}", dir.display()))?.path();
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => files.push(path),
            Ok(_) => eprintln!("passed over {}: not a regular file", path.display()),
            // Unreadable entries (a broken link) are tried, and reported as failures.
            Err(_) => files.push(path),
        }
    }
    files.sort();
    Ok(files)
}

/// The `k` best classes of one row of logits, best first; NaN ranks last.
fn top_k(logits: ArrayView1<f32>, k: usize) -> Vec<(usize, f32)> {
    let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| key(logits[b]).total_cmp(&key(logits[a])).then(logits[a].is_nan().cmp(&logits[b].is_nan())).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, logits[i])).collect()
}

/// A JSON number, or `null` for NaN and infinities (which JSON has no spelling for).
fn json_number(v: f32) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        "null".into()
    }
}

/// A file name as text, without losing bytes that are not UTF-8 (written as `\xNN`).
fn file_name(p: &Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let mut out = String::new();
        for chunk in p.as_os_str().as_bytes().utf8_chunks() {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02X}"));
            }
        }
        out
    }
    #[cfg(not(unix))]
    {
        p.to_string_lossy().into_owned()
    }
}

/// Refuses an `--out` that cannot be written, before any image is scored.
fn check_out(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("--out {} is a folder; name a file", path.display()));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(format!("--out {}: the folder {} does not exist", path.display(), parent.display()));
    }
    Ok(())
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A CSV field, quoted when it needs to be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Decodes and preprocesses `files`, split over `threads` scoped threads, in order.
fn load_all(files: &[PathBuf], pre: &Preprocess, threads: usize) -> Vec<Result<images::Input, String>> {
    let per = files.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = files.chunks(per).map(|part| s.spawn(move || part.iter().map(|f| images::load(f, pre)).collect::<Vec<_>>())).collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| vec![Err("the decoder panicked".to_string())])).collect()
    })
}

/// Scores every image of `o.dir`; results go to `o.out` (or stdout), problems to stderr.
pub fn score(model: &Model, ws: &mut Workspace, o: &Options) -> Result<Outcome, String> {
    let format = match o.out {
        Some(p) => {
            check_out(p)?;
            Some(Format::of(p).ok_or_else(|| format!("--out {}: with --images, name a .jsonl or .csv file", p.display()))?)
        }
        None => None,
    };
    let files = image_files(o.dir)?;
    if files.is_empty() {
        return Err(format!("--images {}: no .jpg, .jpeg or .png files there", o.dir.display()));
    }
    let bar = ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images, {per_sec}, eta {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let [c, h, w] = Model::INPUT_SHAPE;
    let mut rows: Vec<(String, Vec<(usize, f32)>)> = Vec::with_capacity(files.len());
    let mut failed = 0;
    for chunk in files.chunks(o.batch) {
        let decoders = o.threads.min(std::thread::available_parallelism().map_or(1, |n| n.get()));
        let loaded = load_all(chunk, &o.pre, decoders);
        let mut names = Vec::with_capacity(chunk.len());
        let mut batch = Array4::<f32>::zeros((chunk.len(), c, h, w));
        for (file, input) in chunk.iter().zip(loaded) {
            match input {
                Ok(x) => {
                    batch.index_axis_mut(Axis(0), names.len()).assign(&x);
                    names.push(file_name(file.strip_prefix(o.dir).unwrap_or(file)));
                }
                Err(e) => {
                    failed += 1;
                    bar.suspend(|| eprintln!("skipped {}: {e}", file.display()));
                }
            }
        }
        if !names.is_empty() {
            let n = names.len();
            let view = batch.slice_axis(Axis(0), (0..n).into());
            let y = model.forward_into(view, ws).map_err(|e| e.to_string())?;
            for (name, logits) in names.into_iter().zip(y.axis_iter(Axis(0))) {
                rows.push((name, top_k(logits, o.top)));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let label = |i: usize| o.labels.get(i).map(String::as_str);
    match (o.out, format) {
        (Some(path), Some(format)) => {
            let mut text = String::new();
            if format == Format::Csv {
                text.push_str("file,rank,class,label,logit\n");
            }
            for (name, top) in &rows {
                match format {
                    Format::JsonLines => {
                        let items: Vec<String> = top
                            .iter()
                            .map(|&(i, v)| match label(i) {
                                Some(l) => format!("{{\"class\":{i},\"label\":{},\"logit\":{}}}", json_string(l), json_number(v)),
                                None => format!("{{\"class\":{i},\"logit\":{}}}", json_number(v)),
                            })
                            .collect();
                        text.push_str(&format!("{{\"file\":{},\"top\":[{}]}}\n", json_string(name), items.join(",")));
                    }
                    Format::Csv => {
                        for (rank, &(i, v)) in top.iter().enumerate() {
                            let l = csv_field(label(i).unwrap_or(""));
                            text.push_str(&format!("{},{},{i},{l},{v}\n", csv_field(name), rank + 1));
                        }
                    }
                }
            }
            io::write_atomic(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        _ => {
            for (name, top) in &rows {
                let shown: Vec<String> = top
                    .iter()
                    .map(|&(i, v)| match label(i) {
                        Some(l) => format!("{i} {l} ({v:.3})"),
                        None => format!("{i} ({v:.3})"),
                    })
                    .collect();
                println!("{name}: {}", shown.join(", "));
            }
        }
    }
    println!(
        "scored {} images in {secs:.2} s ({:.1} images/s; batch {}, {} threads, {} kernels){}",
        rows.len(),
        rows.len() as f64 / secs.max(1e-9),
        o.batch,
        o.threads,
        ws.isa(),
        if failed > 0 { format!("; {failed} could not be read") } else { String::new() }
    );
    Ok(Outcome { scored: rows.len(), failed })
}
