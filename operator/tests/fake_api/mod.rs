//! A small in-memory Kubernetes API server behind a `tower_test` mock
//! service: enough of GET/LIST/POST/PATCH (apply and merge)/PUT/DELETE and
//! the status subresource for the reconciler, recording every request so
//! tests can count writes, and failing chosen requests on demand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub content_type: Option<String>,
}

impl Call {
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

#[derive(Debug, Default)]
struct State {
    /// Objects by their path (`/apis/apps/v1/namespaces/chat/deployments/x`).
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    /// (method, path prefix, remaining) → answer 500.
    failures: Vec<(Method, String, usize)>,
    next_uid: u64,
    resource_version: u64,
}

#[derive(Debug, Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// A client talking to a fresh fake server.
    pub fn start() -> (Client, Self) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = Self::default();
        tokio::spawn(api.clone().serve(handle));
        (Client::new(service, "default"), api)
    }

    async fn serve(self, mut handle: Handle) {
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let response = self.handle(&parts, &bytes);
            respond.send_response(response);
        }
    }

    /// Stores an object at its canonical path, as `kubectl apply` would.
    pub fn insert(&self, object: Value) -> Value {
        let path = object_path(&object);
        let mut state = self.state.lock().unwrap();
        let stored = state.materialise(object, None);
        state.objects.insert(path, stored.clone());
        stored
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Changes a stored object in place (a status update by another
    /// controller, a spec edit by a user).
    pub fn edit(&self, path: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        let version = state.resource_version.to_string();
        let object = state.objects.get_mut(path).expect("object to edit");
        change(object);
        object["metadata"]["resourceVersion"] = json!(version);
    }

    pub fn paths(&self, prefix: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .objects
            .keys()
            .filter(|path| path.starts_with(prefix))
            .cloned()
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_write).collect()
    }

    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// The next `times` requests with this method under `prefix` get a 500.
    pub fn fail(&self, method: Method, prefix: &str, times: usize) {
        self.state
            .lock()
            .unwrap()
            .failures
            .push((method, prefix.to_owned(), times));
    }

    fn handle(&self, parts: &http::request::Parts, body: &[u8]) -> Response<Body> {
        let mut state = self.state.lock().unwrap();
        let path = parts.uri.path().to_owned();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        state.calls.push(Call {
            method: parts.method.clone(),
            path: path.clone(),
            content_type: content_type.clone(),
        });
        if let Some(failure) = state.failures.iter_mut().find(|(method, prefix, left)| {
            *method == parts.method && path.starts_with(prefix.as_str()) && *left > 0
        }) {
            failure.2 -= 1;
            return status(StatusCode::INTERNAL_SERVER_ERROR, "injected failure");
        }
        let (object_path, subresource) = match path.strip_suffix("/status") {
            Some(base) => (base.to_owned(), true),
            None => (path.clone(), false),
        };
        match parts.method {
            Method::GET if state.objects.contains_key(&object_path) => {
                ok(&state.objects[&object_path])
            }
            Method::GET if is_collection(&path) => {
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|(key, _)| parent(key) == path)
                    .map(|(_, value)| value.clone())
                    .collect();
                ok(
                    &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": state.resource_version.to_string()}, "items": items}),
                )
            }
            Method::GET => status(StatusCode::NOT_FOUND, "not found"),
            Method::POST => {
                let object: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                let name = if name.is_empty() {
                    format!("generated-{}", state.next_uid)
                } else {
                    name.to_owned()
                };
                let key = format!("{path}/{name}");
                if state.objects.contains_key(&key) {
                    return status(StatusCode::CONFLICT, "already exists");
                }
                let stored = state.materialise(object, None);
                state.objects.insert(key, stored.clone());
                respond(StatusCode::CREATED, &stored)
            }
            Method::PUT => {
                let object: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let Some(live) = state.objects.get(&object_path).cloned() else {
                    return status(StatusCode::NOT_FOUND, "not found");
                };
                if object["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"] {
                    return status(StatusCode::CONFLICT, "resourceVersion changed");
                }
                let stored = state.materialise(object, Some(&live));
                state.objects.insert(object_path, stored.clone());
                ok(&stored)
            }
            Method::PATCH => {
                let patch: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let live = state.objects.get(&object_path).cloned();
                let apply = content_type.as_deref() == Some("application/apply-patch+yaml");
                let merged = match (&live, apply) {
                    (None, false) => return status(StatusCode::NOT_FOUND, "not found"),
                    (None, true) => patch,
                    (Some(live), _) => {
                        let mut merged = live.clone();
                        if subresource {
                            merge(&mut merged["status"], &patch["status"]);
                        } else {
                            merge(&mut merged, &patch);
                        }
                        merged
                    }
                };
                let stored = state.materialise(merged, live.as_ref());
                state.objects.insert(object_path, stored.clone());
                ok(&stored)
            }
            Method::DELETE => match state.objects.remove(&object_path) {
                Some(_) => ok(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
                None => status(StatusCode::NOT_FOUND, "not found"),
            },
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "unsupported"),
        }
    }
}

