//! `user_profiles`, `blocks` and `contacts`: this service's relational state.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use proto::EventEnvelope;
use service_kit::{ApiError, pg_outbox};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::UsersError;

#[derive(Debug, Clone)]
pub struct ProfileRow {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub avatar_url: String,
    pub bio: String,
    pub settings: serde_json::Value,
    pub is_bot: bool,
    pub last_seen_audience: i16,
    pub messages_audience: i16,
    pub send_read_receipts: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Creates the profile of a new account. Idempotent: a replayed event finds
/// the row and changes nothing (not even fields edited since).
pub async fn create(
    pool: &PgPool,
    user_id: Uuid,
    username: &str,
    display_name: &str,
    is_bot: bool,
) -> Result<bool, UsersError> {
    let inserted = sqlx::query!(
        "INSERT INTO user_profiles (user_id, username, display_name, is_bot)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        user_id,
        username,
        display_name,
        is_bot
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

pub async fn get(pool: &PgPool, user_id: Uuid) -> Result<Option<ProfileRow>, UsersError> {
    Ok(sqlx::query_as!(
        ProfileRow,
        "SELECT * FROM user_profiles WHERE user_id = $1",
        user_id
    )
    .fetch_optional(pool)
    .await?)
}

/// Many profiles in one query (order not guaranteed; unknown ids omitted).
pub async fn get_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<ProfileRow>, UsersError> {
    Ok(sqlx::query_as!(
        ProfileRow,
        "SELECT * FROM user_profiles WHERE user_id = ANY($1)",
        ids
    )
    .fetch_all(pool)
    .await?)
}

/// What an update may change; `None` keeps the stored value.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub bio: Option<String>,
    pub settings: Option<serde_json::Value>,
}

pub async fn update(
    pool: &PgPool,
    user_id: Uuid,
    changes: &ProfileChanges,
    event: impl FnOnce(&ProfileRow) -> EventEnvelope,
) -> Result<ProfileRow, UsersError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as!(
        ProfileRow,
        "UPDATE user_profiles SET
            display_name = COALESCE($2, display_name),
            avatar_url = COALESCE($3, avatar_url),
            bio = COALESCE($4, bio),
            settings = COALESCE($5, settings),
            updated_at = now()
         WHERE user_id = $1
         RETURNING *",
        user_id,
        changes.display_name,
        changes.avatar_url,
        changes.bio,
        changes.settings,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(UsersError::NoProfile)?;
    pg_outbox::enqueue(&mut tx, &event(&row)).await?;
    tx.commit().await?;
    Ok(row)
}

#[derive(Debug, Default)]
pub struct PrivacyChanges {
    pub last_seen_audience: Option<i16>,
    pub messages_audience: Option<i16>,
    pub send_read_receipts: Option<bool>,
}

pub async fn update_privacy(
    pool: &PgPool,
    user_id: Uuid,
    changes: &PrivacyChanges,
) -> Result<ProfileRow, UsersError> {
    sqlx::query_as!(
        ProfileRow,
        "UPDATE user_profiles SET
            last_seen_audience = COALESCE($2, last_seen_audience),
            messages_audience = COALESCE($3, messages_audience),
            send_read_receipts = COALESCE($4, send_read_receipts),
            updated_at = now()
         WHERE user_id = $1
         RETURNING *",
        user_id,
        changes.last_seen_audience,
        changes.messages_audience,
        changes.send_read_receipts,
    )
    .fetch_optional(pool)
    .await?
    .ok_or(UsersError::NoProfile)
}

/// How each owner relates to one viewer, for privacy decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relation {
    /// The owner keeps the viewer in their contacts.
    pub viewer_is_contact: bool,
    /// The owner has blocked the viewer.
    pub owner_blocked_viewer: bool,
    /// The viewer has blocked the owner.
    pub viewer_blocked_owner: bool,
}

/// Relations of many owners to one viewer, in one query.
pub async fn relations(
    pool: &PgPool,
    viewer: Uuid,
    owners: &[Uuid],
) -> Result<HashMap<Uuid, Relation>, UsersError> {
    let rows = sqlx::query!(
        r#"SELECT o.id AS "owner!",
             EXISTS (SELECT 1 FROM contacts c WHERE c.owner_id = o.id AND c.contact_id = $1) AS "contact!",
             EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = o.id AND b.blocked_id = $1) AS "blocked_viewer!",
             EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = $1 AND b.blocked_id = o.id) AS "viewer_blocked!"
           FROM unnest($2::uuid[]) AS o(id)"#,
        viewer,
        owners
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.owner,
                Relation {
                    viewer_is_contact: row.contact,
                    owner_blocked_viewer: row.blocked_viewer,
                    viewer_blocked_owner: row.viewer_blocked,
                },
            )
        })
        .collect())
}

#[derive(Debug, Clone)]
pub struct SearchHit {
    pub profile: ProfileRow,
    pub score: f64,
}

/// Opaque position after the last hit of a page.
fn encode_search_cursor(score: f64, username: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{:016x}:{username}", score.to_bits()))
}

