use clap::Args;

#[derive(Args, Debug)]
pub struct TuiArgs {
    /// Start with this process selected.
    #[arg(short, long)]
    pub pid: Option<i32>,
}

pub fn run(_args: TuiArgs) -> anyhow::Result<u8> {
    anyhow::bail!("the TUI is not built yet")
}
