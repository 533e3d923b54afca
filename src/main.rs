//! usdtop: a full-screen terminal explorer for Linux USDT probes, with live BPF tracing.

mod cli;
mod stop;
mod tui;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Explore and trace USDT (SystemTap/DTrace-style) probes.
///
/// With no subcommand usdtop opens the full-screen explorer: processes, the ELF objects they map
/// and the probes in them; Space attaches a probe and its events feed the live panes.
///
/// Examples:
///   usdtop --demo                                  # built-in HTTP workload with node probes
///   usdtop -p $(pgrep -n php8.2) -a php:request__startup
///   usdtop list /usr/lib/postgresql/15/bin/postgres
///   usdtop trace -p 1234 'postgresql:query__*'
#[derive(Parser, Debug)]
#[command(name = "usdtop", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    tui: cli::tui::TuiArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the USDT probes of ELF files or processes (like `tplist -v` / `readelf -n`).
    List(cli::list::ListArgs),
    /// Print every hit of USDT probes with decoded arguments (like bcc `trace`).
    Trace(cli::trace::TraceArgs),
    /// Latency between a start and a done probe: percentiles and a histogram (like funclatency).
    Latency(cli::latency::LatencyArgs),
    /// The busiest values of a probe argument, with rate and latency when paired.
    Top(cli::top::TopArgs),
    /// Serve probe hits and latency histograms to Prometheus (aggregated in the kernel).
    Export(cli::export::ExportArgs),
    /// Run the built-in node-shaped HTTP demo workload (a fixture for tests and demos).
    #[command(hide = true)]
    DemoServer(cli::demo_server::DemoServerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::List(args)) => cli::list::run(args),
        Some(Command::Trace(args)) => cli::trace::run(args),
        Some(Command::Latency(args)) => cli::latency::run(args),
        Some(Command::Top(args)) => cli::top::run(args),
        Some(Command::Export(args)) => cli::export::run(args),
        Some(Command::DemoServer(args)) => cli::demo_server::run(args),
        None => cli::tui::run(cli.tui),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("usdtop: {e:#}");
            ExitCode::from(1)
        }
    }
}