fn decode_search_cursor(cursor: &str) -> Result<(f64, String), ApiError> {
    let invalid = || {
        ApiError::invalid(
            "page.cursor",
            "page.cursor is not a cursor this search returned",
        )
    };
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?)
        .map_err(|_| invalid())?;
    let (bits, username) = raw.split_once(':').ok_or_else(invalid)?;
    let bits = u64::from_str_radix(bits, 16).map_err(|_| invalid())?;
    Ok((f64::from_bits(bits), username.to_owned()))
}

/// Ranked search: exact and prefix username matches first (shorter names
/// closer to the query rank higher), plus the display name's trigram match —
/// `<%` (the query appears within the name: "anna" in "Joanna Smith") or `%`
/// (the whole name is close: typos like "jonh smith"), both served by one GIN
/// index. Never the searcher, never users who blocked the searcher.
/// How many candidates each search branch reads: the most results one
/// query can page through (refine the query for others, as Telegram's
/// global search does).
pub const SEARCH_DEPTH: i64 = 100;
/// Queries shorter than this match display names by prefix, not trigrams.
const TRIGRAM_MIN_CHARS: usize = 4;

pub async fn search(
    pool: &PgPool,
    searcher: Uuid,
    query: &str,
    cursor: Option<&str>,
    limit: i64,
) -> Result<(Vec<SearchHit>, Option<String>), UsersError> {
    let after = cursor
        .filter(|c| !c.is_empty())
        .map(decode_search_cursor)
        .transpose()?;
    let (after_score, after_username) = match after {
        Some((score, username)) => (Some(score), Some(username)),
        None => (None, None),
    };
    let prefix = crate::domain::like_prefix(query);
    // Each branch reads at most SEARCH_DEPTH rows in index order, so a name
    // thousands share costs the same as a rare one; the union is ranked and
    // pages walk that bounded set. Branches: username prefix (btree, "C"
    // order); then either display-name word similarity (GiST
    // nearest-neighbour, also catching typos) or, for queries too short for
    // trigrams, display-name prefix (btree).
    let short = query.chars().count() < TRIGRAM_MIN_CHARS;
    let mut tx = pool.begin().await?;
    // The planner underestimates trigram matches and picks a bitmap scan of
    // every match; the nearest-first index scan stops after SEARCH_DEPTH.
    sqlx::query("SET LOCAL enable_bitmapscan = off")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query!(
        r#"WITH candidates AS (
             (SELECT user_id FROM user_profiles
               WHERE (username COLLATE "C") LIKE $3 ORDER BY (username COLLATE "C") LIMIT $7)
             UNION
             (SELECT user_id FROM user_profiles
               WHERE NOT $8 AND $2 <% lower(display_name)
               ORDER BY $2 <<-> lower(display_name) LIMIT $7)
             UNION
             (SELECT user_id FROM user_profiles
               WHERE $8 AND (lower(display_name) COLLATE "C") LIKE $3
               ORDER BY (lower(display_name) COLLATE "C") LIMIT $7)
           ), hits AS (
             SELECT p.*,
               (CASE WHEN p.username LIKE $3
                     THEN 1.0 + 1.0 / (1 + length(p.username) - length($2))
                     ELSE 0.0 END
                + GREATEST(similarity(lower(p.display_name), $2),
                           word_similarity($2, lower(p.display_name))))::float8 AS score
             FROM user_profiles p
             WHERE p.user_id = ANY(ARRAY(SELECT user_id FROM candidates))
               AND p.user_id <> $1
               AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = p.user_id AND b.blocked_id = $1)
           )
           SELECT user_id AS "user_id!", username AS "username!", display_name AS "display_name!",
                  avatar_url AS "avatar_url!", bio AS "bio!", settings AS "settings!", is_bot AS "is_bot!",
                  last_seen_audience AS "last_seen_audience!", messages_audience AS "messages_audience!",
                  send_read_receipts AS "send_read_receipts!", created_at AS "created_at!",
                  updated_at AS "updated_at!", score AS "score!"
           FROM hits
           WHERE $4::float8 IS NULL OR score < $4 OR (score = $4 AND username > $5)
           ORDER BY score DESC, username ASC
           LIMIT $6"#,
        searcher,
        query,
        prefix,
        after_score,
        after_username,
        limit + 1,
        SEARCH_DEPTH,
        short,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let has_more = rows.len() as i64 > limit;
    let hits: Vec<SearchHit> = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|row| SearchHit {
            score: row.score,
            profile: ProfileRow {
                user_id: row.user_id,
                username: row.username,
                display_name: row.display_name,
                avatar_url: row.avatar_url,
                bio: row.bio,
                settings: row.settings,
                is_bot: row.is_bot,
                last_seen_audience: row.last_seen_audience,
                messages_audience: row.messages_audience,
                send_read_receipts: row.send_read_receipts,
                created_at: row.created_at,
                updated_at: row.updated_at,
            },
        })
        .collect();
    let next = has_more
        .then(|| {
            hits.last()
                .map(|hit| encode_search_cursor(hit.score, &hit.profile.username))
        })
        .flatten();
    Ok((hits, next))
}

