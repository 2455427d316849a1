use super::*;
use crate::crd::{
    AutoscalingSpec, CustomMetric, GatewaySettings, ImageSpec, IngressSettings, PullPolicy,
};
use crate::test_support::chatbot;

/// Inputs where every Secret key the ChatBot binds resolves.
fn inputs(chatbot: &ChatBot) -> Inputs {
    let digests = Component::ALL
        .into_iter()
        .flat_map(|component| bindings(chatbot, component))
        .map(|binding| (binding.secret, "digest".to_owned()))
        .collect();
    Inputs {
        default_image: "registry.example/chat:1.0".into(),
        bots_file: "{\"bots\": []}".into(),
        secret_digests: digests,
        capabilities: Capabilities::ALL,
    }
}

fn env_value(deployment: &Deployment, name: &str) -> Option<String> {
    container(deployment)
        .env
        .as_ref()?
        .iter()
        .rev() // the last definition wins, as in Kubernetes
        .find(|var| var.name == name)
        .and_then(|var| var.value.clone())
}

fn container(deployment: &Deployment) -> &Container {
    &deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

fn hash(deployment: &Deployment) -> String {
    deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

fn autoscaled(min: i32, max: i32) -> AutoscalingSpec {
    AutoscalingSpec {
        enabled: true,
        min_replicas: min,
        max_replicas: max,
        target_cpu_utilization_percentage: 70,
        custom_metric: Some(CustomMetric {
            name: "socketio_connections".into(),
            target_average_value: "2000".into(),
        }),
    }
}

#[test]
fn every_service_gets_a_hardened_owned_deployment_and_service() {
    let chatbot = chatbot("demo");
    let children = children(&chatbot, &inputs(&chatbot));
    assert_eq!(children.deployments.len(), 5);
    assert_eq!(children.services.len(), 5);
    assert!(children.blocked.is_empty());
    for (component, deployment) in &children.deployments {
        let name = deployment.metadata.name.as_deref().unwrap();
        assert_eq!(name, format!("demo-{}", component.name()));
        let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("ChatBot", "uid-demo", Some(true))
        );
        let spec = deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        let container = container(deployment);
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        let readiness = container.readiness_probe.as_ref().unwrap();
        let http = readiness.http_get.as_ref().unwrap();
        assert_eq!(http.path.as_deref(), Some("/readyz"));
        assert_eq!(http.port, IntOrString::String("admin".into()));
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example/chat:1.0")
        );
        assert_eq!(
            container.command.as_ref().unwrap()[0],
            format!("/usr/local/bin/{}", component.name())
        );
    }
    let gateway = &children.deployments[&Component::Gateway];
    assert_eq!(
        env_value(gateway, "CHAT_GRPC_URL").as_deref(),
        Some("http://demo-chat:50053")
    );
    assert_eq!(
        env_value(gateway, "FANOUT_QUEUE").as_deref(),
        Some("chat.demo.gateway.fanout")
    );
    let secret_env: Vec<_> = container(&children.deployments[&Component::Auth])
        .env
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|var| {
            let selector = var.value_from.as_ref()?.secret_key_ref.as_ref()?;
            Some((
                var.name.as_str(),
                selector.name.as_str(),
                selector.key.as_str(),
            ))
        })
        .collect();
    assert!(secret_env.contains(&("DATABASE_URL", "postgres-auth", "url")));
    assert!(secret_env.contains(&("AUTH_SIGNING_KEY", "demo-signing-key", SIGNING_KEY_KEY)));
    assert!(secret_env.contains(&(
        "AUTH_SERVICE_TOKEN",
        "demo-internal",
        AUTH_SERVICE_TOKEN_KEY
    )));
}

#[test]
fn autoscaling_on_leaves_replicas_to_the_hpa() {
    let mut chatbot = chatbot("demo");
    chatbot.spec.services.gateway.replicas = Some(3);
    chatbot.spec.services.gateway.autoscaling = Some(autoscaled(2, 10));
    let children = children(&chatbot, &inputs(&chatbot));
    let gateway = children.deployments[&Component::Gateway]
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(gateway.replicas, None);
    let value = serde_json::to_value(&children.deployments[&Component::Gateway]).unwrap();
    assert!(value["spec"].get("replicas").is_none(), "{value}");

    let hpa = children.autoscalers[&Component::Gateway]
        .spec
        .as_ref()
        .unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 10));
    assert_eq!(hpa.scale_target_ref.name, "demo-gateway");
    let metrics = hpa.metrics.as_ref().unwrap();
    assert_eq!(
        metrics[0]
            .resource
            .as_ref()
            .unwrap()
            .target
            .average_utilization,
        Some(70)
    );
    let pods = metrics[1].pods.as_ref().unwrap();
    assert_eq!(pods.metric.name, "socketio_connections");
    assert_eq!(children.autoscalers.len(), 1);
    // min 2 ⇒ a disruption budget; the single-pod services get none.
    assert_eq!(
        children
            .disruption_budgets
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [Component::Gateway]
    );
}

