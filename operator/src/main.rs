use clap::Parser as _;
use operator::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Crds { dir } => operator::write_crds(dir.as_deref()),
        Command::Run => {
            let _telemetry = service_kit::telemetry::init("operator", &cli.config.telemetry)?;
            let shutdown = service_kit::Shutdown::new();
            shutdown.trigger_on_signals();
            operator::run(cli.config, shutdown).await
        }
    }
}
