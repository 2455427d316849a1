//! What a ChatBot should look like in the cluster: pure functions from the
//! ChatBot and what the reconciler read (bindings, bots, capabilities) to
//! every child object. No I/O here, so every rule is unit-tested.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities as LinuxCapabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, LocalObjectReference,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceFieldSelector,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::{ChatBot, SecretKeyRef, ServiceSpec as ServiceSettings};

/// The pod-template annotation whose change rolls a Deployment's pods.
pub const CONFIG_HASH_ANNOTATION: &str = "chatbot.platform/config-hash";
pub const ADMIN_PORT: i32 = 9090;
/// Where the bots ConfigMap is mounted (a directory mount, so the kubelet
/// updates the file in place and the bots service hot-reloads it).
const BOTS_DIR: &str = "/etc/bots";
/// The user of the distroless `nonroot` image.
const NONROOT_UID: i64 = 65532;

/// Key names in the generated Secrets.
pub const SIGNING_KEY_KEY: &str = "signing-key.pem";
pub const AUTH_SERVICE_TOKEN_KEY: &str = "auth-service-token";
pub const USERS_SERVICE_TOKEN_KEY: &str = "users-service-token";
pub const CHAT_SERVICE_TOKEN_KEY: &str = "chat-service-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Gateway,
    Auth,
    Users,
    Chat,
    Bots,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Self::Gateway,
        Self::Auth,
        Self::Users,
        Self::Chat,
        Self::Bots,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Auth => "auth",
            Self::Users => "users",
            Self::Chat => "chat",
            Self::Bots => "bots",
        }
    }

    /// The API port (HTTP for the gateway, gRPC for the rest).
    pub fn port(self) -> i32 {
        match self {
            Self::Gateway => 8080,
            Self::Auth => 50051,
            Self::Users => 50052,
            Self::Chat => 50053,
            Self::Bots => 50054,
        }
    }

    fn port_name(self) -> &'static str {
        match self {
            Self::Gateway => "http",
            _ => "grpc",
        }
    }

    pub fn settings(self, chatbot: &ChatBot) -> &ServiceSettings {
        let services = &chatbot.spec.services;
        match self {
            Self::Gateway => &services.gateway,
            Self::Auth => &services.auth,
            Self::Users => &services.users,
            Self::Chat => &services.chat,
            Self::Bots => &services.bots,
        }
    }

    fn uses_redis(self) -> bool {
        self != Self::Chat
    }
}

/// The name of a component's Deployment, Service, HPA and PDB.
pub fn child_name(chatbot: &ChatBot, component: Component) -> String {
    format!("{}-{}", chatbot.name_any(), component.name())
}

pub fn bots_config_map_name(chatbot: &ChatBot) -> String {
    format!("{}-bots", chatbot.name_any())
}

pub fn signing_key_secret_name(chatbot: &ChatBot) -> String {
    format!("{}-signing-key", chatbot.name_any())
}

pub fn internal_secret_name(chatbot: &ChatBot) -> String {
    format!("{}-internal", chatbot.name_any())
}

/// The signing key auth uses: the ChatBot's, or the generated one.
pub fn signing_key_ref(chatbot: &ChatBot) -> SecretKeyRef {
    chatbot
        .spec
        .auth
        .as_ref()
        .and_then(|auth| auth.signing_key_secret.clone())
        .unwrap_or_else(|| SecretKeyRef {
            name: signing_key_secret_name(chatbot),
            key: SIGNING_KEY_KEY.to_owned(),
        })
}

fn internal_ref(chatbot: &ChatBot, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: internal_secret_name(chatbot),
        key: key.to_owned(),
    }
}

/// One environment variable read from a Secret key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub env: &'static str,
    pub secret: SecretKeyRef,
}

