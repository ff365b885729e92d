//! Reading a spec and the files it `use`s: text -> parsed files.
//!
//! `use "path"` is resolved relative to the directory of the file that says it. Each file is
//! read once, however often it is used; a file that uses itself, directly or through others,
//! is a `use` cycle and an error at the `use` that closes the cycle.

use std::path::{Path, PathBuf};

use crate::ast;
use crate::diag::{Diagnostic, FileId, SourceMap, Span};
use crate::syntax;

/// The text of a spec, where it came from and where its `use`s are resolved.
#[derive(Debug, Clone)]
pub struct Source {
    /// The name diagnostics show (usually the path as given).
    pub name: String,
    pub text: String,
    /// The directory `use` paths are relative to; `None` forbids `use`.
    pub dir: Option<PathBuf>,
    /// The file's canonical path, if it is a file (to detect a `use` of the root itself).
    pub path: Option<PathBuf>,
}

impl Source {
    /// A spec held in memory; `use` resolves relative to the current directory.
    pub fn inline(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source { name: name.into(), text: text.into(), dir: Some(PathBuf::from(".")), path: None }
    }

    /// Reads a spec from disk (a regular file of at most [`MAX_SPEC_BYTES`]).
    pub fn read(path: &Path) -> std::io::Result<Source> {
        let text = read_spec(path)?;
        let dir = path.parent().map(|d| if d.as_os_str().is_empty() { PathBuf::from(".") } else { d.to_path_buf() });
        Ok(Source { name: path.display().to_string(), text, dir, path: path.canonicalize().ok() })
    }
}

/// The largest spec file resnetc reads (stock specs are under 2 KiB).
pub const MAX_SPEC_BYTES: u64 = 1 << 20;

/// Reads a spec file: it must be a regular file (not a directory, device or pipe) of at
/// most [`MAX_SPEC_BYTES`], in UTF-8.
pub fn read_spec(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(Error::new(ErrorKind::InvalidInput, "it is a directory, not a spec file"));
    }
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "it is not a regular file"));
    }
    let mut text = String::new();
    let file = std::fs::File::open(path)?;
    file.take(MAX_SPEC_BYTES + 1).read_to_string(&mut text).map_err(|e| match e.kind() {
        ErrorKind::InvalidData => Error::new(ErrorKind::InvalidData, "it is not UTF-8 text"),
        _ => e,
    })?;
    if text.len() as u64 > MAX_SPEC_BYTES {
        return Err(Error::new(ErrorKind::InvalidInput, format!("it is larger than {MAX_SPEC_BYTES} bytes")));
    }
    Ok(text)
}

/// The root file and every file it uses, parsed.
#[derive(Debug, Default)]
pub struct Program {
    pub sources: SourceMap,
    /// Parsed files; the root is first.
    pub files: Vec<(FileId, ast::File)>,
    /// The canonical paths of the files read from disk (the root, if it is a file, and every
    /// file it uses): what a command must never write over.
    pub paths: Vec<PathBuf>,
}

/// Parses `root` and, transitively, the files it uses. Never stops at the first error.
pub fn load(root: &Source) -> (Program, Vec<Diagnostic>) {
    let mut l = Loader { program: Program::default(), diags: vec![], stack: vec![], seen: vec![] };
    l.seen.extend(root.path.clone());
    l.visit(root.name.clone(), root.text.clone(), root.dir.clone(), root.path.clone());
    (l.program, l.diags)
}

struct Loader {
    program: Program,
    diags: Vec<Diagnostic>,
    /// Canonical paths of the files being visited (for cycle detection).
    stack: Vec<PathBuf>,
    /// Canonical paths already loaded.
    seen: Vec<PathBuf>,
}

impl Loader {
    fn visit(&mut self, name: String, text: String, dir: Option<PathBuf>, key: Option<PathBuf>) {
        let id = self.program.sources.add(name, text);
        if let Some(k) = &key {
            self.program.paths.push(k.clone());
        }
        let (file, diags) = syntax::parse(id, &self.program.sources.get(id).text);
        self.diags.extend(diags);
        let uses: Vec<ast::Use> =
            file.items.iter().filter_map(|i| if let ast::Item::Use(u) = i { Some(u.clone()) } else { None }).collect();
        self.program.files.push((id, file));
        if let Some(k) = &key {
            self.stack.push(k.clone());
        }
        // Used files are shown by a name relative to the one that uses them.
        let shown_dir = Path::new(&self.program.sources.get(id).name).parent().map(Path::to_path_buf).unwrap_or_default();
        for u in uses {
            self.use_file(&u, dir.as_deref(), &shown_dir);
        }
        if key.is_some() {
            self.stack.pop();
        }
    }

    fn use_file(&mut self, u: &ast::Use, dir: Option<&Path>, shown_dir: &Path) {
        let Some(dir) = dir else {
            self.diags.push(Diagnostic::error(u.span, "`use` is not available here").help("inline specs cannot use other files"));
            return;
        };
        let path = dir.join(&u.path);
        let canonical = match path.canonicalize() {
            Ok(p) => p,
            Err(e) => {
                self.diags.push(error_reading(u.span, &shown_dir.join(&u.path), &e));
                return;
            }
        };
        if let Some(pos) = self.stack.iter().position(|p| *p == canonical) {
            let cycle: Vec<String> = self.stack[pos..].iter().chain([&canonical]).map(|p| file_name(p)).collect();
            self.diags.push(
                Diagnostic::error(u.span, format!("`use` cycle: {}", cycle.join(" -> ")))
                    .label("this use closes the cycle")
                    .help("move the shared blocks into a file that uses neither"),
            );
            return;
        }
        if self.seen.contains(&canonical) {
            return;
        }
        self.seen.push(canonical.clone());
        match read_spec(&canonical) {
            Ok(text) => {
                let dir = canonical.parent().map(Path::to_path_buf);
                self.visit(shown_dir.join(&u.path).display().to_string(), text, dir, Some(canonical));
            }
            Err(e) => self.diags.push(error_reading(u.span, &shown_dir.join(&u.path), &e)),
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn error_reading(span: Span, path: &Path, e: &std::io::Error) -> Diagnostic {
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    };
    Diagnostic::error(span, format!("cannot read `{}`: {reason}", path.display()))
        .label("used here")
        .help("`use` paths are relative to the file that uses them")
}
