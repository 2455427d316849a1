//! Users search benchmark (not a test): `cargo bench -p users`, with
//! `scripts/deps.sh` running. Loads 100,000 generated profiles, then times
//! SearchUsers through the real gRPC API: one client and eight concurrent
//! clients, and — as the peer — the same queries with the search indexes
//! dropped (sequential scans).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::time::{Duration, Instant};

use clap::Parser as _;
use proto::common::v1::PageRequest;
use proto::users::v1::SearchUsersRequest;
use proto::users::v1::users_service_client::UsersServiceClient;
use secrecy::ExposeSecret as _;
use service_kit::token::{SigningKey, TokenSigner, TokenSubject};
use test_kit::{SpawnedService, TestAmqp, TestPostgres, TestRedis};
use tonic::transport::Channel;
use uuid::Uuid;

const USERS: i64 = 100_000;
const FIRST: &[&str] = &[
    "anna", "maria", "john", "james", "linda", "robert", "michael", "sarah", "david", "laura",
    "daniel", "sofia", "lucas", "emma", "oliver", "mia", "noah", "olga", "ivan", "yuki", "hiro",
    "chen", "wei", "fatima", "omar", "aisha", "pedro", "lucia", "marco", "giulia", "pierre",
    "camille", "hans", "greta", "liam", "chloe",
];
const LAST: &[&str] = &[
    "smith", "johnson", "garcia", "martinez", "brown", "ivanova", "petrov", "tanaka", "suzuki",
    "wang", "li", "muller", "schmidt", "rossi", "bianchi", "dubois", "martin", "silva", "santos",
    "kowalski", "nowak", "khan", "ahmed", "cohen", "levi", "novak", "horvat", "jensen", "hansen",
    "larsen",
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn queries() -> Vec<String> {
    let mut queries = Vec::new();
    for (i, first) in FIRST.iter().enumerate() {
        let last = LAST[i % LAST.len()];
        queries.push(first[..3].to_owned()); // username prefix
        queries.push(format!("{first}_{last}")); // longer prefix
        queries.push(format!("{first} {last}")); // display name
        // A typo: swap two letters of the last name.
        let mut typo: Vec<char> = last.chars().collect();
        if typo.len() > 3 {
            typo.swap(1, 2);
        }
        queries.push(format!("{first} {}", typo.into_iter().collect::<String>()));
    }
    queries
}

async fn run_searches(
    client: &UsersServiceClient<Channel>,
    token: &str,
    queries: &[String],
    rounds: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(queries.len() * rounds);
    for _ in 0..rounds {
        for query in queries {
            let mut request = tonic::Request::new(SearchUsersRequest {
                query: query.clone(),
                page: Some(PageRequest {
                    cursor: String::new(),
                    limit: 20,
                }),
            });
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            let started = Instant::now();
            client.clone().search_users(request).await.unwrap();
            latencies.push(started.elapsed());
        }
    }
    latencies.sort();
    latencies
}

async fn run() {
    let db = TestPostgres::new().await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let amqp = TestAmqp::new().await.unwrap();
    let key = SigningKey::generate("bench").unwrap();
    let jwks = serde_json::to_string(&[key.public_jwk()]).unwrap();
    let signer = TokenSigner::new(
        key,
        "chat-platform-auth",
        "chat-platform",
        Duration::from_secs(3600),
    );
    let admin = service_kit::net::bind_loopback().unwrap();
    let queue = format!("{}.users", amqp.exchange.name);
    for q in [
        queue.clone(),
        format!("{queue}.retry"),
        format!("{queue}.dlq"),
    ] {
        amqp.track_queue(q);
    }
    let config = users::Config::try_parse_from([
        "users".to_owned(),
        format!("--database-url={}", db.url().expose_secret()),
        format!("--redis-url={}", test_kit::redis_url()),
        format!("--redis-key-prefix={}", redis.prefix),
        format!("--amqp-url={}", test_kit::amqp_url()),
        format!("--amqp-exchange={}", amqp.exchange.name),
        format!("--jwt-jwks={jwks}"),
        format!("--queue={queue}"),
        "--log-filter=warn".to_owned(),
    ])
    .unwrap();
    let service = SpawnedService::spawn(move |l, s| users::serve(config, l, admin, s))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // migrations

    let started = Instant::now();
    sqlx::query(
        "INSERT INTO user_profiles (user_id, username, display_name)
         SELECT gen_random_uuid(),
                ($1::text[])[1 + i % cardinality($1::text[])] || '_' || ($2::text[])[1 + (i / 7) % cardinality($2::text[])] || i,
                initcap(($1::text[])[1 + i % cardinality($1::text[])]) || ' ' || initcap(($2::text[])[1 + (i / 7) % cardinality($2::text[])])
         FROM generate_series(1, $3::bigint) AS i",
    )
    .bind(FIRST)
    .bind(LAST)
    .bind(USERS)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE user_profiles")
        .execute(&db.pool)
        .await
        .unwrap();
    println!(
        "loaded {USERS} profiles in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let searcher = Uuid::now_v7();
    let token = signer
        .sign(&TokenSubject {
            user_id: searcher,
            session_id: searcher,
            username: "bench",
            bot: false,
        })
        .unwrap()
        .0;
    let client = UsersServiceClient::new(
        Channel::from_shared(service.http_url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let queries = queries();
    run_searches(&client, &token, &queries, 1).await; // warm-up

    let single = run_searches(&client, &token, &queries, 4).await;
    let started = Instant::now();
    let concurrent: Vec<Vec<Duration>> = futures::future::join_all((0..8).map(|_| {
        let client = client.clone();
        let token = token.clone();
        let queries = queries.clone();
        async move { run_searches(&client, &token, &queries, 2).await }
    }))
    .await;
    let elapsed = started.elapsed();
    let mut concurrent: Vec<Duration> = concurrent.into_iter().flatten().collect();
    concurrent.sort();
    let throughput = concurrent.len() as f64 / elapsed.as_secs_f64();

    sqlx::query("DROP INDEX user_profiles_username_prefix, user_profiles_display_name_trgm, user_profiles_display_name_prefix")
        .execute(&db.pool)
        .await
        .unwrap();
    let unindexed = run_searches(&client, &token, &queries[..40], 1).await;

    println!(
        "\n## Users search over {USERS} profiles ({} distinct queries: prefixes, full names, typos; 20 per page)",
        queries.len()
    );
    println!("| setup | searches | p50 | p99 | max |\n|---|---|---|---|---|");
    println!(
        "| indexed (ours), 1 client | {} | {} | {} | {} |",
        single.len(),
        ms(percentile(&single, 0.5)),
        ms(percentile(&single, 0.99)),
        ms(*single.last().unwrap())
    );
    println!(
        "| indexed (ours), 8 concurrent clients ({throughput:.0} searches/s) | {} | {} | {} | {} |",
        concurrent.len(),
        ms(percentile(&concurrent, 0.5)),
        ms(percentile(&concurrent, 0.99)),
        ms(*concurrent.last().unwrap())
    );
    println!(
        "| peer: same queries without the search indexes, 1 client | {} | {} | {} | {} |",
        unindexed.len(),
        ms(percentile(&unindexed, 0.5)),
        ms(percentile(&unindexed, 0.99)),
        ms(*unindexed.last().unwrap())
    );
    service.stop().await.unwrap();
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
