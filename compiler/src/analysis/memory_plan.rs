//! The memory plan: where every value lives in one arena. An analysis of the final graph,
//! computed once by the pipeline and read by codegen and the reports.
//!
//! Each value is live from the node that defines it to its last reader (the output lives to
//! the end). Values whose live ranges overlap get disjoint regions; the rest share. Regions
//! are placed greedily, largest value first, at the lowest offset that fits (the "greedy by
//! size" strategy of TFLite's planner). The liveness lower bound is the largest total size
//! of values alive at one point: no plan can use less.

use std::collections::HashMap;

use crate::ir::{Graph, NodeId};

/// Per-sample offsets and lengths (in floats) of every value; scale by the batch N.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Whether values whose lives do not overlap share regions (`-O2`, or `memory_plan`
    /// among `--passes`); otherwise every value has its own.
    pub reuse: bool,
    pub offsets: Vec<usize>,
    pub lens: Vec<usize>,
    /// The arena's length: the plan's peak.
    pub arena: usize,
    /// The largest total of values alive at one point.
    pub lower_bound: usize,
    /// The expansion + depthwise pairs that run as one step ([`super::pairs`]), which the
    /// live ranges account for; codegen emits the same steps from this map.
    pub pairs: HashMap<NodeId, NodeId>,
}

impl MemoryPlan {
    /// One line for reports.
    pub fn summary(&self) -> String {
        format!(
            "arena of {} floats a sample ({:.2}x the liveness lower bound of {}{})",
            self.arena,
            self.arena as f64 / self.lower_bound.max(1) as f64,
            self.lower_bound,
            if self.reuse { "" } else { "; no sharing" }
        )
    }
}

/// Live ranges `[def, last_use]` of every value. An expansion + depthwise pair runs as one
/// step at the depthwise node ([`super::pairs`]): the expansion's input is read there.
fn live_ranges(graph: &Graph, pairs: &HashMap<NodeId, NodeId>) -> Vec<(usize, usize)> {
    let n = graph.nodes.len();
    let mut last = (0..n).collect::<Vec<_>>();
    for (i, node) in graph.nodes.iter().enumerate() {
        for inp in &node.inputs {
            last[inp.index()] = last[inp.index()].max(i);
        }
    }
    for (dw, e) in pairs {
        let x = graph.node(*e).inputs[0].index();
        last[x] = last[x].max(dw.index());
    }
    last[graph.output.index()] = n;
    (0..n).map(|i| (i, last[i])).collect()
}

/// The plan: shared regions when `reuse`, else every value its own region.
pub fn plan(graph: &Graph, reuse: bool) -> MemoryPlan {
    let lens: Vec<usize> = graph.nodes.iter().map(|n| n.shape.len()).collect();
    let pairs = super::pairs::expansion_pairs(graph);
    let ranges = live_ranges(graph, &pairs);
    let n = lens.len();
    let lower_bound = peak_live(&lens, &ranges);
    if !reuse {
        let mut offsets = Vec::with_capacity(n);
        let mut at = 0;
        for &l in &lens {
            offsets.push(at);
            at += l;
        }
        return MemoryPlan { reuse, offsets, lens, arena: at, lower_bound, pairs };
    }
    // Placement order matters; try a few classic ones and keep the smallest arena.
    let by_size: Vec<usize> = {
        let mut o: Vec<usize> = (0..n).collect();
        o.sort_by_key(|&i| (std::cmp::Reverse(lens[i]), i));
        o
    };
    let by_size_then_life: Vec<usize> = {
        let mut o: Vec<usize> = (0..n).collect();
        o.sort_by_key(|&i| (std::cmp::Reverse(lens[i]), std::cmp::Reverse(ranges[i].1 - ranges[i].0), i));
        o
    };
    let by_definition: Vec<usize> = (0..n).collect();
    let by_area: Vec<usize> = {
        let mut o: Vec<usize> = (0..n).collect();
        o.sort_by_key(|&i| (std::cmp::Reverse(lens[i] * (ranges[i].1 - ranges[i].0 + 1)), i));
        o
    };
    let (offsets, arena) = [by_size, by_size_then_life, by_definition, by_area]
        .iter()
        .map(|order| place(order, &lens, &ranges))
        .min_by_key(|(_, arena)| *arena)
        .expect("invariant: there are orders to try");
    MemoryPlan { reuse, offsets, lens, arena, lower_bound, pairs }
}

/// The largest total length of values alive at one time step (a sweep over the ranges).
fn peak_live(lens: &[usize], ranges: &[(usize, usize)]) -> usize {
    // delta[t]: what starts living at t minus what stopped living before t.
    let steps = ranges.iter().map(|r| r.1 + 2).max().unwrap_or(0);
    let mut delta = vec![0i128; steps + 1];
    for (&len, &(a, b)) in lens.iter().zip(ranges) {
        delta[a] += len as i128;
        delta[b + 1] -= len as i128;
    }
    let (mut live, mut peak) = (0i128, 0i128);
    for d in delta {
        live += d;
        peak = peak.max(live);
    }
    peak as usize
}

