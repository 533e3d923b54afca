use clap::Args;

#[derive(Args, Debug)]
pub struct ListArgs {
    /// ELF files to list; with neither PATH nor -p, every process on the machine.
    pub paths: Vec<std::path::PathBuf>,
}

pub fn run(_args: ListArgs) -> anyhow::Result<u8> {
    anyhow::bail!("list is not built yet")
}
