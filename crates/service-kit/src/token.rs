//! Access tokens: EdDSA (Ed25519) JWTs with a `kid`, signed by the auth
//! service and verified locally by every service against a key set.
//!
//! Only `EdDSA` is accepted, so `alg: none`, HMAC-with-the-public-key
//! confusion and any other algorithm fail before a signature is checked.
//! Several keys may be trusted at once (rotation: new key signs, old key
//! verifies until its tokens expire).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ApiError;
use crate::config::TokenArgs;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Uuid,
    /// The session (refresh-token family) that minted this token.
    pub sid: Uuid,
    /// The username at issue time (display only; authorize by `sub`).
    pub name: String,
    #[serde(default)]
    pub bot: bool,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// Why a token was refused. Each class is distinct so logs and tests can
/// tell them apart; callers all see `UNAUTHENTICATED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not accepted")]
    Algorithm,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not trusted")]
    Issuer,
    #[error("token audience is not this platform")]
    Audience,
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        ApiError::unauthenticated(error.to_string())
    }
}

/// A public key in JWK form (RFC 8037 OKP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    /// The raw 32-byte Ed25519 public key, base64url without padding.
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 PKCS#8 private key: {0}")]
    BadPrivateKey(String),
    #[error("key `{kid}` is not an Ed25519 public key: {reason}")]
    BadPublicKey { kid: String, reason: String },
}

/// A private signing key with its id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public: PublicJwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate(kid: impl Into<String>) -> Result<Self, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|error| KeyError::BadPrivateKey(error.to_string()))?;
        Self::from_pkcs8_der(kid, pkcs8.as_ref())
    }

    pub fn from_pkcs8_der(kid: impl Into<String>, der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|error| KeyError::BadPrivateKey(error.to_string()))?;
        let kid = kid.into();
        let public = PublicJwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            kid: kid.clone(),
            alg: "EdDSA".to_owned(),
            use_: "sig".to_owned(),
        };
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ed_der(der),
            public,
        })
    }

    /// From a `-----BEGIN PRIVATE KEY-----` PEM (as `openssl genpkey -algorithm ed25519` writes).
    pub fn from_pkcs8_pem(kid: impl Into<String>, pem: &str) -> Result<Self, KeyError> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with("-----") && !line.is_empty())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|error| KeyError::BadPrivateKey(format!("PEM body: {error}")))?;
        Self::from_pkcs8_der(kid, &der)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }
}

/// What to put in a new access token.
#[derive(Debug, Clone)]
pub struct TokenSubject<'a> {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub username: &'a str,
    pub bot: bool,
}

/// Issues access tokens (the auth service; tests).
#[derive(Debug, Clone)]
pub struct TokenSigner {
    key: SigningKey,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl TokenSigner {
    pub fn new(
        key: SigningKey,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            key,
            issuer: issuer.into(),
            audience: audience.into(),
            ttl,
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn sign(&self, subject: &TokenSubject<'_>) -> Result<(String, DateTime<Utc>), ApiError> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.ttl).map_err(ApiError::internal)?;
        let expires = now + ttl;
        let claims = AccessClaims {
            sub: subject.user_id,
            sid: subject.session_id,
            name: subject.username.to_owned(),
            bot: subject.bot,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires.timestamp(),
            jti: Uuid::now_v7(),
        };
        Ok((self.sign_claims(&claims)?, expires))
    }

    /// Signs arbitrary claims (tests craft edge cases with this).
    pub fn sign_claims(&self, claims: &AccessClaims) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key.encoding).map_err(ApiError::internal)
    }
}

/// The trusted verification keys, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, (PublicJwk, Arc<DecodingKey>)>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

impl KeySet {
    pub fn from_jwks<'a>(jwks: impl IntoIterator<Item = &'a PublicJwk>) -> Result<Self, KeyError> {
        let mut keys = HashMap::new();
        for jwk in jwks {
            let bad = |reason: &str| KeyError::BadPublicKey {
                kid: jwk.kid.clone(),
                reason: reason.to_owned(),
            };
            if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
                return Err(bad("kty must be OKP and crv Ed25519"));
            }
            let raw = URL_SAFE_NO_PAD
                .decode(&jwk.x)
                .map_err(|_| bad("x is not base64url"))?;
            if raw.len() != 32 {
                return Err(bad("x must be 32 bytes"));
            }
            let decoding =
                DecodingKey::from_ed_components(&jwk.x).map_err(|e| bad(&e.to_string()))?;
            keys.insert(jwk.kid.clone(), (jwk.clone(), Arc::new(decoding)));
        }
        Ok(Self { keys })
    }

    pub fn jwks(&self) -> Vec<PublicJwk> {
        let mut jwks: Vec<PublicJwk> = self.keys.values().map(|(jwk, _)| jwk.clone()).collect();
        jwks.sort_by(|a, b| a.kid.cmp(&b.kid));
        jwks
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Verifies access tokens locally. Cheap to clone; the key set can be
/// replaced at run time (rotation) and every clone sees the new one.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: Arc<RwLock<KeySet>>,
    validation: Arc<Validation>,
}

