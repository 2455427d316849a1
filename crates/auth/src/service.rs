//! The `platform.auth.v1.AuthService` gRPC API.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use proto::auth::v1::auth_service_server::AuthService;
use proto::auth::v1::{
    ChangePasswordRequest, ClientInfo, GetJwksRequest, GetJwksResponse, Jwk, ListSessionsRequest,
    ListSessionsResponse, LoginRequest, LogoutRequest, LogoutResponse, ProvisionBotRequest,
    ProvisionBotResponse, RefreshRequest, RegisterRequest, RegisterResponse,
    RevokeOtherSessionsRequest, RevokeSessionRequest, RevokeSessionResponse, Session, TokenPair,
    User,
};
use proto::events::v1::UserRegistered;
use secrecy::SecretString;
use service_kit::pg_outbox::OutboxRelay;
use service_kit::token::{AccessClaims, KeySet, TokenSigner, TokenSubject, TokenVerifier};
use service_kit::{ApiError, events};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::accounts::{self, Account, NewAccount};
use crate::domain::{Email, Password, Username};
use crate::error::AuthError;
use crate::passwords::PasswordHasher;
use crate::sessions::{Device, IssuedRefresh, Rotation, SessionStore};

/// Display names are owned by the users service; here only bounded.
const DISPLAY_NAME_MAX: usize = 64;
/// Stored for accounts that never log in with a password (bots): no bcrypt
/// hash can equal it.
const UNUSABLE_PASSWORD_HASH: &str = "!";

#[derive(Debug, Clone, Default)]
pub struct AuthMetrics {
    logins: Family<Vec<(&'static str, &'static str)>, Counter>,
    refresh_reuse: Counter,
    registrations: Counter,
    password_checks: Counter,
}

impl AuthMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("logins", "Login attempts by outcome", self.logins.clone());
        registry.register(
            "refresh_token_reuse",
            "Spent refresh tokens presented again (families revoked)",
            self.refresh_reuse.clone(),
        );
        registry.register(
            "registrations",
            "Accounts created",
            self.registrations.clone(),
        );
        registry.register(
            "password_checks",
            "Full bcrypt verifications at login (also for unknown users)",
            self.password_checks.clone(),
        );
    }

    fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&vec![("outcome", outcome)]).inc();
    }
}

#[derive(Debug)]
pub struct AuthState {
    pub pool: PgPool,
    pub sessions: SessionStore,
    pub hasher: PasswordHasher,
    pub signer: TokenSigner,
    pub verifier: TokenVerifier,
    pub keys: KeySet,
    pub relay: OutboxRelay,
    pub issuer: String,
    pub audience: String,
    pub service_token: Option<SecretString>,
    pub metrics: AuthMetrics,
}

#[derive(Debug, Clone)]
pub struct AuthApi {
    state: Arc<AuthState>,
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn user_message(account: &Account) -> User {
    User {
        id: account.id.to_string(),
        username: account.username.clone(),
        email: account.email.clone().unwrap_or_default(),
        is_bot: account.is_bot,
        created_at: Some(timestamp(account.created_at)),
    }
}

/// The device of a request: what the client (usually the gateway) says, with
/// the peer address as a fallback for the IP.
fn device_of<T>(request: &Request<T>, client: Option<&ClientInfo>) -> Device {
    let client = client.cloned().unwrap_or_default();
    let bound = |s: String, max: usize| s.chars().take(max).collect::<String>();
    let ip = if client.ip.is_empty() {
        request
            .remote_addr()
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default()
    } else {
        client.ip
    };
    Device {
        user_agent: bound(client.user_agent, 256),
        ip: bound(ip, 64),
        name: bound(client.device_name, 64),
    }
}

/// Constant-time comparison for the service credential.
impl AuthApi {
    pub fn new(state: AuthState) -> Self {
        Self {
            state: Arc::new(state),
        }
    }

