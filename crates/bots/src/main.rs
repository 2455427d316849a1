use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = bots::Config::parse();
    let _telemetry = service_kit::telemetry::init("bots", &config.telemetry)?;
    let shutdown = service_kit::Shutdown::new();
    shutdown.trigger_on_signals();
    bots::run(config, shutdown).await
}
