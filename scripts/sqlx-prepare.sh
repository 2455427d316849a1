#!/usr/bin/env bash
# Regenerates the committed `.sqlx/` query data of every crate with
# migrations: applies the crate's migrations to a scratch database, then
# compiles the crate online with SQLX_OFFLINE_DIR set so sqlx's macros check
# each query against the real schema and record it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-platform/target}"
export PGOPTIONS="--client-min-messages=warning"
admin_url=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
base_url=${admin_url%/*}

for migrations in crates/*/migrations; do
  crate_dir=${migrations%/migrations}
  crate=${crate_dir#crates/}
  db="sqlx_prepare_${crate//-/_}"
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  for file in "$migrations"/*.sql; do
    psql -q -v ON_ERROR_STOP=1 "$base_url/$db" -f "$file"
  done
  rm -rf "$crate_dir/.sqlx"
  mkdir -p "$crate_dir/.sqlx"
  touch "$crate_dir"/src/*.rs
  SQLX_OFFLINE=false DATABASE_URL="$base_url/$db" SQLX_OFFLINE_DIR="$PWD/$crate_dir/.sqlx" \
    cargo check -q -p "$crate" --all-targets
  psql -q "$admin_url" -c "DROP DATABASE $db WITH (FORCE)"
  echo "$crate: $(ls "$crate_dir/.sqlx" | wc -l) queries recorded"
done
