-- Accounts. Usernames and emails are stored normalised (lower-case), so the
-- unique constraints are case-insensitive; login looks up by either.
CREATE TABLE users (
    id UUID PRIMARY KEY,
    username TEXT NOT NULL CONSTRAINT users_username_key UNIQUE,
    -- NULL for bot accounts, which never log in with a password.
    email TEXT CONSTRAINT users_email_key UNIQUE,
    password_hash TEXT NOT NULL,
    is_bot BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_username_lower CHECK (username = lower(username)),
    CONSTRAINT users_email_lower CHECK (email = lower(email)),
    CONSTRAINT users_human_has_email CHECK (is_bot OR email IS NOT NULL)
);

-- Transactional outbox (service-kit pg_outbox): events written with the change.
CREATE TABLE event_outbox (
    seq BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    envelope BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