#[test]
fn without_autoscaling_v2_the_minimum_runs_and_no_hpa_is_made() {
    let mut chatbot = chatbot("demo");
    chatbot.spec.services.chat.autoscaling = Some(autoscaled(3, 6));
    let mut inputs = inputs(&chatbot);
    inputs.capabilities = Capabilities {
        autoscaling_v2: false,
        pdb_v1: false,
    };
    let children = children(&chatbot, &inputs);
    assert!(children.autoscalers.is_empty());
    assert!(children.disruption_budgets.is_empty());
    let chat = children.deployments[&Component::Chat]
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(chat.replicas, Some(3));
}

#[test]
fn a_config_change_changes_the_hash_of_exactly_the_services_it_touches() {
    let base = chatbot("demo");
    let before = children(&base, &inputs(&base));

    let mut cors = base.clone();
    cors.spec.gateway = Some(GatewaySettings {
        cors_origins: vec!["https://app.example".into()],
        ..GatewaySettings::default()
    });
    let after = children(&cors, &inputs(&cors));
    assert_ne!(
        hash(&before.deployments[&Component::Gateway]),
        hash(&after.deployments[&Component::Gateway])
    );
    assert_eq!(
        hash(&before.deployments[&Component::Chat]),
        hash(&after.deployments[&Component::Chat])
    );

    // A rotated MongoDB password rolls chat only.
    let mut rotated = inputs(&base);
    let mongo = SecretKeyRef {
        name: "mongodb".into(),
        key: "url".into(),
    };
    rotated.secret_digests.insert(mongo, "new digest".into());
    let after = children(&base, &rotated);
    assert_ne!(
        hash(&before.deployments[&Component::Chat]),
        hash(&after.deployments[&Component::Chat])
    );
    assert_eq!(
        hash(&before.deployments[&Component::Users]),
        hash(&after.deployments[&Component::Users])
    );

    // New bot definitions are hot-reloaded: no restart.
    let mut new_bots = inputs(&base);
    new_bots.bots_file = "{\"bots\": [{\"name\": \"x_bot\"}]}".into();
    let after = children(&base, &new_bots);
    assert_eq!(
        hash(&before.deployments[&Component::Bots]),
        hash(&after.deployments[&Component::Bots])
    );
    assert_ne!(before.config_map.data, after.config_map.data);

    // A new image tag rolls everything.
    let mut image = base;
    image.spec.image = Some(ImageSpec {
        tag: Some("1.1".into()),
        pull_policy: PullPolicy::Always,
        ..ImageSpec::default()
    });
    let after = children(&image, &inputs(&image));
    let gateway = &after.deployments[&Component::Gateway];
    assert_eq!(
        container(gateway).image.as_deref(),
        Some("registry.example/chat:1.1")
    );
    assert_ne!(
        hash(&before.deployments[&Component::Gateway]),
        hash(gateway)
    );
}

#[test]
fn a_missing_secret_key_blocks_only_the_services_reading_it() {
    let chatbot = chatbot("demo");
    let mut inputs = inputs(&chatbot);
    inputs.secret_digests.remove(&SecretKeyRef {
        name: "mongodb".into(),
        key: "url".into(),
    });
    let children = children(&chatbot, &inputs);
    assert_eq!(children.blocked, [Component::Chat]);
    assert!(!children.deployments.contains_key(&Component::Chat));
    assert_eq!(children.deployments.len(), 4);
    // Its Service stays, so clients resolve it once the pods arrive.
    assert_eq!(children.services.len(), 5);
}

#[test]
fn the_ingress_keeps_socketio_connections_and_merges_annotations() {
    let mut chatbot = chatbot("demo");
    assert!(ingress(&chatbot).is_none());
    chatbot.spec.gateway = Some(GatewaySettings {
        ingress: Some(IngressSettings {
            enabled: true,
            host: Some("chat.example".into()),
            class_name: Some("nginx".into()),
            tls_secret_name: Some("chat-tls".into()),
            annotations: BTreeMap::from([(
                "nginx.ingress.kubernetes.io/proxy-body-size".to_owned(),
                "5m".to_owned(),
            )]),
        }),
        ..GatewaySettings::default()
    });
    let ingress = ingress(&chatbot).unwrap();
    let annotations = ingress.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"],
        "3600"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/affinity"],
        "cookie"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-body-size"],
        "5m"
    );
    let spec = ingress.spec.as_ref().unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    assert_eq!(
        spec.tls.as_ref().unwrap()[0].secret_name.as_deref(),
        Some("chat-tls")
    );
    let rule = &spec.rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("chat.example"));
    let backend = rule.http.as_ref().unwrap().paths[0]
        .backend
        .service
        .as_ref()
        .unwrap();
    assert_eq!(backend.name, "demo-gateway");

    if let Some(gateway) = chatbot.spec.gateway.as_mut() {
        gateway.ingress.as_mut().unwrap().enabled = false;
    }
    assert!(super::ingress(&chatbot).is_none());
}

