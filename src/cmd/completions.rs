use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  paytool completions bash > /etc/bash_completion.d/paytool\n  paytool completions zsh > \"${fpath[1]}/_paytool\""
)]
pub struct Args {
    /// The shell to write completions for.
    pub shell: Shell,
}

pub fn run<C: CommandFactory>(args: Args) -> anyhow::Result<()> {
    let mut cmd = C::command();
    let name = cmd.get_name().to_string();
    clap_complete::generate(args.shell, &mut cmd, name, &mut std::io::stdout());
    Ok(())
}
