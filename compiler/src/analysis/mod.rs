//! Analyses: facts computed from a finished graph that later stages read, never change.
//! The pipeline computes them once and returns them beside the graph ([`crate::Compiled`]).

pub mod memory_plan;
pub mod pairs;

pub use memory_plan::MemoryPlan;