/// Blocks `target`; idempotent. The target must exist.
pub async fn block(pool: &PgPool, blocker: Uuid, target: Uuid) -> Result<(), UsersError> {
    let result = sqlx::query!(
        "INSERT INTO blocks (blocker_id, blocked_id)
         SELECT $1, user_id FROM user_profiles WHERE user_id = $2
         ON CONFLICT DO NOTHING",
        blocker,
        target
    )
    .execute(pool)
    .await?;
    if result.rows_affected() == 0 && get(pool, target).await?.is_none() {
        return Err(UsersError::UnknownUser);
    }
    Ok(())
}

pub async fn unblock(pool: &PgPool, blocker: Uuid, target: Uuid) -> Result<(), UsersError> {
    sqlx::query!(
        "DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2",
        blocker,
        target
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn add_contact(pool: &PgPool, owner: Uuid, contact: Uuid) -> Result<(), UsersError> {
    let result = sqlx::query!(
        "INSERT INTO contacts (owner_id, contact_id)
         SELECT $1, user_id FROM user_profiles WHERE user_id = $2
         ON CONFLICT DO NOTHING",
        owner,
        contact
    )
    .execute(pool)
    .await?;
    if result.rows_affected() == 0 && get(pool, contact).await?.is_none() {
        return Err(UsersError::UnknownUser);
    }
    Ok(())
}

pub async fn remove_contact(pool: &PgPool, owner: Uuid, contact: Uuid) -> Result<(), UsersError> {
    sqlx::query!(
        "DELETE FROM contacts WHERE owner_id = $1 AND contact_id = $2",
        owner,
        contact
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Which list of the owner to page through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserList {
    Contacts,
    Blocked,
}

/// A page of the owner's contacts or blocked users, by username.
pub async fn list(
    pool: &PgPool,
    owner: Uuid,
    which: UserList,
    after_username: Option<&str>,
    limit: i64,
) -> Result<(Vec<ProfileRow>, Option<String>), UsersError> {
    let rows = match which {
        UserList::Contacts => {
            sqlx::query_as!(
                ProfileRow,
                "SELECT p.* FROM contacts c JOIN user_profiles p ON p.user_id = c.contact_id
             WHERE c.owner_id = $1 AND ($2::text IS NULL OR p.username > $2)
             ORDER BY p.username LIMIT $3",
                owner,
                after_username,
                limit + 1
            )
            .fetch_all(pool)
            .await?
        }
        UserList::Blocked => {
            sqlx::query_as!(
                ProfileRow,
                "SELECT p.* FROM blocks b JOIN user_profiles p ON p.user_id = b.blocked_id
             WHERE b.blocker_id = $1 AND ($2::text IS NULL OR p.username > $2)
             ORDER BY p.username LIMIT $3",
                owner,
                after_username,
                limit + 1
            )
            .fetch_all(pool)
            .await?
        }
    };
    let has_more = rows.len() as i64 > limit;
    let page: Vec<ProfileRow> = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();
    let next = has_more
        .then(|| page.last().map(|p| p.username.clone()))
        .flatten();
    Ok((page, next))
}

/// For one sender and many recipients: what stands between them.
#[derive(Debug, Clone)]
pub struct PermissionRow {
    pub recipient: Uuid,
    pub exists: bool,
    pub messages_audience: i16,
    pub blocked_by_recipient: bool,
    pub blocked_by_sender: bool,
    pub sender_is_contact: bool,
}

pub async fn permissions(
    pool: &PgPool,
    sender: Uuid,
    recipients: &[Uuid],
) -> Result<Vec<PermissionRow>, UsersError> {
    let rows = sqlx::query!(
        r#"SELECT r.id AS "recipient!", p.user_id IS NOT NULL AS "exists!",
             COALESCE(p.messages_audience, 1::smallint) AS "messages_audience!",
             EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = r.id AND b.blocked_id = $1) AS "blocked_by_recipient!",
             EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = $1 AND b.blocked_id = r.id) AS "blocked_by_sender!",
             EXISTS (SELECT 1 FROM contacts c WHERE c.owner_id = r.id AND c.contact_id = $1) AS "sender_is_contact!"
           FROM unnest($2::uuid[]) AS r(id)
           LEFT JOIN user_profiles p ON p.user_id = r.id"#,
        sender,
        recipients
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| PermissionRow {
            recipient: row.recipient,
            exists: row.exists,
            messages_audience: row.messages_audience,
            blocked_by_recipient: row.blocked_by_recipient,
            blocked_by_sender: row.blocked_by_sender,
            sender_is_contact: row.sender_is_contact,
        })
        .collect())
}

pub async fn receipts_disabled(pool: &PgPool, users: &[Uuid]) -> Result<Vec<Uuid>, UsersError> {
    Ok(sqlx::query_scalar!(
        "SELECT user_id FROM user_profiles WHERE user_id = ANY($1) AND NOT send_read_receipts",
        users
    )
    .fetch_all(pool)
    .await?)
}
