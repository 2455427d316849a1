use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = auth::Config::parse();
    let _telemetry = service_kit::telemetry::init("auth", &config.telemetry)?;
    let shutdown = service_kit::Shutdown::new();
    shutdown.trigger_on_signals();
    auth::run(config, shutdown).await
}
