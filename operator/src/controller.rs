//! The reconcilers: a thin layer that reads, asks the pure functions in
//! [`crate::desired`], [`crate::bots`] and [`crate::status`] what should be,
//! and writes only the difference.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ListParams, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use rand::Rng as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::apply::{self, FIELD_MANAGER, Outcome};
use crate::bots::{self, Aggregate};
use crate::crd::{Bot, ChatBot};
use crate::desired::{self, Capabilities, Children, Component, Inputs};
use crate::metrics::Metrics;
use crate::secrets::{self, SecretError};
use crate::status::{self, Observations, RolloutState};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

impl Error {
    /// The `error` label of the error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Self::Kube(kube::Error::Api(status)) if status.code == 422 => "invalid",
            Self::Kube(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            Self::Kube(kube::Error::Api(_)) => "api",
            Self::Kube(_) => "connection",
            Self::Secret(_) => "secret",
            Self::NoNamespace(_) => "no_namespace",
        }
    }
}

/// How the operator runs (from its config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Only this namespace; `None` watches all.
    pub namespace: Option<String>,
    pub default_image: String,
    pub capabilities: Capabilities,
    /// How often an unchanged ChatBot is checked anyway.
    pub resync: Duration,
    /// The reporting instance of events (the pod name).
    pub instance: Option<String>,
}

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Metrics,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: Client, settings: Settings, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: settings.instance.clone(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more consecutive failure of the object and returns how
    /// long to wait before retrying it.
    pub fn retry_after(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let attempts = failures.entry(key.to_owned()).or_insert(0);
        *attempts += 1;
        backoff(*attempts, rand::rng().random())
    }

    /// Failures of the object since its last successful reconcile.
    pub fn consecutive_failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    async fn publish(&self, reference: &k8s_openapi::api::core::v1::ObjectReference, event: Event) {
        // Events are best effort: a lost event must not fail the reconcile.
        match self.recorder.publish(&event, reference).await {
            Ok(()) => self.metrics.wrote(1),
            Err(error) => tracing::warn!(%error, reason = %event.reason, "event not recorded"),
        }
    }
}

/// The wait before retrying the `attempt`th consecutive failure: doubling
/// from 1 s up to 5 min, with "equal jitter" (half fixed, half random) so
/// many failing objects do not retry in lockstep.
pub fn backoff(attempt: u32, random: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let full = Duration::from_secs(1)
        .saturating_mul(1 << exponent)
        .min(Duration::from_secs(300));
    full / 2 + full.mul_f64(random.clamp(0.0, 1.0) / 2.0)
}

/// How an object is named in logs and the failure counts: `Kind/ns/name`.
pub fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

// ------------------------------------------------------------- ChatBot

pub async fn reconcile_chatbot(chatbot: Arc<ChatBot>, ctx: Arc<Context>) -> Result<Action, Error> {
    measured(
        "chatbot",
        chatbot.as_ref(),
        &ctx,
        reconcile_chatbot_inner(&chatbot, &ctx),
    )
    .await
}

/// Runs one reconcile, recording its duration and outcome, and forgets the
/// object's failures when it succeeds.
async fn measured<K: Resource<DynamicType = ()>>(
    controller: &'static str,
    object: &K,
    ctx: &Context,
    work: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = work.await;
    let error = result.as_ref().err().map(Error::kind);
    ctx.metrics.reconciled(controller, started.elapsed(), error);
    if result.is_ok() {
        ctx.succeeded(&object_key(object));
    }
    result
}

/// Retries a failed object after [`backoff`] (both controllers).
#[allow(clippy::needless_pass_by_value)] // the signature kube's Controller::run takes
pub fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = object_key(object.as_ref());
    let wait = ctx.retry_after(&key);
    tracing::warn!(%key, %error, ?wait, "reconcile failed");
    Action::requeue(wait)
}

