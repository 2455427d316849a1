#!/usr/bin/env bash
# The benchmarks (docs/benchmarks.md): each prints Markdown tables and
# compares against a peer measured in the same run. With no arguments, the
# platform benchmark (connections at 19k, send → persist → deliver) and the
# gateway's fan-out benchmark; arguments choose benches by package
# (e.g. `scripts/bench.sh gateway`, `scripts/bench.sh e2e auth`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-platform/target}"

bash scripts/deps.sh >/dev/null
eval "$(bash scripts/deps.sh env)"
if [[ ! tests/socketio/node_modules/.package-lock.json -nt tests/socketio/package-lock.json ]]; then
  npm ci --prefix tests/socketio --no-audit --no-fund --loglevel=error
fi
# 19,000 clients and the server each need as many descriptors.
ulimit -n "$(ulimit -Hn)"

packages=("$@")
[[ ${#packages[@]} -gt 0 ]] || packages=(e2e gateway)
for package in "${packages[@]}"; do
  if [[ $package == e2e ]]; then
    # The platform benchmark starts the release binaries of the services.
    cargo build --release --locked -p auth -p users -p chat -p bots -p gateway --bins
  fi
  cargo bench --locked -p "$package"
done
