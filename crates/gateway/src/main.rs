use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = gateway::Config::parse();
    let _telemetry = service_kit::telemetry::init("gateway", &config.telemetry)?;
    let shutdown = service_kit::Shutdown::new();
    shutdown.trigger_on_signals();
    gateway::run(config, shutdown).await
}
