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

# The official socket.io-client the gateway's and the end-to-end tests drive
# (npm registry); reinstalled when the lock file changes.
if [[ ! tests/socketio/node_modules/.package-lock.json -nt tests/socketio/package-lock.json ]]; then
  npm ci --prefix tests/socketio --no-audit --no-fund --loglevel=error
fi

# Headless Chromium for the web client's end-to-end test (Debian package).
if ! command -v chromium >/dev/null 2>&1; then
  sudo_=()
  [[ $EUID -eq 0 ]] || sudo_=(sudo -n)
  "${sudo_[@]}" apt-get update -qq >/dev/null
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# The end-to-end tests (tests/e2e) start the service binaries themselves.
# Built with every target, as `cargo test` resolves features (dev-dependencies
# included): a `--bins` build would compile tokio and its dependants a second
# time with other features.
cargo build --workspace --all-targets --locked
cargo test --workspace --locked "$@"
