//! The reconcilers against a mocked API server (an in-memory fake behind a
//! `tower_test` mock service): creation, the zero-write no-op, updates,
//! removal of children no longer wanted, deletion, and error back-off. The
//! parts a 1.20 API server cannot show (autoscaling/v2 HPAs, policy/v1
//! PDBs) are covered here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fake_api;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use fake_api::FakeApi;
use http::Method;
use operator::controller::{
    Context, Settings, error_policy, object_key, reconcile_bot, reconcile_chatbot,
};
use operator::crd::{Bot, ChatBot};
use operator::desired::{CONFIG_HASH_ANNOTATION, Capabilities};
use operator::metrics::Metrics;
use serde_json::{Value, json};

const CHATBOT: &str = "/apis/chatbot.platform/v1alpha1/namespaces/chat/chatbots/demo";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/chat/deployments";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/chat/horizontalpodautoscalers";
const PDBS: &str = "/apis/policy/v1/namespaces/chat/poddisruptionbudgets";
const SECRETS: &str = "/api/v1/namespaces/chat/secrets";

fn setup() -> (FakeApi, Arc<Context>) {
    let (client, api) = FakeApi::start();
    let settings = Settings {
        namespace: Some("chat".into()),
        default_image: "registry.example/chat:1.0".into(),
        capabilities: Capabilities::ALL,
        resync: Duration::from_secs(300),
        instance: Some("test".into()),
    };
    (
        api,
        Arc::new(Context::new(client, settings, Metrics::default())),
    )
}

fn secret(name: &str, keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> = keys
        .iter()
        .map(|key| {
            let value =
                base64::engine::general_purpose::STANDARD.encode(format!("url-of-{name}-{key}"));
            ((*key).to_owned(), json!(value))
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "chat"}, "data": data})
}

/// The ChatBot plus every Secret its services bind, except `skip`.
fn seed(api: &FakeApi, spec_extra: Value, skip: &[&str]) {
    for (name, keys) in [
        ("postgres", &["auth-url", "users-url"][..]),
        ("mongodb", &["url"]),
        ("redis", &["url"]),
        ("rabbitmq", &["url"]),
    ] {
        if !skip.contains(&name) {
            api.insert(secret(name, keys));
        }
    }
    let mut spec = json!({"databases": {
        "postgres": {"auth": {"name": "postgres", "key": "auth-url"}, "users": {"name": "postgres", "key": "users-url"}},
        "mongodb": {"name": "mongodb", "key": "url", "database": "chat"},
        "redis": {"name": "redis", "key": "url"},
        "rabbitmq": {"name": "rabbitmq", "key": "url"}
    }});
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, spec_extra) {
        spec.extend(extra);
    }
    api.insert(
        json!({"apiVersion": "chatbot.platform/v1alpha1", "kind": "ChatBot",
        "metadata": {"name": "demo", "namespace": "chat"}, "spec": spec}),
    );
}

fn chatbot(api: &FakeApi) -> Arc<ChatBot> {
    Arc::new(serde_json::from_value(api.get(CHATBOT).expect("the ChatBot")).unwrap())
}

async fn reconcile(api: &FakeApi, ctx: &Arc<Context>) {
    reconcile_chatbot(chatbot(api), ctx.clone())
        .await
        .expect("reconcile succeeds");
}

fn condition(object: &Value, kind: &str) -> (String, String) {
    let found = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {}", object["status"]));
    (
        found["status"].as_str().unwrap().to_owned(),
        found["reason"].as_str().unwrap().to_owned(),
    )
}

