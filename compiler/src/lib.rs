//! resnetc-compiler: `.resnet` text -> AST -> graph IR -> passes -> Rust.
//!
//! One library path serves the CLI, the tests and the benches: [`compile`] takes a spec's
//! text and [`Options`] and returns the lowered, verified [`ir::Graph`] or a
//! [`CompileError`] holding every diagnostic. See ARCHITECTURE.md at the repository root.

pub mod ast;
pub mod codegen;
pub mod diag;
pub mod frontend;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod passes;
pub mod report;
pub mod syntax;

pub use diag::{CompileError, Diagnostic};
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

    /// Whether the memory plan is among the selected passes (else every value gets its own
    /// region in the generated code).
    pub fn plans_memory(&self) -> bool {
        match self.selection() {
            passes::Selection::None => false,
            passes::Selection::All => true,
            passes::Selection::Only(list) => list.iter().any(|p| p == "memory_plan"),
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

/// Compiles a spec to its graph IR: parse (with `use`s), lower, verify.
pub fn compile(source: &Source, options: &Options) -> Result<ir::Graph, CompileError> {
    compile_with_sources(source, options).map(|(g, _)| g)
}

/// [`compile`], also returning every source file read (the spec and what it `use`s).
pub fn compile_with_sources(source: &Source, options: &Options) -> Result<(ir::Graph, diag::SourceMap), CompileError> {
    let (program, mut diagnostics) = frontend::load(source);
    let (graph, lower_diags) = lower::lower(&program, options);
    // Lowering a file with syntax errors would report their consequences; keep only the
    // first round of errors when parsing failed.
    if diagnostics.is_empty() {
        diagnostics = lower_diags;
    }
    match graph {
        Some(mut g) if diagnostics.is_empty() => {
            if let Err(e) = g.verify() {
                panic!("invariant: lowering produced an invalid graph: {e}");
            }
            match passes::run(&mut g, &options.selection(), options.stop_after.as_deref()) {
                Ok(_) => Ok((g, program.sources)),
                Err(passes::PipelineError::Usage(msg)) => {
                    Err(CompileError { diagnostics: vec![Diagnostic::global(msg)], sources: program.sources })
                }
                Err(passes::PipelineError::Spec(diagnostics)) => Err(CompileError { diagnostics, sources: program.sources }),
            }
        }
        _ => Err(CompileError { diagnostics, sources: program.sources }),
    }
}

/// Compiles a spec file.
pub fn compile_file(path: &std::path::Path, options: &Options) -> Result<ir::Graph, CompileError> {
    match Source::read(path) {
        Ok(src) => compile(&src, options),
        Err(e) => Err(CompileError {
            diagnostics: vec![Diagnostic::global(format!("cannot read `{}`: {e}", path.display()))],
            sources: Default::default(),
        }),
    }
}
