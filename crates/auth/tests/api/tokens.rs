use std::time::Duration;

use chrono::Utc;
use proto::auth::v1::{GetJwksRequest, ListSessionsRequest, ProvisionBotRequest};
use service_kit::token::{AccessClaims, KeySet, PublicJwk, SigningKey, TokenSigner, TokenVerifier};
use service_kit::{ApiError, ErrorCode};
use uuid::Uuid;

use crate::helpers::{Options, PASSWORD, SERVICE_TOKEN, TestApp, authed, signing_key_pem};

async fn verifier_from_jwks(app: &TestApp) -> TokenVerifier {
    let jwks = app
        .client
        .clone()
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<PublicJwk> = jwks
        .keys
        .into_iter()
        .map(|k| PublicJwk {
            kty: k.kty,
            crv: k.crv,
            x: k.x,
            kid: k.kid,
            alg: k.alg,
            use_: k.r#use,
        })
        .collect();
    TokenVerifier::new(
        KeySet::from_jwks(&keys).unwrap(),
        &jwks.issuer,
        &jwks.audience,
        Duration::from_secs(30),
    )
}

#[tokio::test]
async fn access_tokens_verify_locally_with_the_published_jwks() {
    let app = TestApp::spawn().await;
    let registered = app.register("leo").await;
    let tokens = registered.tokens.unwrap();
    let claims = verifier_from_jwks(&app)
        .await
        .verify(&tokens.access_token)
        .unwrap();
    assert_eq!(claims.sub.to_string(), registered.user.unwrap().id);
    assert_eq!(claims.sid.to_string(), tokens.session_id);
    assert_eq!(claims.name, "leo");
    assert!(!claims.bot);
    let lifetime = claims.exp - claims.iat;
    assert_eq!(lifetime, 15 * 60, "default access TTL is 15 minutes");
    app.stop().await;
}

#[tokio::test]
async fn every_class_of_bad_token_is_refused_by_the_service() {
    let pem = signing_key_pem();
    let app = TestApp::spawn_with(Options {
        signing_key_pem: Some(pem.clone()),
        ..Options::default()
    })
    .await;
    let tokens = app.register("mia").await.tokens.unwrap();
    let real = verifier_from_jwks(&app)
        .await
        .verify(&tokens.access_token)
        .unwrap();
    let ours = TokenSigner::new(
        SigningKey::from_pkcs8_pem("test-key", &pem).unwrap(),
        real.iss.clone(),
        real.aud.clone(),
        Duration::from_secs(900),
    );
    let now = Utc::now().timestamp();
    let forge = |edit: &dyn Fn(&mut AccessClaims)| {
        let mut claims = real.clone();
        claims.jti = Uuid::now_v7();
        edit(&mut claims);
        ours.sign_claims(&claims).unwrap()
    };
    let impostor = TokenSigner::new(
        SigningKey::generate("test-key").unwrap(),
        real.iss.clone(),
        real.aud.clone(),
        Duration::from_secs(900),
    );
    let mut header_none = real.clone();
    header_none.exp = now + 600;
    let none_token = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT","kid":"test-key"}"#),
            b64.encode(serde_json::to_vec(&header_none).unwrap())
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", forge(&|c| c.exp = now - 3600), "expired"),
        (
            "not yet valid",
            forge(&|c| {
                c.nbf = now + 3600;
                c.exp = now + 7200;
            }),
            "not valid yet",
        ),
        ("wrong issuer", forge(&|c| c.iss = "evil".into()), "issuer"),
        (
            "wrong audience",
            forge(&|c| c.aud = "elsewhere".into()),
            "audience",
        ),
        (
            "wrong key",
            impostor.sign_claims(&real).unwrap(),
            "signature",
        ),
        ("alg none", none_token, "algorithm"),
        ("garbage", "abc.def.ghi".into(), "malformed"),
    ];
    // The forging machinery is sound: an untampered re-signed token passes.
    let control = forge(&|_| {});
    assert!(
        app.client
            .clone()
            .list_sessions(authed(ListSessionsRequest {}, &control))
            .await
            .is_ok()
    );
    for (class, token, says) in cases {
        let status = app
            .client
            .clone()
            .list_sessions(authed(ListSessionsRequest {}, &token))
            .await
            .unwrap_err();
        let error = ApiError::from_status(&status);
        assert_eq!(error.code, ErrorCode::Unauthenticated, "{class}");
        assert!(error.message.contains(says), "{class}: {}", error.message);
    }
    let status = app
        .client
        .clone()
        .list_sessions(ListSessionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::Unauthenticated,
        "no token at all"
    );
    app.stop().await;
}

#[tokio::test]
async fn bots_are_provisioned_idempotently_with_a_service_credential_only() {
    let app = TestApp::spawn().await;
    let provision = |credential: Option<&str>, username: &str| {
        let mut request = tonic::Request::new(ProvisionBotRequest {
            username: username.into(),
            display_name: "Weather Bot".into(),
        });
        if let Some(credential) = credential {
            request
                .metadata_mut()
                .insert("x-service-token", credential.parse().unwrap());
        }
        let mut client = app.client.clone();
        async move {
            client
                .provision_bot(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    assert_eq!(
        provision(None, "weather_bot").await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        provision(Some("guess"), "weather_bot")
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );

    let first = provision(Some(SERVICE_TOKEN), "weather_bot").await.unwrap();
    let again = provision(Some(SERVICE_TOKEN), "weather_bot").await.unwrap();
    let bot = first.user.unwrap();
    assert!(bot.is_bot);
    assert_eq!(
        bot.id,
        again.user.unwrap().id,
        "provisioning twice returns the same account"
    );
    let claims = verifier_from_jwks(&app)
        .await
        .verify(&first.access_token)
        .unwrap();
    assert!(claims.bot);
    assert_eq!(claims.sub.to_string(), bot.id);
    // A bot never logs in with a password; a human's name cannot be taken over.
    assert!(app.login("weather_bot", PASSWORD, "x").await.is_err());
    app.register("nora").await;
    let status = provision(Some(SERVICE_TOKEN), "nora").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    app.stop().await;
}