/// Places values in `order`, each at the lowest offset free of the values already placed
/// that are alive at the same time. Returns the offsets and the arena's length.
///
/// The values alive at a step are kept per step, so that placing a value looks only at the
/// values alive during its own (short) life: linear in the graph for a network whose values
/// live a few steps, as residual networks' do.
fn place(order: &[usize], lens: &[usize], ranges: &[(usize, usize)]) -> (Vec<usize>, usize) {
    let steps = ranges.iter().map(|r| r.1 + 1).max().unwrap_or(0);
    let mut alive: Vec<Vec<usize>> = vec![Vec::new(); steps];
    let mut offsets = vec![usize::MAX; lens.len()];
    let mut stamp = vec![usize::MAX; lens.len()];
    let mut arena = 0;
    let mut busy: Vec<(usize, usize)> = Vec::new();
    for &i in order {
        let (a, b) = ranges[i];
        busy.clear();
        for step in &alive[a..=b] {
            for &j in step {
                if stamp[j] != i {
                    stamp[j] = i;
                    busy.push((offsets[j], offsets[j] + lens[j]));
                }
            }
        }
        busy.sort_unstable();
        let mut at = 0;
        for &(s, e) in &busy {
            if s >= at + lens[i] {
                break;
            }
            at = at.max(e);
        }
        offsets[i] = at;
        arena = arena.max(at + lens[i]);
        for step in &mut alive[a..=b] {
            step.push(i);
        }
    }
    (offsets, arena)
}

/// Checks that values alive at the same time never share floats (step by step, by the
/// definition of liveness, independently of how `place` searched).
pub fn check(graph: &Graph, plan: &MemoryPlan) -> Result<(), String> {
    let ranges = live_ranges(graph, &plan.pairs);
    let steps = ranges.iter().map(|r| r.1 + 1).max().unwrap_or(0);
    let mut alive: Vec<Vec<usize>> = vec![Vec::new(); steps];
    for (i, &(a, b)) in ranges.iter().enumerate() {
        for step in &mut alive[a..=b] {
            step.push(i);
        }
    }
    for step in &alive {
        let mut regions: Vec<(usize, usize, usize)> = step.iter().map(|&i| (plan.offsets[i], plan.offsets[i] + plan.lens[i], i)).collect();
        regions.sort_unstable();
        for w in regions.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(format!("values %{} and %{} are alive together and overlap in the arena", w[0].2, w[1].2));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_chain_plans_in_linear_time() {
        // 40,000 layers (the reliability report's case took 5 s with the quadratic search).
        let body: String = (0..40_000).map(|i| if i % 2 == 0 { "relu\n" } else { "sigmoid\n" }).collect();
        let spec = format!("network n {{ input [2, 4, 4]\n{body} }}");
        let g = crate::passes::tests::lower(&spec);
        let start = std::time::Instant::now();
        let p = super::plan(&g, true);
        assert!(start.elapsed().as_secs_f64() < 2.0, "{:?}", start.elapsed());
        super::check(&g, &p).unwrap();
        assert_eq!(p.arena, p.lower_bound);
    }

    use crate::passes::tests::{lower, SMALL};

    #[test]
    fn live_values_never_overlap_and_the_peak_is_near_the_bound() {
        for spec in [SMALL] {
            let mut g = lower(spec);
            for optimised in [false, true] {
                if optimised {
                    crate::passes::fold_bn::run(&mut g);
                    crate::passes::fuse::run(&mut g);
                }
                let p = super::plan(&g, true);
                super::check(&g, &p).unwrap();
                assert!(p.arena >= p.lower_bound);
                // A tiny graph whose input is larger than its activations can miss the bound by
                // a little (the stock networks meet it exactly: see tests/passes.rs).
                assert!(p.arena as f64 <= 1.2 * p.lower_bound as f64, "{} vs {}", p.arena, p.lower_bound);
                let naive = super::plan(&g, false);
                super::check(&g, &naive).unwrap();
                assert!(naive.arena >= p.arena);
                // A plan that overlaps live values is caught.
                if p.offsets.len() > 2 {
                    let mut bad = p.clone();
                    bad.offsets[2] = bad.offsets[1];
                    assert!(super::check(&g, &bad).is_err());
                }
                // The sweep's bound equals the definition: the most floats alive at one step.
                let ranges = super::live_ranges(&g, &p.pairs);
                let n = g.nodes.len();
                let brute = (0..=n).map(|t| (0..n).filter(|&i| ranges[i].0 <= t && t <= ranges[i].1).map(|i| p.lens[i]).sum()).max();
                assert_eq!(Some(p.lower_bound), brute);
            }
        }
    }
}
