//! `usdtop demo-server` (hidden): the built-in node-shaped workload as its own process, a fixture
//! for tests and for tracing from another usdtop.

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::io::Write;
use usdtop::demo::{Demo, LoadConfig, Mix};

#[derive(Args, Debug)]
pub struct DemoServerArgs {
    /// Port on 127.0.0.1 (0 = any free port; the chosen one is printed).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Serve only; do not start the built-in load generator.
    #[arg(long)]
    pub no_load: bool,
    /// Requests per second the load generator sends (0 = as fast as possible).
    #[arg(long, default_value_t = 200.0, value_parser = super::numbers::rate)]
    pub rate: f64,
    /// Load generator connections (0 = chosen from the rate).
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Request mix: realistic (fast + slow paths, 404s) or fast (no slow paths; for benchmarks).
    #[arg(long, value_enum, default_value_t = MixArg::Realistic)]
    pub mix: MixArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MixArg {
    Realistic,
    Fast,
}

pub fn run(args: DemoServerArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        args.rate.is_finite() && args.rate >= 0.0,
        "--rate must be a non-negative number"
    );
    let load = (!args.no_load).then_some(LoadConfig {
        rate: args.rate,
        connections: args.connections,
        mix: match args.mix {
            MixArg::Realistic => Mix::Realistic,
            MixArg::Fast => Mix::Fast,
        },
    });
    let demo = Demo::start(args.port, load).context("starting the demo server")?;
    // Tests read this line to learn the port and pid.
    println!(
        "usdtop demo-server listening on http://{} pid {}",
        demo.server.addr(),
        std::process::id()
    );
    std::io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}