#[test]
fn the_bots_deployment_mounts_the_definitions_directory() {
    let chatbot = chatbot("demo");
    let children = children(&chatbot, &inputs(&chatbot));
    let bots = &children.deployments[&Component::Bots];
    let mounts = container(bots).volume_mounts.as_ref().unwrap();
    // A directory mount (no subPath): the kubelet swaps the file in place.
    let definitions = mounts.iter().find(|m| m.name == "definitions").unwrap();
    assert_eq!(definitions.mount_path, "/etc/bots");
    assert!(definitions.sub_path.is_none());
    assert_eq!(
        env_value(bots, "BOTS_DEFINITIONS").as_deref(),
        Some("/etc/bots/bots.yaml")
    );
    assert_eq!(
        children.config_map.metadata.name.as_deref(),
        Some("demo-bots")
    );
}

/// Every service sizes its runtime to its CPU request, read by Kubernetes
/// at start-up (so a changed request changes it too), unless `extraEnv`
/// says otherwise.
#[test]
fn runtime_workers_follow_the_cpu_request() {
    let mut chatbot = chatbot("demo");
    chatbot.spec.services.chat.extra_env = vec![plain("TOKIO_WORKER_THREADS", "4")];
    let children = children(&chatbot, &inputs(&chatbot));
    for component in Component::ALL {
        let deployment = &children.deployments[&component];
        let workers = container(deployment)
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|var| var.name == "TOKIO_WORKER_THREADS")
            .unwrap_or_else(|| panic!("{component:?}: no TOKIO_WORKER_THREADS"));
        let source = workers
            .value_from
            .as_ref()
            .and_then(|source| source.resource_field_ref.as_ref())
            .unwrap_or_else(|| panic!("{component:?}: not from the resources"));
        assert_eq!(source.resource, "requests.cpu");
        assert_eq!(source.divisor, Some(Quantity("1".to_owned())));
    }
    let chat = &children.deployments[&Component::Chat];
    assert_eq!(
        env_value(chat, "TOKIO_WORKER_THREADS").as_deref(),
        Some("4")
    );
}

#[test]
fn extra_env_overrides_the_operators_settings() {
    let mut chatbot = chatbot("demo");
    chatbot.spec.services.auth.extra_env =
        vec![plain("BCRYPT_COST", "10"), plain("RUST_LOG", "debug")];
    let children = children(&chatbot, &inputs(&chatbot));
    let auth = &children.deployments[&Component::Auth];
    assert_eq!(env_value(auth, "RUST_LOG").as_deref(), Some("debug"));
    assert_eq!(env_value(auth, "BCRYPT_COST").as_deref(), Some("10"));
}

#[test]
fn cel_rules_reject_what_the_schema_cannot() {
    let ok = serde_json::to_value(autoscaled(2, 5)).unwrap();
    assert!(AutoscalingSpec::validate_cel(&ok, None).is_ok());
    let inverted = serde_json::to_value(autoscaled(5, 2)).unwrap();
    let error = AutoscalingSpec::validate_cel(&inverted, None).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("minReplicas must not exceed maxReplicas"),
        "{error}"
    );

    let hostless = serde_json::json!({"enabled": true});
    let error = IngressSettings::validate_cel(&hostless, None).unwrap_err();
    assert!(error.to_string().contains("host is required"), "{error}");
    let disabled = serde_json::json!({"enabled": false});
    assert!(IngressSettings::validate_cel(&disabled, None).is_ok());
}

#[test]
fn a_tag_alone_keeps_the_default_repository() {
    assert_eq!(
        repository_of("registry.example/chat:1.0"),
        "registry.example/chat"
    );
    assert_eq!(
        repository_of("registry.example:5000/chat"),
        "registry.example:5000/chat"
    );
    assert_eq!(
        repository_of("ghcr.io/chat-platform/chat-platform@sha256:abc"),
        "ghcr.io/chat-platform/chat-platform"
    );
    assert_eq!(
        repository_of("localhost:5000/chat:2@sha256:abc"),
        "localhost:5000/chat"
    );
}
