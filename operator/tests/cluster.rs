//! The operator against a real Kubernetes API server, etcd and
//! kube-controller-manager (v1.20, built and started by `scripts/kube.sh`;
//! `scripts/test.sh` exports its KUBECONFIG). Each test works in its own
//! namespace with its own operator instance watching only that namespace,
//! and deletes the namespace at the end.
//!
//! 1.20 serves neither autoscaling/v2 nor policy/v1 PDBs nor CEL rules:
//! those are covered by `reconcile.rs` (mocked API) and the unit tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, ResourceExt};
use operator::controller::{Context, Settings};
use operator::crd::{Bot, ChatBot};
use operator::desired::CONFIG_HASH_ANNOTATION;
use operator::metrics::Metrics;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn client() -> Client {
    service_kit::install_crypto_provider();
    Client::try_default().await.expect(
        "a Kubernetes API server: run `scripts/kube.sh up` and export KUBECONFIG (scripts/test.sh does both)",
    )
}

/// Drops the CEL rules (`x-kubernetes-validations`), which a 1.20 API
/// server does not know; `reconcile.rs` and the unit tests cover them.
fn without_cel(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.remove("x-kubernetes-validations");
            fields.values_mut().for_each(without_cel);
        }
        Value::Array(items) => items.iter_mut().for_each(without_cel),
        _ => {}
    }
}

/// Installs the generated CRDs (shared by all tests: created, or replaced
/// when an earlier run left another version) and waits until they are
/// served. Not server-side apply: 1.20 rejects creating a v1 CRD that way.
async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in operator::crd::crds() {
        let name = crd.name_any();
        let mut value = serde_json::to_value(&crd).unwrap();
        without_cel(&mut value);
        let mut crd: CustomResourceDefinition = serde_json::from_value(value).unwrap();
        loop {
            match api.get_opt(&name).await.unwrap() {
                None => match api.create(&PostParams::default(), &crd).await {
                    Err(kube::Error::Api(status)) if status.code == 409 => continue,
                    other => {
                        other.expect("CRD created");
                    }
                },
                Some(live) if live.spec == crd.spec => {}
                Some(live) => {
                    crd.metadata.resource_version = live.metadata.resource_version;
                    match api.replace(&name, &PostParams::default(), &crd).await {
                        Err(kube::Error::Api(status)) if status.code == 409 => continue,
                        other => {
                            other.expect("CRD replaced");
                        }
                    }
                }
            }
            break;
        }
        eventually("the CRD to be established", || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

/// Polls `check` until it returns `Some`, for at most [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A namespace of its own, deleted when the test ends (even on failure).
struct TestNamespace {
    client: Client,
    name: String,
}

impl TestNamespace {
    async fn create(client: &Client) -> Self {
        let name = format!("op-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let api: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        Self {
            client: client.clone(),
            name,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let _ = api.delete(&name, &DeleteParams::background()).await;
            });
        });
    }
}

