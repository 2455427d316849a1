use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = chat::Config::parse();
    let _telemetry = service_kit::telemetry::init("chat", &config.telemetry)?;
    let shutdown = service_kit::Shutdown::new();
    shutdown.trigger_on_signals();
    chat::run(config, shutdown).await
}
