//! The custom resources: `ChatBot` (one platform instance) and `Bot` (one
//! bot bound to a ChatBot). The CRD YAML under `crds/` is generated from
//! these types (`operator crds`), and a test fails when it drifts.
//!
//! What the OpenAPI schema cannot say is said with CEL rules
//! (`x-kubernetes-validations`, Kubernetes 1.25+) and list-map keys (unique
//! bot names, enforced by every API server version).

// clippy mistakes the repeated `type_ = "..."` of kube's printcolumns for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use bot_definition::definition::BotSpec;
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "chatbot.platform";

/// One instance of the chat platform: its five services, where their data
/// lives, how they scale, how clients reach the gateway, and its bots.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "chatbot.platform",
    version = "v1alpha1",
    kind = "ChatBot",
    plural = "chatbots",
    shortname = "cb",
    namespaced,
    status = "ChatBotStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Gateway",
        type_ = "integer",
        description = "Ready gateway replicas",
        json_path = ".status.services.gateway.readyReplicas"
    ),
    printcolumn(
        name = "Bots",
        type_ = "integer",
        description = "Bots running",
        json_path = ".status.bots"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ChatBotSpec {
    /// The container image holding every service binary. Unset: the
    /// operator's default image (its own version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// Replicas, resources and autoscaling per service.
    #[serde(default)]
    pub services: Services,
    /// Secrets holding the connection URLs of the stores.
    pub databases: DatabaseBindings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
    /// Bots defined inline, in the bots service's definition format. `Bot`
    /// resources naming this ChatBot add more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[schemars(length(max = 200))]
    pub bots: Vec<BotSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Default IfNotPresent (also for `latest`: set Always to pull each start).
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Names of image pull Secrets in the ChatBot's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Services {
    #[serde(default)]
    pub gateway: ServiceSpec,
    #[serde(default)]
    pub auth: ServiceSpec,
    #[serde(default)]
    pub users: ServiceSpec,
    #[serde(default)]
    pub chat: ServiceSpec,
    #[serde(default)]
    pub bots: ServiceSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Pods to run (default 1). Ignored while autoscaling is enabled: the
    /// HorizontalPodAutoscaler owns the count then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Extra environment variables (after the operator's own, so they win):
    /// tuning knobs from the README's tables, webhook bot secrets, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_env: Vec<EnvVar>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    cel,
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas")
)]
pub struct AutoscalingSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU use (percent of requests) the autoscaler aims for.
    #[serde(
        default = "default_cpu_target",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
    /// A per-pod metric served by a custom metrics adapter, e.g. the
    /// gateway's `socketio_connections`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_metric: Option<CustomMetric>,
}

fn one() -> i32 {
    1
}

fn default_cpu_target() -> i32 {
    80
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomMetric {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Target average per pod, as a Kubernetes quantity ("2000", "1500m").
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(m|k|M|G)?$"))]
    pub target_average_value: String,
}

/// A key of a Secret in the ChatBot's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_secret_key() -> String {
    "url".to_owned()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseBindings {
    /// auth and users own separate PostgreSQL databases.
    pub postgres: PostgresBindings,
    pub mongodb: MongoBinding,
    pub redis: SecretKeyRef,
    pub rabbitmq: SecretKeyRef,
}

impl Default for DatabaseBindings {
    fn default() -> Self {
        let url = |name: &str| SecretKeyRef {
            name: name.to_owned(),
            key: default_secret_key(),
        };
        Self {
            postgres: PostgresBindings {
                auth: url("postgres-auth"),
                users: url("postgres-users"),
            },
            mongodb: MongoBinding {
                name: "mongodb".into(),
                key: default_secret_key(),
                database: default_mongo_database(),
            },
            redis: url("redis"),
            rabbitmq: url("rabbitmq"),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct PostgresBindings {
    pub auth: SecretKeyRef,
    pub users: SecretKeyRef,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct MongoBinding {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_secret_key")]
    pub key: String,
    /// The chat service's database.
    #[serde(default = "default_mongo_database")]
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
}

fn default_mongo_database() -> String {
    "chat".to_owned()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSettings {
    /// Lifetime of access tokens, e.g. `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub access_token_ttl: Option<String>,
    /// Lifetime of refresh tokens, e.g. `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)$"))]
    pub refresh_token_ttl: Option<String>,
    /// Ed25519 PKCS#8 PEM signing key. Unset: the operator generates one in
    /// the Secret `<name>-signing-key` and keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_secret: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 4, max = 31))]
    pub bcrypt_cost: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSettings>,
    /// Origins allowed by CORS; `*` allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    cel,
    validation = Rule::new("!self.enabled || has(self.host)").message("host is required when the ingress is enabled"),
    validation = Rule::new("!has(self.tlsSecretName) || has(self.host)").message("TLS needs a host")
)]
pub struct IngressSettings {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    /// Added to the operator's own annotations (which keep WebSockets open
    /// and pin Socket.IO long-polling clients to one pod on ingress-nginx).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// Bursts per period, e.g. `20/1m` (see the gateway's README table).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct RateLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+/[0-9]+(ms|s|m|h)$"))]
    pub auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+/[0-9]+(ms|s|m|h)$"))]
    pub send: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+/[0-9]+(ms|s|m|h)$"))]
    pub typing: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Observability {
    /// `RUST_LOG` of every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_filter: Option<String>,
    /// OTLP/gRPC endpoint for traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatBotStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Replicas per service (gateway, auth, users, chat, bots).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceStatus>,
    /// Bots running (valid inline bots and accepted `Bot` resources).
    #[serde(default)]
    pub bots: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid_bots: Vec<InvalidBot>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub desired_replicas: i32,
    pub ready_replicas: i32,
    pub updated_replicas: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct InvalidBot {
    pub name: String,
    /// `inline` or `Bot/<name>`.
    pub source: String,
    pub reason: String,
}

/// One bot, bound to a ChatBot, so a team can `kubectl apply` its bot on
/// its own. The rest of the spec is one bot in the definition format.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "chatbot.platform",
    version = "v1alpha1",
    kind = "Bot",
    plural = "bots",
    namespaced,
    status = "BotStatus",
    derive = "PartialEq",
    printcolumn(
        name = "ChatBot",
        type_ = "string",
        json_path = ".spec.chatBotRef.name"
    ),
    printcolumn(name = "Username", type_ = "string", json_path = ".spec.name"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BotResourceSpec {
    pub chat_bot_ref: ChatBotRef,
    #[serde(flatten)]
    pub definition: BotSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ChatBotRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BotStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The CRDs, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [ChatBot::crd(), Bot::crd()]
        .into_iter()
        .map(without_empty_string_defaults)
        .collect()
}

/// Drops `default: ""` from the schema: serde supplies it anyway, and API
/// servers before 1.21 store such a default as `null` and then reject the
/// CRD ("must be of type string").
fn without_empty_string_defaults(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(fields) => {
                if fields.get("default").and_then(|d| d.as_str()) == Some("") {
                    fields.remove("default");
                }
                fields.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

/// One CRD as YAML (what `crds/` holds).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// The file name under `crds/`: `<group>_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}
