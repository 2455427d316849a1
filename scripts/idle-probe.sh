#!/usr/bin/env bash
# Idle memory per Socket.IO connection of the release gateway, alone (no
# peer): RSS before and after N official clients connected and sat idle.
# `HEAPTRACK=1` runs the gateway under heaptrack (its profile is written to
# the scratch directory, whose path is printed). Usage: scripts/idle-probe.sh [N]
# (default 5,000; docs/benchmarks.md has the figures).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-platform/target}"
clients=${1:-5000}

bash scripts/deps.sh >/dev/null
eval "$(bash scripts/deps.sh env)"
if [[ ! tests/socketio/node_modules/.package-lock.json -nt tests/socketio/package-lock.json ]]; then
  npm ci --prefix tests/socketio --no-audit --no-fund --loglevel=error
fi
cargo build --release --locked -p gateway --bin gateway
ulimit -n "$(ulimit -Hn)"

scratch=$(mktemp -d)
node tests/socketio/bench/tokens.mjs "$clients" "$scratch" probe
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
suffix=probe$RANDOM
gateway=(env HTTP_ADDR="127.0.0.1:$port" ADMIN_ADDR="127.0.0.1:$admin" JWT_JWKS="$(cat "$scratch/jwks.json")"
  AUTH_GRPC_URL=http://127.0.0.1:1 USERS_GRPC_URL=http://127.0.0.1:1 CHAT_GRPC_URL=http://127.0.0.1:1
  REDIS_KEY_PREFIX="$suffix:" AMQP_EXCHANGE="$suffix" FANOUT_QUEUE="$suffix" RUST_LOG=error
  "$CARGO_TARGET_DIR/release/gateway")
if [[ -n ${HEAPTRACK:-} ]]; then
  heaptrack -o "$scratch/heaptrack" "${gateway[@]}" &
else
  "${gateway[@]}" &
fi
until curl -s -o /dev/null "http://127.0.0.1:$port/docs/"; do sleep 0.2; done
pid=$(pgrep -n -f "$CARGO_TARGET_DIR/release/gateway")
trap 'kill -TERM "$pid" 2>/dev/null || true; wait || true' EXIT
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }

before=$(rss)
node tests/socketio/bench/load.mjs "http://127.0.0.1:$port" "$scratch/tokens.json" 999999999 15000 >"$scratch/load.out" &
until grep -q connected "$scratch/load.out" 2>/dev/null; do sleep 0.5; done
sleep 3
after=$(rss)
echo "$clients idle connections: RSS $before KB → $after KB, $(( (after - before) * 1000 / clients )) bytes per connection"
echo "scratch: $scratch"
