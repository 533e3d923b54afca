pub mod aggregate;
pub mod app;
pub mod demo;
pub mod probes;
pub mod session;
pub mod ui;