impl State {
    /// Server-side fields: uid, resourceVersion, generation (bumped when
    /// the spec changes), creationTimestamp.
    fn materialise(&mut self, mut object: Value, live: Option<&Value>) -> Value {
        self.resource_version += 1;
        let meta = &mut object["metadata"];
        match live {
            Some(live) => {
                meta["uid"] = live["metadata"]["uid"].clone();
                meta["creationTimestamp"] = live["metadata"]["creationTimestamp"].clone();
                let generation = live["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed = object.get("spec") != live.get("spec");
                object["metadata"]["generation"] = json!(generation + i64::from(changed));
            }
            None => {
                self.next_uid += 1;
                if meta.get("uid").is_none() {
                    meta["uid"] = json!(format!("uid-{}", self.next_uid));
                }
                if meta.get("creationTimestamp").is_none() {
                    meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                }
                meta["generation"] = json!(1);
            }
        }
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        // Secrets: stringData is write-only and lands base64-encoded in data.
        if let Some(Value::Object(strings)) = object.get("stringData").cloned() {
            use base64::Engine as _;
            for (key, value) in strings {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(value.as_str().unwrap_or_default());
                object["data"][key] = json!(encoded);
            }
            object.as_object_mut().map(|o| o.remove("stringData"));
        }
        object
    }
}

/// RFC 7386 merge (also how this fake approximates server-side apply).
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (key, value) in fields {
                if value.is_null() {
                    target.as_object_mut().map(|o| o.remove(key));
                } else {
                    merge(&mut target[key], value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// `/api/v1/namespaces/chat/secrets/x` → `/api/v1/namespaces/chat/secrets`.
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(parent, _)| parent)
}

/// Collections end in a plural resource: `.../namespaces/<ns>/<plural>`.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    segments.len() >= 2 && segments[segments.len() - 2] != "namespaces" && {
        let at = segments.iter().position(|s| *s == "namespaces");
        at.is_some_and(|at| segments.len() == at + 3)
    }
}

pub fn object_path(object: &Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let kind = object["kind"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let root = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    format!("{root}/namespaces/{namespace}/{}/{name}", plural(kind))
}

pub fn plural(kind: &str) -> String {
    match kind {
        "Ingress" => "ingresses".to_owned(),
        "HorizontalPodAutoscaler" => "horizontalpodautoscalers".to_owned(),
        "PodDisruptionBudget" => "poddisruptionbudgets".to_owned(),
        other => format!("{}s", other.to_lowercase()),
    }
}

fn ok(value: &Value) -> Response<Body> {
    respond(StatusCode::OK, value)
}

fn respond(code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

fn status(code: StatusCode, message: &str) -> Response<Body> {
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::CONFLICT => "Conflict",
        _ => "InternalError",
    };
    respond(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()}),
    )
}
