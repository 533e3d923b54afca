pub mod app;
pub mod probes;
