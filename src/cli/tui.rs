//! `usdtop` with no subcommand: the arguments of the full-screen explorer, checked here and
//! handed to the runtime in `src/tui`.

use clap::Args;
use std::path::Path;
use usdtop::session::AggMode;

#[derive(Args, Debug)]
pub struct TuiArgs {
    /// Start with this process selected (its objects listed).
    #[arg(short, long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Attach these probes at start: `provider:name` (e.g. node:http__server__request),
    /// globs (`postgresql:query__*`), or `PATH:provider:name` for one object only. In the
    /// `-p` process (and its children), or else in every process running an object that has
    /// them. Repeatable.
    #[arg(short = 'a', long = "attach", value_name = "PROBE")]
    pub attach: Vec<String>,
    /// Run the built-in demo: an HTTP server with node-style probes and its load generator in
    /// this process, with both request probes attached.
    #[arg(long)]
    pub demo: bool,
    /// Requests per second the demo's load generator sends.
    #[arg(long, default_value_t = 200.0, value_name = "R", value_parser = super::numbers::rate)]
    pub demo_rate: f64,
    /// Where the followed start/done pair is paired. auto: in user space from every event
    /// until its probes fire more than 20,000 times a second, then in the kernel (histogram
    /// from per-CPU buckets; log and top table from a sampled stream, "sampled 1/N", the
    /// table's counts scaled up by N), and
    /// back to user space after 10 s under 5,000 a second; kernel: in the kernel from the
    /// start; stream: always in user space. Pairs keyed by a string or nested (entry/return)
    /// always pair in user space.
    #[arg(long, value_enum, default_value_t = AggMode::Auto)]
    pub pairing: AggMode,
}

pub fn run(args: TuiArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        args.demo_rate.is_finite() && args.demo_rate >= 0.0,
        "--demo-rate must be a non-negative number"
    );
    if let Some(pid) = args.pid {
        anyhow::ensure!(
            Path::new("/proc").join(pid.to_string()).exists(),
            "no process with pid {pid}"
        );
    }
    crate::tui::run(crate::tui::Options {
        pid: args.pid,
        attach: args.attach,
        demo: args.demo,
        demo_rate: args.demo_rate,
        pairing: args.pairing,
    })
}
