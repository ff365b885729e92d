//! The optimisation pipeline: each pass is a file with a `run(&mut Graph) -> PassReport`,
//! listed in order in [`PIPELINE`]. The driver verifies the graph after every pass.
//!
//! `shortcut` is required (it makes every shortcut explicit ops) and runs at every level;
//! `-O0` runs nothing else; `-O2` runs all; `--passes a,b` runs those named, in order.
//! `memory_plan` is an analysis: it reports the arena the generated code will use and does
//! not change the graph.

pub mod dce;
pub mod fold_bn;
pub mod fuse;
pub mod memory_plan;
pub mod shortcut;

use crate::diag::Diagnostic;
use crate::ir::Graph;

/// What a pass did, in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub pass: &'static str,
    pub changed: usize,
    pub summary: String,
}

/// A pass.
pub type Pass = fn(&mut Graph) -> PassReport;

/// Every pass, in the order they run.
pub const PIPELINE: &[(&str, Pass)] =
    &[("fold_bn", fold_bn::run), ("fuse", fuse::run), ("dce", dce::run), ("memory_plan", memory_plan::run)];

/// The names of the passes, for help texts and errors: `shortcut`, then [`PIPELINE`].
pub fn names() -> Vec<&'static str> {
    std::iter::once("shortcut").chain(PIPELINE.iter().map(|(n, _)| *n)).collect()
}

/// Why the pipeline stopped.
#[derive(Debug)]
pub enum PipelineError {
    /// A bad pass name (`--passes`, `--after`).
    Usage(String),
    /// The spec cannot be compiled (a shortcut that cannot match shapes).
    Spec(Vec<Diagnostic>),
}

/// Which passes run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// `-O0`: none.
    None,
    /// `-O2`: all.
    All,
    /// `--passes a,b,c`: these (in pipeline order).
    Only(Vec<String>),
}

/// Runs the selected passes, stopping after `stop_after` if given; verifies after each.
pub fn run(graph: &mut Graph, selection: &Selection, stop_after: Option<&str>) -> Result<Vec<PassReport>, PipelineError> {
    if let Selection::Only(list) = selection {
        for name in list {
            if !names().contains(&name.as_str()) {
                return Err(PipelineError::Usage(format!("unknown pass `{name}`; the passes are {}", names().join(", "))));
            }
        }
    }
    if let Some(stop) = stop_after {
        if stop != "lower" && !names().contains(&stop) {
            return Err(PipelineError::Usage(format!("unknown pass `{stop}` for --after; choose lower or one of {}", names().join(", "))));
        }
    }
    let mut reports = Vec::new();
    if stop_after == Some("lower") {
        return Ok(reports);
    }
    reports.push(shortcut::run(graph).map_err(PipelineError::Spec)?);
    if let Err(e) = graph.verify() {
        panic!("invariant: pass shortcut produced an invalid graph: {e}");
    }
    if stop_after == Some("shortcut") {
        return Ok(reports);
    }
    for (name, pass) in PIPELINE {
        let selected = match selection {
            Selection::None => false,
            Selection::All => true,
            Selection::Only(list) => list.iter().any(|n| n == name),
        };
        if selected {
            reports.push(pass(graph));
            if let Err(e) = graph.verify() {
                panic!("invariant: pass {name} produced an invalid graph: {e}");
            }
        }
        if stop_after == Some(*name) {
            break;
        }
    }
    Ok(reports)
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::ir::Graph;
    use crate::{compile, Options, Source};

    /// Lowers a spec with only the required pass (shortcut).
    pub fn lower(spec: &str) -> Graph {
        compile(&Source::inline("test.resnet", spec), &Options { opt_level: 0, ..Options::default() }).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A residual network small enough for interpreter checks.
    pub const SMALL: &str = "
network small(classes = 5) {
    input [3, 12, 10]
    conv1: conv(8, k = 3, s = 2, p = 1)
    bn1: bn
    relu
    layer1: stage(b, 8, blocks = 2)
    layer2: stage(b, 16, blocks = 1, stride = 2)
    global_avgpool
    fc: linear(classes)
}
block b(c, stride = 1) {
    conv1: conv(c, k = 3, s = stride, p = 1)
    bn1: bn
    relu
    conv2: conv(c, k = 3, p = 1)
    bn2: bn
    shortcut downsample: projection
    relu
}
";

    /// The interpreter on `after` equals the interpreter on `before` (same file weights).
    pub fn assert_equivalent(before: &Graph, after: &Graph) {
        use resnetc_runtime::Weights;
        let expected = crate::interp::expected_weights(before);
        assert_eq!(expected, crate::interp::expected_weights(after), "a pass changed the weight file's tensors");
        let w = Weights::random(&expected, 42);
        let s = before.input_shape();
        let x = ndarray::Array4::from_shape_fn((2, s.c, s.h, s.w), |(n, c, h, w)| ((n * 7 + c * 5 + h * 3 + w) % 11) as f32 / 5.0 - 1.0);
        let a = crate::interp::forward(before, &w, x.view()).unwrap();
        let b = crate::interp::forward(after, &w, x.view()).unwrap();
        let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let err = a.iter().zip(b.iter()).fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(err <= 1e-4 * scale, "outputs differ by {err}");
    }
}
