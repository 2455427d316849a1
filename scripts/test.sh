#!/usr/bin/env bash
# The test command (README): makes the local dependencies available, then runs
# every test of the workspace against them. Extra arguments go to `cargo test`
# (e.g. `scripts/test.sh -p service-kit readiness`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-platform/target}"

bash scripts/deps.sh >/dev/null
eval "$(bash scripts/deps.sh env)"

# A real Kubernetes API server (+ etcd, controller manager) for the
# operator's tests; built from Debian's source package on first use (~5 min).
bash scripts/kube.sh up >/dev/null
eval "$(bash scripts/kube.sh env)"

# The official socket.io-client the gateway's tests drive (npm registry).
if [[ ! -d tests/socketio/node_modules/socket.io-client ]]; then
  npm ci --prefix tests/socketio --no-audit --no-fund --loglevel=error
fi

cargo test --workspace --locked "$@"