async fn reconcile_chatbot_inner(chatbot: &ChatBot, ctx: &Context) -> Result<Action, Error> {
    let namespace = chatbot
        .namespace()
        .ok_or_else(|| Error::NoNamespace(chatbot.name_any()))?;
    if chatbot.metadata.deletion_timestamp.is_some() {
        // Owner references hand the children to the garbage collector.
        return Ok(Action::await_change());
    }
    let client = &ctx.client;
    let name = chatbot.name_any();
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut writes = secrets::ensure_generated(&secret_api, chatbot).await?;
    let resolved = secrets::resolve(&secret_api, chatbot).await?;

    let bot_api: Api<Bot> = Api::namespaced(client.clone(), &namespace);
    let bound: Vec<Bot> = bot_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|bot| bot.spec.chat_bot_ref.name == name)
        .collect();
    let bots = bots::aggregate(&chatbot.spec.bots, &bound);

    let inputs = Inputs {
        default_image: ctx.settings.default_image.clone(),
        bots_file: bots.file.clone(),
        secret_digests: resolved.digests.clone(),
        capabilities: ctx.settings.capabilities,
    };
    let children = desired::children(chatbot, &inputs);
    let uid = chatbot.uid().unwrap_or_default();
    let (applied, rollouts) = apply_children(
        client,
        &namespace,
        &uid,
        chatbot,
        &children,
        ctx.settings.capabilities,
    )
    .await?;
    writes += applied;

    let observed = Observations {
        generation: chatbot.metadata.generation,
        missing: resolved.missing,
        rollouts,
        warnings: warnings(chatbot, ctx.settings.capabilities),
    };
    let now = now();
    let status = status::chatbot_status(chatbot.status.as_ref(), &observed, &bots, &now);
    if chatbot.status.as_ref() != Some(&status) {
        let api: Api<ChatBot> = Api::namespaced(client.clone(), &namespace);
        patch_status(&api, &name, &status).await?;
        writes += 1;
        let previous = chatbot
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or(&[]);
        for event in transitions(previous, &status.conditions) {
            ctx.publish(&chatbot.object_ref(&()), event).await;
        }
    }
    writes += update_bot_statuses(client, &namespace, &bound, &bots, &now).await?;
    ctx.metrics.wrote(writes as u64);
    if applied > 0 {
        tracing::info!(chatbot = %name, objects = applied, "applied changes");
    }
    Ok(Action::requeue(ctx.settings.resync))
}

fn warnings(chatbot: &ChatBot, capabilities: Capabilities) -> Vec<(String, String)> {
    let wants_autoscaling: Vec<&str> = Component::ALL
        .into_iter()
        .filter(|c| {
            c.settings(chatbot)
                .autoscaling
                .as_ref()
                .is_some_and(|a| a.enabled)
        })
        .map(Component::name)
        .collect();
    if wants_autoscaling.is_empty() || capabilities.autoscaling_v2 {
        return Vec::new();
    }
    vec![(
        "AutoscalingUnavailable".to_owned(),
        format!(
            "this cluster does not serve autoscaling/v2; {} run their minReplicas",
            wants_autoscaling.join(", ")
        ),
    )]
}

/// Events for conditions that changed status.
fn transitions(previous: &[Condition], current: &[Condition]) -> Vec<Event> {
    current
        .iter()
        .filter(|c| {
            status::condition(previous, &c.type_).map(|p| p.status.as_str())
                != Some(c.status.as_str())
        })
        .filter_map(|c| {
            let good = match c.type_.as_str() {
                status::READY | status::DATABASES_BOUND => c.status == "True",
                status::DEGRADED => c.status == "False",
                _ => return None,
            };
            Some(Event {
                type_: if good {
                    EventType::Normal
                } else {
                    EventType::Warning
                },
                reason: c.reason.clone(),
                note: Some(c.message.chars().take(1000).collect()),
                action: format!("Set{}", c.type_),
                secondary: None,
            })
        })
        .collect()
}

async fn patch_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl Serialize,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

fn namespaced<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(client.clone(), namespace)
}

/// What the operator creates per ChatBot: namespaced objects it can read,
/// compare and apply.
trait Child:
    Resource<Scope = NamespaceResourceScope> + Clone + std::fmt::Debug + Serialize + DeserializeOwned
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned
{
}

fn count(outcome: Outcome) -> usize {
    usize::from(outcome == Outcome::Applied)
}

async fn ensure<K>(client: &Client, namespace: &str, desired: &K) -> Result<(K, usize), kube::Error>
where
    K: Child,
    K::DynamicType: Default,
{
    let (live, outcome) = apply::ensure(&namespaced::<K>(client, namespace), desired).await?;
    Ok((live, count(outcome)))
}

fn rollout(deployment: &Deployment) -> RolloutState {
    let status = deployment.status.clone().unwrap_or_default();
    RolloutState {
        desired: deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        observed: status.observed_generation >= deployment.metadata.generation,
    }
}

type Rollouts = BTreeMap<Component, Option<RolloutState>>;

