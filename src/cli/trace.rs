use clap::Args;

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Probes: `provider:name`, `PATH:provider:name` or a glob such as `postgresql:query__*`.
    #[arg(required = true)]
    pub probes: Vec<String>,
}

pub fn run(_args: TraceArgs) -> anyhow::Result<u8> {
    anyhow::bail!("trace is not built yet")
}
