CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per account, created from auth's `user.registered` event.
CREATE TABLE user_profiles (
    user_id UUID PRIMARY KEY,
    username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    avatar_url TEXT NOT NULL DEFAULT '',
    bio TEXT NOT NULL DEFAULT '',
    -- Validated against a known shape (see domain::Settings) before writing.
    settings JSONB NOT NULL DEFAULT '{}'::jsonb,
    is_bot BOOLEAN NOT NULL DEFAULT false,
    -- Privacy: 1 = everyone, 2 = contacts, 3 = nobody.
    last_seen_audience SMALLINT NOT NULL DEFAULT 1 CHECK (last_seen_audience BETWEEN 1 AND 3),
    messages_audience SMALLINT NOT NULL DEFAULT 1 CHECK (messages_audience BETWEEN 1 AND 2),
    send_read_receipts BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT user_profiles_username_key UNIQUE (username)
);

-- Search: username prefix (LIKE 'q%') and fuzzy display name (trigrams).
-- In "C" byte order, so one index serves both LIKE 'q%' and reading the
-- matches in order (a text_pattern_ops index cannot return them sorted).
CREATE INDEX user_profiles_username_prefix ON user_profiles ((username COLLATE "C"));
-- Queries too short for trigrams (under 4 characters) match display names
-- by prefix instead, in order, like usernames.
CREATE INDEX user_profiles_display_name_prefix ON user_profiles ((lower(display_name) COLLATE "C"));
-- GiST (not GIN): it can return the nearest matches in order (KNN), so a
-- search for a common name reads only the top candidates, not every match.
-- A 256-byte signature (default 12) makes each index entry precise enough
-- that the nearest-neighbour walk rechecks few rows: 3x faster here.
CREATE INDEX user_profiles_display_name_trgm ON user_profiles USING gist (lower(display_name) gist_trgm_ops(siglen = 256));

-- blocker blocks blocked. Both directions are looked up.
CREATE TABLE blocks (
    blocker_id UUID NOT NULL,
    blocked_id UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id, blocker_id);

-- owner keeps contact in their contact list (one-directional, as in Telegram).
CREATE TABLE contacts (
    owner_id UUID NOT NULL,
    contact_id UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, contact_id),
    CHECK (owner_id <> contact_id)
);
CREATE INDEX contacts_contact ON contacts (contact_id, owner_id);

CREATE TABLE event_outbox (
    seq BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    envelope BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
