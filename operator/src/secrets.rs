//! Secrets: the ones the operator generates once (signing key, the internal
//! service credentials) and the database bindings it only reads, to know
//! whether they resolve and to roll pods when their values change.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::crd::{ChatBot, SecretKeyRef};
use crate::desired::{
    AUTH_SERVICE_TOKEN_KEY, CHAT_SERVICE_TOKEN_KEY, Component, SIGNING_KEY_KEY,
    USERS_SERVICE_TOKEN_KEY, bindings, internal_secret_name, metadata, signing_key_secret_name,
};
use crate::status::{MissingBinding, MissingReason};

/// A fresh Ed25519 signing key as PKCS#8 PEM (what auth's `AUTH_SIGNING_KEY` takes).
pub fn generate_signing_key() -> Result<String, ring::error::Unspecified> {
    let rng = ring::rand::SystemRandom::new();
    let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)?;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|chunk| std::str::from_utf8(chunk).ok())
        .collect();
    Ok(format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    ))
}

/// 256 random bits, URL-safe.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn owned_secret(chatbot: &ChatBot, name: String, data: BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: metadata(chatbot, name, None),
        string_data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("could not generate a signing key")]
    KeyGeneration,
}

/// Creates the generated Secrets that do not exist yet, and adds keys that
/// went missing. Existing values are never replaced: rotating them is the
/// operator's user's decision (delete the key and pods roll with a new one).
/// Returns how many writes it made.
pub async fn ensure_generated(api: &Api<Secret>, chatbot: &ChatBot) -> Result<usize, SecretError> {
    let mut writes = 0;
    let tokens = [
        AUTH_SERVICE_TOKEN_KEY,
        USERS_SERVICE_TOKEN_KEY,
        CHAT_SERVICE_TOKEN_KEY,
    ];
    writes += ensure_keys(api, chatbot, internal_secret_name(chatbot), &tokens, |_| {
        Ok(generate_token())
    })
    .await?;
    let user_key = chatbot
        .spec
        .auth
        .as_ref()
        .is_some_and(|auth| auth.signing_key_secret.is_some());
    if !user_key {
        writes += ensure_keys(
            api,
            chatbot,
            signing_key_secret_name(chatbot),
            &[SIGNING_KEY_KEY],
            |_| generate_signing_key().map_err(|_| SecretError::KeyGeneration),
        )
        .await?;
    }
    Ok(writes)
}

async fn ensure_keys(
    api: &Api<Secret>,
    chatbot: &ChatBot,
    name: String,
    keys: &[&str],
    generate: impl Fn(&str) -> Result<String, SecretError>,
) -> Result<usize, SecretError> {
    let live = api.get_opt(&name).await?;
    let present: BTreeSet<String> = live
        .as_ref()
        .and_then(|secret| secret.data.as_ref())
        .map(|data| data.keys().cloned().collect())
        .unwrap_or_default();
    let mut fresh = BTreeMap::new();
    for key in keys.iter().filter(|key| !present.contains(**key)) {
        fresh.insert((*key).to_owned(), generate(key)?);
    }
    if fresh.is_empty() {
        return Ok(0);
    }
    let secret = owned_secret(chatbot, name.clone(), fresh);
    if live.is_some() {
        // A merge patch adds the missing keys and keeps the others.
        let patch = serde_json::json!({ "stringData": secret.string_data });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    } else {
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {}
            // Created concurrently (another reconcile): theirs stands.
            Err(kube::Error::Api(status)) if status.code == 409 => return Ok(0),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(1)
}

/// What the bindings of a ChatBot resolve to.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// SHA-256 of each found key's value.
    pub digests: BTreeMap<SecretKeyRef, String>,
    pub missing: Vec<MissingBinding>,
}

/// Reads each Secret the ChatBot's services bind, once.
pub async fn resolve(api: &Api<Secret>, chatbot: &ChatBot) -> Result<Resolved, kube::Error> {
    let refs: BTreeSet<SecretKeyRef> = Component::ALL
        .into_iter()
        .flat_map(|component| bindings(chatbot, component))
        .map(|binding| binding.secret)
        .collect();
    let names: BTreeSet<&str> = refs.iter().map(|r| r.name.as_str()).collect();
    let mut secrets = BTreeMap::new();
    for name in names {
        secrets.insert(name.to_owned(), api.get_opt(name).await?);
    }
    Ok(digest(&refs, &secrets))
}

