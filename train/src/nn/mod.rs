//! Network description and execution.
pub mod exec;
pub mod graph;
pub mod params;
