pub mod demo;
pub mod probes;