impl TokenVerifier {
    pub fn new(keys: KeySet, issuer: &str, audience: &str, leeway: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.leeway = leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            keys: Arc::new(RwLock::new(keys)),
            validation: Arc::new(validation),
        }
    }

    pub fn from_args(keys: KeySet, args: &TokenArgs) -> Self {
        Self::new(keys, &args.issuer, &args.audience, args.leeway)
    }

    pub fn replace_keys(&self, keys: KeySet) {
        if let Ok(mut current) = self.keys.write() {
            *current = keys;
        }
    }

    pub fn key_count(&self) -> usize {
        self.keys.read().map(|keys| keys.len()).unwrap_or(0)
    }

    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // An `alg` outside the enum (e.g. "none") fails parsing like garbage
            // does; tell them apart by whether the header names an algorithm.
            if header_names_an_algorithm(token) {
                TokenError::Algorithm
            } else {
                TokenError::Malformed
            }
        })?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self
            .keys
            .read()
            .map_err(|_| TokenError::UnknownKey)?
            .keys
            .get(&kid)
            .map(|(_, key)| key.clone())
            .ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::Issuer,
                ErrorKind::InvalidAudience => TokenError::Audience,
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Algorithm
                }
                _ => TokenError::Malformed,
            })
    }

    /// Verifies the `authorization: Bearer <token>` of a gRPC request.
    pub fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<AccessClaims, TokenError> {
        let value = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .ok_or(TokenError::Missing)?;
        self.verify(bearer_token(value).ok_or(TokenError::Missing)?)
    }
}

fn header_names_an_algorithm(token: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|value| value.get("alg").is_some_and(serde_json::Value::is_string))
}

/// The token of an `Authorization: Bearer <token>` value (scheme is case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Metadata key a service presents its shared credential under.
pub const SERVICE_TOKEN_HEADER: &str = "x-service-token";

