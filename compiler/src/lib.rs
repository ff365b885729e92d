//! resnetc-compiler: `.resnet` text -> AST -> graph IR -> passes -> Rust.
//!
//! One library path serves the CLI, the macro, the tests and the benches: [`compile`] takes
//! a spec's text and [`Options`] and returns the optimised, verified [`ir::Graph`] with its
//! analyses ([`Compiled`]), or a [`CompileError`] holding every diagnostic. See
//! ARCHITECTURE.md at the repository root.

pub mod analysis;
pub mod ast;
pub mod codegen;
pub mod diag;
pub mod frontend;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod parity;
pub mod passes;
pub mod report;
pub mod syntax;

pub use diag::{CompileError, Diagnostic, Suggestion};
pub use frontend::Source;

/// What a user can set from outside the spec: network parameters, the input shape, and
/// which optimisation passes run.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--set NAME=VALUE` pairs; the last one for a name wins.
    pub sets: Vec<(String, String)>,
    /// `--input-shape C,H,W`, overriding the spec's `input`.
    pub input_shape: Option<[usize; 3]>,
    /// `-O0` (only the required `shortcut` pass) or `-O2` (all; the default). Other values
    /// count as 2.
    pub opt_level: u8,
    /// `--passes a,b,c`: exactly these passes (overrides `opt_level`).
    pub passes: Option<Vec<String>>,
    /// Stop after this pass (`lower` for none): `resnetc graph --after PASS`.
    pub stop_after: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options { sets: vec![], input_shape: None, opt_level: 2, passes: None, stop_after: None }
    }
}

impl Options {
    /// Parses `NAME=VALUE`.
    pub fn parse_set(text: &str) -> Result<(String, String), String> {
        match text.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => Err(format!("expected NAME=VALUE, found `{text}`")),
        }
    }

    /// The passes these options select.
    pub fn selection(&self) -> passes::Selection {
        match (&self.passes, self.opt_level) {
            (Some(list), _) => passes::Selection::Only(list.clone()),
            (None, 0) => passes::Selection::None,
            (None, _) => passes::Selection::All,
        }
    }

    /// Parses `C,H,W`.
    pub fn parse_input_shape(text: &str) -> Result<[usize; 3], String> {
        let dims: Vec<Result<usize, _>> = text.split([',', 'x']).map(|d| d.trim().parse::<usize>()).collect();
        match dims.as_slice() {
            [Ok(c), Ok(h), Ok(w)] if *c > 0 && *h > 0 && *w > 0 => Ok([*c, *h, *w]),
            _ => Err(format!("expected C,H,W with three positive integers, found `{text}`")),
        }
    }
}

/// A compiled network: the graph after the passes, with the analyses later stages read
/// (as cranelift's `Context` keeps its cfg and domtree beside the function).
#[derive(Debug, Clone)]
pub struct Compiled {
    pub graph: ir::Graph,
    /// Where every value lives in the arena.
    pub memory: analysis::MemoryPlan,
    /// What each pass did, in order.
    pub reports: Vec<passes::PassReport>,
    /// The files the spec was read from (canonical paths): a command's outputs must not
    /// overwrite them.
    pub files: Vec<std::path::PathBuf>,
}

/// Compiles a spec: parse (with `use`s), lower, verify, run the selected passes, analyse.
pub fn compile(source: &Source, options: &Options) -> Result<Compiled, CompileError> {
    compile_with_sources(source, options).map(|(c, _)| c)
}

/// [`compile`], also returning every source file read (the spec and what it `use`s).
pub fn compile_with_sources(source: &Source, options: &Options) -> Result<(Compiled, diag::SourceMap), CompileError> {
    let selection = options.selection();
    let (program, mut diagnostics) = frontend::load(source);
    if let Err(e) = passes::check_names(&selection, options.stop_after.as_deref()) {
        return Err(CompileError { diagnostics: vec![Diagnostic::global(e.to_string())], sources: program.sources });
    }
    let (graph, lower_diags) = lower::lower(&program, options);
    // Lowering a file with syntax errors would report their consequences; keep only the
    // first round of errors when parsing failed.
    if diagnostics.is_empty() {
        diagnostics = lower_diags;
    }
    match graph {
        Some(mut graph) if diagnostics.is_empty() => {
            let reports = passes::run(&mut graph, &selection, options.stop_after.as_deref());
            let memory = analysis::memory_plan::plan(&graph, selection.plans_memory());
            Ok((Compiled { graph, memory, reports, files: program.paths }, program.sources))
        }
        _ => Err(CompileError { diagnostics, sources: program.sources }),
    }
}

/// Compiles a spec file.
pub fn compile_file(path: &std::path::Path, options: &Options) -> Result<Compiled, CompileError> {
    match Source::read(path) {
        Ok(src) => compile(&src, options),
        Err(e) => Err(CompileError {
            diagnostics: vec![Diagnostic::global(format!("cannot read `{}`: {e}", path.display()))],
            sources: Default::default(),
        }),
    }
}
