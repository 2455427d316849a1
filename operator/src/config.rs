//! The operator's configuration (env vars and flags; see the README table).

use service_kit::config::{AdminArgs, TelemetryArgs};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "operator",
    about = "Reconciles ChatBot and Bot resources into the chat platform's workloads"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Run the controllers (the default).
    Run,
    /// Print the CustomResourceDefinitions as YAML, or write one file per
    /// CRD into a directory.
    Crds {
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Watch only this namespace (empty: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,
    /// Take a Lease before reconciling, so only one replica acts.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the Lease (default: the pod's namespace).
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        env = "LEADER_ELECTION_LEASE",
        default_value = "chat-platform-operator"
    )]
    pub lease_name: String,
    /// This replica's identity (the pod name, from the downward API).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// The pod's namespace (from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub pod_namespace: String,
    /// Image of ChatBots that do not name one.
    #[arg(
        long,
        env = "DEFAULT_IMAGE",
        default_value = concat!("ghcr.io/chat-platform/chat-platform:", env!("CARGO_PKG_VERSION"))
    )]
    pub default_image: String,
    /// How often an unchanged ChatBot is checked anyway.
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "5m", value_parser = service_kit::config::parse_duration)]
    pub resync: std::time::Duration,
}