/// Applies every child, removes the optional ones no longer wanted, and
/// returns the number of writes and each Deployment's rollout state.
async fn apply_children(
    client: &Client,
    namespace: &str,
    owner_uid: &str,
    chatbot: &ChatBot,
    children: &Children,
    capabilities: Capabilities,
) -> Result<(usize, Rollouts), Error> {
    let mut writes = 0;
    writes += ensure(client, namespace, &children.service_account)
        .await?
        .1;
    writes += ensure(client, namespace, &children.config_map).await?.1;
    for service in &children.services {
        writes += ensure(client, namespace, service).await?.1;
    }
    let mut rollouts = Rollouts::new();
    let deployments = namespaced::<Deployment>(client, namespace);
    for component in Component::ALL {
        let state = match children.deployments.get(&component) {
            Some(deployment) => {
                let (live, wrote) = ensure(client, namespace, deployment).await?;
                writes += wrote;
                Some(rollout(&live))
            }
            // Blocked by a missing Secret: an existing Deployment keeps
            // running its last good configuration.
            None => deployments
                .get_opt(&desired::child_name(chatbot, component))
                .await?
                .as_ref()
                .map(rollout),
        };
        rollouts.insert(component, state);
    }
    if capabilities.autoscaling_v2 {
        writes += converge::<HorizontalPodAutoscaler>(
            client,
            namespace,
            owner_uid,
            chatbot,
            &children.autoscalers,
        )
        .await?;
    }
    if capabilities.pdb_v1 {
        writes += converge::<PodDisruptionBudget>(
            client,
            namespace,
            owner_uid,
            chatbot,
            &children.disruption_budgets,
        )
        .await?;
    }
    let ingress_name = desired::child_name(chatbot, Component::Gateway);
    match &children.ingress {
        Some(ingress) => writes += ensure(client, namespace, ingress).await?.1,
        None => {
            let api = namespaced::<Ingress>(client, namespace);
            writes += usize::from(apply::remove_owned(&api, &ingress_name, owner_uid).await?);
        }
    }
    Ok((writes, rollouts))
}

/// Applies the per-component objects of one kind that are wanted and
/// deletes the operator's own ones that are not (autoscaling turned off, a
/// service scaled down to one pod).
async fn converge<K>(
    client: &Client,
    namespace: &str,
    owner_uid: &str,
    chatbot: &ChatBot,
    wanted: &BTreeMap<Component, K>,
) -> Result<usize, Error>
where
    K: Child,
    K::DynamicType: Default,
{
    let mut writes = 0;
    for object in wanted.values() {
        writes += ensure(client, namespace, object).await?.1;
    }
    // The ones no longer wanted: one list of this instance's objects of the
    // kind, rather than a GET per component name.
    let api = namespaced::<K>(client, namespace);
    let instance = ListParams::default().labels(&format!(
        "app.kubernetes.io/instance={}",
        chatbot.name_any()
    ));
    for live in api.list(&instance).await?.items {
        if !wanted
            .values()
            .any(|object| object.name_any() == live.name_any())
        {
            writes += usize::from(apply::delete_owned(&api, &live, owner_uid).await?);
        }
    }
    Ok(writes)
}

async fn update_bot_statuses(
    client: &Client,
    namespace: &str,
    bound: &[Bot],
    aggregate: &Aggregate,
    now: &Time,
) -> Result<usize, Error> {
    let api: Api<Bot> = Api::namespaced(client.clone(), namespace);
    let mut writes = 0;
    for bot in bound {
        let Some(verdict) = aggregate.verdicts.get(&bot.name_any()) else {
            continue;
        };
        let status = status::bot_status(bot.status.as_ref(), verdict, bot.metadata.generation, now);
        if bot.status.as_ref() != Some(&status) {
            patch_status(&api, &bot.name_any(), &status).await?;
            writes += 1;
        }
    }
    Ok(writes)
}

// ----------------------------------------------------------------- Bot

/// Only `Bot`s whose ChatBot does not exist: the rest get their status from
/// their ChatBot's reconcile (one writer per condition).
pub async fn reconcile_bot(bot: Arc<Bot>, ctx: Arc<Context>) -> Result<Action, Error> {
    measured("bot", bot.as_ref(), &ctx, reconcile_bot_inner(&bot, &ctx)).await
}

