#!/usr/bin/env bash
# Runs the whole platform on this machine: makes PostgreSQL, Redis, RabbitMQ
# and the MongoDB-protocol server available (scripts/deps.sh), builds the
# five services, starts them with local settings and the example bots, waits
# until each is ready, prints where everything is, and stops everything
# cleanly on Ctrl-C (SIGTERM to each service, which drains and exits).
#
# Usage: scripts/run.sh [--release]
#
# Environment (defaults in brackets):
#   GATEWAY_PORT [8080]   HTTP port of the gateway (REST, Socket.IO, web client)
#   RUN_HOME [$HOME/.cache/chat-platform/run]   logs (one file per service)
#   BOTS_FILE [crates/bots/bots.example.yaml]   bot definitions (hot-reloaded)
#   RUST_LOG [info]
# Ports: gRPC auth 50051, users 50052, chat 50053, bots 50054; admin
# (/healthz, /readyz, /metrics) gateway 9090, auth 9091, users 9092,
# chat 9093, bots 9094. Data lives in PostgreSQL databases chat_auth and
# chat_users, MongoDB database chat_dev, Redis keys `dev:`, RabbitMQ exchange
# `dev.events`, so a local run never touches what the tests create.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PROFILE=debug
BUILD_FLAGS=()
case ${1:-} in
  "") ;;
  --release)
    PROFILE=release
    BUILD_FLAGS=(--release)
    ;;
  -h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
    ;;
  *)
    echo "usage: scripts/run.sh [--release]" >&2
    exit 2
    ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-platform/target}"
RUN_HOME=${RUN_HOME:-$HOME/.cache/chat-platform/run}
GATEWAY_PORT=${GATEWAY_PORT:-8080}
BOTS_FILE=${BOTS_FILE:-$ROOT/crates/bots/bots.example.yaml}
mkdir -p "$RUN_HOME"

say() { printf '%s\n' "$*"; }

say "• dependencies"
bash scripts/deps.sh
eval "$(bash scripts/deps.sh env)"

say "• building the services ($PROFILE)"
cargo build "${BUILD_FLAGS[@]}" --locked --workspace --bins 2>&1 |
  grep -E '^(error|warning: unused)|Finished' || true
BIN=$CARGO_TARGET_DIR/$PROFILE
for service in auth users chat bots gateway; do
  [[ -x $BIN/$service ]] || {
    echo "build failed: $BIN/$service missing (run cargo build to see why)" >&2
    exit 1
  }
done

# Each of auth and users owns a database.
for db in chat_auth chat_users; do
  if [[ $(psql -X -q -tA "$POSTGRES_URL" -c "SELECT 1 FROM pg_database WHERE datname = '$db'") != 1 ]]; then
    psql -X -q "$POSTGRES_URL" -c "CREATE DATABASE $db" >/dev/null
  fi
done
pg_url() { printf '%s/%s' "${POSTGRES_URL%/*}" "$1"; }

# Credentials between services, fresh for each run.
token() { head -c 24 /dev/urandom | base64 | tr '+/' '-_'; }
AUTH_TOKEN=$(token)
USERS_TOKEN=$(token)
CHAT_TOKEN=$(token)

export RUST_LOG=${RUST_LOG:-info} LOG_FORMAT=pretty \
  AMQP_EXCHANGE=dev.events REDIS_KEY_PREFIX=dev: \
  AUTH_GRPC_URL=http://127.0.0.1:50051 USERS_GRPC_URL=http://127.0.0.1:50052 \
  CHAT_GRPC_URL=http://127.0.0.1:50053

PIDS=()
NAMES=()
stop() {
  trap - INT TERM EXIT
  say ""
  say "• stopping"
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for i in "${!PIDS[@]}"; do
    # SHUTDOWN_GRACE is 25 s; then it is killed.
    for _ in $(seq 1 120); do
      kill -0 "${PIDS[$i]}" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "${PIDS[$i]}" 2>/dev/null; then
      kill -KILL "${PIDS[$i]}" 2>/dev/null || true
      say "  ${NAMES[$i]}: killed after the grace period"
    else
      say "  ${NAMES[$i]}: stopped"
    fi
  done
  exit 0
}
trap stop INT TERM EXIT

