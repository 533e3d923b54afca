//! The command-line edge: one module per subcommand, each turning arguments into calls on the
//! library and results into text or JSON. Errors here are `anyhow`.

pub mod demo_server;
pub mod export;
pub mod export_config;
pub mod export_http;
pub mod export_metrics;
pub mod export_native;
pub mod export_probes;
pub mod headless;
pub mod latency;
pub mod list;
pub mod numbers;
pub mod output;
pub mod sampled;
pub mod top;
pub mod trace;
pub mod trace_output;
pub mod tui;