/// Pure part of [`resolve`]: digests of the keys found, reasons for the rest.
pub fn digest(
    refs: &BTreeSet<SecretKeyRef>,
    secrets: &BTreeMap<String, Option<Secret>>,
) -> Resolved {
    let mut out = Resolved::default();
    for secret_ref in refs {
        let secret = secrets.get(&secret_ref.name).and_then(Option::as_ref);
        let Some(secret) = secret else {
            out.missing.push(MissingBinding {
                secret: secret_ref.clone(),
                reason: MissingReason::SecretNotFound,
            });
            continue;
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|data| data.get(&secret_ref.key))
            .map(|ByteString(bytes)| bytes.as_slice())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|data| data.get(&secret_ref.key))
                    .map(String::as_bytes)
            });
        match value {
            Some(bytes) => {
                out.digests
                    .insert(secret_ref.clone(), hex::encode(Sha256::digest(bytes)));
            }
            None => out.missing.push(MissingBinding {
                secret: secret_ref.clone(),
                reason: MissingReason::KeyMissing,
            }),
        }
    }
    out
}

/// The ChatBots in `chatbots` whose services read the Secret `name` (for
/// the Secret watch: a change there re-reconciles them).
pub fn chatbots_binding<'a>(
    chatbots: impl IntoIterator<Item = &'a ChatBot>,
    namespace: &str,
    name: &str,
) -> Vec<&'a ChatBot> {
    chatbots
        .into_iter()
        .filter(|chatbot| chatbot.namespace().as_deref() == Some(namespace))
        .filter(|chatbot| {
            Component::ALL.into_iter().any(|component| {
                bindings(chatbot, component)
                    .iter()
                    .any(|binding| binding.secret.name == name)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::chatbot;

    #[test]
    fn a_generated_signing_key_is_one_auth_accepts() {
        let pem = generate_signing_key().unwrap();
        service_kit::token::SigningKey::from_pkcs8_pem("k", &pem).unwrap();
        assert_ne!(generate_token(), generate_token());
        assert_eq!(generate_token().len(), 43);
    }

    #[test]
    fn missing_secrets_and_keys_are_told_apart_and_values_are_digested() {
        let refs = BTreeSet::from([
            SecretKeyRef {
                name: "pg".into(),
                key: "url".into(),
            },
            SecretKeyRef {
                name: "pg".into(),
                key: "other".into(),
            },
            SecretKeyRef {
                name: "gone".into(),
                key: "url".into(),
            },
        ]);
        let pg = Secret {
            data: Some(BTreeMap::from([(
                "url".to_owned(),
                ByteString(b"postgres://x".to_vec()),
            )])),
            ..Secret::default()
        };
        let secrets = BTreeMap::from([("pg".to_owned(), Some(pg)), ("gone".to_owned(), None)]);
        let resolved = digest(&refs, &secrets);
        assert_eq!(resolved.digests.len(), 1);
        let reasons: Vec<_> = resolved
            .missing
            .iter()
            .map(|m| {
                (
                    m.secret.name.as_str(),
                    m.secret.key.as_str(),
                    m.reason.clone(),
                )
            })
            .collect();
        assert!(reasons.contains(&("gone", "url", MissingReason::SecretNotFound)));
        assert!(reasons.contains(&("pg", "other", MissingReason::KeyMissing)));
    }

    #[test]
    fn secret_events_map_to_the_chatbots_that_bind_them() {
        let a = chatbot("a");
        let b = chatbot("b");
        let mut other_ns = chatbot("c");
        other_ns.metadata.namespace = Some("elsewhere".into());
        let all = [a, b, other_ns];
        let names: Vec<_> = chatbots_binding(&all, "chat", "a-internal")
            .iter()
            .map(|c| c.name_any())
            .collect();
        assert_eq!(names, ["a"]);
        let names: Vec<_> = chatbots_binding(&all, "chat", "redis")
            .iter()
            .map(|c| c.name_any())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