# start NAME ADMIN-PORT VAR=VALUE...: runs the service with those settings,
# logging to RUN_HOME/NAME.log.
ADMINS=()
start() {
  local name=$1 admin=$2
  shift 2
  : >"$RUN_HOME/$name.log"
  env ADMIN_ADDR="127.0.0.1:$admin" "$@" "$BIN/$name" >>"$RUN_HOME/$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
  ADMINS+=("$admin")
}

# Waits for every service's /readyz (they start together: users waits for
# auth's keys, auth's events need users' queue).
wait_ready() {
  local i deadline=$((SECONDS + 60))
  for i in "${!PIDS[@]}"; do
    until curl -sf "http://127.0.0.1:${ADMINS[$i]}/readyz" >/dev/null 2>&1; do
      if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
        echo "${NAMES[$i]} exited during start-up; last lines of $RUN_HOME/${NAMES[$i]}.log:" >&2
        tail -n 20 "$RUN_HOME/${NAMES[$i]}.log" >&2
        exit 1
      fi
      if ((SECONDS > deadline)); then
        echo "${NAMES[$i]} not ready after 60 s; see $RUN_HOME/${NAMES[$i]}.log" >&2
        exit 1
      fi
      sleep 0.25
    done
    say "  ${NAMES[$i]} ready (admin http://127.0.0.1:${ADMINS[$i]})"
  done
}

say "• starting the services (logs in $RUN_HOME)"
start users 9092 GRPC_ADDR=127.0.0.1:50052 DATABASE_URL="$(pg_url chat_users)" \
  USERS_SERVICE_TOKEN="$USERS_TOKEN" USERS_QUEUE=dev.users.registered
start auth 9091 GRPC_ADDR=127.0.0.1:50051 DATABASE_URL="$(pg_url chat_auth)" \
  AUTH_SERVICE_TOKEN="$AUTH_TOKEN" BCRYPT_COST=10
start chat 9093 GRPC_ADDR=127.0.0.1:50053 MONGODB_DATABASE=chat_dev \
  CHAT_SERVICE_TOKEN="$CHAT_TOKEN"
start bots 9094 GRPC_ADDR=127.0.0.1:50054 BOTS_DEFINITIONS="$BOTS_FILE" \
  AUTH_SERVICE_TOKEN="$AUTH_TOKEN" BOTS_QUEUE=dev.bots.messages
start gateway 9090 HTTP_ADDR="127.0.0.1:$GATEWAY_PORT" \
  USERS_SERVICE_TOKEN="$USERS_TOKEN" CHAT_SERVICE_TOKEN="$CHAT_TOKEN" \
  FANOUT_QUEUE=dev.gateway.fanout CORS_ORIGINS="http://127.0.0.1:$GATEWAY_PORT"
wait_ready

URL=http://127.0.0.1:$GATEWAY_PORT
cat <<EOF

The platform is running.
  web client   $URL/            (register two users, or talk to helper_bot: /help)
  REST API     $URL/api/v1      (OpenAPI: $URL/api/v1/openapi.json)
  Swagger UI   $URL/docs
  Socket.IO    $URL/socket.io/  (auth: {token: "<access token>"})
  metrics      http://127.0.0.1:{9090..9094}/metrics (gateway, auth, users, chat, bots)
  bots         $BOTS_FILE (edit it: changes apply within a second)
Ctrl-C stops everything.
EOF

# Exit (and stop the rest) if a service dies.
while true; do
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      echo "${NAMES[$i]} exited; last lines of $RUN_HOME/${NAMES[$i]}.log:" >&2
      tail -n 20 "$RUN_HOME/${NAMES[$i]}.log" >&2
      stop
    fi
  done
  sleep 1
done