/// The Secret keys a component reads, as environment variables.
pub fn bindings(chatbot: &ChatBot, component: Component) -> Vec<Binding> {
    let databases = &chatbot.spec.databases;
    let user = |env, secret: &SecretKeyRef| Binding {
        env,
        secret: secret.clone(),
    };
    let generated = |env, key| Binding {
        env,
        secret: internal_ref(chatbot, key),
    };
    let mut out = vec![user("AMQP_URL", &databases.rabbitmq)];
    if component.uses_redis() {
        out.push(user("REDIS_URL", &databases.redis));
    }
    match component {
        Component::Gateway => {
            out.push(generated("USERS_SERVICE_TOKEN", USERS_SERVICE_TOKEN_KEY));
            out.push(generated("CHAT_SERVICE_TOKEN", CHAT_SERVICE_TOKEN_KEY));
        }
        Component::Auth => {
            out.push(user("DATABASE_URL", &databases.postgres.auth));
            out.push(Binding {
                env: "AUTH_SIGNING_KEY",
                secret: signing_key_ref(chatbot),
            });
            out.push(generated("AUTH_SERVICE_TOKEN", AUTH_SERVICE_TOKEN_KEY));
        }
        Component::Users => {
            out.push(user("DATABASE_URL", &databases.postgres.users));
            out.push(generated("USERS_SERVICE_TOKEN", USERS_SERVICE_TOKEN_KEY));
        }
        Component::Chat => {
            let mongo = SecretKeyRef {
                name: databases.mongodb.name.clone(),
                key: databases.mongodb.key.clone(),
            };
            out.push(user("MONGODB_URL", &mongo));
            out.push(generated("CHAT_SERVICE_TOKEN", CHAT_SERVICE_TOKEN_KEY));
        }
        Component::Bots => {
            out.push(generated("AUTH_SERVICE_TOKEN", AUTH_SERVICE_TOKEN_KEY));
        }
    }
    out
}

/// What the API server offers beyond the core (decided once at start-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `autoscaling/v2` (Kubernetes 1.23+).
    pub autoscaling_v2: bool,
    /// `policy/v1` PodDisruptionBudgets (Kubernetes 1.21+).
    pub pdb_v1: bool,
}

impl Capabilities {
    pub const ALL: Self = Self {
        autoscaling_v2: true,
        pdb_v1: true,
    };
}

/// What the reconciler read from the cluster before building the children.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The image of ChatBots that do not name one.
    pub default_image: String,
    /// The rendered bots definitions file.
    pub bots_file: String,
    /// SHA-256 of each Secret key that was found, by reference. A key that
    /// is absent here is missing: its component is not rolled out.
    pub secret_digests: BTreeMap<SecretKeyRef, String>,
    pub capabilities: Capabilities,
}

/// Every object a ChatBot owns.
#[derive(Debug, Clone, Default)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub deployments: BTreeMap<Component, Deployment>,
    pub services: Vec<Service>,
    pub autoscalers: BTreeMap<Component, HorizontalPodAutoscaler>,
    pub disruption_budgets: BTreeMap<Component, PodDisruptionBudget>,
    pub ingress: Option<Ingress>,
    /// Components not rolled out because a Secret key they read is missing.
    pub blocked: Vec<Component>,
}

pub fn children(chatbot: &ChatBot, inputs: &Inputs) -> Children {
    let mut out = Children {
        service_account: service_account(chatbot),
        config_map: bots_config_map(chatbot, inputs),
        ingress: ingress(chatbot),
        ..Children::default()
    };
    for component in Component::ALL {
        out.services.push(service(chatbot, component));
        match deployment(chatbot, component, inputs) {
            Some(deployment) => {
                out.deployments.insert(component, deployment);
            }
            None => {
                out.blocked.push(component);
                continue;
            }
        }
        if let Some(hpa) = autoscaler(chatbot, component, inputs.capabilities) {
            out.autoscalers.insert(component, hpa);
        }
        if let Some(pdb) = disruption_budget(chatbot, component, inputs.capabilities) {
            out.disruption_budgets.insert(component, pdb);
        }
    }
    out
}

/// Labels every child carries; the first two select a component's pods.
pub fn labels(chatbot: &ChatBot, component: Option<Component>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/instance".to_owned(), chatbot.name_any()),
        (
            "app.kubernetes.io/name".to_owned(),
            "chat-platform".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "chat-platform-operator".to_owned(),
        ),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "chat-platform".to_owned(),
        ),
    ]);
    if let Some(component) = component {
        labels.insert(
            "app.kubernetes.io/component".to_owned(),
            component.name().to_owned(),
        );
    }
    labels
}

fn selector(chatbot: &ChatBot, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_owned(), chatbot.name_any()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.name().to_owned(),
        ),
    ])
}