    pub fn state(&self) -> &AuthState {
        &self.state
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<AccessClaims, AuthError> {
        Ok(self.state.verifier.authenticate(request.metadata())?)
    }

    fn token_pair(
        &self,
        account: &Account,
        refresh: &IssuedRefresh,
    ) -> Result<TokenPair, AuthError> {
        let (access_token, access_expires) = self.state.signer.sign(&TokenSubject {
            user_id: account.id,
            session_id: refresh.session_id,
            username: &account.username,
            bot: account.is_bot,
        })?;
        Ok(TokenPair {
            access_token,
            access_expires_at: Some(timestamp(access_expires)),
            refresh_token: refresh.token.clone(),
            refresh_expires_at: Some(timestamp(refresh.expires_at)),
            session_id: refresh.session_id.to_string(),
            user_id: account.id.to_string(),
            token_type: "Bearer".to_owned(),
        })
    }

    async fn login_session(
        &self,
        account: &Account,
        device: &Device,
    ) -> Result<TokenPair, AuthError> {
        let refresh = self.state.sessions.create(account.id, device).await?;
        self.token_pair(account, &refresh)
    }

    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<RegisterResponse, AuthError> {
        let device = device_of(&request, request.get_ref().client.as_ref());
        let input = request.into_inner();
        let username = Username::parse(&input.username)?;
        let email = Email::parse(&input.email)?;
        let password = Password::parse(
            &input.password,
            "password",
            username.as_str(),
            email.as_str(),
        )?;
        let display_name = input.display_name.trim().to_owned();
        if display_name.chars().count() > DISPLAY_NAME_MAX {
            return Err(ApiError::invalid(
                "display_name",
                format!("display_name must be at most {DISPLAY_NAME_MAX} characters"),
            )
            .into());
        }
        let password_hash = self.state.hasher.hash(password.expose().to_owned()).await?;
        let id = Uuid::now_v7();
        let event = events::envelope(
            "auth",
            id.to_string(),
            proto::EventPayload::UserRegistered(UserRegistered {
                user_id: id.to_string(),
                username: username.as_str().to_owned(),
                email: email.as_str().to_owned(),
                is_bot: false,
                display_name,
            }),
        );
        let account = accounts::insert(
            &self.state.pool,
            &NewAccount {
                id,
                username: username.as_str(),
                email: Some(email.as_str()),
                password_hash: &password_hash,
                is_bot: false,
            },
            &event,
        )
        .await?;
        self.state.relay.notify();
        self.state.metrics.registrations.inc();
        let tokens = self.login_session(&account, &device).await?;
        Ok(RegisterResponse {
            user: Some(user_message(&account)),
            tokens: Some(tokens),
        })
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<TokenPair, AuthError> {
        let device = device_of(&request, request.get_ref().client.as_ref());
        let input = request.into_inner();
        if input.login.trim().is_empty() {
            return Err(ApiError::invalid("login", "login (username or email) is required").into());
        }
        if input.password.is_empty() {
            return Err(ApiError::invalid("password", "password is required").into());
        }
        let account = accounts::find_by_login(&self.state.pool, &input.login).await?;
        // Always one full bcrypt verification, whether or not the user exists.
        let valid = self
            .state
            .hasher
            .verify(
                input.password,
                account.as_ref().map(|a| a.password_hash.clone()),
            )
            .await?;
        self.state.metrics.password_checks.inc();
        match account {
            Some(account) if valid => {
                self.state.metrics.login("ok");
                self.login_session(&account, &device).await
            }
            _ => {
                self.state.metrics.login("rejected");
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    async fn refresh(&self, request: Request<RefreshRequest>) -> Result<TokenPair, AuthError> {
        let token = request.into_inner().refresh_token;
        if token.is_empty() {
            return Err(ApiError::invalid("refresh_token", "refresh_token is required").into());
        }
        match self.state.sessions.rotate(&token).await? {
            Rotation::Rotated(refresh) => {
                match accounts::find_by_id(&self.state.pool, refresh.user_id).await? {
                    Some(account) => self.token_pair(&account, &refresh),
                    None => {
                        self.state
                            .sessions
                            .revoke_all(refresh.user_id, None)
                            .await?;
                        Err(AuthError::InvalidRefreshToken)
                    }
                }
            }
            Rotation::Reused {
                session_id,
                user_id,
            } => {
                self.state.metrics.refresh_reuse.inc();
                tracing::warn!(%session_id, %user_id, "refresh token reuse detected; session revoked");
                Err(AuthError::RefreshTokenReused)
            }
            Rotation::Invalid => Err(AuthError::InvalidRefreshToken),
        }
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<TokenPair, AuthError> {
        let claims = self.caller(&request)?;
        let device = device_of(&request, request.get_ref().client.as_ref());
        let input = request.into_inner();
        let account = accounts::find_by_id(&self.state.pool, claims.sub)
            .await?
            .ok_or(AuthError::InvalidCredentials)?;
        let current_ok = self
            .state
            .hasher
            .verify(
                input.current_password.clone(),
                Some(account.password_hash.clone()),
            )
            .await?;
        if !current_ok {
            return Err(ApiError::invalid("current_password", "current password is wrong").into());
        }
        let email = account.email.clone().unwrap_or_default();
        let password = Password::parse(
            &input.new_password,
            "new_password",
            &account.username,
            &email,
        )?;
        if input.new_password == input.current_password {
            return Err(ApiError::invalid(
                "new_password",
                "new_password must differ from the current one",
            )
            .into());
        }
        let hash = self.state.hasher.hash(password.expose().to_owned()).await?;
        accounts::update_password(&self.state.pool, account.id, &hash).await?;
        let revoked = self.state.sessions.revoke_all(account.id, None).await?;
        tracing::info!(user_id = %account.id, revoked, "password changed; all sessions revoked");
        self.login_session(&account, &device).await
    }

    async fn provision_bot(
        &self,
        request: Request<ProvisionBotRequest>,
    ) -> Result<ProvisionBotResponse, AuthError> {
        if !service_kit::token::has_service_credential(
            request.metadata(),
            self.state.service_token.as_ref(),
        ) {
            return Err(AuthError::ServiceCredential);
        }
        let input = request.into_inner();
        let username = Username::parse(&input.username)?;
        let account = match accounts::find_by_login(&self.state.pool, username.as_str()).await? {
            Some(existing) if existing.is_bot => existing,
            Some(_) => return Err(AuthError::Taken { field: "username" }),
            None => {
                let id = Uuid::now_v7();
                let event = events::envelope(
                    "auth",
                    id.to_string(),
                    proto::EventPayload::UserRegistered(UserRegistered {
                        user_id: id.to_string(),
                        username: username.as_str().to_owned(),
                        email: String::new(),
                        is_bot: true,
                        display_name: input
                            .display_name
                            .trim()
                            .chars()
                            .take(DISPLAY_NAME_MAX)
                            .collect(),
                    }),
                );
                let new = NewAccount {
                    id,
                    username: username.as_str(),
                    email: None,
                    password_hash: UNUSABLE_PASSWORD_HASH,
                    is_bot: true,
                };
                match accounts::insert(&self.state.pool, &new, &event).await {
                    Ok(account) => {
                        self.state.relay.notify();
                        account
                    }
                    // Two replicas provisioning the same bot at once.
                    Err(AuthError::Taken { .. }) => {
                        accounts::find_by_login(&self.state.pool, username.as_str())
                            .await?
                            .filter(|a| a.is_bot)
                            .ok_or(AuthError::Taken { field: "username" })?
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        // Bots have no refresh family: their session id is their user id.
        let (access_token, expires) = self.state.signer.sign(&TokenSubject {
            user_id: account.id,
            session_id: account.id,
            username: &account.username,
            bot: true,
        })?;
        Ok(ProvisionBotResponse {
            user: Some(user_message(&account)),
            access_token,
            access_expires_at: Some(timestamp(expires)),
        })
    }
}

fn respond<T>(result: Result<T, AuthError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        respond(AuthApi::register(self, request).await)
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<TokenPair>, Status> {
        respond(AuthApi::login(self, request).await)
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        respond(AuthApi::refresh(self, request).await)
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let token = request.into_inner().refresh_token;
        if token.is_empty() {
            return Err(ApiError::invalid("refresh_token", "refresh_token is required").into());
        }
        // Logging out twice, or with an expired token, is not an error.
        respond(
            self.state
                .sessions
                .revoke_by_token(&token)
                .await
                .map(|_| LogoutResponse {}),
        )
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let result = async {
            let claims = self.caller(&request)?;
            let sessions = self.state.sessions.list(claims.sub).await?;
            Ok(ListSessionsResponse {
                sessions: sessions
                    .into_iter()
                    .map(|session| Session {
                        id: session.id.to_string(),
                        client: Some(ClientInfo {
                            user_agent: session.device.user_agent,
                            ip: session.device.ip,
                            device_name: session.device.name,
                        }),
                        created_at: Some(timestamp(session.created_at)),
                        last_used_at: Some(timestamp(session.last_used_at)),
                        expires_at: Some(timestamp(session.expires_at)),
                        current: session.id == claims.sid,
                    })
                    .collect(),
            })
        }
        .await;
        respond(result)
    }

    async fn revoke_session(
        &self,
        request: Request<RevokeSessionRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Status> {
        let result = async {
            let claims = self.caller(&request)?;
            let session_id = Uuid::parse_str(&request.get_ref().session_id)
                .map_err(|_| ApiError::invalid("session_id", "session_id must be a UUID"))?;
            if !self.state.sessions.revoke(claims.sub, session_id).await? {
                return Err(AuthError::SessionNotFound);
            }
            Ok(RevokeSessionResponse { revoked: 1 })
        }
        .await;
        respond(result)
    }

    async fn revoke_other_sessions(
        &self,
        request: Request<RevokeOtherSessionsRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Status> {
        let result = async {
            let claims = self.caller(&request)?;
            let revoked = self
                .state
                .sessions
                .revoke_all(claims.sub, Some(claims.sid))
                .await?;
            Ok(RevokeSessionResponse { revoked })
        }
        .await;
        respond(result)
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        respond(AuthApi::change_password(self, request).await)
    }

    async fn get_jwks(
        &self,
        _: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(GetJwksResponse {
            keys: self
                .state
                .keys
                .jwks()
                .into_iter()
                .map(|jwk| Jwk {
                    kty: jwk.kty,
                    crv: jwk.crv,
                    x: jwk.x,
                    kid: jwk.kid,
                    alg: jwk.alg,
                    r#use: jwk.use_,
                })
                .collect(),
            issuer: self.state.issuer.clone(),
            audience: self.state.audience.clone(),
        }))
    }

    async fn provision_bot(
        &self,
        request: Request<ProvisionBotRequest>,
    ) -> Result<Response<ProvisionBotResponse>, Status> {
        respond(AuthApi::provision_bot(self, request).await)
    }
}