fn hash(deployment: &Value) -> String {
    deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_new_chatbot_gets_every_child_owned_by_it_and_a_status() {
    let (api, ctx) = setup();
    seed(&api, json!({}), &[]);
    reconcile(&api, &ctx).await;

    let uid = api.get(CHATBOT).unwrap()["metadata"]["uid"].clone();
    let children: Vec<String> = [DEPLOYMENTS, "/api/v1/namespaces/chat/services"]
        .iter()
        .flat_map(|prefix| api.paths(prefix))
        .chain(api.paths("/api/v1/namespaces/chat/configmaps"))
        .chain(api.paths("/api/v1/namespaces/chat/serviceaccounts"))
        .collect();
    assert_eq!(children.len(), 5 + 5 + 1 + 1, "{children:?}");
    for path in &children {
        let owner = &api.get(path).unwrap()["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], uid, "{path}");
        assert_eq!(owner["kind"], "ChatBot");
        assert_eq!(owner["controller"], true);
    }
    // Children go out by server-side apply under the operator's name.
    let applies = api
        .writes()
        .into_iter()
        .filter(|call| call.content_type.as_deref() == Some("application/apply-patch+yaml"))
        .count();
    assert_eq!(applies, children.len());

    // Generated once: the internal credentials and a signing key.
    let internal = api.get(&format!("{SECRETS}/demo-internal")).unwrap();
    for key in [
        "auth-service-token",
        "users-service-token",
        "chat-service-token",
    ] {
        assert!(internal["data"][key].is_string(), "{key}");
    }
    assert!(api.get(&format!("{SECRETS}/demo-signing-key")).is_some());

    let stored = api.get(CHATBOT).unwrap();
    assert_eq!(
        condition(&stored, "DatabasesBound"),
        ("True".into(), "SecretsFound".into())
    );
    // No pods run in this fake: not ready, saying which services wait.
    assert_eq!(
        condition(&stored, "Ready"),
        ("False".into(), "ServicesNotReady".into())
    );
    assert_eq!(stored["status"]["observedGeneration"], 1);
    assert_eq!(
        stored["status"]["services"]["gateway"]["desiredReplicas"],
        1
    );
    // Transitions were announced as events.
    assert!(
        api.writes()
            .iter()
            .any(|call| call.path.contains("/events"))
    );
}

#[tokio::test]
async fn an_unchanged_chatbot_is_resynced_with_reads_only() {
    let (api, ctx) = setup();
    seed(
        &api,
        json!({"bots": [{"name": "echo_bot", "fallback": "hi"}]}),
        &[],
    );
    reconcile(&api, &ctx).await;
    let writes_before = ctx.metrics.writes();
    assert!(writes_before > 0);

    api.clear_calls();
    reconcile(&api, &ctx).await;
    assert!(!api.calls().is_empty(), "the resync reads");
    assert_eq!(api.writes(), [], "a no-op reconcile writes nothing");
    assert_eq!(ctx.metrics.writes(), writes_before);
}

#[tokio::test]
async fn a_spec_change_rewrites_only_the_objects_it_changes() {
    let (api, ctx) = setup();
    seed(&api, json!({}), &[]);
    reconcile(&api, &ctx).await;
    let gateway_path = format!("{DEPLOYMENTS}/demo-gateway");
    let chat_path = format!("{DEPLOYMENTS}/demo-chat");
    let (gateway_before, chat_before) = (
        hash(&api.get(&gateway_path).unwrap()),
        hash(&api.get(&chat_path).unwrap()),
    );

    api.edit(CHATBOT, |chatbot| {
        chatbot["spec"]["gateway"] = json!({"corsOrigins": ["https://app.example"]});
        chatbot["metadata"]["generation"] = json!(2);
    });
    api.clear_calls();
    reconcile(&api, &ctx).await;

    let applied: Vec<String> = api
        .writes()
        .into_iter()
        .filter(|call| call.content_type.as_deref() == Some("application/apply-patch+yaml"))
        .map(|call| call.path)
        .collect();
    assert_eq!(applied, std::slice::from_ref(&gateway_path));
    assert_ne!(hash(&api.get(&gateway_path).unwrap()), gateway_before);
    assert_eq!(hash(&api.get(&chat_path).unwrap()), chat_before);
    assert_eq!(api.get(CHATBOT).unwrap()["status"]["observedGeneration"], 2);
}

#[tokio::test]
async fn autoscaling_makes_an_hpa_and_a_budget_and_turning_it_off_removes_them() {
    let (api, ctx) = setup();
    seed(
        &api,
        json!({"services": {"gateway": {"autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 6}}}}),
        &[],
    );
    // Someone else's autoscaler under a name the operator could use.
    api.insert(
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "demo-auth", "namespace": "chat"}, "spec": {"maxReplicas": 3}}),
    );
    reconcile(&api, &ctx).await;

    let hpa = api
        .get(&format!("{HPAS}/demo-gateway"))
        .expect("gateway HPA");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 6);
    assert!(api.get(&format!("{PDBS}/demo-gateway")).is_some());
    let gateway = api.get(&format!("{DEPLOYMENTS}/demo-gateway")).unwrap();
    assert!(
        gateway["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );

    api.edit(CHATBOT, |chatbot| {
        chatbot["spec"]["services"]["gateway"]["autoscaling"]["enabled"] = json!(false);
    });
    api.clear_calls();
    reconcile(&api, &ctx).await;
    let deleted: Vec<String> = api
        .writes()
        .into_iter()
        .filter(|call| call.method == Method::DELETE)
        .map(|call| call.path)
        .collect();
    assert_eq!(
        deleted,
        [
            format!("{HPAS}/demo-gateway"),
            format!("{PDBS}/demo-gateway")
        ]
    );
    assert!(
        api.get(&format!("{HPAS}/demo-auth")).is_some(),
        "not ours: kept"
    );
    let gateway = api.get(&format!("{DEPLOYMENTS}/demo-gateway")).unwrap();
    assert_eq!(gateway["spec"]["replicas"], 1);
}

#[tokio::test]
async fn a_missing_secret_holds_back_its_services_until_it_appears() {
    let (api, ctx) = setup();
    seed(&api, json!({}), &["mongodb"]);
    reconcile(&api, &ctx).await;
    let stored = api.get(CHATBOT).unwrap();
    assert_eq!(
        condition(&stored, "DatabasesBound"),
        ("False".into(), "SecretNotFound".into())
    );
    assert!(api.get(&format!("{DEPLOYMENTS}/demo-chat")).is_none());
    assert!(api.get(&format!("{DEPLOYMENTS}/demo-gateway")).is_some());

    api.insert(secret("mongodb", &["url"]));
    reconcile(&api, &ctx).await;
    assert!(api.get(&format!("{DEPLOYMENTS}/demo-chat")).is_some());
    let stored = api.get(CHATBOT).unwrap();
    assert_eq!(condition(&stored, "DatabasesBound").0, "True");
}

#[tokio::test]
async fn a_chatbot_being_deleted_is_left_to_the_garbage_collector() {
    let (api, ctx) = setup();
    seed(&api, json!({}), &[]);
    reconcile(&api, &ctx).await;
    api.edit(CHATBOT, |chatbot| {
        chatbot["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:10Z");
    });
    api.clear_calls();
    reconcile(&api, &ctx).await;
    assert_eq!(api.writes(), []);
}

#[tokio::test]
async fn failures_back_off_and_a_success_resets_the_count() {
    let (api, ctx) = setup();
    seed(&api, json!({}), &[]);
    let key = object_key(chatbot(&api).as_ref());
    api.fail(Method::GET, SECRETS, 2);
    for attempt in 1..=2 {
        let error = reconcile_chatbot(chatbot(&api), ctx.clone())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("injected failure"), "{error}");
        let action = error_policy(chatbot(&api), &error, ctx.clone());
        assert_ne!(action, kube::runtime::controller::Action::await_change());
        assert_eq!(ctx.consecutive_failures(&key), attempt);
    }
    reconcile(&api, &ctx).await;
    assert_eq!(ctx.consecutive_failures(&key), 0);
    assert_eq!(ctx.metrics.reconciliations("chatbot"), 3);
}

#[tokio::test]
async fn bots_join_the_definitions_and_each_bot_gets_its_verdict() {
    let (api, ctx) = setup();
    seed(
        &api,
        json!({"bots": [{"name": "inline_bot", "fallback": "hi"}]}),
        &[],
    );
    let bot = |name: &str, username: &str, created: &str| {
        json!({"apiVersion": "chatbot.platform/v1alpha1", "kind": "Bot",
            "metadata": {"name": name, "namespace": "chat", "creationTimestamp": created},
            "spec": {"chatBotRef": {"name": "demo"}, "name": username, "fallback": "hello from {{bot}}"}})
    };
    api.insert(bot("weather", "weather_bot", "2026-01-01T00:00:00Z"));
    api.insert(bot("copycat", "weather_bot", "2026-01-02T00:00:00Z"));
    reconcile(&api, &ctx).await;

    let config = api
        .get("/api/v1/namespaces/chat/configmaps/demo-bots")
        .unwrap();
    let file = config["data"]["bots.yaml"].as_str().unwrap();
    let set = bot_definition::definition::load(file).unwrap();
    let names: Vec<&str> = set.bots.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["inline_bot", "weather_bot"]);

    let path = "/apis/chatbot.platform/v1alpha1/namespaces/chat/bots";
    let accepted = api.get(&format!("{path}/weather")).unwrap();
    assert_eq!(
        condition(&accepted, "Accepted"),
        ("True".into(), "Valid".into())
    );
    let copycat = api.get(&format!("{path}/copycat")).unwrap();
    assert_eq!(
        condition(&copycat, "Accepted"),
        ("False".into(), "DuplicateName".into())
    );
    let stored = api.get(CHATBOT).unwrap();
    assert_eq!(stored["status"]["bots"], 2);
    assert_eq!(stored["status"]["invalidBots"][0]["source"], "Bot/copycat");
    assert_eq!(
        condition(&stored, "Degraded"),
        ("True".into(), "InvalidBots".into())
    );

    // A Bot naming no existing ChatBot says so.
    api.insert(
        json!({"apiVersion": "chatbot.platform/v1alpha1", "kind": "Bot",
        "metadata": {"name": "lost", "namespace": "chat"},
        "spec": {"chatBotRef": {"name": "nowhere"}, "name": "lost_bot"}}),
    );
    let lost: Bot = serde_json::from_value(api.get(&format!("{path}/lost")).unwrap()).unwrap();
    reconcile_bot(Arc::new(lost), ctx.clone()).await.unwrap();
    let lost = api.get(&format!("{path}/lost")).unwrap();
    assert_eq!(
        condition(&lost, "Accepted"),
        ("False".into(), "ChatBotNotFound".into())
    );
}