/// Name, namespace, labels and the controller owner reference (so the
/// garbage collector deletes the child with its ChatBot).
pub fn metadata(chatbot: &ChatBot, name: String, component: Option<Component>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: chatbot.namespace(),
        labels: Some(labels(chatbot, component)),
        owner_references: chatbot.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

fn service_account(chatbot: &ChatBot) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(chatbot, chatbot.name_any(), None),
        // The services never call the Kubernetes API.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

fn bots_config_map(chatbot: &ChatBot, inputs: &Inputs) -> ConfigMap {
    ConfigMap {
        metadata: metadata(
            chatbot,
            bots_config_map_name(chatbot),
            Some(Component::Bots),
        ),
        data: Some(BTreeMap::from([(
            "bots.yaml".to_owned(),
            inputs.bots_file.clone(),
        )])),
        ..ConfigMap::default()
    }
}

fn image(chatbot: &ChatBot, default_image: &str) -> String {
    let spec = chatbot.spec.image.as_ref();
    let repository = spec.and_then(|image| image.repository.as_deref());
    let tag = spec.and_then(|image| image.tag.as_deref());
    match (repository, tag) {
        (Some(repository), Some(tag)) => format!("{repository}:{tag}"),
        (Some(repository), None) => repository.to_owned(),
        (None, Some(tag)) => format!("{}:{tag}", repository_of(default_image)),
        (None, None) => default_image.to_owned(),
    }
}

/// `repo[:tag][@digest]` → `repo` (a registry port's `:` is kept).
fn repository_of(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => image,
    }
}

fn url(component: Component, chatbot: &ChatBot) -> String {
    format!(
        "http://{}:{}",
        child_name(chatbot, component),
        component.port()
    )
}

fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn from_secret(binding: &Binding) -> EnvVar {
    EnvVar {
        name: binding.env.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: binding.secret.name.clone(),
                key: binding.secret.key.clone(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The async runtime's worker threads follow the container's CPU request
/// (rounded up to whole cores). By default tokio starts one per core of
/// the node, whatever the pod may use: on a large node a pod requesting a
/// tenth of a core would run dozens of workers that mostly wake each other
/// up (measured on the gateway's fan-out: a second worker on a second core
/// cost 10–25% more CPU per delivery; docs/benchmarks.md).
fn runtime_workers() -> EnvVar {
    EnvVar {
        name: "TOKIO_WORKER_THREADS".to_owned(),
        value_from: Some(EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                resource: "requests.cpu".to_owned(),
                divisor: Some(Quantity("1".to_owned())),
                container_name: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Names the platform's queues, exchange and keys after the instance, so
/// two ChatBots can share a broker or Redis without seeing each other.
fn instance_prefix(chatbot: &ChatBot) -> String {
    format!(
        "{}.{}",
        chatbot.namespace().unwrap_or_default(),
        chatbot.name_any()
    )
}

/// A component's environment: plain settings first, then Secret keys, then
/// the ChatBot's `extraEnv` (last, so it overrides).
pub fn environment(chatbot: &ChatBot, component: Component) -> Vec<EnvVar> {
    let spec = &chatbot.spec;
    let prefix = instance_prefix(chatbot);
    let observability = spec.observability.clone().unwrap_or_default();
    let mut env = vec![
        plain("ADMIN_ADDR", format!("0.0.0.0:{ADMIN_PORT}")),
        plain("LOG_FORMAT", "json"),
        plain(
            "RUST_LOG",
            observability.log_filter.as_deref().unwrap_or("info"),
        ),
        plain("AMQP_EXCHANGE", format!("{prefix}.events")),
        runtime_workers(),
    ];
    if let Some(endpoint) = &observability.otlp_endpoint {
        env.push(plain("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint));
    }
    if component.uses_redis() {
        env.push(plain("REDIS_KEY_PREFIX", format!("{prefix}:")));
    }
    if component != Component::Auth {
        // Everyone else verifies tokens with auth's published keys.
        env.push(plain("AUTH_GRPC_URL", url(Component::Auth, chatbot)));
    }
    match component {
        Component::Gateway => {
            let gateway = spec.gateway.clone().unwrap_or_default();
            env.push(plain("USERS_GRPC_URL", url(Component::Users, chatbot)));
            env.push(plain("CHAT_GRPC_URL", url(Component::Chat, chatbot)));
            env.push(plain("FANOUT_QUEUE", format!("{prefix}.gateway.fanout")));
            if !gateway.cors_origins.is_empty() {
                env.push(plain("CORS_ORIGINS", gateway.cors_origins.join(",")));
            }
            let limits = gateway.rate_limits.unwrap_or_default();
            for (name, value) in [
                ("AUTH_RATE_LIMIT", limits.auth),
                ("SEND_RATE_LIMIT", limits.send),
                ("TYPING_RATE_LIMIT", limits.typing),
            ] {
                if let Some(value) = value {
                    env.push(plain(name, value));
                }
            }
        }
        Component::Auth => {
            let auth = spec.auth.clone().unwrap_or_default();
            if let Some(ttl) = auth.access_token_ttl {
                env.push(plain("ACCESS_TOKEN_TTL", ttl));
            }
            if let Some(ttl) = auth.refresh_token_ttl {
                env.push(plain("REFRESH_TOKEN_TTL", ttl));
            }
            if let Some(cost) = auth.bcrypt_cost {
                env.push(plain("BCRYPT_COST", cost.to_string()));
            }
        }
        Component::Users => {
            env.push(plain("USERS_QUEUE", format!("{prefix}.users.registered")));
        }
        Component::Chat => {
            env.push(plain("USERS_GRPC_URL", url(Component::Users, chatbot)));
            env.push(plain("MONGODB_DATABASE", &spec.databases.mongodb.database));
        }
        Component::Bots => {
            env.push(plain("USERS_GRPC_URL", url(Component::Users, chatbot)));
            env.push(plain("CHAT_GRPC_URL", url(Component::Chat, chatbot)));
            env.push(plain("BOTS_QUEUE", format!("{prefix}.bots.messages")));
            env.push(plain("BOTS_DEFINITIONS", format!("{BOTS_DIR}/bots.yaml")));
        }
    }
    env.extend(bindings(chatbot, component).iter().map(from_secret));
    env.extend(component.settings(chatbot).extra_env.iter().cloned());
    env
}

/// A digest of everything a component's pods read at start-up: image,
/// environment and the bound Secret values. The bots definitions are left
/// out on purpose: the bots service reloads them without a restart.
pub fn config_hash(
    image: &str,
    env: &[EnvVar],
    bindings: &[Binding],
    digests: &BTreeMap<SecretKeyRef, String>,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(image.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(env).unwrap_or_default());
    for binding in bindings {
        hasher.update([0]);
        hasher.update(binding.env.as_bytes());
        hasher.update([0]);
        if let Some(digest) = digests.get(&binding.secret) {
            hasher.update(digest.as_bytes());
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

/// Autoscaling as requested and possible here.
fn autoscaling_active(
    settings: &ServiceSettings,
    capabilities: Capabilities,
) -> Option<&crate::crd::AutoscalingSpec> {
    settings
        .autoscaling
        .as_ref()
        .filter(|autoscaling| autoscaling.enabled && capabilities.autoscaling_v2)
}

fn default_resources() -> ResourceRequirements {
    // Requests are what CPU-utilisation autoscaling divides by.
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("100m".to_owned())),
            ("memory".to_owned(), Quantity("128Mi".to_owned())),
        ])),
        ..ResourceRequirements::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// The component's Deployment, or `None` while a Secret key it reads is
/// missing (pods would only fail to start).
pub fn deployment(chatbot: &ChatBot, component: Component, inputs: &Inputs) -> Option<Deployment> {
    let bindings = bindings(chatbot, component);
    if bindings
        .iter()
        .any(|binding| !inputs.secret_digests.contains_key(&binding.secret))
    {
        return None;
    }
    let settings = component.settings(chatbot);
    let image = image(chatbot, &inputs.default_image);
    let env = environment(chatbot, component);
    let hash = config_hash(&image, &env, &bindings, &inputs.secret_digests);
    let autoscaling = autoscaling_active(settings, inputs.capabilities);
    let replicas = match autoscaling {
        Some(_) => None, // the HPA owns the count
        None => Some(minimum_replicas(chatbot, component)),
    };
    let image_spec = chatbot.spec.image.clone().unwrap_or_default();
    let mut mounts = vec![VolumeMount {
        name: "tmp".to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    }];
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    if component == Component::Bots {
        mounts.push(VolumeMount {
            name: "definitions".to_owned(),
            mount_path: BOTS_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "definitions".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: bots_config_map_name(chatbot),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let container = Container {
        name: component.name().to_owned(),
        image: Some(image),
        image_pull_policy: Some(image_spec.pull_policy.as_str().to_owned()),
        command: Some(vec![format!("/usr/local/bin/{}", component.name())]),
        ports: Some(vec![
            ContainerPort {
                name: Some(component.port_name().to_owned()),
                container_port: component.port(),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".to_owned()),
                container_port: ADMIN_PORT,
                ..ContainerPort::default()
            },
        ]),
        env: Some(env),
        resources: Some(settings.resources.clone().unwrap_or_else(default_resources)),
        startup_probe: Some(probe("/healthz", 2, 30)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(LinuxCapabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..LinuxCapabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let pull_secrets = (!image_spec.pull_secrets.is_empty()).then(|| {
        image_spec
            .pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    });
    let selector_labels = selector(chatbot, component);
    let pod = PodSpec {
        service_account_name: Some(chatbot.name_any()),
        automount_service_account_token: Some(false),
        image_pull_secrets: pull_secrets,
        // SHUTDOWN_GRACE (25 s) plus a margin.
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NONROOT_UID),
            run_as_group: Some(NONROOT_UID),
            fs_group: Some(NONROOT_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        // Spread replicas over nodes when the cluster has several.
        topology_spread_constraints: Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels.clone()),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]),
        containers: vec![container],
        volumes: Some(volumes),
        ..PodSpec::default()
    };
    Some(Deployment {
        metadata: metadata(chatbot, child_name(chatbot, component), Some(component)),
        spec: Some(DeploymentSpec {
            replicas,
            revision_history_limit: Some(5),
            selector: LabelSelector {
                match_labels: Some(selector_labels),
                ..LabelSelector::default()
            },
            // Never below the running count while rolling.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(chatbot, Some(component))),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

fn service(chatbot: &ChatBot, component: Component) -> Service {
    let port = |name: &str, number: i32| ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    Service {
        metadata: metadata(chatbot, child_name(chatbot, component), Some(component)),
        spec: Some(ServiceSpec {
            selector: Some(selector(chatbot, component)),
            ports: Some(vec![
                port(component.port_name(), component.port()),
                port("admin", ADMIN_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn autoscaler(
    chatbot: &ChatBot,
    component: Component,
    capabilities: Capabilities,
) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = autoscaling_active(component.settings(chatbot), capabilities)?;
    let mut metrics = vec![MetricSpec {
        type_: "Resource".to_owned(),
        resource: Some(ResourceMetricSource {
            name: "cpu".to_owned(),
            target: MetricTarget {
                type_: "Utilization".to_owned(),
                average_utilization: Some(autoscaling.target_cpu_utilization_percentage),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }];
    if let Some(custom) = &autoscaling.custom_metric {
        metrics.push(MetricSpec {
            type_: "Pods".to_owned(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: custom.name.clone(),
                    ..MetricIdentifier::default()
                },
                target: MetricTarget {
                    type_: "AverageValue".to_owned(),
                    average_value: Some(Quantity(custom.target_average_value.clone())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    Some(HorizontalPodAutoscaler {
        metadata: metadata(chatbot, child_name(chatbot, component), Some(component)),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: child_name(chatbot, component),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(metrics),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    })
}

/// The fewest pods a component runs with (its HPA's minimum when it scales).
fn minimum_replicas(chatbot: &ChatBot, component: Component) -> i32 {
    let settings = component.settings(chatbot);
    match &settings.autoscaling {
        // Without an autoscaler here, requested autoscaling runs its minimum.
        Some(autoscaling) if autoscaling.enabled => autoscaling.min_replicas,
        _ => settings.replicas.unwrap_or(1),
    }
}

/// At most one pod of a component down for voluntary disruptions (node
/// drains), when it runs more than one; a lone pod gets no budget, which
/// would block drains forever.
pub fn disruption_budget(
    chatbot: &ChatBot,
    component: Component,
    capabilities: Capabilities,
) -> Option<PodDisruptionBudget> {
    if !capabilities.pdb_v1 || minimum_replicas(chatbot, component) < 2 {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: metadata(chatbot, child_name(chatbot, component), Some(component)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(chatbot, component)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// Annotations for ingress-nginx: WebSockets stay open for an hour between
/// frames (Socket.IO pings every 25 s anyway), and long-polling clients stick
/// to one gateway pod (an Engine.IO session lives in one process).
fn ingress_annotations() -> BTreeMap<String, String> {
    [
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600"),
        ("nginx.ingress.kubernetes.io/proxy-send-timeout", "3600"),
        ("nginx.ingress.kubernetes.io/affinity", "cookie"),
        (
            "nginx.ingress.kubernetes.io/session-cookie-name",
            "chat-gateway",
        ),
        ("nginx.ingress.kubernetes.io/proxy-body-size", "1m"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

pub fn ingress(chatbot: &ChatBot) -> Option<Ingress> {
    let settings = chatbot.spec.gateway.as_ref()?.ingress.as_ref()?;
    let host = settings.host.clone().filter(|_| settings.enabled)?;
    let mut annotations = ingress_annotations();
    annotations.extend(settings.annotations.clone());
    let mut metadata = metadata(
        chatbot,
        child_name(chatbot, Component::Gateway),
        Some(Component::Gateway),
    );
    metadata.annotations = Some(annotations);
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: settings.class_name.clone(),
            tls: settings.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: child_name(chatbot, Component::Gateway),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".to_owned()),
                                    ..ServiceBackendPort::default()
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

#[cfg(test)]
mod tests;