/// Whether `metadata` carries the service credential `expected` (compared
/// in constant time). False when no credential is configured.
pub fn has_service_credential(
    metadata: &tonic::metadata::MetadataMap,
    expected: Option<&secrecy::SecretString>,
) -> bool {
    use secrecy::ExposeSecret as _;
    let presented = metadata
        .get(SERVICE_TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .as_bytes();
    expected.is_some_and(|expected| {
        let expected = expected.expose_secret().as_bytes();
        !expected.is_empty()
            && expected.len() == presented.len()
            && expected
                .iter()
                .zip(presented)
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "auth-test";
    const AUDIENCE: &str = "platform-test";

    fn fixture() -> (TokenSigner, TokenVerifier) {
        let key = SigningKey::generate("k1").unwrap();
        let keys = KeySet::from_jwks([key.public_jwk()]).unwrap();
        let signer = TokenSigner::new(key, ISSUER, AUDIENCE, Duration::from_secs(900));
        let verifier = TokenVerifier::new(keys, ISSUER, AUDIENCE, Duration::from_secs(30));
        (signer, verifier)
    }

    fn subject() -> TokenSubject<'static> {
        TokenSubject {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            username: "alice",
            bot: false,
        }
    }

    fn claims_now(signer: &TokenSigner) -> AccessClaims {
        let (token, _) = signer.sign(&subject()).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn a_valid_token_verifies_with_its_claims() {
        let (signer, verifier) = fixture();
        let subject = subject();
        let (token, expires) = signer.sign(&subject).unwrap();
        let claims = verifier.verify(&token).unwrap();
        assert_eq!(claims.sub, subject.user_id);
        assert_eq!(claims.sid, subject.session_id);
        assert_eq!(claims.name, "alice");
        assert_eq!(claims.exp, expires.timestamp());
    }

    #[test]
    fn expired_tokens_are_rejected_beyond_the_leeway_only() {
        let (signer, verifier) = fixture();
        let mut claims = claims_now(&signer);
        claims.exp = Utc::now().timestamp() - 10; // within 30 s of skew
        assert!(
            verifier
                .verify(&signer.sign_claims(&claims).unwrap())
                .is_ok()
        );
        claims.exp = Utc::now().timestamp() - 120;
        assert_eq!(
            verifier.verify(&signer.sign_claims(&claims).unwrap()),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn not_yet_valid_tokens_are_rejected() {
        let (signer, verifier) = fixture();
        let mut claims = claims_now(&signer);
        claims.nbf = Utc::now().timestamp() + 600;
        claims.exp = claims.nbf + 900;
        assert_eq!(
            verifier.verify(&signer.sign_claims(&claims).unwrap()),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn wrong_issuer_and_audience_are_rejected() {
        let (signer, verifier) = fixture();
        let mut claims = claims_now(&signer);
        claims.iss = "someone-else".to_owned();
        assert_eq!(
            verifier.verify(&signer.sign_claims(&claims).unwrap()),
            Err(TokenError::Issuer)
        );
        let mut claims = claims_now(&signer);
        claims.aud = "another-platform".to_owned();
        assert_eq!(
            verifier.verify(&signer.sign_claims(&claims).unwrap()),
            Err(TokenError::Audience)
        );
    }

    #[test]
    fn a_token_signed_by_another_key_is_rejected() {
        let (_, verifier) = fixture();
        // Same kid, different key: the signature check must fail.
        let impostor = TokenSigner::new(
            SigningKey::generate("k1").unwrap(),
            ISSUER,
            AUDIENCE,
            Duration::from_secs(60),
        );
        let (token, _) = impostor.sign(&subject()).unwrap();
        assert_eq!(verifier.verify(&token), Err(TokenError::Signature));
        // Unknown kid.
        let stranger = TokenSigner::new(
            SigningKey::generate("k9").unwrap(),
            ISSUER,
            AUDIENCE,
            Duration::from_secs(60),
        );
        let (token, _) = stranger.sign(&subject()).unwrap();
        assert_eq!(verifier.verify(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn alg_none_and_hmac_confusion_are_rejected() {
        let (signer, verifier) = fixture();
        let claims = claims_now(&signer);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        for alg in ["none", "None", "NONE"] {
            let header =
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#));
            for signature in ["", "AAAA"] {
                let token = format!("{header}.{payload}.{signature}");
                assert_eq!(
                    verifier.verify(&token),
                    Err(TokenError::Algorithm),
                    "alg {alg}"
                );
            }
        }
        // HS256 keyed with the public key bytes (classic algorithm confusion).
        let public = URL_SAFE_NO_PAD
            .decode(&signer.key().public_jwk().x)
            .unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".to_owned());
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(verifier.verify(&forged), Err(TokenError::Algorithm));
    }

    #[test]
    fn tampered_and_garbage_tokens_are_rejected() {
        let (signer, verifier) = fixture();
        let (token, _) = signer.sign(&subject()).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut claims = claims_now(&signer);
        claims.name = "mallory".to_owned();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        parts[1] = &forged_payload;
        assert_eq!(
            verifier.verify(&parts.join(".")),
            Err(TokenError::Signature)
        );
        assert_eq!(verifier.verify("not-a-token"), Err(TokenError::Malformed));
        assert_eq!(verifier.verify("abc.def.ghi"), Err(TokenError::Malformed));
        assert_eq!(verifier.verify(""), Err(TokenError::Malformed));
    }

    #[test]
    fn key_rotation_trusts_old_and_new_keys() {
        let (old_signer, verifier) = fixture();
        let new_key = SigningKey::generate("k2").unwrap();
        let keys =
            KeySet::from_jwks([old_signer.key().public_jwk(), new_key.public_jwk()]).unwrap();
        verifier.replace_keys(keys);
        let new_signer = TokenSigner::new(new_key, ISSUER, AUDIENCE, Duration::from_secs(60));
        assert!(
            verifier
                .verify(&old_signer.sign(&subject()).unwrap().0)
                .is_ok()
        );
        assert!(
            verifier
                .verify(&new_signer.sign(&subject()).unwrap().0)
                .is_ok()
        );
        assert_eq!(verifier.key_count(), 2);
    }

    #[test]
    fn pem_keys_load_and_bad_jwks_are_refused() {
        let rng = ring::rand::SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        let key = SigningKey::from_pkcs8_pem("pem", &pem).unwrap();
        assert_eq!(key.public_jwk().kid, "pem");
        assert!(
            SigningKey::from_pkcs8_pem(
                "bad",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
            )
            .is_err()
        );

        let mut jwk = key.public_jwk().clone();
        jwk.x = "c2hvcnQ".to_owned();
        assert!(KeySet::from_jwks([&jwk]).is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
