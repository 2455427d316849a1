//! The chat platform's Kubernetes operator: `ChatBot` and `Bot` custom
//! resources in, Deployments, Services, HPAs, PDBs, an Ingress and the bots
//! ConfigMap out. See ARCHITECTURE.md for the module map.

pub mod apply;
pub mod bots;
pub mod config;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod leader;
pub mod metrics;
pub mod secrets;
pub mod status;

#[cfg(test)]
mod test_support;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use prometheus_client::registry::Registry;
use service_kit::Shutdown;
use service_kit::admin::{self, AdminState, Readiness};

use crate::config::Config;
use crate::controller::{Context, Settings};
use crate::desired::Capabilities;
use crate::leader::LeaseLock;
use crate::metrics::Metrics;

/// Prints the CRDs (multi-document YAML) or writes `<group>_<plural>.yaml`
/// files into `dir`.
pub fn write_crds(dir: Option<&Path>) -> anyhow::Result<()> {
    for crd in crd::crds() {
        let yaml = crd::crd_yaml(&crd)?;
        match dir {
            Some(dir) => {
                let path = dir.join(crd::crd_file_name(&crd));
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            None => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "---\n{}", yaml.trim_end())?;
            }
        }
    }
    Ok(())
}

/// Which optional APIs the cluster serves.
pub async fn discover(client: &Client) -> anyhow::Result<Capabilities> {
    let served = |group_version: &'static str| {
        let client = client.clone();
        async move {
            match client.list_api_group_resources(group_version).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
                Err(error) => Err(error),
            }
        }
    };
    Ok(Capabilities {
        autoscaling_v2: served("autoscaling/v2").await.context("API discovery")?,
        pdb_v1: served("policy/v1").await.context("API discovery")?,
    })
}

/// Runs the operator until `shutdown` fires, with the in-cluster service
/// account (or KUBECONFIG) and the configured admin address.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    service_kit::install_crypto_provider();
    let client = Client::try_default()
        .await
        .context("no Kubernetes API found (in-cluster service account or KUBECONFIG)")?;
    let admin = service_kit::net::bind(config.admin.admin_addr)
        .with_context(|| format!("binding {}", config.admin.admin_addr))?;
    run_with(client, config, admin, shutdown).await
}

/// The operator on a given client and admin listener: admin port, leader
/// election (when enabled), then both controllers.
pub async fn run_with(
    client: Client,
    config: Config,
    admin: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let capabilities = discover(&client).await?;
    tracing::info!(?capabilities, "API server capabilities");

    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness = Readiness::new(Duration::from_secs(2));
    let probe = client.clone();
    readiness.add("kubernetes", move || {
        let client = probe.clone();
        async move {
            client
                .apiserver_version()
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        }
    });
    readiness.register_metrics(&mut registry);
    let admin_task = admin::spawn(
        admin,
        AdminState {
            readiness,
            registry: Arc::new(registry),
        },
        &shutdown,
    );

    let identity = config
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("operator-{}", std::process::id()));
    let lease = config.leader_election.then(|| {
        let namespace = config
            .leader_election_namespace
            .clone()
            .unwrap_or_else(|| config.pod_namespace.clone());
        LeaseLock::new(
            kube::Api::namespaced(client.clone(), &namespace),
            &config.lease_name,
            &identity,
        )
    });

    let settings = Settings {
        namespace: Some(config.watch_namespace.clone()).filter(|ns| !ns.is_empty()),
        default_image: config.default_image.clone(),
        capabilities,
        resync: config.resync,
        instance: Some(identity),
    };
    let ctx = Arc::new(Context::new(client, settings, metrics.clone()));

    let outcome = match &lease {
        None => {
            controller::run(ctx, shutdown.cancelled()).await;
            Ok(())
        }
        Some(lease) => {
            tokio::select! {
                () = lease.acquire() => {}
                () = shutdown.cancelled() => return Ok(()),
            }
            tracing::info!(identity = lease.identity(), "leading");
            metrics.leader.set(1);
            let lost = Shutdown::new();
            let controllers = tokio::spawn(controller::run(ctx, {
                let (stop, lost) = (shutdown.clone(), lost.clone());
                async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = lost.cancelled() => {}
                    }
                }
            }));
            let outcome = tokio::select! {
                () = lease.hold() => {
                    lost.trigger();
                    Err(anyhow::anyhow!("lost the leader lease"))
                }
                () = shutdown.cancelled() => Ok(()),
            };
            let _ = controllers.await;
            metrics.leader.set(0);
            if let Err(error) = lease.release().await {
                tracing::warn!(%error, "could not release the leader lease");
            }
            outcome
        }
    };
    shutdown.trigger();
    let _ = admin_task.await;
    outcome
}
