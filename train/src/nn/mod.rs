//! Network description and execution.
pub mod graph;
