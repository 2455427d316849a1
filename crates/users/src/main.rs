use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = users::Config::parse();
    let _telemetry = service_kit::telemetry::init("users", &config.telemetry)?;
    let shutdown = service_kit::Shutdown::new();
    shutdown.trigger_on_signals();
    users::run(config, shutdown).await
}