/// The operator, watching only the test's namespace.
struct RunningOperator {
    ctx: Arc<Context>,
    stop: service_kit::Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl RunningOperator {
    async fn start(client: &Client, namespace: &str) -> Self {
        let capabilities = operator::discover(client).await.unwrap();
        let settings = Settings {
            namespace: Some(namespace.to_owned()),
            default_image: "registry.example/chat-platform:test".into(),
            capabilities,
            resync: Duration::from_secs(300),
            instance: Some("test".into()),
        };
        let ctx = Arc::new(Context::new(client.clone(), settings, Metrics::default()));
        let stop = service_kit::Shutdown::new();
        let task = tokio::spawn(operator::controller::run(ctx.clone(), stop.cancelled()));
        Self { ctx, stop, task }
    }

    async fn stop(self) {
        self.stop.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// The objects of a sample file under `manifests/samples/`, as JSON.
fn sample(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/samples")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&text)
        .unwrap()
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

async fn create<K>(api: &Api<K>, object: &Value) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let typed: K = serde_json::from_value(object.clone()).unwrap();
    api.create(&PostParams::default(), &typed).await.unwrap()
}

fn condition(chatbot: &ChatBot, kind: &str) -> Option<(String, String, String)> {
    let status = chatbot.status.as_ref()?;
    status
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn owned_by(object: &impl kube::Resource, chatbot: &ChatBot) -> bool {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|owner| {
            Some(&owner.uid) == chatbot.metadata.uid.as_ref() && owner.controller == Some(true)
        })
}

fn config_hash(deployment: &Deployment) -> String {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.as_ref())
        .and_then(|meta| meta.annotations.as_ref())
        .and_then(|annotations| annotations.get(CONFIG_HASH_ANNOTATION))
        .cloned()
        .unwrap_or_default()
}

/// Waits until the namespace holds `count` Deployments; returns them.
async fn deployments_of(api: &Api<Deployment>, count: usize) -> Vec<Deployment> {
    eventually(&format!("{count} Deployments"), || async {
        let items = api.list(&ListParams::default()).await.ok()?.items;
        (items.len() == count).then_some(items)
    })
    .await
}

/// Waits for the Bot's `Accepted` condition; returns (status, reason).
async fn accepted(api: &Api<Bot>, name: &str) -> (String, String) {
    eventually("the Bot's Accepted condition", || async {
        let bot = api.get(name).await.ok()?;
        let accepted = bot
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Accepted")?;
        Some((accepted.status, accepted.reason))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_enforces_the_generated_schema() {
    let client = client().await;
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let chatbots: Api<ChatBot> = namespace.api();

    // Untyped, so objects the Rust types would refuse reach the server.
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace.name,
        &ApiResource::erase::<ChatBot>(&()),
    );
    let mut valid = sample("chatbot.yaml").remove(0);
    let rejected = |change: &dyn Fn(&mut Value)| {
        let mut object = valid.clone();
        change(&mut object);
        let raw = raw.clone();
        async move {
            let object: DynamicObject = serde_json::from_value(object).unwrap();
            match raw.create(&PostParams::default(), &object).await {
                Err(kube::Error::Api(status)) => {
                    assert_eq!(status.code, 422, "{status:?}");
                    status.message
                }
                other => panic!("expected a rejection, got {other:?}"),
            }
        }
    };
    let message = rejected(&|o| {
        o["spec"].as_object_mut().unwrap().remove("databases");
    })
    .await;
    assert!(message.contains("spec.databases"), "{message}");
    let message = rejected(&|o| o["spec"]["gateway"]["rateLimits"]["auth"] = json!("fast")).await;
    assert!(
        message.contains("spec.gateway.rateLimits.auth"),
        "{message}"
    );
    let message = rejected(&|o| o["spec"]["services"]["chat"]["replicas"] = json!(-1)).await;
    assert!(message.contains("spec.services.chat.replicas"), "{message}");
    let message = rejected(&|o| {
        let bot = o["spec"]["bots"][0].clone();
        o["spec"]["bots"].as_array_mut().unwrap().push(bot);
    })
    .await;
    assert!(message.contains("Duplicate value"), "{message}");

    let bots: Api<Bot> = namespace.api();
    let bot: Bot = serde_json::from_value(json!({
        "apiVersion": "chatbot.platform/v1alpha1", "kind": "Bot",
        "metadata": {"name": "x"}, "spec": {"name": "x_bot", "chatBotRef": {"name": ""}}
    }))
    .unwrap();
    let error = bots.create(&PostParams::default(), &bot).await.unwrap_err();
    assert!(
        error.to_string().contains("spec.chatBotRef.name"),
        "{error}"
    );

    // The sample itself is accepted, with defaults filled in by the schema.
    valid["metadata"]["name"] = json!("accepted");
    let created = create(&chatbots, &valid).await;
    assert_eq!(created.spec.databases.mongodb.database, "chat");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_runs_the_sample_chatbot_and_follows_its_changes() {
    let client = client().await;
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let operator = RunningOperator::start(&client, &namespace.name).await;
    let chatbots: Api<ChatBot> = namespace.api();
    let deployments: Api<Deployment> = namespace.api();

    // 1. No Secrets yet: the databases are reported unbound, nothing runs.
    create(&chatbots, &sample("chatbot.yaml")[0]).await;
    let (_, reason, message) = eventually("DatabasesBound=False", || async {
        let chatbot = chatbots.get("demo").await.ok()?;
        let bound = condition(&chatbot, "DatabasesBound")?;
        (bound.0 == "False" && chatbot.status.as_ref()?.observed_generation == Some(1))
            .then_some(bound)
    })
    .await;
    assert_eq!(reason, "SecretNotFound");
    assert!(
        message.contains("Secret chat-postgres not found"),
        "{message}"
    );
    let chatbot = chatbots.get("demo").await.unwrap();
    assert_eq!(condition(&chatbot, "Ready").unwrap().1, "DatabasesNotBound");
    assert!(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let services: Api<Service> = namespace.api();
    let gateway_service = services.get("demo-gateway").await.unwrap();
    assert!(owned_by(&gateway_service, &chatbot));

    // 2. The Secrets arrive: the five services roll out, owned by the ChatBot.
    let secrets: Api<Secret> = namespace.api();
    for secret in sample("secrets.yaml") {
        create(&secrets, &secret).await;
    }
    let all = deployments_of(&deployments, 5).await;
    for deployment in &all {
        assert!(owned_by(deployment, &chatbot), "{}", deployment.name_any());
    }
    eventually("DatabasesBound=True", || async {
        let chatbot = chatbots.get("demo").await.ok()?;
        (condition(&chatbot, "DatabasesBound")?.0 == "True").then_some(())
    })
    .await;
    let ingress = namespace
        .api::<Ingress>()
        .get("demo-gateway")
        .await
        .unwrap();
    assert!(owned_by(&ingress, &chatbot));
    let rule = &ingress.spec.unwrap().rules.unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("chat.localtest.me"));
    assert!(secrets.get("demo-signing-key").await.is_ok());

    // 3. A Bot applied later joins the bots file and is accepted.
    let bots: Api<Bot> = namespace.api();
    create(&bots, &sample("bot.yaml")[0]).await;
    let config_maps: Api<ConfigMap> = namespace.api();
    eventually("the Bot in the ConfigMap", || async {
        let config = config_maps.get("demo-bots").await.ok()?;
        config
            .data?
            .get("bots.yaml")?
            .contains("helpdesk_bot")
            .then_some(())
    })
    .await;
    assert_eq!(accepted(&bots, "helpdesk").await.0, "True");
    eventually("the bot count", || async {
        (chatbots.get("demo").await.ok()?.status?.bots == 2).then_some(())
    })
    .await;

    // 4. A config change rolls the gateway's pods (new hash), not chat's.
    let hashes = |items: Vec<Deployment>| -> BTreeMap<String, String> {
        items
            .iter()
            .map(|d| (d.name_any(), config_hash(d)))
            .collect()
    };
    let before = hashes(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    );
    let patch = json!({"spec": {"gateway": {"corsOrigins": ["https://app.example"]}}});
    chatbots
        .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let after = eventually("the gateway's new config hash", || async {
        let after = hashes(deployments.list(&ListParams::default()).await.ok()?.items);
        (after["demo-gateway"] != before["demo-gateway"]).then_some(after)
    })
    .await;
    assert_eq!(after["demo-chat"], before["demo-chat"]);
    eventually("observedGeneration 2", || async {
        (chatbots.get("demo").await.ok()?.status?.observed_generation == Some(2)).then_some(())
    })
    .await;

    // 5. A resync of the unchanged ChatBot writes nothing. Wait until the
    // Deployment controller's status updates have settled first.
    let quiet = || async {
        let mut last = operator.ctx.metrics.writes();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = operator.ctx.metrics.writes();
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let writes = quiet().await;
    let versions = |items: Vec<Deployment>| -> Vec<(String, Option<String>)> {
        items
            .into_iter()
            .map(|d| (d.name_any(), d.metadata.resource_version))
            .collect()
    };
    let before = versions(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    );
    let reconciles = operator.ctx.metrics.reconciliations("chatbot");
    let touch = json!({"metadata": {"annotations": {"test/touched": "yes"}}});
    chatbots
        .patch("demo", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    eventually("a reconcile of the touched ChatBot", || async {
        (operator.ctx.metrics.reconciliations("chatbot") > reconciles).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        operator.ctx.metrics.writes(),
        writes,
        "a no-op reconcile wrote"
    );
    assert_eq!(
        versions(
            deployments
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
        ),
        before
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_chatbot_garbage_collects_its_children() {
    let client = client().await;
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let operator = RunningOperator::start(&client, &namespace.name).await;
    let secrets: Api<Secret> = namespace.api();
    for secret in sample("secrets.yaml") {
        create(&secrets, &secret).await;
    }
    let chatbots: Api<ChatBot> = namespace.api();
    create(&chatbots, &sample("chatbot.yaml")[0]).await;
    let deployments: Api<Deployment> = namespace.api();
    deployments_of(&deployments, 5).await;

    chatbots
        .delete("demo", &DeleteParams::background())
        .await
        .unwrap();
    let labelled = ListParams::default().labels("app.kubernetes.io/instance=demo");
    let services: Api<Service> = namespace.api();
    let config_maps: Api<ConfigMap> = namespace.api();
    eventually("the garbage collector to delete the children", || async {
        let left = deployments.list(&labelled).await.ok()?.items.len()
            + services.list(&labelled).await.ok()?.items.len()
            + config_maps.list(&labelled).await.ok()?.items.len()
            + secrets
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .filter(|s| s.name_any().starts_with("demo-"))
                .count();
        (left == 0).then_some(())
    })
    .await;
    // The user's binding Secrets are not the operator's: they stay.
    assert!(secrets.get("chat-postgres").await.is_ok());
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bot_naming_a_missing_chatbot_says_so() {
    let client = client().await;
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let operator = RunningOperator::start(&client, &namespace.name).await;
    let bots: Api<Bot> = namespace.api();
    let mut bot = sample("bot.yaml").remove(0);
    bot["spec"]["chatBotRef"]["name"] = json!("nowhere");
    create(&bots, &bot).await;
    assert_eq!(accepted(&bots, "helpdesk").await.1, "ChatBotNotFound");
    operator.stop().await;
}

/// The objects of the rendered install manifest (the chart with defaults).
fn install_manifest() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/install/operator.yaml");
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// A cluster-scoped object deleted when the test ends.
struct ClusterScoped<K>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope> + Clone + std::fmt::Debug,
    K: serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    api: Api<K>,
    name: String,
}

impl<K> Drop for ClusterScoped<K>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope> + Clone + std::fmt::Debug,
    K: serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    fn drop(&mut self) {
        let (api, name) = (self.api.clone(), self.name.clone());
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_only_the_charts_rbac_the_operator_leads_reconciles_and_hands_over() {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};

    let admin = client().await;
    install_crds(&admin).await;
    let namespace = TestNamespace::create(&admin).await;
    let ns = namespace.name.clone();

    // 1. The chart's RBAC, granted in the test namespace to a service account.
    let manifest = install_manifest();
    let find = |kind: &str| {
        manifest
            .iter()
            .find(|doc| doc["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} in the install manifest"))
    };
    let mut cluster_role = find("ClusterRole");
    cluster_role["metadata"] = json!({"name": format!("{ns}-operator")});
    let cluster_roles: Api<ClusterRole> = Api::all(admin.clone());
    create(&cluster_roles, &cluster_role).await;
    let _cleanup = ClusterScoped {
        api: cluster_roles,
        name: format!("{ns}-operator"),
    };
    let mut lease_role = find("Role");
    lease_role["metadata"] = json!({"name": "leader-election"});
    create(&namespace.api::<Role>(), &lease_role).await;
    create(
        &namespace.api::<ServiceAccount>(),
        &json!({"metadata": {"name": "operator"}}),
    )
    .await;
    let subject = json!([{"kind": "ServiceAccount", "name": "operator", "namespace": ns}]);
    for (name, kind, role) in [
        ("operator", "ClusterRole", format!("{ns}-operator")),
        ("leader-election", "Role", "leader-election".to_owned()),
    ] {
        create(
            &namespace.api::<RoleBinding>(),
            &json!({"metadata": {"name": name}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}}),
        )
        .await;
    }

    // 2. A client holding only that service account's token.
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .unwrap();
    let token = namespace
        .api::<ServiceAccount>()
        .create_token_request("operator", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let mut config = kube::Config::infer().await.unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..kube::config::AuthInfo::default()
    };
    let restricted = Client::try_from(config).unwrap();

    // 3. The operator as its binary runs it: admin port, leader election.
    let cli = operator::config::Cli::try_parse_from([
        "operator",
        "--watch-namespace",
        &ns,
        "--leader-election-namespace",
        &ns,
        "--pod-name",
        "operator-0",
        "--log-format",
        "pretty",
    ])
    .unwrap();
    let admin_listener = service_kit::net::bind_loopback().unwrap();
    let admin_url = format!("http://{}", admin_listener.local_addr().unwrap());
    let shutdown = service_kit::Shutdown::new();
    let running = tokio::spawn(operator::run_with(
        restricted,
        cli.config,
        admin_listener,
        shutdown.clone(),
    ));

    let secrets: Api<Secret> = namespace.api();
    for secret in sample("secrets.yaml") {
        create(&secrets, &secret).await;
    }
    create(&namespace.api::<ChatBot>(), &sample("chatbot.yaml")[0]).await;
    create(&namespace.api::<Bot>(), &sample("bot.yaml")[0]).await;
    let deployments: Api<Deployment> = namespace.api();
    deployments_of(&deployments, 5).await;
    let bots: Api<Bot> = namespace.api();
    assert_eq!(accepted(&bots, "helpdesk").await.0, "True");

    let leases: Api<Lease> = namespace.api();
    let lease = leases.get("chat-platform-operator").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("operator-0")
    );
    let http = test_kit::http();
    let health = http
        .get(format!("{admin_url}/healthz"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    let metrics = http
        .get(format!("{admin_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("operator_leader 1"), "{metrics}");
    assert!(
        metrics.contains("operator_reconciliations_total{controller=\"chatbot\",result=\"ok\"}"),
        "{metrics}"
    );
    // Any RBAC gap would have failed a reconcile with 403.
    assert!(!metrics.contains("result=\"error\""), "{metrics}");

    // 4. On shutdown the leader gives the lease up, so a standby need not
    // wait for it to expire.
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the operator stops")
        .unwrap()
        .unwrap();
    let lease = leases.get("chat-platform-operator").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, None);
    let standby = operator::leader::LeaseLock::new(leases, "chat-platform-operator", "operator-1");
    assert_eq!(
        standby.try_acquire().await.unwrap(),
        operator::leader::Attempt::Acquired
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_one_replica_holds_the_lease_until_it_lapses() {
    use k8s_openapi::api::coordination::v1::Lease;
    use operator::leader::{Attempt, LeaseLock};

    let client = client().await;
    let namespace = TestNamespace::create(&client).await;
    let leases: Api<Lease> = namespace.api();
    let mut first = LeaseLock::new(leases.clone(), "lock", "first");
    first.lease_duration = Duration::from_secs(2);
    let second = LeaseLock::new(leases.clone(), "lock", "second");

    assert_eq!(first.try_acquire().await.unwrap(), Attempt::Acquired);
    assert_eq!(
        second.try_acquire().await.unwrap(),
        Attempt::HeldBy("first".into())
    );
    // Renewing keeps it.
    assert_eq!(first.try_acquire().await.unwrap(), Attempt::Acquired);
    assert_eq!(
        second.try_acquire().await.unwrap(),
        Attempt::HeldBy("first".into())
    );
    // Not renewed for longer than its duration: the standby takes over and
    // the transition is counted.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(second.try_acquire().await.unwrap(), Attempt::Acquired);
    assert_eq!(
        first.try_acquire().await.unwrap(),
        Attempt::HeldBy("second".into())
    );
    let spec = leases.get("lock").await.unwrap().spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(2));
}
