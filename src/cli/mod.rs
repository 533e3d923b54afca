//! The command-line edge: one module per subcommand, each turning arguments into calls on the
//! library and results into text or JSON. Errors here are `anyhow`.

pub mod demo_server;
pub mod list;
pub mod trace;
pub mod tui;
