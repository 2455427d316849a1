//! Auth benchmark (not a test): `cargo bench -p auth`, with `scripts/deps.sh`
//! running. Prints:
//! 1. access-token verifications per second on one core: our EdDSA tokens,
//!    and HS256 (the common shared-secret choice) as the peer;
//! 2. login p50/p99 with 8 concurrent clients at bcrypt cost 12;
//! 3. p50/p99 of a cheap RPC (GetJwks) idle, and during that login storm with
//!    hashing bounded to cores-1 (our default) versus spread over all cores.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::auth::v1::{GetJwksRequest, LoginRequest, RegisterRequest};
use secrecy::ExposeSecret as _;
use service_kit::token::{KeySet, SigningKey, TokenSigner, TokenSubject, TokenVerifier};
use test_kit::{SpawnedService, TestAmqp, TestPostgres, TestRedis};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery";
const CLIENTS: usize = 8;
const STORM: Duration = Duration::from_secs(8);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn verify_throughput() {
    let key = SigningKey::generate("bench").unwrap();
    let verifier = TokenVerifier::new(
        KeySet::from_jwks([key.public_jwk()]).unwrap(),
        "iss",
        "aud",
        Duration::from_secs(30),
    );
    let signer = TokenSigner::new(key, "iss", "aud", Duration::from_secs(900));
    let (token, _) = signer
        .sign(&TokenSubject {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            username: "bench",
            bot: false,
        })
        .unwrap();
    let rate = |f: &dyn Fn()| {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_secs(2) {
            for _ in 0..100 {
                f();
            }
            n += 100;
        }
        n as f64 / started.elapsed().as_secs_f64()
    };
    let eddsa = rate(&|| {
        verifier.verify(&token).unwrap();
    });

    let claims = verifier.verify(&token).unwrap();
    let secret = b"a shared secret of thirty-two bytes!";
    let hs_token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["iss"]);
    validation.set_audience(&["aud"]);
    let hs_key = DecodingKey::from_secret(secret);
    let hs256 = rate(&|| {
        jsonwebtoken::decode::<service_kit::token::AccessClaims>(&hs_token, &hs_key, &validation)
            .unwrap();
    });
    println!("## Access-token verification, one core");
    println!("| token | verifications/s |\n|---|---|");
    println!("| EdDSA (ours, with kid lookup) | {eddsa:.0} |");
    println!("| HS256 (peer: shared secret) | {hs256:.0} |");
}

struct App {
    client: AuthServiceClient<Channel>,
    service: SpawnedService,
    _db: TestPostgres,
    _redis: TestRedis,
    _amqp: TestAmqp,
}

async fn spawn(parallelism: usize) -> App {
    let db = TestPostgres::new().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let amqp = TestAmqp::new().await.unwrap();
    let admin = service_kit::net::bind_loopback().unwrap();
    let config = auth::Config::try_parse_from([
        "auth".to_owned(),
        format!("--database-url={}", db.url().expose_secret()),
        format!("--redis-url={}", test_kit::redis_url()),
        format!("--redis-key-prefix={}", redis.prefix),
        format!("--amqp-url={}", test_kit::amqp_url()),
        format!("--amqp-exchange={}", amqp.exchange.name),
        "--bcrypt-cost=12".to_owned(),
        format!("--bcrypt-parallelism={parallelism}"),
        "--log-filter=warn".to_owned(),
    ])
    .unwrap();
    let service = SpawnedService::spawn(move |listener, shutdown| {
        auth::serve(config, listener, admin, shutdown)
    })
    .await
    .unwrap();
    let channel = Channel::from_shared(service.http_url())
        .unwrap()
        .connect()
        .await;
    let channel = match channel {
        Ok(channel) => channel,
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Channel::from_shared(service.http_url())
                .unwrap()
                .connect()
                .await
                .unwrap()
        }
    };
    App {
        client: AuthServiceClient::new(channel),
        service,
        _db: db,
        _redis: redis,
        _amqp: amqp,
    }
}

/// Latencies of a cheap RPC, called every 5 ms until `stop` is notified.
async fn cheap_rpc_latencies(
    client: AuthServiceClient<Channel>,
    stop: Arc<tokio::sync::Notify>,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    loop {
        let started = Instant::now();
        client.clone().get_jwks(GetJwksRequest {}).await.unwrap();
        samples.push(started.elapsed());
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
            () = stop.notified() => break,
        }
    }
    samples.sort();
    samples
}

async fn scenario(
    label: &str,
    parallelism: usize,
    storm: bool,
) -> (String, Vec<Duration>, Vec<Duration>) {
    let app = spawn(parallelism).await;
    if storm {
        for i in 0..CLIENTS {
            app.client
                .clone()
                .register(RegisterRequest {
                    username: format!("bench_user_{i}"),
                    email: format!("bench{i}@example.com"),
                    password: PASSWORD.into(),
                    display_name: String::new(),
                    client: None,
                })
                .await
                .unwrap();
        }
    }
    let stop = Arc::new(tokio::sync::Notify::new());
    let cheap = tokio::spawn(cheap_rpc_latencies(app.client.clone(), stop.clone()));
    let logins = Arc::new(Mutex::new(Vec::new()));
    if storm {
        let deadline = Instant::now() + STORM;
        let workers: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let client = app.client.clone();
                let logins = logins.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        client
                            .clone()
                            .login(LoginRequest {
                                login: format!("bench_user_{i}"),
                                password: PASSWORD.into(),
                                client: None,
                            })
                            .await
                            .unwrap();
                        logins.lock().await.push(started.elapsed());
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
    } else {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    stop.notify_one();
    let cheap = cheap.await.unwrap();
    let mut logins = logins.lock().await.clone();
    logins.sort();
    app.service.stop().await.unwrap();
    (label.to_owned(), logins, cheap)
}

async fn run() {
    verify_throughput();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ours = auth::passwords::PasswordHasher::default_parallelism();
    let results = vec![
        scenario("idle (no logins)", ours, false).await,
        scenario(
            &format!("login storm, hashing on {ours} of {cores} cores (default)"),
            ours,
            true,
        )
        .await,
        scenario(
            &format!("login storm, hashing on all {cores} cores"),
            cores,
            true,
        )
        .await,
    ];
    println!(
        "\n## Logins (bcrypt cost 12, {CLIENTS} concurrent clients, {STORM:?}) and a cheap RPC beside them"
    );
    println!(
        "| scenario | logins | login p50 | login p99 | logins/s | GetJwks p50 | GetJwks p99 | GetJwks max |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, logins, cheap) in results {
        let rate = if logins.is_empty() {
            0.0
        } else {
            logins.len() as f64 / STORM.as_secs_f64()
        };
        println!(
            "| {label} | {} | {} | {} | {rate:.1} | {} | {} | {} |",
            logins.len(),
            ms(percentile(&logins, 0.5)),
            ms(percentile(&logins, 0.99)),
            ms(percentile(&cheap, 0.5)),
            ms(percentile(&cheap, 0.99)),
            ms(cheap.last().copied().unwrap_or_default()),
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}
