//! The optimisation pipeline: each pass is a file with a `run(&mut Graph) -> PassReport`,
//! listed in order in [`PIPELINE`]. The driver verifies the graph after every pass; a pass
//! never fails on a user's spec (lowering has reported everything a user can get wrong),
//! so a verifier error here is a compiler bug and panics.
//!
//! `shortcut` is required (it makes every shortcut explicit ops) and runs at every level;
//! `-O0` runs nothing else; `-O2` runs all; `--passes a,b` runs those named, in order. The
//! name `memory_plan` selects sharing in the memory plan, an analysis the driver in
//! `lib.rs` computes after the passes (`analysis::memory_plan`).

pub mod dce;
pub mod fold_bn;
pub mod fuse;
pub mod shortcut;

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

/// Every optional pass, in the order they run (after `shortcut`).
pub const PIPELINE: &[(&str, Pass)] = &[("fold_bn", fold_bn::run), ("fuse", fuse::run), ("dce", dce::run)];

/// The name that turns on sharing in the memory plan (an analysis, not a pass).
pub const MEMORY_PLAN: &str = "memory_plan";

/// The names `--passes` and `--after` accept: `shortcut`, the [`PIPELINE`], `memory_plan`.
pub fn names() -> Vec<&'static str> {
    std::iter::once("shortcut").chain(PIPELINE.iter().map(|(n, _)| *n)).chain([MEMORY_PLAN]).collect()
}

/// A pass name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}; the passes are {}", if *.after { format!("cannot stop after `{name}`: no such pass runs with these options (or stop after `lower`)") } else { format!("unknown pass `{name}`") }, names().join(", "))]
pub struct UnknownPass {
    pub name: String,
    /// Named as the pass to stop after (where `lower` is also accepted).
    pub after: bool,
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

impl Selection {
    /// Whether pass (or analysis option) `name` is selected.
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Selection::None => false,
            Selection::All => true,
            Selection::Only(list) => list.iter().any(|n| n == name),
        }
    }

    /// Whether the memory plan shares regions.
    pub fn plans_memory(&self) -> bool {
        self.includes(MEMORY_PLAN)
    }
}

/// Checks pass names before anything runs.
pub fn check_names(selection: &Selection, stop_after: Option<&str>) -> Result<(), UnknownPass> {
    if let Selection::Only(list) = selection {
        if let Some(bad) = list.iter().find(|n| !names().contains(&n.as_str())) {
            return Err(UnknownPass { name: bad.clone(), after: false });
        }
    }
    match stop_after {
        Some(stop) if stop != "lower" && !names().contains(&stop) => Err(UnknownPass { name: stop.to_string(), after: true }),
        // Asking for the graph after a pass that does not run would show another graph.
        Some(stop) if !matches!(stop, "lower" | "shortcut") && !selection.includes(stop) => {
            Err(UnknownPass { name: stop.to_string(), after: true })
        }
        _ => Ok(()),
    }
}

/// Runs the selected passes, stopping after `stop_after` if given; verifies after each.
/// The names must have passed [`check_names`].
pub fn run(graph: &mut Graph, selection: &Selection, stop_after: Option<&str>) -> Vec<PassReport> {
    let mut reports = Vec::new();
    if stop_after == Some("lower") {
        return reports;
    }
    reports.push(shortcut::run(graph));
    if let Err(e) = graph.verify_expanded() {
        panic!("invariant: pass shortcut produced an invalid graph: {e}");
    }
    if stop_after == Some("shortcut") {
        return reports;
    }
    for (name, pass) in PIPELINE {
        if selection.includes(name) {
            reports.push(pass(graph));
            if let Err(e) = graph.verify_expanded() {
                panic!("invariant: pass {name} produced an invalid graph: {e}");
            }
        }
        if stop_after == Some(*name) {
            break;
        }
    }
    reports
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::ir::Graph;
    use crate::{compile, Options, Source};

    /// Lowers a spec with only the required pass (shortcut).
    pub fn lower(spec: &str) -> Graph {
        compile(&Source::inline("test.resnet", spec), &Options { opt_level: 0, ..Options::default() })
            .unwrap_or_else(|e| panic!("{e}"))
            .graph
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
        crate::parity::assert_close("after the pass", b.view().into_dyn(), a.view().into_dyn(), 1e-4);
    }
}