async fn reconcile_bot_inner(bot: &Bot, ctx: &Context) -> Result<Action, Error> {
    let namespace = bot
        .namespace()
        .ok_or_else(|| Error::NoNamespace(bot.name_any()))?;
    let chatbots: Api<ChatBot> = Api::namespaced(ctx.client.clone(), &namespace);
    let owner = &bot.spec.chat_bot_ref.name;
    if chatbots.get_opt(owner).await?.is_some() {
        return Ok(Action::await_change());
    }
    let status =
        status::orphan_bot_status(bot.status.as_ref(), owner, bot.metadata.generation, &now());
    if bot.status.as_ref() != Some(&status) {
        let api: Api<Bot> = Api::namespaced(ctx.client.clone(), &namespace);
        patch_status(&api, &bot.name_any(), &status).await?;
        ctx.metrics.wrote(1);
    }
    Ok(Action::await_change())
}

// ------------------------------------------------------------- running

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs both controllers until `shutdown` resolves (then lets running
/// reconciles finish).
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let scope = ctx.settings.namespace.clone();
    let scope = scope.as_deref();
    let owned =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=chat-platform-operator");
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    let chatbots = Controller::new(
        scoped::<ChatBot>(&client, scope),
        watcher::Config::default(),
    );
    let chatbot_store = chatbots.store();
    let mut chatbots = chatbots
        .owns(scoped::<Deployment>(&client, scope), owned.clone())
        .owns(scoped::<Service>(&client, scope), owned.clone())
        .owns(scoped::<ConfigMap>(&client, scope), owned.clone())
        .owns(scoped::<Ingress>(&client, scope), owned.clone())
        .owns(scoped::<ServiceAccount>(&client, scope), owned.clone());
    if ctx.settings.capabilities.autoscaling_v2 {
        chatbots = chatbots.owns(
            scoped::<HorizontalPodAutoscaler>(&client, scope),
            owned.clone(),
        );
    }
    if ctx.settings.capabilities.pdb_v1 {
        chatbots = chatbots.owns(scoped::<PodDisruptionBudget>(&client, scope), owned.clone());
    }
    let chatbots = chatbots
        .watches(
            scoped::<Bot>(&client, scope),
            watcher::Config::default(),
            |bot| {
                bot.namespace()
                    .map(|namespace| ObjectRef::new(&bot.spec.chat_bot_ref.name).within(&namespace))
            },
        )
        // Metadata only: the operator never keeps Secret values in memory.
        .watches(
            scoped::<PartialObjectMeta<Secret>>(&client, scope),
            watcher::Config::default(),
            move |secret| {
                let namespace = secret.namespace().unwrap_or_default();
                let state = chatbot_store.state();
                secrets::chatbots_binding(
                    state.iter().map(AsRef::as_ref),
                    &namespace,
                    &secret.name_any(),
                )
                .into_iter()
                .map(ObjectRef::from_obj)
                .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_chatbot, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "chatbot controller");
            }
        });

    let bots = Controller::new(scoped::<Bot>(&client, scope), watcher::Config::default());
    let bot_store = bots.store();
    let bots = bots
        .watches(
            scoped::<ChatBot>(&client, scope),
            watcher::Config::default(),
            move |chatbot| {
                let namespace = chatbot.namespace().unwrap_or_default();
                let name = chatbot.name_any();
                bot_store
                    .state()
                    .iter()
                    .filter(|bot| bot.namespace().as_deref() == Some(namespace.as_str()))
                    .filter(|bot| bot.spec.chat_bot_ref.name == name)
                    .map(|bot| ObjectRef::from_obj(bot.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile_bot, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "bot controller");
            }
        });

    futures::join!(chatbots, bots);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(4, 0.0), Duration::from_secs(4));
        assert!(backoff(4, 0.5) > backoff(4, 0.0));
        assert_eq!(backoff(30, 1.0), Duration::from_secs(300));
        assert_eq!(backoff(30, 0.0), Duration::from_secs(150));
    }

    #[test]
    fn only_status_changes_of_watched_conditions_raise_events() {
        let condition = |kind: &str, status: &str| Condition {
            type_: kind.into(),
            status: status.into(),
            reason: "R".into(),
            message: "m".into(),
            observed_generation: None,
            last_transition_time: now(),
        };
        let before = [
            condition("Ready", "False"),
            condition("Progressing", "True"),
        ];
        let after = [
            condition("Ready", "True"),
            condition("Progressing", "False"),
        ];
        let events = transitions(&before, &after);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].type_, EventType::Normal);
        assert!(transitions(&after, &after).is_empty());
        let degraded = transitions(&[], &[condition("Degraded", "True")]);
        assert_eq!(degraded[0].type_, EventType::Warning);
    }
}
